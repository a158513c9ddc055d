//! The local image store: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/…`) that skopeo and other OCI tools read as it is.
//!
//! Each reference is one `index.json` entry whose `org.opencontainers.image.ref.name`
//! annotation holds the full normalized reference (`docker.io/library/hello:latest`), so
//! `skopeo copy oci:<store>:docker.io/library/hello:latest …` finds it.
//!
//! Every write goes to a temp file in the store, is synced, then renamed into place, so a
//! reader sees either the old or the new file, never half of one. Writers (put, tag,
//! remove, load, gc) hold an exclusive lock on `<store>.lock`, beside the layout so the
//! layout holds nothing foreign; readers take no lock.
//!
//! A writer that is killed leaves its temp files behind (a pull, which downloads without
//! the lock, its partial files). Each is named after the process that made it, and the next
//! writer, on taking the lock, removes those whose process is gone (see `Owner`).
//!
//! A referrer (an OCI 1.1 artifact whose `subject` is an image, such as a precompiled
//! cwasm) is an `index.json` entry without a reference name, annotated
//! `dev.wasmbuild.subject` with its image's digest, as ORAS keeps referrers in a layout. It
//! belongs to that image: it stays while any entry names the image and goes with its last
//! one, blobs and all.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::image::{
    Descriptor, ImageConfigJson, ImageIndex, Manifest, PackedImage, annotation, media_type,
};
use crate::reference::Reference;

pub(crate) const OCI_LAYOUT_FILE: &str = "oci-layout";
pub(crate) const INDEX_FILE: &str = "index.json";
/// Files being written under the lock (and an archive `save` writes beside itself).
pub(crate) const TEMP_PREFIX: &str = ".tmp-";
/// Downloads in progress (a pull fetches without holding the lock, so writers' clean-up
/// must leave a running pull's alone).
pub(crate) const PARTIAL_PREFIX: &str = ".partial-";
/// A partial file whose maker cannot be checked (a process on another machine or in
/// another container, or a system without `/proc`) belongs to no running pull after this
/// long.
const STALE_PARTIAL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Manifests and indexes larger than this are refused rather than read into memory.
pub(crate) const MAX_JSON_BLOB: u64 = 64 << 20;

/// The `oci-layout` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OciLayout {
    pub(crate) image_layout_version: String,
}

impl OciLayout {
    pub(crate) fn current() -> OciLayout {
        OciLayout {
            image_layout_version: "1.0.0".to_string(),
        }
    }
}

/// A problem with the local store or an archive; each names the file, digest or
/// reference involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not valid: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} is not an OCI image layout: {reason}", path.display())]
    Layout { path: PathBuf, reason: String },
    #[error("image {reference} not found in the local store {}", store.display())]
    NotFound { reference: String, store: PathBuf },
    #[error("blob {digest} is missing: {} does not exist", path.display())]
    MissingBlob { digest: Digest, path: PathBuf },
    #[error("blob {digest} is corrupt: {} hashes to {actual}", path.display())]
    Corrupt {
        digest: Digest,
        actual: Digest,
        path: PathBuf,
    },
    #[error("blob {digest} has {actual} bytes, but its descriptor says {expected} ({})", path.display())]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
        path: PathBuf,
    },
    #[error("blob {digest} is a {media_type}, not an image manifest")]
    NotAManifest { digest: Digest, media_type: String },
    #[error("blob {digest} given to the store hashes to {actual}")]
    BlobMismatch { digest: Digest, actual: Digest },
    #[error("cannot store {digest} as a referrer of {subject}: {reason}")]
    Referrer {
        digest: Digest,
        subject: Digest,
        reason: String,
    },
    #[error("cannot store an image under the digest reference {reference}: give a tag")]
    DigestReference { reference: String },
    #[error("{}: {reason}", archive.display())]
    Archive { archive: PathBuf, reason: String },
    #[error("{}: refusing entry {entry:?}: {reason}", archive.display())]
    UnsafeArchiveEntry {
        archive: PathBuf,
        entry: String,
        reason: String,
    },
}

impl StoreError {
    /// What to try next, where something more than the message helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            StoreError::NotFound { .. } => Some(
                "`wasmbuild images` lists what the store holds; build it with `wasmbuild build -t REF` or read an archive with `wasmbuild load -i FILE.tar`"
                    .to_owned(),
            ),
            StoreError::Corrupt { .. } | StoreError::SizeMismatch { .. } | StoreError::MissingBlob { .. } => Some(
                "the store was changed outside wasmbuild; remove the image (`wasmbuild rmi REF`) and build or load it again"
                    .to_owned(),
            ),
            StoreError::DigestReference { .. } => Some("use a tag, e.g. `-t ghcr.io/me/app:1.0`".to_owned()),
            _ => None,
        }
    }
}

pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// A blob downloaded into a [`Store::partial_file`] and checked against its digest and
/// size, waiting for [`Store::commit_fetched`].
pub(crate) struct FetchedBlob {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) file: tempfile::TempPath,
}

/// One reference in the store and the manifest it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    pub reference: Reference,
    /// The `index.json` entry (with its annotations).
    pub manifest: Descriptor,
}

/// What a garbage collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: usize,
    pub bytes_freed: u64,
}

/// The local OCI-layout image store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    lock_path: PathBuf,
}

/// Holds the store's exclusive lock until dropped (closing the file releases it).
pub(crate) struct StoreLock {
    _file: fs::File,
}

