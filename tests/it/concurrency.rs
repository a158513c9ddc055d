//! Several wasmbuild processes on one store at once, and processes killed (SIGKILL) half
//! way through a write. Afterwards `index.json` parses, every reference that should be
//! there resolves to the digest its command printed, every blob any manifest names is
//! there and hashes to its name, and no temp or partial file is left: the next writer
//! collects what a killed one left.
//!
//! Each scenario runs several times, to meet more of the ways two processes interleave.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Home, digest_of, fixture, require_registry, stderr, stdout, unique_repo};

const ROUNDS: usize = 5;

/// A small xorshift generator; the seed is printed so a failing run can be repeated with
/// `WASMBUILD_TEST_SEED`.
struct Random(u64);

impl Random {
    fn new(test: &str) -> Random {
        let seed = std::env::var("WASMBUILD_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1);
                nanos ^ u64::from(std::process::id()) << 32
            });
        eprintln!("{test}: WASMBUILD_TEST_SEED={seed}");
        Random(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A duration from `low` to `high` milliseconds.
    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next() % (high - low + 1))
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(len + 8);
        while bytes.len() < len {
            bytes.extend_from_slice(&self.next().to_le_bytes());
        }
        bytes.truncate(len);
        bytes
    }
}

fn spawn(home: &Home, args: &[&str]) -> Child {
    home.cmd()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wasmbuild")
}

/// Waits for a command started with [`spawn`] and insists it succeeded; returns stdout.
fn succeeded(child: Child, what: &str) -> String {
    let output = child.wait_with_output().expect("wait for wasmbuild");
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// The `REF@DIGEST` line a build printed for `reference`.
fn built_digest(out: &str, reference: &str) -> String {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{reference}@")))
        .unwrap_or_else(|| panic!("no {reference}@… line in:\n{out}"));
    digest_of(line).to_owned()
}

/// The temp and partial files in the store's root and blobs folder.
fn temp_files(store: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in [store.to_path_buf(), store.join("blobs/sha256")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") || name.starts_with(".partial-") {
                found.push(entry.path());
            }
        }
    }
    found
}

/// `sha256:<hex>` of each file, by sha256sum (not the code under test).
fn hashes(files: &[PathBuf]) -> BTreeMap<PathBuf, String> {
    if files.is_empty() {
        return BTreeMap::new();
    }
    let output = std::process::Command::new("sha256sum")
        .arg("--")
        .args(files)
        .output()
        .expect("run sha256sum");
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .map(|line| {
            let (hex, path) = line.split_once("  ").expect("HEX  PATH");
            (PathBuf::from(path), format!("sha256:{hex}"))
        })
        .collect()
}

