//! What `run` keeps between runs, in the step cache (`$WASMBUILD_HOME/cache`), so that
//! starting an image costs no work in proportion to its size once it has run:
//!
//! - `rootfs/<key>`: the image's layers, unpacked (key: the layers' media types and digests);
//! - `compiled/<key>`: the module compiled by this engine, as `Module::serialize` wrote it
//!   (key: the layers, the module's path, the wasmtime version, target and engine settings);
//! - `verified/<key>`: one per store blob whose digest has been checked, named by the blob
//!   file's identity (device, inode, size, modification and change times).
//!
//! Entries appear whole or not at all: each is written beside its place under a temp name
//! and renamed into it. `cache ls` lists them and `cache prune` removes them with the rest
//! of the step cache. A cache that cannot be written costs speed, never the run.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use tempfile::TempDir;
use wasmbuild_builder::cache::{Cache, Key, TEMP_PREFIX};
use wasmbuild_packer::{Descriptor, Reference, Store, StoreError};
use wasmtime::{Engine, Module};

use super::{HostEngine, debug};

const ROOTFS: &str = "rootfs";
const COMPILED: &str = "compiled";
const VERIFIED: &str = "verified";

/// The folder the guest sees at `/`.
pub(super) enum Root {
    /// Unpacked by this or an earlier run, kept in the cache.
    Cached(PathBuf),
    /// Unpacked for this run alone (`--no-cache`, or a cache that cannot be written).
    Temp(TempDir),
}

impl Root {
    pub(super) fn path(&self) -> &Path {
        match self {
            Root::Cached(path) => path,
            Root::Temp(dir) => dir.path(),
        }
    }
}

/// Names an image's unpacked files: the same layers unpack to the same tree, whatever the
/// image's config says.
pub(super) fn root_key(layers: &[Descriptor]) -> Key {
    let mut parts: Vec<&[u8]> = vec![b"wasmbuild run rootfs v1"];
    for layer in layers {
        parts.push(layer.media_type.as_bytes());
        parts.push(layer.digest.as_bytes());
    }
    Key::new(&parts)
}

/// The image's root unpacked by an earlier run, if there is one.
pub(super) fn cached_root(cache: &Cache, key: &Key) -> Option<Root> {
    let path = cache.entry_path(ROOTFS, key)?;
    path.is_dir().then(|| {
        debug(&format!("using cached root {}", key.as_str()));
        Root::Cached(path)
    })
}

/// Unpacks `layers` (each checked against its digest as it is read) and keeps the result
/// in the cache for later runs. The tree is built in a temp folder beside its place and
/// renamed into it once complete and synced, so a run that dies half way leaves nothing a
/// later run would use; when two runs race, the first rename wins and the other run uses
/// that tree and drops its own.
pub(super) fn unpack_root(
    cache: &Cache,
    key: &Key,
    store: &Store,
    layers: &[Descriptor],
    reference: &Reference,
) -> Result<Root> {
    // A temp folder beside the entry's place (the rename needs the same file system), or,
    // without a usable cache, anywhere: then the tree is this run's alone.
    let place = cache.entry_path(ROOTFS, key);
    let beside = place.and_then(|place| {
        let parent = place.parent()?;
        fs::create_dir_all(parent).ok()?;
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir_in(parent)
            .ok()?;
        Some((temp, place))
    });
    let (temp, place) = match beside {
        Some((temp, place)) => (temp, Some(place)),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("wasmbuild-run-")
                .tempdir()
                .context("cannot create a temp folder for the image's files")?;
            (temp, None)
        }
    };
    for layer in layers {
        // The size first: a blob that is not the one the manifest describes is not read.
        let blob = store.read_descriptor(layer)?;
        wasmbuild_packer::unpack_layer(&blob, temp.path())
            .with_context(|| format!("cannot unpack layer {} of {reference}", layer.digest))?;
    }
    let Some(place) = place else {
        return Ok(Root::Temp(temp));
    };
    if let Err(error) = sync_tree(temp.path()) {
        debug(&format!("cannot keep the unpacked root: {error}"));
        return Ok(Root::Temp(temp));
    }
    match fs::rename(temp.path(), &place) {
        Ok(()) => {
            let _ = temp.keep();
            if let Some(parent) = place.parent() {
                let _ = sync_dir(parent);
            }
            Ok(Root::Cached(place))
        }
        // Another run put the same tree there first; ours goes when `temp` drops.
        Err(_) if place.is_dir() => Ok(Root::Cached(place)),
        Err(error) => {
            debug(&format!("cannot keep the unpacked root: {error}"));
            Ok(Root::Temp(temp))
        }
    }
}

/// Flushes every file and folder under `dir` to disk, so that after a crash the renamed
/// tree is whole, not a set of names with empty files.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in fs::read_dir(&next)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                fs::File::open(entry.path())?.sync_all()?;
            }
        }
        sync_dir(&next)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Names the module at `module_path` in the tree `root_key` names, compiled by an engine
/// like `host`'s.
pub(super) fn compiled_key(root_key: &Key, module_path: &str, host: &HostEngine) -> Key {
    Key::new(&[
        b"wasmbuild run compiled v1",
        root_key.as_str().as_bytes(),
        module_path.as_bytes(),
        host.wasmtime_version.as_bytes(),
        host.target.as_bytes(),
        host.settings.as_bytes(),
    ])
}

