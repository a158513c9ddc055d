//! `start`, on the host, before containerd hands the container to the shim: when the
//! container's image is a wasi/wasm image whose module the node's cache lacks for this
//! engine, fetch the image's precompiled artifact for this host from the image's registry
//! (containerd pulls an image's manifest and layers, never its referrers) into the cache.
//!
//! Everything here is best effort: the container runs the same without it, only compiling
//! its module first. What happened goes to `shim.log` in the shim's home, never to stdout
//! or stderr, which containerd reads the shim's address from.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{GetContainerRequest, GetImageRequest, ReadContentRequest};
use containerd_client::tonic::Request;
use containerd_client::tonic::transport::Channel;
use wasmbuild_packer::image::{ImageIndex, Manifest, media_type};
use wasmbuild_packer::registry::{self, RegistryOptions};
use wasmbuild_packer::{Digest, HostEngine, PrecompiledInfo, Reference, Store, find_file};

use crate::cache;

/// What `start` did for one container.
#[derive(Debug)]
pub enum Outcome {
    /// The image is not a wasi/wasm image (a pod's pause container, say).
    NotWasm,
    /// The cache already holds the module's code for this engine.
    Cached(String),
    /// The image's precompiled artifact for this host is now in the cache.
    Fetched { entry: String, referrer: Digest },
    /// The image has no precompiled artifact for this host: the container compiles.
    NoArtifact(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::NotWasm => write!(f, "not a wasi/wasm image"),
            Outcome::Cached(entry) => write!(f, "cached: {entry}"),
            Outcome::Fetched { entry, referrer } => {
                write!(f, "fetched the precompiled artifact {referrer} as {entry}")
            }
            Outcome::NoArtifact(why) => write!(f, "{why}: the container compiles its module"),
        }
    }
}

