//! `wasmbuild pull REF`: an image (and the precompiled artifact for this host, if the
//! registry has one) from its registry into the local store.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;
use wasmbuild_packer::registry::{self, PullReport};
use wasmbuild_packer::{Reference, Store};

use super::registry::{Connection, Output};
use crate::cli::GlobalArgs;
use crate::progress::Terminal;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  wasmbuild pull ghcr.io/me/app:1.0
  wasmbuild pull localhost:5000/app@sha256:…")]
pub struct Args {
    /// The image to pull: REPOSITORY[:TAG] or REPOSITORY@DIGEST
    pub reference: String,
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub output: Output,
}

/// The `--json` document of a pull.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Pulled<'a> {
    reference: String,
    digest: String,
    media_type: &'a str,
    size: u64,
    platform: serde_json::Value,
    pull: &'a PullReport,
}

pub fn run(args: Args, global: &GlobalArgs) -> Result<ExitCode> {
    let reference = super::reference(&args.reference)?;
    let store = crate::home::store()?;
    let explicit = args.connection.explicit()?;
    let terminal = Terminal::new(global);
    let report = pull_one(
        &store,
        &reference,
        &args.connection,
        explicit.as_ref(),
        &terminal,
    )?;
    terminal.finish();
    let doc = Pulled {
        reference: report.reference.to_string(),
        digest: report.digest.to_string(),
        media_type: &report.media_type,
        size: report.size,
        platform: super::registry::platform(),
        pull: &report,
    };
    super::registry::write_output(
        &args.output,
        &doc,
        std::slice::from_ref(&report.reference),
        &report.digest,
        &report.media_type,
        report.size,
        None,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Pulls `reference` into `store`, with the precompiled artifact that loads on this host.
pub fn pull_one(
    store: &Store,
    reference: &Reference,
    connection: &Connection,
    explicit: Option<&wasmbuild_packer::credentials::Explicit>,
    terminal: &Terminal,
) -> Result<PullReport> {
    let credential = super::registry::credential(&reference.registry, explicit)?;
    let options = connection.options()?;
    let engine = wasmbuild_builder::engine::host_engine()
        .map_err(anyhow::Error::from)
        .context("cannot set up wasmtime for this host")?;
    let host = super::run::host_engine(&engine);
    let mut on_event = super::registry::reporter(terminal, "pull");
    let report = registry::pull(
        store,
        reference,
        &credential,
        &options,
        &|artifact| host.mismatch(artifact).is_none(),
        &mut on_event,
    )
    .with_context(|| format!("cannot pull {reference}"))?;
    terminal.say(&format!(
        "pulled {} ({} downloaded{})",
        report.reference,
        super::build::human_size(report.downloaded_bytes),
        match report.referrers.len() {
            0 => String::new(),
            _ => ", with the precompiled artifact for this host".to_owned(),
        }
    ));
    Ok(report)
}
