//! Layers and archives made by hand to exhaust the machine that reads them: too many
//! entries, a file declaring 10 GB, a sparse file of 10 GiB of holes, headers of megabytes,
//! an oversized config, a layer whose size is not its descriptor's. Each is refused with
//! the entry (or blob) and the limit named, before the memory or disk is used.

use std::fs;
use std::io::Write;
use std::path::Path;

use tar::{EntryType, Header};
use wasmbuild_packer::image::{MAX_CONFIG_SIZE, media_type};
use wasmbuild_packer::layer::{MAX_ENTRY_HEADERS, MAX_LAYER_ENTRIES};
use wasmbuild_packer::{Blob, Manifest, PackError, Store, StoreError, find_file, unpack_layer};

fn gzip(tar: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(tar).unwrap();
    gz.finish().unwrap()
}

/// A GNU header for `name`, declaring `size` bytes whatever follows it.
fn header(name: &str, kind: EntryType, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_path(name).unwrap();
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(size);
    header
}

fn block(mut header: Header) -> Vec<u8> {
    header.set_cksum();
    header.as_bytes().to_vec()
}

const END: [u8; 1024] = [0; 1024];

/// `count` entries of the folder `d/` (one folder, so unpacking them is quick), then `last`.
fn many_entries(count: u64, last: &str) -> Vec<u8> {
    let folder = block(header("d/", EntryType::Directory, 0));
    let mut tar = Vec::with_capacity((count as usize + 3) * 512);
    for _ in 0..count {
        tar.extend_from_slice(&folder);
    }
    tar.extend(block(header(last, EntryType::Regular, 0)));
    tar.extend_from_slice(&END);
    gzip(&tar)
}

#[test]
fn a_layer_of_more_than_100000_entries_is_refused_at_the_first_one_over() {
    assert_eq!(MAX_LAYER_ENTRIES, 100_000);
    let layer = many_entries(MAX_LAYER_ENTRIES, "d/one-too-many");
    // Small: 51 MB of tar, about 220 kB gzip'd.
    assert!(layer.len() < 300_000, "{} bytes", layer.len());
    let out = tempfile::tempdir().unwrap();
    let err = unpack_layer(&layer, out.path()).unwrap_err();
    assert!(matches!(err, PackError::LayerLimit { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "refusing layer entry \"d/one-too-many\": the layer has more than 100000 entries, the \
         most one layer may have"
    );
    assert!(out.path().join("d").is_dir());
    assert!(!out.path().join("d/one-too-many").exists());
    // (That exactly the limit is fine, layer.rs's own tests show with smaller limits.)
}

#[test]
fn a_file_declaring_10_gb_is_refused_before_it_is_created_or_read() {
    let mut tar = block(header("small.txt", EntryType::Regular, 5));
    tar.extend(b"small");
    tar.resize(1024, 0);
    // No body follows: the header alone must be refused, never trusted for a buffer.
    tar.extend(block(header("big.bin", EntryType::Regular, 10_000_000_000)));
    tar.extend_from_slice(&END);
    let layer = gzip(&tar);
    let out = tempfile::tempdir().unwrap();
    let err = unpack_layer(&layer, out.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "refusing layer entry \"big.bin\": it declares 10000000000 bytes, more than the 4 GiB \
         one entry may hold"
    );
    assert_eq!(fs::read(out.path().join("small.txt")).unwrap(), b"small");
    assert!(!out.path().join("big.bin").exists());
    for path in ["/big.bin", "/small.txt", "/elsewhere"] {
        let err = find_file(&layer, path).unwrap_err();
        assert!(
            matches!(err, PackError::LayerLimit { .. }),
            "{path}: {err:?}"
        );
    }
}

#[test]
fn a_sparse_file_of_10_gib_is_refused_before_its_holes_are_written() {
    // 512 bytes of data at the end of 10 GiB of holes: unpacked, 10 GiB of zeros.
    let real_size: u64 = 10 << 30;
    let mut sparse = header("holes.img", EntryType::GNUSparse, 512);
    let gnu = sparse.as_gnu_mut().unwrap();
    gnu.set_real_size(real_size);
    gnu.sparse[0].set_offset(real_size - 512);
    gnu.sparse[0].set_length(512);
    let mut tar = block(sparse);
    tar.extend([b'x'; 512]);
    tar.extend_from_slice(&END);
    let out = tempfile::tempdir().unwrap();
    let err = unpack_layer(&gzip(&tar), out.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "refusing layer entry \"holes.img\": it declares 10737418240 bytes, more than the 4 GiB \
         one entry may hold"
    );
    assert!(!out.path().join("holes.img").exists());
}

#[test]
fn headers_of_more_than_1_mib_are_refused_unread() {
    // One PAX record of 2 MiB before a file: the tar reader would keep it all in memory.
    let value = "x".repeat(2 * MAX_ENTRY_HEADERS as usize);
    // The length counts itself: seven digits.
    let record = format!(
        "{} comment={value}\n",
        value.len() + " comment=\n".len() + 7
    );
    assert!(record.starts_with(&format!("{} ", record.len())));
    let mut tar = block(header("first", EntryType::Regular, 0));
    tar.extend(block(header(
        "PaxHeaders/second",
        EntryType::XHeader,
        record.len() as u64,
    )));
    tar.extend(record.as_bytes());
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.extend(block(header("second", EntryType::Regular, 0)));
    tar.extend_from_slice(&END);
    let out = tempfile::tempdir().unwrap();
    let err = unpack_layer(&gzip(&tar), out.path()).unwrap_err();
    assert!(matches!(err, PackError::LayerHeaders { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "refusing layer: the headers of the entry after \"first\" take more than 1 MiB (PAX \
         records or GNU long names), the most one entry's headers may take"
    );
    assert!(out.path().join("first").is_file());
    assert!(!out.path().join("second").exists());
}

/// Writes an OCI archive of `blobs` whose index names `manifest` as `localhost/hostile:1`.
fn oci_archive(path: &Path, manifest: &Blob, blobs: &[&Blob]) {
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [{
            "mediaType": media_type::OCI_MANIFEST,
            "digest": manifest.digest.to_string(),
            "size": manifest.bytes.len(),
            "annotations": { "org.opencontainers.image.ref.name": "localhost/hostile:1" },
        }],
    });
    let mut tar = tar::Builder::new(Vec::new());
    let mut put = |name: &str, bytes: &[u8]| {
        let mut header = Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, name, bytes).unwrap();
    };
    put("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    put("index.json", index.to_string().as_bytes());
    for blob in std::iter::once(&manifest).chain(blobs) {
        put(&format!("blobs/sha256/{}", blob.digest.hex()), &blob.bytes);
    }
    fs::write(path, tar.into_inner().unwrap()).unwrap();
}

fn manifest_of(config: &Blob, layers: Vec<wasmbuild_packer::Descriptor>) -> Blob {
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_owned()),
        artifact_type: None,
        config: config.descriptor(),
        layers,
        subject: None,
        annotations: Default::default(),
    };
    Blob::new(
        media_type::OCI_MANIFEST,
        serde_json::to_vec(&manifest).unwrap(),
    )
}

