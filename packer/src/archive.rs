//! OCI archives: an image layout in one tar file (`oci-layout`, `index.json`,
//! `blobs/sha256/…`), as `docker save` writes it and `docker load`, skopeo
//! (`oci-archive:FILE:REF`) and containerd read it.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use serde::Serialize;
use tar::EntryType;

use crate::digest::{Digest, HashingReader, HashingWriter};
use crate::image::{
    Descriptor, ImageIndex, MAX_CONFIG_SIZE, Manifest, annotation, media_type, to_json,
};
use crate::layer::{write_header, write_padding};
use crate::reference::Reference;
use crate::registry::MAX_MANIFEST_SIZE;
use crate::store::{
    INDEX_FILE, MAX_JSON_BLOB, OCI_LAYOUT_FILE, OciLayout, Store, StoreError, entry_reference,
    io_err, live_entries, plain, prune_orphans, referrer_entry, set_refs, sort_entries, subject_of,
    sync_dir,
};

/// `manifest.json`, Docker's own archive index, written beside `index.json` as
/// `docker save` does, so Docker engines without the containerd image store load it too.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerArchiveManifest {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

const IO_BUFFER: usize = 1 << 20;

impl Store {
    /// Writes the images `refs` name to the OCI archive `out` (a temp file beside it,
    /// renamed when complete). Each reference becomes an `index.json` entry annotated
    /// with its full name (`org.opencontainers.image.ref.name` and
    /// `io.containerd.image.name`); the images' referrers (precompiled artifacts) go with
    /// them as entries without a name, as in the store. Every blob is checked against its
    /// digest on the way.
    /// Saving takes no lock: if another process removes the image meanwhile, this fails
    /// with a missing blob and `out` is left as it was.
    pub fn save(&self, refs: &[Reference], out: &Path) -> Result<(), StoreError> {
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut temp = self.temp_file(&dir)?;
        let temp_path = temp.path().to_path_buf();
        let write_err = io_err("write", &temp_path);
        {
            let mut w = BufWriter::with_capacity(IO_BUFFER, temp.as_file_mut());
            self.write_archive(refs, &mut w, out)?;
            w.flush().map_err(io_err("write", &temp_path))?;
        }
        // Temp files are private (0600); an archive is as readable as any file `docker save` writes.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            temp.as_file()
                .set_permissions(fs::Permissions::from_mode(0o644))
                .map_err(io_err("write", &temp_path))?;
        }
        temp.as_file().sync_all().map_err(write_err)?;
        temp.persist(out)
            .map_err(|e| io_err("write", out)(e.error))?;
        sync_dir(&dir).map_err(io_err("sync", &dir))
    }

    /// Streams the OCI archive of `refs` to `out` (e.g. stdout for `save -o -`); the same
    /// bytes [`Store::save`] writes to a file. Write errors name the path `-`.
    pub fn save_to(&self, refs: &[Reference], out: &mut dyn Write) -> Result<(), StoreError> {
        let mut w = BufWriter::with_capacity(IO_BUFFER, out);
        self.write_archive(refs, &mut w, Path::new("-"))?;
        w.flush().map_err(io_err("write", Path::new("-")))
    }

    fn write_archive(
        &self,
        refs: &[Reference],
        w: &mut impl Write,
        out: &Path,
    ) -> Result<(), StoreError> {
        if refs.is_empty() {
            return Err(StoreError::Archive {
                archive: out.to_path_buf(),
                reason: "no images to save".into(),
            });
        }
        let index = self.read_index()?;
        let mut entries = Vec::new();
        for r in refs {
            let found = self.find(&index, r)?.ok_or_else(|| StoreError::NotFound {
                reference: r.to_string(),
                store: self.root().to_path_buf(),
            })?;
            let mut entry = plain(&found);
            let name = r.to_string();
            entry
                .annotations
                .insert(annotation::REF_NAME.to_string(), name.clone());
            entry
                .annotations
                .insert(annotation::CONTAINERD_IMAGE_NAME.to_string(), name);
            entries.push(entry);
        }
        let docker = self.docker_manifests(&entries, refs)?;
        entries.extend(referrers_of(&index.manifests, &entries));
        let blobs = self.reachable(&entries)?;
        let werr = |e| io_err("write", out)(e);
        put_file(w, OCI_LAYOUT_FILE, &to_json(&OciLayout::current())).map_err(werr)?;
        put_file(w, INDEX_FILE, &to_json(&ImageIndex::new(entries))).map_err(werr)?;
        put_file(w, "manifest.json", &to_json(&docker)).map_err(werr)?;
        for dir in ["blobs/", "blobs/sha256/"] {
            write_header(w, dir, EntryType::Directory, 0o755, 0, 0, None).map_err(werr)?;
        }
        for (digest, size) in &blobs {
            self.put_blob(w, digest, *size, out)?;
        }
        w.write_all(&[0; 1024]).map_err(werr)
    }

    fn put_blob(
        &self,
        w: &mut impl Write,
        digest: &Digest,
        size: u64,
        out: &Path,
    ) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        let file = fs::File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => StoreError::MissingBlob {
                digest: *digest,
                path: path.clone(),
            },
            _ => io_err("read", &path)(source),
        })?;
        let actual_size = file.metadata().map_err(io_err("read", &path))?.len();
        if actual_size != size {
            return Err(StoreError::SizeMismatch {
                digest: *digest,
                expected: size,
                actual: actual_size,
                path,
            });
        }
        let name = format!("blobs/sha256/{}", digest.hex());
        write_header(w, &name, EntryType::Regular, 0o644, size, 0, None)
            .map_err(io_err("write", out))?;
        let mut reader = HashingReader::new(file.take(size));
        let copied = copy(&mut reader, w).map_err(|e| match e {
            CopyError::Read(e) => io_err("read", &path)(e),
            CopyError::Write(e) => io_err("write", out)(e),
        })?;
        let actual = reader.hasher.finish();
        if copied != size || actual != *digest {
            return Err(StoreError::Corrupt {
                digest: *digest,
                actual,
                path,
            });
        }
        write_padding(w, size).map_err(io_err("write", out))
    }

    fn docker_manifests(
        &self,
        entries: &[Descriptor],
        refs: &[Reference],
    ) -> Result<Vec<DockerArchiveManifest>, StoreError> {
        let mut by_digest: BTreeMap<Digest, (Manifest, Vec<String>)> = BTreeMap::new();
        for (entry, r) in entries.iter().zip(refs) {
            if !media_type::is_manifest(&entry.media_type) {
                continue;
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = by_digest.entry(entry.digest)
            {
                slot.insert((self.manifest(entry)?, Vec::new()));
            }
            if r.digest.is_none()
                && let Some((_, tags)) = by_digest.get_mut(&entry.digest)
            {
                tags.push(r.familiar());
            }
        }
        let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
        Ok(by_digest
            .into_values()
            .map(|(m, repo_tags)| DockerArchiveManifest {
                config: blob(&m.config.digest),
                repo_tags,
                layers: m.layers.iter().map(|l| blob(&l.digest)).collect(),
            })
            .collect())
    }

    /// Imports an OCI archive (plain or gzip'd tar). Every blob is checked against its
    /// name's digest and every descriptor's size before anything becomes visible; entry
    /// names must be relative without `..`. References come from each index entry's
    /// `io.containerd.image.name` or `org.opencontainers.image.ref.name`; an entry
    /// without one is kept untagged, unless it is a referrer (annotated with its subject,
    /// which its manifest names too), which is kept with its image. Returns the references
    /// loaded.
    pub fn load(&self, archive: &Path) -> Result<Vec<Reference>, StoreError> {
        let file = fs::File::open(archive).map_err(io_err("open", archive))?;
        let mut reader = BufReader::with_capacity(IO_BUFFER, file);
        let head = reader.fill_buf().map_err(io_err("read", archive))?;
        let input: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
            Box::new(GzDecoder::new(reader))
        } else {
            Box::new(reader)
        };
        let bad = |reason: String| StoreError::Archive {
            archive: archive.to_path_buf(),
            reason,
        };
        let read_err = |e: io::Error| bad(format!("cannot read the archive: {e}"));

        let _lock = self.lock()?;
        let mut staged: BTreeMap<Digest, Staged> = BTreeMap::new();
        let mut index_json = None;
        let mut layout_json = None;
        let mut tar = tar::Archive::new(input);
        for entry in tar.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            let kind = entry.header().entry_type();
            if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
                continue;
            }
            let raw = entry.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&raw).into_owned();
            let refuse = |reason: &str| StoreError::UnsafeArchiveEntry {
                archive: archive.to_path_buf(),
                entry: name.clone(),
                reason: reason.to_string(),
            };
            let comps = safe_components(&raw).map_err(&refuse)?;
            let known = matches!(
                comps.first().map(String::as_str),
                Some("blobs" | OCI_LAYOUT_FILE | INDEX_FILE)
            );
            match kind {
                EntryType::Directory => continue,
                EntryType::Regular | EntryType::Continuous => {}
                EntryType::Char | EntryType::Block | EntryType::Fifo => {
                    return Err(refuse(
                        "device files and fifos do not belong in an image archive",
                    ));
                }
                // `docker save` also writes its older layout, with symlinks into blobs/.
                _ if !known => continue,
                _ => return Err(refuse("it must be a regular file")),
            }
            let parts: Vec<&str> = comps.iter().map(String::as_str).collect();
            match parts.as_slice() {
                [OCI_LAYOUT_FILE] => {
                    layout_json = Some(read_limited(&mut entry, 1 << 20).map_err(read_err)?)
                }
                [INDEX_FILE] => {
                    index_json = Some(read_limited(&mut entry, MAX_JSON_BLOB).map_err(read_err)?)
                }
                ["blobs", "sha256", hex] => {
                    let digest = Digest::parse(&format!("sha256:{hex}"))
                        .map_err(|_| refuse("a blob's name must be its 64-digit sha256"))?;
                    if staged.contains_key(&digest) {
                        continue;
                    }
                    let blob = self.stage_blob(&mut entry, &digest, archive, &name)?;
                    staged.insert(digest, blob);
                }
                ["blobs", algorithm, _, ..] if *algorithm != "sha256" => {
                    return Err(refuse("only sha256 blobs are supported"));
                }
                _ => continue,
            }
        }
        if let Some(bytes) = layout_json {
            let layout: OciLayout = serde_json::from_slice(&bytes)
                .map_err(|e| bad(format!("oci-layout is not valid: {e}")))?;
            if !layout.image_layout_version.starts_with("1.") {
                return Err(bad(format!(
                    "unsupported imageLayoutVersion {:?}",
                    layout.image_layout_version
                )));
            }
        }
        let index_json = index_json.ok_or_else(|| {
            bad("it has no index.json, so it is not an OCI archive (Docker 25 and later save OCI archives)".into())
        })?;
        let index: ImageIndex = serde_json::from_slice(&index_json)
            .map_err(|e| bad(format!("index.json is not valid: {e}")))?;

        // Check the whole graph before anything becomes visible.
        let mut reached = BTreeMap::new();
        let mut subjects: BTreeMap<Digest, Digest> = BTreeMap::new();
        let mut stack: Vec<Descriptor> = index.manifests.clone();
        while let Some(d) = stack.pop() {
            if reached.insert(d.digest, ()).is_some() {
                continue;
            }
            let (size, path) = match staged.get(&d.digest) {
                Some(s) => (s.size, s.path().map(Path::to_path_buf)),
                None => {
                    let path = self.blob_path(&d.digest);
                    match fs::metadata(&path) {
                        Ok(meta) => (meta.len(), Some(path)),
                        Err(_) => {
                            return Err(bad(format!(
                                "blob {} ({}) is not in the archive",
                                d.digest, d.media_type
                            )));
                        }
                    }
                }
            };
            if size != d.size {
                return Err(bad(format!(
                    "blob {} has {size} bytes, but its descriptor says {}",
                    d.digest, d.size
                )));
            }
            let nested =
                media_type::is_manifest(&d.media_type) || media_type::is_index(&d.media_type);
            if !nested {
                continue;
            }
            // The limit a registry's pull has too: what no registry would serve.
            if size > MAX_MANIFEST_SIZE {
                return Err(bad(format!(
                    "manifest {} is {size} bytes, more than the {MAX_MANIFEST_SIZE} bytes a \
                     manifest may have",
                    d.digest
                )));
            }
            let path = path.unwrap_or_else(|| self.blob_path(&d.digest));
            let bytes = fs::read(&path).map_err(io_err("read", &path))?;
            if media_type::is_manifest(&d.media_type) {
                let m: Manifest = serde_json::from_slice(&bytes)
                    .map_err(|e| bad(format!("manifest {} is not valid: {e}", d.digest)))?;
                // Refused here, not when `run` reads it whole.
                if m.config.size > MAX_CONFIG_SIZE {
                    return Err(bad(format!(
                        "manifest {} names a config of {} bytes ({}), more than the \
                         {MAX_CONFIG_SIZE} bytes an image config may have",
                        d.digest, m.config.size, m.config.digest
                    )));
                }
                if let Some(subject) = &m.subject {
                    subjects.insert(d.digest, subject.digest);
                }
                stack.push(m.config);
                stack.extend(m.layers);
            } else {
                let i: ImageIndex = serde_json::from_slice(&bytes)
                    .map_err(|e| bad(format!("image index {} is not valid: {e}", d.digest)))?;
                stack.extend(i.manifests);
            }
        }

        // Everything checks out: move the reached blobs in, then name them.
        for (digest, blob) in staged {
            if let (Some(temp), true) = (blob.temp, reached.contains_key(&digest)) {
                let path = self.blob_path(&digest);
                temp.persist(&path)
                    .map_err(|e| io_err("write", &path)(e.error))?;
            }
        }
        sync_dir(&self.blobs_dir()).map_err(io_err("sync", &self.blobs_dir()))?;
        let mut store_index = self.read_index()?;
        let mut loaded = Vec::new();
        let mut displaced = false;
        for entry in &index.manifests {
            if let Some(subject) = subject_of(entry).filter(|s| {
                entry_reference(entry).is_none() && subjects.get(&entry.digest) == Some(s)
            }) {
                let artifact_type = entry.artifact_type.clone().unwrap_or_default();
                let referrer = referrer_entry(entry, &artifact_type, &subject);
                if !store_index.manifests.contains(&referrer) {
                    store_index.manifests.push(referrer);
                }
                continue;
            }
            let name = entry
                .annotations
                .get(annotation::CONTAINERD_IMAGE_NAME)
                .or_else(|| entry.annotations.get(annotation::REF_NAME))
                .and_then(|n| n.parse::<Reference>().ok())
                .filter(|r| r.digest.is_none());
            let refs: Vec<Reference> = name.into_iter().collect();
            displaced |= set_refs(&mut store_index, &plain(entry), &refs);
            loaded.extend(refs);
        }
        displaced |= prune_orphans(&mut store_index);
        sort_entries(&mut store_index);
        self.write_index(&store_index)?;
        if displaced {
            let _ = self.gc_locked(&store_index);
        }
        Ok(loaded)
    }

    /// Copies one archive blob to a temp file in the store (or only hashes it, when the
    /// store has it already) and checks it against its name.
    fn stage_blob(
        &self,
        entry: &mut impl Read,
        digest: &Digest,
        archive: &Path,
        name: &str,
    ) -> Result<Staged, StoreError> {
        let existing = self.blob_path(digest);
        let corrupt = |actual: Digest| StoreError::Archive {
            archive: archive.to_path_buf(),
            reason: format!("entry {name:?} is corrupt: its content hashes to {actual}"),
        };
        let read_err = |e: io::Error| StoreError::Archive {
            archive: archive.to_path_buf(),
            reason: format!("cannot read entry {name:?}: {e}"),
        };
        if existing.exists() {
            let mut sink = HashingWriter::new(io::sink());
            io::copy(entry, &mut sink).map_err(read_err)?;
            let size = sink.hasher.len();
            let actual = sink.hasher.finish();
            if actual != *digest {
                return Err(corrupt(actual));
            }
            return Ok(Staged { size, temp: None });
        }
        let mut temp = self.temp_file(&self.blobs_dir())?;
        let temp_path = temp.path().to_path_buf();
        let (size, actual) = {
            let mut w = HashingWriter::new(BufWriter::with_capacity(IO_BUFFER, temp.as_file_mut()));
            copy(entry, &mut w).map_err(|e| match e {
                CopyError::Read(e) => read_err(e),
                CopyError::Write(e) => io_err("write", &temp_path)(e),
            })?;
            w.inner.flush().map_err(io_err("write", &temp_path))?;
            (w.hasher.len(), w.hasher.finish())
        };
        if actual != *digest {
            return Err(corrupt(actual));
        }
        temp.as_file()
            .sync_all()
            .map_err(io_err("sync", &temp_path))?;
        Ok(Staged {
            size,
            temp: Some(temp.into_temp_path()),
        })
    }
}

