//! Independent tools read what wasmbuild wrote: skopeo reads the store and the archive, the
//! Python wasmtime package runs the module with the same output as `wasmbuild run`.

use std::process::Command;

use crate::support::{Home, digest_of, repo, require, skopeo, stderr, stdout};

#[test]
fn skopeo_reads_the_store_and_copies_the_image() {
    let home = Home::new();
    let line = home.build("hello", &["-t", "ghcr.io/me/hello:1.0"]);
    let source = format!("oci:{}:ghcr.io/me/hello:1.0", home.store().display());

    let raw = skopeo(&["inspect", "--raw", &source]);
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    // The manifest's bytes are the ones the digest names.
    assert_eq!(
        format!("sha256:{}", sha256_hex(raw.as_bytes())),
        digest_of(&line)
    );

    let config: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--config", "--raw", &source])).unwrap();
    assert_eq!(config["os"], "wasi");
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/hello.wasm"])
    );

    let copy = tempfile::tempdir().unwrap();
    let target = format!("oci:{}:copied", copy.path().display());
    skopeo(&["copy", "--quiet", &source, &target]);
    let copied = skopeo(&["inspect", "--raw", &target]);
    assert_eq!(copied, raw, "skopeo copied the manifest byte for byte");
}

#[test]
fn skopeo_reads_a_saved_archive() {
    let home = Home::new();
    let line = home.build("hello", &[]);
    let archive = home.dir.path().join("hello.tar");
    home.ok(&["save", "-o", archive.to_str().unwrap(), "hello"]);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        &format!(
            "oci-archive:{}:docker.io/library/hello:latest",
            archive.display()
        ),
    ]);
    assert_eq!(
        format!("sha256:{}", sha256_hex(raw.as_bytes())),
        digest_of(&line)
    );
}

#[test]
fn python_wasmtime_runs_the_module_with_the_same_output() {
    let python = require("python3");
    for (fixture, reference, args) in [
        ("hello", "docker.io/library/hello:latest", vec![]),
        (
            "hello",
            "docker.io/library/hello:latest",
            vec!["from", "python"],
        ),
        ("copy", "localhost/site:latest", vec![]),
    ] {
        let home = Home::new();
        home.build(fixture, &[]);
        let mut ours = vec!["run", reference];
        ours.extend(&args);
        let ours = home.run(&ours);
        let theirs = Command::new(&python)
            .arg(repo().join("tests/python/run_from_store.py"))
            .arg(home.store())
            .arg(reference)
            .args(&args)
            .output()
            .expect("run python3");
        assert!(
            theirs.status.success(),
            "python wasmtime failed:\n{}",
            stderr(&theirs)
        );
        assert_eq!(stdout(&theirs), stdout(&ours), "{fixture} {args:?}");
        assert_eq!(theirs.status.code(), ours.status.code());
        assert!(!stdout(&ours).is_empty());
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let output = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn the_distribution_registry_accepts_the_image() {
    let registry = std::env::var("WASMBUILD_TEST_REGISTRY")
        .expect("WASMBUILD_TEST_REGISTRY is not set: run `scripts/test`, which starts a registry");
    let home = Home::new();
    let line = home.build("hello", &[]);
    let source = format!(
        "oci:{}:docker.io/library/hello:latest",
        home.store().display()
    );
    let target = format!("docker://{registry}/wasmbuild-test/hello:interop");
    skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--preserve-digests",
        &source,
        &target,
    ]);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &target]);
    assert_eq!(
        format!("sha256:{}", sha256_hex(raw.as_bytes())),
        digest_of(&line)
    );
}
