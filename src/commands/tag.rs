//! `wasmbuild tag SOURCE TARGET`.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  wasmbuild tag hello ghcr.io/me/hello:1.0
  wasmbuild tag ghcr.io/me/app:1.0 ghcr.io/me/app:latest")]
pub struct Args {
    /// An image in the local store
    pub source: String,
    /// The new reference
    pub target: String,
}

pub fn run(args: Args, _global: &GlobalArgs) -> Result<ExitCode> {
    let source = super::reference(&args.source)?;
    let target = super::reference(&args.target)?;
    let descriptor = crate::home::store()?.tag(&source, &target)?;
    outln!("{target}@{}", descriptor.digest);
    Ok(ExitCode::SUCCESS)
}
