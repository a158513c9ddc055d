//! Pull: the manifest (the wasi/wasm one of an index), its config and layers, and the
//! precompiled referrers the caller wants, each streamed to a partial file in the store
//! and checked against its digest and size; then one locked commit into the store.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufWriter, Read, Write};

use super::http::{self, Call, Client, CopyError, Failure, Method, ReadError};
use super::push::fallback_tag;
use super::{Event, MAX_MANIFEST_SIZE, PullReport, RegistryError, RegistryOptions};
use crate::credentials::Credential;
use crate::digest::{Digest, HashingWriter};
use crate::image::{Descriptor, ImageIndex, MAX_CONFIG_SIZE, Manifest, media_type};
use crate::precompiled::PrecompiledInfo;
use crate::reference::Reference;
use crate::store::{FetchedBlob, Store, io_err, referrer_entry};

/// Every manifest type this client reads, for `Accept`.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// The operating systems of a Wasm image's platform (architecture `wasm`).
const WASM_OSES: [&str; 2] = ["wasi", "wasip1"];

pub(super) fn pull(
    store: &Store,
    source: &Reference,
    credential: &Credential,
    options: &RegistryOptions,
    want_precompiled: &dyn Fn(&PrecompiledInfo) -> bool,
    on_event: &mut dyn FnMut(&Event),
) -> Result<PullReport, RegistryError> {
    let mut pull = Pull::new(store, source, credential, options);

    let top = pull.manifest(
        &source.tag_or_digest(),
        source.digest,
        &source.to_string(),
        on_event,
    )?;
    let image = if media_type::is_index(&top.media_type) {
        let index: ImageIndex = top.parse()?;
        let chosen = choose_wasm(&index).map_err(|offered| RegistryError::NoWasmPlatform {
            url: http::shown(&top.url),
            offered,
        })?;
        let name = format!("{}@{}", source.repository_reference(), chosen.digest);
        pull.manifest(
            &chosen.digest.to_string(),
            Some(chosen.digest),
            &name,
            on_event,
        )?
    } else {
        top
    };
    if !media_type::is_manifest(&image.media_type) {
        return Err(RegistryError::InvalidResponse {
            url: http::shown(&image.url),
            reason: format!("a {} is not an image manifest", image.media_type),
        });
    }
    let manifest: Manifest = image.parse()?;
    pull.blobs_of(&image, &manifest, on_event)?;
    pull.stage_bytes(&image)?;

    let mut referrer_entries = Vec::new();
    let mut referrers = Vec::new();
    for (fetched, manifest, _) in
        pull.wanted_precompiled(source, &image.digest, want_precompiled, on_event)?
    {
        pull.blobs_of(&fetched, &manifest, on_event)?;
        pull.stage_bytes(&fetched)?;
        referrer_entries.push(referrer_entry(
            &fetched.descriptor(),
            media_type::PRECOMPILED,
            &image.digest,
        ));
        referrers.push(fetched.digest);
    }

    let descriptor = image.descriptor();
    let refs: Vec<Reference> = match source.tag {
        Some(_) => vec![source.without_digest()],
        None => Vec::new(),
    };
    let present: Vec<(Digest, u64)> = pull.present.iter().copied().collect();
    store.commit_fetched(
        pull.staged.into_values().collect(),
        &present,
        &descriptor,
        &refs,
        &referrer_entries,
    )?;
    Ok(PullReport {
        reference: source.with_digest(image.digest),
        digest: image.digest,
        media_type: image.media_type.clone(),
        size: image.bytes.len() as u64,
        downloaded_bytes: pull.downloaded_bytes,
        referrers,
    })
}

/// The precompiled artifact of the image `subject` in `source`'s repository that `want`
/// accepts, fetched without the image: the referrers, the artifact's manifest, and its cwasm
/// into a partial file of `store` (size and digest checked). The store itself does not
/// change: the caller keeps the file or lets it go.
pub(super) fn fetch_precompiled(
    store: &Store,
    source: &Reference,
    subject: Digest,
    credential: &Credential,
    options: &RegistryOptions,
    want: &dyn Fn(&PrecompiledInfo) -> bool,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Option<FetchedPrecompiled>, RegistryError> {
    let mut pull = Pull::new(store, source, credential, options);
    let wanted = pull.wanted_precompiled(source, &subject, want, on_event)?;
    let Some((fetched, _, info)) = wanted.into_iter().next() else {
        return Ok(None);
    };
    let cwasm = pull.download(&info.cwasm, on_event)?;
    Ok(Some(FetchedPrecompiled {
        referrer: fetched.digest,
        info,
        cwasm,
    }))
}

/// A precompiled artifact [`fetch_precompiled`] found.
#[derive(Debug)]
pub struct FetchedPrecompiled {
    /// The digest of the artifact's manifest.
    pub referrer: Digest,
    pub info: PrecompiledInfo,
    /// The cwasm, checked against its descriptor; removed when dropped unless persisted.
    pub cwasm: tempfile::TempPath,
}

/// The entry of `index` for a Wasm platform; else the platforms it offers.
pub fn choose_wasm(index: &ImageIndex) -> Result<&Descriptor, Vec<String>> {
    index
        .manifests
        .iter()
        .find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.architecture == crate::image::ARCHITECTURE_WASM
                    && WASM_OSES.contains(&p.os.as_str())
            })
        })
        .ok_or_else(|| {
            index
                .manifests
                .iter()
                .map(|d| match &d.platform {
                    Some(p) => match &p.variant {
                        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                        None => format!("{}/{}", p.os, p.architecture),
                    },
                    None => format!("{} (no platform)", d.digest),
                })
                .collect()
        })
}

