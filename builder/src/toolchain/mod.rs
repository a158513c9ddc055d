//! Toolchain drivers: each runs one kind of build and says where the module is.

pub mod cargo;
pub mod clang;
pub mod command;
pub mod go;
pub mod process;

use std::path::{Path, PathBuf};

use crate::{BuildError, Reporter};

/// A module that was built elsewhere: nothing to run.
pub fn prebuilt(module: &Path, reporter: &dyn Reporter) -> Result<(String, PathBuf), BuildError> {
    reporter.step("prebuilt", &module.display().to_string());
    Ok((module_name(module), module.to_path_buf()))
}

/// The module's name in the image, from its file name (`dist/app.wasm` → `app`).
pub fn module_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "module".to_owned())
}
