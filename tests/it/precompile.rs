//! `[precompile]`: cwasm artifacts that refer to their image, kept with it in the store,
//! written by `-o`, and used by `run` when they match this host (and passed over, with a
//! note, when they do not).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{Home, digest_of, stderr, stdout};

const X86: &str = "x86_64-unknown-linux-gnu";
const ARM: &str = "aarch64-unknown-linux-gnu";
const HELLO_OUT: &str = "Hello from wasmbuild, world!\nargv[0]=/hello.wasm\n";

/// This host's triple and a target that is not it (the tests run on Linux with glibc).
fn host_and_other() -> (String, &'static str) {
    let host = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let other = if host == ARM { X86 } else { ARM };
    (host, other)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// A prebuilt project holding fixtures/hello's module, with `[precompile] targets` set.
fn prebuilt_hello(targets: &str) -> TempDir {
    let project = tempfile::tempdir().unwrap();
    Home::new().build("hello", &["-o", project.path().to_str().unwrap()]);
    std::fs::write(
        project.path().join("Wasmfile"),
        format!(
            "[build]\ntoolchain = \"prebuilt\"\nmodule = \"hello.wasm\"\n\n\
             [image]\ncmd = [\"world\"]\nenv = {{ GREETING = \"Hello from wasmbuild\" }}\n\n\
             [precompile]\ntargets = {targets}\n"
        ),
    )
    .unwrap();
    project
}

fn build_dir(home: &Home, dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["build", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    home.ok(&args).lines().next().unwrap().to_owned()
}

fn index(home: &Home) -> Value {
    json(&std::fs::read_to_string(home.store().join("index.json")).unwrap())
}

fn blob_path(home: &Home, digest: &str) -> PathBuf {
    home.store()
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn blob(home: &Home, digest: &str) -> Vec<u8> {
    std::fs::read(blob_path(home, digest)).unwrap()
}

/// The referrer manifests `index.json` holds for the image `subject`, by target.
fn referrers(home: &Home, subject: &str) -> Vec<(String, Value)> {
    let mut found: Vec<(String, Value)> = index(home)["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["annotations"]["dev.wasmbuild.subject"] == subject)
        .map(|e| {
            let digest = e["digest"].as_str().unwrap().to_owned();
            let manifest = json(std::str::from_utf8(&blob(home, &digest)).unwrap());
            (digest, manifest)
        })
        .collect();
    found.sort_by_key(|(_, m)| m["annotations"]["dev.wasmbuild.target"].to_string());
    found
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
    String::from_utf8(output.stdout).unwrap()[..64].to_owned()
}

/// Edits the `target` referrer of `subject` the way a store written by another wasmbuild
/// might look: a new manifest blob, and its `index.json` entry pointed at it.
fn rewrite_referrer(home: &Home, subject: &str, target: &str, edit: impl FnOnce(&mut Value)) {
    let (old, mut manifest) = referrers(home, subject)
        .into_iter()
        .find(|(_, m)| m["annotations"]["dev.wasmbuild.target"] == target)
        .unwrap();
    edit(&mut manifest);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = format!("sha256:{}", sha256_hex(&bytes));
    std::fs::write(blob_path(home, &digest), &bytes).unwrap();
    let mut index = index(home);
    for entry in index["manifests"].as_array_mut().unwrap() {
        if entry["digest"] == old.as_str() {
            entry["digest"] = digest.clone().into();
            entry["size"] = bytes.len().into();
        }
    }
    std::fs::write(
        home.store().join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

#[test]
fn default_targets_make_a_referrer_each_and_output_writes_the_cwasm_files() {
    let home = Home::new();
    let out = tempfile::tempdir().unwrap();
    let stdout = home.ok(&[
        "build",
        crate::support::fixture("hello").to_str().unwrap(),
        "-o",
        out.path().to_str().unwrap(),
    ]);
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout is only the reference: {stdout}"
    );
    let image = digest_of(stdout.trim()).to_owned();

    let mut files: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            format!("hello.{ARM}.cwasm"),
            "hello.wasm".to_owned(),
            format!("hello.{X86}.cwasm"),
        ]
    );

    let (host, other) = host_and_other();
    let inspected = json(&home.ok(&["inspect", "--json", "hello"]));
    let precompiled = inspected["precompiled"].as_array().unwrap();
    let targets: Vec<&str> = precompiled
        .iter()
        .map(|p| p["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, [ARM, X86]);
    for p in precompiled {
        assert_eq!(p["wasmtime"], "48.0.8");
        let usable = p["target"] == host.as_str();
        assert_eq!(p["usable"], usable, "{p}");
        if !usable {
            assert_eq!(
                p["reason"],
                format!("it is for {other}, this host is {host}")
            );
        }
    }
    let human = home.ok(&["inspect", "hello"]);
    let line = |target: &str| {
        human
            .lines()
            .find(|l| l.starts_with(&format!("Precompiled: {target}, wasmtime 48.0.8, ")))
            .unwrap_or_else(|| panic!("no line for {target} in:\n{human}"))
    };
    assert!(
        line(&host).ends_with(" kB, usable on this host: yes"),
        "{human}"
    );
    assert!(
        line(other).ends_with(&format!(
            " kB, usable on this host: no (it is for {other}, this host is {host})"
        )),
        "{human}"
    );

    // The referrers as the store holds them: OCI 1.1 artifact manifests whose subject is
    // the image, each with the cwasm that `-o` wrote as its one layer.
    let found = referrers(&home, &image);
    assert_eq!(found.len(), 2);
    let image_size = blob(&home, &image).len();
    for (digest, manifest) in &found {
        let target = manifest["annotations"]["dev.wasmbuild.target"]
            .as_str()
            .unwrap();
        let title = format!("hello.{target}.cwasm");
        let cwasm = std::fs::read(out.path().join(&title)).unwrap();
        assert_eq!(&cwasm[..4], b"\x7fELF");
        let layer = &manifest["layers"][0];
        assert_eq!(
            *manifest,
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": "application/vnd.wasmbuild.precompiled.v1",
                "config": {
                    "mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                    "size": 2
                },
                "layers": [{
                    "mediaType": "application/vnd.wasmbuild.precompiled.cwasm.v1",
                    "digest": format!("sha256:{}", sha256_hex(&cwasm)),
                    "size": cwasm.len(),
                    "annotations": {"org.opencontainers.image.title": title}
                }],
                "subject": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": image,
                    "size": image_size
                },
                "annotations": {
                    "dev.wasmbuild.engine": manifest["annotations"]["dev.wasmbuild.engine"],
                    "dev.wasmbuild.target": target,
                    "dev.wasmbuild.wasmtime.version": "48.0.8",
                    "org.opencontainers.image.title": title
                }
            }),
            "{digest}"
        );
        assert!(
            manifest["annotations"]["dev.wasmbuild.engine"]
                .as_str()
                .unwrap()
                .starts_with("cranelift opt-level=speed; compat sha256:")
        );
        assert_eq!(blob(&home, layer["digest"].as_str().unwrap()), cwasm);
        assert_eq!(
            blob(
                &home,
                "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
            ),
            b"{}"
        );
    }
    // Not images of their own.
    let images = json(&home.ok(&["images", "--json"]));
    assert_eq!(images.as_array().unwrap().len(), 1);
}

#[test]
fn two_homes_give_byte_identical_cwasm_and_the_same_digests() {
    let build = || {
        let home = Home::new();
        let out = tempfile::tempdir().unwrap();
        let line = home.build("hello", &["-o", out.path().to_str().unwrap()]);
        let image = digest_of(&line).to_owned();
        let referrers: Vec<String> = referrers(&home, &image)
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        let cwasm: Vec<Vec<u8>> = [X86, ARM]
            .iter()
            .map(|t| std::fs::read(out.path().join(format!("hello.{t}.cwasm"))).unwrap())
            .collect();
        (image, referrers, cwasm)
    };
    let first = build();
    let second = build();
    assert_eq!(first.0, second.0, "the image digest");
    assert_eq!(first.1, second.1, "the referrer digests");
    assert!(first.2 == second.2, "the cwasm files differ");
}

#[test]
fn run_uses_the_artifact_for_this_host() {
    let (host, _) = host_and_other();
    let home = Home::new();
    home.build("hello", &[]);
    let image = json(&home.ok(&["inspect", "--json", "hello"]));
    let cwasm = image["precompiled"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["target"] == host.as_str())
        .unwrap()["digest"]
        .clone();
    assert!(cwasm.is_string());

    let output = home
        .cmd()
        .env("WASMBUILD_LOG", "debug")
        .args(["run", "hello"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), HELLO_OUT);
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!("debug: using precompiled {host} (sha256:")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    // Without the debug switch the guest's stderr is its own.
    let output = home.run(&["run", "hello"]);
    assert_eq!(stdout(&output), HELLO_OUT);
    assert_eq!(stderr(&output), "");
}

#[test]
fn an_artifact_for_another_target_is_passed_over_with_a_note() {
    let (host, other) = host_and_other();
    let project = prebuilt_hello(&format!("[\"{other}\"]"));
    let home = Home::new();
    build_dir(&home, project.path(), &[]);
    let output = home
        .cmd()
        .env("WASMBUILD_LOG", "debug")
        .args(["run", "hello"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), HELLO_OUT);
    assert_eq!(
        stderr(&output),
        format!(
            "note: precompiled artifact for {other} (wasmtime 48.0.8) does not match this host \
             ({host}); compiling the portable module\ndebug: compiling /hello.wasm\n"
        )
    );
    let quiet = home.run(&["run", "--quiet", "hello"]);
    assert_eq!(stdout(&quiet), HELLO_OUT);
    assert_eq!(stderr(&quiet), "", "--quiet keeps the note to itself");
}

#[test]
fn an_artifact_from_another_wasmtime_or_engine_is_passed_over_with_a_note() {
    let (host, other) = host_and_other();
    let home = Home::new();
    let image = digest_of(&home.build("hello", &[])).to_owned();
    let made = referrers(&home, &image);
    let annotation = |target: &str, key: &str| {
        made.iter()
            .find(|(_, m)| m["annotations"]["dev.wasmbuild.target"] == target)
            .unwrap()
            .1["annotations"][key]
            .clone()
    };
    let host_engine = annotation(&host, "dev.wasmbuild.engine");
    let other_layer = made
        .iter()
        .find(|(_, m)| m["annotations"]["dev.wasmbuild.target"] == other)
        .unwrap()
        .1["layers"][0]
        .clone();

    rewrite_referrer(&home, &image, &host, |m| {
        m["annotations"]["dev.wasmbuild.wasmtime.version"] = "47.0.1".into();
    });
    let output = home.run(&["run", "hello"]);
    assert_eq!(stdout(&output), HELLO_OUT);
    assert_eq!(
        stderr(&output),
        format!(
            "note: precompiled artifact for {host} (wasmtime 47.0.1) does not match this host's \
             wasmtime (48.0.8); compiling the portable module\n"
        )
    );
    let inspected = json(&home.ok(&["inspect", "--json", "hello"]));
    let stale = inspected["precompiled"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["target"] == host.as_str())
        .unwrap()
        .clone();
    assert_eq!(stale["usable"], false);
    assert_eq!(
        stale["reason"],
        "it was compiled by wasmtime 47.0.1, this is wasmtime 48.0.8"
    );

    rewrite_referrer(&home, &image, &host, |m| {
        m["annotations"]["dev.wasmbuild.wasmtime.version"] = "48.0.8".into();
        m["annotations"]["dev.wasmbuild.engine"] = "cranelift opt-level=none".into();
    });
    let output = home.run(&["run", "hello"]);
    assert_eq!(stdout(&output), HELLO_OUT);
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!(
            "note: precompiled artifact for {host} (wasmtime 48.0.8) does not match this host's \
             engine settings (cranelift opt-level=speed; compat sha256:"
        )) && err.ends_with("); compiling the portable module\n"),
        "{err}"
    );

    // Annotations that claim this host over code for another: wasmtime's own check of the
    // cwasm's header refuses it, and the portable module runs.
    rewrite_referrer(&home, &image, &host, |m| {
        m["annotations"]["dev.wasmbuild.engine"] = host_engine;
        m["layers"][0]["digest"] = other_layer["digest"].clone();
        m["layers"][0]["size"] = other_layer["size"].clone();
    });
    let output = home.run(&["run", "hello"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), HELLO_OUT);
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!(
            "note: cannot load the precompiled artifact for {host} ("
        )) && err.ends_with("); compiling the portable module\n"),
        "{err}"
    );
}

