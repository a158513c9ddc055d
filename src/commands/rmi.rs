//! `wasmbuild rmi REF...`.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  wasmbuild rmi hello
  wasmbuild rmi ghcr.io/me/app:1.0 ghcr.io/me/app:latest")]
pub struct Args {
    /// References to remove
    #[arg(required = true)]
    pub references: Vec<String>,
}

pub fn run(args: Args, _global: &GlobalArgs) -> Result<ExitCode> {
    let store = crate::home::store()?;
    // Check them all first: a typo in the third leaves the first two in place.
    let references = args
        .references
        .iter()
        .map(|r| super::reference(r))
        .collect::<Result<Vec<_>>>()?;
    for reference in &references {
        store.resolve(reference)?;
    }
    for reference in &references {
        let descriptor = store.remove(reference)?;
        outln!("Untagged: {}@{}", reference.familiar(), descriptor.digest);
    }
    Ok(ExitCode::SUCCESS)
}