/// A manifest or index as the registry sent it, checked against its digest.
struct FetchedManifest {
    bytes: Vec<u8>,
    media_type: String,
    digest: Digest,
    url: String,
}

impl FetchedManifest {
    fn parse<T: for<'de> serde::Deserialize<'de>>(&self) -> Result<T, RegistryError> {
        serde_json::from_slice(&self.bytes).map_err(|e| RegistryError::InvalidResponse {
            url: http::shown(&self.url),
            reason: format!("its {} is not valid: {e}", self.media_type),
        })
    }

    fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type.clone(),
            self.digest,
            self.bytes.len() as u64,
        )
    }
}

struct Pull<'a, 'o> {
    client: Client<'o>,
    store: &'a Store,
    repository: &'a str,
    /// Fetched and verified, waiting for the commit.
    staged: BTreeMap<Digest, FetchedBlob>,
    /// Already in the store (by name and size), so not fetched.
    present: BTreeSet<(Digest, u64)>,
    downloaded_bytes: u64,
}

impl<'a, 'o> Pull<'a, 'o> {
    fn new(
        store: &'a Store,
        source: &'a Reference,
        credential: &'o Credential,
        options: &'o RegistryOptions,
    ) -> Pull<'a, 'o> {
        let repository = &source.repository;
        let scopes = vec![format!("repository:{repository}:pull")];
        Pull {
            client: Client::new(&source.registry, credential, options, scopes),
            store,
            repository,
            staged: BTreeMap::new(),
            present: BTreeSet::new(),
            downloaded_bytes: 0,
        }
    }

