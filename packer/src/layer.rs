//! Reproducible `tar+gzip` layers, and reading them back safely.
//!
//! A layer is written the same way every time: entries sorted by path, parents before
//! children, uid/gid 0, no user or group names, fixed modes, one mtime for everything,
//! ustar headers (a PAX record only for a path that does not fit), and gzip without a
//! file name or time at level 6.
//!
//! Reading a layer is bounded whatever its headers declare: at most [`MAX_LAYER_ENTRIES`]
//! entries, [`MAX_ENTRY_SIZE`] bytes in one entry, [`MAX_LAYER_SIZE`] bytes in all of them
//! and [`MAX_ENTRY_HEADERS`] bytes of headers for one entry; a layer over a limit is
//! refused at the entry that crosses it, before that entry's data is read.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use flate2::read::GzDecoder;
use flate2::{Compression, GzBuilder};
use tar::{EntryType, Header};
use wasmbuild_spec::CopyRule;

use crate::digest::{Digest, HashingWriter};
use crate::error::PackError;

/// gzip level for layers; pinned, since it is part of every layer digest.
pub const GZIP_LEVEL: u32 = 6;
/// The gzip header's OS byte: 255, "unknown", as Go's compress/gzip writes it.
const GZIP_OS_UNKNOWN: u8 = 255;
/// The largest mtime a ustar header holds in its 11 octal digits.
pub const MAX_MTIME: u64 = 0o77777777777;
const BLOCK: u64 = 512;
const COPY_BUFFER: usize = 256 * 1024;
/// Longest symlink chain `find_file` follows.
const MAX_LINK_HOPS: usize = 16;
/// The most entries read from one layer: each costs a file or a system call, and a few
/// bytes of gzip hold thousands of them.
pub const MAX_LAYER_ENTRIES: u64 = 100_000;
/// The most bytes one layer entry may hold (a sparse file counts with its holes).
pub const MAX_ENTRY_SIZE: u64 = 4 << 30;
/// The most bytes the entries of one layer may hold together, unpacked.
pub const MAX_LAYER_SIZE: u64 = 16 << 30;
/// The most bytes of headers one entry may have (PAX records, GNU long names): the tar
/// reader holds them in memory.
pub const MAX_ENTRY_HEADERS: u64 = 1 << 20;

/// A finished layer: the gzip'd tar and its two digests.
#[derive(Clone, PartialEq, Eq)]
pub struct Layer {
    /// The compressed bytes (what registries store).
    pub gz: Vec<u8>,
    /// Digest of `gz`.
    pub digest: Digest,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("size", &self.gz.len())
            .field("digest", &self.digest)
            .field("diff_id", &self.diff_id)
            .finish()
    }
}

/// Collects what goes into a layer, then writes it in one streaming pass.
pub struct LayerBuilder<'a> {
    entries: BTreeMap<TarPath, Node<'a>>,
    /// Paths no later entry may replace, with what sits there ("the module").
    protected: BTreeMap<TarPath, String>,
    mtime: u64,
}

enum Node<'a> {
    Dir,
    File {
        source: Source<'a>,
        mode: u32,
        size: u64,
    },
    Symlink {
        target: String,
    },
}

enum Source<'a> {
    Bytes(&'a [u8]),
    /// Read when the layer is written; `size` is checked again then.
    Host(PathBuf),
}

/// A path inside the layer, `a/b/c`: never empty, no leading or trailing `/`. Sorted
/// component by component, so a folder comes right before its contents.
#[derive(Clone, PartialEq, Eq, Debug)]
struct TarPath(String);

impl Ord for TarPath {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.split('/').cmp(other.0.split('/'))
    }
}

