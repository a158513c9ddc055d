//! `wasmbuild inspect REF`: config, manifest, module interface and sizes.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;
use wasmbuild_builder::ModuleInfo;

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// An image in the local store
    pub reference: String,
    /// Print everything as one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Inspection {
    reference: String,
    digest: String,
    manifest: serde_json::Value,
    config: serde_json::Value,
    module: Option<Module>,
}

#[derive(Serialize)]
struct Module {
    path: String,
    #[serde(flatten)]
    info: ModuleInfo,
}

pub fn run(args: Args, _global: &GlobalArgs) -> Result<ExitCode> {
    let reference = super::reference(&args.reference)?;
    let store = crate::home::store()?;
    let descriptor = store.resolve(&reference)?;
    let manifest_bytes = store.read_blob(&descriptor.digest)?;
    let manifest = store.manifest(&descriptor)?;
    let config_bytes = store.read_blob(&manifest.config.digest)?;
    let config = store.config(&manifest)?;

    let entrypoint = config.config.and_then(|c| c.entrypoint).unwrap_or_default();
    let module = match entrypoint.first() {
        Some(path) => {
            let mut found = None;
            for layer in &manifest.layers {
                let blob = store.read_blob(&layer.digest)?;
                if let Some(bytes) = wasmbuild_packer::find_file(&blob, path)? {
                    found = Some(bytes);
                }
            }
            match found {
                Some(bytes) => Some(Module {
                    path: path.to_owned(),
                    info: wasmbuild_builder::inspect_module(&bytes).with_context(|| {
                        format!("the module {path} in {reference} is not valid")
                    })?,
                }),
                None => None,
            }
        }
        None => None,
    };
    let inspection = Inspection {
        reference: reference.to_string(),
        digest: descriptor.digest.to_string(),
        manifest: serde_json::from_slice(&manifest_bytes)?,
        config: serde_json::from_slice(&config_bytes)?,
        module,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&inspection)?);
    } else {
        print_human(&inspection, &manifest);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_human(i: &Inspection, manifest: &wasmbuild_packer::Manifest) {
    use super::build::human_size;
    outln!("Reference:   {}", i.reference);
    outln!("Digest:      {}", i.digest);
    let get = |key: &str| {
        i.config
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned()
    };
    outln!("Platform:    {}/{}", get("os"), get("architecture"));
    let c = i.config.get("config");
    let field = |key: &str| {
        c.and_then(|c| c.get(key))
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".to_owned())
    };
    outln!("Entrypoint:  {}", field("Entrypoint"));
    outln!("Cmd:         {}", field("Cmd"));
    outln!("Env:         {}", field("Env"));
    outln!("WorkingDir:  {}", field("WorkingDir"));
    outln!(
        "Config:      {} {}",
        manifest.config.digest,
        human_size(manifest.config.size)
    );
    for layer in &manifest.layers {
        outln!(
            "Layer:       {} {} {}",
            layer.digest,
            human_size(layer.size),
            layer.media_type
        );
    }
    if let Some(module) = &i.module {
        let info = &module.info;
        outln!("Module:      {} ({})", module.path, human_size(info.size));
        let features = if info.features.is_empty() {
            "WebAssembly 1.0 only".to_owned()
        } else {
            info.features.join(", ")
        };
        outln!("Features:    {features}");
        for memory in &info.memories {
            let max = memory
                .maximum_pages
                .map_or("no maximum".to_owned(), |m| format!("at most {m}"));
            let notes: Vec<&str> = [
                (memory.imported, "imported"),
                (memory.shared, "shared"),
                (memory.memory64, "64-bit"),
            ]
            .into_iter()
            .filter_map(|(set, note)| set.then_some(note))
            .collect();
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join(", "))
            };
            outln!(
                "Memory:      {} pages of 64 KiB, {max}{notes}",
                memory.initial_pages
            );
        }
        if !info.producers.is_empty() {
            let producers: Vec<String> = info
                .producers
                .iter()
                .map(|p| {
                    format!("{}: {} {}", p.field, p.name, p.version)
                        .trim_end()
                        .to_owned()
                })
                .collect();
            outln!("Producers:   {}", producers.join("; "));
        }
        outln!("Imports:");
        for import in &module.info.imports {
            outln!("  {}.{} ({})", import.module, import.name, import.kind);
        }
        outln!("Exports:");
        for export in &module.info.exports {
            outln!("  {} ({})", export.name, export.kind);
        }
    }
}
