//! Errors of packing and unpacking images.

use std::io;
use std::path::PathBuf;

/// Packing an image, or reading or unpacking one of its layers, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// Reading or writing a host file failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A `[[copy]]` source cannot go into the image as it is.
    #[error("cannot copy {} into the image: {reason}", from.display())]
    Copy { from: PathBuf, reason: String },
    /// A path inside the image (`to`, the entrypoint) is not usable.
    #[error("invalid path {path:?} in the image: {reason}")]
    ImagePath { path: String, reason: String },
    /// Two things want the same path in the image.
    #[error("{path:?} in the image: {reason}")]
    Conflict { path: String, reason: String },
    #[error("invalid module name {name:?}: {reason}")]
    ModuleName { name: String, reason: &'static str },
    /// A precompile target that cannot name a file (`<name>.<target>.cwasm`).
    #[error(
        "invalid target {target:?}: a target triple has only letters, digits, `_`, `.` and `-`"
    )]
    Target { target: String },
    #[error("SOURCE_DATE_EPOCH {value} is out of range: it must be between 0 and 8589934591")]
    SourceDateEpoch { value: i64 },
    /// `format = "artifact"` has exactly one layer: the module.
    #[error(
        "format = \"artifact\" holds only the module, so it cannot take [[copy]] files ({count} given); use format = \"image\""
    )]
    ArtifactCopies { count: usize },
    /// The layer is not a readable gzip'd tar.
    #[error("cannot read the layer: {source}")]
    Layer {
        #[source]
        source: io::Error,
    },
    /// A layer entry that unpacking refuses (it would escape the root, or is a device…).
    #[error("refusing layer entry {entry:?}: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    /// A layer entry over one of the limits on reading a layer (entries, bytes in one
    /// entry, bytes in the layer); nothing of it or after it is read.
    #[error("refusing layer entry {entry:?}: {reason}")]
    LayerLimit { entry: String, reason: String },
    /// The headers of a layer entry (PAX records, GNU long names) are larger than reading
    /// a layer keeps in memory.
    #[error(
        "refusing layer: the headers of the entry {} take more than {limit} (PAX records or GNU long names), the most one entry's headers may take",
        after.as_ref().map_or_else(|| "at its start".to_owned(), |name| format!("after {name:?}"))
    )]
    LayerHeaders {
        /// The entry before, if there is one.
        after: Option<String>,
        limit: String,
    },
    /// Writing an unpacked entry failed.
    #[error("cannot unpack layer entry {entry:?} to {}", path.display())]
    Unpack {
        entry: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `find_file` found the path, but it is not a file.
    #[error("{path:?} in the layer is {what}, not a file")]
    NotAFile { path: String, what: &'static str },
}

impl PackError {
    /// What to try next, where something more than the message helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            PackError::SourceDateEpoch { .. } => Some("set SOURCE_DATE_EPOCH to a Unix time in seconds, e.g. `$(git log -1 --format=%ct)`".to_owned()),
            PackError::ArtifactCopies { .. } => Some("remove the [[copy]] tables or set `[image] format = \"image\"`".to_owned()),
            _ => None,
        }
    }
}
