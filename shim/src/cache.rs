//! The node's compiled modules, shared by every container the shim runs: one `.cwasm` per
//! (module digest, engine) in `$WASMBUILD_SHIM_HOME/compiled`, written either by
//! `start` (a precompiled artifact fetched from the image's registry) or by a container
//! that compiled its module itself.
//!
//! A container's process runs inside its own root, where the host's folders are out of
//! sight. The shim's daemon opens the `compiled` folder before runwasi forks the zygote
//! that every container process is forked from, so each of them holds it as a descriptor
//! and reads and writes entries relative to it. The guest never sees it: a WASI guest sees
//! only the folders it is given.

use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::fs::{Mode, OFlags};
use sha2::{Digest as _, Sha256};
use wasmbuild_packer::HostEngine;

/// Where the shim keeps its state, instead of [`DEFAULT_HOME`].
pub const HOME_ENV: &str = "WASMBUILD_SHIM_HOME";
pub const DEFAULT_HOME: &str = "/var/lib/wasmbuild/shim";

/// The shim's state folder: `compiled/` (the cache), `store/` (precompiled artifacts
/// pulled from registries, in wasmbuild's store format) and `shim.log`.
pub fn home() -> PathBuf {
    std::env::var_os(HOME_ENV)
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_HOME))
}

/// What an artifact must match to load into `engine` here, the engine of `wasmbuild run`
/// and of every container.
pub fn host_engine(engine: &wasmtime::Engine) -> HostEngine {
    HostEngine {
        target: wasmbuild_builder::engine::host_target(),
        wasmtime_version: wasmbuild_builder::engine::wasmtime_version().to_owned(),
        settings: wasmbuild_builder::engine::settings_of(engine),
    }
}

/// The cache entry of `module` for `engine`: `<sha256 of the module>-<16 hex digits of
/// the engine's target, wasmtime version and settings>.cwasm`. An entry's name says what
/// it was compiled from and for, so no entry is ever rewritten with other contents.
pub fn entry_name(module_digest_hex: &str, engine: &HostEngine) -> String {
    let mut hasher = Sha256::new();
    for part in [&engine.target, &engine.wasmtime_version, &engine.settings] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let engine_key = hex::encode(&hasher.finalize()[..8]);
    format!("{module_digest_hex}-{engine_key}.cwasm")
}

/// The hex SHA-256 of a module's bytes.
pub fn module_digest_hex(module: &[u8]) -> String {
    hex::encode(Sha256::digest(module))
}

/// The `compiled` folder, opened by the daemon for the containers it will fork.
static COMPILED: OnceLock<OwnedFd> = OnceLock::new();

/// Opens (creating it) `home/compiled` for the containers this process will start. A
/// failure is logged and leaves them compiling without a cache.
pub fn open_for_containers(home: &Path) -> io::Result<()> {
    let path = home.join("compiled");
    std::fs::create_dir_all(&path)?;
    collect_stale_temps(&path, STALE_AFTER);
    // The partial downloads of lookups that were killed (the store tells them by their
    // owner, a host process); the store holds nothing else.
    if let Ok(store) = wasmbuild_packer::Store::open(&home.join("store")) {
        let _ = store.gc();
    }
    let fd = rustix::fs::open(
        &path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let _ = COMPILED.set(fd);
    Ok(())
}

/// How old a temp file must be before a new daemon takes it for the leftover of a process
/// killed mid-write: no write of a cache entry takes this long.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the `.tmp-*` files in `folder` older than `age`: what processes killed while
/// writing an entry left (a container's process, or `start`'s lookup). Their writers are
/// in other pid namespaces, so age is the only sign that they are gone.
fn collect_stale_temps(folder: &Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let stale = entry.file_name().to_string_lossy().starts_with(".tmp-")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified.elapsed().is_ok_and(|elapsed| elapsed > age));
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The `compiled` folder, when this process has it.
pub fn compiled() -> Option<BorrowedFd<'static>> {
    COMPILED.get().map(|fd| fd.as_fd())
}

/// The entry `name` in `dir`, if there is one.
pub fn open_entry(dir: BorrowedFd<'_>, name: &str) -> Option<File> {
    rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .ok()
        .map(File::from)
}