impl Store {
    /// Opens the layout at `root`, creating the folder, `oci-layout` and an empty
    /// `index.json` if they are missing.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(io_err("create folder", &blobs))?;
        let root = fs::canonicalize(root).map_err(io_err("open", root))?;
        let name = root.file_name().map(|n| n.to_string_lossy().into_owned());
        let lock_path = match (root.parent(), name) {
            (Some(parent), Some(name)) => parent.join(format!("{name}.lock")),
            // `/` itself: nowhere beside it, so inside.
            _ => root.join(".lock"),
        };
        let store = Store { root, lock_path };
        let layout = store.root.join(OCI_LAYOUT_FILE);
        let index = store.index_path();
        if !layout.exists() || !index.exists() {
            let _lock = store.lock()?;
            if !layout.exists() {
                store.write_atomic(
                    &store.root,
                    &layout,
                    &crate::image::to_json(&OciLayout::current()),
                )?;
            }
            if !index.exists() {
                store.write_index(&ImageIndex::new(Vec::new()))?;
            }
        }
        check_layout(&layout)?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The lock file writers hold, `<root>.lock`.
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// Stores the image's blobs (the manifest last), then points each of `refs` at it.
    /// A reference that named another image is moved; blobs nothing names any more are
    /// deleted. With no `refs`, the image is kept untagged (reachable by digest).
    pub fn put(&self, image: &PackedImage, refs: &[Reference]) -> Result<Descriptor, StoreError> {
        self.put_inner(image, refs, None)
    }

    /// Stores the image as [`Store::put`] does and, in the same write, makes its referrers
    /// of `artifact_type` exactly `referrers` (artifacts whose `subject` is the image): ones
    /// a previous build left that are not among them are removed. Referrers of other
    /// types are kept.
    pub fn put_with_referrers(
        &self,
        image: &PackedImage,
        refs: &[Reference],
        artifact_type: &str,
        referrers: &[PackedImage],
    ) -> Result<Descriptor, StoreError> {
        self.put_inner(image, refs, Some((artifact_type, referrers)))
    }

    fn put_inner(
        &self,
        image: &PackedImage,
        refs: &[Reference],
        referrers: Option<(&str, &[PackedImage])>,
    ) -> Result<Descriptor, StoreError> {
        let descriptor = image.manifest_descriptor();
        let (artifact_type, referrers) = referrers.unwrap_or_default();
        for referrer in referrers {
            check_referrer(referrer, &descriptor.digest, artifact_type)?;
        }
        for r in refs {
            if r.digest.is_some() {
                return Err(StoreError::DigestReference {
                    reference: r.to_string(),
                });
            }
        }
        let blobs = || {
            image
                .blobs()
                .chain(referrers.iter().flat_map(PackedImage::blobs))
        };
        for blob in blobs() {
            let actual = Digest::of(&blob.bytes);
            if actual != blob.digest {
                return Err(StoreError::BlobMismatch {
                    digest: blob.digest,
                    actual,
                });
            }
        }
        let _lock = self.lock()?;
        // Layers and configs before the manifests that name them, the image before its
        // referrers.
        let mut wrote = false;
        for blob in blobs() {
            wrote |= self.write_blob(&blob.digest, &blob.bytes)?;
        }
        if wrote {
            sync_dir(&self.blobs_dir()).map_err(io_err("sync", &self.blobs_dir()))?;
        }
        let mut index = self.read_index()?;
        let before = index.clone();
        let mut garbage = set_refs(&mut index, &descriptor, refs);
        if !artifact_type.is_empty() {
            let new: BTreeSet<Digest> = referrers.iter().map(|r| *r.digest()).collect();
            index.manifests.retain(|d| {
                let old = entry_reference(d).is_none()
                    && subject_of(d) == Some(descriptor.digest)
                    && d.artifact_type.as_deref() == Some(artifact_type);
                garbage |= old && !new.contains(&d.digest);
                !old
            });
            for referrer in referrers {
                let entry = referrer_entry(
                    &referrer.manifest_descriptor(),
                    artifact_type,
                    &descriptor.digest,
                );
                if !index.manifests.contains(&entry) {
                    index.manifests.push(entry);
                }
            }
        }
        garbage |= prune_orphans(&mut index);
        sort_entries(&mut index);
        // A rebuild that changed nothing leaves index.json (and its fsyncs) alone.
        if index != before {
            self.write_index(&index)?;
        }
        if garbage {
            let _ = self.gc_locked(&index);
        }
        Ok(descriptor)
    }

    /// The referrers the store keeps for the image `subject` (a manifest digest), each
    /// with its manifest, by artifact type then digest.
    pub fn referrers(&self, subject: &Digest) -> Result<Vec<(Descriptor, Manifest)>, StoreError> {
        let index = self.read_index()?;
        let mut found = Vec::new();
        for entry in &index.manifests {
            if entry_reference(entry).is_some() || subject_of(entry) != Some(*subject) {
                continue;
            }
            let manifest = self.manifest(entry)?;
            // The annotation only says where to look; the manifest itself must agree.
            if manifest.subject.as_ref().map(|s| s.digest) == Some(*subject) {
                found.push((plain(entry), manifest));
            }
        }
        found.sort_by(|(a, _), (b, _)| {
            (&a.artifact_type, a.digest).cmp(&(&b.artifact_type, b.digest))
        });
        Ok(found)
    }

    /// The manifest `r` names. A digest reference matches any entry with that digest
    /// (preferring one of the same repository), or a manifest blob in the store.
    pub fn resolve(&self, r: &Reference) -> Result<Descriptor, StoreError> {
        let index = self.read_index()?;
        self.find(&index, r)?.ok_or_else(|| self.not_found(r))
    }

    /// Every named image, sorted by reference.
    pub fn list(&self) -> Result<Vec<StoredImage>, StoreError> {
        let index = self.read_index()?;
        let mut images: Vec<StoredImage> = index
            .manifests
            .iter()
            .filter_map(|d| {
                entry_reference(d).map(|reference| StoredImage {
                    reference,
                    manifest: d.clone(),
                })
            })
            .collect();
        images.sort_by(|a, b| {
            a.reference
                .cmp(&b.reference)
                .then_with(|| a.manifest.digest.cmp(&b.manifest.digest))
        });
        Ok(images)
    }

