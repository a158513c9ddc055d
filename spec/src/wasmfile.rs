//! The Wasmfile as written: serde types that mirror the TOML one to one.
//!
//! These types only describe the syntax; defaults that depend on other keys, `${ARG}`
//! interpolation, toolchain detection and path checks happen when they are resolved into a
//! [`BuildPlan`](crate::BuildPlan). Their doc comments become the descriptions in
//! `wasmfile.schema.json`, which editors use for completion, so they are written for users.
//!
//! Keys that only apply to some toolchains are `Option`s: resolution must know whether the
//! user wrote them (to reject `sources` in a cargo build, say), not just their value.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::plan::{ExecModel, ImageFormat, OnFailure, OptLevel, Os, Strip};

/// A Wasmfile: how to build a WASI preview-1 module and pack it into an OCI image.
///
/// Every string value outside `[args]` may use `${NAME}` to insert a build arg declared in
/// `[args]` (`$${` writes a literal `${`). Enum values (`toolchain`, `level`, `strip`,
/// `on-failure`, `format`, `os`) and table keys are taken literally.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(title = "Wasmfile")]
pub struct Wasmfile {
    /// How the module is built.
    pub build: BuildSection,
    /// How the built module is optimized and stripped.
    pub optimize: OptimizeSection,
    /// Ahead-of-time compilation with wasmtime, pushed as artifacts next to the image.
    pub precompile: PrecompileSection,
    /// The image config and the references the image gets.
    pub image: ImageSection,
    /// Files placed beside the module in the image, like a Dockerfile `COPY`.
    pub copy: Vec<CopyEntry>,
    /// Build args and their defaults: `${NAME}` in any other string value is replaced by the
    /// value, which `--build-arg NAME=VALUE` overrides. Values here are not interpolated.
    pub args: BTreeMap<String, String>,
}

/// `[build]`: the toolchain and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(
    default,
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "the [build] table"
)]
pub struct BuildSection {
    /// The toolchain that builds the module. Omitted: detected from the context
    /// (`Cargo.toml` → cargo, `go.mod` → go, `*.c` → clang; a `module` key means prebuilt).
    /// Taken literally: `${NAME}` is not replaced here.
    pub toolchain: Option<ToolchainKind>,
    /// The source folder, relative to the Wasmfile's folder; it must not lie outside it.
    pub context: String,
    /// Extra environment variables for the toolchain.
    pub env: BTreeMap<String, String>,

    /// cargo: the package to build (`cargo build -p`), for workspaces.
    pub package: Option<String>,
    /// cargo: the binary target to build (`--bin`).
    pub bin: Option<String>,
    /// cargo: the profile to build with.
    #[schemars(extend("default" = "release"))]
    pub profile: Option<String>,
    /// cargo: features to enable.
    pub features: Option<Vec<String>>,
    /// cargo: do not enable the package's default features.
    #[schemars(extend("default" = false))]
    pub no_default_features: Option<bool>,

    /// clang: C source files to compile, as glob patterns relative to the context.
    #[schemars(extend("default" = ["*.c"]))]
    pub sources: Option<Vec<String>>,
    /// clang: include folders (`-I`), relative to the context.
    pub include: Option<Vec<String>>,
    /// clang: preprocessor definitions (`-D`), such as `NDEBUG` or `LEVEL=2`.
    pub defines: Option<Vec<String>>,
    /// clang, go, tinygo: extra flags for the compiler.
    pub flags: Option<Vec<String>>,
    /// clang: libraries to link (`-l`), such as `m`.
    pub libs: Option<Vec<String>>,

    /// go, tinygo: the main package to build.
    #[schemars(extend("default" = "."))]
    pub main: Option<String>,

    /// prebuilt: the `.wasm` module to pack, relative to the context.
    pub module: Option<String>,

    /// Any toolchain: build by running this command in the context instead (program, then
    /// arguments; no shell). Needs `output`.
    pub command: Option<Vec<String>>,
    /// With `command`: where the command leaves the module, relative to the context.
    pub output: Option<String>,

    /// Imports allowed besides `wasi_snapshot_preview1`, as `module.name` or `module.*`
    /// (for a host that provides them). Anything else imported fails the build.
    pub allow_imports: Vec<String>,
    /// `command` (exports `_start`, runs once) or `reactor` (exports `_initialize`, a library
    /// a host calls into). Taken literally.
    pub exec_model: ExecModel,
}

