//! The command line as a person meets it: every command's `--help`, the main error messages
//! (golden files in `tests/it/snapshots/`; `UPDATE_SNAPSHOTS=1` rewrites them), `--version`,
//! shell completions, the progress formats, `NO_COLOR` and `WASMBUILD_REPO`.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;

use crate::support::{Home, fixture, repo, require, stderr, stdout};

/// wasmbuild with nothing from this environment: no `[env: …=value]` in the help, and
/// clap's wrapping at a fixed width.
fn bare() -> Command {
    let mut command = Command::cargo_bin("wasmbuild").unwrap();
    command.env_clear().env("COLUMNS", "100");
    command
}

fn snapshot_path(name: &str) -> std::path::PathBuf {
    repo().join("tests/it/snapshots").join(name)
}

/// `None` when `actual` is what `tests/it/snapshots/<name>` holds (or it was just written,
/// with `UPDATE_SNAPSHOTS=1`); else what differs.
fn compare_snapshot(name: &str, actual: &str) -> Option<String> {
    let path = snapshot_path(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return None;
    }
    match std::fs::read_to_string(&path) {
        Ok(expected) if expected == actual => None,
        Ok(expected) => Some(format!(
            "{} differs (- snapshot, + now):\n{}",
            path.display(),
            diff(&expected, actual)
        )),
        Err(_) => Some(format!(
            "{} is missing; it would hold:\n{actual}",
            path.display()
        )),
    }
}

fn assert_snapshots(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{}\n\nIf the change is intended: UPDATE_SNAPSHOTS=1 cargo test --test it cli",
        failures.join("\n\n")
    );
}

/// A line diff (longest common subsequence): `-` lines only in `old`, `+` only in `new`.
fn diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    // common[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut common = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("  {}\n", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || common[i + 1][j] >= common[i][j + 1]) {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        }
    }
    out
}

/// The names under `Commands:` in a help text, but `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.is_empty())
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_commands_help_matches_its_snapshot() {
    let mut failures = Vec::new();
    let mut seen = Vec::new();
    // Each command's path (`["cache", "ls"]`), found in the help above it.
    let mut pending = vec![Vec::<String>::new()];
    while let Some(path) = pending.pop() {
        let output = bare().args(&path).arg("--help").output().unwrap();
        assert!(output.status.success(), "{path:?}: {}", stderr(&output));
        let help = stdout(&output);
        let name = std::iter::once("help".to_owned())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join("-")
            + ".txt";
        failures.extend(compare_snapshot(&name, &help));
        seen.push(name);
        for sub in subcommands(&help) {
            let mut next = path.clone();
            next.push(sub);
            pending.push(next);
        }
    }
    assert!(seen.len() > 15, "the commands were found: {seen:?}");
    // A snapshot of a command that is gone is stale.
    for entry in std::fs::read_dir(snapshot_path("")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("help") && !seen.contains(&name) {
            failures.push(format!(
                "tests/it/snapshots/{name} names no command: remove it"
            ));
        }
    }
    assert_snapshots(failures);
}

#[test]
fn every_command_has_examples() {
    for command in subcommands(&stdout(&bare().arg("--help").output().unwrap())) {
        let help = stdout(&bare().args([command.as_str(), "--help"]).output().unwrap());
        assert!(
            help.contains("\nExamples:\n  "),
            "`wasmbuild {command} --help` shows no examples:\n{help}"
        );
    }
}

/// `$ wasmbuild ARGS`, then stderr with the temporary home named `$WASMBUILD_HOME`, then the
/// exit status: what a person sees in the terminal.
fn transcript(home: &Home, output: &Output, args: &[&str]) -> String {
    assert!(stdout(output).is_empty(), "errors go to stderr: {output:?}");
    let text = stderr(output);
    let real = home.dir.path().canonicalize().unwrap();
    let text = text
        .replace(&real.display().to_string(), "$WASMBUILD_HOME")
        .replace(&home.dir.path().display().to_string(), "$WASMBUILD_HOME");
    format!(
        "$ wasmbuild {}\n{text}[exit status {}]\n",
        args.join(" "),
        output.status.code().unwrap()
    )
}

