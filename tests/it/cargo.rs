//! The cargo driver on real projects: a workspace whose program's output shows each cargo
//! key of the Wasmfile, its Cargo.lock enforced, `CARGO_TARGET_DIR`, and a program from
//! crates.io that nobody here wrote.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

use crate::support::{Home, fixture, stderr, stdout, without_durations};

fn workspace() -> PathBuf {
    fixture("cargo-workspace")
}

fn path(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `wasmbuild build -f FILE DIR` (or `build DIR` without a file), insisting on success;
/// returns stderr, where plain progress shows the cargo command line.
fn build(home: &Home, dir: &Path, file: Option<&str>, tag: &str) -> String {
    let mut args = vec!["build", path(dir), "-t", tag];
    let wasmfile = file.map(|f| dir.join(f));
    if let Some(wasmfile) = &wasmfile {
        args.extend(["-f", path(wasmfile)]);
    }
    let output = home.run(&args);
    assert!(
        output.status.success(),
        "wasmbuild {args:?} failed:\n{}",
        stderr(&output)
    );
    stderr(&output)
}

/// `wasmbuild run -i REF ARGS...` with `input` on stdin.
fn run(home: &Home, args: &[&str], input: &str) -> Output {
    let mut child = home
        .cmd()
        .args(["run", "-i"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn run_ok(home: &Home, args: &[&str]) -> String {
    let output = run(home, args, "");
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
}

/// A copy of `from` in a new temp folder (its `target/` left behind); returns the folder
/// and the copy's canonical path, which is how wasmbuild names it.
fn copy_project(from: &Path) -> (TempDir, PathBuf) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let (source, dest) = (entry.path(), to.join(entry.file_name()));
            if entry.file_type().unwrap().is_dir() {
                if entry.file_name() != "target" {
                    copy(&source, &dest);
                }
            } else {
                std::fs::copy(&source, &dest).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let name = from.file_name().unwrap();
    copy(from, &dir.path().join(name));
    let copied = std::fs::canonicalize(dir.path().join(name)).unwrap();
    (dir, copied)
}

/// The `=> compile: ` line of plain progress.
fn compile_line(stderr: &str) -> String {
    without_durations(stderr)
        .lines()
        .find_map(|l| l.strip_prefix("=> compile: "))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no compile step in:\n{stderr}"))
}

#[test]
fn each_cargo_key_shows_in_the_programs_output() {
    let home = Home::new();
    // The root Wasmfile: package, bin, features and profile.
    let progress = build(&home, &workspace(), None, "localhost/shout:1");
    assert_eq!(
        compile_line(&progress),
        "cargo build --target wasm32-wasip1 --message-format=json-render-diagnostics \
         --profile wasm --package app --bin shout --features loud --locked"
    );
    assert_eq!(
        run_ok(&home, &["localhost/shout:1", "there"]),
        "o/ HELLO, THERE!!!\n-- shout from app 0.1.0, profile wasm\n"
    );
    // In a member's folder: the package cargo finds there, another bin, no default
    // features (no "o/ "), and the default profile.
    build(
        &home,
        &workspace().join("crates/app"),
        None,
        "localhost/greet:1",
    );
    assert_eq!(
        run_ok(&home, &["localhost/greet:1"]),
        "Hello, world!\n-- greet from app 0.1.0, profile release\n"
    );
    // `package` alone picks the other package's binary.
    build(
        &home,
        &workspace(),
        Some("greeting.Wasmfile"),
        "localhost/greeting:1",
    );
    assert_eq!(
        run_ok(&home, &["localhost/greeting:1", "you"]),
        "Hello, you!\n-- greeting 0.1.0\n"
    );
}

#[test]
fn several_binaries_and_no_bin_is_an_error_that_names_them() {
    let home = Home::new();
    let dir = workspace();
    let output = home.run(&[
        "build",
        "--quiet",
        path(&dir),
        "-f",
        path(&dir.join("all.Wasmfile")),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: `cargo build --target wasm32-wasip1 --message-format=json-render-diagnostics \
         --profile release --locked` built 3 binaries, so which one is the module is not clear: \
         greet (app), greeting (greeting), shout (app)\n  \
         hint: set `[build] bin` (and `package` in a workspace) to choose one\n"
    );
}

#[test]
fn a_bin_the_package_does_not_have_fails_with_the_ones_it_has() {
    let home = Home::new();
    let dir = workspace().join("crates/app");
    let output = home.run(&[
        "build",
        "--quiet",
        path(&dir),
        "-f",
        path(&dir.join("whisper.Wasmfile")),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    // Quiet: cargo's own words are shown with the error, since they were not streamed.
    assert!(
        errors.starts_with("error: no bin target named `whisper`"),
        "{errors}"
    );
    assert!(
        errors.ends_with(
            "\nerror: `cargo build --target wasm32-wasip1 --message-format=json-render-diagnostics \
             --profile release --bin whisper --locked` failed (exit status: 101)\n  \
             hint: the package has no binary `whisper`: set `[build] bin` to one of greet, shout\n"
        ),
        "{errors}"
    );
}

#[test]
fn a_committed_lock_file_is_enforced_and_a_stale_one_explained() {
    let home = Home::new();
    let (_dir, copy) = copy_project(&workspace());
    let lock = copy.join("Cargo.lock");
    let committed = std::fs::read(&lock).unwrap();

    let progress = build(&home, &copy, None, "localhost/locked:1");
    assert!(compile_line(&progress).ends_with(" --locked"), "{progress}");

    // A version bump in a member's Cargo.toml: the lock no longer matches, and cargo must not
    // quietly rewrite it.
    let manifest = copy.join("crates/app/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replacen("version = \"0.1.0\"", "version = \"0.2.0\"", 1),
    )
    .unwrap();
    let output = home.run(&["build", path(&copy)]);
    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    assert!(
        errors.contains(&format!(
            "cannot update the lock file {} because --locked was passed",
            lock.display()
        )),
        "{errors}"
    );
    assert!(
        errors.ends_with(&format!(
            "error: `cargo build --target wasm32-wasip1 --message-format=json-render-diagnostics \
             --profile wasm --package app --bin shout --features loud --locked` failed (exit \
             status: 101)\n  hint: {} does not match Cargo.toml any more: run `cargo update \
             --workspace` in {} (it changes only what Cargo.toml now asks for) and commit the \
             updated Cargo.lock\n",
            lock.display(),
            copy.display()
        )),
        "{errors}"
    );
    assert_eq!(
        std::fs::read(&lock).unwrap(),
        committed,
        "the lock is untouched"
    );

    // What the hint says works.
    let update = Command::new("cargo")
        .args(["update", "--workspace", "--offline"])
        .current_dir(&copy)
        .output()
        .unwrap();
    assert!(update.status.success(), "{}", stderr(&update));
    build(&home, &copy, None, "localhost/locked:2");
    assert!(
        run_ok(&home, &["localhost/locked:2"]).ends_with("-- shout from app 0.2.0, profile wasm\n")
    );

    // Without a lock file there is nothing to hold the build to.
    std::fs::remove_file(&lock).unwrap();
    let progress = build(&home, &copy, None, "localhost/unlocked:1");
    assert!(!compile_line(&progress).contains("--locked"), "{progress}");
}

#[test]
fn cargo_target_dir_is_honoured_from_the_environment_and_the_wasmfile() {
    let home = Home::new();
    let (dir, copy) = copy_project(&workspace());

    let elsewhere = dir.path().join("elsewhere");
    let output = home
        .cmd()
        .env("CARGO_TARGET_DIR", &elsewhere)
        .args(["build", path(&copy), "-t", "localhost/env:1"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(elsewhere.join("wasm32-wasip1/wasm/shout.wasm").is_file());
    // The module came from there: the project's own target/ was never made.
    assert!(!copy.join("target").exists());
    assert_eq!(
        run_ok(&home, &["localhost/env:1"]),
        "o/ HELLO, WORLD!!!\n-- shout from app 0.1.0, profile wasm\n"
    );

    // `[build] env` sets it too (relative to the context, as cargo reads it there).
    let wasmfile = copy.join("crates/app/Wasmfile");
    let text = std::fs::read_to_string(&wasmfile).unwrap();
    std::fs::write(
        &wasmfile,
        text.replace(
            "[build]\n",
            "[build]\nenv = { CARGO_TARGET_DIR = \"../../../from-wasmfile\" }\n",
        ),
    )
    .unwrap();
    let output = home
        .cmd()
        .env_remove("CARGO_TARGET_DIR")
        .args([
            "build",
            path(&copy.join("crates/app")),
            "-t",
            "localhost/env:2",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        dir.path()
            .join("from-wasmfile/wasm32-wasip1/release/greet.wasm")
            .is_file()
    );
    assert!(!copy.join("target").exists());
    assert_eq!(
        run_ok(&home, &["localhost/env:2"]),
        "Hello, world!\n-- greet from app 0.1.0, profile release\n"
    );
}

/// `choose`, "a human-friendly and fast alternative to cut and (sometimes) awk": a binary
/// crate that ships its Cargo.lock, with regex and structopt (clap 2) among its 30
/// dependencies. Pinned: its output and lock file are part of this test.
const CHOOSE: (&str, &str) = ("choose", "1.3.7");

/// A crate's published source from crates.io, fetched by cargo (a project that depends on
/// it, vendored), in a temp folder of its own, outside any workspace.
fn crate_source((name, version): (&str, &str)) -> (TempDir, PathBuf) {
    let fetch = tempfile::tempdir().unwrap();
    std::fs::create_dir(fetch.path().join("src")).unwrap();
    std::fs::write(fetch.path().join("src/lib.rs"), "").unwrap();
    std::fs::write(
        fetch.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"fetch\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [dependencies]\n{name} = \"={version}\"\n\n[workspace]\n"
        ),
    )
    .unwrap();
    // A binary-only crate is no dependency cargo builds, but it resolves and vendors.
    let vendor = Command::new("cargo")
        .args(["vendor", "--versioned-dirs", "--quiet", "vendor"])
        .current_dir(fetch.path())
        .output()
        .unwrap();
    assert!(
        vendor.status.success(),
        "cargo vendor failed (crates.io must be reachable):\n{}",
        stderr(&vendor)
    );
    copy_project(
        &fetch
            .path()
            .join("vendor")
            .join(format!("{name}-{version}")),
    )
}

#[test]
fn a_real_program_from_crates_io_builds_locked_and_runs() {
    let started = std::time::Instant::now();
    let home = Home::new();
    let (_dir, source) = crate_source(CHOOSE);
    let lock = std::fs::read(source.join("Cargo.lock")).expect("the crate ships Cargo.lock");
    std::fs::write(
        source.join("Wasmfile"),
        "[build]\ntoolchain = \"cargo\"\n\n[image]\nname = \"localhost/choose\"\ntags = [\"1.3.7\"]\n",
    )
    .unwrap();
    let fetched = started.elapsed();

    // The dependencies compile once per test target dir, not once per run.
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("crates-io");
    let output = home
        .cmd()
        .env("CARGO_TARGET_DIR", &cache)
        .args(["build", path(&source)])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let progress = stderr(&output);
    assert!(compile_line(&progress).ends_with(" --locked"), "{progress}");
    assert_eq!(
        stdout(&output).split('@').next(),
        Some("localhost/choose:1.3.7")
    );
    assert_eq!(std::fs::read(source.join("Cargo.lock")).unwrap(), lock);
    let built = started.elapsed();

    // Real input on stdin, arguments through (one run: a debug build of wasmbuild takes
    // ~20 s to compile this 1.7 MB module): fields 0, 2 and the last of passwd-like lines.
    let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                  daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                  www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n";
    let output = run(
        &home,
        &[
            "localhost/choose:1.3.7",
            "-f",
            ":",
            "-o",
            " | ",
            "0",
            "2",
            "-1",
        ],
        passwd,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "root | 0 | /bin/bash\ndaemon | 1 | /usr/sbin/nologin\nwww-data | 33 | /usr/sbin/nologin\n"
    );
    eprintln!(
        "{} {}: fetched in {:.1?}, built in {:.1?}, ran in {:.1?}",
        CHOOSE.0,
        CHOOSE.1,
        fetched,
        built - fetched,
        started.elapsed() - built
    );
}
