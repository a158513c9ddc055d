//! Go (`GOOS=wasip1 GOARCH=wasm go build`) and TinyGo (`tinygo build -target=wasip1`).

use std::path::PathBuf;

use wasmbuild_spec::{BuildPlan, GoSettings};

use crate::{BuildError, Reporter};

/// Which Go compiler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Go,
    TinyGo,
}

pub fn build(
    _plan: &BuildPlan,
    _settings: &GoSettings,
    flavor: Flavor,
    _reporter: &dyn Reporter,
) -> Result<(String, PathBuf), BuildError> {
    let toolchain = match flavor {
        Flavor::Go => "go",
        Flavor::TinyGo => "tinygo",
    };
    Err(BuildError::Unsupported {
        toolchain: toolchain.to_owned(),
    })
}