impl PartialOrd for TarPath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<'a> LayerBuilder<'a> {
    /// Every entry gets `mtime` (`SOURCE_DATE_EPOCH`, else 0); at most [`MAX_MTIME`].
    pub fn new(mtime: u64) -> LayerBuilder<'a> {
        LayerBuilder {
            entries: BTreeMap::new(),
            protected: BTreeMap::new(),
            mtime: mtime.min(MAX_MTIME),
        }
    }

    /// Adds `bytes` at the absolute image path `path`; nothing added later may replace it.
    pub fn add_file(&mut self, path: &str, bytes: &'a [u8], mode: u32) -> Result<(), PackError> {
        let comps = image_path(path)?;
        if comps.is_empty() {
            return Err(PackError::ImagePath {
                path: path.to_string(),
                reason: "a file cannot be the root folder".into(),
            });
        }
        let what = format!("the file {path}");
        self.insert(
            &comps,
            Node::File {
                source: Source::Bytes(bytes),
                mode: mode & 0o777,
                size: bytes.len() as u64,
            },
            &what,
        )?;
        self.protected.insert(TarPath(comps.join("/")), what);
        Ok(())
    }

    /// Adds the folder `path` (and its parents), as Docker's `WORKDIR` does: runtimes that
    /// enter the working folder before running anything (runc, youki) need it to exist.
    pub fn add_dir(&mut self, path: &str) -> Result<(), PackError> {
        let comps = image_path(path)?;
        self.insert(&comps, Node::Dir, &format!("the working folder {path}"))
    }

    /// Adds a `[[copy]]`: a file to `to` (into it, if `to` ends with `/`), or a folder's
    /// whole tree under `to`. Symlinks inside a copied folder stay symlinks when they
    /// point inside it; any other symlink, or a device, socket or fifo, is an error.
    pub fn add_copy(&mut self, rule: &CopyRule) -> Result<(), PackError> {
        let from = &rule.from;
        // Follows a symlink given as `from` itself, as `COPY` does.
        let meta = fs::metadata(from).map_err(|source| PackError::Io {
            action: "read [[copy]] source",
            path: from.clone(),
            source,
        })?;
        let mut to: Vec<String> = image_path(&rule.to)?
            .into_iter()
            .map(String::from)
            .collect();
        let origin = format!("[[copy]] from {}", from.display());
        if meta.is_file() {
            if rule.to.ends_with('/') || to.is_empty() {
                to.push(file_name(from)?);
            }
            let to: Vec<&str> = to.iter().map(String::as_str).collect();
            self.insert(
                &to,
                Node::File {
                    source: Source::Host(from.clone()),
                    mode: host_mode(&meta),
                    size: meta.len(),
                },
                &origin,
            )
        } else if meta.is_dir() {
            if !to.is_empty() {
                let to: Vec<&str> = to.iter().map(String::as_str).collect();
                self.insert(&to, Node::Dir, &origin)?;
            }
            self.add_tree(from, from, &mut to, 0, &origin)
        } else {
            Err(PackError::Copy {
                from: from.clone(),
                reason: "it is not a file or a folder".into(),
            })
        }
    }

    fn add_tree(
        &mut self,
        root: &Path,
        dir: &Path,
        at: &mut Vec<String>,
        depth: usize,
        origin: &str,
    ) -> Result<(), PackError> {
        let io_err = |path: &Path, action| {
            let path = path.to_path_buf();
            move |source| PackError::Io {
                action,
                path,
                source,
            }
        };
        let read = fs::read_dir(dir).map_err(io_err(dir, "read folder"))?;
        let mut children = Vec::new();
        for child in read {
            let child = child.map_err(io_err(dir, "read folder"))?;
            children.push(child.path());
        }
        children.sort();
        for path in children {
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path, "read"))?;
            at.push(file_name(&path)?);
            let comps: Vec<&str> = at.iter().map(String::as_str).collect();
            let kind = meta.file_type();
            if kind.is_dir() {
                self.insert(&comps, Node::Dir, origin)?;
                self.add_tree(root, &path, at, depth + 1, origin)?;
            } else if kind.is_file() {
                let node = Node::File {
                    source: Source::Host(path.clone()),
                    mode: host_mode(&meta),
                    size: meta.len(),
                };
                self.insert(&comps, node, origin)?;
            } else if kind.is_symlink() {
                let target = fs::read_link(&path).map_err(io_err(&path, "read symlink"))?;
                let target = target.to_str().ok_or_else(|| PackError::Copy {
                    from: path.clone(),
                    reason: "the symlink's target is not UTF-8".into(),
                })?;
                check_link_target(target, depth).map_err(|why| PackError::Copy {
                    from: path.clone(),
                    reason: format!(
                        "symlink to {target:?} is refused: {why} (only links that stay inside {} are kept)",
                        root.display()
                    ),
                })?;
                self.insert(
                    &comps,
                    Node::Symlink {
                        target: target.to_string(),
                    },
                    origin,
                )?;
            } else {
                return Err(PackError::Copy {
                    from: path,
                    reason: "it is a device, socket or fifo; only files, folders and symlinks can be copied".into(),
                });
            }
            at.pop();
        }
        Ok(())
    }

    fn insert(&mut self, comps: &[&str], node: Node<'a>, origin: &str) -> Result<(), PackError> {
        let conflict = |path: &str, reason: String| PackError::Conflict {
            path: format!("/{path}"),
            reason,
        };
        for i in 1..comps.len() {
            let parent = TarPath(comps[..i].join("/"));
            match self.entries.get(&parent) {
                None => {
                    self.entries.insert(parent, Node::Dir);
                }
                Some(Node::Dir) => {}
                Some(_) => {
                    return Err(conflict(
                        &parent.0,
                        format!("it is a file, but {origin} needs a folder there"),
                    ));
                }
            }
        }
        let Some(_) = comps.last() else {
            return match node {
                Node::Dir => Ok(()),
                _ => Err(conflict(
                    "",
                    format!("{origin} cannot replace the root folder"),
                )),
            };
        };
        let key = TarPath(comps.join("/"));
        if let Some(owner) = self.protected.get(&key) {
            return Err(conflict(&key.0, format!("{origin} would replace {owner}")));
        }
        match (self.entries.get(&key), &node) {
            (Some(Node::Dir), Node::Dir) => return Ok(()),
            (Some(Node::Dir), _) => {
                return Err(conflict(
                    &key.0,
                    format!("it is a folder; {origin} cannot replace it with a file"),
                ));
            }
            (Some(_), Node::Dir) => {
                return Err(conflict(
                    &key.0,
                    format!("it is a file; {origin} needs a folder there"),
                ));
            }
            // A later copy replaces an earlier file, as in a Dockerfile.
            _ => {}
        }
        self.entries.insert(key, node);
        Ok(())
    }

    /// Writes the tar, gzip'd, hashing both streams as they are produced.
    pub fn finish(self) -> Result<Layer, PackError> {
        let data: u64 = self
            .entries
            .values()
            .map(|n| match n {
                Node::File { size, .. } => size.div_ceil(BLOCK) * BLOCK,
                _ => 0,
            })
            .sum();
        // Pages of the reservation that are never written are never touched, so reserving
        // the uncompressed size costs no memory beyond the output, and never reallocates.
        let capacity = data + (self.entries.len() as u64 + 4) * 2 * BLOCK;
        let out = HashingWriter::new(Vec::with_capacity(capacity as usize));
        let gz = GzBuilder::new()
            .mtime(0)
            .operating_system(GZIP_OS_UNKNOWN)
            .write(out, Compression::new(GZIP_LEVEL));
        let mut tar = HashingWriter::new(gz);
        let layer_io = |source| PackError::Layer { source };
        let mut buffer = Vec::new();
        for (path, node) in &self.entries {
            match node {
                Node::Dir => {
                    write_header(
                        &mut tar,
                        &format!("{}/", path.0),
                        EntryType::Directory,
                        0o755,
                        0,
                        self.mtime,
                        None,
                    )
                    .map_err(layer_io)?;
                }
                Node::Symlink { target } => {
                    write_header(
                        &mut tar,
                        &path.0,
                        EntryType::Symlink,
                        0o777,
                        0,
                        self.mtime,
                        Some(target),
                    )
                    .map_err(layer_io)?;
                }
                Node::File { source, mode, size } => {
                    write_header(
                        &mut tar,
                        &path.0,
                        EntryType::Regular,
                        *mode,
                        *size,
                        self.mtime,
                        None,
                    )
                    .map_err(layer_io)?;
                    match source {
                        Source::Bytes(bytes) => tar.write_all(bytes).map_err(layer_io)?,
                        Source::Host(host) => copy_host_file(host, *size, &mut tar, &mut buffer)?,
                    }
                    write_padding(&mut tar, *size).map_err(layer_io)?;
                }
            }
        }
        tar.write_all(&[0; 2 * BLOCK as usize]).map_err(layer_io)?;
        let HashingWriter { inner: gz, hasher } = tar;
        let diff_id = hasher.finish();
        let out = gz.finish().map_err(layer_io)?;
        let digest = out.hasher.finish();
        let mut gz = out.inner;
        gz.shrink_to_fit();
        Ok(Layer {
            gz,
            digest,
            diff_id,
        })
    }
}

