//! `wasmbuild save -o FILE.tar REF...`: an OCI archive that `load`, skopeo and `docker load` read.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  wasmbuild save -o hello.tar hello ghcr.io/me/app:1.0
  wasmbuild save -o - hello | gzip > hello.tar.gz
  skopeo copy oci-archive:hello.tar:docker.io/library/hello:latest docker://localhost:5000/hello")]
pub struct Args {
    /// The archive to write (`-` for stdout)
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    pub output: PathBuf,
    /// Images to put in it
    #[arg(required = true)]
    pub references: Vec<String>,
}

pub fn run(args: Args, _global: &GlobalArgs) -> Result<ExitCode> {
    if args.output.as_os_str() == "-" && std::io::stdout().is_terminal() {
        return Err(super::hinted(
            "refusing to write a tar archive to a terminal",
            "redirect stdout or use `-o FILE.tar`",
        ));
    }
    let references = args
        .references
        .iter()
        .map(|r| super::reference(r))
        .collect::<Result<Vec<_>>>()?;
    let store = crate::home::store()?;
    if args.output.as_os_str() == "-" {
        let mut stdout = std::io::stdout().lock();
        store.save_to(&references, &mut stdout)?;
    } else {
        store.save(&references, &args.output)?;
    }
    Ok(ExitCode::SUCCESS)
}