#[test]
fn a_corrupt_cwasm_blob_is_an_error_naming_it_and_never_runs() {
    let (host, _) = host_and_other();
    let home = Home::new();
    let image = digest_of(&home.build("hello", &[])).to_owned();
    let layer = referrers(&home, &image)
        .into_iter()
        .find(|(_, m)| m["annotations"]["dev.wasmbuild.target"] == host.as_str())
        .unwrap()
        .1["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = blob_path(&home, &layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let output = home.run(&["run", "hello"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "", "the guest never ran");
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!(
            "error: cannot read the precompiled {host} artifact of docker.io/library/hello:latest\n  \
             caused by: blob {layer} is corrupt: {} hashes to sha256:",
            path.canonicalize().unwrap().display()
        )),
        "{err}"
    );
    assert!(
        err.contains("\n  hint: the store was changed outside wasmbuild"),
        "{err}"
    );
}

#[test]
fn no_targets_no_referrers() {
    let project = prebuilt_hello("[]");
    let home = Home::new();
    let out = tempfile::tempdir().unwrap();
    build_dir(&home, project.path(), &["-o", out.path().to_str().unwrap()]);
    let inspected = json(&home.ok(&["inspect", "--json", "hello"]));
    assert_eq!(inspected["precompiled"], serde_json::json!([]));
    assert!(
        home.ok(&["inspect", "hello"])
            .contains("Precompiled: none\n")
    );
    assert_eq!(index(&home)["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        1,
        "only hello.wasm"
    );
    let output = home
        .cmd()
        .env("WASMBUILD_LOG", "debug")
        .args(["run", "hello"])
        .output()
        .unwrap();
    assert_eq!(stdout(&output), HELLO_OUT);
    assert_eq!(stderr(&output), "debug: compiling /hello.wasm\n");
}

#[test]
fn an_unknown_target_is_an_error_that_names_it() {
    let project = prebuilt_hello(&format!("[\"{X86}\", \"mips-unknown-linux-gnu\"]"));
    let home = Home::new();
    let output = home.run(&["build", project.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    let err = stderr(&output);
    assert!(
        err.contains(
            "error: cannot precompile for the target \"mips-unknown-linux-gnu\": Support for this \
             target has not been implemented yet\n  hint: set `[precompile] targets` to triples \
             wasmtime compiles for, such as x86_64-unknown-linux-gnu, aarch64-unknown-linux-gnu, \
             riscv64gc-unknown-linux-gnu, s390x-unknown-linux-gnu, "
        ),
        "{err}"
    );
    assert!(err.ends_with("; `[]` turns precompiling off\n"), "{err}");
    assert!(
        !home.store().join("index.json").exists()
            || index(&home)["manifests"].as_array().unwrap().is_empty(),
        "nothing was stored"
    );
}

#[test]
fn rmi_of_the_last_reference_removes_the_referrers_and_their_blobs() {
    let home = Home::new();
    let image = digest_of(&home.build("hello", &["-t", "hello:1", "-t", "hello:2"])).to_owned();
    assert_eq!(referrers(&home, &image).len(), 2);
    home.ok(&["rmi", "hello:2"]);
    assert_eq!(referrers(&home, &image).len(), 2, "hello:1 still names it");
    home.ok(&["rmi", "hello:1"]);
    assert_eq!(index(&home)["manifests"], serde_json::json!([]));
    let blobs = std::fs::read_dir(home.store().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0);
}

#[test]
fn save_and_load_carry_the_referrers() {
    let (host, _) = host_and_other();
    let home = Home::new();
    let image = digest_of(&home.build("hello", &[])).to_owned();
    let archive = home.dir.path().join("hello.tar");
    home.ok(&["save", "-o", archive.to_str().unwrap(), "hello"]);
    let other = Home::new();
    home.ok(&["load", "-i", archive.to_str().unwrap()]);
    other.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(
        referrers(&other, &image)
            .iter()
            .map(|(d, _)| d)
            .collect::<Vec<_>>(),
        referrers(&home, &image)
            .iter()
            .map(|(d, _)| d)
            .collect::<Vec<_>>()
    );
    let output = other
        .cmd()
        .env("WASMBUILD_LOG", "debug")
        .args(["run", "hello"])
        .output()
        .unwrap();
    assert_eq!(stdout(&output), HELLO_OUT);
    assert!(
        stderr(&output).starts_with(&format!("debug: using precompiled {host} (")),
        "{}",
        stderr(&output)
    );
}
