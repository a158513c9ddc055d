//! `wasmbuild push REF`: an image of the local store, with its precompiled artifacts, to
//! its registry.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;
use wasmbuild_packer::registry::{self, PushReport};
use wasmbuild_packer::{Reference, Store};

use super::registry::{Connection, Output};
use crate::cli::GlobalArgs;
use crate::progress::Terminal;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  wasmbuild push ghcr.io/me/app:1.0
  echo \"$TOKEN\" | wasmbuild push -u me --password-stdin ghcr.io/me/app:1.0
  wasmbuild push --json localhost:5000/app:dev")]
pub struct Args {
    /// The image to push, as named in the local store (its registry is where it goes)
    pub reference: String,
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub output: Output,
}

/// The `--json` document of a push.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pushed {
    pub references: Vec<String>,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub platform: serde_json::Value,
    pub pushes: Vec<PushReport>,
}

pub fn run(args: Args, global: &GlobalArgs) -> Result<ExitCode> {
    let reference = super::reference(&args.reference)?;
    let store = crate::home::store()?;
    let explicit = args.connection.explicit()?;
    let terminal = Terminal::new(global);
    let report = push_one(
        &store,
        &reference,
        &args.connection,
        explicit.as_ref(),
        &terminal,
    )?;
    terminal.finish();
    let doc = Pushed::from_reports(vec![report]);
    emit(&args.output, &doc)?;
    Ok(ExitCode::SUCCESS)
}

/// Pushes the stored image `reference` names to its registry.
pub fn push_one(
    store: &Store,
    reference: &Reference,
    connection: &Connection,
    explicit: Option<&wasmbuild_packer::credentials::Explicit>,
    terminal: &Terminal,
) -> Result<PushReport> {
    let descriptor = store.resolve(reference)?;
    let credential = super::registry::credential(&reference.registry, explicit)?;
    let options = connection.options()?;
    let mut on_event = super::registry::reporter(terminal, "push");
    let report = registry::push(
        store,
        &descriptor,
        reference,
        &credential,
        &options,
        &mut on_event,
    )
    .with_context(|| format!("cannot push {reference}"))?;
    terminal.say(&format!(
        "pushed {} ({} uploaded, {} blob(s) already there{})",
        report.reference,
        super::build::human_size(report.uploaded_bytes),
        report
            .blobs
            .iter()
            .filter(|b| b.outcome != registry::BlobOutcome::Uploaded)
            .count(),
        match report.referrers.len() {
            0 => String::new(),
            n => format!(", {n} precompiled artifact(s)"),
        }
    ));
    Ok(report)
}

impl Pushed {
    pub fn from_reports(pushes: Vec<PushReport>) -> Pushed {
        let first = &pushes[0];
        Pushed {
            references: pushes.iter().map(|p| p.reference.to_string()).collect(),
            digest: first.digest.to_string(),
            media_type: first.media_type.clone(),
            size: first.size,
            platform: super::registry::platform(),
            pushes: pushes.clone(),
        }
    }
}

pub fn emit(output: &Output, doc: &Pushed) -> Result<()> {
    let first = &doc.pushes[0];
    let references: Vec<Reference> = doc.pushes.iter().map(|p| p.reference.clone()).collect();
    super::registry::write_output(
        output,
        doc,
        &references,
        &first.digest,
        &first.media_type,
        first.size,
        None,
    )
}
