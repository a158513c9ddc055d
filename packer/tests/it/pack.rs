//! pack(): reproducible bytes, the layer's entries, the config and manifest JSON.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use wasmbuild_packer::{ImageInput, PackError, find_file, pack};
use wasmbuild_spec::{ImageConfig, ImageFormat, Os};

use crate::support::*;

/// A site folder like fixtures/copy: nested files, an executable, an inside symlink.
fn site(root: &Path, mtime: SystemTime) {
    write(&root.join("static/index.html"), "<h1>hi</h1>");
    write(&root.join("static/css/site.css"), "h1 {}");
    let script = write(&root.join("static/run.sh"), "#!/bin/sh\n");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o700)).unwrap();
    symlink("index.html", root.join("static/link.html")).unwrap();
    symlink("../index.html", root.join("static/css/up.html")).unwrap();
    write(&root.join("motd.txt"), "welcome aboard");
    fs::set_permissions(root.join("motd.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    write(&root.join("README.md"), "docs");
    for path in [
        "static/index.html",
        "static/css/site.css",
        "motd.txt",
        "README.md",
    ] {
        fs::File::options()
            .write(true)
            .open(root.join(path))
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
}

fn site_copies(root: &Path) -> Vec<wasmbuild_spec::CopyRule> {
    vec![
        copy(&root.join("static"), "/static/"),
        copy(&root.join("motd.txt"), "/etc/site/motd.txt"),
        copy(&root.join("README.md"), "/docs/"),
    ]
}

#[test]
fn same_input_gives_the_same_bytes_with_copies() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    site(
        a.path(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
    );
    site(b.path(), SystemTime::now());
    let mut config = config();
    config.env.insert("LOG".into(), "info".into());
    config.cmd = vec!["serve".into()];
    let first = pack_with(&config, &site_copies(a.path()), Some(1_700_000_000));
    let again = pack_with(&config, &site_copies(a.path()), Some(1_700_000_000));
    let elsewhere = pack_with(&config, &site_copies(b.path()), Some(1_700_000_000));
    assert_eq!(first, again);
    assert_eq!(
        first, elsewhere,
        "host paths, mtimes and order do not leak in"
    );
    assert_eq!(first.digest(), elsewhere.digest());
    let later = pack_with(&config, &site_copies(a.path()), Some(1_700_000_001));
    assert_ne!(first.digest(), later.digest());
    let without = pack_with(&config, &site_copies(a.path()), None);
    assert_eq!(without, pack_with(&config, &site_copies(b.path()), None));
}

#[test]
fn layer_entries_are_sorted_with_fixed_modes_and_owners() {
    let dir = tempfile::tempdir().unwrap();
    site(dir.path(), SystemTime::now());
    let image = pack_with(&config(), &site_copies(dir.path()), Some(1_700_000_000));
    let entries = list(&image.layers[0].bytes);
    let got: Vec<(&str, char, u32, Option<&str>)> = entries
        .iter()
        .map(|e| (e.path.as_str(), e.kind, e.mode, e.link.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("docs/", '5', 0o755, None),
            ("docs/README.md", '0', 0o644, None),
            ("etc/", '5', 0o755, None),
            ("etc/site/", '5', 0o755, None),
            ("etc/site/motd.txt", '0', 0o644, None),
            ("hello.wasm", '0', 0o755, None),
            ("static/", '5', 0o755, None),
            ("static/css/", '5', 0o755, None),
            ("static/css/site.css", '0', 0o644, None),
            ("static/css/up.html", '2', 0o777, Some("../index.html")),
            ("static/index.html", '0', 0o644, None),
            ("static/link.html", '2', 0o777, Some("index.html")),
            ("static/run.sh", '0', 0o755, None),
        ]
    );
    for e in &entries {
        assert_eq!((e.uid, e.gid), (0, 0), "{}", e.path);
        assert_eq!(e.owner_names, (String::new(), String::new()), "{}", e.path);
        assert_eq!(e.mtime, 1_700_000_000, "{}", e.path);
    }
    let module = entries.iter().find(|e| e.path == "hello.wasm").unwrap();
    assert_eq!(module.size, MODULE.len() as u64);
    // Without SOURCE_DATE_EPOCH every mtime is 0.
    let image = pack_with(&config(), &site_copies(dir.path()), None);
    assert!(list(&image.layers[0].bytes).iter().all(|e| e.mtime == 0));
    // Plain ustar: no PAX records, no GNU extensions, for short paths.
    let tar = gunzip(&image.layers[0].bytes);
    assert_eq!(&tar[257..263], b"ustar\0");
    assert!(
        !list(&image.layers[0].bytes)
            .iter()
            .any(|e| e.kind == 'x' || e.kind == 'L')
    );
}

#[test]
fn gzip_header_has_no_name_time_or_host_os() {
    let image = pack_with(&config(), &[], None);
    let gz = &image.layers[0].bytes;
    // magic, deflate, no flags (no name), mtime 0, xfl 0, OS 255 "unknown"
    assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
}

#[test]
fn config_and_manifest_json() {
    let mut config = config();
    config.os = Os::Wasip1;
    config.env.insert("B".into(), "2".into());
    config.env.insert("A".into(), "x=1".into());
    config.cmd = vec!["world".into()];
    config
        .labels
        .insert("org.example.version".into(), "dev".into());
    config.annotations.insert(
        "org.opencontainers.image.source".into(),
        "https://example.com".into(),
    );
    let image = pack_with(&config, &[], None);
    let layer = &image.layers[0];
    let diff_id = sha256(&gunzip(&layer.bytes));
    assert_eq!(layer.digest.to_string(), sha256(&layer.bytes));
    assert_eq!(
        layer.media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        String::from_utf8(image.config.bytes.clone()).unwrap(),
        format!(
            r#"{{"architecture":"wasm","os":"wasip1","config":{{"Env":["A=x=1","B=2"],"Entrypoint":["/hello.wasm"],"Cmd":["world"],"WorkingDir":"/","Labels":{{"org.example.version":"dev"}}}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        )
    );
    assert_eq!(
        image.config.media_type,
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        String::from_utf8(image.manifest.bytes.clone()).unwrap(),
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}],"annotations":{{"module.wasm.image/variant":"compat-smart","org.opencontainers.image.source":"https://example.com"}}}}"#,
            image.config.digest,
            image.config.bytes.len(),
            layer.digest,
            layer.bytes.len()
        )
    );
    assert_eq!(image.digest().to_string(), sha256(&image.manifest.bytes));
    assert_eq!(
        image.manifest.descriptor().size,
        image.manifest.bytes.len() as u64
    );

    let dated = pack_with(&config, &[], Some(1_700_000_000));
    let json: serde_json::Value = serde_json::from_slice(&dated.config.bytes).unwrap();
    assert_eq!(json["created"], "2023-11-14T22:13:20Z");
    assert!(json.get("history").is_none());
}

