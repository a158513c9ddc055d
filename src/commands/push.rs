//! `wasmbuild push REF`: an image of the local store, with its precompiled artifacts, to
//! its registry.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;
use wasmbuild_packer::image::media_type;
use wasmbuild_packer::registry::{self, PushReport};
use wasmbuild_packer::{Descriptor, Digest, Reference, Store};

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
    let sources = mount_sources(store, reference)?;
    let mut on_event = super::registry::reporter(terminal, "push");
    let report = registry::push_with_mounts(
        store,
        &descriptor,
        reference,
        &credential,
        &options,
        &|digest| {
            sources
                .get(digest)
                .map(|repositories| repositories.iter().cloned().collect())
                .unwrap_or_default()
        },
        &mut on_event,
    )
    .with_context(|| format!("cannot push {reference}"))?;
    let count = |outcome| report.blobs.iter().filter(|b| b.outcome == outcome).count();
    let mounted = count(registry::BlobOutcome::Mounted);
    terminal.say(&format!(
        "pushed {} ({} uploaded, {} blob(s) already there{}{})",
        report.reference,
        super::build::human_size(report.uploaded_bytes),
        count(registry::BlobOutcome::Existed),
        match mounted {
            0 => String::new(),
            n => format!(", {n} mounted"),
        },
        match report.referrers.len() {
            0 => String::new(),
            n => format!(", {n} precompiled artifact(s)"),
        }
    ));
    Ok(report)
}

/// For each blob of an image the store names under another repository of `target`'s
/// registry, those repositories: where the registry may already hold the blob, to mount it
/// from rather than send it. Each manifest is read once; one that cannot be read offers
/// nothing (it is not the image being pushed).
fn mount_sources(store: &Store, target: &Reference) -> Result<BTreeMap<Digest, BTreeSet<String>>> {
    let mut sources: BTreeMap<Digest, BTreeSet<String>> = BTreeMap::new();
    let mut blobs_by_manifest: BTreeMap<Digest, Vec<Digest>> = BTreeMap::new();
    for image in store.list()? {
        let reference = &image.reference;
        if reference.registry != target.registry || reference.repository == target.repository {
            continue;
        }
        let blobs = blobs_by_manifest
            .entry(image.manifest.digest)
            .or_insert_with(|| image_blobs(store, &image.manifest));
        for digest in blobs.iter() {
            sources
                .entry(*digest)
                .or_default()
                .insert(reference.repository.clone());
        }
    }
    Ok(sources)
}

/// The config and layers of the manifest `descriptor` names (of each of its manifests,
/// for an index), and of their precompiled referrers: what the registry holds if the
/// image was pushed.
fn image_blobs(store: &Store, descriptor: &Descriptor) -> Vec<Digest> {
    let mut manifests = vec![descriptor.clone()];
    if media_type::is_index(&descriptor.media_type) {
        manifests.extend(
            store
                .image_index(descriptor)
                .map(|index| index.manifests)
                .unwrap_or_default(),
        );
    }
    let mut blobs = Vec::new();
    for manifest in &manifests {
        let referrers = store.referrers(&manifest.digest).unwrap_or_default();
        let own = store.manifest(manifest).ok();
        for manifest in own.iter().chain(referrers.iter().map(|(_, m)| m)) {
            blobs.extend(
                std::iter::once(&manifest.config)
                    .chain(&manifest.layers)
                    .map(|blob| blob.digest),
            );
        }
    }
    blobs
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
