//! The step cache: content-addressed results of expensive steps (optimize, precompile) under
//! `$WASMBUILD_HOME/cache/<step>/<key>`.
//!
//! A key is the SHA-256 of everything that determines a step's output: its input bytes and
//! every setting and tool version that changes the result. An entry file holds the SHA-256
//! of its payload followed by the payload, so a truncated or corrupt entry is detected on
//! read, removed, and treated as a miss: it is rebuilt, never used.
//!
//! Some steps keep entries this framing does not suit, at [`Cache::entry_path`]: `run`'s
//! unpacked image roots are folders, and its compiled modules are files wasmtime maps and
//! checks itself. They are listed and pruned like the others.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

const HASH_LEN: usize = 32;

/// How temp files and folders in a step's folder begin; they are never entries.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A temp file or folder left this long is left over from a process that died: `prune`
/// removes it. Younger ones may belong to a process still writing.
const STALE_TEMP: Duration = Duration::from_secs(24 * 3600);

/// What determines a step's output, hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    /// Hashes `parts` (each length-prefixed, so `["ab", "c"]` and `["a", "bc"]` differ).
    pub fn new(parts: &[&[u8]]) -> Key {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        Key(hex::encode(hasher.finalize()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One stored result, as `wasmbuild cache ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub step: String,
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Cache {
    root: Option<PathBuf>,
}

impl Cache {
    /// A cache stored under `root`.
    pub fn at(root: impl Into<PathBuf>) -> Cache {
        Cache {
            root: Some(root.into()),
        }
    }

    /// No cache (`--no-cache`): every lookup misses and nothing is stored.
    pub fn disabled() -> Cache {
        Cache { root: None }
    }

    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    fn path(&self, step: &str, key: &Key) -> Option<PathBuf> {
        self.root
            .as_ref()
            .map(|root| root.join(step).join(key.as_str()))
    }

    /// Where `step`'s entry for `key` lives, for an entry that is not a framed payload (a
    /// folder, or a file its reader checks itself); `None` for a disabled cache. Temp files
    /// and folders beside it should be named with [`TEMP_PREFIX`], which listing skips.
    pub fn entry_path(&self, step: &str, key: &Key) -> Option<PathBuf> {
        self.path(step, key)
    }

    /// The stored result, if there is one and it is intact.
    pub fn get(&self, step: &str, key: &Key) -> Option<Vec<u8>> {
        let path = self.path(step, key)?;
        let bytes = fs::read(&path).ok()?;
        let intact = bytes.len() >= HASH_LEN
            && Sha256::digest(&bytes[HASH_LEN..]).as_slice() == &bytes[..HASH_LEN];
        if !intact {
            // Corrupt or truncated: never used; the step runs again and replaces it.
            let _ = fs::remove_file(&path);
            return None;
        }
        Some(bytes[HASH_LEN..].to_vec())
    }

    /// Stores a result. A cache that cannot be written is not an error for the build: the
    /// caller gets the error to report as a warning.
    pub fn put(&self, step: &str, key: &Key, payload: &[u8]) -> std::io::Result<()> {
        let Some(path) = self.path(step, key) else {
            return Ok(());
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(dir)?;
        temp.write_all(&Sha256::digest(payload))?;
        temp.write_all(payload)?;
        temp.as_file().sync_all()?;
        temp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Every entry, by step then key.
    pub fn entries(&self) -> std::io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        let Some(root) = &self.root else {
            return Ok(entries);
        };
        let steps = match fs::read_dir(root) {
            Ok(steps) => steps,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(entries),
            Err(e) => return Err(e),
        };
        for step in steps {
            let step = step?;
            if !step.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(step.path())? {
                let entry = entry?;
                let key = entry.file_name().to_string_lossy().into_owned();
                if key.starts_with('.') {
                    continue;
                }
                let metadata = entry.metadata()?;
                let size = if metadata.is_dir() {
                    tree_size(&entry.path())?
                } else {
                    metadata.len()
                };
                entries.push(Entry {
                    step: step.file_name().to_string_lossy().into_owned(),
                    key,
                    size,
                    modified: metadata.modified()?,
                    path: entry.path(),
                });
            }
        }
        entries.sort_by(|a, b| (&a.step, &a.key).cmp(&(&b.step, &b.key)));
        Ok(entries)
    }

    /// Removes entries older than `older_than` (all of them when `None`), and temp files
    /// and folders a process that died left behind; returns the entries removed.
    pub fn prune(&self, older_than: Option<SystemTime>) -> std::io::Result<Vec<Entry>> {
        let mut removed = Vec::new();
        for entry in self.entries()? {
            if older_than.is_none_or(|limit| entry.modified < limit) {
                remove_path(&entry.path)?;
                removed.push(entry);
            }
        }
        self.remove_stale_temps()?;
        Ok(removed)
    }

    fn remove_stale_temps(&self) -> std::io::Result<()> {
        let Some(root) = &self.root else {
            return Ok(());
        };
        let Ok(steps) = fs::read_dir(root) else {
            return Ok(());
        };
        let limit = SystemTime::now() - STALE_TEMP;
        for step in steps {
            let step = step?;
            if !step.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(step.path())? {
                let entry = entry?;
                if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    continue;
                }
                if entry.metadata()?.modified()? < limit {
                    remove_path(&entry.path())?;
                }
            }
        }
        Ok(())
    }
}

/// The bytes of the files under `dir`.
fn tree_size(dir: &Path) -> std::io::Result<u64> {
    let mut size = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in fs::read_dir(&next)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                size += entry.metadata()?.len();
            }
        }
    }
    Ok(size)
}

/// Removes a file or a folder with everything in it; one already gone is not an error (a
/// concurrent prune may have taken it).
fn remove_path(path: &Path) -> std::io::Result<()> {
    let removed = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_result_comes_back_and_a_damaged_one_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let key = Key::new(&[b"module bytes", b"Oz"]);
        assert_eq!(cache.get("optimize", &key), None);
        cache.put("optimize", &key, b"optimized").unwrap();
        assert_eq!(
            cache.get("optimize", &key).as_deref(),
            Some(&b"optimized"[..])
        );

        let path = dir.path().join("optimize").join(key.as_str());
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 2);
        fs::write(&path, &bytes).unwrap();
        assert_eq!(
            cache.get("optimize", &key),
            None,
            "a truncated entry is not used"
        );
        assert!(!path.exists(), "and it is removed");

        cache.put("optimize", &key, b"optimized").unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(
            cache.get("optimize", &key),
            None,
            "a flipped bit is not used"
        );
    }

    #[test]
    fn keys_separate_their_parts() {
        assert_ne!(Key::new(&[b"ab", b"c"]), Key::new(&[b"a", b"bc"]));
        assert_eq!(Key::new(&[b"a"]), Key::new(&[b"a"]));
    }

    #[test]
    fn entries_list_and_prune_removes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        cache.put("optimize", &Key::new(&[b"1"]), b"x").unwrap();
        cache.put("precompile", &Key::new(&[b"2"]), b"yy").unwrap();
        let entries = cache.entries().unwrap();
        assert_eq!(
            entries.iter().map(|e| e.step.as_str()).collect::<Vec<_>>(),
            ["optimize", "precompile"]
        );
        assert_eq!(entries[1].size, 32 + 2);
        assert_eq!(cache.prune(None).unwrap().len(), 2);
        assert!(cache.entries().unwrap().is_empty());

        // Folder entries count their files and go whole; fresh temps stay, old ones go.
        let root = cache.entry_path("rootfs", &Key::new(&[b"3"])).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("app.wasm"), b"abc").unwrap();
        fs::write(root.join("etc/motd"), b"hello").unwrap();
        let fresh = dir.path().join("rootfs").join(".tmp-fresh");
        fs::create_dir(&fresh).unwrap();
        let entries = cache.entries().unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!((entries[0].step.as_str(), entries[0].size), ("rootfs", 8));
        assert_eq!(cache.prune(None).unwrap().len(), 1);
        assert!(!root.exists());
        assert!(fresh.exists(), "a temp that may be in use is kept");
        assert!(
            Cache::disabled()
                .get("optimize", &Key::new(&[b"1"]))
                .is_none()
        );
    }
}
