use std::path::PathBuf;

use crate::validate::ModuleError;

/// Why a build failed, with what a person needs to act on it.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// The toolchain's stderr is not part of the message: it was streamed as it came. A
    /// caller that hid it (a quiet build) shows `stderr` itself.
    #[error("`{command}` failed ({status})")]
    ToolchainFailed {
        command: String,
        status: String,
        /// The last lines the toolchain wrote to stderr.
        stderr: String,
        hint: Option<String>,
    },
    #[error("`{command}` built no WebAssembly binary{}", match .bin { Some(b) => format!(" named `{b}`"), None => String::new() })]
    NoArtifact {
        command: String,
        bin: Option<String>,
        /// The binaries it did build.
        found: Vec<String>,
    },
    #[error("`{command}` built {} binaries, so which one is the module is not clear: {}", .found.len(), .found.join(", "))]
    Ambiguous { command: String, found: Vec<String> },
    #[error("`{command}` succeeded but left no module at {}", output.display())]
    MissingOutput { command: String, output: PathBuf },
    /// `origin` says where the name came from: "(from CC)", "on PATH".
    #[error("cannot find the C compiler `{compiler}` {origin}")]
    CompilerNotFound { compiler: String, origin: String },
    #[error("`{compiler}` {origin} is not clang: its `--version` says {said:?}")]
    NotClang {
        compiler: String,
        origin: String,
        said: String,
    },
    #[error("cannot find wasi-libc (a WASI sysroot); looked at {}", .looked.join(", "))]
    NoWasiLibc { looked: Vec<String> },
    /// clang succeeded without linking (a flag such as `-fsyntax-only`).
    #[error("`{command}` succeeded but wrote no new module at {}", output.display())]
    NoNewModule { command: String, output: PathBuf },
    /// A `sources` glob that matched nothing, is malformed, or reaches outside the context.
    #[error("the `sources` pattern {pattern:?} {problem}")]
    Sources { pattern: String, problem: String },
    #[error("the optimized module is not valid any more")]
    Optimized {
        #[source]
        error: ModuleError,
    },
    /// `[optimize] level` asks for binaryen's wasm-opt and there is none to run.
    #[error(
        "`level = \"{level}\"` in [optimize] needs binaryen's wasm-opt, {}",
        if *.from_env { format!("but WASM_OPT names `{program}`, which does not exist") } else { "which is not on PATH".to_owned() }
    )]
    WasmOptNotFound {
        level: String,
        program: String,
        /// Whether `program` came from WASM_OPT (else it is `wasm-opt`, looked up on PATH).
        from_env: bool,
    },
    /// The module uses proposals this wasm-opt has no `--enable-*` flag for.
    #[error("{version} cannot optimize this module: it has no flag for {}, which the module uses", .features.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "))]
    OptimizerUnsupported {
        version: String,
        features: Vec<String>,
    },
    /// At `Os` or `Oz`, wasm-opt made the module's code and data larger than they were.
    #[error("`{command}` made the module larger: {before} → {after} bytes of code and data")]
    OptimizedLarger {
        command: String,
        before: u64,
        after: u64,
    },
    #[error("the toolchain `{toolchain}` is not supported by this version of wasmbuild")]
    Unsupported { toolchain: String },
    /// The toolchain's program is not on PATH (`go`, `tinygo`).
    #[error("`{program}` is not installed: it is not on PATH")]
    NotInstalled { program: String, hint: String },
    /// The toolchain is older than its first release that builds WASI preview-1 modules.
    #[error(
        "{product} {found} is too old to build WASI preview-1 modules: {target} needs {product} ≥ {minimum}"
    )]
    TooOld {
        /// "Go", "TinyGo".
        product: String,
        /// The version it reported ("1.20.14").
        found: String,
        minimum: String,
        /// What needs the minimum ("GOOS=wasip1").
        target: String,
        hint: String,
    },
    /// `go build -o` of a package that is not `package main` writes a library archive.
    #[error("`{main}` is not a main package: `{command}` built a library archive, not a program")]
    NotMainPackage { command: String, main: String },
    /// A `[precompile] targets` entry wasmtime cannot compile for.
    #[error("cannot precompile for the target {target:?}: {reason}")]
    UnsupportedTarget { target: String, reason: String },
    /// wasmtime refused to compile the (already validated) module for a target.
    #[error("cannot precompile the module for {target}: {message}")]
    Precompile { target: String, message: String },
    #[error("{} is not a WASI preview-1 command module", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        error: ModuleError,
    },
}