fn copy_host_file(
    path: &Path,
    size: u64,
    out: &mut impl Write,
    buffer: &mut Vec<u8>,
) -> Result<(), PackError> {
    let read_err = |source| PackError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::File::open(path).map_err(read_err)?;
    if buffer.is_empty() {
        buffer.resize(COPY_BUFFER, 0);
    }
    let mut remaining = size;
    while remaining > 0 {
        let want = buffer
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let n = match file.read(&mut buffer[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        out.write_all(&buffer[..n])
            .map_err(|source| PackError::Layer { source })?;
        remaining -= n as u64;
    }
    let grew = file.read(&mut buffer[..1]).map_err(read_err)? > 0;
    if remaining > 0 || grew {
        return Err(PackError::Copy {
            from: path.to_path_buf(),
            reason: "the file changed while it was being packed".into(),
        });
    }
    Ok(())
}

/// Writes one ustar header; a PAX record carries a path or link that does not fit.
pub(crate) fn write_header(
    out: &mut impl Write,
    path: &str,
    kind: EntryType,
    mode: u32,
    size: u64,
    mtime: u64,
    link: Option<&str>,
) -> io::Result<()> {
    let mut pax = Vec::new();
    let mut header = Header::new_ustar();
    if path.len() > 255 || header.set_path(path).is_err() {
        pax_record(&mut pax, "path", path);
        set_raw(&mut header.as_old_mut().name, path);
    }
    if let Some(link) = link
        && header.set_link_name(link).is_err()
    {
        pax_record(&mut pax, "linkpath", link);
        set_raw(&mut header.as_old_mut().linkname, link);
    }
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_device_major(0)?;
    header.set_device_minor(0)?;
    if !pax.is_empty() {
        let base = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let mut pax_header = Header::new_ustar();
        set_raw(
            &mut pax_header.as_old_mut().name,
            &format!("PaxHeaders.0/{base}"),
        );
        pax_header.set_entry_type(EntryType::XHeader);
        pax_header.set_mode(0o644);
        pax_header.set_uid(0);
        pax_header.set_gid(0);
        pax_header.set_size(pax.len() as u64);
        pax_header.set_mtime(mtime);
        pax_header.set_device_major(0)?;
        pax_header.set_device_minor(0)?;
        pax_header.set_cksum();
        out.write_all(pax_header.as_bytes())?;
        out.write_all(&pax)?;
        write_padding(out, pax.len() as u64)?;
    }
    header.set_cksum();
    out.write_all(header.as_bytes())
}

pub(crate) fn write_padding(out: &mut impl Write, size: u64) -> io::Result<()> {
    let pad = (BLOCK - size % BLOCK) % BLOCK;
    out.write_all(&[0; BLOCK as usize][..pad as usize])
}

/// Copies as much of `s` as fits, cut at a character boundary.
fn set_raw(field: &mut [u8], s: &str) {
    let mut end = s.len().min(field.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    field.fill(0);
    field[..end].copy_from_slice(&s.as_bytes()[..end]);
}

/// `"<len> key=value\n"`, where `len` counts the whole record, itself included.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &str) {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    loop {
        let next = body + len.to_string().len();
        if next == len {
            break;
        }
        len = next;
    }
    out.extend_from_slice(format!("{len} {key}={value}\n").as_bytes());
}

fn host_mode(meta: &fs::Metadata) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o111 != 0 {
            return 0o755;
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    0o644
}

fn file_name(path: &Path) -> Result<String, PackError> {
    let name = path.file_name().ok_or_else(|| PackError::Copy {
        from: path.to_path_buf(),
        reason: "the path has no file name".into(),
    })?;
    name.to_str()
        .map(String::from)
        .ok_or_else(|| PackError::Copy {
            from: path.to_path_buf(),
            reason: "the file name is not UTF-8".into(),
        })
}

/// Splits an absolute image path into its components; `.` and empty parts drop out,
/// `..` is an error.
pub(crate) fn image_path(path: &str) -> Result<Vec<&str>, PackError> {
    let bad = |reason: &str| PackError::ImagePath {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if !path.starts_with('/') {
        return Err(bad("paths in the image are absolute (start with `/`)"));
    }
    if path.contains('\0') {
        return Err(bad("it contains a NUL byte"));
    }
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if comps.contains(&"..") {
        return Err(bad("`..` is not allowed"));
    }
    Ok(comps)
}

/// A symlink target is kept only in the form `(../)*name(/name)*`, relative, not
/// climbing above the root from a link whose folder is `depth` levels below it. `..`
/// after a name is refused: through another link it could climb anywhere.
fn check_link_target(target: &str, depth: usize) -> Result<(), &'static str> {
    if target.is_empty() {
        return Err("the target is empty");
    }
    if target.starts_with('/') {
        return Err("the target is an absolute path");
    }
    if target.contains('\0') {
        return Err("the target contains a NUL byte");
    }
    let mut up = 0;
    let mut named = false;
    for comp in target.split('/') {
        match comp {
            "" | "." => {}
            ".." if named => return Err("`..` after a name in the target could lead anywhere"),
            ".." => up += 1,
            _ => named = true,
        }
    }
    if up > depth {
        return Err("the target is outside the root");
    }
    Ok(())
}

/// The components of a layer entry's path; absolute paths and `..` are refused.
fn entry_path(raw: &[u8]) -> Result<Vec<String>, PackError> {
    let name = String::from_utf8_lossy(raw);
    let refuse = |reason: &str| PackError::UnsafeEntry {
        entry: name.to_string(),
        reason: reason.to_string(),
    };
    let text = std::str::from_utf8(raw).map_err(|_| refuse("the path is not UTF-8"))?;
    if text.starts_with('/') {
        return Err(refuse("it has an absolute path"));
    }
    if text.contains('\0') {
        return Err(refuse("the path contains a NUL byte"));
    }
    let mut comps = Vec::new();
    for comp in text.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err(refuse("its path contains `..`")),
            _ => comps.push(comp.to_string()),
        }
    }
    Ok(comps)
}

