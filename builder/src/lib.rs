//! Turns a [`BuildPlan`] into [`Artifacts`]: runs the project's toolchain, then checks that
//! what came out is a WASI preview-1 command module. Progress goes through a [`Reporter`];
//! this crate never prints.

pub mod cache;
pub mod engine;
mod error;
mod features;
pub mod optimize;
pub mod precompile;
mod strip;
pub mod toolchain;
pub mod validate;

use std::path::PathBuf;

use wasmbuild_spec::{BuildPlan, Toolchain};

pub use cache::Cache;
pub use error::BuildError;
pub use precompile::Precompiled;
pub use validate::{ModuleInfo, inspect_module};

/// Receives progress from a build. The CLI draws it; tests may record it.
pub trait Reporter: Sync {
    /// A named step begins ("compile", "validate").
    fn step(&self, name: &str, detail: &str);
    /// One line of a toolchain's own output (stderr), as it arrives.
    fn output(&self, line: &str);
    /// Something the user should know that does not stop the build.
    fn warn(&self, message: &str);
}

/// A size in decimal units, as progress and `images` show it (`80.9 kB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A reporter that drops everything.
pub struct Silent;

impl Reporter for Silent {
    fn step(&self, _: &str, _: &str) {}
    fn output(&self, _: &str) {}
    fn warn(&self, _: &str) {}
}

/// What a build produces for the packer.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// The module's name, used for `/<name>.wasm` in the image.
    pub name: String,
    /// Where the toolchain left the module.
    pub path: PathBuf,
    /// The module's bytes: built, validated, stripped and optimized, validated again.
    pub module: Vec<u8>,
    pub info: ModuleInfo,
    pub optimized: optimize::Report,
    /// One per `[precompile] targets` entry, in that order.
    pub precompiled: Vec<Precompiled>,
}

/// Builds the plan's module, checks it, optimizes it and precompiles it.
pub fn build(
    plan: &BuildPlan,
    cache: &Cache,
    reporter: &dyn Reporter,
) -> Result<Artifacts, BuildError> {
    let (name, path) = match &plan.toolchain {
        Toolchain::Cargo(settings) => toolchain::cargo::build(plan, settings, reporter)?,
        Toolchain::Clang(settings) => toolchain::clang::build(plan, settings, reporter)?,
        Toolchain::Go(settings) => {
            toolchain::go::build(plan, settings, toolchain::go::Flavor::Go, reporter)?
        }
        Toolchain::TinyGo(settings) => {
            toolchain::go::build(plan, settings, toolchain::go::Flavor::TinyGo, reporter)?
        }
        Toolchain::Prebuilt { module } => toolchain::prebuilt(module, reporter)?,
        Toolchain::Command { command, output } => {
            toolchain::command::build(plan, command, output, reporter)?
        }
    };
    let module = std::fs::read(&path).map_err(|source| BuildError::Io {
        path: path.clone(),
        source,
    })?;
    reporter.step("validate", &format!("{} bytes", module.len()));
    let info = validate::check(&module, &plan.policy).map_err(|error| BuildError::Invalid {
        path: path.clone(),
        error,
    })?;
    let (module, optimized) = optimize::run(module, &info, &plan.optimize, cache, reporter)?;
    // What the optimizer wrote passes the same gate as what the toolchain wrote.
    let info =
        validate::check(&module, &plan.policy).map_err(|error| BuildError::Optimized { error })?;
    let precompiled = precompile::run(&module, &plan.precompile.targets, cache, reporter)?;
    Ok(Artifacts {
        name,
        path,
        module,
        info,
        optimized,
        precompiled,
    })
}
