//! Errors in a Wasmfile or Dockerfile, each with what a person needs to fix it: the file, the line and
//! column of the offending key or value, what was wrong and what was expected, and a hint.

use std::fmt;
use std::path::{Path, PathBuf};

/// A 1-based line and column (in characters) in the Wasmfile or Dockerfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// `<path>:<line>:<col>` or just `<path>`: the prefix of every message, as compilers print it
/// so that terminals and editors can jump to the spot.
struct At<'a>(&'a Path, &'a Option<Location>);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(location) => write!(f, "{}:{location}", self.0.display()),
            None => write!(f, "{}", self.0.display()),
        }
    }
}

/// `SpecError::EscapesContext::within` for `context`.
pub(crate) const WASMFILE_FOLDER: &str = "the Wasmfile's folder";
/// `SpecError::EscapesContext::within` for every path but `context`.
pub(crate) const BUILD_CONTEXT: &str = "the build context";

/// Why a Wasmfile or Dockerfile could not be turned into a [`BuildPlan`](crate::BuildPlan).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// A file or folder could not be read (the reason is the error's source).
    #[error("{}: cannot read {what}", .path.display())]
    Io {
        path: PathBuf,
        /// What `path` is, such as "the Wasmfile".
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The file is not valid TOML.
    #[error("{}: invalid TOML: {message}", At(.path, .location))]
    Syntax {
        path: PathBuf,
        location: Option<Location>,
        message: String,
    },

    /// A key the Wasmfile format does not have.
    #[error("{}: unknown key `{key}` in {table}, {expected}", At(.path, .location))]
    UnknownKey {
        path: PathBuf,
        location: Option<Location>,
        key: String,
        /// Where it was found, such as `[image]` or `the Wasmfile` (the top level).
        table: String,
        /// The keys allowed there, as serde words it ("expected one of `a`, `b`").
        expected: String,
        /// The closest valid key, if one is close.
        suggestion: Option<String>,
        /// Another table where this key is valid, such as `[image]` for `tags`.
        belongs_in: Option<String>,
    },

    /// A value of the wrong type, or not one of the allowed values.
    #[error("{}: invalid value for {key}: {message}", At(.path, .location))]
    InvalidValue {
        path: PathBuf,
        location: Option<Location>,
        /// The key, as "`tags` in \[image\]".
        key: String,
        message: String,
        /// The closest allowed value, for an enum value that is almost right.
        suggestion: Option<String>,
    },

    /// A path that resolves outside the folder it must stay in.
    #[error(
        "{}: {key} = {value:?} resolves {}to {}, outside {within} {}",
        At(.path, .location),
        if *.via_symlink { "through a symlink " } else { "" },
        .resolved.display(),
        .base.display()
    )]
    EscapesContext {
        path: PathBuf,
        location: Option<Location>,
        /// The key, as "`from` in \[\[copy\]\]".
        key: String,
        /// The path as written (after `${ARG}` interpolation).
        value: String,
        /// Where it leads.
        resolved: PathBuf,
        /// What `base` is: "the build context" or "the Wasmfile's folder".
        within: &'static str,
        /// The folder it must stay in.
        base: PathBuf,
        /// True when the path is inside lexically but a symlink leads out.
        via_symlink: bool,
    },

    /// A path that must exist does not.
    #[error(
        "{}: {key} = {value:?} does not exist (looked for {})",
        At(.path, .location),
        .resolved.display()
    )]
    Missing {
        path: PathBuf,
        location: Option<Location>,
        key: String,
        value: String,
        resolved: PathBuf,
        hint: Option<String>,
    },

    /// `${NAME}` is used but `[args]` does not declare `NAME`.
    #[error(
        "{}: `${{{name}}}` is used but [args] does not declare `{name}`",
        At(.path, .location)
    )]
    UndefinedArg {
        path: PathBuf,
        location: Option<Location>,
        name: String,
        /// Whether `--build-arg NAME=...` was given (it does not declare an arg).
        given_on_command_line: bool,
    },

    /// A key that belongs to another toolchain than the one this Wasmfile builds with.
    #[error(
        "{}: `{key}` applies to {applies_to}, but this Wasmfile builds with {builds_with}",
        At(.path, .location)
    )]
    WrongToolchainKey {
        path: PathBuf,
        location: Option<Location>,
        key: String,
        /// "toolchain clang", "toolchains go and tinygo", "a `command` build".
        applies_to: String,
        /// "cargo", "cargo (detected from Cargo.toml)", "its `command`".
        builds_with: String,
    },

    /// No toolchain given and none could be detected from the context.
    #[error(
        "{}: cannot tell which toolchain builds this project: {} has no Cargo.toml, go.mod or *.c file",
        .path.display(),
        .context.display()
    )]
    Detect { path: PathBuf, context: PathBuf },

    /// Any other invalid value: an empty command, a relative `to`, a bad variable name...
    #[error("{}: {message}", At(.path, .location))]
    Invalid {
        path: PathBuf,
        location: Option<Location>,
        message: String,
        hint: Option<String>,
    },

    /// A Dockerfile instruction, flag or form that a Wasm image cannot have, such as `RUN`.
    #[error("{}: {message}", At(.path, .location))]
    Unsupported {
        path: PathBuf,
        location: Option<Location>,
        /// The instruction, upper case, such as `RUN` or `COPY`.
        instruction: String,
        message: String,
        hint: Option<String>,
    },

    /// A `--build-arg` that is not `NAME=VALUE`.
    #[error("--build-arg {arg:?}: {message}")]
    BuildArg { arg: String, message: String },
}

