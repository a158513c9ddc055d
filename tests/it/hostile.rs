//! `wasmbuild run` against images made by hand to attack the machine that runs them:
//! layer entries that climb out of the root, links leading out of it, device files, a
//! whiteout of `..`, and a layer whose bytes are not the ones its digest names. Each is
//! refused with the entry's name (or the digest); nothing appears outside the cache, and no
//! unpacked root is kept for the image.

use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use tar::{EntryType, Header};
use tempfile::TempDir;

use crate::support::{Home, fixture, sha256_digest, stderr, stdout};

const REFERENCE: &str = "localhost/hostile:1";
const PREBUILT_OUT: &str = "Hello from a prebuilt module\n";

/// One tar entry, its name and link written byte for byte (the `tar` crate's setters
/// refuse the very names these tests need).
struct Entry {
    name: String,
    kind: EntryType,
    data: Vec<u8>,
    link: Option<String>,
}

fn file(name: &str) -> Entry {
    Entry {
        name: name.to_owned(),
        kind: EntryType::Regular,
        data: b"written by a hostile image\n".to_vec(),
        link: None,
    }
}

fn link(kind: EntryType, name: &str, target: &str) -> Entry {
    Entry {
        name: name.to_owned(),
        kind,
        data: Vec::new(),
        link: Some(target.to_owned()),
    }
}

fn special(kind: EntryType, name: &str) -> Entry {
    Entry {
        name: name.to_owned(),
        kind,
        data: Vec::new(),
        link: None,
    }
}

fn layer(entries: &[Entry]) -> Vec<u8> {
    let mut tar = Vec::new();
    for entry in entries {
        let mut header = Header::new_ustar();
        let old = header.as_old_mut();
        assert!(entry.name.len() <= old.name.len(), "{}", entry.name);
        old.name[..entry.name.len()].copy_from_slice(entry.name.as_bytes());
        if let Some(link) = &entry.link {
            assert!(link.len() <= old.linkname.len(), "{link}");
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(entry.kind);
        header.set_mode(0o644);
        header.set_size(entry.data.len() as u64);
        if matches!(entry.kind, EntryType::Char | EntryType::Block) {
            // /dev/zero's numbers.
            header.set_device_major(1).unwrap();
            header.set_device_minor(5).unwrap();
        }
        header.set_cksum();
        tar.extend_from_slice(header.as_bytes());
        tar.extend_from_slice(&entry.data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.resize(tar.len() + 1024, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// A layer holding fixtures/prebuilt's module at /hello.wasm.
fn good_layer() -> Vec<u8> {
    let mut hello = file("hello.wasm");
    hello.data = std::fs::read(fixture("prebuilt").join("hello.wasm")).unwrap();
    layer(&[hello])
}

/// Writes an image with one layer into the home's store, as an OCI layout written by hand,
/// tagged `reference`. The layer blob holds `bytes` but is named by `digest` (the digest of
/// `bytes` unless a test says otherwise).
fn store_image(home: &Home, reference: &str, bytes: &[u8], digest: Option<&str>) {
    let store = home.store();
    let blobs = store.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> String {
        let digest = sha256_digest(bytes);
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), bytes).unwrap();
        digest
    };
    let layer_digest = match digest {
        Some(digest) => {
            std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), bytes).unwrap();
            digest.to_owned()
        }
        None => put(bytes),
    };
    let config = serde_json::json!({
        "architecture": "wasm",
        "os": "wasi",
        "config": { "Entrypoint": ["/hello.wasm"] },
        "rootfs": { "type": "layers", "diff_ids": [] },
    })
    .to_string();
    let config_digest = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": bytes.len(),
        }],
    })
    .to_string();
    let manifest_digest = put(manifest.as_bytes());
    let index_path = store.join("index.json");
    let mut index: serde_json::Value = match std::fs::read(&index_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
        Err(_) => serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [],
        }),
    };
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": reference },
        }));
    std::fs::write(&index_path, index.to_string()).unwrap();
    std::fs::write(
        store.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
}

