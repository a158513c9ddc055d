//! Push: every blob the registry lacks (HEAD, then a mount from another repository of the
//! registry that has it, or a monolithic or chunked upload streamed from the store's file),
//! the manifest last, then the precompiled referrers, listed through the referrers API or,
//! where the registry has none, the `sha256-<hex>` tag.

use std::collections::BTreeSet;

use super::http::{self, Body, Call, Client, Failure, Method};
use super::{
    BlobOutcome, BlobReport, Event, PushReport, ReferrersVia, RegistryError, RegistryOptions,
};
use crate::credentials::Credential;
use crate::digest::Digest;
use crate::image::{Descriptor, ImageIndex, Manifest, media_type};
use crate::reference::Reference;
use crate::store::{Store, StoreError};

/// A blob is mounted from at most this many of the repositories offered for it (as
/// `docker push` does); then it is uploaded.
const MAX_MOUNT_SOURCES: usize = 3;

pub(super) fn push(
    store: &Store,
    source: &Descriptor,
    target: &Reference,
    credential: &Credential,
    options: &RegistryOptions,
    mount_sources: &dyn Fn(&Digest) -> Vec<String>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<PushReport, RegistryError> {
    if let Some(digest) = target.digest
        && digest != source.digest
    {
        return Err(RegistryError::InvalidTarget {
            target: target.to_string(),
            reason: format!("the image's digest is {}", source.digest),
        });
    }
    let repository = &target.repository;
    let scopes = vec![format!("repository:{repository}:pull,push")];
    let mut push = Push {
        client: Client::new(&target.registry, credential, options, scopes),
        store,
        repository,
        mount_sources,
        refused_sources: BTreeSet::new(),
        seen: BTreeSet::new(),
        blobs: Vec::new(),
        uploaded_bytes: 0,
    };

    // Everything the manifest names first, so the tag never points at missing blobs.
    let bytes = store.read_descriptor(source)?;
    if media_type::is_index(&source.media_type) {
        let index: ImageIndex = parse(&bytes, source, store)?;
        for child in &index.manifests {
            let manifest = store.manifest(child)?;
            push.blobs_of(&manifest, on_event)?;
            let child_bytes = store.read_descriptor(child)?;
            push.put_manifest(child, &child_bytes, &child.digest.to_string(), on_event)?;
        }
    }
    let tag = match (&target.tag, &target.digest) {
        (Some(tag), _) => tag.clone(),
        (None, Some(digest)) => digest.to_string(),
        (None, None) => crate::reference::DEFAULT_TAG.to_string(),
    };
    if !media_type::is_index(&source.media_type) {
        let manifest: Manifest = parse(&bytes, source, store)?;
        // The tag already names this very manifest: a registry accepts a manifest only when
        // it has every blob, so there is nothing to send for the image (one request, not
        // a HEAD per blob and a PUT).
        if push.tag_names(&tag, source, on_event)? {
            push.already_there(&manifest, on_event);
        } else {
            push.blobs_of(&manifest, on_event)?;
            push.put_manifest(source, &bytes, &tag, on_event)?;
        }
    } else {
        push.put_manifest(source, &bytes, &tag, on_event)?;
    }

    // Then the referrers, each by digest.
    let referrers = store.referrers(&source.digest)?;
    let mut pushed = Vec::new();
    let mut api = true;
    let mut listed = Vec::new();
    for (descriptor, manifest) in &referrers {
        push.blobs_of(manifest, on_event)?;
        let bytes = store.read_descriptor(descriptor)?;
        let answer =
            push.put_manifest(descriptor, &bytes, &descriptor.digest.to_string(), on_event)?;
        api &= answer.subject_header;
        pushed.push(descriptor.digest);
        listed.push(referrer_descriptor(descriptor, manifest));
    }
    let referrers_via = match (referrers.is_empty(), api) {
        (true, _) => None,
        (false, true) => Some(ReferrersVia::Api),
        (false, false) => {
            push.update_fallback_tag(&source.digest, &listed, on_event)?;
            Some(ReferrersVia::TagFallback)
        }
    };

    Ok(PushReport {
        reference: target.with_digest(source.digest),
        digest: source.digest,
        media_type: source.media_type.clone(),
        size: source.size,
        blobs: push.blobs,
        uploaded_bytes: push.uploaded_bytes,
        referrers: pushed,
        referrers_via,
    })
}

fn parse<T: for<'de> serde::Deserialize<'de>>(
    bytes: &[u8],
    descriptor: &Descriptor,
    store: &Store,
) -> Result<T, RegistryError> {
    serde_json::from_slice(bytes).map_err(|source| {
        StoreError::Json {
            path: store.blob_path(&descriptor.digest),
            source,
        }
        .into()
    })
}

/// How a referrer is listed (in the referrers API's answer and the fallback tag's index):
/// its manifest's descriptor with the artifact type and annotations of the manifest.
pub(crate) fn referrer_descriptor(descriptor: &Descriptor, manifest: &Manifest) -> Descriptor {
    let mut listed = Descriptor::new(
        descriptor.media_type.clone(),
        descriptor.digest,
        descriptor.size,
    );
    listed.artifact_type = manifest
        .artifact_type
        .clone()
        .or_else(|| Some(manifest.config.media_type.clone()));
    listed.annotations = manifest.annotations.clone();
    listed
}

/// The fallback tag's index with `add` listed: existing entries kept as they are, each
/// of `add` appended unless its digest is there. Returns whether anything was added.
pub(crate) fn merge_fallback_index(
    existing: Option<ImageIndex>,
    add: &[Descriptor],
) -> (ImageIndex, bool) {
    let mut index = existing.unwrap_or_else(|| ImageIndex::new(Vec::new()));
    if index.media_type.is_none() {
        index.media_type = Some(media_type::OCI_INDEX.to_string());
    }
    let mut changed = false;
    for descriptor in add {
        if !index
            .manifests
            .iter()
            .any(|d| d.digest == descriptor.digest)
        {
            index.manifests.push(descriptor.clone());
            changed = true;
        }
    }
    (index, changed)
}

/// The tag the OCI distribution spec's referrers fallback uses for `subject`.
pub(crate) fn fallback_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm(), subject.hex())
}

