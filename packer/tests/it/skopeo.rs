//! skopeo, an independent OCI client, reads the store and archives, and we load what it
//! writes. `scripts/test` installs skopeo, so a missing one is a failure.

use std::path::PathBuf;
use std::process::Command;

use wasmbuild_packer::{Reference, Store};

use crate::support::*;

fn skopeo(args: &[&str]) -> Vec<u8> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let skopeo: PathBuf = std::env::split_paths(&path)
        .map(|dir| dir.join("skopeo"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("`skopeo` is not on PATH: run `scripts/test`, which installs it")
        });
    let output = Command::new(skopeo)
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        output.status.success(),
        "skopeo {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn r(s: &str) -> Reference {
    s.parse().unwrap()
}

#[test]
fn skopeo_reads_full_references_from_the_store_and_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let image = simple_image("skopeo");
    let refs = [
        r("hello"),
        r("ghcr.io/me/app:1.0"),
        r("localhost:5000/me/app:v1"),
    ];
    store.put(&image, &refs).unwrap();
    for reference in &refs {
        // skopeo splits `oci:PATH:REF` at the first `:` after the path, so a reference
        // with a port, a tag, or both reads as it is.
        let source = format!("oci:{}:{reference}", store.root().display());
        let raw = skopeo(&["inspect", "--raw", &source]);
        assert_eq!(raw, image.manifest.bytes, "{source}");
        let config = skopeo(&["inspect", "--config", "--raw", &source]);
        assert_eq!(config, image.config.bytes, "{source}");
        let inspect: serde_json::Value =
            serde_json::from_slice(&skopeo(&["inspect", "--config", &source])).unwrap();
        assert_eq!(inspect["os"], "wasi");
        assert_eq!(inspect["architecture"], "wasm");
    }

    // skopeo copies out of the store, byte for byte.
    let copy = tmp.path().join("copy");
    let source = format!("oci:{}:localhost:5000/me/app:v1", store.root().display());
    skopeo(&[
        "copy",
        "--quiet",
        &source,
        &format!("oci:{}:localhost:5000/copied:2", copy.display()),
    ]);
    let copied = Store::open(&copy).unwrap();
    assert_eq!(
        copied
            .resolve(&r("localhost:5000/copied:2"))
            .unwrap()
            .digest,
        *image.digest()
    );

    // skopeo reads our archive…
    let archive = tmp.path().join("saved.tar");
    store.save(&refs, &archive).unwrap();
    for reference in &refs {
        let raw = skopeo(&[
            "inspect",
            "--raw",
            &format!("oci-archive:{}:{reference}", archive.display()),
        ]);
        assert_eq!(raw, image.manifest.bytes);
    }
    // …and we load skopeo's.
    let theirs = tmp.path().join("theirs.tar");
    skopeo(&[
        "copy",
        "--quiet",
        &source,
        &format!("oci-archive:{}:ghcr.io/them/app:9", theirs.display()),
    ]);
    let loaded_into = Store::open(&tmp.path().join("loaded")).unwrap();
    assert_eq!(
        loaded_into.load(&theirs).unwrap(),
        [r("ghcr.io/them/app:9")]
    );
    let d = loaded_into.resolve(&r("ghcr.io/them/app:9")).unwrap();
    assert_eq!(d.digest, *image.digest());
    let manifest = loaded_into.manifest(&d).unwrap();
    assert_eq!(
        loaded_into.read_blob(&manifest.layers[0].digest).unwrap(),
        image.layers[0].bytes
    );
}