/// The module an earlier run compiled, if there is one and wasmtime loads it. One that
/// does not load (damaged, or from another build of wasmtime) is removed: the module is
/// compiled again and the entry written anew.
pub(super) fn compiled_module(cache: &Cache, key: &Key, engine: &Engine) -> Option<Module> {
    let path = cache.entry_path(COMPILED, key)?;
    if !path.is_file() {
        return None;
    }
    match deserialize_compiled(engine, &path) {
        Ok(module) => {
            debug(&format!("using cached compiled module {}", key.as_str()));
            Some(module)
        }
        Err(error) => {
            debug(&format!(
                "cannot load the cached compiled module {} ({error}); removing it",
                path.display()
            ));
            let _ = fs::remove_file(&path);
            None
        }
    }
}

/// Keeps `module` (just compiled by `run`'s engine) for later runs: written under a temp
/// name, synced, then renamed into place.
pub(super) fn keep_compiled(cache: &Cache, key: &Key, module: &Module) -> Result<()> {
    let Some(path) = cache.entry_path(COMPILED, key) else {
        return Ok(());
    };
    let bytes = module.serialize().map_err(anyhow::Error::from)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)?;
    temp.write_all(&bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(&path).map_err(|e| e.error)?;
    Ok(())
}

/// Loads a module that `run` compiled earlier and kept in the cache.
#[allow(unsafe_code)]
fn deserialize_compiled(engine: &Engine, path: &Path) -> wasmtime::Result<Module> {
    // SAFETY: `Module::deserialize_file` runs the native code in the file, so it must be
    // what wasmtime's `Module::serialize` wrote, and must not change while mapped. This file
    // is our own, under the user's own `$WASMBUILD_HOME`: `keep_compiled` wrote it from a
    // module this wasmtime had just compiled, under a temp name, synced, then renamed it
    // into place, so it is either absent or whole, and never rewritten in place (a new
    // entry is a new file renamed over; prune unlinks), which keeps the mapping as written.
    // Its key names the wasmtime version, target and engine settings, and wasmtime checks
    // the file's header (version, settings) again and returns an error on a mismatch or a
    // truncated file, after which the module is compiled again. Anyone who can change
    // this file can change the store and the binary too: it is trusted as the home is.
    unsafe { Module::deserialize_file(engine, path) }
}

/// A blob whose modification or change time is this recent is not remembered as verified:
/// file times come from a clock that ticks in steps, and a write in the same tick as the
/// check could leave the times as they were. A later write always gets a later time.
const SETTLED: Duration = Duration::from_secs(1);

/// Checks the blob `descriptor` names against its size and digest, unless this file, as
/// it is now, was checked before; returns its path.
///
/// A check is remembered under the file's identity: device, inode, size, and modification
/// and change times in nanoseconds. The store only ever writes a blob whole under a temp
/// name and renames it into place, and never changes one in place, so a file with the same
/// identity has the same bytes. Anything that does change it gives it another identity: a
/// new file (another inode and times), or an edit in place (new modification and change
/// times; a change time cannot be set back), and then it is hashed again.
pub(super) fn verified_blob(
    cache: &Cache,
    store: &Store,
    descriptor: &Descriptor,
) -> Result<PathBuf, StoreError> {
    let path = store.blob_path(&descriptor.digest);
    let digest = descriptor.digest.to_string();
    let before = fs::metadata(&path)
        .ok()
        .and_then(|m| identity(&m, descriptor));
    if let Some(key) = &before
        && cache.get(VERIFIED, key).as_deref() == Some(digest.as_bytes())
    {
        debug(&format!("{digest} is unchanged since it was verified"));
        return Ok(path);
    }
    let started = SystemTime::now();
    let path = store.verify_blob(descriptor)?;
    let meta = fs::metadata(&path).ok();
    let after = meta.as_ref().and_then(|m| identity(m, descriptor));
    // The same identity before and after: the bytes hashed are this file's.
    if let (Some(key), Some(meta)) = (before.filter(|b| Some(b) == after.as_ref()), meta)
        && settled(&meta, started)
    {
        let _ = cache.put(VERIFIED, &key, digest.as_bytes());
    }
    Ok(path)
}

#[cfg(unix)]
fn identity(meta: &fs::Metadata, descriptor: &Descriptor) -> Option<Key> {
    use std::os::unix::fs::MetadataExt;
    (meta.is_file() && meta.len() == descriptor.size).then(|| {
        Key::new(&[
            b"verified blob",
            descriptor.digest.as_bytes(),
            &meta.dev().to_le_bytes(),
            &meta.ino().to_le_bytes(),
            &meta.len().to_le_bytes(),
            &meta.mtime().to_le_bytes(),
            &meta.mtime_nsec().to_le_bytes(),
            &meta.ctime().to_le_bytes(),
            &meta.ctime_nsec().to_le_bytes(),
        ])
    })
}

/// Elsewhere there is no change time to trust: every run hashes.
#[cfg(not(unix))]
fn identity(_meta: &fs::Metadata, _descriptor: &Descriptor) -> Option<Key> {
    None
}

/// Whether the file's times lie clearly before `started`, so any later write would change
/// them.
#[cfg(unix)]
fn settled(meta: &fs::Metadata, started: SystemTime) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(limit) = started
        .checked_sub(SETTLED)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
    else {
        return false;
    };
    let nanos = |secs: i64, nsec: i64| -> Option<Duration> {
        Some(Duration::new(
            u64::try_from(secs).ok()?,
            u32::try_from(nsec).ok()?,
        ))
    };
    [
        nanos(meta.mtime(), meta.mtime_nsec()),
        nanos(meta.ctime(), meta.ctime_nsec()),
    ]
    .iter()
    .all(|time| time.is_some_and(|t| t < limit))
}

#[cfg(not(unix))]
fn settled(_meta: &fs::Metadata, _started: SystemTime) -> bool {
    false
}
