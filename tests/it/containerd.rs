//! A private containerd (Debian's 1.6) per test, as an independent consumer of our images:
//! its own config, root, state and sockets in a temp folder, the `native` snapshotter (it
//! needs no overlayfs), and `ctr` pointed at it.
//!
//! containerd 1.6 also writes under `/run/containerd` whatever its config says once a task
//! runs (shim sockets in `s/`, ctr's IO fifos in `fifo/`, runc's state in `runc/<namespace>`,
//! and our shim's, through runwasi, in `wasmbuild/<namespace>`),
//! and its `opt` plugin creates `/opt/containerd` unless told otherwise. The config moves
//! `opt` into the temp folder; the `/run/containerd` folders that none of the instances found
//! there are removed (when empty) after the last instance stops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::support::{Home, digest_of, require, require_registry, stderr, stdout, unique_repo};

/// The containerd namespace every `ctr` call uses.
pub const NAMESPACE: &str = "wasmbuild-test";

/// The snapshotter `ctr` uses (through `CONTAINERD_SNAPSHOTTER`) unless a call names another.
pub const SNAPSHOTTER: &str = "native";

/// Folders containerd 1.6 and ctr create under `/run/containerd` regardless of the config.
const RUN_DIRS: [&str; 7] = [
    "/run/containerd",
    "/run/containerd/fifo",
    "/run/containerd/s",
    "/run/containerd/runc",
    "/run/containerd/runc/wasmbuild-test",
    "/run/containerd/wasmbuild",
    "/run/containerd/wasmbuild/wasmbuild-test",
];

/// How many instances run in this process, and which `RUN_DIRS` existed before the first.
static RUNNING: Mutex<(usize, Vec<PathBuf>)> = Mutex::new((0, Vec::new()));

pub struct Containerd {
    dir: TempDir,
    socket: PathBuf,
    child: Child,
}

impl Containerd {
    /// Starts containerd and waits until it answers on its socket.
    pub fn start() -> Containerd {
        Containerd::start_with_path(&[])
    }

    /// The same, with `dirs` first on containerd's PATH: where it finds `containerd-shim-*`
    /// runtimes (a shim built by the test, say).
    pub fn start_with_path(dirs: &[&Path]) -> Containerd {
        Containerd::start_with(dirs, &[])
    }

    /// The same, with `env` set for containerd and so for the shims it starts.
    pub fn start_with(dirs: &[&Path], env: &[(&str, &Path)]) -> Containerd {
        let containerd = require("containerd");
        require("ctr");
        assert!(
            is_root(),
            "containerd needs root: run `scripts/test` as root (it installs containerd)"
        );
        // Unix socket paths must stay under ~108 bytes: keep the folder short.
        let dir = tempfile::Builder::new()
            .prefix("wasmbuild-ctrd-")
            .tempdir_in("/tmp")
            .expect("temp dir for containerd");
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, config_toml(dir.path())).expect("write containerd's config");
        let log = std::fs::File::create(dir.path().join("containerd.log")).expect("log file");

        let mut path = dirs.iter().map(PathBuf::from).collect::<Vec<_>>();
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        let path = std::env::join_paths(path).expect("a PATH");

        let child = Command::new(containerd)
            .arg("--config")
            .arg(&config)
            .env("PATH", path)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        // containerd writes nothing under /run/containerd until a task runs.
        {
            let mut running = RUNNING
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if running.0 == 0 {
                running.1 = RUN_DIRS
                    .iter()
                    .map(PathBuf::from)
                    .filter(|dir| dir.exists())
                    .collect();
            }
            running.0 += 1;
        }
        let mut containerd = Containerd { dir, socket, child };
        containerd.wait_until_serving();
        containerd
    }

    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("containerd exited ({status}):\n{}", self.log());
            }
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
                && self.ctr(&["version"]).status.success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not answer on {} within 20 s:\n{}",
                self.socket.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The GRPC socket (`ctr --address`, a client's `CONTAINERD_ADDRESS`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runs `ctr --address SOCKET --namespace wasmbuild-test ARGS`; the output whatever the status.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", NAMESPACE])
            .args(args)
            .env("CONTAINERD_SNAPSHOTTER", SNAPSHOTTER)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    /// `ctr --address SOCKET --namespace wasmbuild-test ARGS`, to start as the caller likes.
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", NAMESPACE])
            .args(args)
            .env("CONTAINERD_SNAPSHOTTER", SNAPSHOTTER);
        command
    }

    /// Runs ctr with `input` on its stdin; fails if ctr has not exited within a minute.
    pub fn ctr_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write as _;
        let mut child = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", NAMESPACE])
            .args(args)
            .env("CONTAINERD_SNAPSHOTTER", SNAPSHOTTER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ctr");
        let mut stdin = child.stdin.take().expect("ctr's stdin");
        stdin.write_all(input).expect("write to ctr's stdin");
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(60);
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = child.kill();
                let output = child.wait_with_output().expect("wait for ctr");
                panic!(
                    "ctr {args:?} did not exit within 60 s of its stdin's end:\n{}\ncontainerd's log:\n{}",
                    stderr(&output),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("wait for ctr")
    }

    /// Runs ctr and insists it succeeds; returns stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
        let output = self.ctr(args);
        assert!(
            output.status.success(),
            "ctr {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}\ncontainerd's log:\n{}",
            output.status,
            stdout(&output),
            stderr(&output),
            self.log()
        );
        stdout(&output)
    }

    /// What containerd wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ids(&self, args: &[&str]) -> Vec<String> {
        stdout(&self.ctr(args))
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks first: their shims outlive containerd by design.
        if matches!(self.child.try_wait(), Ok(None)) {
            for task in self.ids(&["tasks", "ls", "--quiet"]) {
                self.ctr(&["tasks", "kill", "--signal", "SIGKILL", &task]);
                self.ctr(&["tasks", "delete", "--force", &task]);
            }
            let containers = self.ids(&["containers", "ls", "--quiet"]);
            if !containers.is_empty() {
                let mut args = vec!["containers", "delete"];
                args.extend(containers.iter().map(String::as_str));
                self.ctr(&args);
            }
        }

        // SIGTERM, then SIGKILL after 10 s.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();

        // Shims this instance started (they name its socket) that are still alive.
        for shim in processes_naming(&self.socket) {
            let _ = Command::new("kill")
                .args(["-KILL", &shim.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        // Rootfs and snapshot mounts left under the temp folder, deepest first.
        for mount in mounts_under(self.dir.path()).into_iter().rev() {
            let _ = Command::new("umount")
                .arg("--lazy")
                .arg(&mount)
                .stderr(Stdio::null())
                .status();
        }

        let mut running = RUNNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        running.0 -= 1;
        if running.0 == 0 {
            for dir in RUN_DIRS.iter().rev().map(Path::new) {
                if !running.1.iter().any(|existed| existed == dir) {
                    // Fails, as it should, when something else put files there.
                    let _ = std::fs::remove_dir(dir);
                }
            }
        }
        // The temp folder (root, state, sockets, log) goes when `self.dir` drops.
    }
}

fn config_toml(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
# CRI wants CNI and a Kubernetes; aufs, btrfs, devmapper and zfs need kernel modules or
# filesystems this kind of machine lacks. (The deprecated v1 runtime stays: 1.6's tasks
# service refuses to load without it.)
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[debug]
  level = "warn"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{dir}/opt"
  [plugins."io.containerd.runtime.v1.linux"]
    runtime_root = "{dir}/runtime-v1"
"#
    )
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Processes whose command line has `path` as one argument.
fn processes_naming(path: &Path) -> Vec<u32> {
    let wanted = path.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == wanted))
        })
        .collect()
}