/// What reading one layer may take; [`LIMITS`] everywhere but in tests.
#[derive(Debug, Clone, Copy)]
struct Limits {
    entries: u64,
    entry_size: u64,
    layer_size: u64,
    entry_headers: u64,
}

const LIMITS: Limits = Limits {
    entries: MAX_LAYER_ENTRIES,
    entry_size: MAX_ENTRY_SIZE,
    layer_size: MAX_LAYER_SIZE,
    entry_headers: MAX_ENTRY_HEADERS,
};

/// `4 GiB`, `1 MiB`, or the bytes when they are not a whole number of either.
fn shown_size(bytes: u64) -> String {
    match bytes {
        0 => "0 bytes".to_owned(),
        b if b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b => format!("{b} bytes"),
    }
}

/// How many more decompressed bytes the tar reader may take, and whether it asked for more.
#[derive(Default)]
struct Allowance {
    left: Cell<u64>,
    exceeded: Cell<bool>,
}

/// The decompressed layer, read within an [`Allowance`].
struct Metered<R> {
    inner: R,
    allowance: Rc<Allowance>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.allowance.left.get();
        if left == 0 && !buf.is_empty() {
            self.allowance.exceeded.set(true);
            return Err(io::Error::other("the entry's headers are too large"));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.allowance.left.set(left - n as u64);
        Ok(n)
    }
}

