//! Prebuilt modules, any-command builds, toolchain detection and the policy gate, through
//! the CLI.

use std::path::Path;
use std::process::Command;

use crate::support::{Home, fixture, repo, require, stderr, stdout};

/// A temp project: `files` written under a fresh folder.
fn project(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    dir
}

fn build_fails(home: &Home, dir: &Path) -> String {
    let output = home.run(&["build", dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    stderr(&output)
}

fn python_runs(home: &Home, reference: &str) -> String {
    let output = Command::new(require("python3"))
        .arg(repo().join("tests/python/run_from_store.py"))
        .arg(home.store())
        .arg(reference)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
}

#[test]
fn a_prebuilt_module_is_packed_as_it_is_and_runs() {
    let home = Home::new();
    let line = home.build("prebuilt", &["-t", "localhost/prebuilt:1"]);
    assert!(line.starts_with("localhost/prebuilt:1@sha256:"), "{line}");
    let output = home.run(&["run", "localhost/prebuilt:1"]);
    assert_eq!(stdout(&output), "Hello from a prebuilt module\n");
    assert_eq!(
        python_runs(&home, "localhost/prebuilt:1"),
        "Hello from a prebuilt module\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&home.ok(&["inspect", "--json", "localhost/prebuilt:1"])).unwrap();
    assert_eq!(
        json["config"]["config"]["Entrypoint"],
        serde_json::json!(["/hello.wasm"])
    );
    assert_eq!(json["module"]["memories"][0]["initial_pages"], 1);
    assert_eq!(json["module"]["features"], serde_json::json!([]));
}

#[test]
fn the_prebuilt_fixture_is_its_wat_source_compiled() {
    let python = require("python3");
    let output = Command::new(python)
        .args(["-c", "import sys, wasmtime; sys.stdout.buffer.write(wasmtime.wat2wasm(open(sys.argv[1]).read()))"])
        .arg(fixture("prebuilt/hello.wat"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        output.stdout,
        std::fs::read(fixture("prebuilt/hello.wasm")).unwrap(),
        "regenerate hello.wasm from hello.wat"
    );
}

#[test]
fn a_command_build_runs_make_and_takes_its_output() {
    require("make");
    let home = Home::new();
    let output = home.run(&["build", fixture("command-make").to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("=> compile: make wasm"),
        "{}",
        stderr(&output)
    );
    assert!(
        stdout(&output).starts_with("docker.io/library/app:latest@sha256:"),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        stdout(&home.run(&["run", "app"])),
        "built by make, run by wasmbuild\n"
    );
}

#[test]
fn a_command_that_leaves_no_module_is_named() {
    let dir = project(&[(
        "Wasmfile",
        b"[build]\ncommand = [\"true\"]\noutput = \"out/app.wasm\"\n",
    )]);
    let home = Home::new();
    let err = build_fails(&home, dir.path());
    let canonical = dir.path().canonicalize().unwrap();
    assert!(
        err.ends_with(&format!(
            "error: `true` succeeded but left no module at {}\n  hint: set `[build] output` to where the command writes the module (relative to the context)\n",
            canonical.join("out/app.wasm").display()
        )),
        "{err}"
    );
}

#[test]
fn a_failing_command_shows_its_output_and_status() {
    let dir = project(&[("Wasmfile", b"[build]\ncommand = [\"sh\", \"-c\", \"echo making; echo broken >&2; exit 3\"]\noutput = \"app.wasm\"\n")]);
    let home = Home::new();
    let err = build_fails(&home, dir.path());
    assert!(err.contains("   making\n"), "{err}");
    assert!(err.contains("   broken\n"), "{err}");
    assert!(
        err.ends_with(
            "error: `sh -c 'echo making; echo broken >&2; exit 3'` failed (exit status: 3)\n"
        ),
        "{err}"
    );
}

#[test]
fn cargo_is_detected_from_cargo_toml() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["Cargo.toml", "Cargo.lock", "src/main.rs"] {
        let to = dir.path().join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixture("hello").join(name), to).unwrap();
    }
    std::fs::write(
        dir.path().join("Wasmfile"),
        "[image]\ncmd = [\"detected\"]\n",
    )
    .unwrap();
    let home = Home::new();
    let output = home.run(&["build", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("=> compile: cargo build --target wasm32-wasip1"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        stdout(&home.run(&["run", "hello"])),
        "Hello, detected!\nargv[0]=/hello.wasm\n"
    );
}

#[test]
fn nothing_to_detect_is_a_clear_error() {
    let dir = project(&[
        ("Wasmfile", b"[image]\ncmd = []\n"),
        ("README", b"no sources\n"),
    ]);
    let home = Home::new();
    let err = build_fails(&home, dir.path());
    let canonical = dir.path().canonicalize().unwrap();
    assert_eq!(
        err.lines().next().unwrap(),
        format!(
            "error: {}: cannot tell which toolchain builds this project: {} has no Cargo.toml, go.mod or *.c file",
            canonical.join("Wasmfile").display(),
            canonical.display()
        )
    );
}

/// A reactor: exports `_initialize` and no `_start`.
const REACTOR: &[u8] = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x02\x01\0\x07\x0f\x01\x0b_initialize\0\0\x0a\x04\x01\x02\0\x0b";

#[test]
fn a_reactor_is_refused_unless_the_wasmfile_says_reactor() {
    let dir = project(&[
        ("lib.wasm", REACTOR),
        ("Wasmfile", b"[build]\nmodule = \"lib.wasm\"\n"),
    ]);
    let home = Home::new();
    let err = build_fails(&home, dir.path());
    assert!(
        err.ends_with(
            "  caused by: it is a reactor (it exports `_initialize` and no `_start`), not a command\n  \
             hint: to pack it as a library for a host to call, set `[build] exec-model = \"reactor\"`\n"
        ),
        "{err}"
    );
    // wasm-opt -Os would grow this hand-made module by a byte (a `nop` in its empty
    // body), which stops the build by default; optimizing is not what this test is about.
    std::fs::write(
        dir.path().join("Wasmfile"),
        "[build]\nmodule = \"lib.wasm\"\nexec-model = \"reactor\"\n\n[optimize]\nlevel = \"none\"\n",
    )
    .unwrap();
    let line = home.ok(&["build", dir.path().to_str().unwrap()]);
    assert!(
        line.starts_with("docker.io/library/lib:latest@sha256:"),
        "{line}"
    );
}

#[test]
fn a_component_is_not_supported_yet() {
    let dir = project(&[
        ("app.wasm", b"\0asm\x0d\0\x01\0"),
        ("Wasmfile", b"[build]\nmodule = \"app.wasm\"\n"),
    ]);
    let home = Home::new();
    let err = build_fails(&home, dir.path());
    assert!(
        err.ends_with(
            "  caused by: it is a WebAssembly component (WASI preview 2); components are not supported yet, only core modules (WASI preview 1)\n  \
             hint: build for `wasm32-wasip1`, not `wasm32-wasip2`\n"
        ),
        "{err}"
    );
}

#[test]
fn allow_imports_admits_what_the_host_provides() {
    let src = fixture("broken/imports-env");
    let dir = tempfile::tempdir().unwrap();
    for name in ["Cargo.toml", "Cargo.lock", "src/main.rs"] {
        let to = dir.path().join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(src.join(name), to).unwrap();
    }
    std::fs::write(
        dir.path().join("Wasmfile"),
        "[build]\ntoolchain = \"cargo\"\nallow-imports = [\"env.host_log\"]\n",
    )
    .unwrap();
    let home = Home::new();
    let line = home.ok(&["build", dir.path().to_str().unwrap()]);
    assert!(
        line.starts_with("docker.io/library/imports-env:latest@sha256:"),
        "{line}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&home.ok(&["inspect", "--json", "imports-env"])).unwrap();
    let imports = json["module"]["imports"].as_array().unwrap();
    assert!(
        imports
            .iter()
            .any(|i| i["module"] == "env" && i["name"] == "host_log")
    );
    // Nothing here provides `env.host_log`: run says so instead of crashing.
    let output = home.run(&["run", "imports-env"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("env::host_log"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn inspect_shows_features_memory_and_producers_of_a_rust_module() {
    let home = Home::new();
    // The default `strip = "debug"` removes `producers`: keep it.
    let wasmfile = tempfile::Builder::new()
        .prefix("inspect-")
        .suffix(".Wasmfile")
        .tempfile_in(fixture("hello"))
        .unwrap();
    std::fs::write(
        wasmfile.path(),
        "[build]\ntoolchain = \"cargo\"\n\n[optimize]\nstrip = \"none\"\n",
    )
    .unwrap();
    home.ok(&[
        "build",
        fixture("hello").to_str().unwrap(),
        "-f",
        wasmfile.path().to_str().unwrap(),
    ]);
    let json: serde_json::Value =
        serde_json::from_str(&home.ok(&["inspect", "--json", "hello"])).unwrap();
    let features: Vec<&str> = json["module"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    // What current rustc uses for wasm32-wasip1 by default, and this program exercises.
    for feature in ["bulk-memory", "sign-ext"] {
        assert!(
            features.contains(&feature),
            "{feature} missing from {features:?}"
        );
    }
    assert!(
        json["module"]["producers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["field"] == "language" && p["name"] == "Rust")
    );
    let human = home.ok(&["inspect", "hello"]);
    assert!(human.contains("Features:    "), "{human}");
    assert!(human.contains("Memory:      "), "{human}");
    assert!(human.contains("Producers:   "), "{human}");
}

#[test]
fn a_missing_cargo_says_how_to_install_rust() {
    let home = Home::new();
    let output = home
        .cmd()
        .env("PATH", "/nonexistent")
        .args(["build", fixture("hello").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    let error = &err[err.find("error: ").unwrap()..];
    assert_eq!(
        error,
        "error: cannot run `cargo build --target wasm32-wasip1 --message-format=json-render-diagnostics --profile release --locked`\n  \
         caused by: No such file or directory (os error 2)\n  \
         hint: install Rust with rustup (https://rustup.rs), then `rustup target add wasm32-wasip1`\n"
    );
}
