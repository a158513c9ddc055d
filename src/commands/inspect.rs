//! `wasmbuild inspect REF`: config, manifest, module interface, sizes, and the precompiled
//! artifacts that refer to the image.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;
use wasmbuild_builder::ModuleInfo;
use wasmbuild_packer::image::{annotation, media_type};

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  wasmbuild inspect hello
  wasmbuild inspect --json ghcr.io/me/app:1.0 | jq .module.imports")]
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
    precompiled: Vec<Precompiled>,
}

/// A precompiled artifact of the image and whether `run` would use it here.
#[derive(Serialize)]
struct Precompiled {
    /// The artifact's manifest digest.
    digest: String,
    target: String,
    wasmtime: String,
    engine: String,
    /// The cwasm's size in bytes.
    size: u64,
    usable: bool,
    /// Why it is not usable on this host.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
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
    // An image's module is its Entrypoint, found in the layers; a Wasm artifact's is its
    // one `application/wasm` layer, named by its title.
    let wasm_layer = manifest
        .layers
        .iter()
        .find(|l| l.media_type == media_type::WASM_LAYER);
    let found = match (wasm_layer, entrypoint.first()) {
        (Some(layer), _) => {
            let title = layer.annotations.get(annotation::TITLE);
            let path = title.map_or_else(|| layer.digest.to_string(), |t| format!("/{t}"));
            Some((path, store.read_descriptor(layer)?))
        }
        (None, Some(path)) => {
            let mut found = None;
            for layer in &manifest.layers {
                let blob = store.read_blob(&layer.digest)?;
                if let Some(bytes) = wasmbuild_packer::find_file(&blob, path)? {
                    found = Some((path.to_owned(), bytes));
                }
            }
            found
        }
        (None, None) => None,
    };
    let module = match found {
        Some((path, bytes)) => Some(Module {
            info: wasmbuild_builder::inspect_module(&bytes)
                .with_context(|| format!("the module {path} in {reference} is not valid"))?,
            path,
        }),
        None => None,
    };
    let artifacts = super::run::precompiled_artifacts(&store, &descriptor)?;
    let mut precompiled = Vec::new();
    if !artifacts.is_empty() {
        let engine = wasmbuild_builder::engine::host_engine()
            .map_err(anyhow::Error::from)
            .context("cannot set up wasmtime for this host")?;
        let host = super::run::host_engine(&engine);
        for (manifest, info) in artifacts {
            let reason = host.why_not(&info);
            precompiled.push(Precompiled {
                digest: manifest.digest.to_string(),
                size: info.cwasm.size,
                usable: reason.is_none(),
                reason,
                target: info.target,
                wasmtime: info.wasmtime_version,
                engine: info.engine,
            });
        }
    }
    let inspection = Inspection {
        reference: reference.to_string(),
        digest: descriptor.digest.to_string(),
        manifest: serde_json::from_slice(&manifest_bytes)?,
        config: serde_json::from_slice(&config_bytes)?,
        module,
        precompiled,
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
    if i.precompiled.is_empty() {
        outln!("Precompiled: none");
    }
    for p in &i.precompiled {
        let usable = match &p.reason {
            None => "yes".to_owned(),
            Some(reason) => format!("no ({reason})"),
        };
        outln!(
            "Precompiled: {}, wasmtime {}, {}, usable on this host: {usable}",
            p.target,
            p.wasmtime,
            human_size(p.size)
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