/// Calls `visit` with each entry of a gzip'd tar layer and its path as written (lossily
/// decoded); refuses the layer at the first entry over `limits`.
///
/// The tar reader keeps an entry's PAX records and GNU long names in memory, so while it
/// reads them it may take only `limits.entry_headers` bytes (and a few blocks); the data of
/// each entry is read to its end here, so it never has any left to skip then.
fn walk<'g>(
    layer_gz: &'g [u8],
    limits: &Limits,
    mut visit: impl FnMut(
        &mut tar::Entry<'_, Metered<GzDecoder<&'g [u8]>>>,
        &str,
    ) -> Result<(), PackError>,
) -> Result<(), PackError> {
    let allowance = Rc::new(Allowance::default());
    let mut archive = tar::Archive::new(Metered {
        inner: GzDecoder::new(layer_gz),
        allowance: Rc::clone(&allowance),
    });
    let layer_io = |source| PackError::Layer { source };
    let mut entries = archive.entries().map_err(layer_io)?;
    let mut count: u64 = 0;
    let mut total: u64 = 0;
    let mut previous: Option<String> = None;
    loop {
        // Besides the records: the header blocks, their padding and the previous entry's.
        allowance.left.set(limits.entry_headers + 8 * BLOCK);
        let mut entry = match entries.next() {
            None => return Ok(()),
            Some(Ok(entry)) => entry,
            Some(Err(_)) if allowance.exceeded.get() => {
                return Err(PackError::LayerHeaders {
                    after: previous,
                    limit: shown_size(limits.entry_headers),
                });
            }
            Some(Err(source)) => return Err(layer_io(source)),
        };
        allowance.left.set(u64::MAX);
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        // The tar reader skips a PAX record it cannot parse (it splits records at newlines,
        // so a path with a newline is one) and falls back to the ustar fields, which then
        // name another path than other readers see: refused rather than misplaced.
        let kind = entry.header().entry_type();
        if !matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader)
            && let Some(records) = entry.pax_extensions().map_err(layer_io)?
            && records.into_iter().any(|record| record.is_err())
        {
            return Err(PackError::UnsafeEntry {
                entry: name,
                reason: "its PAX header has a record that cannot be read (a path or link with a \
                         newline is one)"
                    .into(),
            });
        }
        let over = |reason: String| PackError::LayerLimit {
            entry: name.clone(),
            reason,
        };
        count += 1;
        if count > limits.entries {
            return Err(over(format!(
                "the layer has more than {} entries, the most one layer may have",
                limits.entries
            )));
        }
        // After PAX records; for a sparse file, the size with its holes.
        let size = entry.size();
        if size > limits.entry_size {
            return Err(over(format!(
                "it declares {size} bytes, more than the {} one entry may hold",
                shown_size(limits.entry_size)
            )));
        }
        total = total.saturating_add(size);
        if total > limits.layer_size {
            return Err(over(format!(
                "with it the layer's entries hold {total} bytes, more than the {} one layer \
                 may hold unpacked",
                shown_size(limits.layer_size)
            )));
        }
        visit(&mut entry, &name)?;
        io::copy(&mut entry, &mut io::sink()).map_err(layer_io)?;
        previous = Some(name);
    }
}

/// Unpacks a gzip'd tar layer into `dest` (created if missing), refusing anything that
/// could reach outside it: absolute paths, `..`, writing through a symlink, symlinks
/// that are absolute or climb out, hard links to outside files, devices and fifos.
/// Whiteouts (`.wh.NAME`, `.wh..wh..opq`) delete what they name. A layer over the limits
/// ([`MAX_LAYER_ENTRIES`] and the others) is refused at the entry that crosses one.
pub fn unpack_layer(layer_gz: &[u8], dest: &Path) -> Result<(), PackError> {
    unpack_within(layer_gz, dest, &LIMITS)
}

fn unpack_within(layer_gz: &[u8], dest: &Path, limits: &Limits) -> Result<(), PackError> {
    fs::create_dir_all(dest).map_err(|source| PackError::Io {
        action: "create folder",
        path: dest.to_path_buf(),
        source,
    })?;
    walk(layer_gz, limits, |entry, name| {
        unpack_entry(entry, name, dest)
    })
}

/// Unpacks one entry into `dest`; see [`unpack_layer`].
fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    name: &str,
    dest: &Path,
) -> Result<(), PackError> {
    let kind = entry.header().entry_type();
    if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
        return Ok(());
    }
    let raw = entry.path_bytes().into_owned();
    let comps = entry_path(&raw)?;
    let Some((last, parents)) = comps.split_last() else {
        if kind.is_dir() {
            return Ok(());
        }
        return Err(PackError::UnsafeEntry {
            entry: name.to_owned(),
            reason: "it names the root folder".into(),
        });
    };
    let refuse = |reason: String| PackError::UnsafeEntry {
        entry: name.to_owned(),
        reason,
    };
    let unpack_err = |path: &Path| {
        let entry = name.to_owned();
        let path = path.to_path_buf();
        move |source| PackError::Unpack {
            entry,
            path,
            source,
        }
    };
    let parent = safe_parent(dest, parents, name)?;
    if let Some(hidden) = last.strip_prefix(".wh.") {
        // `.wh..` and `.wh...` would delete the folder itself or the one above it: the
        // root's parent, for an entry at the top.
        if hidden == "." || hidden == ".." {
            return Err(refuse(format!("a whiteout of {hidden:?} is not allowed")));
        }
        if hidden == ".wh..opq" {
            for child in fs::read_dir(&parent).map_err(unpack_err(&parent))? {
                let child = child.map_err(unpack_err(&parent))?;
                remove_path(&child.path()).map_err(unpack_err(&child.path()))?;
            }
        } else if !hidden.is_empty() {
            let gone = parent.join(hidden);
            remove_path(&gone).map_err(unpack_err(&gone))?;
        }
        return Ok(());
    }
    let target = parent.join(last);
    let existing = fs::symlink_metadata(&target).ok();
    let existing_dir = existing.as_ref().is_some_and(|m| m.is_dir());
    let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
    match kind {
        EntryType::Directory => {
            if !existing_dir {
                if existing.is_some() {
                    fs::remove_file(&target).map_err(unpack_err(&target))?;
                }
                fs::create_dir(&target).map_err(unpack_err(&target))?;
            }
            set_mode(&target, mode | 0o700).map_err(unpack_err(&target))?;
        }
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            if existing_dir {
                return Err(refuse("a folder of that name is already there".into()));
            }
            if existing.is_some() {
                fs::remove_file(&target).map_err(unpack_err(&target))?;
            }
            // create_new never follows a symlink at `target`.
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)
                .map_err(unpack_err(&target))?;
            io::copy(entry, &mut file).map_err(unpack_err(&target))?;
            drop(file);
            set_mode(&target, mode).map_err(unpack_err(&target))?;
        }
        EntryType::Symlink => {
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .ok_or_else(|| refuse("the symlink has no target".into()))?;
            check_link_target(&link, parents.len())
                .map_err(|why| refuse(format!("symlink to {link:?}: {why}")))?;
            if existing_dir {
                return Err(refuse("a folder of that name is already there".into()));
            }
            if existing.is_some() {
                fs::remove_file(&target).map_err(unpack_err(&target))?;
            }
            make_symlink(&link, &target).map_err(unpack_err(&target))?;
        }
        EntryType::Link => {
            let link = entry
                .link_name_bytes()
                .map(|l| l.into_owned())
                .ok_or_else(|| refuse("the hard link has no target".into()))?;
            let link_text = String::from_utf8_lossy(&link).into_owned();
            let link_comps = entry_path(&link).map_err(|_| {
                refuse(format!(
                    "hard link to {link_text:?} points outside the root"
                ))
            })?;
            let source = resolve_no_links(dest, &link_comps).ok_or_else(|| {
                    refuse(format!(
                        "hard link to {link_text:?}: the target must be a file already unpacked, reached without symlinks"
                    ))
                })?;
            if existing_dir {
                return Err(refuse("a folder of that name is already there".into()));
            }
            if existing.is_some() {
                fs::remove_file(&target).map_err(unpack_err(&target))?;
            }
            fs::hard_link(&source, &target).map_err(unpack_err(&target))?;
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            return Err(refuse("device files and fifos are not unpacked".into()));
        }
        other => {
            return Err(refuse(format!(
                "unsupported entry type {:?}",
                other.as_byte() as char
            )));
        }
    }
    Ok(())
}