#[test]
fn entrypoint_names_the_module_path() {
    let mut config = config();
    config.entrypoint = Some(vec!["/bin/app.wasm".into(), "--flag".into()]);
    let image = pack_with(&config, &[], None);
    let paths: Vec<String> = list(&image.layers[0].bytes)
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(paths, ["bin/", "bin/app.wasm"]);
    assert_eq!(
        find_file(&image.layers[0].bytes, "/bin/app.wasm")
            .unwrap()
            .unwrap(),
        MODULE
    );
    let json: serde_json::Value = serde_json::from_slice(&image.config.bytes).unwrap();
    assert_eq!(
        json["config"]["Entrypoint"],
        serde_json::json!(["/bin/app.wasm", "--flag"])
    );
}

#[test]
fn find_file_reads_files_and_follows_links() {
    let dir = tempfile::tempdir().unwrap();
    site(dir.path(), SystemTime::now());
    let image = pack_with(&config(), &site_copies(dir.path()), None);
    let layer = &image.layers[0].bytes;
    assert_eq!(find_file(layer, "/hello.wasm").unwrap().unwrap(), MODULE);
    assert_eq!(find_file(layer, "hello.wasm").unwrap().unwrap(), MODULE);
    assert_eq!(
        find_file(layer, "/static/link.html").unwrap().unwrap(),
        b"<h1>hi</h1>"
    );
    assert_eq!(
        find_file(layer, "/static/css/up.html").unwrap().unwrap(),
        b"<h1>hi</h1>"
    );
    assert_eq!(find_file(layer, "/nope").unwrap(), None);
    let err = find_file(layer, "/static").unwrap_err();
    assert!(matches!(err, PackError::NotAFile { .. }), "{err}");
    assert!(find_file(b"not gzip", "/x").is_err());
}

#[test]
fn long_paths_survive_and_stay_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let deep: String = (0..30).map(|i| format!("folder-{i:02}/")).collect();
    let name = format!("{deep}{}.txt", "n".repeat(120));
    write(&dir.path().join("tree").join(&name), "deep");
    fs::create_dir_all(dir.path().join("tree/links")).unwrap();
    symlink(format!("../{name}"), dir.path().join("tree/links/far")).unwrap();
    let copies = [copy(&dir.path().join("tree"), "/t")];
    let image = pack_with(&config(), &copies, None);
    assert_eq!(image, pack_with(&config(), &copies, None));
    let layer = &image.layers[0].bytes;
    assert_eq!(
        find_file(layer, &format!("/t/{name}")).unwrap().unwrap(),
        b"deep"
    );
    assert_eq!(find_file(layer, "/t/links/far").unwrap().unwrap(), b"deep");
    let out = tempfile::tempdir().unwrap();
    wasmbuild_packer::unpack_layer(layer, out.path()).unwrap();
    assert_eq!(fs::read(out.path().join("t").join(&name)).unwrap(), b"deep");
    assert_eq!(fs::read(out.path().join("t/links/far")).unwrap(), b"deep");
}

