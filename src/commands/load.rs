//! `wasmbuild load -i FILE.tar`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  wasmbuild load -i hello.tar
  skopeo copy docker://ghcr.io/me/app:1.0 oci-archive:app.tar:ghcr.io/me/app:1.0
  wasmbuild load -i app.tar")]
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
