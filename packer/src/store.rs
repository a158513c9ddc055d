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
        for r in refs {
            if r.digest.is_some() {
                return Err(StoreError::DigestReference {
                    reference: r.to_string(),
                });
            }
        }
        for blob in image.blobs() {
            let actual = Digest::of(&blob.bytes);
            if actual != blob.digest {
                return Err(StoreError::BlobMismatch {
                    digest: blob.digest,
                    actual,
                });
            }
        }
        let _lock = self.lock()?;
        for blob in image.blobs() {
            self.write_blob(&blob.digest, &blob.bytes)?;
        }
        sync_dir(&self.blobs_dir()).map_err(io_err("sync", &self.blobs_dir()))?;
        let descriptor = image.manifest_descriptor();
        let mut index = self.read_index()?;
        let displaced = set_refs(&mut index, &descriptor, refs);
        self.write_index(&index)?;
        if displaced {
            let _ = self.gc_locked(&index);
        }
        Ok(descriptor)
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
        let displaced = set_refs(&mut index, &descriptor, std::slice::from_ref(dst));
        self.write_index(&index)?;
        if displaced {
            let _ = self.gc_locked(&index);
        }
        Ok(descriptor)
    }

    /// Removes `r` (for a digest reference: every entry of that image in its
    /// repository, and untagged ones), then deletes blobs no remaining entry uses.
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
        self.write_index(&index)?;
        let _ = self.gc_locked(&index);
        Ok(first.clone())
    }

    /// Deletes every blob no `index.json` entry reaches, and stale temp files.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let _lock = self.lock()?;
        let index = self.read_index()?;
        self.gc_locked(&index)
    }

    pub(crate) fn gc_locked(&self, index: &ImageIndex) -> Result<GcReport, StoreError> {
        let keep = self.reachable(&index.manifests)?;
        let mut report = GcReport::default();
        let dir = self.blobs_dir();
        for entry in fs::read_dir(&dir).map_err(io_err("read folder", &dir))? {
            let entry = entry.map_err(io_err("read folder", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let garbage = if name.starts_with(TEMP_PREFIX) {
                // Only writers make temp files, under the lock we hold: this one is stale.
                true
            } else {
                match Digest::parse(&format!("sha256:{name}")) {
                    Ok(digest) => !keep.contains_key(&digest),
                    Err(_) => false,
                }
            };
            if garbage {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(entry.path()).map_err(io_err("delete", &entry.path()))?;
                report.blobs_removed += usize::from(!name.starts_with(TEMP_PREFIX));
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

    /// Writes a blob unless a file of that name and size is already there.
    pub(crate) fn write_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        if fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
            return Ok(());
        }
        self.write_atomic(&self.blobs_dir(), &path, bytes)
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
    displaced
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
