//! Precompiled wasmtime code (`.cwasm`) as OCI 1.1 artifacts that refer to their image.
//!
//! A cwasm never goes inside the image: runwasi and crun would try to load it. Each target's
//! cwasm is its own artifact manifest whose `subject` is the portable image, so registries
//! list it through the referrers API and the local store keeps it with its image:
//!
//! - `artifactType` `application/vnd.wasmbuild.precompiled.v1`;
//! - `config`: the OCI empty descriptor (`application/vnd.oci.empty.v1+json`, `{}`);
//! - one layer, `application/vnd.wasmbuild.precompiled.cwasm.v1`: the cwasm as wasmtime
//!   wrote it, titled `<name>.<target>.cwasm`;
//! - annotations `dev.wasmbuild.target`, `dev.wasmbuild.wasmtime.version` and
//!   `dev.wasmbuild.engine` (the engine settings a loader must match), and the title.

use std::collections::BTreeMap;

use crate::error::PackError;
use crate::image::{
    Blob, Descriptor, Manifest, PackedImage, annotation, check_module_name, media_type, to_json,
};

/// What [`pack_precompiled`] needs: one target's cwasm and what made it.
#[derive(Debug, Clone, Copy)]
pub struct PrecompiledInput<'a> {
    /// The module's name (`hello`), for the title `hello.<target>.cwasm`.
    pub module_name: &'a str,
    /// The target triple (`x86_64-unknown-linux-gnu`).
    pub target: &'a str,
    pub cwasm: &'a [u8],
    /// The wasmtime version that compiled it (`48.0.8`).
    pub wasmtime_version: &'a str,
    /// The engine settings it was compiled with, as a stable string.
    pub engine: &'a str,
}

/// A precompiled artifact as a loader sees it: read from a referrer's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrecompiledInfo {
    pub target: String,
    pub wasmtime_version: String,
    pub engine: String,
    /// The cwasm layer.
    pub cwasm: Descriptor,
}

impl PrecompiledInfo {
    /// The artifact `manifest` describes, if it is a wasmbuild precompiled artifact with
    /// its annotations and one cwasm layer.
    pub fn from_manifest(manifest: &Manifest) -> Option<PrecompiledInfo> {
        if manifest.artifact_type.as_deref() != Some(media_type::PRECOMPILED) {
            return None;
        }
        let [layer] = manifest.layers.as_slice() else {
            return None;
        };
        if layer.media_type != media_type::PRECOMPILED_CWASM {
            return None;
        }
        let get = |key: &str| manifest.annotations.get(key).cloned();
        Some(PrecompiledInfo {
            target: get(annotation::TARGET)?,
            wasmtime_version: get(annotation::WASMTIME_VERSION)?,
            engine: get(annotation::ENGINE)?,
            cwasm: layer.clone(),
        })
    }
}

/// What a precompiled artifact must match to load into an engine: the CLI's `run` and the
/// containerd shim each describe their host's engine with one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEngine {
    pub target: String,
    pub wasmtime_version: String,
    pub settings: String,
}

/// Why a precompiled artifact cannot be loaded here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    Target,
    Wasmtime,
    Settings,
}

impl HostEngine {
    pub fn mismatch(&self, artifact: &PrecompiledInfo) -> Option<Mismatch> {
        if artifact.target != self.target {
            Some(Mismatch::Target)
        } else if artifact.wasmtime_version != self.wasmtime_version {
            Some(Mismatch::Wasmtime)
        } else if artifact.engine != self.settings {
            Some(Mismatch::Settings)
        } else {
            None
        }
    }

    /// "it is for aarch64-unknown-linux-gnu, this host is x86_64-unknown-linux-gnu", for
    /// `inspect`.
    pub fn why_not(&self, artifact: &PrecompiledInfo) -> Option<String> {
        Some(match self.mismatch(artifact)? {
            Mismatch::Target => format!(
                "it is for {}, this host is {}",
                artifact.target, self.target
            ),
            Mismatch::Wasmtime => format!(
                "it was compiled by wasmtime {}, this is wasmtime {}",
                artifact.wasmtime_version, self.wasmtime_version
            ),
            Mismatch::Settings => format!(
                "it was compiled with other engine settings ({}; this host: {})",
                artifact.engine, self.settings
            ),
        })
    }
}

/// The file name of a target's cwasm: `<name>.<target>.cwasm`.
pub fn cwasm_file_name(module_name: &str, target: &str) -> String {
    format!("{module_name}.{target}.cwasm")
}

