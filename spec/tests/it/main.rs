//! Wasmfiles in temporary projects, checked against what a user would see: the plan, the
//! warnings, and each error's exact text, location and hint.

// See the crate's lib.rs: errors are one flat enum on purpose.
#![allow(clippy::result_large_err)]

mod dockerfile;
mod errors;
mod resolve;
mod roundtrip;
mod schema;

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use wasmbuild_spec::{Options, Resolved, SpecError, load};

/// A project folder with a Wasmfile at its root.
pub struct Project {
    _dir: TempDir,
    /// Canonical, so that it matches the paths in plans and messages.
    root: PathBuf,
}

impl Default for Project {
    fn default() -> Self {
        Self::new()
    }
}

impl Project {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = fs::canonicalize(dir.path()).expect("canonical temp dir");
        Project { _dir: dir, root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Writes a file, creating its folders.
    pub fn file(&self, relative: &str, contents: &str) -> &Self {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create folders");
        }
        fs::write(path, contents).expect("write file");
        self
    }

    pub fn dir(&self, relative: &str) -> &Self {
        fs::create_dir_all(self.path(relative)).expect("create folders");
        self
    }

    #[cfg(unix)]
    pub fn symlink(&self, target: &Path, link: &str) -> &Self {
        std::os::unix::fs::symlink(target, self.path(link)).expect("symlink");
        self
    }

    /// Writes `Wasmfile` and loads it.
    pub fn load(&self, wasmfile: &str) -> Result<Resolved, SpecError> {
        self.load_with(wasmfile, &[])
    }

    pub fn load_with(
        &self,
        wasmfile: &str,
        build_args: &[(&str, &str)],
    ) -> Result<Resolved, SpecError> {
        self.file("Wasmfile", wasmfile);
        let options = Options {
            build_args: build_args
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        };
        load(&self.path("Wasmfile"), &options)
    }

    pub fn plan(&self, wasmfile: &str) -> Resolved {
        match self.load(wasmfile) {
            Ok(resolved) => resolved,
            Err(error) => panic!("{error}"),
        }
    }

    /// The error for `wasmfile`, with the project folder shown as `<root>`.
    pub fn error(&self, wasmfile: &str) -> SpecError {
        self.error_with(wasmfile, &[])
    }

    pub fn error_with(&self, wasmfile: &str, build_args: &[(&str, &str)]) -> SpecError {
        match self.load_with(wasmfile, build_args) {
            Ok(resolved) => panic!("expected an error, got {:#?}", resolved.plan),
            Err(error) => error,
        }
    }

    /// An error's message as the user sees it, with the project folder shown as `<root>`.
    pub fn show(&self, error: &SpecError) -> String {
        error
            .to_string()
            .replace(&self.root.display().to_string(), "<root>")
    }
}
