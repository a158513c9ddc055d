//! Toolchain drivers: each runs one kind of build and says where the module is.

pub mod cargo;
mod process;

use std::path::{Path, PathBuf};

use crate::{BuildError, Reporter};

/// A module that was built elsewhere: nothing to run.
pub fn prebuilt(module: &Path, reporter: &dyn Reporter) -> Result<(String, PathBuf), BuildError> {
    reporter.step("prebuilt", &module.display().to_string());
    let name = module
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "module".to_owned());
    Ok((name, module.to_path_buf()))
}
