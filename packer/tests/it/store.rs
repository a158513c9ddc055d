//! The local store: put, resolve, list, tag, remove with gc, locking, corruption.

use std::fs;
use std::sync::Arc;

use wasmbuild_packer::{Reference, Store, StoreError};

use crate::support::*;

fn r(s: &str) -> Reference {
    s.parse().unwrap()
}

fn blob_count(store: &Store) -> usize {
    fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .count()
}

#[test]
fn open_creates_a_layout_with_the_lock_beside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let store = Store::open(&root).unwrap();
    assert_eq!(
        fs::read_to_string(root.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert_eq!(
        fs::read_to_string(root.join("index.json")).unwrap(),
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#
    );
    store.put(&simple_image("a"), &[r("a")]).unwrap();
    assert_eq!(
        store.lock_path(),
        tmp.path().canonicalize().unwrap().join("store.lock")
    );
    assert!(store.lock_path().exists());
    let mut inside: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    inside.sort();
    assert_eq!(inside, ["blobs", "index.json", "oci-layout"]);
    // Opening again keeps what is there.
    let again = Store::open(&root).unwrap();
    assert_eq!(again.list().unwrap().len(), 1);
}

#[test]
fn put_resolve_list_tag_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let one = simple_image("one");
    let two = simple_image("two");
    let d1 = store
        .put(&one, &[r("hello"), r("ghcr.io/me/hello:1.0")])
        .unwrap();
    assert_eq!(d1.digest, *one.digest());
    assert_eq!(d1.size, one.manifest.bytes.len() as u64);
    assert!(d1.annotations.is_empty());
    store.put(&two, &[r("localhost:5000/two:v2")]).unwrap();

    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(store.root().join("index.json")).unwrap()).unwrap();
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "docker.io/library/hello:latest",
            "ghcr.io/me/hello:1.0",
            "localhost:5000/two:v2"
        ]
    );

    assert_eq!(
        store
            .resolve(&r("docker.io/library/hello:latest"))
            .unwrap()
            .digest,
        *one.digest()
    );
    assert_eq!(
        store
            .resolve(&r("index.docker.io/library/hello"))
            .unwrap()
            .digest,
        *one.digest()
    );
    let by_digest = r(&format!("whatever/name@{}", two.digest()));
    assert_eq!(store.resolve(&by_digest).unwrap().digest, *two.digest());
    let err = store.resolve(&r("hello:nope")).unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }));
    assert!(
        err.to_string().contains("docker.io/library/hello:nope"),
        "{err}"
    );

    let listed: Vec<(String, String)> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|i| (i.reference.to_string(), i.manifest.digest.to_string()))
        .collect();
    assert_eq!(
        listed,
        [
            (
                "docker.io/library/hello:latest".to_string(),
                one.digest().to_string()
            ),
            ("ghcr.io/me/hello:1.0".to_string(), one.digest().to_string()),
            (
                "localhost:5000/two:v2".to_string(),
                two.digest().to_string()
            ),
        ]
    );

    let manifest = store.manifest(&d1).unwrap();
    assert_eq!(manifest.layers.len(), 1);
    let config = store.config(&manifest).unwrap();
    assert_eq!(config.architecture, "wasm");
    assert_eq!(config.os, "wasi");
    assert_eq!(config.config.unwrap().entrypoint.unwrap(), ["/hello.wasm"]);
    assert_eq!(
        store.read_blob(&manifest.layers[0].digest).unwrap(),
        one.layers[0].bytes
    );

    // Re-tagging moves the reference; the other image's blobs go once nothing names them.
    let blobs_before = blob_count(&store);
    store
        .tag(&r("localhost:5000/two:v2"), &r("ghcr.io/me/hello:1.0"))
        .unwrap();
    assert_eq!(
        store.resolve(&r("ghcr.io/me/hello:1.0")).unwrap().digest,
        *two.digest()
    );
    assert_eq!(store.list().unwrap().len(), 3);
    assert_eq!(
        blob_count(&store),
        blobs_before,
        "hello:latest still names image one"
    );
    assert!(store.tag(&r("nope"), &r("x")).is_err());
    assert!(matches!(
        store.tag(&r("hello"), &by_digest).unwrap_err(),
        StoreError::DigestReference { .. }
    ));

    let removed = store.remove(&r("hello")).unwrap();
    assert_eq!(removed.digest, *one.digest());
    for digest in [one.digest(), &one.config.digest] {
        assert!(!store.blob_path(digest).exists(), "{digest} left behind");
    }
    assert!(
        store.blob_path(&one.layers[0].digest).exists(),
        "image two shares the layer"
    );
    assert_eq!(blob_count(&store), 3);
    assert!(matches!(
        store.remove(&r("hello")).unwrap_err(),
        StoreError::NotFound { .. }
    ));
    store
        .remove(&r(&format!("ghcr.io/me/hello@{}", two.digest())))
        .unwrap();
    assert_eq!(
        store.list().unwrap().len(),
        1,
        "only localhost:5000/two:v2 is left"
    );
    store.remove(&r("localhost:5000/two:v2")).unwrap();
    assert_eq!(blob_count(&store), 0);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn putting_a_new_build_under_the_same_tag_drops_the_old_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let old = simple_image("old");
    let new = simple_image("new");
    store.put(&old, &[r("app")]).unwrap();
    store.put(&new, &[r("app")]).unwrap();
    assert!(!store.blob_path(old.digest()).exists());
    assert!(!store.blob_path(&old.config.digest).exists());
    assert!(
        store.blob_path(&new.layers[0].digest).exists(),
        "the shared layer stays"
    );
    assert_eq!(store.list().unwrap().len(), 1);
    // Untagged: kept, reachable by digest, not listed.
    let third = simple_image("third");
    store.put(&third, &[]).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
    let by_digest = r(&format!("x@{}", third.digest()));
    assert_eq!(store.resolve(&by_digest).unwrap().digest, *third.digest());
    assert!(matches!(
        store.put(&third, &[by_digest]).unwrap_err(),
        StoreError::DigestReference { .. }
    ));
}