/// `dest/parents…`, creating missing folders; refuses to pass through a symlink or a file.
fn safe_parent(dest: &Path, parents: &[String], entry: &str) -> Result<PathBuf, PackError> {
    let mut path = dest.to_path_buf();
    for (i, comp) in parents.iter().enumerate() {
        path.push(comp);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) => {
                let what = if meta.file_type().is_symlink() {
                    "a symlink"
                } else {
                    "not a folder"
                };
                return Err(PackError::UnsafeEntry {
                    entry: entry.to_string(),
                    reason: format!("its parent {:?} is {what}", parents[..=i].join("/")),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).map_err(|source| PackError::Unpack {
                    entry: entry.to_string(),
                    path: path.clone(),
                    source,
                })?;
            }
            Err(source) => {
                return Err(PackError::Unpack {
                    entry: entry.to_string(),
                    path,
                    source,
                });
            }
        }
    }
    Ok(path)
}

/// `dest/comps…` when every parent is a real folder and the last is a regular file.
fn resolve_no_links(dest: &Path, comps: &[String]) -> Option<PathBuf> {
    let (last, parents) = comps.split_last()?;
    let mut path = dest.to_path_buf();
    for comp in parents {
        path.push(comp);
        if !fs::symlink_metadata(&path).ok()?.is_dir() {
            return None;
        }
    }
    path.push(last);
    fs::symlink_metadata(&path).ok()?.is_file().then_some(path)
}

fn remove_path(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        // remove_dir_all does not follow symlinks.
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

fn make_symlink(target: &str, link: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(target, link)
    }
    #[cfg(not(unix))]
    {
        let _ = (target, link);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "symlinks are only unpacked on Unix",
        ))
    }
}

/// Reads the file at `path` (e.g. `/app.wasm`) out of a gzip'd tar layer, following
/// symlinks and hard links inside the layer. `Ok(None)` if nothing is there. The layer is
/// read within the same limits as [`unpack_layer`].
pub fn find_file(layer_gz: &[u8], path: &str) -> Result<Option<Vec<u8>>, PackError> {
    enum Found {
        File(Vec<u8>),
        Symlink(String),
        HardLink(Vec<String>),
        Other(&'static str),
    }
    let mut want = lexical(&[], path);
    for _ in 0..=MAX_LINK_HOPS {
        let mut found = None;
        walk(layer_gz, &LIMITS, |entry, _| {
            let kind = entry.header().entry_type();
            if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader)
                || entry_path(&entry.path_bytes())? != want
            {
                return Ok(());
            }
            let link = || {
                entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default()
            };
            // A later entry of the same path replaces this one.
            found = Some(match kind {
                EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                    // Grown as the bytes arrive, never sized by what the header declares.
                    let mut bytes = Vec::new();
                    entry
                        .read_to_end(&mut bytes)
                        .map_err(|source| PackError::Layer { source })?;
                    Found::File(bytes)
                }
                EntryType::Symlink => Found::Symlink(link()),
                EntryType::Link => Found::HardLink(entry_path(link().as_bytes())?),
                EntryType::Directory => Found::Other("a folder"),
                _ => Found::Other("a special file"),
            });
            Ok(())
        })?;
        let shown = format!("/{}", want.join("/"));
        match found {
            None => return Ok(None),
            Some(Found::File(bytes)) => return Ok(Some(bytes)),
            Some(Found::Other(what)) => return Err(PackError::NotAFile { path: shown, what }),
            Some(Found::HardLink(target)) => want = target,
            Some(Found::Symlink(target)) => {
                let parent = &want[..want.len().saturating_sub(1)];
                want = if target.starts_with('/') {
                    lexical(&[], &target)
                } else {
                    lexical(parent, &target)
                };
            }
        }
    }
    Err(PackError::NotAFile {
        path: path.to_string(),
        what: "a chain of too many symlinks",
    })
}

