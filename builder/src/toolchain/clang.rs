//! clang with wasi-libc: compiles `sources` and links a WASI command with lld.

use std::path::PathBuf;

use wasmbuild_spec::{BuildPlan, ClangSettings};

use crate::{BuildError, Reporter};

pub fn build(
    _plan: &BuildPlan,
    _settings: &ClangSettings,
    _reporter: &dyn Reporter,
) -> Result<(String, PathBuf), BuildError> {
    Err(BuildError::Unsupported {
        toolchain: "clang".to_owned(),
    })
}