    /// Downloads the blob `descriptor` names into a partial file of the store, checked
    /// against its size and digest, retrying what can be retried.
    fn download(
        &mut self,
        descriptor: &Descriptor,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<tempfile::TempPath, RegistryError> {
        let url = self.client.url(&format!(
            "/v2/{}/blobs/{}",
            self.repository, descriptor.digest
        ));
        let store = self.store;
        self.client.retrying(on_event, |client, on_event| {
            fetch_once(client, store, &url, descriptor, on_event)
        })
    }
    /// GETs the manifest `reference` (a tag or digest) names; `expected` is the digest it
    /// must have. `name` is what a 404 says is missing.
    fn manifest(
        &mut self,
        reference: &str,
        expected: Option<Digest>,
        name: &str,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<FetchedManifest, RegistryError> {
        let url = self
            .client
            .url(&format!("/v2/{}/manifests/{reference}", self.repository));
        let call = Call::new(Method::Get, url.clone()).header("Accept", ACCEPT_MANIFESTS);
        let (bytes, content_type, header_digest) =
            self.client.retrying(on_event, |client, on_event| {
                let response = client.exchange(&call, on_event)?;
                match response.status().as_u16() {
                    200 => {}
                    404 => {
                        return Err(RegistryError::NotFound {
                            reference: name.to_string(),
                            url: http::shown(&url),
                            error: http::api_error(response),
                        }
                        .into());
                    }
                    _ => return Err(http::status_error(Method::Get, &url, response).into()),
                }
                let content_type = http::header(&response, "content-type").map(str::to_string);
                let header_digest =
                    http::header(&response, "docker-content-digest").map(str::to_string);
                let bytes = http::read_manifest(&client.registry, &url, response)?;
                Ok((bytes, content_type, header_digest))
            })?;
        let digest = Digest::of(&bytes);
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: "manifest",
                url: http::shown(&url),
                expected,
                actual: digest,
            });
        }
        if let Some(Ok(announced)) = header_digest.as_deref().map(|h| Digest::parse(h.trim()))
            && announced != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: "manifest (its Docker-Content-Digest header)",
                url: http::shown(&url),
                expected: announced,
                actual: digest,
            });
        }
        let media_type = manifest_media_type(&bytes, content_type.as_deref());
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
            url,
        })
    }

    /// Fetches the config and layers `manifest` (as `fetched`) names; a config too large to
    /// read is refused before it is asked for.
    fn blobs_of(
        &mut self,
        fetched: &FetchedManifest,
        manifest: &Manifest,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<(), RegistryError> {
        if manifest.config.size > MAX_CONFIG_SIZE {
            return Err(RegistryError::ConfigTooLarge {
                url: http::shown(&fetched.url),
                digest: manifest.config.digest,
                size: manifest.config.size,
                limit: MAX_CONFIG_SIZE,
            });
        }
        for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
            self.blob(descriptor, on_event)?;
        }
        Ok(())
    }

    /// Fetches a blob the store lacks into a partial file, verified.
    fn blob(
        &mut self,
        descriptor: &Descriptor,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<(), RegistryError> {
        let key = (descriptor.digest, descriptor.size);
        if self.staged.contains_key(&descriptor.digest) || self.present.contains(&key) {
            return Ok(());
        }
        if self.store_has(descriptor) {
            self.present.insert(key);
            on_event(&Event::BlobDone {
                digest: descriptor.digest,
                size: descriptor.size,
                note: "local",
            });
            return Ok(());
        }
        let file = self.download(descriptor, on_event)?;
        self.downloaded_bytes += descriptor.size;
        self.staged.insert(
            descriptor.digest,
            FetchedBlob {
                digest: descriptor.digest,
                size: descriptor.size,
                file,
            },
        );
        on_event(&Event::BlobDone {
            digest: descriptor.digest,
            size: descriptor.size,
            note: "downloaded",
        });
        Ok(())
    }

    /// A blob file named by its digest with the descriptor's size counts as present.
    fn store_has(&self, descriptor: &Descriptor) -> bool {
        std::fs::metadata(self.store.blob_path(&descriptor.digest))
            .is_ok_and(|m| m.is_file() && m.len() == descriptor.size)
    }

    /// A fetched manifest goes into the store as a blob too.
    fn stage_bytes(&mut self, fetched: &FetchedManifest) -> Result<(), RegistryError> {
        let descriptor = fetched.descriptor();
        if self.staged.contains_key(&fetched.digest) {
            return Ok(());
        }
        if self.store_has(&descriptor) {
            self.present.insert((descriptor.digest, descriptor.size));
            return Ok(());
        }
        let mut temp = self.store.partial_file()?;
        let path = temp.path().to_path_buf();
        temp.write_all(&fetched.bytes)
            .and_then(|()| temp.as_file().sync_all())
            .map_err(io_err("write", &path))?;
        self.staged.insert(
            fetched.digest,
            FetchedBlob {
                digest: fetched.digest,
                size: descriptor.size,
                file: temp.into_temp_path(),
            },
        );
        Ok(())
    }

    /// The precompiled artifacts of the image `subject` that `want` accepts: each referrer
    /// listed as one, fetched, once. A referrer that is not a precompiled artifact of this
    /// image is not ours to keep.
    fn wanted_precompiled(
        &mut self,
        source: &Reference,
        subject: &Digest,
        want: &dyn Fn(&PrecompiledInfo) -> bool,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Vec<(FetchedManifest, Manifest, PrecompiledInfo)>, RegistryError> {
        let mut wanted: Vec<(FetchedManifest, Manifest, PrecompiledInfo)> = Vec::new();
        for listed in self.list_referrers(subject, on_event)? {
            if listed.artifact_type.as_deref() != Some(media_type::PRECOMPILED)
                || wanted.iter().any(|(f, _, _)| f.digest == listed.digest)
            {
                continue;
            }
            let name = format!("{}@{}", source.repository_reference(), listed.digest);
            let fetched = self.manifest(
                &listed.digest.to_string(),
                Some(listed.digest),
                &name,
                on_event,
            )?;
            let Ok(manifest) = fetched.parse::<Manifest>() else {
                continue;
            };
            if manifest.subject.as_ref().map(|s| s.digest) != Some(*subject) {
                continue;
            }
            let Some(info) = PrecompiledInfo::from_manifest(&manifest) else {
                continue;
            };
            if want(&info) {
                wanted.push((fetched, manifest, info));
            }
        }
        Ok(wanted)
    }

    /// The referrers of `subject`: from the referrers API (filtered to precompiled
    /// artifacts), else from the `sha256-<hex>` fallback tag.
    fn list_referrers(
        &mut self,
        subject: &Digest,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let api = http::with_query(
            &self
                .client
                .url(&format!("/v2/{}/referrers/{subject}", self.repository)),
            "artifactType",
            media_type::PRECOMPILED,
        );
        if let Some(index) = self.index_at(&api, on_event)? {
            return Ok(index.manifests);
        }
        let tag = self.client.url(&format!(
            "/v2/{}/manifests/{}",
            self.repository,
            fallback_tag(subject)
        ));
        Ok(self
            .index_at(&tag, on_event)?
            .map(|index| index.manifests)
            .unwrap_or_default())
    }

    /// The image index at `url`; `None` for a 404 or an answer that is not an index.
    fn index_at(
        &mut self,
        url: &str,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Option<ImageIndex>, RegistryError> {
        let call = Call::new(Method::Get, url.to_string()).header("Accept", media_type::OCI_INDEX);
        self.client.retrying(on_event, |client, on_event| {
            let response = client.exchange(&call, on_event)?;
            match response.status().as_u16() {
                200 => {}
                // No referrers API (404, or a registry that refuses the path otherwise), or
                // no fallback tag.
                400..=499 => return Ok(None),
                _ => return Err(http::status_error(Method::Get, url, response).into()),
            }
            let bytes = match http::read_limited(response, MAX_MANIFEST_SIZE) {
                Ok(bytes) => bytes,
                Err(ReadError::TooLarge(size)) => {
                    return Err(RegistryError::ManifestTooLarge {
                        url: http::shown(url),
                        limit: MAX_MANIFEST_SIZE,
                        size,
                    }
                    .into());
                }
                Err(ReadError::Io(e)) => {
                    return Err(http::body_failure(&client.registry, Method::Get, url, e));
                }
            };
            let index = serde_json::from_slice::<ImageIndex>(&bytes)
                .ok()
                .filter(|i| i.media_type.as_deref().is_none_or(media_type::is_index));
            Ok(index)
        })
    }
}

/// One try at downloading a blob into a partial file, checking size and digest.
fn fetch_once(
    client: &mut Client<'_>,
    store: &Store,
    url: &str,
    descriptor: &Descriptor,
    on_event: &mut dyn FnMut(&Event),
) -> Result<tempfile::TempPath, Failure> {
    let response = client.exchange(&Call::new(Method::Get, url.to_string()), on_event)?;
    if response.status().as_u16() != 200 {
        return Err(http::status_error(Method::Get, url, response).into());
    }
    let mismatch = |actual: u64, more: bool| {
        Failure::from(RegistryError::SizeMismatch {
            url: http::shown(url),
            digest: descriptor.digest,
            expected: descriptor.size,
            actual,
            more,
        })
    };
    // Refuse before reading what cannot be the blob.
    if let Some(length) = response.body().content_length()
        && length != descriptor.size
    {
        return Err(mismatch(length, false));
    }
    let mut temp = store.partial_file()?;
    let path = temp.path().to_path_buf();
    let mut reader = response.into_body().into_reader().take(descriptor.size + 1);
    let hasher = {
        let mut writer = HashingWriter::new(BufWriter::with_capacity(1 << 20, temp.as_file_mut()));
        match http::copy_with_progress(
            &mut reader,
            &mut writer,
            descriptor.digest,
            descriptor.size,
            on_event,
        ) {
            Ok(_) => {}
            Err(CopyError::Read(e)) => {
                return Err(http::body_failure(&client.registry, Method::Get, url, e));
            }
            Err(CopyError::Write(e)) => return Err(io_err("write", &path)(e).into()),
        }
        writer.flush().map_err(io_err("write", &path))?;
        writer.hasher
    };
    let received = hasher.len();
    if received != descriptor.size {
        return Err(mismatch(
            received.min(descriptor.size),
            received > descriptor.size,
        ));
    }
    let actual = hasher.finish();
    if actual != descriptor.digest {
        return Err(RegistryError::DigestMismatch {
            what: "blob",
            url: http::shown(url),
            expected: descriptor.digest,
            actual,
        }
        .into());
    }
    temp.as_file().sync_all().map_err(io_err("sync", &path))?;
    Ok(temp.into_temp_path())
}

/// The manifest's media type: its own `mediaType`, else the answer's Content-Type, else
/// what its shape says.
fn manifest_media_type(bytes: &[u8], content_type: Option<&str>) -> String {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde::de::IgnoredAny>,
    }
    let probe: Option<Probe> = serde_json::from_slice(bytes).ok();
    if let Some(m) = probe.as_ref().and_then(|p| p.media_type.clone()) {
        return m;
    }
    let declared = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| media_type::is_manifest(c) || media_type::is_index(c));
    if let Some(declared) = declared {
        return declared;
    }
    if probe.is_some_and(|p| p.manifests.is_some()) {
        media_type::OCI_INDEX.to_string()
    } else {
        media_type::OCI_MANIFEST.to_string()
    }
}