/// Checks the store of `home` as a reader sees it: `index.json` parses; `images --json`
/// lists each of `present` with its digest and none of `absent`, and every reference it
/// lists is an `index.json` entry with the same digest; every blob a manifest or index
/// reached from `index.json` names is there, and every blob file hashes to its name; no
/// temp or partial file is left. Returns the references listed.
fn assert_intact(
    home: &Home,
    present: &BTreeMap<String, String>,
    absent: &[String],
) -> BTreeMap<String, String> {
    let store = home.store();
    let index: Value =
        serde_json::from_slice(&std::fs::read(store.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().expect("manifests");
    let mut named = BTreeMap::new();
    for entry in entries {
        if let Some(name) = entry["annotations"]["org.opencontainers.image.ref.name"].as_str() {
            named.insert(
                name.to_owned(),
                entry["digest"].as_str().unwrap().to_owned(),
            );
        }
    }

    let images: Value = serde_json::from_str(&home.ok(&["images", "--json"])).unwrap();
    let listed: BTreeMap<String, String> = images
        .as_array()
        .expect("an array")
        .iter()
        .map(|i| {
            (
                i["reference"].as_str().unwrap().to_owned(),
                i["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (reference, digest) in present {
        assert_eq!(
            listed.get(reference),
            Some(digest),
            "{reference} in {listed:#?}"
        );
    }
    for reference in absent {
        assert!(
            !listed.contains_key(reference),
            "{reference} is still there"
        );
    }
    for (reference, digest) in &listed {
        let qualified = [
            reference.clone(),
            format!("docker.io/{reference}"),
            format!("docker.io/library/{reference}"),
        ]
        .iter()
        .find_map(|name| named.get(name));
        assert_eq!(qualified, Some(digest), "{reference} in {index:#}");
    }

    // Every blob reached from index.json is there.
    let blobs = store.join("blobs/sha256");
    let blob = |digest: &str| blobs.join(digest.trim_start_matches("sha256:"));
    let mut pending: Vec<Value> = entries.clone();
    let mut seen = BTreeSet::new();
    while let Some(d) = pending.pop() {
        let digest = d["digest"].as_str().expect("a digest").to_owned();
        if !seen.insert(digest.clone()) {
            continue;
        }
        let path = blob(&digest);
        assert!(path.is_file(), "{digest} ({}) is missing", d["mediaType"]);
        let media_type = d["mediaType"].as_str().unwrap_or_default();
        if media_type.ends_with("manifest.v1+json") || media_type.ends_with("manifest.v2+json") {
            let m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            pending.push(m["config"].clone());
            pending.extend(m["layers"].as_array().unwrap().iter().cloned());
            if m["subject"].is_object() {
                pending.push(m["subject"].clone());
            }
        } else if media_type.ends_with("index.v1+json") {
            let i: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            pending.extend(i["manifests"].as_array().unwrap().iter().cloned());
        }
    }
    // Every blob file, reached or not, is whole.
    let files: Vec<PathBuf> = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    for (path, actual) in hashes(&files) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            actual,
            format!("sha256:{name}"),
            "{} is torn",
            path.display()
        );
    }

    let temps = temp_files(&store);
    assert!(temps.is_empty(), "left behind: {temps:#?}");
    listed
}

#[test]
fn two_builds_into_one_store_at_once_keep_both() {
    let home = Home::new();
    let (copy, prebuilt) = (fixture("copy"), fixture("prebuilt"));
    let mut present = BTreeMap::new();
    for round in 0..ROUNDS {
        let (a, b) = (
            format!("localhost/conc-copy:{round}"),
            format!("localhost/conc-prebuilt:{round}"),
        );
        // A new image each round (the build arg is in its labels), so blobs are written too.
        let version = format!("VERSION=r{round}");
        let first = spawn(
            &home,
            &[
                "build",
                copy.to_str().unwrap(),
                "--build-arg",
                &version,
                "-t",
                &a,
            ],
        );
        let second = spawn(&home, &["build", prebuilt.to_str().unwrap(), "-t", &b]);
        let (first, second) = (succeeded(first, &a), succeeded(second, &b));
        present.insert(a.clone(), built_digest(&first, &a));
        present.insert(b.clone(), built_digest(&second, &b));
        present.insert(
            "localhost/site:latest".to_owned(),
            built_digest(&first, "localhost/site:latest"),
        );
        assert_intact(&home, &present, &[]);
    }
}

#[test]
fn a_build_and_an_rmi_of_another_image_at_once() {
    let home = Home::new();
    let copy = fixture("copy");
    let copy = copy.to_str().unwrap();
    let mut present = BTreeMap::new();
    let mut absent = Vec::new();
    for round in 0..ROUNDS {
        // The victim shares its layer and precompiled code with the kept images: only its
        // config and manifests are its own. The Wasmfile names it `site:<VERSION>` and
        // `site:latest` too; the build moves `site:latest` away, the rmi takes the rest.
        let victim = format!("localhost/victim:{round}");
        let victim_site = format!("localhost/site:victim{round}");
        let version = format!("VERSION=victim{round}");
        let victim_digest = digest_of(
            home.ok(&["build", copy, "--build-arg", &version, "-t", &victim])
                .lines()
                .next()
                .unwrap(),
        )
        .to_owned();
        let keep = format!("localhost/keep:{round}");
        let version = format!("VERSION=keep{round}");
        let build = spawn(
            &home,
            &["build", copy, "--build-arg", &version, "-t", &keep],
        );
        let rmi = spawn(&home, &["rmi", &victim, &victim_site]);
        let built = succeeded(build, &keep);
        succeeded(rmi, &format!("rmi {victim}"));
        present.insert(keep.clone(), built_digest(&built, &keep));
        present.insert(
            "localhost/site:latest".to_owned(),
            built_digest(&built, "localhost/site:latest"),
        );
        absent.extend([victim, victim_site]);
        assert_intact(&home, &present, &absent);
        // Nothing names the victim any more, so its manifest went with it.
        let manifest = home
            .store()
            .join("blobs/sha256")
            .join(victim_digest.trim_start_matches("sha256:"));
        assert!(!manifest.exists(), "the victim's manifest is still there");
    }
}

#[test]
fn a_pull_and_a_run_of_the_same_image_at_once() {
    let registry = require_registry();
    let target = format!("{registry}/{}:1.0", unique_repo("pull-and-run"));
    let pusher = Home::new();
    let digest = digest_of(&pusher.build("hello", &["-t", &target])).to_owned();
    pusher.ok(&["push", &target]);
    for round in 0..ROUNDS {
        // A fresh home each round, so both commands fetch the image.
        let home = Home::new();
        let pull = spawn(&home, &["pull", &target]);
        let run = spawn(&home, &["run", &target, &format!("round{round}")]);
        let pulled = succeeded(pull, &format!("pull {target}"));
        let ran = succeeded(run, &format!("run {target}"));
        assert_eq!(pulled.trim(), format!("{target}@{digest}"));
        assert!(
            ran.contains(&format!("Hello from wasmbuild, round{round}!")),
            "{ran}"
        );
        assert_intact(
            &home,
            &BTreeMap::from([(target.clone(), digest.clone())]),
            &[],
        );
        // Once more from what the store has.
        let again = home.ok(&["run", "--pull", "never", &target, "again"]);
        assert!(again.contains("Hello from wasmbuild, again!"), "{again}");
    }
}

/// How a writer is killed.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// After this long, wherever it is.
    After(Duration),
    /// This long after its first temp or partial file appears in the store: mid-write.
    AfterTemp(Duration),
}

impl Kill {
    fn pick(random: &mut Random, round: usize) -> Kill {
        if round.is_multiple_of(2) {
            Kill::After(random.millis(5, 200))
        } else {
            Kill::AfterTemp(random.millis(0, 20))
        }
    }
}

/// Starts wasmbuild with `args`, SIGKILLs it as `kill` says (unless it ends first) and
/// reaps it. Returns whether it was killed and the temp files it left, as found right
/// after.
fn kill_midway(home: &Home, args: &[&str], kill: Kill) -> (bool, Vec<PathBuf>) {
    let mut child = home
        .cmd()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn wasmbuild");
    let started = Instant::now();
    let deadline = match kill {
        Kill::After(delay) => Some(started + delay),
        Kill::AfterTemp(_) => None,
    };
    let mut deadline = deadline;
    let killed = loop {
        if child.try_wait().expect("poll wasmbuild").is_some() {
            break false;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            // SIGKILL: no destructor, no clean-up.
            child.kill().expect("kill wasmbuild");
            break true;
        }
        if let (Kill::AfterTemp(delay), None) = (kill, deadline)
            && !temp_files(&home.store()).is_empty()
        {
            deadline = Some(now + delay);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "wasmbuild {args:?} neither ended nor wrote"
        );
        std::thread::sleep(Duration::from_micros(500));
    };
    child.wait().expect("reap wasmbuild");
    (killed, temp_files(&home.store()))
}

/// A project with a module and `size` bytes of `[[copy]]` data that gzip cannot shrink,
/// so that packing and storing it take a while.
fn big_project(random: &mut Random, size: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("prebuilt").join("hello.wasm"),
        dir.path().join("hello.wasm"),
    )
    .unwrap();
    std::fs::write(dir.path().join("big.bin"), random.bytes(size)).unwrap();
    std::fs::write(
        dir.path().join("Wasmfile"),
        "[build]\nmodule = \"hello.wasm\"\n\n[[copy]]\nfrom = \"big.bin\"\nto = \"/data/big.bin\"\n",
    )
    .unwrap();
    dir
}

/// After a kill: `images` reads the store, a build (a write) succeeds, and afterwards the
/// store is whole with no temp file left. `maybe` is the reference the killed command
/// was writing: there or not, it must be whole; if there it is removed, so the next
/// round writes it again.
fn repaired(home: &Home, round: usize, present: &mut BTreeMap<String, String>, maybe: &str) {
    let images: Value = serde_json::from_str(&home.ok(&["images", "--json"])).unwrap();
    assert!(images.is_array(), "{images}");
    let after = format!("localhost/after-kill:{round}");
    let built = home.build("prebuilt", &["-t", &after]);
    present.insert(after, digest_of(&built).to_owned());
    let listed = assert_intact(home, present, &[]);
    if listed.contains_key(maybe) {
        home.ok(&["rmi", maybe]);
    }
}

#[test]
fn a_killed_load_is_repaired_by_the_next_write() {
    let mut random = Random::new("a_killed_load_is_repaired_by_the_next_write");
    let source = Home::new();
    let project = big_project(&mut random, 8 << 20);
    source.ok(&[
        "build",
        project.path().to_str().unwrap(),
        "-t",
        "localhost/big:1",
    ]);
    let archive = source.dir.path().join("big.tar");
    source.ok(&["save", "-o", archive.to_str().unwrap(), "localhost/big:1"]);

    let home = Home::new();
    home.build("prebuilt", &["-t", "localhost/before:1"]);
    let mut present = BTreeMap::new();
    let mut left = 0;
    for round in 0..8 {
        let kill = Kill::pick(&mut random, round);
        let (killed, temps) = kill_midway(&home, &["load", "-i", archive.to_str().unwrap()], kill);
        eprintln!("round {round}: {kill:?}, killed: {killed}, left {temps:?}");
        left += usize::from(!temps.is_empty());
        repaired(&home, round, &mut present, "localhost/big:1");
    }
    assert!(left > 0, "no kill landed in the middle of a write");
    home.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(home.ok(&["images"]).contains("localhost/big"));
}

#[test]
fn a_killed_build_is_repaired_by_the_next_write() {
    let mut random = Random::new("a_killed_build_is_repaired_by_the_next_write");
    let home = Home::new();
    let mut present = BTreeMap::new();
    for round in 0..8 {
        // New bytes each round, so the build has blobs to write.
        let project = big_project(&mut random, 1 << 20);
        let kill = Kill::pick(&mut random, round);
        let (killed, temps) = kill_midway(
            &home,
            &[
                "build",
                project.path().to_str().unwrap(),
                "-t",
                "localhost/killed:1",
            ],
            kill,
        );
        eprintln!("round {round}: {kill:?}, killed: {killed}, left {temps:?}");
        repaired(&home, round, &mut present, "localhost/killed:1");
    }
}

#[test]
fn a_killed_pull_is_repaired_by_the_next_write() {
    let registry = require_registry();
    let mut random = Random::new("a_killed_pull_is_repaired_by_the_next_write");
    let target = format!("{registry}/{}:1.0", unique_repo("killed-pull"));
    let pusher = Home::new();
    let project = big_project(&mut random, 8 << 20);
    pusher.ok(&["build", project.path().to_str().unwrap(), "-t", &target]);
    pusher.ok(&["push", &target]);

    let home = Home::new();
    let mut present = BTreeMap::new();
    let mut left = 0;
    for round in 0..6 {
        let kill = Kill::pick(&mut random, round);
        let (killed, temps) = kill_midway(&home, &["pull", &target], kill);
        eprintln!("round {round}: {kill:?}, killed: {killed}, left {temps:?}");
        left += usize::from(!temps.is_empty());
        repaired(&home, round, &mut present, &target);
    }
    assert!(left > 0, "no kill landed in the middle of a download");

    // Writers that run while a pull downloads leave its partial files alone.
    let mut overlapped = 0;
    for round in 0..3 {
        let home = Home::new();
        let mut pull = spawn(&home, &["pull", &target]);
        let mut writes = 0;
        while pull.try_wait().expect("poll the pull").is_none() {
            let downloading = !temp_files(&home.store()).is_empty();
            let during = format!("localhost/during:{round}-{writes}");
            home.build("prebuilt", &["-t", &during]);
            writes += 1;
            overlapped += usize::from(downloading);
        }
        let pulled = succeeded(pull, &format!("pull {target} while {writes} builds ran"));
        assert!(pulled.starts_with(&format!("{target}@")), "{pulled}");
        let listed = assert_intact(&home, &BTreeMap::new(), &[]);
        assert!(listed.contains_key(&target), "{listed:#?}");
    }
    assert!(overlapped > 0, "no build ran while a pull was downloading");
}
