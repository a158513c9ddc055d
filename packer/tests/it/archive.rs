//! save → load round trips, and archives that load refuses.

use std::fs;
use std::io::Read;

use wasmbuild_packer::{Reference, Store, StoreError};

use crate::support::*;

fn r(s: &str) -> Reference {
    s.parse().unwrap()
}

fn archive_entries(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(fs::File::open(path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            (name, bytes)
        })
        .collect()
}

#[test]
fn save_then_load_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("a")).unwrap();
    let one = simple_image("one");
    let two = simple_image("two");
    store
        .put(&one, &[r("hello"), r("ghcr.io/me/hello:1.0")])
        .unwrap();
    store.put(&two, &[r("localhost:5000/two:v2")]).unwrap();
    let out = tmp.path().join("images.tar");
    let refs = [
        r("hello"),
        r("ghcr.io/me/hello:1.0"),
        r("localhost:5000/two:v2"),
    ];
    store.save(&refs, &out).unwrap();

    let entries = archive_entries(&out);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..5],
        [
            "oci-layout",
            "index.json",
            "manifest.json",
            "blobs/",
            "blobs/sha256/"
        ]
    );
    assert_eq!(
        names.len(),
        5 + 5,
        "two manifests, two configs, one shared layer"
    );
    let index: serde_json::Value = serde_json::from_slice(&entries[1].1).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 3);
    for (m, want) in manifests.iter().zip(&refs) {
        assert_eq!(
            m["annotations"]["org.opencontainers.image.ref.name"],
            want.to_string()
        );
        assert_eq!(
            m["annotations"]["io.containerd.image.name"],
            want.to_string()
        );
    }
    let docker: serde_json::Value = serde_json::from_slice(&entries[2].1).unwrap();
    let tags: Vec<&serde_json::Value> = docker
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["RepoTags"])
        .collect();
    assert!(
        tags.contains(&&serde_json::json!([
            "hello:latest",
            "ghcr.io/me/hello:1.0"
        ])),
        "{docker}"
    );
    // Saving is reproducible too.
    let again = tmp.path().join("again.tar");
    store.save(&refs, &again).unwrap();
    assert_eq!(fs::read(&out).unwrap(), fs::read(&again).unwrap());
    let mut streamed = Vec::new();
    store.save_to(&refs, &mut streamed).unwrap();
    assert_eq!(
        streamed,
        fs::read(&out).unwrap(),
        "save_to writes the same bytes"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }

    let other = Store::open(&tmp.path().join("b")).unwrap();
    let loaded = other.load(&out).unwrap();
    assert_eq!(loaded, refs);
    for (reference, image) in [(&refs[0], &one), (&refs[1], &one), (&refs[2], &two)] {
        let d = other.resolve(reference).unwrap();
        assert_eq!(d.digest, *image.digest());
        let manifest = other.manifest(&d).unwrap();
        assert_eq!(
            other.read_blob(&manifest.layers[0].digest).unwrap(),
            image.layers[0].bytes
        );
    }
    // Loading again changes nothing.
    let before = fs::read(other.root().join("index.json")).unwrap();
    other.load(&out).unwrap();
    assert_eq!(fs::read(other.root().join("index.json")).unwrap(), before);
    // A digest reference saves too.
    let pinned = r(&format!("hello@{}", one.digest()));
    store.save(std::slice::from_ref(&pinned), &out).unwrap();
    let third = Store::open(&tmp.path().join("c")).unwrap();
    assert!(
        third.load(&out).unwrap().is_empty(),
        "a digest reference loads untagged"
    );
    assert_eq!(third.resolve(&pinned).unwrap().digest, *one.digest());
}

/// Rewrites the archive at `path` with `edit` applied to each (name, bytes).
fn rewrite(path: &std::path::Path, edit: impl Fn(&str, &mut Vec<u8>) -> Option<String>) {
    let entries = archive_entries(path);
    let mut builder = tar::Builder::new(Vec::new());
    for (name, mut bytes) in entries {
        let name = edit(&name, &mut bytes).unwrap_or(name);
        let mut header = tar::Header::new_gnu();
        if name.ends_with('/') {
            header.set_entry_type(tar::EntryType::Directory);
        }
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder.append(&header, &bytes[..]).unwrap();
    }
    fs::write(path, builder.into_inner().unwrap()).unwrap();
}

#[test]
fn load_refuses_bad_archives_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("a")).unwrap();
    let image = simple_image("one");
    store.put(&image, &[r("hello")]).unwrap();
    let good = tmp.path().join("good.tar");
    store.save(&[r("hello")], &good).unwrap();
    let layer = format!("blobs/sha256/{}", image.layers[0].digest.hex());
    let config = format!("blobs/sha256/{}", image.config.digest.hex());

    type Edit = Box<dyn Fn(&str, &mut Vec<u8>) -> Option<String>>;
    let cases: Vec<(&str, Edit, String)> = vec![
        (
            "tampered layer",
            Box::new({
                let layer = layer.clone();
                move |n, b| {
                    if n == layer {
                        b[20] ^= 0xff;
                    }
                    None
                }
            }),
            "is corrupt".to_string(),
        ),
        (
            "missing config",
            Box::new({
                let config = config.clone();
                move |n, _| (n == config).then(|| "blobs/elsewhere".to_string())
            }),
            "is not in the archive".to_string(),
        ),
        (
            "escaping name",
            Box::new(|n, _| (n == "manifest.json").then(|| "../evil".to_string())),
            "refusing entry \"../evil\"".to_string(),
        ),
        (
            "absolute name",
            Box::new(|n, _| (n == "manifest.json").then(|| "/tmp/evil".to_string())),
            "refusing entry \"/tmp/evil\"".to_string(),
        ),
        (
            "size lies",
            Box::new(|n, b| {
                if n == "index.json" {
                    let text = String::from_utf8(b.clone()).unwrap();
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                    let size = v["manifests"][0]["size"].as_u64().unwrap();
                    *b = text
                        .replace(
                            &format!("\"size\":{size}"),
                            &format!("\"size\":{}", size + 1),
                        )
                        .into_bytes();
                }
                None
            }),
            "but its descriptor says".to_string(),
        ),
        (
            "no index",
            Box::new(|n, _| (n == "index.json").then(|| "other.json".to_string())),
            "no index.json".to_string(),
        ),
    ];
    for (what, edit, want) in cases {
        let bad = tmp.path().join("bad.tar");
        fs::copy(&good, &bad).unwrap();
        rewrite(&bad, edit);
        let other =
            Store::open(&tmp.path().join(format!("store-{}", what.replace(' ', "-")))).unwrap();
        let err = other.load(&bad).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&want), "{what}: {text}");
        assert!(
            text.contains("bad.tar"),
            "{what}: the error names the archive: {text}"
        );
        assert!(
            matches!(
                err,
                StoreError::Archive { .. } | StoreError::UnsafeArchiveEntry { .. }
            ),
            "{what}"
        );
        assert!(other.list().unwrap().is_empty(), "{what}");
        assert_eq!(
            fs::read_dir(other.root().join("blobs/sha256"))
                .unwrap()
                .count(),
            0,
            "{what}: nothing staged stays"
        );
    }
}