    /// The blob's bytes, checked against its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => StoreError::MissingBlob {
                digest: *digest,
                path: path.clone(),
            },
            _ => StoreError::Io {
                action: "read",
                path: path.clone(),
                source,
            },
        })?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(StoreError::Corrupt {
                digest: *digest,
                actual,
                path,
            });
        }
        Ok(bytes)
    }

    /// The blob `descriptor` names, checked against its digest and size.
    pub fn read_descriptor(&self, descriptor: &Descriptor) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(&descriptor.digest);
        // Refuse before reading a blob that cannot be what the descriptor says.
        if let Ok(meta) = fs::metadata(&path)
            && meta.len() != descriptor.size
        {
            return Err(StoreError::SizeMismatch {
                digest: descriptor.digest,
                expected: descriptor.size,
                actual: meta.len(),
                path,
            });
        }
        self.read_blob(&descriptor.digest)
    }

    /// Checks the blob `descriptor` names against its size and digest without keeping it in
    /// memory; returns its path, for a reader that maps the file (blobs are never changed
    /// in place: a write makes a new file and renames it over).
    pub fn verify_blob(&self, descriptor: &Descriptor) -> Result<PathBuf, StoreError> {
        let path = self.blob_path(&descriptor.digest);
        let file = fs::File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => StoreError::MissingBlob {
                digest: descriptor.digest,
                path: path.clone(),
            },
            _ => io_err("read", &path)(source),
        })?;
        let size = file.metadata().map_err(io_err("read", &path))?.len();
        if size != descriptor.size {
            return Err(StoreError::SizeMismatch {
                digest: descriptor.digest,
                expected: descriptor.size,
                actual: size,
                path,
            });
        }
        let mut hasher = crate::digest::Hasher::new();
        io::copy(
            &mut io::BufReader::with_capacity(1 << 20, file),
            &mut hasher,
        )
        .map_err(io_err("read", &path))?;
        let actual = hasher.finish();
        if actual != descriptor.digest {
            return Err(StoreError::Corrupt {
                digest: descriptor.digest,
                actual,
                path,
            });
        }
        Ok(path)
    }

    /// Reads and parses the image manifest `descriptor` names.
    pub fn manifest(&self, descriptor: &Descriptor) -> Result<Manifest, StoreError> {
        if media_type::is_index(&descriptor.media_type) {
            return Err(StoreError::NotAManifest {
                digest: descriptor.digest,
                media_type: descriptor.media_type.clone(),
            });
        }
        self.read_json(descriptor)
    }

    /// Reads and parses an image index (a multi-platform image) `descriptor` names.
    pub fn image_index(&self, descriptor: &Descriptor) -> Result<ImageIndex, StoreError> {
        self.read_json(descriptor)
    }

    /// Reads and parses the image config of `manifest`.
    pub fn config(&self, manifest: &Manifest) -> Result<ImageConfigJson, StoreError> {
        self.read_json(&manifest.config)
    }

    /// Points `dst` at the image `src` names.
    pub fn tag(&self, src: &Reference, dst: &Reference) -> Result<Descriptor, StoreError> {
        if dst.digest.is_some() {
            return Err(StoreError::DigestReference {
                reference: dst.to_string(),
            });
        }
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let found = self.find(&index, src)?.ok_or_else(|| self.not_found(src))?;
        let descriptor = plain(&found);
        let mut displaced = set_refs(&mut index, &descriptor, std::slice::from_ref(dst));
        displaced |= prune_orphans(&mut index);
        self.write_index(&index)?;
        if displaced {
            let _ = self.gc_locked(&index);
        }
        Ok(descriptor)
    }

    /// Removes `r` (for a digest reference: every entry of that image in its
    /// repository, and untagged ones), and the image's referrers with its last entry, then
    /// deletes blobs no remaining entry uses.
    /// Deletion is skipped, never guessed, when a remaining manifest cannot be read;
    /// [`Store::gc`] reports why.
    pub fn remove(&self, r: &Reference) -> Result<Descriptor, StoreError> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let matches = |d: &Descriptor| -> bool {
            let named = entry_reference(d);
            match &r.digest {
                Some(digest) => {
                    d.digest == *digest
                        && named
                            .is_none_or(|n| n.repository_reference() == r.repository_reference())
                }
                None => named.as_ref() == Some(r),
            }
        };
        let removed: Vec<Descriptor> = index
            .manifests
            .iter()
            .filter(|d| matches(d))
            .cloned()
            .collect();
        let Some(first) = removed.first() else {
            return Err(self.not_found(r));
        };
        index.manifests.retain(|d| !matches(d));
        prune_orphans(&mut index);
        self.write_index(&index)?;
        let _ = self.gc_locked(&index);
        Ok(first.clone())
    }

    /// Deletes every blob no `index.json` entry reaches (a referrer counts while its image
    /// has an entry), and stale temp files.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let _lock = self.lock()?;
        let index = self.read_index()?;
        self.gc_locked(&index)
    }

    pub(crate) fn gc_locked(&self, index: &ImageIndex) -> Result<GcReport, StoreError> {
        let keep = self.reachable(&live_entries(&index.manifests))?;
        let mut report = GcReport::default();
        let dir = self.blobs_dir();
        for entry in fs::read_dir(&dir).map_err(io_err("read folder", &dir))? {
            let entry = entry.map_err(io_err("read folder", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_temp(&name) {
                continue;
            }
            let garbage = match Digest::parse(&format!("sha256:{name}")) {
                Ok(digest) => !keep.contains_key(&digest),
                Err(_) => false,
            };
            if garbage {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                remove_file(&entry.path())?;
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
        report.bytes_freed += self.remove_stale_temps()?;
        Ok(report)
    }

    /// Removes the temp files (in the layout's root and its blobs folder) that no running
    /// writer owns, and partial files no running pull does; returns the bytes freed. Only
    /// with the lock held: temp files of a locked writer that died are told from a live
    /// one's by the lock alone when their maker cannot be checked.
    pub(crate) fn remove_stale_temps(&self) -> Result<u64, StoreError> {
        let mut freed = 0;
        for dir in [self.root.clone(), self.blobs_dir()] {
            for entry in fs::read_dir(&dir).map_err(io_err("read folder", &dir))? {
                let entry = entry.map_err(io_err("read folder", &dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                if meta.is_file() && is_stale_temp(&name, &meta) {
                    remove_file(&entry.path())?;
                    freed += meta.len();
                }
            }
        }
        Ok(freed)
    }

    /// Every blob the descriptors reach, through manifests and indexes.
    pub(crate) fn reachable(
        &self,
        roots: &[Descriptor],
    ) -> Result<BTreeMap<Digest, u64>, StoreError> {
        let mut seen = BTreeMap::new();
        let mut stack: Vec<Descriptor> = roots.to_vec();
        while let Some(d) = stack.pop() {
            if seen.insert(d.digest, d.size).is_some() {
                continue;
            }
            if media_type::is_manifest(&d.media_type) {
                let m = self.manifest(&d)?;
                stack.push(m.config);
                stack.extend(m.layers);
            } else if media_type::is_index(&d.media_type) {
                stack.extend(self.image_index(&d)?.manifests);
            }
        }
        Ok(seen)
    }

    pub(crate) fn find(
        &self,
        index: &ImageIndex,
        r: &Reference,
    ) -> Result<Option<Descriptor>, StoreError> {
        let Some(digest) = r.digest else {
            return Ok(index
                .manifests
                .iter()
                .find(|d| entry_reference(d).as_ref() == Some(r))
                .cloned());
        };
        let same_digest = || index.manifests.iter().filter(|d| d.digest == digest);
        let same_repo = same_digest().find(|d| {
            entry_reference(d).is_some_and(|n| n.repository_reference() == r.repository_reference())
        });
        if let Some(d) = same_repo.or_else(|| same_digest().next()) {
            return Ok(Some(d.clone()));
        }
        // A manifest inside a multi-platform index, or an untagged blob.
        if !self.blob_path(&digest).exists() {
            return Ok(None);
        }
        let bytes = self.read_blob(&digest)?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                path: self.blob_path(&digest),
                source,
            })?;
        let media_type = match value.get("mediaType").and_then(|m| m.as_str()) {
            Some(m) => m.to_string(),
            None if value.get("manifests").is_some() => media_type::OCI_INDEX.to_string(),
            None => media_type::OCI_MANIFEST.to_string(),
        };
        Ok(Some(Descriptor::new(
            media_type,
            digest,
            bytes.len() as u64,
        )))
    }

    fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        descriptor: &Descriptor,
    ) -> Result<T, StoreError> {
        if descriptor.size > MAX_JSON_BLOB {
            return Err(StoreError::SizeMismatch {
                digest: descriptor.digest,
                expected: MAX_JSON_BLOB,
                actual: descriptor.size,
                path: self.blob_path(&descriptor.digest),
            });
        }
        let bytes = self.read_descriptor(descriptor)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            path: self.blob_path(&descriptor.digest),
            source,
        })
    }

    fn not_found(&self, r: &Reference) -> StoreError {
        StoreError::NotFound {
            reference: r.to_string(),
            store: self.root.clone(),
        }
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    pub(crate) fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_FILE)
    }

    pub(crate) fn lock(&self) -> Result<StoreLock, StoreError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&self.lock_path)
            .map_err(io_err("open lock file", &self.lock_path))?;
        file.lock().map_err(io_err("lock", &self.lock_path))?;
        // What a writer killed half way left: collected by the next writer. A failure here
        // costs disk space, not this write.
        let _ = self.remove_stale_temps();
        Ok(StoreLock { _file: file })
    }

    /// `index.json`; a missing one reads as empty.
    pub(crate) fn read_index(&self) -> Result<ImageIndex, StoreError> {
        let path = self.index_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(ImageIndex::new(Vec::new()));
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json { path, source })
    }

    pub(crate) fn write_index(&self, index: &ImageIndex) -> Result<(), StoreError> {
        self.write_atomic(
            &self.root,
            &self.index_path(),
            &crate::image::to_json(index),
        )
    }

    /// Writes a blob unless a file of that name and size is already there; says whether
    /// it wrote one.
    pub(crate) fn write_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<bool, StoreError> {
        let path = self.blob_path(digest);
        if fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
            return Ok(false);
        }
        self.write_atomic(&self.blobs_dir(), &path, bytes)?;
        Ok(true)
    }

    /// Temp file in `dir` (on the same file system), synced, renamed to `path`.
    pub(crate) fn write_atomic(
        &self,
        dir: &Path,
        path: &Path,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let mut temp = self.temp_file(dir)?;
        temp.write_all(bytes)
            .map_err(io_err("write", temp.path()))?;
        temp.as_file()
            .sync_all()
            .map_err(io_err("sync", temp.path()))?;
        temp.persist(path)
            .map_err(|e| io_err("write", path)(e.error))?;
        sync_dir(dir).map_err(io_err("sync", dir))
    }

    /// A file in the blobs folder for a download in progress, named after this process;
    /// see [`PARTIAL_PREFIX`].
    pub(crate) fn partial_file(&self) -> Result<tempfile::NamedTempFile, StoreError> {
        let dir = self.blobs_dir();
        tempfile::Builder::new()
            .prefix(&owned_prefix(PARTIAL_PREFIX))
            .tempfile_in(&dir)
            .map_err(io_err("create a temp file in", &dir))
    }

    /// Adds a fetched image in one locked write: moves its verified blobs in (ones the
    /// store has, by name and size, are kept; `present` ones must still be there), points `refs` at `image` (none: kept
    /// untagged) and adds the `referrers` entries (made by [`referrer_entry`]) that are
    /// not there. If anything fails, blobs it moved in are taken out again, so the store
    /// is as it was.
    pub(crate) fn commit_fetched(
        &self,
        blobs: Vec<FetchedBlob>,
        present: &[(Digest, u64)],
        image: &Descriptor,
        refs: &[Reference],
        referrers: &[Descriptor],
    ) -> Result<(), StoreError> {
        if let Some(r) = refs.iter().find(|r| r.digest.is_some()) {
            return Err(StoreError::DigestReference {
                reference: r.to_string(),
            });
        }
        let _lock = self.lock()?;
        let mut placed: Vec<PathBuf> = Vec::new();
        let result = (|| {
            // Blobs found in the store before the download may have been collected since.
            for (digest, size) in present {
                let path = self.blob_path(digest);
                if !fs::metadata(&path).is_ok_and(|m| m.len() == *size) {
                    return Err(StoreError::MissingBlob {
                        digest: *digest,
                        path,
                    });
                }
            }
            for blob in blobs {
                let path = self.blob_path(&blob.digest);
                if fs::metadata(&path).is_ok_and(|m| m.len() == blob.size) {
                    continue;
                }
                blob.file
                    .persist(&path)
                    .map_err(|e| io_err("write", &path)(e.error))?;
                placed.push(path);
            }
            sync_dir(&self.blobs_dir()).map_err(io_err("sync", &self.blobs_dir()))?;
            let mut index = self.read_index()?;
            let mut displaced = set_refs(&mut index, &plain(image), refs);
            for entry in referrers {
                if !index.manifests.contains(entry) {
                    index.manifests.push(entry.clone());
                }
            }
            displaced |= prune_orphans(&mut index);
            sort_entries(&mut index);
            self.write_index(&index)?;
            Ok((displaced, index))
        })();
        match result {
            Ok((displaced, index)) => {
                if displaced {
                    let _ = self.gc_locked(&index);
                }
                Ok(())
            }
            Err(e) => {
                for path in placed {
                    let _ = fs::remove_file(path);
                }
                let _ = sync_dir(&self.blobs_dir());
                Err(e)
            }
        }
    }

    /// A temp file in `dir`, named after this process.
    pub(crate) fn temp_file(&self, dir: &Path) -> Result<tempfile::NamedTempFile, StoreError> {
        tempfile::Builder::new()
            .prefix(&owned_prefix(TEMP_PREFIX))
            .tempfile_in(dir)
            .map_err(io_err("create a temp file in", dir))
    }
}