struct Push<'a, 'o> {
    client: Client<'o>,
    store: &'a Store,
    repository: &'a str,
    /// Other repositories of the registry that may hold a blob.
    mount_sources: &'a dyn Fn(&Digest) -> Vec<String>,
    /// Sources the registry or its token service would not let us read: not offered again.
    refused_sources: BTreeSet<String>,
    seen: BTreeSet<Digest>,
    blobs: Vec<BlobReport>,
    uploaded_bytes: u64,
}

/// What came of offering the registry to mount a blob.
enum Mount {
    /// The registry has linked the blob into the repository; nothing to send.
    Mounted,
    /// The registry declined and opened an upload session here instead.
    Declined { location: String },
    /// No mount was possible (no source, or none the registry or its token service
    /// allowed); upload as usual.
    Unavailable,
}

/// What the registry said to a manifest PUT.
struct ManifestAnswer {
    /// `OCI-Subject` was set: the registry lists referrers itself.
    subject_header: bool,
}

impl Push<'_, '_> {
    fn blobs_of(
        &mut self,
        manifest: &Manifest,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<(), RegistryError> {
        for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
            self.blob(descriptor, on_event)?;
        }
        Ok(())
    }

    fn blob(
        &mut self,
        descriptor: &Descriptor,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<(), RegistryError> {
        if !self.seen.insert(descriptor.digest) {
            return Ok(());
        }
        let outcome = if self.registry_has(descriptor, on_event)? {
            BlobOutcome::Existed
        } else {
            match self.mount(descriptor, on_event) {
                Mount::Mounted => BlobOutcome::Mounted,
                Mount::Declined { location } => {
                    self.upload(descriptor, Some(location), on_event)?;
                    BlobOutcome::Uploaded
                }
                Mount::Unavailable => {
                    self.upload(descriptor, None, on_event)?;
                    BlobOutcome::Uploaded
                }
            }
        };
        on_event(&Event::BlobDone {
            digest: descriptor.digest,
            size: descriptor.size,
            note: match outcome {
                BlobOutcome::Uploaded => "uploaded",
                BlobOutcome::Existed => "exists",
                BlobOutcome::Mounted => "mounted",
            },
        });
        self.blobs.push(BlobReport {
            digest: descriptor.digest,
            size: descriptor.size,
            media_type: descriptor.media_type.clone(),
            outcome,
        });
        Ok(())
    }

    /// HEAD of the manifest `tag`: whether it is `source` (by its `Docker-Content-Digest`).
    /// Anything but a clear yes is a no, and the push goes the long way.
    fn tag_names(
        &mut self,
        tag: &str,
        source: &Descriptor,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<bool, RegistryError> {
        let url = self
            .client
            .url(&format!("/v2/{}/manifests/{tag}", self.repository));
        let call = Call::new(Method::Head, url).header("Accept", source.media_type.clone());
        let response = self.client.request(&call, on_event)?;
        Ok(response.status().as_u16() == 200
            && http::header(&response, "docker-content-digest")
                .is_some_and(|d| d.trim() == source.digest.to_string()))
    }

    /// Reports the image's blobs as there, without asking for each.
    fn already_there(&mut self, manifest: &Manifest, on_event: &mut dyn FnMut(&Event)) {
        for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
            if !self.seen.insert(descriptor.digest) {
                continue;
            }
            on_event(&Event::BlobDone {
                digest: descriptor.digest,
                size: descriptor.size,
                note: "exists",
            });
            self.blobs.push(BlobReport {
                digest: descriptor.digest,
                size: descriptor.size,
                media_type: descriptor.media_type.clone(),
                outcome: BlobOutcome::Existed,
            });
        }
    }

    /// HEAD: the registry has the blob when it answers 200 with the same size.
    fn registry_has(
        &mut self,
        descriptor: &Descriptor,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<bool, RegistryError> {
        let url = self.client.url(&format!(
            "/v2/{}/blobs/{}",
            self.repository, descriptor.digest
        ));
        let response = self
            .client
            .request(&Call::new(Method::Head, url.clone()), on_event)?;
        match response.status().as_u16() {
            // A HEAD answer has no body; its Content-Length is the blob's size.
            200 => Ok(http::header(&response, "content-length")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .is_none_or(|size| size == descriptor.size)),
            404 => Ok(false),
            _ => Err(http::status_error(Method::Head, &url, response)),
        }
    }

    /// Offers the registry to mount the blob from each repository `mount_sources` names
    /// (a few at most), the way `docker push` does. An offer the registry or its token
    /// service refuses, or that fails, is no error: the blob is then uploaded.
    fn mount(&mut self, descriptor: &Descriptor, on_event: &mut dyn FnMut(&Event)) -> Mount {
        let sources: Vec<String> = (self.mount_sources)(&descriptor.digest)
            .into_iter()
            .filter(|from| from != self.repository && !self.refused_sources.contains(from))
            .take(MAX_MOUNT_SOURCES)
            .collect();
        for from in sources {
            // Reading the source repository needs its pull scope too.
            let narrower = match self
                .client
                .widen_scopes(&[format!("repository:{from}:pull")], on_event)
            {
                Ok(narrower) => narrower,
                Err(failure) => {
                    self.note_refusal(from, &failure);
                    continue;
                }
            };
            let answer = mount_once(
                &mut self.client,
                self.repository,
                &from,
                descriptor,
                on_event,
            );
            self.client.narrow_scopes(narrower);
            match answer {
                Ok(Mount::Mounted) => return Mount::Mounted,
                Ok(declined @ Mount::Declined { .. }) => return declined,
                Ok(Mount::Unavailable) => {}
                Err(failure) => self.note_refusal(from, &failure),
            }
        }
        Mount::Unavailable
    }

    /// Remembers `from` as a source not to offer again when `failure` says the registry or
    /// its token service refused us (not when it merely failed).
    fn note_refusal(&mut self, from: String, failure: &Failure) {
        if matches!(*failure.error, RegistryError::Unauthorized { .. }) {
            self.refused_sources.insert(from);
        }
    }

    /// Uploads the blob's file, on the upload session at `location` if one is open; a
    /// failure part-way starts the upload over.
    fn upload(
        &mut self,
        descriptor: &Descriptor,
        location: Option<String>,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<(), RegistryError> {
        // The registry checks the digest too, but a corrupt store should be named as such.
        let path = self.store.verify_blob(descriptor)?;
        let repository = self.repository;
        let mut sent = 0u64;
        let mut location = location;
        self.client.retrying(on_event, |client, on_event| {
            // A retry opens a session of its own.
            let session = location.take();
            upload_once(
                client, repository, descriptor, &path, session, &mut sent, on_event,
            )
        })?;
        self.uploaded_bytes += sent;
        Ok(())
    }

    /// PUTs a manifest under `reference` (a tag or its digest) with its exact bytes.
    fn put_manifest(
        &mut self,
        descriptor: &Descriptor,
        bytes: &[u8],
        reference: &str,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<ManifestAnswer, RegistryError> {
        let url = self
            .client
            .url(&format!("/v2/{}/manifests/{reference}", self.repository));
        let call = Call::new(Method::Put, url.clone())
            .header("Content-Type", descriptor.media_type.clone())
            .body(Body::Bytes(bytes));
        let response = self.client.request(&call, on_event)?;
        if !(200..=299).contains(&response.status().as_u16()) {
            return Err(http::status_error(Method::Put, &url, response));
        }
        check_digest_header(&response, &descriptor.digest, "manifest", &url)?;
        Ok(ManifestAnswer {
            subject_header: http::header(&response, "oci-subject").is_some(),
        })
    }

    /// Lists `referrers` in the index under the subject's fallback tag.
    fn update_fallback_tag(
        &mut self,
        subject: &Digest,
        referrers: &[Descriptor],
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<(), RegistryError> {
        let tag = fallback_tag(subject);
        let url = self
            .client
            .url(&format!("/v2/{}/manifests/{tag}", self.repository));
        let call = Call::new(Method::Get, url.clone()).header("Accept", media_type::OCI_INDEX);
        let existing = self.client.retrying(on_event, |client, on_event| {
            let response = client.exchange(&call, on_event)?;
            match response.status().as_u16() {
                404 => return Ok(None),
                200 => {}
                _ => return Err(http::status_error(Method::Get, &url, response).into()),
            }
            let bytes = http::read_manifest(&client.registry, &url, response)?;
            let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| {
                Failure::from(RegistryError::InvalidResponse {
                    url: http::shown(&url),
                    reason: format!(
                        "the referrers tag {tag} holds something that is not an image index ({e}); delete the tag, then push again"
                    ),
                })
            })?;
            Ok(Some(index))
        })?;
        let (index, changed) = merge_fallback_index(existing, referrers);
        if !changed {
            return Ok(());
        }
        let bytes = crate::image::to_json(&index);
        let call = Call::new(Method::Put, url.clone())
            .header("Content-Type", media_type::OCI_INDEX)
            .body(Body::Bytes(&bytes));
        let response = self.client.request(&call, on_event)?;
        if !(200..=299).contains(&response.status().as_u16()) {
            return Err(http::status_error(Method::Put, &url, response));
        }
        check_digest_header(&response, &Digest::of(&bytes), "referrers index", &url)
    }
}

/// `Docker-Content-Digest`, where the registry sent one, must be the digest we computed.
pub(crate) fn check_digest_header(
    response: &http::Response,
    expected: &Digest,
    what: &'static str,
    url: &str,
) -> Result<(), RegistryError> {
    let Some(value) = http::header(response, "docker-content-digest") else {
        return Ok(());
    };
    match Digest::parse(value.trim()) {
        Ok(actual) if actual == *expected => Ok(()),
        Ok(actual) => Err(RegistryError::DigestMismatch {
            what,
            url: http::shown(url),
            expected: *expected,
            actual,
        }),
        // Another algorithm: nothing to compare.
        Err(_) => Ok(()),
    }
}

/// One offer to mount the blob into `repository` from `from`: `POST
/// /v2/<repository>/blobs/uploads/?mount=<digest>&from=<from>`. 201 means mounted; 202
/// that the registry declined and opened an upload session instead.
fn mount_once(
    client: &mut Client<'_>,
    repository: &str,
    from: &str,
    descriptor: &Descriptor,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Mount, Failure> {
    let url = client.url(&format!("/v2/{repository}/blobs/uploads/"));
    let url = http::with_query(&url, "mount", &descriptor.digest.to_string());
    let url = http::with_query(&url, "from", from);
    let response = client.exchange(&Call::new(Method::Post, url.clone()), on_event)?;
    match response.status().as_u16() {
        201 => {
            check_digest_header(&response, &descriptor.digest, "mounted blob", &url)?;
            Ok(Mount::Mounted)
        }
        202 => Ok(Mount::Declined {
            location: next_location(&response, &url)?,
        }),
        _ => Ok(Mount::Unavailable),
    }
}

/// One try at uploading a blob: open an upload (unless `session` is one already open),
/// send the file (whole, or in chunks above `chunk_size`), close it with the digest.
/// `sent` counts body bytes the registry accepted.
fn upload_once(
    client: &mut Client<'_>,
    repository: &str,
    descriptor: &Descriptor,
    path: &std::path::Path,
    session: Option<String>,
    sent: &mut u64,
    on_event: &mut dyn FnMut(&Event),
) -> Result<(), Failure> {
    let size = descriptor.size;
    let digest = descriptor.digest;
    let mut location = match session {
        Some(location) => location,
        None => {
            let start_url = client.url(&format!("/v2/{repository}/blobs/uploads/"));
            let response =
                client.exchange(&Call::new(Method::Post, start_url.clone()), on_event)?;
            if response.status().as_u16() != 202 {
                return Err(http::status_error(Method::Post, &start_url, response).into());
            }
            next_location(&response, &start_url)?
        }
    };
    let chunk = client.options.chunk_size.max(1);
    let file_body = |offset: u64, len: u64| Body::File {
        path,
        offset,
        len,
        digest,
        size,
    };
    let finish_url = http::with_query(&location, "digest", &digest.to_string());
    let finish = if size <= chunk {
        // Monolithic: the whole blob in the closing PUT.
        Call::new(Method::Put, finish_url)
            .header("Content-Type", "application/octet-stream")
            .body(file_body(0, size))
    } else {
        let mut offset = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            let call = Call::new(Method::Patch, location.clone())
                .header("Content-Type", "application/octet-stream")
                .header("Content-Range", format!("{offset}-{}", offset + len - 1))
                .body(file_body(offset, len));
            let response = client.exchange(&call, on_event)?;
            if response.status().as_u16() != 202 {
                return Err(http::status_error(Method::Patch, &location, response).into());
            }
            *sent += len;
            location = next_location(&response, &location)?;
            offset += len;
        }
        Call::new(
            Method::Put,
            http::with_query(&location, "digest", &digest.to_string()),
        )
    };
    let response = client.exchange(&finish, on_event)?;
    if response.status().as_u16() != 201 {
        return Err(http::status_error(Method::Put, &finish.url, response).into());
    }
    if size <= chunk {
        *sent += size;
    }
    check_digest_header(&response, &digest, "uploaded blob", &finish.url)?;
    Ok(())
}

/// The upload's next URL, from the `Location` of the answer to `request_url`.
fn next_location(response: &http::Response, request_url: &str) -> Result<String, Failure> {
    match http::header(response, "location") {
        Some(location) if !location.trim().is_empty() => {
            Ok(http::resolve_location(request_url, location))
        }
        _ => Err(RegistryError::InvalidResponse {
            url: http::shown(request_url),
            reason: "an upload answer without a Location header".to_string(),
        }
        .into()),
    }
}
