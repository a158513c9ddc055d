//! `wasmbuild run`: Cmd, Env, arguments, exit codes and the image's files; what `docker run`
//! users expect of it (`--entrypoint`, `--env-file`, `-v`, `-w`, `-i`), its limits
//! (`--memory`, `--timeout`, `--fuel`); what it keeps in the cache between runs (the
//! unpacked root, the compiled module, verified blobs).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::support::{Home, fixture, snapshot, stderr, stdout};

const PREBUILT_OUT: &str = "Hello from a prebuilt module\n";

#[test]
fn runs_with_the_image_cmd_and_env() {
    let home = Home::new();
    home.build("hello", &[]);
    let output = home.run(&["run", "hello"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "Hello from wasmbuild, world!\nargv[0]=/hello.wasm\n"
    );
}

#[test]
fn arguments_replace_cmd_and_env_flags_override_the_image() {
    let home = Home::new();
    home.build("hello", &[]);
    let output = home.run(&["run", "-e", "GREETING=Howdy", "hello", "wasm", "folks"]);
    assert_eq!(stdout(&output), "Howdy, wasm folks!\nargv[0]=/hello.wasm\n");
    // A `--` before the arguments is accepted too, and arguments may look like flags.
    let output = home.run(&["run", "hello", "--", "--not-a-flag"]);
    assert_eq!(
        stdout(&output),
        "Hello from wasmbuild, --not-a-flag!\nargv[0]=/hello.wasm\n"
    );
}

#[test]
fn the_guest_exit_code_becomes_ours() {
    let home = Home::new();
    home.build("hello", &[]);
    for code in [0, 1, 42] {
        let output = home.run(&["run", "-e", &format!("EXIT_CODE={code}"), "hello"]);
        assert_eq!(output.status.code(), Some(code), "{}", stderr(&output));
    }
}

#[test]
fn copied_files_are_readable_at_their_image_paths_and_read_only() {
    let home = Home::new();
    home.build("copy", &[]);
    // The second run reads the files from the root the first one unpacked and kept, and
    // may not write there either.
    for _ in 0..2 {
        let output = home.run(&["run", "localhost/site"]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(
            stdout(&output),
            "/static/index.html: <h1>hello</h1>\n\
             /static/css/site.css: h1 { color: teal }\n\
             /etc/site/motd.txt: welcome aboard\n\
             PWD=/static\n\
             write: denied\n"
        );
    }
}

#[test]
fn an_unknown_image_is_a_clear_error() {
    let home = Home::new();
    let output = home.run(&["run", "ghcr.io/nobody/nothing:1.0"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("ghcr.io/nobody/nothing:1.0"), "{err}");
}

/// Builds fixtures/prebuilt's module, as it is, into `localhost/portable:1`: an image with
/// no precompiled artifacts, so `run` compiles it.
fn build_portable(home: &Home) -> TempDir {
    let project = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("prebuilt").join("hello.wasm"),
        project.path().join("hello.wasm"),
    )
    .unwrap();
    std::fs::write(
        project.path().join("Wasmfile"),
        "[build]\ntoolchain = \"prebuilt\"\nmodule = \"hello.wasm\"\n\n\
         [optimize]\nlevel = \"none\"\n\n[precompile]\ntargets = []\n",
    )
    .unwrap();
    home.ok(&[
        "build",
        project.path().to_str().unwrap(),
        "-t",
        "localhost/portable:1",
    ]);
    project
}

fn run_debug(home: &Home, args: &[&str]) -> Output {
    let output = home
        .cmd()
        .env("WASMBUILD_LOG", "debug")
        .arg("run")
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    output
}

fn cache_dir(home: &Home) -> PathBuf {
    home.dir.path().join("cache")
}

/// The names in `$WASMBUILD_HOME/cache/<step>`, sorted.
fn cached(home: &Home, step: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(cache_dir(home).join(step)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn only(names: Vec<String>) -> String {
    assert_eq!(names.len(), 1, "{names:?}");
    names.into_iter().next().unwrap()
}

#[test]
fn a_second_run_uses_the_kept_root_and_compiled_module() {
    let home = Home::new();
    let _project = build_portable(&home);
    let first = run_debug(&home, &["localhost/portable:1"]);
    assert_eq!(stdout(&first), PREBUILT_OUT);
    assert_eq!(stderr(&first), "debug: compiling /hello.wasm\n");
    let root = only(cached(&home, "rootfs"));
    let compiled = only(cached(&home, "compiled"));
    let kept = cache_dir(&home)
        .join("rootfs")
        .join(&root)
        .join("hello.wasm");
    assert_eq!(
        std::fs::read(kept).unwrap(),
        std::fs::read(fixture("prebuilt").join("hello.wasm")).unwrap()
    );

    let second = run_debug(&home, &["localhost/portable:1"]);
    assert_eq!(stdout(&second), PREBUILT_OUT);
    assert_eq!(
        stderr(&second),
        format!(
            "debug: using cached root {root}\ndebug: using cached compiled module {compiled}\n"
        )
    );

    // Another reference to the same image shares both.
    home.ok(&["tag", "localhost/portable:1", "localhost/portable:2"]);
    let third = run_debug(&home, &["localhost/portable:2"]);
    assert_eq!(stdout(&third), PREBUILT_OUT);
    assert_eq!(stderr(&third), stderr(&second));

    let listed = home.ok(&["cache", "ls"]);
    assert!(listed.contains(&format!("rootfs      {root}")), "{listed}");
    assert!(
        listed.contains(&format!("compiled    {compiled}")),
        "{listed}"
    );
}

#[test]
fn a_precompiled_image_keeps_its_root_and_hashes_an_unchanged_cwasm_once() {
    let host = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let home = Home::new();
    home.build("hello", &[]);
    let inspected: serde_json::Value =
        serde_json::from_str(&home.ok(&["inspect", "--json", "hello"])).unwrap();
    let referrer = inspected["precompiled"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["target"] == host.as_str())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let blob = |digest: &str| {
        home.store()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let referrer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&referrer)).unwrap()).unwrap();
    let cwasm = referrer["layers"][0]["digest"].as_str().unwrap().to_owned();
    // A blob written in the last second is hashed every time (its times could still
    // stay the same through an edit); past that, a check is remembered.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let first = run_debug(&home, &["hello"]);
    assert_eq!(
        stderr(&first),
        format!("debug: using precompiled {host} ({cwasm})\n")
    );
    let root = only(cached(&home, "rootfs"));
    assert_eq!(cached(&home, "verified").len(), 1);
    assert_eq!(cached(&home, "compiled"), Vec::<String>::new());

    let second = run_debug(&home, &["hello"]);
    assert_eq!(
        stdout(&second),
        "Hello from wasmbuild, world!\nargv[0]=/hello.wasm\n"
    );
    assert_eq!(
        stderr(&second),
        format!(
            "debug: using cached root {root}\n\
             debug: {cwasm} is unchanged since it was verified\n\
             debug: using precompiled {host} ({cwasm})\n"
        )
    );

    // Changed in place (as the store never does): new times, so it is hashed again and
    // refused.
    let mut bytes = std::fs::read(blob(&cwasm)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(blob(&cwasm), &bytes).unwrap();
    let output = home.run(&["run", "hello"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "", "the guest never ran");
    assert!(
        stderr(&output).contains(&format!("caused by: blob {cwasm} is corrupt")),
        "{}",
        stderr(&output)
    );
}

#[test]
fn no_cache_neither_reads_nor_writes_the_cache() {
    let home = Home::new();
    let _project = build_portable(&home);
    let before = snapshot(&cache_dir(&home));
    let output = run_debug(&home, &["--no-cache", "localhost/portable:1"]);
    assert_eq!(stdout(&output), PREBUILT_OUT);
    assert_eq!(stderr(&output), "debug: compiling /hello.wasm\n");
    assert_eq!(snapshot(&cache_dir(&home)), before, "nothing written");
    assert!(cached(&home, "rootfs").is_empty() && cached(&home, "compiled").is_empty());

    // With a filled cache, --no-cache still unpacks and compiles, and changes nothing.
    run_debug(&home, &["localhost/portable:1"]);
    let filled = snapshot(&cache_dir(&home));
    let output = run_debug(&home, &["localhost/portable:1", "--no-cache"]);
    assert_eq!(stdout(&output), PREBUILT_OUT);
    let output = run_debug(&home, &["--no-cache", "localhost/portable:1"]);
    assert_eq!(stderr(&output), "debug: compiling /hello.wasm\n");
    assert_eq!(snapshot(&cache_dir(&home)), filled);
}

#[test]
fn a_truncated_compiled_module_is_compiled_again_and_replaced() {
    let home = Home::new();
    let _project = build_portable(&home);
    run_debug(&home, &["localhost/portable:1"]);
    let entry = cache_dir(&home)
        .join("compiled")
        .join(only(cached(&home, "compiled")));
    let whole = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &whole[..whole.len() / 2]).unwrap();

    let output = run_debug(&home, &["localhost/portable:1"]);
    assert_eq!(stdout(&output), PREBUILT_OUT);
    let err = stderr(&output);
    assert!(
        err.contains(&format!(
            "debug: cannot load the cached compiled module {} (",
            entry.display()
        )) && err.ends_with("); removing it\ndebug: compiling /hello.wasm\n"),
        "{err}"
    );
    assert_eq!(std::fs::read(&entry).unwrap(), whole, "written whole again");

    let output = run_debug(&home, &["localhost/portable:1"]);
    assert_eq!(stdout(&output), PREBUILT_OUT);
    assert!(
        stderr(&output).contains("debug: using cached compiled module "),
        "{}",
        stderr(&output)
    );

    // Garbage of any length is refused the same way.
    std::fs::write(&entry, b"not a module").unwrap();
    let output = run_debug(&home, &["localhost/portable:1"]);
    assert_eq!(stdout(&output), PREBUILT_OUT);
    assert!(
        stderr(&output).ends_with("debug: compiling /hello.wasm\n"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn first_runs_at_the_same_time_all_succeed_and_keep_one_root() {
    let home = Home::new();
    let _project = build_portable(&home);
    let runs: Vec<_> = (0..4)
        .map(|_| {
            home.cmd()
                .args(["run", "localhost/portable:1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for run in runs {
        let output = run.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(stdout(&output), PREBUILT_OUT);
    }
    let root = only(cached(&home, "rootfs"));
    only(cached(&home, "compiled"));
    assert!(
        cache_dir(&home)
            .join("rootfs")
            .join(root)
            .join("hello.wasm")
            .is_file()
    );
    let second = run_debug(&home, &["localhost/portable:1"]);
    assert!(
        stderr(&second).starts_with("debug: using cached root "),
        "{}",
        stderr(&second)
    );
}

#[test]
fn cache_prune_removes_what_run_kept() {
    let home = Home::new();
    let _project = build_portable(&home);
    run_debug(&home, &["localhost/portable:1"]);
    assert_eq!(cached(&home, "rootfs").len(), 1);
    assert_eq!(
        home.ok(&["cache", "prune", "--older-than", "1"]),
        "removed 0 entries (0 B)\n"
    );
    let listed = home.ok(&["cache", "ls"]);
    let entries = listed.lines().count() - 1;
    assert!(entries >= 2, "{listed}");
    let removed = home.ok(&["cache", "prune"]);
    assert!(
        removed.starts_with(&format!("removed {entries} entries (")),
        "{removed}"
    );
    assert!(cached(&home, "rootfs").is_empty());
    assert!(cached(&home, "compiled").is_empty());
    assert!(no_files(&cache_dir(&home)));

    let output = run_debug(&home, &["localhost/portable:1"]);
    assert_eq!(stdout(&output), PREBUILT_OUT);
    assert_eq!(stderr(&output), "debug: compiling /hello.wasm\n");
}

fn no_files(dir: &Path) -> bool {
    snapshot(dir).is_empty()
}

/// Builds fixtures/probe (a guest that does what its arguments say) into `home`:
/// `localhost/probe`, Entrypoint `/probe.wasm`, Cmd `args from-cmd`, Env
/// `FROM_IMAGE=image SHARED=image`, WorkingDir `/data`.
fn build_probe(home: &Home) -> &'static str {
    home.build("probe", &[]);
    "localhost/probe"
}

/// Runs `command` with `input` on its stdin.
fn with_stdin(mut command: Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn entrypoint_cmd_and_arguments_follow_dockers_rules() {
    let home = Home::new();
    let image = build_probe(&home);
    let argv = |flags: &[&str], args: &[&str]| {
        let mut all = vec!["run"];
        all.extend_from_slice(flags);
        all.push(image);
        all.extend_from_slice(args);
        home.ok(&all)
    };
    assert_eq!(
        argv(&[], &[]),
        "[\"/probe.wasm\", \"args\", \"from-cmd\"]\n"
    );
    assert_eq!(
        argv(&[], &["args", "x"]),
        "[\"/probe.wasm\", \"args\", \"x\"]\n"
    );
    // --entrypoint replaces Entrypoint and drops the image's Cmd.
    assert_eq!(
        argv(&["--entrypoint", "/probe.wasm"], &[]),
        "[\"/probe.wasm\"]\n"
    );
    assert_eq!(
        argv(&["--entrypoint", "/probe.wasm"], &["y"]),
        "[\"/probe.wasm\", \"y\"]\n"
    );
    // An empty one leaves the arguments as the whole command.
    assert_eq!(
        argv(&["--entrypoint", ""], &["/probe.wasm", "z"]),
        "[\"/probe.wasm\", \"z\"]\n"
    );

    let output = home.run(&["run", "--entrypoint", "", image]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: --entrypoint \"\" and no arguments: nothing to run\n"
    );
    let output = home.run(&["run", "--entrypoint", "/nope.wasm", image]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: localhost/probe:latest has no module at /nope.wasm\n"
    );
    let output = home.run(&["run", "--entrypoint", "/../probe.wasm", image]);
    assert_eq!(
        stderr(&output),
        "error: /../probe.wasm is not a path inside the image (it has `..`)\n"
    );
}

#[test]
fn environment_merges_image_env_files_and_flags_as_docker_does() {
    let home = Home::new();
    let image = build_probe(&home);
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.env");
    std::fs::write(
        &first,
        "# the image says SHARED=image\n\
         \n\
         SHARED=file\n\
         \x20 FROM_FILE=first file, kept as written \n\
         LATER=first\n\
         PASSED_THROUGH\n\
         NOT_ON_HOST\n",
    )
    .unwrap();
    let second = dir.path().join("second.env");
    std::fs::write(&second, "LATER=second\n").unwrap();
    let mut command = home.cmd();
    command
        .env("PASSED_THROUGH", "from the host")
        .env("FLAG_FROM_HOST", "also from the host")
        .env_remove("NOT_ON_HOST")
        .env_remove("FROM_IMAGE")
        .args(["run", "--env-file"])
        .arg(&first)
        .arg("--env-file")
        .arg(&second)
        .args([
            "-e",
            "SHARED=flag",
            "-e",
            "FLAG_FROM_HOST",
            "-e",
            "FROM_IMAGE",
        ])
        .args([image, "env"]);
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    // `-e FROM_IMAGE`, unset on the host, removes the image's value, as in Docker.
    assert_eq!(
        stdout(&output),
        "FLAG_FROM_HOST=also from the host\n\
         FROM_FILE=first file, kept as written \n\
         LATER=second\n\
         PASSED_THROUGH=from the host\n\
         PWD=/data\n\
         SHARED=flag\n"
    );
}

#[test]
fn a_bad_env_file_is_an_error_at_its_line_before_anything_runs() {
    let home = Home::new();
    let image = build_probe(&home);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.env");
    std::fs::write(&file, "A=1\n# fine\nNOT VALID=2\n").unwrap();
    let output = home.run(&["run", "--env-file", file.to_str().unwrap(), image, "env"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        format!(
            "error: {}:3: the variable name `NOT VALID` contains whitespace\n",
            file.display()
        )
    );
    let missing = dir.path().join("missing.env");
    let output = home.run(&["run", "--env-file", missing.to_str().unwrap(), image]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with(&format!(
            "error: cannot read env file {}\n",
            missing.display()
        )),
        "{}",
        stderr(&output)
    );
}

#[test]
fn workdir_flag_replaces_the_images_workdir_as_pwd() {
    let home = Home::new();
    let image = build_probe(&home);
    let pwd = |flags: &[&str]| {
        let mut all = vec!["run"];
        all.extend_from_slice(flags);
        all.extend_from_slice(&[image, "env"]);
        home.ok(&all)
            .lines()
            .find_map(|l| l.strip_prefix("PWD=").map(str::to_owned))
    };
    assert_eq!(pwd(&[]).as_deref(), Some("/data"));
    assert_eq!(pwd(&["-w", "/srv/app"]).as_deref(), Some("/srv/app"));
    assert_eq!(pwd(&["--workdir", "/"]).as_deref(), Some("/"));
    assert_eq!(
        pwd(&["-w", "/srv", "-e", "PWD=/mine"]).as_deref(),
        Some("/mine")
    );
    let output = home.run(&["run", "-w", "relative", image]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("the working directory `relative` must be an absolute path"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_guest_writes_only_where_a_writable_volume_lets_it() {
    let home = Home::new();
    let image = build_probe(&home);
    let dir = tempfile::tempdir().unwrap();
    let (writable, read_only) = (dir.path().join("out"), dir.path().join("in"));
    std::fs::create_dir(&writable).unwrap();
    std::fs::create_dir(&read_only).unwrap();
    std::fs::write(read_only.join("in.txt"), "from the host\n").unwrap();
    let volumes = [
        "-v".to_owned(),
        format!("{}:/out", writable.display()),
        "--volume".to_owned(),
        format!("{}:/in:ro", read_only.display()),
    ];
    let run = |args: &[&str]| {
        let mut command = home.cmd();
        command.arg("run").args(&volumes).arg(image).args(args);
        command.output().unwrap()
    };

    let output = run(&["write", "/out/new.txt", "written by the guest"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "wrote /out/new.txt\n");
    assert_eq!(
        std::fs::read_to_string(writable.join("new.txt")).unwrap(),
        "written by the guest"
    );
    let output = run(&["read", "/in/in.txt", "/out/new.txt"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "/in/in.txt: from the host\n/out/new.txt: written by the guest"
    );

    // Everywhere else a write fails inside the guest: the read-only volume, the image's
    // files, a folder that is not there.
    for path in ["/in/new.txt", "/probe.wasm", "/new.txt", "/tmp/new.txt"] {
        let output = run(&["write", path, "x"]);
        assert_eq!(output.status.code(), Some(1), "{path}");
        assert!(
            stderr(&output).starts_with(&format!("cannot write {path}: ")),
            "{}",
            stderr(&output)
        );
    }
    assert!(!read_only.join("new.txt").exists());
    // The host's own paths are not visible.
    let host_path = read_only.join("in.txt");
    let output = run(&["read", host_path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));

    // Without -v the same write fails.
    let output = home.run(&["run", image, "write", "/out/other.txt", "x"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(!writable.join("other.txt").exists());
}

#[test]
fn a_volume_needs_an_existing_host_folder_and_an_absolute_guest_path() {
    let home = Home::new();
    let image = build_probe(&home);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let spec = format!("{}:/data", missing.display());
    let output = home.run(&["run", "-v", &spec, image]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!("error: -v {spec}: {} does not exist\n", missing.display())
    );
    let spec = format!("{}:data", dir.path().display());
    let output = home.run(&["run", "-v", &spec, image]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("the guest path `data` must be absolute"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn guest_exit_codes_and_traps() {
    let home = Home::new();
    let image = build_probe(&home);
    for code in ["0", "1", "42"] {
        let output = home.run(&["run", image, "exit", code]);
        assert_eq!(output.status.code(), Some(code.parse().unwrap()));
        assert_eq!(stderr(&output), "");
    }
    let output = home.run(&["run", image, "trap"]);
    assert_eq!(output.status.code(), Some(134));
    let err = stderr(&output);
    assert!(
        err.starts_with(
            "error: /probe.wasm trapped: wasm `unreachable` instruction executed\nwasm backtrace:\n"
        ),
        "{err}"
    );
    // Frames name their functions, from the module's name section.
    assert!(err.contains(".wasm!probe::main"), "{err}");
    assert!(err.contains(".wasm!_start"), "{err}");
}

#[test]
fn stdin_reaches_the_guest_only_with_interactive() {
    let home = Home::new();
    let image = build_probe(&home);
    let mut command = home.cmd();
    command.args(["run", image, "cat"]);
    let output = with_stdin(command, b"typed by a person\n");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "", "without -i the guest's stdin is empty");
    for flag in ["-i", "--interactive"] {
        let mut command = home.cmd();
        command.args(["run", flag, image, "cat"]);
        let output = with_stdin(command, b"typed by a person\n");
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(stdout(&output), "typed by a person\n");
    }
}

#[test]
fn timeout_stops_a_spinning_guest_with_124() {
    let home = Home::new();
    let image = build_probe(&home);
    let started = Instant::now();
    let output = home.run(&["run", "--timeout", "1s", image, "spin"]);
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(124), "{}", stderr(&output));
    // Written before the loop, without a newline: stdout is not held back.
    assert_eq!(stdout(&output), "spinning");
    assert_eq!(
        stderr(&output),
        "error: the guest ran for longer than --timeout 1s\n"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // Within its time, a guest runs as without one.
    let output = home.run(&["run", "--timeout", "30s", image, "exit", "42"]);
    assert_eq!(output.status.code(), Some(42));
}

#[test]
fn timeout_stops_a_guest_blocked_reading_stdin() {
    let home = Home::new();
    let image = build_probe(&home);
    let started = Instant::now();
    let mut child = home
        .cmd()
        .args(["run", "-i", "--timeout", "500ms", image, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // stdin stays open and silent: the guest waits in a host call, where no epoch check
    // can stop it.
    let stdin = child.stdin.take().unwrap();
    let output = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(output.status.code(), Some(124), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "error: the guest ran for longer than --timeout 500ms\n"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn memory_limit_fails_a_guest_that_grows_past_it() {
    let home = Home::new();
    let image = build_probe(&home);
    let output = home.run(&["run", "--memory", "16m", image, "grow"]);
    assert_eq!(output.status.code(), Some(134));
    let err = stderr(&output);
    // Rust's allocator reports the failed allocation, then aborts.
    assert!(
        err.contains(
            "error: the guest exceeded --memory 16m\n  caused by: /probe.wasm trapped: wasm `unreachable` instruction executed\nwasm backtrace:\n"
        ),
        "{err}"
    );
    // Under the limit nothing changes.
    assert_eq!(
        home.ok(&["run", "--memory", "16m", image]),
        "[\"/probe.wasm\", \"args\", \"from-cmd\"]\n"
    );
    // A limit below what the module starts with fails before it runs.
    let output = home.run(&["run", "--memory", "64k", image]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with(
            "error: the guest exceeded --memory 64k\n  caused by: cannot instantiate /probe.wasm\n"
        ),
        "{}",
        stderr(&output)
    );
    let output = home.run(&["run", "--memory", "16q", image]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("expected a size like 64m"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn fuel_stops_a_spinning_guest_with_152() {
    let home = Home::new();
    let image = build_probe(&home);
    let output = home.run(&["run", "--fuel", "1000000", image, "spin"]);
    assert_eq!(output.status.code(), Some(152));
    assert_eq!(stdout(&output), "spinning");
    assert_eq!(
        stderr(&output),
        "error: the guest ran out of fuel (--fuel 1000000)\n"
    );
    // Enough fuel: the guest runs, compiled to count it (the precompiled artifact does not).
    let output = run_debug(&home, &["--fuel", "100000000", image, "exit", "0"]);
    let err = stderr(&output);
    assert!(
        err.starts_with("debug: --fuel: compiling the module to count fuel\n"),
        "{err}"
    );
    assert!(!err.contains("using precompiled"), "{err}");
    // The first run compiled it and kept it apart from the module without fuel.
    assert!(
        err.contains("debug: using cached compiled module "),
        "{err}"
    );
}

// `-p`: a listening socket for a WASI preview 1 server (fixtures/http-server).

const HTTP_BODY: &str = "hello from wasmbuild over HTTP\n";

/// A port on 127.0.0.1 that nothing listens on at the moment.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A `wasmbuild run` in the background, killed when the test ends, passed or not.
struct Server(std::process::Child);

impl Server {
    fn start(home: &Home, args: &[&str]) -> Server {
        let child = home
            .cmd()
            .arg("run")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Server(child)
    }

    /// The body `curl` gets from `url`, once the server answers.
    fn answer(&mut self, url: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(body) = curl(&[url]) {
                return body;
            }
            if let Some(status) = self.0.try_wait().unwrap() {
                panic!(
                    "the server ended ({status}) before answering:\n{}",
                    self.stop()
                );
            }
            assert!(Instant::now() < deadline, "no answer from {url}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills it; returns what it wrote to stderr.
    fn stop(&mut self) -> String {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let mut err = String::new();
        if let Some(mut pipe) = self.0.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut err).unwrap();
        }
        err
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `curl -s ARGS`'s stdout; `None` when curl fails (nothing answers yet).
fn curl(args: &[&str]) -> Option<String> {
    let output = Command::new(crate::support::require("curl"))
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    output.status.success().then(|| stdout(&output))
}

#[test]
fn publish_hands_a_listening_socket_to_a_wasi_server() {
    let home = Home::new();
    home.build("http-server", &[]);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    // The image's root is fd 3, so the socket is fd 4: GUEST_FD says so.
    let published = format!("127.0.0.1:{port}:4");
    let mut server = Server::start(&home, &["-p", &published, "localhost/http-server"]);
    assert_eq!(server.answer(&url), HTTP_BODY);
    // It serves until killed, each answer whole and the connection closed.
    let head = curl(&["-i", &format!("{url}index.html")]).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
    assert!(head.ends_with(&format!("\r\n\r\n{HTTP_BODY}")), "{head}");
    for _ in 0..20 {
        assert_eq!(curl(&[&url]).as_deref(), Some(HTTP_BODY));
    }
    let err = server.stop();
    assert!(err.contains("serving HTTP on fd 4\n"), "{err}");

    // Each -v folder comes before the socket; the guest is told where it is.
    let shared = tempfile::tempdir().unwrap();
    let volume = format!("{}:/data", shared.path().display());
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let mut server = Server::start(
        &home,
        &[
            "-v",
            &volume,
            "-p",
            &port.to_string(),
            "localhost/http-server",
        ],
    );
    assert_eq!(server.answer(&url), HTTP_BODY);
    let err = server.stop();
    assert!(err.contains("serving HTTP on fd 5\n"), "{err}");
}

#[test]
fn publish_refuses_a_port_in_use_and_a_wrong_guest_fd() {
    let home = Home::new();
    let _project = build_portable(&home);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let port = address.port().to_string();
    let output = home.run(&["run", "-p", &port, "localhost/portable:1"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "", "the guest never ran");
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!(
            "error: cannot listen on {address} (-p {port})\n  caused by: "
        )),
        "{err}"
    );
    drop(taken);

    let flag = format!("{}:3", free_port());
    let output = home.run(&["run", "-p", &flag, "localhost/portable:1"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!(
            "error: -p {flag}: the socket would be fd 4, not 3 (listeners take the fds right after \
             the preopened folders, fds 3 to 3, in the order of the -p flags)\n"
        )
    );

    let output = home.run(&["run", "-p", "localhost:80", "localhost/portable:1"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("\"localhost\" is not a port number"),
        "{}",
        stderr(&output)
    );
}