/// Writes the entry `name` in `dir` whole or not at all: to a temp file of its own, then
/// renamed into place. The temp name is random and created exclusively: the processes of
/// two containers are each pid 1 in their own namespace, and may write the same entry at
/// once.
pub fn write_entry(dir: BorrowedFd<'_>, name: &str, bytes: &[u8]) -> io::Result<()> {
    let (temp, fd) = loop {
        let temp = format!(".tmp-{:016x}-{name}", random());
        match rustix::fs::openat(
            dir,
            temp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(fd) => break (temp, fd),
            Err(rustix::io::Errno::EXIST) => continue,
            Err(error) => return Err(error.into()),
        }
    };
    let written = (|| -> io::Result<()> {
        let mut file = File::from(fd);
        file.write_all(bytes)?;
        file.sync_all()?;
        rustix::fs::renameat(dir, temp.as_str(), dir, name)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = rustix::fs::unlinkat(dir, temp.as_str(), rustix::fs::AtFlags::empty());
    }
    written
}

/// 64 bits that differ between processes and calls (std seeds every `RandomState` from the
/// OS's randomness).
fn random() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// The same by path, for `start`, which runs on the host.
pub fn write_entry_at(folder: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    std::fs::create_dir_all(folder)?;
    let dir = rustix::fs::open(
        folder,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    write_entry(dir.as_fd(), name, bytes)
}

/// Moves the verified temp file `file` into `folder` as the entry `name`: renamed (it is
/// synced already), copied the same way as [`write_entry_at`] where it cannot be (another
/// filesystem).
pub fn persist_entry_at(folder: &Path, name: &str, file: tempfile::TempPath) -> io::Result<()> {
    std::fs::create_dir_all(folder)?;
    match file.persist(folder.join(name)) {
        Ok(()) => Ok(()),
        Err(error) => {
            let file = error.path;
            write_entry_at(folder, name, &std::fs::read(&file)?)
        }
    }
}

/// Takes the lock of entry `name` in `folder` (`<name>.lock`, exclusive), held until the
/// descriptor is closed, by the process or by its end.
pub fn lock_entry_at(folder: &Path, name: &str) -> io::Result<OwnedFd> {
    std::fs::create_dir_all(folder)?;
    let fd = rustix::fs::open(
        folder.join(format!("{name}.lock")),
        OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    rustix::fs::flock(&fd, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(fd)
}

/// Waits, at most `limit`, while `start` prepares the entry `name` in `dir` (holds its
/// lock). Returns at once when nobody does.
pub fn wait_for_entry(dir: BorrowedFd<'_>, name: &str, limit: std::time::Duration) {
    let Ok(fd) = rustix::fs::openat(
        dir,
        format!("{name}.lock").as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let deadline = std::time::Instant::now() + limit;
    while rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(settings: &str) -> HostEngine {
        HostEngine {
            target: "x86_64-unknown-linux-gnu".into(),
            wasmtime_version: "48.0.8".into(),
            settings: settings.into(),
        }
    }

    #[test]
    fn an_entry_is_named_by_its_module_and_its_engine() {
        let digest = module_digest_hex(b"\0asm\x01\0\0\0");
        let a = entry_name(&digest, &engine("a"));
        assert!(a.starts_with(&format!("{digest}-")), "{a}");
        assert!(a.ends_with(".cwasm"), "{a}");
        assert_eq!(a, entry_name(&digest, &engine("a")));
        assert_ne!(a, entry_name(&digest, &engine("b")));
        assert_ne!(a, entry_name(&module_digest_hex(b"other"), &engine("a")));
    }

    #[test]
    fn old_temp_files_are_collected_and_entries_and_new_temps_kept() {
        let home = tempfile::tempdir().expect("temp dir");
        let folder = home.path();
        for name in [
            ".tmp-0000000000000001-a.cwasm",
            ".tmp-0000000000000002-b.cwasm",
            "a.cwasm",
        ] {
            std::fs::write(folder.join(name), b"x").expect("write");
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for name in [".tmp-0000000000000001-a.cwasm", "a.cwasm"] {
            std::fs::File::options()
                .write(true)
                .open(folder.join(name))
                .and_then(|f| f.set_modified(old))
                .expect("age it");
        }
        collect_stale_temps(folder, STALE_AFTER);
        let mut names: Vec<_> = std::fs::read_dir(folder)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".tmp-0000000000000002-b.cwasm", "a.cwasm"]);
    }

    #[test]
    fn entries_are_written_whole_and_read_back() {
        let home = tempfile::tempdir().expect("temp dir");
        let folder = home.path().join("compiled");
        write_entry_at(&folder, "x.cwasm", b"first").expect("write");
        write_entry_at(&folder, "x.cwasm", b"second").expect("rewrite");
        let names: Vec<_> = std::fs::read_dir(&folder)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["x.cwasm"], "no temp file is left");
        let dir = rustix::fs::open(&folder, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .expect("open");
        let mut read = String::new();
        io::Read::read_to_string(
            &mut open_entry(dir.as_fd(), "x.cwasm").expect("entry"),
            &mut read,
        )
        .expect("read");
        assert_eq!(read, "second");
        assert!(open_entry(dir.as_fd(), "missing.cwasm").is_none());

        // A verified download becomes an entry by rename.
        let download = tempfile::NamedTempFile::new_in(home.path()).expect("temp file");
        std::fs::write(download.path(), b"cwasm").expect("write");
        persist_entry_at(&folder, "y.cwasm", download.into_temp_path()).expect("persist");
        assert_eq!(
            std::fs::read(folder.join("y.cwasm")).expect("read"),
            b"cwasm"
        );
        assert_eq!(std::fs::read_dir(&folder).expect("read_dir").count(), 2);
    }
}
