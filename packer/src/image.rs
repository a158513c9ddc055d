//! OCI image types (descriptors, manifests, indexes, image configs) and [`pack`], which
//! turns a module and its `[image]` settings into a reproducible image.
//!
//! JSON is written compactly, fields in a fixed order, maps sorted (`BTreeMap`), so the
//! same input always gives the same bytes and digests.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use wasmbuild_spec::{CopyRule, ImageConfig, ImageFormat};

use crate::digest::Digest;
use crate::error::PackError;
use crate::layer::{self, LayerBuilder};

/// Media types this crate writes or reads.
pub mod media_type {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// CNCF TAG-Runtime Wasm artifact config.
    pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
    /// CNCF TAG-Runtime Wasm artifact layer: the raw module.
    pub const WASM_LAYER: &str = "application/wasm";
    /// OCI 1.1's empty descriptor: the config of an artifact that needs none (`{}`).
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
    /// The `artifactType` of a precompiled (`.cwasm`) artifact that refers to its image.
    pub const PRECOMPILED: &str = "application/vnd.wasmbuild.precompiled.v1";
    /// Its one layer: the cwasm as wasmtime wrote it.
    pub const PRECOMPILED_CWASM: &str = "application/vnd.wasmbuild.precompiled.cwasm.v1";

    /// An image manifest (OCI or Docker schema 2).
    pub fn is_manifest(media_type: &str) -> bool {
        media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
    }

    /// A list of manifests (OCI index or Docker manifest list).
    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
    }
}

/// Annotation keys this crate writes or reads.
pub mod annotation {
    /// In an OCI layout's `index.json`: the reference an entry is stored under.
    pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
    /// The full image name containerd and `docker load` read from an archive's index.
    pub const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";
    pub const TITLE: &str = "org.opencontainers.image.title";
    pub const AUTHORS: &str = "org.opencontainers.image.authors";
    /// Tells crun (and Podman) that the image holds a Wasm module.
    pub const WASM_VARIANT: &str = "module.wasm.image/variant";
    pub const WASM_VARIANT_COMPAT_SMART: &str = "compat-smart";
    /// In the store's `index.json`: the image (its manifest digest) a referrer entry belongs
    /// to. The entry has no reference name and goes when its image goes.
    pub const SUBJECT: &str = "dev.wasmbuild.subject";
    /// On a precompiled artifact: the target triple its code is for.
    pub const TARGET: &str = "dev.wasmbuild.target";
    /// On a precompiled artifact: the wasmtime version that compiled it.
    pub const WASMTIME_VERSION: &str = "dev.wasmbuild.wasmtime.version";
    /// On a precompiled artifact: the engine settings a loader must match.
    pub const ENGINE: &str = "dev.wasmbuild.engine";
}

pub const ARCHITECTURE_WASM: &str = "wasm";

/// The largest image config pulled or loaded: one is read into memory whole, and a Wasm
/// image's is a few hundred bytes.
pub const MAX_CONFIG_SIZE: u64 = 4 << 20;

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub urls: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI, or Docker schema 2 which has the same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default, deserialize_with = "null_default")]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (also the `index.json` of an OCI layout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

impl ImageIndex {
    pub fn new(manifests: Vec<Descriptor>) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.to_string()),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// The OCI image config (`application/vnd.oci.image.config.v1+json`). Reading is
/// lenient: missing or `null` fields become empty, unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImageConfigJson {
    /// RFC 3339; only written when `SOURCE_DATE_EPOCH` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub architecture: String,
    #[serde(default, deserialize_with = "null_default")]
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    #[serde(default, deserialize_with = "null_default")]
    pub rootfs: RootFs,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
}

/// The `config` object of an image config: how to run the image.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `["KEY=value"]`, sorted by key when we write it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> RootFs {
        RootFs {
            kind: "layers".to_string(),
            diff_ids: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
}