#[test]
fn concurrent_puts_from_threads_keep_every_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let root = Arc::new(root);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let root = Arc::clone(&root);
            std::thread::spawn(move || {
                // Each thread its own handle, as two processes would have.
                let store = Store::open(&root).unwrap();
                for round in 0..5 {
                    let image = simple_image(&format!("{i}-{round}"));
                    store
                        .put(&image, &[r(&format!("app{i}:{round}")), r("shared")])
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let store = Store::open(&root).unwrap();
    let images = store.list().unwrap();
    assert_eq!(images.len(), 8 * 5 + 1);
    for image in &images {
        let manifest = store.manifest(&image.manifest).unwrap();
        store.config(&manifest).unwrap();
        for layer in &manifest.layers {
            store.read_blob(&layer.digest).unwrap();
        }
    }
    let leftovers: Vec<_> = fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // 41 manifests and configs, one shared layer.
    assert_eq!(blob_count(&store), 8 * 5 * 2 + 1);
}

#[test]
fn a_corrupted_blob_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let image = simple_image("x");
    let d = store.put(&image, &[r("app")]).unwrap();
    let config_path = store.blob_path(&image.config.digest);
    let mut bytes = fs::read(&config_path).unwrap();
    bytes[10] ^= 1;
    fs::write(&config_path, &bytes).unwrap();
    let manifest = store.manifest(&d).unwrap();
    let err = store.config(&manifest).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&image.config.digest.to_string()), "{text}");
    assert!(text.contains(config_path.to_str().unwrap()), "{text}");
    let err = store
        .save(&[r("app")], &tmp.path().join("out.tar"))
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(!tmp.path().join("out.tar").exists());
    let leftovers = fs::read_dir(tmp.path()).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".tmp")
    });
    assert_eq!(leftovers.count(), 0);

    // A truncated blob: the size no longer matches the descriptor.
    fs::write(&config_path, b"{}").unwrap();
    let err = store.config(&manifest).unwrap_err();
    assert!(matches!(err, StoreError::SizeMismatch { .. }), "{err}");
    fs::remove_file(&config_path).unwrap();
    let err = store.read_blob(&image.config.digest).unwrap_err();
    assert!(matches!(err, StoreError::MissingBlob { .. }), "{err}");
}

#[test]
fn a_broken_index_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    for junk in [
        &b"{not json"[..],
        b"[]",
        br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:zz"}]}"#,
    ] {
        fs::write(store.root().join("index.json"), junk).unwrap();
        let err = store.list().unwrap_err();
        assert!(err.to_string().contains("index.json"), "{err}");
        assert!(store.resolve(&r("app")).is_err());
        assert!(store.put(&simple_image("x"), &[r("app")]).is_err());
    }
    fs::write(
        store.root().join("oci-layout"),
        r#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .unwrap();
    let err = Store::open(store.root()).unwrap_err();
    assert!(err.to_string().contains("oci-layout"), "{err}");
}
