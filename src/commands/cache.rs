//! `wasmbuild cache ls|prune`: the step cache under `$WASMBUILD_HOME/cache`, with what `run`
//! keeps there (unpacked images, compiled modules, verified blobs).

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use wasmbuild_builder::Cache;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  wasmbuild cache ls
  wasmbuild cache prune --older-than 30
  wasmbuild cache prune")]
pub struct Args {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// List the cached step results
    Ls,
    /// Remove cached step results
    Prune {
        /// Only those not written for this many days
        #[arg(long, value_name = "DAYS")]
        older_than: Option<u64>,
    },
}

pub fn run(args: Args, _global: &GlobalArgs) -> Result<ExitCode> {
    let root = crate::home::home()?.join("cache");
    let cache = Cache::at(&root);
    match args.command {
        CacheCommand::Ls => {
            let entries = cache
                .entries()
                .with_context(|| format!("cannot read {}", root.display()))?;
            outln!("{:<11} {:<64}  SIZE", "STEP", "KEY");
            for entry in &entries {
                outln!(
                    "{:<11} {:<64}  {}",
                    entry.step,
                    entry.key,
                    super::build::human_size(entry.size)
                );
            }
        }
        CacheCommand::Prune { older_than } => {
            let limit =
                older_than.map(|days| SystemTime::now() - Duration::from_secs(days * 86_400));
            let removed = cache
                .prune(limit)
                .with_context(|| format!("cannot prune {}", root.display()))?;
            let bytes: u64 = removed.iter().map(|e| e.size).sum();
            outln!(
                "removed {} entries ({})",
                removed.len(),
                super::build::human_size(bytes)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