/// Runs [`prepare_logged`] in a process of its own, which outlives `start`: the lookup
/// then runs while containerd creates the container, and a container that gets to its
/// module first waits for the lookup's entry lock. The process has none of `start`'s
/// stdio, whose end containerd waits for.
pub fn spawn(address: &str, namespace: &str, id: &str) {
    use std::os::unix::process::CommandExt as _;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let _ = std::process::Command::new(exe)
        .args([PREPARE_ARG, address, namespace, id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
}

/// The first argument of the process [`spawn`] starts.
pub const PREPARE_ARG: &str = "--wasmbuild-prepare";

/// Runs [`prepare`] for the container `id` and logs what came of it in `home/shim.log`,
/// then lets waiting containers go on.
pub fn prepare_logged(home: &Path, address: &str, namespace: &str, id: &str) {
    let started = Instant::now();
    let mut lock = None;
    let line = match prepare(home, address, namespace, id, &mut lock) {
        Ok(outcome) => outcome.to_string(),
        Err(error) => format!("cannot look for a precompiled artifact: {error:#}"),
    };
    let _ = std::fs::create_dir_all(home);
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.join("shim.log"))
    {
        let _ = writeln!(
            log,
            "start {namespace}/{id} ({} ms): {line}",
            started.elapsed().as_millis()
        );
    }
    drop(lock);
}

/// What the module's cache entry is being prepared under: while `prepare` holds it, a
/// container that finds no entry waits for it rather than compiling.
pub type EntryLock = Option<std::os::fd::OwnedFd>;

pub fn prepare(
    home: &Path,
    address: &str,
    namespace: &str,
    id: &str,
    lock: &mut EntryLock,
) -> Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start an async runtime")?;
    let address = address.strip_prefix("unix://").unwrap_or(address);
    let containerd = runtime.block_on(async {
        let channel = containerd_client::connect(address)
            .await
            .with_context(|| format!("cannot connect to containerd at {address}"))?;
        Ok::<_, anyhow::Error>(Containerd { channel, namespace })
    })?;
    let Some(image) = runtime.block_on(containerd.wasm_image_of(id))? else {
        return Ok(Outcome::NotWasm);
    };
    let engine = wasmbuild_builder::engine::host_engine().map_err(anyhow::Error::from)?;
    let host = cache::host_engine(&engine);
    let compiled = home.join("compiled");
    let reference: Reference = image
        .name
        .parse()
        .with_context(|| format!("containerd's image name {} is not a reference", image.name))?;
    let reference = reference.with_digest(image.manifest);

    // Which module an image runs at a path never changes: remembered, the layers are read
    // once per node.
    let memos = home.join("modules");
    let memo = format!(
        "{}.sha256",
        cache::module_digest_hex(format!("{}\0{}", image.manifest, image.module_path).as_bytes())
    );
    let remembered = std::fs::read_to_string(memos.join(&memo))
        .ok()
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    let (entry, fetched) = match remembered {
        Some(digest) => {
            let entry = cache::entry_name(&digest, &host);
            *lock = cache::lock_entry_at(&compiled, &entry).ok();
            if compiled.join(&entry).is_file() {
                return Ok(Outcome::Cached(entry));
            }
            let fetched = fetch_artifact(home, &reference, image.manifest, &host);
            (entry, fetched)
        }
        // The node's first container of this image: the registry is asked while the
        // module's layers are read and hashed.
        None => std::thread::scope(|scope| {
            let fetching = scope.spawn(|| fetch_artifact(home, &reference, image.manifest, &host));
            let digest = runtime
                .block_on(containerd.module_of(&image))
                .map(|module| cache::module_digest_hex(&module))?;
            let _ = cache::write_entry_at(&memos, &memo, digest.as_bytes());
            let entry = cache::entry_name(&digest, &host);
            *lock = cache::lock_entry_at(&compiled, &entry).ok();
            let fetched = fetching
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the registry lookup panicked")));
            Ok::<_, anyhow::Error>((entry, fetched))
        })?,
    };
    if compiled.join(&entry).is_file() {
        return Ok(Outcome::Cached(entry));
    }
    match fetched? {
        Some(fetched) => {
            // Checked against its digest as it arrived; renamed into place whole.
            cache::persist_entry_at(&compiled, &entry, fetched.cwasm)
                .with_context(|| format!("cannot write {}", compiled.join(&entry).display()))?;
            Ok(Outcome::Fetched {
                entry,
                referrer: fetched.referrer,
            })
        }
        None => Ok(Outcome::NoArtifact(format!(
            "no precompiled artifact of {reference} for {} with wasmtime {}",
            host.target, host.wasmtime_version
        ))),
    }
}

/// The precompiled artifact for `host` of the image `subject` in `reference`'s repository,
/// fetched without the image into a partial file of the shim's store: the artifact's digest
/// and the verified cwasm.
fn fetch_artifact(
    home: &Path,
    reference: &Reference,
    subject: Digest,
    host: &HostEngine,
) -> Result<Option<registry::FetchedPrecompiled>> {
    let store = Store::open(&home.join("store"))?;
    let credential = wasmbuild_packer::credentials::resolve(
        &reference.registry,
        None,
        &wasmbuild_packer::credentials::Env::process(),
    )
    .with_context(|| format!("cannot find credentials for {}", reference.registry))?
    .credential;
    let options = RegistryOptions {
        insecure: insecure_registries(),
        ..RegistryOptions::default()
    };
    let wanted = |info: &PrecompiledInfo| host.mismatch(info).is_none();
    registry::fetch_precompiled(
        &store,
        reference,
        subject,
        &credential,
        &options,
        &wanted,
        &mut |_| {},
    )
    .with_context(|| format!("cannot fetch the precompiled artifacts of {reference}"))
}

/// Registries the shim may reach over plain HTTP besides loopback ones, from
/// `WASMBUILD_INSECURE_REGISTRY` (comma-separated `host[:port]`).
fn insecure_registries() -> Vec<String> {
    std::env::var("WASMBUILD_INSECURE_REGISTRY")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(str::to_string)
        .collect()
}

/// A container's wasi/wasm image as containerd holds it.
struct WasmImage {
    /// The image's name in containerd (`127.0.0.1:5000/hello:1`).
    name: String,
    /// The digest of its wasi/wasm manifest (the one an index points to, if any).
    manifest: Digest,
    /// The module the container runs: its `args[0]`, absolute.
    module_path: String,
    layers: Vec<wasmbuild_packer::Descriptor>,
}