/// Joins `path` to `base` lexically, never climbing above the root (as inside a chroot).
fn lexical(base: &[String], path: &str) -> Vec<String> {
    let mut out = base.to_vec();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(comp.to_string()),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let mut out = Vec::new();
        pax_record(&mut out, "path", "a");
        assert_eq!(out, b"9 path=a\n");
        let mut out = Vec::new();
        let long = "x".repeat(95);
        pax_record(&mut out, "path", &long);
        assert_eq!(out.len(), 105);
        assert!(out.starts_with(b"105 path="));
    }

    #[test]
    fn tar_paths_sort_by_component() {
        let mut paths = [
            TarPath("a-b".into()),
            TarPath("a/b".into()),
            TarPath("a".into()),
        ];
        paths.sort();
        let got: Vec<&str> = paths.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(got, ["a", "a/b", "a-b"]);
    }

    #[test]
    fn link_targets() {
        assert!(check_link_target("x", 0).is_ok());
        assert!(check_link_target("./x/y", 0).is_ok());
        assert!(check_link_target("../x", 1).is_ok());
        assert!(check_link_target("../x", 0).is_err());
        assert!(check_link_target("/etc", 3).is_err());
        assert!(check_link_target("a/../../x", 5).is_err());
        assert!(check_link_target("", 0).is_err());
    }

    /// A gzip'd tar of `(name, kind, link)` entries, names written as they are.
    fn raw_layer(entries: &[(&str, EntryType, Option<&str>)]) -> Vec<u8> {
        let mut tar = Vec::new();
        for (name, kind, link) in entries {
            let mut header = Header::new_ustar();
            set_raw(&mut header.as_old_mut().name, name);
            if let Some(link) = link {
                set_raw(&mut header.as_old_mut().linkname, link);
            }
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_size(0);
            header.set_cksum();
            tar.extend_from_slice(header.as_bytes());
        }
        tar.extend_from_slice(&[0; 2 * BLOCK as usize]);
        let mut gz = GzBuilder::new().write(Vec::new(), Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn whiteouts_of_dot_and_dot_dot_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        // The root's neighbours: what `.wh...` at the top would have deleted.
        let neighbour = tmp.path().join("other-root");
        fs::create_dir(&neighbour).unwrap();
        fs::write(neighbour.join("kept"), b"kept").unwrap();
        let root = tmp.path().join("root");
        let cases = [
            (".wh...", vec![(".wh...", EntryType::Regular, None)]),
            (
                "a/.wh...",
                vec![
                    ("a/", EntryType::Directory, None),
                    ("a/keep", EntryType::Regular, None),
                    ("a/.wh...", EntryType::Regular, None),
                ],
            ),
            (
                "a/.wh..",
                vec![
                    ("a/", EntryType::Directory, None),
                    ("a/keep", EntryType::Regular, None),
                    ("a/.wh..", EntryType::Regular, None),
                ],
            ),
        ];
        for (bad, entries) in cases {
            let err = unpack_layer(&raw_layer(&entries), &root).unwrap_err();
            assert!(
                matches!(&err, PackError::UnsafeEntry { entry, .. } if entry == bad),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains("whiteout"), "{err}");
            assert_eq!(fs::read(neighbour.join("kept")).unwrap(), b"kept");
            assert!(root.is_dir());
            if entries.len() > 1 {
                assert!(root.join("a/keep").is_file(), "{bad} deleted a/");
            }
        }
    }

    #[test]
    fn other_whiteouts_still_delete_what_they_name() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let layer = raw_layer(&[
            ("a/", EntryType::Directory, None),
            ("a/gone", EntryType::Regular, None),
            ("a/kept", EntryType::Regular, None),
            ("a/.wh.gone", EntryType::Regular, None),
            ("b/", EntryType::Directory, None),
            ("b/old", EntryType::Regular, None),
            ("b/.wh..wh..opq", EntryType::Regular, None),
            ("b/new", EntryType::Regular, None),
        ]);
        unpack_layer(&layer, &root).unwrap();
        assert!(!root.join("a/gone").exists());
        assert!(root.join("a/kept").is_file());
        assert!(!root.join("b/old").exists());
        assert!(root.join("b/new").is_file());
    }

    /// A ustar header for `name` that declares `size` bytes, whatever follows it.
    fn header_block(name: &str, kind: EntryType, size: u64) -> Vec<u8> {
        let mut header = Header::new_ustar();
        set_raw(&mut header.as_old_mut().name, name);
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(size);
        header.set_cksum();
        header.as_bytes().to_vec()
    }

    /// A file entry holding `size` bytes, padded.
    fn file_blocks(name: &str, size: usize) -> Vec<u8> {
        let mut out = header_block(name, EntryType::Regular, size as u64);
        out.extend(vec![b'x'; size]);
        out.resize(out.len().div_ceil(BLOCK as usize) * BLOCK as usize, 0);
        out
    }

    fn gzip(tar: &[u8]) -> Vec<u8> {
        let mut gz = GzBuilder::new().write(Vec::new(), Compression::fast());
        gz.write_all(tar).unwrap();
        gz.finish().unwrap()
    }

    const SMALL: Limits = Limits {
        entries: 3,
        entry_size: 100,
        layer_size: 250,
        entry_headers: 1024,
    };

    /// Unpacks `tar` (then the end-of-archive blocks) within [`SMALL`] into a new folder.
    fn unpack_small(tar: &[u8]) -> (tempfile::TempDir, Result<(), PackError>) {
        let tmp = tempfile::tempdir().unwrap();
        let mut tar = tar.to_vec();
        tar.extend([0; 2 * BLOCK as usize]);
        let result = unpack_within(&gzip(&tar), tmp.path(), &SMALL);
        (tmp, result)
    }

    #[test]
    fn entries_past_the_count_limit_are_refused_by_name() {
        let tar: Vec<u8> = ["a", "b", "c", "d"]
            .iter()
            .flat_map(|name| file_blocks(name, 1))
            .collect();
        let (root, result) = unpack_small(&tar);
        let err = result.unwrap_err();
        assert!(matches!(err, PackError::LayerLimit { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "refusing layer entry \"d\": the layer has more than 3 entries, the most one layer \
             may have"
        );
        assert!(root.path().join("c").is_file());
        assert!(!root.path().join("d").exists());
        let (_, result) = unpack_small(&tar[..3 * 2 * BLOCK as usize]);
        result.unwrap();
    }

    #[test]
    fn an_entry_declaring_more_than_the_entry_limit_is_refused_before_it_is_read() {
        // The body is missing: the declared size alone refuses it.
        let mut tar = file_blocks("small", 100);
        tar.extend(header_block("big", EntryType::Regular, 101));
        let (root, result) = unpack_small(&tar);
        assert_eq!(
            result.unwrap_err().to_string(),
            "refusing layer entry \"big\": it declares 101 bytes, more than the 100 bytes one \
             entry may hold"
        );
        assert!(root.path().join("small").is_file());
        assert!(!root.path().join("big").exists());
        // Any kind of entry: a folder's data would be read to skip it.
        let (_, result) = unpack_small(&header_block("d/", EntryType::Directory, 1 << 40));
        let err = result.unwrap_err().to_string();
        assert!(err.contains("it declares 1099511627776 bytes"), "{err}");
    }

    #[test]
    fn entries_past_the_layer_limit_are_refused_by_name() {
        let tar: Vec<u8> = ["a", "b", "c"]
            .iter()
            .flat_map(|name| file_blocks(name, 100))
            .collect();
        let (root, result) = unpack_small(&tar);
        assert_eq!(
            result.unwrap_err().to_string(),
            "refusing layer entry \"c\": with it the layer's entries hold 300 bytes, more than \
             the 250 bytes one layer may hold unpacked"
        );
        assert_eq!(fs::read(root.path().join("b")).unwrap(), [b'x'; 100]);
        assert!(!root.path().join("c").exists());
    }

    #[test]
    fn headers_past_their_limit_are_refused_unread() {
        let pax = |size: usize| {
            let mut records = Vec::new();
            pax_record(&mut records, "comment", &"x".repeat(size));
            let mut out = header_block("PaxHeaders.0/p", EntryType::XHeader, records.len() as u64);
            out.extend(&records);
            out.resize(out.len().div_ceil(BLOCK as usize) * BLOCK as usize, 0);
            out.extend(file_blocks("p", 1));
            out
        };
        let mut tar = file_blocks("a", 1);
        tar.extend(pax(100));
        let (root, result) = unpack_small(&tar);
        result.unwrap();
        assert!(root.path().join("p").is_file());

        let mut tar = file_blocks("a", 1);
        tar.extend(pax(8000));
        let (root, result) = unpack_small(&tar);
        let err = result.unwrap_err();
        assert!(matches!(err, PackError::LayerHeaders { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "refusing layer: the headers of the entry after \"a\" take more than 1024 bytes (PAX \
             records or GNU long names), the most one entry's headers may take"
        );
        assert!(!root.path().join("p").exists());
        let (_, result) = unpack_small(&pax(8000));
        let err = result.unwrap_err().to_string();
        assert!(err.contains("the entry at its start take"), "{err}");
    }

    #[test]
    fn a_pax_record_the_reader_cannot_parse_is_refused_not_misplaced() {
        // A name too long for ustar, so a PAX record carries the path, and a newline in it,
        // where the tar reader splits records.
        let path = format!("/d/a\nb{}", "f".repeat(120));
        let mut layer = LayerBuilder::new(0);
        layer.add_file(&path, b"x", 0o644).unwrap();
        let layer = layer.finish().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let err = unpack_layer(&layer.gz, tmp.path()).unwrap_err();
        assert!(
            matches!(&err, PackError::UnsafeEntry { reason, .. } if reason.contains("PAX")),
            "{err}"
        );
        // Only its folder came before it.
        assert!(fs::read_dir(tmp.path().join("d")).unwrap().next().is_none());
    }

    #[test]
    fn sizes_are_shown_in_the_largest_whole_unit() {
        assert_eq!(shown_size(MAX_ENTRY_SIZE), "4 GiB");
        assert_eq!(shown_size(MAX_LAYER_SIZE), "16 GiB");
        assert_eq!(shown_size(MAX_ENTRY_HEADERS), "1 MiB");
        assert_eq!(shown_size(1000), "1000 bytes");
    }
}
