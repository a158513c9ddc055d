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
    #[error("the toolchain `{toolchain}` is not supported by this version of wasmbuild")]
    Unsupported { toolchain: String },
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
            BuildError::MissingOutput { .. } => {
                Some("set `[build] output` to where the command writes the module (relative to the context)".to_owned())
            }
            _ => None,
        }
    }
}