impl BuildError {
    /// What to try next, where something more than the message helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            BuildError::ToolchainFailed { hint, .. } => hint.clone(),
            BuildError::NotInstalled { hint, .. } | BuildError::TooOld { hint, .. } => Some(hint.clone()),
            BuildError::NotMainPackage { .. } => {
                Some("set `[build] main` to a package with `package main` and `func main` (e.g. \"./cmd/app\")".to_owned())
            }
            BuildError::Spawn { command, source } if source.kind() == std::io::ErrorKind::NotFound => {
                let program = command.split_whitespace().next().unwrap_or(command);
                Some(match program {
                    "cargo" => "install Rust with rustup (https://rustup.rs), then `rustup target add wasm32-wasip1`".to_owned(),
                    _ => format!("install `{program}` or put it on PATH"),
                })
            }
            BuildError::NoArtifact { found, .. } if !found.is_empty() => {
                Some(format!("it builds {}; set `[build] bin` to one of them", found.join(", ")))
            }
            BuildError::Ambiguous { .. } => Some("set `[build] bin` (and `package` in a workspace) to choose one".to_owned()),
            BuildError::NoArtifact { .. } => Some("a binary target (src/main.rs or [[bin]]) is needed: libraries and cdylibs are not WASI commands".to_owned()),
            BuildError::Invalid { error, .. } => error.hint(),
            BuildError::CompilerNotFound { .. } => Some(
                "install clang, lld and wasi-libc (Debian: `apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32`), \
                 or set WASI_SDK_PATH to an unpacked wasi-sdk"
                    .to_owned(),
            ),
            BuildError::NotClang { .. } => {
                Some("WebAssembly needs clang: set CC to a clang, or unset it to use `clang` from PATH".to_owned())
            }
            BuildError::NoWasiLibc { .. } => Some(
                "install wasi-libc (Debian: `apt-get install wasi-libc libclang-rt-14-dev-wasm32`), or set \
                 WASI_SDK_PATH to an unpacked wasi-sdk, or WASI_SYSROOT to a wasi-sysroot"
                    .to_owned(),
            ),
            BuildError::NoNewModule { .. } => Some(
                "a flag in `flags` stops clang before it links (such as -fsyntax-only or -###): remove it".to_owned(),
            ),
            BuildError::Sources { .. } => Some(
                "patterns are relative to the build context; `*` matches within one folder, `**` any number of folders".to_owned(),
            ),
            BuildError::UnsupportedTarget { .. } => Some(format!(
                "set `[precompile] targets` to triples wasmtime compiles for, such as {}; `[]` turns precompiling off",
                crate::engine::SUPPORTED_TARGETS.join(", ")
            )),
            BuildError::WasmOptNotFound { from_env, .. } => Some(format!(
                "install binaryen (Debian: `apt-get install binaryen`) {}, or set `level = \"none\"` in [optimize] to build without it",
                if *from_env {
                    "and point WASM_OPT at its wasm-opt, or unset WASM_OPT to use the one on PATH"
                } else {
                    "or set WASM_OPT to a wasm-opt binary"
                }
            )),
            BuildError::OptimizerUnsupported { .. } => Some(
                "install a newer binaryen (or set WASM_OPT to one), or set `on-failure = \"warn\"` in [optimize] to pack the module without wasm-opt's changes".to_owned(),
            ),
            BuildError::Optimized { .. } => Some(
                "wasm-opt wrote it: set `on-failure = \"warn\"` in [optimize] to pack the module without wasm-opt's changes, or `level = \"none\"` to skip wasm-opt".to_owned(),
            ),
            BuildError::OptimizedLarger { .. } => Some(
                "choose another `level` in [optimize], or set `on-failure = \"warn\"` there to pack the module without wasm-opt's changes".to_owned(),
            ),
            BuildError::MissingOutput { .. } => {
                Some("set `[build] output` to where the command writes the module (relative to the context)".to_owned())
            }
            _ => None,
        }
    }
}