/// Packs one target's cwasm as an artifact that refers to `subject` (the image's manifest).
/// The same input gives the same bytes.
pub fn pack_precompiled(
    subject: &Descriptor,
    input: &PrecompiledInput<'_>,
) -> Result<PackedImage, PackError> {
    check_module_name(input.module_name)?;
    check_target(input.target)?;
    let title = cwasm_file_name(input.module_name, input.target);
    let config = empty_blob();
    let cwasm = Blob::new(media_type::PRECOMPILED_CWASM, input.cwasm.to_vec());
    let mut layer = cwasm.descriptor();
    layer
        .annotations
        .insert(annotation::TITLE.to_string(), title.clone());
    let annotations: BTreeMap<String, String> = [
        (annotation::ENGINE, input.engine),
        (annotation::TARGET, input.target),
        (annotation::WASMTIME_VERSION, input.wasmtime_version),
        (annotation::TITLE, &title),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_string()),
        artifact_type: Some(media_type::PRECOMPILED.to_string()),
        config: config.descriptor(),
        layers: vec![layer],
        subject: Some(Descriptor::new(
            subject.media_type.clone(),
            subject.digest,
            subject.size,
        )),
        annotations,
    };
    Ok(PackedImage {
        manifest: Blob::new(media_type::OCI_MANIFEST, to_json(&manifest)),
        config,
        layers: vec![cwasm],
    })
}

/// The OCI empty descriptor's blob: `{}`.
pub fn empty_blob() -> Blob {
    Blob::new(media_type::OCI_EMPTY, b"{}".to_vec())
}

/// A triple goes into a file name and an annotation: letters, digits, `_`, `.` and `-`.
fn check_target(target: &str) -> Result<(), PackError> {
    let ok = !target.is_empty()
        && !target.starts_with('.')
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PackError::Target {
            target: target.to_string(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn subject() -> Descriptor {
        Descriptor::new(media_type::OCI_MANIFEST, Digest::of(b"image"), 5)
    }

    fn input<'a>(target: &'a str) -> PrecompiledInput<'a> {
        PrecompiledInput {
            module_name: "hello",
            target,
            cwasm: b"\x7fELF cwasm",
            wasmtime_version: "48.0.8",
            engine: "cranelift opt-level=speed; compat sha256:00",
        }
    }

    #[test]
    fn the_manifest_is_an_oci_1_1_artifact_that_refers_to_the_image() {
        let packed = pack_precompiled(&subject(), &input("x86_64-unknown-linux-gnu")).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&packed.manifest.bytes).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": "application/vnd.wasmbuild.precompiled.v1",
                "config": {
                    "mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                    "size": 2
                },
                "layers": [{
                    "mediaType": "application/vnd.wasmbuild.precompiled.cwasm.v1",
                    "digest": Digest::of(b"\x7fELF cwasm").to_string(),
                    "size": 10,
                    "annotations": {
                        "org.opencontainers.image.title": "hello.x86_64-unknown-linux-gnu.cwasm"
                    }
                }],
                "subject": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": Digest::of(b"image").to_string(),
                    "size": 5
                },
                "annotations": {
                    "dev.wasmbuild.engine": "cranelift opt-level=speed; compat sha256:00",
                    "dev.wasmbuild.target": "x86_64-unknown-linux-gnu",
                    "dev.wasmbuild.wasmtime.version": "48.0.8",
                    "org.opencontainers.image.title": "hello.x86_64-unknown-linux-gnu.cwasm"
                }
            })
        );
        assert_eq!(packed.config.bytes, b"{}");
        let again = pack_precompiled(&subject(), &input("x86_64-unknown-linux-gnu")).unwrap();
        assert_eq!(packed, again);

        let manifest: Manifest = serde_json::from_slice(&packed.manifest.bytes).unwrap();
        let info = PrecompiledInfo::from_manifest(&manifest).unwrap();
        assert_eq!(info.target, "x86_64-unknown-linux-gnu");
        assert_eq!(info.wasmtime_version, "48.0.8");
        assert_eq!(info.cwasm.digest, Digest::of(b"\x7fELF cwasm"));
    }

    #[test]
    fn a_target_that_is_not_a_plain_triple_is_refused() {
        for bad in ["", "../x", "a/b", ".hidden", "x y"] {
            let error = pack_precompiled(&subject(), &input(bad)).unwrap_err();
            assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
        }
    }
}