#[test]
fn copies_that_cannot_go_in_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("tree/a.txt"), "a");
    symlink("../../etc/passwd", root.join("tree/escape")).unwrap();
    let err = pack(&ImageInput {
        module_name: "hello",
        module: MODULE,
        config: &config(),
        copies: &[copy(&root.join("tree"), "/t/")],
        source_date_epoch: None,
    })
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("tree/escape") && text.contains("../../etc/passwd"),
        "{text}"
    );

    fs::remove_file(root.join("tree/escape")).unwrap();
    symlink("/etc/passwd", root.join("tree/absolute")).unwrap();
    let text = pack_err(&[copy(&root.join("tree"), "/t/")], None);
    assert!(
        text.contains("tree/absolute") && text.contains("absolute"),
        "{text}"
    );
    fs::remove_file(root.join("tree/absolute")).unwrap();

    let text = pack_err(&[copy(&root.join("tree/a.txt"), "/hello.wasm")], None);
    assert!(
        text.contains("/hello.wasm") && text.contains("would replace the file /hello.wasm"),
        "{text}"
    );
    let text = pack_err(&[copy(&root.join("tree/a.txt"), "/hello.wasm/x")], None);
    assert!(text.contains("needs a folder there"), "{text}");
    let text = pack_err(&[copy(&root.join("tree"), "/../x")], None);
    assert!(text.contains("`..`"), "{text}");
    let text = pack_err(&[copy(&root.join("missing"), "/x")], None);
    assert!(text.contains("missing"), "{text}");
    let text = pack_err(&[], Some(-1));
    assert!(text.contains("SOURCE_DATE_EPOCH -1"), "{text}");
    // A later copy replaces an earlier file, as in a Dockerfile.
    write(&root.join("b.txt"), "b");
    let image = pack_with(
        &config(),
        &[
            copy(&root.join("tree/a.txt"), "/x.txt"),
            copy(&root.join("b.txt"), "/x.txt"),
        ],
        None,
    );
    assert_eq!(
        find_file(&image.layers[0].bytes, "/x.txt")
            .unwrap()
            .unwrap(),
        b"b"
    );
}

fn pack_err(copies: &[wasmbuild_spec::CopyRule], epoch: Option<i64>) -> String {
    pack(&ImageInput {
        module_name: "hello",
        module: MODULE,
        config: &config(),
        copies,
        source_date_epoch: epoch,
    })
    .unwrap_err()
    .to_string()
}

#[test]
fn artifact_format_is_the_cncf_wasm_artifact() {
    let config = ImageConfig {
        format: ImageFormat::Artifact,
        ..config()
    };
    let image = pack_with(&config, &[], None);
    assert_eq!(image, pack_with(&config, &[], None));
    assert_eq!(
        image.config.media_type,
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(image.layers[0].media_type, "application/wasm");
    assert_eq!(image.layers[0].bytes, MODULE);
    let cfg: serde_json::Value = serde_json::from_slice(&image.config.bytes).unwrap();
    assert_eq!(cfg["architecture"], "wasm");
    assert_eq!(cfg["os"], "wasip1");
    assert_eq!(cfg["created"], "1970-01-01T00:00:00Z");
    assert_eq!(cfg["layerDigests"], serde_json::json!([sha256(MODULE)]));
    assert!(cfg["component"].is_null());
    let manifest: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
    assert_eq!(
        manifest["layers"][0]["annotations"]["org.opencontainers.image.title"],
        "hello.wasm"
    );
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a"), "a");
    let err = pack(&ImageInput {
        module_name: "hello",
        module: MODULE,
        config: &config,
        copies: &[copy(&dir.path().join("a"), "/a")],
        source_date_epoch: None,
    })
    .unwrap_err();
    assert!(
        matches!(err, PackError::ArtifactCopies { count: 1 }),
        "{err}"
    );
}

#[test]
fn the_working_folder_is_in_the_layer_as_dockers_workdir_puts_it() {
    // runc and youki enter the working folder before they run anything: it must exist.
    let mut config = config();
    config.workdir = "/srv/data".into();
    let image = pack_with(&config, &[], None);
    let entries = list(&image.layers[0].bytes);
    let got: Vec<(&str, char)> = entries.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    assert_eq!(
        got,
        [("hello.wasm", '0'), ("srv/", '5'), ("srv/data/", '5')]
    );
    // A file copied where the working folder goes is a conflict, said as one.
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("data"), "a file");
    let copies = [copy(&dir.path().join("data"), "/srv/data")];
    let error = pack(&ImageInput {
        module_name: "hello",
        module: MODULE,
        config: &config,
        copies: &copies,
        source_date_epoch: None,
    })
    .unwrap_err();
    assert!(matches!(error, PackError::Conflict { .. }), "{error}");
    assert!(error.to_string().contains("/srv/data"), "{error}");
}