/// Loads `archive` into a new store: the error, and that nothing was kept.
fn load_error(dir: &Path, archive: &Path) -> StoreError {
    let store = Store::open(&dir.join("store")).unwrap();
    let err = store.load(archive).unwrap_err();
    assert!(store.list().unwrap().is_empty());
    let blobs = fs::read_dir(store.root().join("blobs/sha256")).unwrap();
    assert_eq!(blobs.count(), 0, "nothing staged stays");
    err
}

#[test]
fn load_refuses_a_config_over_4_mib() {
    let tmp = tempfile::tempdir().unwrap();
    // Valid JSON, padded past the limit.
    let mut json = br#"{"architecture":"wasm","os":"wasi"}"#.to_vec();
    json.resize(MAX_CONFIG_SIZE as usize + 1, b' ');
    let config = Blob::new(media_type::OCI_CONFIG, json);
    let manifest = manifest_of(&config, Vec::new());
    let archive = tmp.path().join("big-config.tar");
    oci_archive(&archive, &manifest, &[&config]);
    let err = load_error(tmp.path(), &archive);
    assert_eq!(
        err.to_string(),
        format!(
            "{}: manifest {} names a config of 4194305 bytes ({}), more than the \
             4194304 bytes an image config may have",
            archive.display(),
            manifest.digest,
            config.digest
        )
    );
}

#[test]
fn load_refuses_a_layer_whose_size_is_not_its_descriptors() {
    let tmp = tempfile::tempdir().unwrap();
    let config = Blob::new(
        media_type::OCI_CONFIG,
        br#"{"architecture":"wasm","os":"wasi"}"#.to_vec(),
    );
    let layer = Blob::new(
        media_type::OCI_LAYER_GZIP,
        gzip(&[block(header("a", EntryType::Regular, 0)), END.to_vec()].concat()),
    );
    for size in [layer.bytes.len() as u64 - 1, 10_000_000_000] {
        let mut lie = layer.descriptor();
        lie.size = size;
        let manifest = manifest_of(&config, vec![lie]);
        let archive = tmp.path().join("lying-layer.tar");
        oci_archive(&archive, &manifest, &[&config, &layer]);
        let err = load_error(&tmp.path().join(size.to_string()), &archive);
        assert!(
            err.to_string().ends_with(&format!(
                "blob {} has {} bytes, but its descriptor says {size}",
                layer.digest,
                layer.bytes.len()
            )),
            "{err}"
        );
    }
}