/// The CNCF Wasm artifact config (`application/vnd.wasm.config.v0+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// Readers (wkg, wasmCloud) require it: `SOURCE_DATE_EPOCH`, else the epoch.
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    pub layer_digests: Vec<Digest>,
    /// `null` for a module; a component would describe its worlds here.
    #[serde(default)]
    pub component: Option<serde_json::Value>,
}

fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A piece of content with its media type and digest.
#[derive(Clone, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

impl Blob {
    /// Hashes `bytes`.
    pub fn new(media_type: impl Into<String>, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.into(),
            digest: Digest::of(&bytes),
            bytes,
        }
    }

    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type.clone(),
            self.digest,
            self.bytes.len() as u64,
        )
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob")
            .field("media_type", &self.media_type)
            .field("digest", &self.digest)
            .field("size", &self.bytes.len())
            .finish()
    }
}

/// An image ready to store or push: its manifest, config and layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedImage {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl PackedImage {
    /// The image's digest: its manifest's.
    pub fn digest(&self) -> &Digest {
        &self.manifest.digest
    }

    pub fn manifest_descriptor(&self) -> Descriptor {
        self.manifest.descriptor()
    }

    /// Config first, then layers, then the manifest: the order to upload them in.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config)
            .chain(&self.layers)
            .chain(std::iter::once(&self.manifest))
    }
}

/// What to pack. `module_name` (`"hello"`) gives the module's file, `/hello.wasm`, unless
/// the entrypoint names another.
#[derive(Debug, Clone, Copy)]
pub struct ImageInput<'a> {
    pub module_name: &'a str,
    pub module: &'a [u8],
    pub config: &'a ImageConfig,
    pub copies: &'a [CopyRule],
    /// `SOURCE_DATE_EPOCH`: the layer's mtimes and the config's `created`.
    pub source_date_epoch: Option<i64>,
}

/// Packs the module (and `[[copy]]` files) into an image of the configured format.
/// The same input gives the same bytes.
pub fn pack(input: &ImageInput<'_>) -> Result<PackedImage, PackError> {
    check_module_name(input.module_name)?;
    let epoch = match input.source_date_epoch {
        None => None,
        Some(value) if (0..=layer::MAX_MTIME as i64).contains(&value) => Some(value),
        Some(value) => return Err(PackError::SourceDateEpoch { value }),
    };
    match input.config.format {
        ImageFormat::Image => pack_image(input, epoch),
        ImageFormat::Artifact => pack_artifact(input, epoch),
    }
}

/// The module's path in the image: the entrypoint's first word (relative to the working
/// folder if it is relative), else `/<module name>.wasm`.
pub fn module_path(module_name: &str, config: &ImageConfig) -> String {
    match config.entrypoint.as_ref().and_then(|e| e.first()) {
        Some(first) if first.starts_with('/') => first.clone(),
        Some(first) => {
            let workdir = config.workdir.trim_end_matches('/');
            let workdir = if workdir.starts_with('/') {
                workdir.to_string()
            } else {
                format!("/{workdir}")
            };
            format!("{}/{first}", workdir.trim_end_matches('/'))
        }
        None => format!("/{module_name}.wasm"),
    }
}