impl SpecError {
    /// The file the error is about (none for a bad `--build-arg`).
    pub fn path(&self) -> Option<&Path> {
        match self {
            SpecError::Io { path, .. }
            | SpecError::Syntax { path, .. }
            | SpecError::UnknownKey { path, .. }
            | SpecError::InvalidValue { path, .. }
            | SpecError::EscapesContext { path, .. }
            | SpecError::Missing { path, .. }
            | SpecError::UndefinedArg { path, .. }
            | SpecError::WrongToolchainKey { path, .. }
            | SpecError::Detect { path, .. }
            | SpecError::Invalid { path, .. }
            | SpecError::Unsupported { path, .. } => Some(path),
            SpecError::BuildArg { .. } => None,
        }
    }

    /// Where in the Wasmfile the error is, when it is about a key or value written there.
    pub fn location(&self) -> Option<Location> {
        match self {
            SpecError::Syntax { location, .. }
            | SpecError::UnknownKey { location, .. }
            | SpecError::InvalidValue { location, .. }
            | SpecError::EscapesContext { location, .. }
            | SpecError::Missing { location, .. }
            | SpecError::UndefinedArg { location, .. }
            | SpecError::WrongToolchainKey { location, .. }
            | SpecError::Invalid { location, .. }
            | SpecError::Unsupported { location, .. } => *location,
            SpecError::Io { .. } | SpecError::Detect { .. } | SpecError::BuildArg { .. } => None,
        }
    }

    /// What to do about it, for the CLI to print as `hint: …`.
    pub fn hint(&self) -> Option<String> {
        match self {
            SpecError::Io { .. } | SpecError::Syntax { .. } => None,
            SpecError::UnknownKey {
                key,
                suggestion,
                belongs_in,
                ..
            } => match (suggestion, belongs_in) {
                (Some(suggestion), _) => Some(format!("did you mean `{suggestion}`?")),
                (None, Some(table)) => Some(format!("`{key}` belongs in {table}")),
                (None, None) => None,
            },
            SpecError::InvalidValue { suggestion, .. } => suggestion
                .as_ref()
                .map(|suggestion| format!("did you mean `{suggestion}`?")),
            SpecError::EscapesContext { within, .. } if *within == WASMFILE_FOLDER => Some(
                "the context must be the Wasmfile's folder or a folder inside it; \
                 move the Wasmfile up instead"
                    .to_owned(),
            ),
            SpecError::EscapesContext { .. } => Some(
                "paths are relative to the build context and must stay inside it, \
                 so that a build only reads what the context holds"
                    .to_owned(),
            ),
            SpecError::Missing { hint, .. } => hint.clone(),
            SpecError::UndefinedArg {
                name,
                given_on_command_line,
                ..
            } => {
                let mut hint = format!("declare it with a default under [args]: {name} = \"\"");
                if *given_on_command_line {
                    hint.push_str(&format!(
                        "; --build-arg {name}=... only overrides args the Wasmfile declares"
                    ));
                }
                Some(hint)
            }
            SpecError::WrongToolchainKey { key, .. } => Some(format!(
                "remove `{key}`, or set `[build] toolchain` to the toolchain it belongs to"
            )),
            SpecError::Detect { .. } => Some(
                "set `[build] toolchain` to cargo, clang, go, tinygo or prebuilt \
                 (or give `command` and `output`)"
                    .to_owned(),
            ),
            SpecError::Invalid { hint, .. } | SpecError::Unsupported { hint, .. } => hint.clone(),
            SpecError::BuildArg { .. } => {
                Some("write --build-arg NAME=VALUE, e.g. --build-arg VERSION=1.0".to_owned())
            }
        }
    }
}
