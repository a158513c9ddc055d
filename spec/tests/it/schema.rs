use std::path::Path;

/// `wasmfile.schema.json` at the workspace root is generated from the Wasmfile types; this
/// fails when it is stale. `BLESS=1 cargo test -p wasmbuild-spec` rewrites it.
#[test]
fn schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasmfile.schema.json");
    let current = wasmbuild_spec::schema_json();
    if std::env::var_os("BLESS").is_some_and(|bless| bless == "1") {
        std::fs::write(&path, &current).expect("write wasmfile.schema.json");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == current,
        "{} is stale: run `BLESS=1 cargo test -p wasmbuild-spec schema_is_current`",
        path.display()
    );
}

#[test]
fn schema_is_strict_json_schema_without_nulls() {
    let schema: serde_json::Value =
        serde_json::from_str(&wasmbuild_spec::schema_json()).expect("valid JSON");
    assert_eq!(schema["title"], "Wasmfile");
    assert_eq!(schema["additionalProperties"], false);
    let build = &schema["$defs"]["BuildSection"];
    assert_eq!(build["additionalProperties"], false);
    assert_eq!(build["properties"]["package"]["type"], "string");
    assert_eq!(build["properties"]["profile"]["default"], "release");
    assert_eq!(
        build["properties"]["no-default-features"]["type"],
        "boolean"
    );
    assert_eq!(
        schema["$defs"]["ImageSection"]["properties"]["tags"]["default"][0],
        "latest"
    );
    assert!(!wasmbuild_spec::schema_json().contains("null"));
}
