//! One module per subcommand, each with its `Args` and a `run`.

pub mod build;
pub mod cache;
pub mod completions;
pub mod images;
pub mod init;
pub mod inspect;
pub mod load;
pub mod login;
pub mod pull;
pub mod push;
pub mod registry;
pub mod rmi;
pub mod run;
pub mod save;
pub mod shim;
pub mod tag;
pub mod version;

use std::process::ExitCode;

/// An error from the CLI itself that comes with advice.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Hinted {
    pub message: String,
    pub hint: String,
}

pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    Hinted {
        message: message.into(),
        hint: hint.into(),
    }
    .into()
}

/// `wasmbuild schema`: the Wasmfile's JSON Schema, for editors.
pub fn schema() -> anyhow::Result<ExitCode> {
    outln!("{}", wasmbuild_spec::schema_json().trim_end());
    Ok(ExitCode::SUCCESS)
}

/// Parses a reference given on the command line, naming the flag in the error.
pub fn reference(text: &str) -> anyhow::Result<wasmbuild_packer::Reference> {
    text.parse().map_err(|e| {
        anyhow::Error::new(e).context(format!("`{text}` is not a valid image reference"))
    })
}