impl Default for BuildSection {
    fn default() -> Self {
        BuildSection {
            toolchain: None,
            context: ".".to_owned(),
            env: BTreeMap::new(),
            package: None,
            bin: None,
            profile: None,
            features: None,
            no_default_features: None,
            sources: None,
            include: None,
            defines: None,
            flags: None,
            libs: None,
            main: None,
            module: None,
            command: None,
            output: None,
            allow_imports: Vec::new(),
            exec_model: ExecModel::Command,
        }
    }
}

/// The toolchains a Wasmfile can name in `[build] toolchain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolchainKind {
    /// `cargo build --target wasm32-wasip1`.
    Cargo,
    /// clang with wasi-libc (wasi-sdk).
    Clang,
    /// `GOOS=wasip1 GOARCH=wasm go build`.
    Go,
    /// `tinygo build -target=wasip1`.
    Tinygo,
    /// A module that is already built (`module`).
    Prebuilt,
}

impl ToolchainKind {
    /// The name as written in a Wasmfile.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolchainKind::Cargo => "cargo",
            ToolchainKind::Clang => "clang",
            ToolchainKind::Go => "go",
            ToolchainKind::Tinygo => "tinygo",
            ToolchainKind::Prebuilt => "prebuilt",
        }
    }
}

/// `[optimize]`: what `wasm-opt` does to the built module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(
    default,
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "the [optimize] table"
)]
pub struct OptimizeSection {
    /// Optimization level. Taken literally: `${NAME}` is not replaced here.
    pub level: OptLevel,
    /// Custom sections to remove: `debug` removes DWARF and `producers`, `all` also the name
    /// section. Taken literally: `${NAME}` is not replaced here.
    pub strip: Strip,
    /// What happens when `wasm-opt` fails, or makes the module larger at `Os` or `Oz`:
    /// `error` stops the build; `warn` warns and packs the module without `wasm-opt`'s
    /// changes (still stripped). Taken literally: `${NAME}` is not replaced here.
    pub on_failure: OnFailure,
}

/// `[precompile]`: native code for wasmtime, so the image starts without compiling.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(
    default,
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "the [precompile] table"
)]
pub struct PrecompileSection {
    /// Target triples to precompile for; `[]` turns precompilation off.
    pub targets: Vec<String>,
}

impl Default for PrecompileSection {
    fn default() -> Self {
        PrecompileSection {
            targets: vec![
                "x86_64-unknown-linux-gnu".to_owned(),
                "aarch64-unknown-linux-gnu".to_owned(),
            ],
        }
    }
}

/// `[image]`: the image config and its references.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(
    default,
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "the [image] table"
)]
pub struct ImageSection {
    /// The repository, such as `ghcr.io/me/app`. Omitted: only the references given with
    /// `-t`; without them, `$WASMBUILD_REPO/<module name>`, else `<module name>:latest`.
    pub name: Option<String>,
    /// Tags given to `name`.
    pub tags: Vec<String>,
    /// `image` (for Docker, containerd/runwasi, crun) or `artifact` (the CNCF Wasm OCI
    /// artifact). Taken literally: `${NAME}` is not replaced here.
    pub format: ImageFormat,
    /// The `os` of the image config. Taken literally: `${NAME}` is not replaced here.
    pub os: Os,
    /// The program and its first arguments. Omitted: `["/<module name>.wasm"]`.
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments after the entrypoint.
    pub cmd: Vec<String>,
    /// Environment variables of the running module.
    pub env: BTreeMap<String, String>,
    /// The working directory of the running module (an absolute path in the image).
    pub workdir: String,
    /// Labels of the image config.
    pub labels: BTreeMap<String, String>,
    /// Manifest annotations, added to the `org.opencontainers.image.*` ones wasmbuild fills
    /// in from `Cargo.toml`, `go.mod` and git.
    pub annotations: BTreeMap<String, String>,
}

impl Default for ImageSection {
    fn default() -> Self {
        ImageSection {
            name: None,
            tags: vec!["latest".to_owned()],
            format: ImageFormat::default(),
            os: Os::default(),
            entrypoint: None,
            cmd: Vec::new(),
            env: BTreeMap::new(),
            workdir: "/".to_owned(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }
}

/// `[[copy]]`: a file or folder from the context placed in the image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a [[copy]] table"
)]
pub struct CopyEntry {
    /// A file or folder, relative to the context; it must exist inside the context.
    pub from: String,
    /// Where it goes in the image: an absolute path; ending in `/` means "into this folder".
    pub to: String,
}