/// The names directly under `dir` (none if it is missing), sorted.
fn names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn rootfs(home: &Home) -> PathBuf {
    home.dir.path().join("cache/rootfs")
}

/// What one hostile image must not reach: a folder of its own for the paths the layer
/// names, a file there that a hard link would take, and the temp folder a `--no-cache` run
/// unpacks in (with a file of its own that a whiteout of `..` would delete).
struct Target {
    escape: TempDir,
    tmp: TempDir,
}

impl Target {
    fn new() -> Target {
        let target = Target {
            escape: tempfile::Builder::new()
                .prefix("wasmbuild-escape-")
                .tempdir()
                .unwrap(),
            tmp: tempfile::Builder::new()
                .prefix("wasmbuild-tmp-")
                .tempdir()
                .unwrap(),
        };
        std::fs::write(target.secret(), b"secret\n").unwrap();
        std::fs::write(target.tmp.path().join("kept"), b"kept\n").unwrap();
        target
    }

    /// `/tmp/wasmbuild-escape-…`
    fn dir(&self) -> &str {
        self.escape.path().to_str().unwrap()
    }

    fn secret(&self) -> PathBuf {
        self.escape.path().join("secret")
    }

    /// Nothing was written there, linked to the secret, or deleted.
    fn untouched(&self, context: &str) {
        assert_eq!(names(self.escape.path()), ["secret"], "{context}");
        let meta = std::fs::metadata(self.secret()).unwrap();
        assert_eq!(meta.nlink(), 1, "{context}: the secret was hard-linked");
        assert_eq!(names(self.tmp.path()), ["kept"], "{context}: temp folder");
    }
}

/// Runs the image with `TMPDIR` pointing at the target's temp folder.
fn run(home: &Home, target: &Target, extra: &[&str]) -> Output {
    home.cmd()
        .env("TMPDIR", target.tmp.path())
        .arg("run")
        .args(extra)
        .arg(REFERENCE)
        .output()
        .unwrap()
}

/// `entries` are refused, naming `bad`, with and without the cache; nothing is kept.
fn refused(target: &Target, entries: &[Entry], bad: &str) {
    let home = Home::new();
    store_image(&home, REFERENCE, &layer(entries), None);
    for extra in [&[][..], &["--no-cache"]] {
        let output = run(&home, target, extra);
        let context = format!("{bad} {extra:?}");
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{context}: {err}");
        assert_eq!(stdout(&output), "", "{context}");
        assert!(
            err.starts_with("error: cannot unpack layer sha256:"),
            "{err}"
        );
        assert!(
            err.contains(&format!("caused by: refusing layer entry {bad:?}: ")),
            "{context}: {err}"
        );
        target.untouched(&context);
        assert_eq!(names(&rootfs(&home)), Vec::<String>::new(), "{context}");
    }
}

#[test]
fn entries_that_climb_out_of_the_root_are_refused() {
    let target = Target::new();
    // Climbing past `/` stays at `/`, so this names the escape folder from any depth.
    let climb = format!("{}{}/x", "../".repeat(12), target.dir());
    refused(&target, &[file(&climb)], &climb);
    refused(&target, &[file("a/../../x")], "a/../../x");
    let absolute = format!("{}/x", target.dir());
    refused(&target, &[file(&absolute)], &absolute);
}

#[test]
fn symlinks_out_of_the_root_and_writes_through_them_are_refused() {
    let target = Target::new();
    let through = "link/x";
    // A link to `/` (or the escape folder), then a file through it: the link is refused.
    refused(
        &target,
        &[link(EntryType::Symlink, "link", "/"), file(through)],
        "link",
    );
    refused(
        &target,
        &[
            link(EntryType::Symlink, "link", target.dir()),
            file(through),
        ],
        "link",
    );
    refused(
        &target,
        &[link(EntryType::Symlink, "link", "../../.."), file(through)],
        "link",
    );
    // A link that stays inside is kept, but nothing is written through it.
    refused(
        &target,
        &[link(EntryType::Symlink, "link", "."), file(through)],
        through,
    );
}