/// A command that fails, and the one environment variable it runs with (if any).
struct Failing {
    name: &'static str,
    env: Option<(&'static str, &'static str)>,
    args: &'static [&'static str],
}

const FAILING: [Failing; 8] = [
    Failing {
        name: "unknown-key",
        env: None,
        args: &["build", "fixtures/broken/misspelt-key"],
    },
    Failing {
        name: "image-not-found",
        env: None,
        args: &["inspect", "nosuch:1.0"],
    },
    Failing {
        name: "invalid-reference",
        env: None,
        args: &["tag", "hello", "ghcr.io/Me/app:1.0"],
    },
    Failing {
        name: "unreachable-registry",
        env: Some(("WASMBUILD_REGISTRY_ATTEMPTS", "1")),
        args: &["pull", "127.0.0.1:1/x"],
    },
    Failing {
        name: "bad-wasmbuild-repo",
        env: Some(("WASMBUILD_REPO", "ghcr.io/Me Too")),
        args: &["build", "fixtures/prebuilt"],
    },
    Failing {
        name: "unknown-flag",
        env: None,
        args: &["build", "--no-such-flag"],
    },
    Failing {
        name: "no-command",
        env: None,
        args: &["--quiet"],
    },
    Failing {
        name: "bad-progress",
        env: None,
        args: &["images", "--progress", "fancy"],
    },
];

#[test]
fn the_main_errors_read_as_their_snapshots() {
    let home = Home::new();
    let mut failures = Vec::new();
    for case in FAILING {
        let output = home
            .cmd()
            .current_dir(repo())
            .env("COLUMNS", "100")
            .envs(case.env)
            .args(case.args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{}: {output:?}", case.name);
        let text = transcript(&home, &output, case.args);
        failures.extend(compare_snapshot(&format!("error-{}.txt", case.name), &text));
    }
    assert_snapshots(failures);
}

#[test]
fn exit_status_is_1_for_errors_and_2_for_usage() {
    let home = Home::new();
    assert_eq!(home.run(&["inspect", "nosuch"]).status.code(), Some(1));
    assert_eq!(home.run(&["inspect"]).status.code(), Some(2));
    assert_eq!(home.run(&["no-such-command"]).status.code(), Some(2));
    // Alone, it shows the help (on stderr) as a usage error.
    let alone = bare().output().unwrap();
    assert_eq!(alone.status.code(), Some(2));
    assert!(stderr(&alone).contains("Usage: wasmbuild [OPTIONS] <COMMAND>"));
}

fn wasmtime_in_cargo_lock() -> String {
    let lock = std::fs::read_to_string(repo().join("Cargo.lock")).unwrap();
    lock.split("[[package]]")
        .find(|package| package.contains("\nname = \"wasmtime\"\n"))
        .and_then(|package| package.lines().find_map(|l| l.strip_prefix("version = ")))
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

#[test]
fn version_names_wasmtime_and_the_wasm_opt_a_build_would_run() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("wasm-opt");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'wasm-opt version 999 (version_999)'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let first_two = format!(
        "wasmbuild {}\nwasmtime {}\n",
        env!("CARGO_PKG_VERSION"),
        wasmtime_in_cargo_lock()
    );
    for flag in ["--version", "-V"] {
        let output = bare().env("WASM_OPT", &fake).arg(flag).output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(
            stdout(&output),
            format!("{first_two}wasm-opt 999 (version_999)\n")
        );
    }
    // On PATH, as a build finds it.
    let output = bare()
        .env("PATH", dir.path())
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        stdout(&output),
        format!("{first_two}wasm-opt 999 (version_999)\n")
    );
    let output = bare()
        .env("PATH", "/nonexistent")
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!("{first_two}wasm-opt: not found (install binaryen)\n")
    );
}