fn is_temp(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) || name.starts_with(PARTIAL_PREFIX)
}

/// Whether the temp or partial file `name` is left over from a process that is gone.
/// Called with the lock held.
fn is_stale_temp(name: &str, meta: &fs::Metadata) -> bool {
    let (prefix, rest) = if let Some(rest) = name.strip_prefix(TEMP_PREFIX) {
        (TEMP_PREFIX, rest)
    } else if let Some(rest) = name.strip_prefix(PARTIAL_PREFIX) {
        (PARTIAL_PREFIX, rest)
    } else {
        return false;
    };
    match Owner::from_name(rest).map(|owner| owner.running()) {
        Some(Running::Yes) => false,
        Some(Running::No) => true,
        // Temp files are made under the lock we hold (bar `save`'s, which has an owner
        // this process can check when it runs beside it): whoever made this one is done.
        _ if prefix == TEMP_PREFIX => true,
        _ => meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_PARTIAL),
    }
}

/// `prefix` followed by this process's [`Owner`] where it can be told, for a temp file name.
fn owned_prefix(prefix: &str) -> String {
    match Owner::current() {
        Some(owner) => format!("{prefix}{owner}-"),
        None => prefix.to_owned(),
    }
}

fn remove_file(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("delete", path)(e)),
        _ => Ok(()),
    }
}