/// The referrer entries among `index` of the images `entries` name, and theirs in turn.
fn referrers_of(index: &[Descriptor], entries: &[Descriptor]) -> Vec<Descriptor> {
    let live = live_entries(index);
    let mut subjects: Vec<Digest> = entries.iter().map(|e| e.digest).collect();
    let mut found: Vec<Descriptor> = Vec::new();
    while let Some(subject) = subjects.pop() {
        for entry in &live {
            if entry_reference(entry).is_none()
                && subject_of(entry) == Some(subject)
                && !found.contains(entry)
            {
                found.push(entry.clone());
                subjects.push(entry.digest);
            }
        }
    }
    found.sort_by_key(|d| d.digest);
    found
}

/// A verified archive blob: in a temp file, or already in the store (`temp` is None).
struct Staged {
    size: u64,
    temp: Option<tempfile::TempPath>,
}

impl Staged {
    fn path(&self) -> Option<&Path> {
        self.temp.as_deref()
    }
}

fn put_file(w: &mut impl Write, name: &str, bytes: &[u8]) -> io::Result<()> {
    write_header(
        w,
        name,
        EntryType::Regular,
        0o644,
        bytes.len() as u64,
        0,
        None,
    )?;
    w.write_all(bytes)?;
    write_padding(w, bytes.len() as u64)
}

fn read_limited(r: &mut impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    r.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

fn safe_components(raw: &[u8]) -> Result<Vec<String>, &'static str> {
    let text = std::str::from_utf8(raw).map_err(|_| "the name is not UTF-8")?;
    if text.starts_with('/') {
        return Err("absolute names are refused");
    }
    if text.contains('\0') || text.contains('\\') {
        return Err("the name contains a NUL byte or a backslash");
    }
    let mut comps = Vec::new();
    for comp in text.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err("names with `..` are refused"),
            _ => comps.push(comp.to_string()),
        }
    }
    Ok(comps)
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Like `io::copy`, but says which side failed.
fn copy(r: &mut impl Read, w: &mut impl Write) -> Result<u64, CopyError> {
    let mut buf = vec![0; 256 * 1024];
    let mut total = 0;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}