/// Mount points under `dir`, in mount order.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|mount| mount.starts_with(dir))
        .collect()
}

// --- self-tests --------------------------------------------------------------------------

#[test]
fn containerd_starts_answers_and_leaves_nothing_behind() {
    let containerd = Containerd::start();
    let version = containerd.ctr_ok(&["version"]);
    assert!(version.contains("Server:"), "{version}");
    assert!(version.contains("Version:  1.6"), "{version}");
    // TYPE ID PLATFORMS STATUS: the snapshotter and the tasks service loaded, nothing failed.
    let plugins = containerd.ctr_ok(&["plugins", "ls"]);
    let status = |kind: &str, id: &str| {
        plugins
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|row| row.first() == Some(&kind) && row.get(1) == Some(&id))
            .and_then(|row| row.last().map(|status| (*status).to_owned()))
    };
    assert_eq!(
        status("io.containerd.snapshotter.v1", SNAPSHOTTER).as_deref(),
        Some("ok"),
        "{plugins}"
    );
    assert_eq!(
        status("io.containerd.grpc.v1", "tasks").as_deref(),
        Some("ok"),
        "{plugins}"
    );
    assert!(
        !plugins
            .lines()
            .any(|line| line.trim_end().ends_with("error")),
        "{plugins}"
    );
    let dir = containerd.dir.path().to_path_buf();
    assert!(containerd.socket().starts_with(&dir));
    let pid = containerd.child.id();
    drop(containerd);
    assert!(!dir.exists(), "{} is left", dir.display());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "containerd ({pid}) still runs"
    );
}

#[test]
fn containerd_pulls_and_unpacks_a_wasmbuild_image_from_the_registry() {
    let registry = require_registry();
    let home = Home::new();
    let reference = format!("{registry}/{}:ctr", unique_repo("containerd"));
    let line = home.build("hello", &["-t", &reference]);
    // Pushed by wasmbuild, with its precompiled artifacts as referrers.
    let pushed = home.ok(&["push", &reference]);
    assert_eq!(pushed.trim(), line);

    let containerd = Containerd::start();
    let pulled = containerd.ctr_ok(&[
        "images",
        "pull",
        "--plain-http",
        "--platform",
        "wasi/wasm",
        &reference,
    ]);
    assert!(pulled.contains("unpacking wasi/wasm"), "{pulled}");

    // REF TYPE DIGEST SIZE PLATFORMS LABELS
    let listed = containerd.ctr_ok(&["images", "ls"]);
    let row: Vec<&str> = listed
        .lines()
        .find(|row| row.starts_with(&format!("{reference} ")))
        .unwrap_or_else(|| panic!("{reference} is not listed:\n{listed}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[1], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(row[2], digest_of(&line));
    assert!(row.contains(&"wasi/wasm"), "{listed}");

    // Every blob is there and the layer is unpacked into a committed snapshot.
    let checked = containerd.ctr_ok(&["images", "check"]);
    let row = checked
        .lines()
        .find(|row| row.starts_with(&format!("{reference} ")))
        .unwrap_or_else(|| panic!("{reference} is not checked:\n{checked}"));
    assert!(row.contains("complete"), "{checked}");
    assert!(row.trim_end().ends_with("true"), "unpacked: {checked}");
    let snapshots = containerd.ctr_ok(&["snapshots", "ls"]);
    assert!(
        snapshots
            .lines()
            .any(|row| row.trim_end().ends_with("Committed")),
        "{snapshots}"
    );
}