/// The process that made a temp or partial file, written into the file's name
/// (`.partial-<scope>-<pid>-<start>-XXXXXX`), so that a writer can tell a running pull's
/// download from one a killed pull left, without waiting a day to be sure.
///
/// Read from `/proc` (Linux): `scope` is a hash of the boot id and the pid namespace, so
/// processes this one cannot see (on another machine sharing the folder, or in another
/// container) are never taken for dead; `start` is the process's start time, so a process
/// that got a dead one's pid is not taken for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    scope: String,
    pid: u32,
    start: u64,
}

/// Whether an [`Owner`] still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Running {
    Yes,
    No,
    /// It is not a process this one can see.
    Unknown,
}

impl Owner {
    /// This process, or `None` where `/proc` does not tell.
    pub(crate) fn current() -> Option<&'static Owner> {
        static CURRENT: std::sync::OnceLock<Option<Owner>> = std::sync::OnceLock::new();
        CURRENT
            .get_or_init(|| {
                let scope = current_scope()?;
                // The pid as this `/proc` numbers it, which is how it will be looked up.
                let pid: u32 = fs::read_link("/proc/self").ok()?.to_str()?.parse().ok()?;
                let (_, start) = process_state(pid).ok()??;
                Some(Owner { scope, pid, start })
            })
            .as_ref()
    }

    /// The owner a temp file name (without its prefix) records, if it records one.
    pub(crate) fn from_name(rest: &str) -> Option<Owner> {
        let mut parts = rest.splitn(4, '-');
        let scope = parts.next()?;
        let pid = parts.next()?.parse().ok()?;
        let start = parts.next()?.parse().ok()?;
        parts.next()?;
        let hex = scope.len() == SCOPE_LEN && scope.bytes().all(|b| b.is_ascii_hexdigit());
        hex.then(|| Owner {
            scope: scope.to_owned(),
            pid,
            start,
        })
    }

    pub(crate) fn running(&self) -> Running {
        if Owner::current().is_none_or(|me| me.scope != self.scope) {
            return Running::Unknown;
        }
        match process_state(self.pid) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Running::No,
            Ok(Some((state, start))) if start == self.start && !matches!(state, 'Z' | 'X') => {
                Running::Yes
            }
            // A zombie writes nothing; another start time is another process.
            Ok(Some(_)) => Running::No,
            Err(_) | Ok(None) => Running::Unknown,
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.scope, self.pid, self.start)
    }
}