struct Containerd<'a> {
    channel: Channel,
    namespace: &'a str,
}

impl Containerd<'_> {
    /// The wasi/wasm image of container `id`; `None` for a container of another kind of
    /// image.
    async fn wasm_image_of(&self, id: &str) -> Result<Option<WasmImage>> {
        let container = ContainersClient::new(self.channel.clone())
            .get(self.request(GetContainerRequest { id: id.to_string() }))
            .await
            .with_context(|| format!("containerd has no container {id}"))?
            .into_inner()
            .container
            .with_context(|| format!("containerd has no container {id}"))?;
        if container.image.is_empty() {
            return Ok(None);
        }
        let spec: serde_json::Value = container
            .spec
            .as_ref()
            .map(|spec| serde_json::from_slice(&spec.value))
            .transpose()
            .context("the container's spec is not JSON")?
            .unwrap_or_default();
        let arg0 = spec["process"]["args"][0].as_str().unwrap_or_default();
        let mut module_path = arg0.split('#').next().unwrap_or_default().to_string();
        if !module_path.starts_with('/') {
            let cwd = spec["process"]["cwd"].as_str().unwrap_or("/");
            module_path = format!("{}/{module_path}", cwd.trim_end_matches('/'));
        }

        let image = ImagesClient::new(self.channel.clone())
            .get(self.request(GetImageRequest {
                name: container.image.clone(),
            }))
            .await
            .with_context(|| format!("containerd has no image {}", container.image))?
            .into_inner()
            .image
            .with_context(|| format!("containerd has no image {}", container.image))?;
        let target = image.target.context("the image has no target")?;
        let mut digest: Digest = target.digest.parse()?;
        let mut bytes = self.read(&digest).await?;
        if media_type::is_index(&target.media_type) {
            let index: ImageIndex = serde_json::from_slice(&bytes)?;
            let Ok(chosen) = registry::choose_wasm(&index) else {
                return Ok(None);
            };
            digest = chosen.digest;
            bytes = self.read(&digest).await?;
        }
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("the manifest {digest} is not an image manifest"))?;
        let config: serde_json::Value =
            serde_json::from_slice(&self.read(&manifest.config.digest).await?)
                .context("the image's config is not JSON")?;
        let is_wasm = config["architecture"] == "wasm"
            && matches!(config["os"].as_str(), Some("wasi" | "wasip1"));
        if !is_wasm {
            return Ok(None);
        }
        Ok(Some(WasmImage {
            name: container.image,
            manifest: digest,
            module_path,
            layers: manifest.layers,
        }))
    }

    /// The module at the image's `module_path`: a raw wasm layer, or the last tar layer that
    /// holds the path.
    async fn module_of(&self, image: &WasmImage) -> Result<Vec<u8>> {
        let mut module = None;
        for layer in &image.layers {
            let blob = self.read(&layer.digest).await?;
            if layer.media_type == media_type::WASM_LAYER {
                module = Some(blob);
            } else if let Some(found) = find_file(&blob, &image.module_path)? {
                module = Some(found);
            }
        }
        module.with_context(|| format!("the image has no module at {}", image.module_path))
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Ok(namespace) = self.namespace.parse() {
            request
                .metadata_mut()
                .insert("containerd-namespace", namespace);
        }
        request
    }

    /// A blob of containerd's content store, whole (the caller knows it is small enough:
    /// manifests, configs, a module's layers).
    async fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut stream = ContentClient::new(self.channel.clone())
            .read(self.request(ReadContentRequest {
                digest: digest.to_string(),
                ..Default::default()
            }))
            .await
            .with_context(|| format!("containerd cannot read {digest}"))?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(message) = stream
            .message()
            .await
            .with_context(|| format!("containerd cannot read {digest}"))?
        {
            bytes.extend_from_slice(&message.data);
        }
        if Digest::of(&bytes) != *digest {
            bail!("containerd's {digest} does not match its digest");
        }
        Ok(bytes)
    }
}
