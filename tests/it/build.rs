//! `wasmbuild build`: references on stdout, reproducible digests, build args.

use crate::support::{Home, digest_of, fixture};

#[test]
fn build_prints_the_reference_with_its_digest() {
    let home = Home::new();
    let stdout = home.ok(&[
        "build",
        fixture("hello").to_str().unwrap(),
        "-t",
        "ghcr.io/me/hello:1.0",
    ]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one reference, one line: {stdout:?}");
    let (reference, digest) = lines[0].split_once('@').unwrap();
    assert_eq!(reference, "ghcr.io/me/hello:1.0");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert!(
        digest[7..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
}

#[test]
fn without_a_tag_the_image_is_named_after_the_module() {
    let home = Home::new();
    let line = home.build("hello", &[]);
    assert!(
        line.starts_with("docker.io/library/hello:latest@sha256:"),
        "{line}"
    );
}

#[test]
fn the_same_project_gives_the_same_digest_in_two_empty_homes() {
    let first = Home::new().build("hello", &[]);
    let second = Home::new().build("hello", &[]);
    assert_eq!(digest_of(&first), digest_of(&second));
}

#[test]
fn source_date_epoch_sets_created_and_stays_reproducible() {
    let build = || {
        let home = Home::new();
        let out = home
            .cmd()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", fixture("hello").to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout).unwrap();
        let inspect = home.ok(&["inspect", "--json", "hello"]);
        (line, inspect)
    };
    let (first, inspect) = build();
    let (second, _) = build();
    assert_eq!(digest_of(first.trim()), digest_of(second.trim()));
    let json: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(json["config"]["created"], "2023-11-14T22:13:20Z");
    // And it differs from the build without a date, which has no `created` at all.
    let plain = Home::new().build("hello", &[]);
    assert_ne!(digest_of(first.trim()), digest_of(&plain));
}

#[test]
fn name_tags_and_build_args_make_the_references() {
    let home = Home::new();
    let stdout = home.ok(&[
        "build",
        fixture("copy").to_str().unwrap(),
        "--build-arg",
        "VERSION=1.2.3",
    ]);
    let refs: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_once('@').unwrap().0)
        .collect();
    assert_eq!(refs, ["localhost/site:1.2.3", "localhost/site:latest"]);
    let inspect: serde_json::Value =
        serde_json::from_str(&home.ok(&["inspect", "--json", "localhost/site:1.2.3"])).unwrap();
    assert_eq!(
        inspect["config"]["config"]["Labels"]["org.example.version"],
        "1.2.3"
    );
}

#[test]
fn output_folder_gets_the_module() {
    let home = Home::new();
    let out = tempfile::tempdir().unwrap();
    home.build("hello", &["-o", out.path().to_str().unwrap()]);
    let module = std::fs::read(out.path().join("hello.wasm")).unwrap();
    assert_eq!(&module[..4], b"\0asm");
}

#[test]
fn plain_progress_names_the_steps_on_stderr() {
    let home = Home::new();
    let output = home.run(&["build", fixture("hello").to_str().unwrap()]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for step in [
        "=> compile: ",
        "cargo build --target wasm32-wasip1",
        "=> validate: ",
        "=> pack: ",
        "=> store: ",
    ] {
        assert!(stderr.contains(step), "{step:?} missing from:\n{stderr}");
    }
    let quiet = home.run(&["build", "--quiet", fixture("hello").to_str().unwrap()]);
    assert!(quiet.status.success());
    assert_eq!(
        String::from_utf8_lossy(&quiet.stderr),
        "",
        "--quiet prints nothing on success"
    );
}

#[test]
fn two_builds_at_once_into_one_store_both_land() {
    let home = Home::new();
    // Build once so both racers only pack and store.
    home.build("hello", &[]);
    let racers: Vec<_> = [
        "ghcr.io/me/a:1",
        "ghcr.io/me/b:1",
        "ghcr.io/me/c:1",
        "ghcr.io/me/d:1",
    ]
    .iter()
    .map(|tag| {
        home.cmd()
            .args(["build", "-q", fixture("hello").to_str().unwrap(), "-t", tag])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    })
    .collect();
    for racer in racers {
        let output = racer.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let json: serde_json::Value = serde_json::from_str(&home.ok(&["images", "--json"])).unwrap();
    let references: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        references,
        [
            "docker.io/library/hello:latest",
            "ghcr.io/me/a:1",
            "ghcr.io/me/b:1",
            "ghcr.io/me/c:1",
            "ghcr.io/me/d:1"
        ]
    );
    for reference in references {
        let output = home.run(&["run", reference]);
        assert!(output.status.success(), "{reference}");
    }
}
