//! The containerd shim (`containerd-shim-wasmbuild-v1`, built from `shim/`) under Debian's
//! containerd 1.6, started for real by `containerd::Containerd`: images pushed to the local
//! registry, pulled with `ctr images pull`, run with `ctr run --runtime
//! io.containerd.wasmbuild.v1`.

use std::path::{Path, PathBuf};
use std::process::Output;

use tempfile::TempDir;

use crate::containerd::Containerd;
use crate::support::{Home, repo, require, require_registry, skopeo, stderr, stdout, unique_repo};

const RUNTIME: &str = "io.containerd.wasmbuild.v1";

/// The shim cargo built beside `wasmbuild`.
fn built_shim() -> PathBuf {
    let shim =
        Path::new(env!("CARGO_BIN_EXE_wasmbuild")).with_file_name("containerd-shim-wasmbuild-v1");
    assert!(
        shim.is_file(),
        "{} is missing: `cargo test --workspace` builds it (or `cargo build -p containerd-shim-wasmbuild-v1`)",
        shim.display()
    );
    shim
}

/// containerd with the shim on its PATH (installed there by `wasmbuild shim install`) and
/// the shim's home in a temp folder.
struct Node {
    containerd: Containerd,
    shim_home: TempDir,
    _bin: TempDir,
}

impl Node {
    fn start(home: &Home) -> Node {
        let bin = tempfile::tempdir().expect("temp dir");
        let shim = built_shim();
        home.ok(&[
            "shim",
            "install",
            "--dir",
            bin.path().to_str().unwrap(),
            "--shim",
            shim.to_str().unwrap(),
        ]);
        let shim_home = tempfile::tempdir().expect("temp dir");
        let containerd =
            Containerd::start_with(&[bin.path()], &[("WASMBUILD_SHIM_HOME", shim_home.path())]);
        Node {
            containerd,
            shim_home,
            _bin: bin,
        }
    }

    fn pull(&self, reference: &str) {
        self.containerd.ctr_ok(&[
            "images",
            "pull",
            "--plain-http",
            "--platform",
            "wasi/wasm",
            reference,
        ]);
    }

