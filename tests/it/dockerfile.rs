//! `wasmbuild build -f Dockerfile`: the Dockerfile Docker's Wasm guide shows gives the same
//! image as the equivalent Wasmfile, runs, and the instructions a Wasm image cannot have are
//! refused with their place in the file.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::support::{Home, digest_of, fixture, stderr, stdout};

/// Temp copies of `fixtures/dockerfile` and `fixtures/dockerfile-wasmfile`, each with a
/// `hello.wasm` freshly built from `fixtures/hello`.
struct Contexts {
    _dir: TempDir,
    dockerfile: PathBuf,
    wasmfile: PathBuf,
}

fn copy_flat(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() && entry.file_name() != "hello.wasm" {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn contexts(home: &Home) -> Contexts {
    let dir = tempfile::Builder::new()
        .prefix("wasmbuild-dockerfile-")
        .tempdir()
        .unwrap();
    let dockerfile = dir.path().join("dockerfile");
    let wasmfile = dir.path().join("wasmfile");
    copy_flat(&fixture("dockerfile"), &dockerfile);
    copy_flat(&fixture("dockerfile-wasmfile"), &wasmfile);
    home.ok(&[
        "build",
        fixture("hello").to_str().unwrap(),
        "-o",
        dockerfile.to_str().unwrap(),
    ]);
    std::fs::copy(dockerfile.join("hello.wasm"), wasmfile.join("hello.wasm")).unwrap();
    Contexts {
        _dir: dir,
        dockerfile,
        wasmfile,
    }
}

fn config(home: &Home, reference: &str) -> serde_json::Value {
    let inspect = home.ok(&["inspect", "--json", reference]);
    let json: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    json["config"].clone()
}

#[test]
fn the_docker_guide_dockerfile_builds_the_wasmfiles_image_and_runs() {
    let home = Home::new();
    let contexts = contexts(&home);
    let from_dockerfile = home.ok(&[
        "build",
        "-f",
        contexts.dockerfile.join("Dockerfile").to_str().unwrap(),
        contexts.dockerfile.to_str().unwrap(),
        "-t",
        "localhost/hello:dockerfile",
    ]);
    let from_wasmfile = home.ok(&[
        "build",
        contexts.wasmfile.to_str().unwrap(),
        "-t",
        "localhost/hello:wasmfile",
    ]);
    assert!(
        from_dockerfile.starts_with("localhost/hello:dockerfile@sha256:"),
        "{from_dockerfile}"
    );

    let docker_config = config(&home, "localhost/hello:dockerfile");
    assert_eq!(docker_config, config(&home, "localhost/hello:wasmfile"));
    assert_eq!(
        docker_config["config"],
        serde_json::json!({
            "Entrypoint": ["/hello.wasm"],
            "Cmd": ["world"],
            "Env": ["GREETING=Hello from a Dockerfile"],
            "WorkingDir": "/srv",
            "Labels": {
                "org.example.built-with": "wasmbuild",
                "org.opencontainers.image.title": "hello"
            }
        })
    );
    // Same config, same layer: the same image.
    assert_eq!(
        digest_of(from_dockerfile.trim()),
        digest_of(from_wasmfile.trim())
    );

    assert_eq!(
        home.ok(&["run", "localhost/hello:dockerfile"]),
        "Hello from a Dockerfile, world!\nargv[0]=/hello.wasm\n"
    );
}

#[test]
fn build_args_override_arg_defaults_in_both() {
    let home = Home::new();
    let contexts = contexts(&home);
    let from_dockerfile = home.ok(&[
        "build",
        "-f",
        contexts.dockerfile.join("Dockerfile").to_str().unwrap(),
        contexts.dockerfile.to_str().unwrap(),
        "--build-arg",
        "GREETING=Hi",
        "-t",
        "localhost/hello:hi",
    ]);
    let from_wasmfile = home.ok(&[
        "build",
        contexts.wasmfile.to_str().unwrap(),
        "--build-arg",
        "GREETING=Hi",
    ]);
    assert_eq!(
        digest_of(from_dockerfile.trim()),
        digest_of(from_wasmfile.trim())
    );
    assert_eq!(
        home.ok(&["run", "localhost/hello:hi", "there"]),
        "Hi, there!\nargv[0]=/hello.wasm\n"
    );
}

#[test]
fn a_dockerfile_is_found_by_name_by_content_or_in_dir() {
    let home = Home::new();
    let contexts = contexts(&home);
    let dir = contexts.dockerfile.to_str().unwrap();
    let expected = home.ok(&[
        "build",
        "-f",
        contexts.dockerfile.join("Dockerfile").to_str().unwrap(),
        dir,
    ]);
    assert!(
        expected.starts_with("docker.io/library/hello:latest@sha256:"),
        "named after the module without -t: {expected}"
    );

    // No Wasmfile in DIR: DIR/Dockerfile, as `docker build DIR` reads it.
    assert_eq!(home.ok(&["build", dir]), expected);

    // Any name, recognized by its FROM line; and `-f` relative to where wasmbuild runs.
    std::fs::copy(
        contexts.dockerfile.join("Dockerfile"),
        contexts.dockerfile.join("image.conf"),
    )
    .unwrap();
    let output = home
        .cmd()
        .current_dir(&contexts.dockerfile)
        .args(["build", "-f", "image.conf", "."])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), expected);
}

#[test]
fn run_in_a_dockerfile_is_refused_with_its_place() {
    let home = Home::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nRUN cargo build --release --target wasm32-wasip1\n\
         COPY target/wasm32-wasip1/release/hello.wasm /hello.wasm\nENTRYPOINT [\"/hello.wasm\"]\n",
    )
    .unwrap();
    let output = home
        .cmd()
        .current_dir(dir.path())
        .args(["build", "-f", "Dockerfile", "."])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
    assert_eq!(
        stderr(&output),
        "error: Dockerfile:2:1: RUN is not supported: there is no shell to run commands in a \
         Wasm image; build the module first (cargo/clang/go via a Wasmfile, or your own \
         tooling) and COPY it\n"
    );
    assert!(
        !home.store().join("index.json").exists(),
        "nothing was stored"
    );
}

#[test]
fn a_shell_form_entrypoint_is_refused_with_the_json_form_to_write() {
    let home = Home::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.Dockerfile"),
        "FROM scratch\nCOPY app.wasm /\nENTRYPOINT /app.wasm --serve\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("app.wasm"), "\0asm").unwrap();
    let output = home
        .cmd()
        .current_dir(dir.path())
        .args(["build", "-f", "app.Dockerfile"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "error: app.Dockerfile:3:12: ENTRYPOINT in shell form is not supported: it runs \
         /bin/sh -c, and a Wasm image has no shell\n  \
         hint: use the exec (JSON) form: ENTRYPOINT [\"/app.wasm\", \"--serve\"]\n"
    );
}
