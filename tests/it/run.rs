//! `wasmbuild run`: Cmd, Env, arguments, exit codes and the image's files; what it keeps in
//! the cache between runs (the unpacked root, the compiled module, verified blobs).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

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