const SCOPE_LEN: usize = 12;

/// Which processes `/proc` shows this one: this boot of this machine, this pid namespace.
fn current_scope() -> Option<String> {
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let namespace = fs::read_link("/proc/self/ns/pid").ok()?;
    let seen = format!("{}\n{}", boot.trim(), namespace.display());
    Some(Digest::of(seen.as_bytes()).hex()[..SCOPE_LEN].to_owned())
}

/// A process's state letter and start time (clock ticks after boot) from
/// `/proc/<pid>/stat`; `None` when the file does not read as one.
fn process_state(pid: u32) -> io::Result<Option<(char, u64)>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses, so split after the last.
    let Some((_, fields)) = stat.rsplit_once(')') else {
        return Ok(None);
    };
    let fields: Vec<&str> = fields.split_whitespace().collect();
    // Field 3 of proc(5) is the state, field 22 the start time.
    let state = fields.first().and_then(|s| s.chars().next());
    let start = fields.get(19).and_then(|s| s.parse().ok());
    Ok(state.zip(start))
}

fn check_layout(path: &Path) -> Result<(), StoreError> {
    let bytes = fs::read(path).map_err(io_err("read", path))?;
    let layout: OciLayout = serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    if !layout.image_layout_version.starts_with("1.") {
        return Err(StoreError::Layout {
            path: path.to_path_buf(),
            reason: format!(
                "unsupported imageLayoutVersion {:?}",
                layout.image_layout_version
            ),
        });
    }
    Ok(())
}

/// The reference an `index.json` entry is stored under, if it has a valid one.
pub(crate) fn entry_reference(d: &Descriptor) -> Option<Reference> {
    d.annotations.get(annotation::REF_NAME)?.parse().ok()
}

/// The descriptor without the annotations of the index entry it came from.
pub(crate) fn plain(d: &Descriptor) -> Descriptor {
    Descriptor {
        annotations: BTreeMap::new(),
        ..d.clone()
    }
}

/// The image (manifest digest) a referrer entry belongs to; `None` for other entries.
pub(crate) fn subject_of(d: &Descriptor) -> Option<Digest> {
    d.annotations.get(annotation::SUBJECT)?.parse().ok()
}

/// The `index.json` entry of a referrer of `subject`: no reference name, the subject's
/// digest in its annotation, and its artifact type, as the referrers API lists it.
pub(crate) fn referrer_entry(
    referrer: &Descriptor,
    artifact_type: &str,
    subject: &Digest,
) -> Descriptor {
    let mut entry = plain(referrer);
    entry.artifact_type = Some(artifact_type.to_string());
    entry
        .annotations
        .insert(annotation::SUBJECT.to_string(), subject.to_string());
    entry
}

/// The entries that count: all but referrers whose image has no entry any more (and
/// referrers of those, and so on).
pub(crate) fn live_entries(entries: &[Descriptor]) -> Vec<Descriptor> {
    let mut live = entries.to_vec();
    loop {
        let present: BTreeSet<Digest> = live.iter().map(|d| d.digest).collect();
        let before = live.len();
        live.retain(|d| {
            entry_reference(d).is_some() || subject_of(d).is_none_or(|s| present.contains(&s))
        });
        if live.len() == before {
            return live;
        }
    }
}

/// Drops referrers whose image is gone; returns whether any was.
pub(crate) fn prune_orphans(index: &mut ImageIndex) -> bool {
    let live = live_entries(&index.manifests);
    let pruned = live.len() != index.manifests.len();
    index.manifests = live;
    pruned
}

/// A referrer to be stored for `subject`: its manifest names that subject and has that
/// artifact type.
fn check_referrer(
    referrer: &PackedImage,
    subject: &Digest,
    artifact_type: &str,
) -> Result<(), StoreError> {
    let refuse = |reason: String| StoreError::Referrer {
        digest: *referrer.digest(),
        subject: *subject,
        reason,
    };
    let manifest: Manifest = serde_json::from_slice(&referrer.manifest.bytes)
        .map_err(|e| refuse(format!("its manifest is not valid: {e}")))?;
    match &manifest.subject {
        Some(s) if s.digest == *subject => {}
        Some(s) => return Err(refuse(format!("its subject is {}", s.digest))),
        None => return Err(refuse("its manifest has no subject".to_string())),
    }
    if manifest.artifact_type.as_deref() != Some(artifact_type) {
        return Err(refuse(format!(
            "its artifactType is {:?}, not {artifact_type:?}",
            manifest.artifact_type.unwrap_or_default()
        )));
    }
    Ok(())
}

/// Points each of `refs` at `descriptor` (one entry per reference); with no refs, adds
/// an untagged entry unless one for that digest exists. Returns whether an entry that
/// named another manifest was replaced.
pub(crate) fn set_refs(
    index: &mut ImageIndex,
    descriptor: &Descriptor,
    refs: &[Reference],
) -> bool {
    let refs: BTreeSet<&Reference> = refs.iter().collect();
    let mut displaced = false;
    index.manifests.retain(|d| match entry_reference(d) {
        Some(name) if refs.contains(&name) => {
            displaced |= d.digest != descriptor.digest;
            false
        }
        _ => true,
    });
    if refs.is_empty() {
        if !index
            .manifests
            .iter()
            .any(|d| d.digest == descriptor.digest)
        {
            index.manifests.push(plain(descriptor));
        }
    } else {
        // A named entry makes an untagged one for the same image redundant.
        index.manifests.retain(|d| {
            d.digest != descriptor.digest || d.annotations.contains_key(annotation::REF_NAME)
        });
        for r in refs {
            let mut entry = plain(descriptor);
            entry
                .annotations
                .insert(annotation::REF_NAME.to_string(), r.to_string());
            index.manifests.push(entry);
        }
    }
    sort_entries(index);
    displaced
}

