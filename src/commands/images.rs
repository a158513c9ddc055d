//! `wasmbuild images`.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  wasmbuild images
  wasmbuild images --json | jq -r '.[].reference'")]
pub struct Args {
    /// One JSON object per image, as an array
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Row {
    reference: String,
    repository: String,
    tag: String,
    digest: String,
    /// Config plus layers, compressed: what a pull transfers.
    size: u64,
}

pub fn run(args: Args, _global: &GlobalArgs) -> Result<ExitCode> {
    let store = crate::home::store()?;
    let mut rows = Vec::new();
    for image in store.list()? {
        let manifest = store.manifest(&image.manifest)?;
        let size = manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>();
        let familiar = image.reference.familiar();
        let (repository, tag) = match familiar.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), tag.to_owned()),
            _ => (familiar.clone(), String::new()),
        };
        rows.push(Row {
            reference: image.reference.to_string(),
            repository,
            tag,
            digest: image.manifest.digest.to_string(),
            size,
        });
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = rows
        .iter()
        .map(|r| r.repository.len())
        .max()
        .unwrap_or(0)
        .max("REPOSITORY".len());
    let tag_width = rows
        .iter()
        .map(|r| r.tag.len())
        .max()
        .unwrap_or(0)
        .max("TAG".len());
    outln!(
        "{:width$}  {:tag_width$}  {:19}  SIZE",
        "REPOSITORY",
        "TAG",
        "DIGEST"
    );
    for row in &rows {
        let short = row.digest.get(..19).unwrap_or(&row.digest);
        outln!(
            "{:width$}  {:tag_width$}  {short:19}  {}",
            row.repository,
            row.tag,
            super::build::human_size(row.size)
        );
    }
    Ok(ExitCode::SUCCESS)
}
