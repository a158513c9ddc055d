//! Docker's config.json and a credential helper's answer: any bytes give a credential or
//! an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmbuild_packer::credentials::{DockerConfig, parse_helper_output};

/// Registries as references and `docker login` name them, in the spellings config.json
/// keys take.
const REGISTRIES: [&str; 9] = [
    "docker.io",
    "index.docker.io",
    "https://index.docker.io/v1/",
    "ghcr.io",
    "HTTPS://GHCR.IO/v2/",
    "localhost:5000",
    "127.0.0.1:5000",
    "[::1]:5000",
    "",
];

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = DockerConfig::parse("config.json", data) {
        for registry in REGISTRIES {
            let _ = config.auth_for(registry);
        }
        // And the names the file itself uses, each a registry someone logged in to.
        if let Ok(serde_json::Value::Object(root)) = serde_json::from_slice(data) {
            for field in ["auths", "credHelpers"] {
                if let Some(serde_json::Value::Object(keys)) = root.get(field) {
                    for key in keys.keys().take(8) {
                        let _ = config.auth_for(key);
                    }
                }
            }
        }
    }
    let _ = parse_helper_output(data);
});
