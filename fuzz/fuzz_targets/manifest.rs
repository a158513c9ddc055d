//! JSON from a registry or an OCI layout: manifests, indexes, image configs and Wasm
//! artifact configs. Any bytes parse or fail, never panic; what parses writes back into
//! JSON that parses into the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmbuild_packer::{ImageConfigJson, ImageIndex, Manifest, PrecompiledInfo, WasmConfig};

fuzz_target!(|data: &[u8]| {
    if let Some(manifest) = round_trip::<Manifest>(data)
        && let Some(info) = PrecompiledInfo::from_manifest(&manifest)
    {
        assert_eq!(Some(&info.cwasm), manifest.layers.first());
    }
    round_trip::<ImageIndex>(data);
    round_trip::<ImageConfigJson>(data);
    // Its `component` is free JSON, whose numbers need not survive a round trip exactly.
    if let Some(mut config) = parse::<WasmConfig>(data) {
        config.component = None;
        let again = serde_json::to_vec(&config).expect("a parsed value serializes");
        assert_eq!(parse::<WasmConfig>(&again), Some(config));
    }
});

fn parse<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    serde_json::from_slice(data).ok()
}

fn round_trip<T>(data: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let value = parse::<T>(data)?;
    let json = serde_json::to_vec(&value).expect("a parsed value serializes");
    let again = serde_json::from_slice::<T>(&json);
    assert!(
        again.as_ref().is_ok_and(|again| *again == value),
        "{} did not survive a round trip: {value:?} wrote {} which read back as {again:?}",
        std::any::type_name::<T>(),
        String::from_utf8_lossy(&json),
    );
    Some(value)
}
