//! The resolved build plan: everything later stages need, with defaults applied,
//! `${ARG}`s substituted and paths made absolute and checked against the context.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A fully resolved build: the only input `builder` and `packer` take from a Wasmfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    /// The Wasmfile this plan was read from (absolute).
    pub wasmfile: PathBuf,
    /// The build context (absolute, canonical); every other path lies inside it.
    pub context: PathBuf,
    pub toolchain: Toolchain,
    /// Extra environment for the toolchain (`[build] env`).
    pub env: BTreeMap<String, String>,
    pub optimize: Optimize,
    pub precompile: Precompile,
    pub image: ImageConfig,
    pub copies: Vec<CopyRule>,
    /// Build args after `--build-arg` overrides (declared ones only).
    pub args: BTreeMap<String, String>,
    /// What the built module may import and export.
    pub policy: Policy,
}

/// The gate every module passes before it is packed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// Imports allowed besides `wasi_snapshot_preview1`: `module.name` or `module.*`.
    pub allow_imports: Vec<String>,
    pub exec_model: ExecModel,
}

/// How a host runs the module (WASI's "execution model").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecModel {
    /// Exports `_start`: run once, like a process.
    #[default]
    Command,
    /// Exports `_initialize` and functions a host calls; no `_start`.
    Reactor,
}

/// How the module is produced, with the settings that belong to that toolchain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toolchain {
    Cargo(CargoSettings),
    Clang(ClangSettings),
    Go(GoSettings),
    TinyGo(GoSettings),
    /// A module that is already built (absolute path inside the context).
    Prebuilt {
        module: PathBuf,
    },
    /// Any command (run in the context) that leaves a module at `output`.
    Command {
        command: Vec<String>,
        output: PathBuf,
    },
}

impl Toolchain {
    pub fn name(&self) -> &'static str {
        match self {
            Toolchain::Cargo(_) => "cargo",
            Toolchain::Clang(_) => "clang",
            Toolchain::Go(_) => "go",
            Toolchain::TinyGo(_) => "tinygo",
            Toolchain::Prebuilt { .. } => "prebuilt",
            Toolchain::Command { .. } => "command",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CargoSettings {
    pub package: Option<String>,
    pub bin: Option<String>,
    /// Cargo profile name; `release` unless the Wasmfile says otherwise.
    pub profile: String,
    pub features: Vec<String>,
    pub no_default_features: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClangSettings {
    /// Glob patterns relative to the context.
    pub sources: Vec<String>,
    pub include: Vec<PathBuf>,
    pub defines: Vec<String>,
    pub flags: Vec<String>,
    pub libs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoSettings {
    pub main: String,
    pub flags: Vec<String>,
}

/// How hard `wasm-opt` works on the module (its `-O` levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum OptLevel {
    /// Do not optimize.
    #[serde(rename = "none")]
    None,
    /// `-O1`: quick passes only.
    O1,
    /// `-O2`: most passes.
    O2,
    /// `-O3`: also the slow passes.
    O3,
    /// `-O4`: like `O3`, with more inlining.
    O4,
    /// Optimize for size, keeping speed (the default).
    #[default]
    Os,
    /// Optimize for size above all.
    Oz,
}

/// Which custom sections are removed from the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strip {
    /// Keep every section.
    None,
    /// Debug info: DWARF (`.debug_*`), `producers`, `sourceMappingURL` and
    /// `external_debug_info`. The name section stays, so traces name functions.
    #[default]
    Debug,
    /// Every custom section, the name section too.
    All,
}

impl OptLevel {
    /// The word the Wasmfile uses (`none`, `Oz`).
    pub fn as_str(self) -> &'static str {
        match self {
            OptLevel::None => "none",
            OptLevel::O1 => "O1",
            OptLevel::O2 => "O2",
            OptLevel::O3 => "O3",
            OptLevel::O4 => "O4",
            OptLevel::Os => "Os",
            OptLevel::Oz => "Oz",
        }
    }
}

impl Strip {
    /// The word the Wasmfile uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Strip::None => "none",
            Strip::Debug => "debug",
            Strip::All => "all",
        }
    }
}

/// What the build does when `wasm-opt` fails, or makes the module larger at a size level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Stop the build with the error.
    #[default]
    Error,
    /// Warn, and pack the module as it was before `wasm-opt` (stripped as `strip` says).
    Warn,
}

impl OnFailure {
    /// The word the Wasmfile uses.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Error => "error",
            OnFailure::Warn => "warn",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Optimize {
    pub level: OptLevel,
    pub strip: Strip,
    pub on_failure: OnFailure,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precompile {
    /// Target triples; empty turns precompilation off.
    pub targets: Vec<String>,
}

/// Which kind of OCI manifest is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// An ordinary OCI image (Docker, containerd/runwasi, crun).
    #[default]
    Image,
    /// The CNCF TAG-Runtime Wasm OCI artifact.
    Artifact,
}

/// The `os` of the image config: runtimes select Wasm images by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    /// `wasi`: what Docker, containerd/runwasi and crun look for.
    #[default]
    Wasi,
    /// `wasip1`: the platform name Go and the OCI Wasm working group use.
    Wasip1,
}

impl Os {
    pub fn as_str(self) -> &'static str {
        match self {
            Os::Wasi => "wasi",
            Os::Wasip1 => "wasip1",
        }
    }
}

/// `[image]`: what goes into the image config and which references it gets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageConfig {
    /// Repository from `[image] name` (not yet normalized), if any.
    pub name: Option<String>,
    /// Tags for `name` (`[image] tags`).
    pub tags: Vec<String>,
    pub format: ImageFormat,
    pub os: Os,
    /// `None`: `["/<module name>.wasm"]`, decided once the module's name is known.
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub workdir: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// `[[copy]]`: host files (absolute, inside the context) placed at `to` in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRule {
    pub from: PathBuf,
    /// Absolute path in the image; ending in `/` means "into this folder".
    pub to: String,
}