#[test]
fn completions_are_scripts_the_shells_read() {
    let script = |shell: &str| {
        let output = bare().args(["completions", shell]).output().unwrap();
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        stdout(&output)
    };
    let bash = script("bash");
    for command in ["build", "run", "push", "completions"] {
        assert!(bash.contains(command), "{command} missing from:\n{bash}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wasmbuild.bash");
    std::fs::write(&file, &bash).unwrap();
    let loaded = Command::new(require("bash"))
        .arg("-c")
        .arg(format!(
            "source {} && complete -p wasmbuild",
            file.display()
        ))
        .output()
        .unwrap();
    assert!(loaded.status.success(), "{}", stderr(&loaded));
    assert!(stdout(&loaded).contains("wasmbuild"), "{}", stdout(&loaded));
    assert!(script("zsh").starts_with("#compdef wasmbuild"));
    assert!(script("fish").contains("complete -c wasmbuild"));
    assert_eq!(
        bare()
            .args(["completions", "tcsh"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}

/// `1.2s` at the end of a plain step line.
fn ends_with_duration(line: &str) -> bool {
    line.rsplit_once(' ').is_some_and(|(_, last)| {
        last.strip_suffix('s')
            .and_then(|n| n.split_once('.'))
            .is_some_and(|(whole, tenth)| {
                !whole.is_empty()
                    && whole.bytes().all(|b| b.is_ascii_digit())
                    && tenth.len() == 1
                    && tenth.bytes().all(|b| b.is_ascii_digit())
            })
    })
}

#[test]
fn plain_progress_gives_each_step_its_duration() {
    let home = Home::new();
    let output = home
        .cmd()
        .args(["build", "--progress", "plain"])
        .arg(fixture("prebuilt"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("=> ")).collect();
    let name = |line: &str| line[3..].split_once(':').map(|(n, _)| n.to_owned());
    for (at, line) in lines.iter().enumerate() {
        // A step's last line carries the duration; earlier lines of the same step do not.
        let last_of_step = lines
            .get(at + 1)
            .is_none_or(|next| name(next) != name(line));
        assert_eq!(
            ends_with_duration(line),
            last_of_step,
            "{line:?} in:\n{err}"
        );
    }
    let names: Vec<String> = lines.iter().filter_map(|l| name(l)).collect();
    for step in [
        "prebuilt",
        "validate",
        "optimize",
        "precompile",
        "pack",
        "store",
    ] {
        assert!(
            names.iter().any(|n| n == step),
            "{step} missing from:\n{err}"
        );
    }
    assert!(
        err.lines()
            .last()
            .unwrap()
            .starts_with("built hello.wasm ("),
        "{err}"
    );
}

#[test]
fn the_step_that_fails_has_no_duration_and_the_error_follows() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("Wasmfile"),
        "[build]\nmodule = \"bad.wasm\"\n",
    )
    .unwrap();
    std::fs::write(project.path().join("bad.wasm"), "not wasm").unwrap();
    let home = Home::new();
    let output = home.run(&["build", project.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    let lines: Vec<&str> = err.lines().collect();
    assert!(ends_with_duration(lines[0]), "{err}");
    assert_eq!(lines[1], "=> validate: 8 bytes", "{err}");
    assert!(lines[2].starts_with("error: "), "{err}");
}

#[test]
fn json_progress_is_one_object_per_event() {
    let home = Home::new();
    let output = home
        .cmd()
        .args(["build", "--progress", "json"])
        .arg(fixture("prebuilt"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).starts_with("docker.io/library/hello:latest@sha256:"));
    let events: Vec<serde_json::Value> = stderr(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.last(), Some(&"done"), "{kinds:?}");
    let steps: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for step in [
        "prebuilt",
        "validate",
        "optimize",
        "precompile",
        "pack",
        "store",
    ] {
        assert!(steps.contains(&step), "{step} missing from {steps:?}");
    }
    assert!(
        events
            .iter()
            .all(|e| e["event"] != "step" || e["detail"].is_string())
    );
    let info = events.iter().find(|e| e["event"] == "info").unwrap();
    assert!(
        info["message"]
            .as_str()
            .unwrap()
            .starts_with("built hello.wasm (")
    );
    let times: Vec<u64> = events
        .iter()
        .map(|e| e["elapsed_ms"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // A tool's output and a warning are events too: a wasm-opt that fails, with
    // `on-failure = "warn"`.
    let project = tempfile::tempdir().unwrap();
    let wasmfile = "[build]\nmodule = \"hello.wasm\"\n[optimize]\non-failure = \"warn\"\n";
    std::fs::write(project.path().join("Wasmfile"), wasmfile).unwrap();
    std::fs::copy(
        fixture("prebuilt/hello.wasm"),
        project.path().join("hello.wasm"),
    )
    .unwrap();
    let fake = project.path().join("wasm-opt");
    std::fs::write(
        &fake,
        "#!/bin/sh\ncase \"$1\" in --version) echo 'wasm-opt version 999' ;;\n\
         *) echo 'boom' >&2; exit 1 ;; esac\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let warned = home
        .cmd()
        .env("WASM_OPT", &fake)
        .args(["build", "--progress", "json"])
        .arg(project.path())
        .output()
        .unwrap();
    assert!(warned.status.success(), "{}", stderr(&warned));
    let events: Vec<serde_json::Value> = stderr(&warned)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect();
    let of = |kind: &str| events.iter().find(|e| e["event"] == kind).cloned();
    assert_eq!(of("output").unwrap()["line"], "boom", "{events:?}");
    let warning = of("warning").unwrap();
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("on-failure = \"warn\""),
        "{warning}"
    );
}

/// wasmbuild in a pseudo-terminal (util-linux `script`), as a person at a terminal runs it:
/// what it wrote there.
fn in_terminal(home: &Home, env: &[(&str, &str)], args: &str) -> String {
    let bin = assert_cmd::cargo::cargo_bin("wasmbuild");
    let output = Command::new(require("script"))
        .args(["-qec", &format!("{} {args}", bin.display()), "/dev/null"])
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("NO_COLOR")
        .env_remove("WASMBUILD_PROGRESS")
        .env("WASMBUILD_HOME", home.dir.path())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stdout(&output));
    stdout(&output)
}

#[test]
fn a_terminal_gets_a_coloured_spinner_unless_no_color_or_ci_says_otherwise() {
    let home = Home::new();
    let build = format!("build {} -t t:1", fixture("prebuilt").display());
    let is_colour = |text: &str| text.contains("\u{1b}[36m");

    let live = in_terminal(&home, &[], &build);
    assert!(is_colour(&live) && !live.contains("=> "), "{live:?}");

    let plain = in_terminal(&home, &[("NO_COLOR", "1")], &build);
    assert!(!plain.contains("\u{1b}[3"), "{plain:?}");
    assert!(!plain.contains("\u{1b}[1m"), "{plain:?}");
    // clap's help too.
    let help = in_terminal(&home, &[("NO_COLOR", "1")], "build --help");
    assert!(!help.contains('\u{1b}'), "{help:?}");

    let actions = in_terminal(&home, &[("GITHUB_ACTIONS", "true")], &build);
    assert!(
        actions.contains("=> store: ") && !is_colour(&actions),
        "{actions:?}"
    );
}

#[test]
fn wasmbuild_repo_names_an_image_nothing_else_names_as_ko_does() {
    let home = Home::new();
    let build = |extra: &[&str]| {
        let output = home
            .cmd()
            .env("WASMBUILD_REPO", "localhost:5000/me/")
            .arg("build")
            .arg(fixture("prebuilt"))
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    let named = build(&[]);
    assert!(
        named.starts_with("localhost:5000/me/hello:latest@sha256:") && named.lines().count() == 1,
        "{named}"
    );
    // `-t` names the image: the default repository is not used then.
    let tagged = build(&["-t", "app:1"]);
    assert!(
        tagged.starts_with("docker.io/library/app:1@sha256:") && tagged.lines().count() == 1,
        "{tagged}"
    );
}

#[test]
fn the_diff_shows_what_changed() {
    assert_eq!(diff("a\nb\nc\n", "a\nx\nc\n"), "  a\n- b\n+ x\n  c\n");
    assert_eq!(diff("", "new\n"), "+ new\n");
}