/// Named entries by reference, then untagged ones and referrers by digest.
pub(crate) fn sort_entries(index: &mut ImageIndex) {
    index.manifests.sort_by(|a, b| {
        let key = |d: &Descriptor| {
            (
                entry_reference(d).is_none(),
                entry_reference(d).map(|r| r.to_string()),
                d.digest,
            )
        };
        key(a).cmp(&key(b))
    });
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::image::Blob;
    use crate::precompiled::{PrecompiledInput, pack_precompiled};

    fn r(s: &str) -> Reference {
        s.parse().unwrap()
    }

    /// A small image; `which` makes different ones.
    fn image(which: &str) -> PackedImage {
        let config = Blob::new(
            media_type::OCI_CONFIG,
            format!(r#"{{"architecture":"wasm","os":"wasi","rootfs":{{"type":"layers","diff_ids":[]}},"which":"{which}"}}"#)
                .into_bytes(),
        );
        let layer = Blob::new(
            media_type::OCI_LAYER_GZIP,
            format!("layer {which}").into_bytes(),
        );
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_string()),
            artifact_type: None,
            config: config.descriptor(),
            layers: vec![layer.descriptor()],
            subject: None,
            annotations: BTreeMap::new(),
        };
        PackedImage {
            manifest: Blob::new(media_type::OCI_MANIFEST, crate::image::to_json(&manifest)),
            config,
            layers: vec![layer],
        }
    }

    fn cwasm_for(image: &PackedImage, target: &str) -> PackedImage {
        pack_precompiled(
            &image.manifest_descriptor(),
            &PrecompiledInput {
                module_name: "app",
                target,
                cwasm: format!("cwasm {target} {}", image.digest()).as_bytes(),
                wasmtime_version: "48.0.8",
                engine: "e",
            },
        )
        .unwrap()
    }

    fn blob_count(store: &Store) -> usize {
        fs::read_dir(store.blobs_dir()).unwrap().count()
    }

    fn targets(store: &Store, subject: &Digest) -> Vec<String> {
        store
            .referrers(subject)
            .unwrap()
            .into_iter()
            .map(|(_, m)| m.annotations[annotation::TARGET].clone())
            .collect()
    }

    #[test]
    fn referrers_are_stored_listed_and_replaced_by_the_next_build() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let app = image("app");
        let (x86, arm) = (cwasm_for(&app, "x86"), cwasm_for(&app, "arm"));
        store
            .put_with_referrers(
                &app,
                &[r("app:1")],
                media_type::PRECOMPILED,
                &[x86.clone(), arm.clone()],
            )
            .unwrap();
        let mut found = targets(&store, app.digest());
        found.sort();
        assert_eq!(found, ["arm", "x86"]);
        let (entry, _) = &store.referrers(app.digest()).unwrap()[0];
        assert_eq!(
            entry.artifact_type.as_deref(),
            Some(media_type::PRECOMPILED)
        );
        assert!(entry.annotations.is_empty(), "the entry comes back plain");
        // image: config, layer, manifest; each referrer: cwasm, manifest; one shared `{}`.
        assert_eq!(blob_count(&store), 3 + 2 * 2 + 1);
        // Not an image of its own: `images` does not list it.
        assert_eq!(store.list().unwrap().len(), 1);

        // Rebuilt with one target: the other referrer and its blobs go.
        store
            .put_with_referrers(&app, &[r("app:1")], media_type::PRECOMPILED, &[arm])
            .unwrap();
        assert_eq!(targets(&store, app.digest()), ["arm"]);
        assert_eq!(blob_count(&store), 3 + 2 + 1);
        assert!(!store.blob_path(x86.digest()).exists());
        // A plain put keeps them.
        store.put(&app, &[r("app:2")]).unwrap();
        assert_eq!(targets(&store, app.digest()), ["arm"]);
    }

    #[test]
    fn referrers_go_with_the_last_reference_of_their_image() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let app = image("app");
        let other = image("other");
        store
            .put_with_referrers(
                &app,
                &[r("app:1"), r("app:2")],
                media_type::PRECOMPILED,
                &[cwasm_for(&app, "x86")],
            )
            .unwrap();
        store
            .put_with_referrers(
                &other,
                &[r("other:1")],
                media_type::PRECOMPILED,
                &[cwasm_for(&other, "x86")],
            )
            .unwrap();
        store.remove(&r("app:1")).unwrap();
        assert_eq!(targets(&store, app.digest()), ["x86"]);
        store.remove(&r("app:2")).unwrap();
        assert!(store.referrers(app.digest()).unwrap().is_empty());
        assert_eq!(blob_count(&store), 3 + 2 + 1, "only `other` is left");
        let index = store.read_index().unwrap();
        assert_eq!(index.manifests.len(), 2);

        // Moving the last tag to another image drops the old image's referrers too.
        store.put(&app, &[r("other:1")]).unwrap();
        assert!(store.referrers(other.digest()).unwrap().is_empty());
        assert_eq!(blob_count(&store), 3);
    }

    #[test]
    fn a_referrer_must_name_the_image_it_is_stored_with() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let app = image("app");
        let stray = cwasm_for(&image("other"), "x86");
        let error = store
            .put_with_referrers(&app, &[r("app:1")], media_type::PRECOMPILED, &[stray])
            .unwrap_err();
        assert!(
            error.to_string().contains("its subject is sha256:"),
            "{error}"
        );
        let error = store
            .put_with_referrers(&app, &[r("app:1")], "other/type", &[cwasm_for(&app, "x")])
            .unwrap_err();
        assert!(error.to_string().contains("artifactType"), "{error}");
        assert_eq!(blob_count(&store), 0, "nothing was written");
    }

    /// A file named as `prefix` names one of `owner`'s, in `dir`.
    fn owned_file(dir: &Path, prefix: &str, owner: &str) -> PathBuf {
        let path = dir.join(format!("{prefix}{owner}-AbC123"));
        fs::write(&path, b"half a blob").unwrap();
        path
    }

    #[test]
    fn the_next_writer_removes_what_a_dead_process_left_but_not_a_running_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let me = Owner::current().expect("/proc tells who this process is");
        assert_eq!(Owner::from_name(&format!("{me}-x1Y2z3")).as_ref(), Some(me));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        let dead = Owner {
            pid: child.id(),
            ..me.clone()
        };
        assert_eq!(dead.running(), Running::No);
        assert_eq!(me.running(), Running::Yes);
        let elsewhere = format!("{}-{}-{}", "0".repeat(SCOPE_LEN), me.pid, me.start);

        let blobs = store.blobs_dir();
        let live_partial = store.partial_file().unwrap().into_temp_path();
        let live_temp = store.temp_file(store.root()).unwrap().into_temp_path();
        let dead_partial = owned_file(&blobs, PARTIAL_PREFIX, &dead.to_string());
        let dead_temps = [
            owned_file(&blobs, TEMP_PREFIX, &dead.to_string()),
            owned_file(store.root(), TEMP_PREFIX, &dead.to_string()),
        ];
        // Made under the lock by a process this one cannot see, which has let it go.
        let unknown_temp = owned_file(&blobs, TEMP_PREFIX, &elsewhere);
        // Downloaded by a process this one cannot see, which may still be pulling.
        let unknown_partial = owned_file(&blobs, PARTIAL_PREFIX, &elsewhere);
        let old_partial = owned_file(&blobs, PARTIAL_PREFIX, &elsewhere.replace('-', "_"));
        fs::File::options()
            .write(true)
            .open(&old_partial)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - 2 * STALE_PARTIAL)
            .unwrap();

        // Any write will do: here, a put.
        store.put(&image("app"), &[r("app:1")]).unwrap();
        let kept: [&Path; 3] = [&live_partial, &live_temp, &unknown_partial];
        for path in kept {
            assert!(path.exists(), "{} was taken", path.display());
        }
        let gone = [&dead_partial, &unknown_temp, &old_partial];
        for path in gone.into_iter().chain(&dead_temps) {
            assert!(!path.exists(), "{} was left", path.display());
        }
        let report = store.gc().unwrap();
        assert_eq!(report.blobs_removed, 0, "a temp file is not a blob");
        assert!(live_partial.exists() && unknown_partial.exists());
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn commit_fetched_moves_verified_blobs_in_and_names_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let app = image("app");
        let cwasm = cwasm_for(&app, "x86");
        let stage = |blob: &Blob| {
            let mut file = store.partial_file().unwrap();
            file.write_all(&blob.bytes).unwrap();
            FetchedBlob {
                digest: blob.digest,
                size: blob.bytes.len() as u64,
                file: file.into_temp_path(),
            }
        };
        let entry = referrer_entry(
            &cwasm.manifest_descriptor(),
            media_type::PRECOMPILED,
            app.digest(),
        );
        // A blob said to be present that is not: nothing changes.
        let before = fs::read(store.index_path()).unwrap();
        let missing = (Digest::of(b"gone"), 4);
        let error = store
            .commit_fetched(
                app.blobs().map(stage).collect(),
                &[missing],
                &app.manifest_descriptor(),
                &[r("app:1")],
                &[],
            )
            .unwrap_err();
        assert!(matches!(error, StoreError::MissingBlob { .. }), "{error}");
        assert_eq!(fs::read(store.index_path()).unwrap(), before);
        assert_eq!(blob_count(&store), 0);

        store
            .commit_fetched(
                app.blobs().chain(cwasm.blobs()).map(stage).collect(),
                &[],
                &app.manifest_descriptor(),
                &[r("app:1")],
                std::slice::from_ref(&entry),
            )
            .unwrap();
        assert_eq!(store.resolve(&r("app:1")).unwrap().digest, *app.digest());
        assert_eq!(targets(&store, app.digest()), ["x86"]);
        assert_eq!(blob_count(&store), 3 + 2 + 1);
        // The same as a put of the same image and referrer would have stored.
        let other = Store::open(&dir.path().join("other")).unwrap();
        other
            .put_with_referrers(&app, &[r("app:1")], media_type::PRECOMPILED, &[cwasm])
            .unwrap();
        assert_eq!(other.read_index().unwrap(), store.read_index().unwrap());
    }

    #[test]
    fn save_takes_the_referrers_and_load_keeps_them_with_their_image() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a")).unwrap();
        let app = image("app");
        store
            .put_with_referrers(
                &app,
                &[r("app:1")],
                media_type::PRECOMPILED,
                &[cwasm_for(&app, "x86"), cwasm_for(&app, "arm")],
            )
            .unwrap();
        let archive = dir.path().join("app.tar");
        store.save(&[r("app:1")], &archive).unwrap();
        let other = Store::open(&dir.path().join("b")).unwrap();
        assert_eq!(other.load(&archive).unwrap(), [r("app:1")]);
        let mut found = targets(&other, app.digest());
        found.sort();
        assert_eq!(found, ["arm", "x86"]);
        assert_eq!(other.read_index().unwrap(), store.read_index().unwrap());
        other.remove(&r("app:1")).unwrap();
        assert_eq!(blob_count(&other), 0);
    }
}