pub(crate) fn check_module_name(name: &str) -> Result<(), PackError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.contains(['/', '\\', '\0']) {
        Some("it must be a file name, without `/`")
    } else if name == "." || name == ".." {
        Some("it must be a file name")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(PackError::ModuleName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

fn pack_image(input: &ImageInput<'_>, epoch: Option<i64>) -> Result<PackedImage, PackError> {
    let config = input.config;
    let entrypoint = match &config.entrypoint {
        Some(e) if !e.is_empty() => e.clone(),
        _ => vec![format!("/{}.wasm", input.module_name)],
    };
    let module_at = module_path(input.module_name, config);
    let mut builder = LayerBuilder::new(epoch.unwrap_or(0) as u64);
    builder.add_file(&module_at, input.module, 0o755)?;
    for copy in input.copies {
        builder.add_copy(copy)?;
    }
    if !config.workdir.is_empty() {
        builder.add_dir(&format!("/{}", config.workdir.trim_start_matches('/')))?;
    }
    let layer = builder.finish()?;

    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let image_config = ImageConfigJson {
        created: epoch.map(rfc3339),
        author: None,
        architecture: ARCHITECTURE_WASM.to_string(),
        os: config.os.as_str().to_string(),
        os_version: None,
        variant: None,
        config: Some(ContainerConfig {
            user: None,
            env: (!config.env.is_empty())
                .then(|| config.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            entrypoint: Some(entrypoint),
            cmd: non_empty(&config.cmd),
            working_dir: (!config.workdir.is_empty()).then(|| config.workdir.clone()),
            labels: (!config.labels.is_empty()).then(|| config.labels.clone()),
            stop_signal: None,
        }),
        rootfs: RootFs {
            kind: "layers".to_string(),
            diff_ids: vec![layer.diff_id],
        },
        history: Vec::new(),
    };
    let config_blob = Blob::new(media_type::OCI_CONFIG, to_json(&image_config));
    let layer_blob = Blob {
        media_type: media_type::OCI_LAYER_GZIP.to_string(),
        digest: layer.digest,
        bytes: layer.gz,
    };
    let mut annotations = BTreeMap::new();
    annotations.insert(
        annotation::WASM_VARIANT.to_string(),
        annotation::WASM_VARIANT_COMPAT_SMART.to_string(),
    );
    annotations.extend(config.annotations.clone());
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_string()),
        artifact_type: None,
        config: config_blob.descriptor(),
        layers: vec![layer_blob.descriptor()],
        subject: None,
        annotations,
    };
    Ok(PackedImage {
        manifest: Blob::new(media_type::OCI_MANIFEST, to_json(&manifest)),
        config: config_blob,
        layers: vec![layer_blob],
    })
}

fn pack_artifact(input: &ImageInput<'_>, epoch: Option<i64>) -> Result<PackedImage, PackError> {
    if !input.copies.is_empty() {
        return Err(PackError::ArtifactCopies {
            count: input.copies.len(),
        });
    }
    let config = input.config;
    let layer_blob = Blob::new(media_type::WASM_LAYER, input.module.to_vec());
    let wasm_config = WasmConfig {
        created: rfc3339(epoch.unwrap_or(0)),
        author: config.annotations.get(annotation::AUTHORS).cloned(),
        architecture: ARCHITECTURE_WASM.to_string(),
        os: "wasip1".to_string(),
        layer_digests: vec![layer_blob.digest],
        component: None,
    };
    let config_blob = Blob::new(media_type::WASM_CONFIG, to_json(&wasm_config));
    let mut layer = layer_blob.descriptor();
    let title = module_path(input.module_name, config);
    let title = title.rsplit('/').next().unwrap_or(&title).to_string();
    layer
        .annotations
        .insert(annotation::TITLE.to_string(), title);
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_string()),
        artifact_type: None,
        config: config_blob.descriptor(),
        layers: vec![layer],
        subject: None,
        annotations: config.annotations.clone(),
    };
    Ok(PackedImage {
        manifest: Blob::new(media_type::OCI_MANIFEST, to_json(&manifest)),
        config: config_blob,
        layers: vec![layer_blob],
    })
}

/// Compact JSON; our types only hold strings, numbers and maps with string keys.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| unreachable!("serializing plain data: {e}"))
}

/// `1970-01-01T00:00:00Z` for `secs` after the Unix epoch (UTC).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn lenient_config_parsing() {
        let json = br#"{"architecture":"amd64","os":"linux","config":{"Env":null,"Cmd":["sh"],"Labels":null},"rootfs":{"type":"layers","diff_ids":null},"history":null}"#;
        let c: ImageConfigJson = serde_json::from_slice(json).unwrap();
        assert_eq!(c.config.unwrap().cmd.unwrap(), ["sh"]);
        assert!(c.rootfs.diff_ids.is_empty());
    }
}
