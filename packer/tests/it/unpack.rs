//! unpack_layer(): what pack wrote comes back; malicious layers change nothing outside.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tar::EntryType;
use wasmbuild_packer::{PackError, unpack_layer};

use crate::support::*;

#[test]
fn a_packed_layer_unpacks_to_the_same_tree() {
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("static/index.html"), "<h1>hi</h1>");
    write(&src.path().join("static/css/site.css"), "h1 {}");
    std::os::unix::fs::symlink("index.html", src.path().join("static/home.html")).unwrap();
    let image = pack_with(
        &config(),
        &[copy(&src.path().join("static"), "/static")],
        None,
    );
    let out = tempfile::tempdir().unwrap();
    unpack_layer(&image.layers[0].bytes, out.path()).unwrap();
    let tree = tree(out.path());
    let expected: Vec<(&str, &str)> = vec![
        ("hello.wasm", std::str::from_utf8(MODULE).unwrap()),
        ("static/", ""),
        ("static/css/", ""),
        ("static/css/site.css", "h1 {}"),
        ("static/home.html", "-> index.html"),
        ("static/index.html", "<h1>hi</h1>"),
    ];
    let got: Vec<(&str, &str)> = tree.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got, expected);
    let mode = |p: &str| {
        fs::metadata(out.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("hello.wasm"), 0o755);
    assert_eq!(mode("static/index.html"), 0o644);
}

/// Unpacks `entries` into `<tmp>/root` and expects an error naming `bad`; nothing may
/// appear beside `root`, and the absolute escape target must not exist.
fn refused(entries: &[Raw<'_>], bad: &str, escape: &Path) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let err = unpack_layer(&raw_tar_gz(entries), &root).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PackError::UnsafeEntry { .. }), "{text}");
    assert!(
        text.contains(&format!("{bad:?}")),
        "error should name {bad:?}: {text}"
    );
    let beside: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, ["root"], "something was written outside the root");
    assert!(!escape.exists(), "{} was written", escape.display());
    text
}

#[test]
fn malicious_layers_are_refused() {
    let escape_dir = tempfile::tempdir().unwrap();
    let escape = escape_dir.path().join("pwned");
    let abs = escape.to_str().unwrap().to_string();
    let via_root = format!("evil{abs}");

    let text = refused(&[file("../x")], "../x", &escape);
    assert!(text.contains("`..`"), "{text}");
    refused(&[dir("a/"), file("a/../../x")], "a/../../x", &escape);
    let text = refused(&[file(&abs)], &abs, &escape);
    assert!(text.contains("absolute"), "{text}");
    // A symlink to `/`, then a file through it.
    let text = refused(&[symlink("evil", "/"), file(&via_root)], "evil", &escape);
    assert!(text.contains("absolute"), "{text}");
    refused(&[symlink("evil", ".."), file("evil/x")], "evil", &escape);
    refused(
        &[dir("d/"), symlink("d/up", "../.."), file("d/up/x")],
        "d/up",
        &escape,
    );
    // A link that stays inside is fine, but nothing is written through it.
    let text = refused(
        &[dir("d/"), symlink("d/up", ".."), file("d/up/x")],
        "d/up/x",
        &escape,
    );
    assert!(text.contains("symlink"), "{text}");
    // `..` after a name: through `d/up` this one would climb out.
    refused(
        &[dir("d/"), symlink("d/up", ".."), symlink("e", "d/up/../..")],
        "e",
        &escape,
    );
    refused(&[hardlink("h", "../../etc/passwd")], "h", &escape);
    refused(&[hardlink("h", "/etc/passwd")], "h", &escape);
    refused(&[symlink("s", "inside"), hardlink("h", "s")], "h", &escape);
    refused(
        &[Raw {
            name: "dev",
            kind: EntryType::Char,
            data: b"",
            link: None,
        }],
        "dev",
        &escape,
    );
    refused(
        &[Raw {
            name: "fifo",
            kind: EntryType::Fifo,
            data: b"",
            link: None,
        }],
        "fifo",
        &escape,
    );
}

#[test]
fn safe_links_and_whiteouts_unpack() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let entries = [
        dir("a/"),
        file("a/f"),
        symlink("a/self", "f"),
        symlink("a/up", "../top"),
        file("top"),
        hardlink("a/hard", "a/f"),
        file("gone"),
        file(".wh.gone"),
    ];
    unpack_layer(&raw_tar_gz(&entries), &root).unwrap();
    assert_eq!(fs::read(root.join("a/self")).unwrap(), b"gotcha");
    assert_eq!(fs::read(root.join("a/up")).unwrap(), b"gotcha");
    assert_eq!(fs::read(root.join("a/hard")).unwrap(), b"gotcha");
    assert!(!root.join("gone").exists());
    assert!(!root.join(".wh.gone").exists());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    for bytes in [&b""[..], b"\x1f\x8b\x08\x00garbage", b"plain text"] {
        let err = unpack_layer(bytes, tmp.path()).unwrap_err();
        assert!(matches!(err, PackError::Layer { .. }), "{err}");
    }
}