    /// `ctr run --rm --runtime io.containerd.wasmbuild.v1 OPTIONS IMAGE ID ARGS`.
    fn run(&self, options: &[&str], reference: &str, args: &[&str]) -> Output {
        let id = format!(
            "c{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let mut all = vec!["run", "--rm", "--runtime", RUNTIME];
        all.extend_from_slice(options);
        all.push(reference);
        all.push(&id);
        all.extend_from_slice(args);
        self.containerd.ctr(&all)
    }

    fn run_ok(&self, options: &[&str], reference: &str, args: &[&str]) -> String {
        let output = self.run(options, reference, args);
        assert!(
            output.status.success(),
            "ctr run failed ({}):\nstdout:\n{}\nstderr:\n{}\nshim.log:\n{}\ncontainerd's log:\n{}",
            output.status,
            stdout(&output),
            stderr(&output),
            self.shim_log(),
            self.containerd.log()
        );
        stdout(&output)
    }

    /// What `start` wrote about each container.
    fn shim_log(&self) -> String {
        std::fs::read_to_string(self.shim_home.path().join("shim.log")).unwrap_or_default()
    }

    /// The shim's log once `done` says it has what the test waits for (`start` runs its
    /// search beside the container, and logs it when done); fails after 20 s.
    fn log_when(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let log = self.shim_log();
            if done(&log) {
                return log;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the shim's log did not get there within 20 s:\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The node's compiled modules (not the lock files beside them).
    fn compiled(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.shim_home.path().join("compiled"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.ends_with(".cwasm"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

#[test]
fn ctr_runs_a_wasmbuild_image_with_its_precompiled_artifact_args_env_and_exit_code() {
    let registry = require_registry();
    let home = Home::new();
    let reference = format!("{registry}/{}:1", unique_repo("shim-hello"));
    home.build("hello", &["-t", &reference]);
    home.ok(&["push", &reference]);

    let node = Node::start(&home);
    node.pull(&reference);

    // The image's Entrypoint and Cmd, as the spec's args.
    let out = node.run_ok(&[], &reference, &[]);
    assert_eq!(
        out,
        "Hello from wasmbuild, world!\nargv[0]=/hello.wasm\n",
        "{}",
        node.shim_log()
    );
    // `start` found the image's precompiled artifact for this host in the registry and put
    // it in the cache; the container loaded it rather than compiling.
    node.log_when(|log| log.contains("fetched the precompiled artifact sha256:"));
    let said = node.containerd.log();
    assert!(said.contains("loaded its compiled code"), "{said}");
    assert!(
        !said.contains("compiled in"),
        "the container compiled:\n{said}"
    );
    let compiled = node.compiled();
    assert_eq!(compiled.len(), 1, "{compiled:?}");
    assert!(compiled[0].ends_with(".cwasm"), "{compiled:?}");

    // Args and env given to ctr reach the guest; its exit code is the task's.
    let out = node.run_ok(
        &["--env", "GREETING=Howdy"],
        &reference,
        &["/hello.wasm", "containerd", "world"],
    );
    assert_eq!(out, "Howdy, containerd world!\nargv[0]=/hello.wasm\n");
    let exited = node.run(&["--env", "EXIT_CODE=7"], &reference, &[]);
    assert_eq!(exited.status.code(), Some(7), "{}", stderr(&exited));
    assert_eq!(
        stdout(&exited),
        "Hello from wasmbuild, world!\nargv[0]=/hello.wasm\n"
    );
    // The second and third start found the module's code in the cache.
    node.log_when(|log| log.matches(": cached: ").count() == 2);
    assert_eq!(node.compiled(), compiled);
}

#[test]
fn ctr_runs_an_image_packed_the_way_dockers_wasm_guide_shows() {
    let registry = require_registry();
    let home = Home::new();
    // The module, built by wasmbuild but packed without it.
    let dist = tempfile::tempdir().expect("temp dir");
    home.build("hello", &["-o", dist.path().to_str().unwrap()]);
    let module = dist.path().join("hello.wasm");
    assert!(module.is_file(), "no {}", module.display());
    let reference = format!("{registry}/{}:latest", unique_repo("shim-docker"));
    push_scratch_image(&module, "/hello.wasm", "wasi/wasm", &reference);

    let node = Node::start(&home);
    node.pull(&reference);
    let out = node.run_ok(
        &["--platform", "wasi/wasm", "--env", "GREETING=Hi"],
        &reference,
        &[],
    );
    assert_eq!(out, "Hi, nobody!\nargv[0]=/hello.wasm\n");
    // No precompiled artifact: the container compiled its module and cached it.
    node.log_when(|log| log.contains("no precompiled artifact of "));
    assert_eq!(node.compiled().len(), 1, "{:?}", node.compiled());
    let out = node.run_ok(
        &["--platform", "wasi/wasm"],
        &reference,
        &["/hello.wasm", "again"],
    );
    assert_eq!(out, "Hello, again!\nargv[0]=/hello.wasm\n");
    node.log_when(|log| log.contains(": cached: "));
}

#[test]
fn a_linux_container_runs_as_runwasis_own_shims_run_it() {
    // A Kubernetes pod's pause container runs on the pod's runtime: one with an ELF
    // entrypoint runs as a Linux container, through youki's libcontainer.
    let registry = require_registry();
    let busybox = require("busybox");
    let home = Home::new();
    let reference = format!("{registry}/{}:1", unique_repo("shim-linux"));
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    push_scratch_image(&busybox, "/busybox", &format!("linux/{arch}"), &reference);
    let node = Node::start(&home);
    node.containerd
        .ctr_ok(&["images", "pull", "--plain-http", &reference]);
    let out = node.run_ok(&[], &reference, &["/busybox", "echo", "a linux container"]);
    assert_eq!(out, "a linux container\n");
    let exited = node.run(&[], &reference, &["/busybox", "sh", "-c", "exit 5"]);
    assert_eq!(exited.status.code(), Some(5), "{}", stderr(&exited));
    node.log_when(|log| log.matches("not a wasi/wasm image").count() == 2);
    assert!(node.compiled().is_empty(), "{:?}", node.compiled());
}

/// Packs `file` at `path` in an image of `platform` as `docker buildx` builds `FROM
/// scratch` + `COPY` + `ENTRYPOINT` (tests/python/scratch_image.py, not wasmbuild), and
/// pushes it to `reference` with skopeo.
fn push_scratch_image(file: &Path, path: &str, platform: &str, reference: &str) {
    let layout = tempfile::tempdir().expect("temp dir");
    let packed = std::process::Command::new(require("python3"))
        .arg(repo().join("tests/python/scratch_image.py"))
        .arg(file)
        .arg(path)
        .arg(platform)
        .arg(layout.path())
        .arg("latest")
        .output()
        .expect("run python3");
    assert!(packed.status.success(), "{}", stderr(&packed));
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:latest", layout.path().display()),
        &format!("docker://{reference}"),
    ]);
}

#[test]
fn the_guest_sees_mounts_its_working_folder_and_traps_exit_134() {
    let registry = require_registry();
    let home = Home::new();
    let reference = format!("{registry}/{}:1", unique_repo("shim-probe"));
    home.build("probe", &["-t", &reference]);
    home.ok(&["push", &reference]);
    let node = Node::start(&home);
    node.pull(&reference);

    // What ctr reads on stdin reaches the guest, and ends.
    let id = format!("cat{}", std::process::id());
    let cat = node.containerd.ctr_with_stdin(
        &[
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            &reference,
            &id,
            "/probe.wasm",
            "cat",
        ],
        b"through the fifo\n",
    );
    assert!(cat.status.success(), "{}", stderr(&cat));
    assert_eq!(stdout(&cat), "through the fifo\n");

    // SIGTERM (`ctr task kill`, a pod's deletion) ends a guest at once, 128 + 15.
    let id = format!("spin{}", std::process::id());
    let mut spinning = node
        .containerd
        .ctr_command(&[
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            &reference,
            &id,
            "/probe.wasm",
            "spin",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = [0u8; 8];
    std::io::Read::read_exact(spinning.stdout.as_mut().unwrap(), &mut said).unwrap();
    assert_eq!(&said, b"spinning");
    node.containerd.ctr_ok(&["task", "kill", &id]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = spinning.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = node
                .containerd
                .ctr(&["task", "kill", "--signal", "SIGKILL", &id]);
            panic!("the guest did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(143));

    let trapped = node.run(&[], &reference, &["/probe.wasm", "trap"]);
    assert_eq!(
        trapped.status.code(),
        Some(134),
        "{}\ncontainerd's log:\n{}",
        stderr(&trapped),
        node.containerd.log()
    );
    assert!(stderr(&trapped).contains("trapped"), "{}", stderr(&trapped));

    let shared = tempfile::tempdir().expect("temp dir");
    std::fs::write(shared.path().join("in.txt"), "from the host\n").unwrap();
    let mount = format!(
        "type=bind,src={},dst=/data,options=rbind:rw",
        shared.path().display()
    );
    let out = node.run_ok(
        &["--mount", &mount],
        &reference,
        &["/probe.wasm", "read", "/data/in.txt"],
    );
    assert_eq!(out, "/data/in.txt: from the host\n");
    let out = node.run_ok(
        &["--mount", &mount],
        &reference,
        &["/probe.wasm", "write", "/data/out.txt", "from the guest"],
    );
    assert_eq!(out, "wrote /data/out.txt\n");
    assert_eq!(
        std::fs::read_to_string(shared.path().join("out.txt")).unwrap(),
        "from the guest"
    );

    let env = node.run_ok(
        &["--cwd", "/data", "--mount", &mount],
        &reference,
        &["/probe.wasm", "env"],
    );
    assert!(env.lines().any(|l| l == "PWD=/data"), "{env}");
}

#[test]
fn shim_install_copies_the_shim_and_prints_its_configuration() {
    let home = Home::new();
    let shim = built_shim();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = home.ok(&[
        "shim",
        "install",
        "--dir",
        dir.path().to_str().unwrap(),
        "--shim",
        shim.to_str().unwrap(),
    ]);
    let installed = dir.path().join("containerd-shim-wasmbuild-v1");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&shim).unwrap()
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert!(
        out.contains(r#"runtime_type = "io.containerd.wasmbuild.v1""#),
        "{out}"
    );
    assert!(out.contains("kind: RuntimeClass"), "{out}");
    assert!(out.contains("handler: wasmbuild"), "{out}");
    // Each half alone, for a pipe into a file or kubectl.
    let containerd = home.ok(&["shim", "config", "containerd"]);
    assert!(!containerd.contains("RuntimeClass"), "{containerd}");
    let kubernetes = home.ok(&["shim", "config", "kubernetes"]);
    assert!(
        kubernetes.contains("apiVersion: node.k8s.io/v1"),
        "{kubernetes}"
    );
    assert!(!kubernetes.contains("runtime_type"), "{kubernetes}");

    // Nothing to install, or nowhere to put it: an error that says which, and what to do.
    let missing = home.run(&[
        "shim",
        "install",
        "--dir",
        dir.path().to_str().unwrap(),
        "--shim",
        "/nonexistent/shim",
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("there is no shim at /nonexistent/shim"),
        "{}",
        stderr(&missing)
    );
    assert!(
        stderr(&missing).contains("cargo build --release -p containerd-shim-wasmbuild-v1"),
        "{}",
        stderr(&missing)
    );
    let nowhere = home.run(&[
        "shim",
        "install",
        "--dir",
        "/nonexistent/bin",
        "--shim",
        shim.to_str().unwrap(),
    ]);
    assert_eq!(nowhere.status.code(), Some(1));
    assert!(
        stderr(&nowhere).contains("/nonexistent/bin is not a folder"),
        "{}",
        stderr(&nowhere)
    );
}
