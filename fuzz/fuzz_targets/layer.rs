//! Unpacking a layer from a registry: any bytes unpack or fail, never panic, and nothing
//! is written, changed or deleted outside the destination folder.
//!
//! The temp folder holds `rootfs/` (the destination) and `outside/` with one canary file;
//! afterwards the temp folder holds exactly those two, `outside/` holds exactly the canary,
//! unchanged and not hard-linked from inside, and every symlink in `rootfs/` that resolves
//! resolves inside it.
#![no_main]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

const CANARY: &[u8] = b"must stay as it is\n";

fuzz_target!(|data: &[u8]| {
    let temp = tempfile::tempdir().expect("a temp folder");
    let top = fs::canonicalize(temp.path()).expect("the temp folder's real path");
    let dest = top.join("rootfs");
    let outside = top.join("outside");
    fs::create_dir(&outside).expect("the sibling folder");
    fs::write(outside.join("canary"), CANARY).expect("the canary");

    let _ = wasmbuild_packer::unpack_layer(data, &dest);

    assert_eq!(
        names(&top),
        ["outside", "rootfs"],
        "something appeared beside the destination"
    );
    assert_eq!(names(&outside), ["canary"], "the sibling folder changed");
    let canary = outside.join("canary");
    let meta = fs::symlink_metadata(&canary).expect("the canary's metadata");
    assert!(meta.is_file(), "the canary is no longer a file");
    assert_eq!(meta.nlink(), 1, "the canary was hard-linked from the layer");
    assert_eq!(
        fs::read(&canary).expect("the canary"),
        CANARY,
        "the canary changed"
    );
    if dest.is_dir() {
        links_stay_inside(&dest, &dest);
    }
});

fn names(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(folder)
        .expect("a folder to list")
        .map(|entry| {
            entry
                .expect("a folder entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn links_stay_inside(folder: &Path, root: &Path) {
    for entry in fs::read_dir(folder).expect("an unpacked folder") {
        let path = entry.expect("an unpacked entry").path();
        let meta = fs::symlink_metadata(&path).expect("an unpacked entry's metadata");
        if meta.file_type().is_symlink() {
            if let Ok(real) = fs::canonicalize(&path) {
                assert!(
                    real.starts_with(root),
                    "{} resolves to {}, outside the destination",
                    path.display(),
                    real.display()
                );
            }
        } else if meta.is_dir() {
            links_stay_inside(&path, root);
        }
    }
}
