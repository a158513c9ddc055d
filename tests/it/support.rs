//! A private `WASMBUILD_HOME` per test, and the tools the test script installs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;
use tempfile::TempDir;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("fixtures").join(name)
}

/// One test's wasmbuild state, removed when the test ends.
pub struct Home {
    pub dir: TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::Builder::new()
                .prefix("wasmbuild-home-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn cmd(&self) -> Command {
        let mut command = Command::cargo_bin("wasmbuild").expect("the wasmbuild binary");
        command
            .env("WASMBUILD_HOME", self.dir.path())
            .env_remove("WASMBUILD_REPO")
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("WASMBUILD_USERNAME")
            .env_remove("WASMBUILD_PASSWORD")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_TOKEN")
            // Docker's credentials stay out of the tests: each home has its own config.json.
            .env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .env("WASMBUILD_PROGRESS", "plain");
        command
    }

    /// Runs wasmbuild with `args`; returns the output whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run wasmbuild")
    }

    /// Runs wasmbuild and insists it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "wasmbuild {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 stdout")
    }

    /// Builds a fixture; returns the first `REF@sha256:...` line.
    pub fn build(&self, fixture_name: &str, extra: &[&str]) -> String {
        let dir = fixture(fixture_name);
        let mut args = vec!["build", dir.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        let stdout = self.ok(&args);
        stdout
            .lines()
            .next()
            .expect("a reference on stdout")
            .to_owned()
    }
}

/// The digest part of `REF@sha256:...`.
pub fn digest_of(line: &str) -> &str {
    line.rsplit_once('@').map(|(_, d)| d).expect("REF@DIGEST")
}

/// A tool that `scripts/test` installs: missing means the set-up is broken, so fail.
pub fn require(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{tool}` is not on PATH: run `scripts/test`, which installs it"))
}

/// Plain progress as it was before steps had durations: `=> pack: OCI image 0.0s` is
/// `=> pack: OCI image`, and the `=> compile: done 8.1s` that ends a step with output goes.
pub fn without_durations(stderr: &str) -> String {
    let mut out = String::new();
    for line in stderr.split_inclusive('\n') {
        let (text, end) = match line.strip_suffix('\n') {
            Some(text) => (text, "\n"),
            None => (line, ""),
        };
        let step = text.starts_with("=> ");
        let Some((rest, last)) = text.rsplit_once(' ').filter(|_| step) else {
            out.push_str(line);
            continue;
        };
        let duration = last
            .strip_suffix('s')
            .and_then(|n| n.split_once('.'))
            .is_some_and(|(whole, tenth)| {
                !whole.is_empty()
                    && tenth.len() == 1
                    && whole
                        .bytes()
                        .chain(tenth.bytes())
                        .all(|b| b.is_ascii_digit())
            });
        if !duration {
            out.push_str(line);
        } else if !rest.ends_with(": done") {
            out.push_str(rest);
            out.push_str(end);
        }
    }
    out
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every file under `dir` with its bytes, to prove a failed command changed nothing.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                files.push((path, bytes));
            }
        }
    }
    files.sort();
    files
}

/// The plain-HTTP registry that `scripts/test` starts on loopback, as `127.0.0.1:PORT`.
pub fn require_registry() -> String {
    std::env::var("WASMBUILD_TEST_REGISTRY").unwrap_or_else(|_| {
        panic!("WASMBUILD_TEST_REGISTRY is not set: run `scripts/test`, which starts a registry")
    })
}

/// The registry behind htpasswd auth that `scripts/test` starts, and its one user.
#[derive(Clone)]
pub struct AuthRegistry {
    /// `127.0.0.1:PORT`
    pub host: String,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for AuthRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRegistry")
            .field("host", &self.host)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

pub fn require_auth_registry() -> AuthRegistry {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: run `scripts/test`, which starts a registry with htpasswd auth"
            )
        })
    };
    AuthRegistry {
        host: var("WASMBUILD_TEST_AUTH_REGISTRY"),
        user: var("WASMBUILD_TEST_AUTH_USER"),
        password: var("WASMBUILD_TEST_AUTH_PASSWORD"),
    }
}

/// A repository path no other test, nor an earlier run against the same registry, has used:
/// `wasmbuild-test/<name>-<pid>-<nanoseconds>-<n>`.
pub fn unique_repo(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!("wasmbuild-test/{name}-{}-{nanos}-{n}", std::process::id())
}

/// `sha256:<hex>` of `bytes`, computed by coreutils' sha256sum (not by the code under test).
pub fn sha256_digest(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    let mut stdin = child.stdin.take().expect("sha256sum's stdin");
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("sha256sum's output");
    writer
        .join()
        .expect("the writer thread")
        .expect("write to sha256sum");
    let hex = String::from_utf8_lossy(&output.stdout);
    format!(
        "sha256:{}",
        hex.split_whitespace().next().expect("a digest")
    )
}

/// Runs skopeo (which `scripts/test` installs) and insists it succeeds; returns stdout.
pub fn skopeo(args: &[&str]) -> String {
    let output = Command::new(require("skopeo"))
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        output.status.success(),
        "skopeo {args:?} failed:\n{}",
        stderr(&output)
    );
    stdout(&output)
}
