//! images, inspect, tag, rmi, save and load on the local store.

use crate::support::{Home, digest_of, stderr, stdout};

#[test]
fn images_lists_every_reference() {
    let home = Home::new();
    let line = home.build("hello", &["-t", "ghcr.io/me/hello:1.0", "-t", "hello:v2"]);
    let table = home.ok(&["images"]);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("REPOSITORY"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert_eq!(rows[0][..2], ["hello", "v2"]);
    assert_eq!(rows[1][..2], ["ghcr.io/me/hello", "1.0"]);
    assert!(digest_of(&line).starts_with(rows[0][2]));
    let json: serde_json::Value = serde_json::from_str(&home.ok(&["images", "--json"])).unwrap();
    assert_eq!(json[1]["reference"], "ghcr.io/me/hello:1.0");
    assert_eq!(json[1]["digest"], digest_of(&line));
}

#[test]
fn inspect_shows_config_and_module_interface() {
    let home = Home::new();
    home.build("hello", &[]);
    let json: serde_json::Value =
        serde_json::from_str(&home.ok(&["inspect", "--json", "hello"])).unwrap();
    assert_eq!(json["config"]["os"], "wasi");
    assert_eq!(json["config"]["architecture"], "wasm");
    assert_eq!(
        json["config"]["config"]["Entrypoint"],
        serde_json::json!(["/hello.wasm"])
    );
    assert_eq!(
        json["config"]["config"]["Cmd"],
        serde_json::json!(["world"])
    );
    assert_eq!(
        json["manifest"]["annotations"]["module.wasm.image/variant"],
        "compat-smart"
    );
    assert_eq!(json["module"]["path"], "/hello.wasm");
    let imports = json["module"]["imports"].as_array().unwrap();
    assert!(!imports.is_empty());
    assert!(
        imports
            .iter()
            .all(|i| i["module"] == "wasi_snapshot_preview1")
    );
    assert!(
        json["module"]["exports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "_start")
    );

    let human = home.ok(&["inspect", "hello"]);
    assert!(human.contains("Platform:    wasi/wasm"), "{human}");
    assert!(
        human.contains("wasi_snapshot_preview1.fd_write (func)"),
        "{human}"
    );
}

#[test]
fn tag_then_rmi_keeps_the_other_reference_working() {
    let home = Home::new();
    let line = home.build("hello", &[]);
    let tagged = home.ok(&["tag", "hello", "ghcr.io/me/hello:2.0"]);
    assert_eq!(
        tagged.trim(),
        format!("ghcr.io/me/hello:2.0@{}", digest_of(&line))
    );
    let removed = home.ok(&["rmi", "hello"]);
    assert_eq!(
        removed.trim(),
        format!("Untagged: hello:latest@{}", digest_of(&line))
    );
    let output = home.run(&["run", "ghcr.io/me/hello:2.0"]);
    assert!(output.status.success(), "{}", stderr(&output));
    // The last reference gone, no blob is left behind.
    home.ok(&["rmi", "ghcr.io/me/hello:2.0"]);
    let blobs = std::fs::read_dir(home.store().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0);
    let missing = home.run(&["rmi", "hello"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("hello"), "{}", stderr(&missing));
}

#[test]
fn save_then_load_into_another_home_runs_the_same_image() {
    let home = Home::new();
    let line = home.build("copy", &[]);
    let archive = home.dir.path().join("site.tar");
    home.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "localhost/site:latest",
    ]);
    let other = Home::new();
    let loaded = other.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(loaded.trim(), "Loaded image: localhost/site:latest");
    let json: serde_json::Value =
        serde_json::from_str(&other.ok(&["inspect", "--json", "localhost/site"])).unwrap();
    assert_eq!(json["digest"], digest_of(&line));
    let output = other.run(&["run", "localhost/site"]);
    assert!(
        stdout(&output).contains("welcome aboard"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn schema_command_prints_the_checked_in_schema() {
    let home = Home::new();
    let printed = home.ok(&["schema"]);
    let checked_in =
        std::fs::read_to_string(crate::support::repo().join("wasmfile.schema.json")).unwrap();
    assert_eq!(printed, checked_in);
}
