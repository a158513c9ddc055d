//! Secrets stay secret: the registry password (given to `login`, `build --push`, and through
//! `WASMBUILD_PASSWORD`), a wrong password, and a build arg's value that `[image]` does
//! not use appear in no output, no `--json` document or `--metadata-file`, and no file under
//! `$WASMBUILD_HOME` (store and cache), except where Docker keeps credentials: the
//! `config.json` that `login` writes, readable by its owner alone.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use crate::support::{Home, require_auth_registry, stderr, stdout, unique_repo};

/// Every command's output, kept to be searched at the end.
struct Transcript {
    outputs: Vec<(String, Output)>,
}

impl Transcript {
    /// Runs wasmbuild in `home` with `args`, `envs` and `stdin`; records the output.
    fn run(
        &mut self,
        home: &Home,
        args: &[&str],
        envs: &[(&str, &str)],
        stdin: Option<&str>,
    ) -> &Output {
        let mut child = home
            .cmd()
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wasmbuild");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
        drop(input);
        let output = child.wait_with_output().expect("wait for wasmbuild");
        self.outputs.push((format!("{args:?}"), output));
        &self.outputs.last().expect("just pushed").1
    }

    /// As [`Transcript::run`], insisting it succeeds; returns stdout.
    fn ok(
        &mut self,
        home: &Home,
        args: &[&str],
        envs: &[(&str, &str)],
        stdin: Option<&str>,
    ) -> String {
        let output = self.run(home, args, envs, stdin);
        assert!(
            output.status.success(),
            "wasmbuild {args:?} failed:\n{}",
            stderr(output)
        );
        stdout(output)
    }
}

/// Every file under `dir`, following no links.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// `text` in standard base64, by coreutils (not by the code under test).
fn base64(text: &str) -> String {
    let mut child = std::process::Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run base64");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to base64");
    let output = child.wait_with_output().expect("base64's output");
    stdout(&output).trim().to_owned()
}

#[test]
fn no_output_or_file_holds_the_password_or_a_secret_build_arg() {
    let auth = require_auth_registry();
    let (registry, user, password) = (&auth.host, &auth.user, &auth.password);
    let target = format!("{registry}/{}:1.0", unique_repo("secrets"));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let build_secret = format!("build-arg-secret-{nanos}-9c1e");
    let wrong = format!("wrong-password-{nanos}-77aa");
    // What a Basic Authorization header or config.json would hold.
    let encoded = base64(&format!("{user}:{password}"));
    let secrets = [
        password.as_str(),
        &build_secret,
        &wrong,
        &encoded,
        &base64(&format!("{user}:{wrong}")),
    ];

    // A project whose Wasmfile declares TOKEN, which [image] does not use.
    let project = tempfile::tempdir().unwrap();
    std::fs::copy(
        crate::support::fixture("prebuilt").join("hello.wasm"),
        project.path().join("hello.wasm"),
    )
    .unwrap();
    std::fs::write(
        project.path().join("Wasmfile"),
        "[build]\nmodule = \"hello.wasm\"\n\n[image]\nlabels = { \"org.example.version\" = \"${VERSION}\" }\n\n[args]\nVERSION = \"dev\"\nTOKEN = \"\"\n",
    )
    .unwrap();
    let project = project.path().to_str().unwrap();

    let home = Home::new();
    let metadata = home.dir.path().join("metadata");
    std::fs::create_dir_all(&metadata).unwrap();
    let meta = |name: &str| metadata.join(name).to_str().unwrap().to_owned();
    let mut t = Transcript {
        outputs: Vec::new(),
    };
    let token = format!("TOKEN={build_secret}");
    let debug = [("WASMBUILD_LOG", "debug")];

    // The secret build arg, on the command line and from the environment.
    t.ok(
        &home,
        &[
            "build",
            project,
            "--build-arg",
            &token,
            "-t",
            &target,
            "--json",
        ],
        &[],
        None,
    );
    t.ok(
        &home,
        &[
            "build",
            project,
            "--build-arg",
            "TOKEN",
            "-t",
            &target,
            "--progress",
            "json",
        ],
        &[("TOKEN", &build_secret)],
        None,
    );

    // A wrong password: refused at login, and for a push through the environment.
    let refused = t.run(
        &home,
        &["login", registry, "-u", user, "--password-stdin"],
        &[],
        Some(&wrong),
    );
    assert!(!refused.status.success());
    let refused = t.run(
        &home,
        &["push", &target, "--json"],
        &[("WASMBUILD_USERNAME", user), ("WASMBUILD_PASSWORD", &wrong)],
        None,
    );
    assert!(!refused.status.success());
    assert!(stderr(refused).contains("401"), "{}", stderr(refused));

    // The right one: a build that pushes, a login, a push, a pull and a run.
    t.ok(
        &home,
        &[
            "build",
            project,
            "--build-arg",
            &token,
            "-t",
            &target,
            "--push",
            "-u",
            user,
            "--password-stdin",
            "--json",
            "--metadata-file",
            &meta("build.json"),
        ],
        &debug,
        Some(password),
    );
    t.ok(
        &home,
        &["login", registry, "-u", user, "--password-stdin"],
        &debug,
        Some(password),
    );
    t.ok(
        &home,
        &[
            "push",
            &target,
            "--json",
            "--metadata-file",
            &meta("push.json"),
        ],
        &debug,
        None,
    );
    t.ok(
        &home,
        &["push", &target, "--progress", "json"],
        &[
            ("WASMBUILD_USERNAME", user),
            ("WASMBUILD_PASSWORD", password),
        ],
        None,
    );
    t.ok(&home, &["rmi", &target], &[], None);
    t.ok(
        &home,
        &[
            "pull",
            &target,
            "--json",
            "--metadata-file",
            &meta("pull.json"),
        ],
        &debug,
        None,
    );
    t.ok(&home, &["run", &target], &debug, None);
    t.ok(&home, &["images", "--json"], &[], None);
    t.ok(&home, &["inspect", "--json", &target], &[], None);
    let archive = home.dir.path().join("saved.tar");
    t.ok(
        &home,
        &["save", "-o", archive.to_str().unwrap(), &target],
        &[],
        None,
    );
    // A home with no config: the password only in the environment.
    let other = Home::new();
    t.ok(
        &other,
        &["pull", &target, "--json"],
        &[
            ("WASMBUILD_USERNAME", user),
            ("WASMBUILD_PASSWORD", password),
        ],
        None,
    );
    t.ok(&other, &["run", &target], &debug, None);

    for (command, output) in &t.outputs {
        for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
            for secret in secrets {
                assert!(
                    !contains(bytes, secret),
                    "the {stream} of wasmbuild {command} holds a secret:\n{}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }
    let config = home.dir.path().join("docker/config.json");
    let mut checked = 0;
    for dir in [home.dir.path(), other.dir.path()] {
        for file in files_under(dir) {
            if file == config {
                continue;
            }
            let bytes = std::fs::read(&file).unwrap();
            for secret in secrets {
                assert!(
                    !contains(&bytes, secret),
                    "{} holds a secret",
                    file.display()
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked > 20,
        "only {checked} files: did the commands write?"
    );
    for name in ["build.json", "push.json", "pull.json"] {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(metadata.join(name)).unwrap()).unwrap();
        assert!(json.is_object(), "{name}: {json}");
    }

    // Where Docker keeps it, as Docker does: base64 in config.json, for its owner alone.
    let stored = std::fs::read(&config).unwrap();
    assert!(contains(&stored, &encoded));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&config).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "config.json has mode {mode:o}");
}
