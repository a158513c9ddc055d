//! `wasmbuild load -i FILE.tar`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The OCI archive to read
    #[arg(short = 'i', long = "input", value_name = "FILE", required = true)]
    pub input: PathBuf,
}

pub fn run(args: Args, _global: &GlobalArgs) -> Result<ExitCode> {
    let loaded = crate::home::store()?.load(&args.input)?;
    for reference in loaded {
        outln!("Loaded image: {}", reference.familiar());
    }
    Ok(ExitCode::SUCCESS)
}
