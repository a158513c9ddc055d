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
pub(crate) const TEMP_PREFIX: &str = ".tmp-";
/// Downloads in progress (a pull fetches without holding the lock, so writers' clean-up
/// must leave these alone); one this old belongs to no running pull.
pub(crate) const PARTIAL_PREFIX: &str = ".partial-";
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
            let garbage = if name.starts_with(TEMP_PREFIX) {
                // Only writers make temp files, under the lock we hold: this one is stale.
                true
            } else if name.starts_with(PARTIAL_PREFIX) {
                entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_PARTIAL)
            } else {
                match Digest::parse(&format!("sha256:{name}")) {
                    Ok(digest) => !keep.contains_key(&digest),
                    Err(_) => false,
                }
            };
            if garbage {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(entry.path()).map_err(io_err("delete", &entry.path()))?;
                report.blobs_removed += usize::from(
                    !name.starts_with(TEMP_PREFIX) && !name.starts_with(PARTIAL_PREFIX),
                );
                report.bytes_freed += size;
            }
        }
        for entry in fs::read_dir(&self.root)
            .map_err(io_err("read folder", &self.root))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                fs::remove_file(entry.path()).map_err(io_err("delete", &entry.path()))?;
            }
        }
        Ok(report)
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

    /// A file in the blobs folder for a download in progress; see [`PARTIAL_PREFIX`].
    pub(crate) fn partial_file(&self) -> Result<tempfile::NamedTempFile, StoreError> {
        let dir = self.blobs_dir();
        tempfile::Builder::new()
            .prefix(PARTIAL_PREFIX)
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

    pub(crate) fn temp_file(&self, dir: &Path) -> Result<tempfile::NamedTempFile, StoreError> {
        tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(dir)
            .map_err(io_err("create a temp file in", dir))
    }
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

    #[test]
    fn gc_leaves_a_running_pull_its_partial_files_but_not_a_day_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let fresh = store.partial_file().unwrap().into_temp_path();
        let stale = store.partial_file().unwrap();
        let two_days = std::time::Duration::from_secs(48 * 3600);
        stale
            .as_file()
            .set_modified(std::time::SystemTime::now() - two_days)
            .unwrap();
        let stale = stale.into_temp_path();
        let report = store.gc().unwrap();
        assert!(fresh.exists());
        assert!(!stale.exists());
        assert_eq!(report.blobs_removed, 0, "a partial file is not a blob");
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