#[test]
fn hard_links_out_of_the_root_are_refused() {
    let target = Target::new();
    let secret = target.secret();
    let secret = secret.to_str().unwrap();
    refused(&target, &[link(EntryType::Link, "h", secret)], "h");
    let climb = format!("{}{secret}", "../".repeat(12));
    refused(&target, &[link(EntryType::Link, "h", &climb)], "h");
    // Through a symlink inside the root that points out of it.
    refused(
        &target,
        &[
            link(EntryType::Symlink, "s", "."),
            link(EntryType::Link, "h", "s/../../etc/passwd"),
        ],
        "h",
    );
}

#[test]
fn device_files_and_fifos_are_refused() {
    let target = Target::new();
    refused(&target, &[special(EntryType::Char, "zero")], "zero");
    refused(&target, &[special(EntryType::Block, "disk")], "disk");
    refused(&target, &[special(EntryType::Fifo, "pipe")], "pipe");
}

#[test]
fn a_whiteout_of_the_roots_parent_deletes_nothing() {
    let target = Target::new();
    let home = Home::new();
    // A root another image left in the cache sits beside the one being unpacked.
    store_image(&home, "localhost/good:1", &good_layer(), None);
    let output = home.run(&["run", "localhost/good:1"]);
    assert_eq!(stdout(&output), PREBUILT_OUT, "{}", stderr(&output));
    let kept = names(&rootfs(&home));
    assert_eq!(kept.len(), 1, "{kept:?}");

    store_image(&home, REFERENCE, &layer(&[file(".wh...")]), None);
    for extra in [&[][..], &["--no-cache"]] {
        let output = run(&home, &target, extra);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{err}");
        assert!(
            err.contains("caused by: refusing layer entry \".wh...\": a whiteout of \"..\""),
            "{err}"
        );
        target.untouched(&format!("{extra:?}"));
        assert_eq!(names(&rootfs(&home)), kept);
    }
    let output = home.run(&["run", "localhost/good:1"]);
    assert_eq!(stdout(&output), PREBUILT_OUT, "{}", stderr(&output));
}

#[test]
fn a_layer_whose_bytes_do_not_match_its_digest_is_refused() {
    let target = Target::new();
    let home = Home::new();
    let good = good_layer();
    let digest = sha256_digest(&good);
    // The same size, other bytes: only hashing tells them apart.
    let mut tampered = good.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0xff;
    store_image(&home, REFERENCE, &tampered, Some(&digest));
    for extra in [&[][..], &["--no-cache"]] {
        let output = run(&home, &target, extra);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{err}");
        assert_eq!(stdout(&output), "", "the guest never ran");
        assert!(
            err.contains(&format!("blob {digest} is corrupt: ")),
            "{err}"
        );
        target.untouched(&format!("{extra:?}"));
        assert_eq!(names(&rootfs(&home)), Vec::<String>::new());
    }
}

#[test]
fn a_layer_entry_declaring_10_gb_is_refused_before_anything_is_written() {
    let target = Target::new();
    let home = Home::new();
    // The header declares 10 GB; the layer ends right after it.
    let mut header = Header::new_ustar();
    header.set_path("big.bin").unwrap();
    header.set_entry_type(EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(10_000_000_000);
    header.set_cksum();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(header.as_bytes()).unwrap();
    store_image(&home, REFERENCE, &gz.finish().unwrap(), None);
    for extra in [&[][..], &["--no-cache"]] {
        let output = run(&home, &target, extra);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{err}");
        assert_eq!(stdout(&output), "", "the guest never ran");
        assert!(
            err.starts_with("error: cannot unpack layer sha256:"),
            "{err}"
        );
        assert!(
            err.contains(
                "caused by: refusing layer entry \"big.bin\": it declares 10000000000 bytes, \
                 more than the 4 GiB one entry may hold"
            ),
            "{err}"
        );
        target.untouched(&format!("{extra:?}"));
        assert_eq!(names(&rootfs(&home)), Vec::<String>::new());
    }
}
