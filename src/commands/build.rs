//! `wasmbuild build`: Wasmfile (or Dockerfile) → module → image in the local store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use wasmbuild_builder::{BuildError, Cache, Reporter};
use wasmbuild_packer::image::media_type;
use wasmbuild_packer::{ImageInput, PrecompiledInput, Reference};

use crate::cli::GlobalArgs;
use crate::progress::Terminal;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  wasmbuild build -t ghcr.io/me/app:1.0
  wasmbuild build fixtures/hello -t localhost:5000/hello:dev --push
  wasmbuild build -f Dockerfile . -t app:docker --build-arg VERSION=1.2.3
  wasmbuild build -o dist --json > build.json
  WASMBUILD_REPO=ghcr.io/me wasmbuild build    # ghcr.io/me/<module name>:latest")]
pub struct Args {
    /// The folder that holds the Wasmfile (for a Dockerfile: the build context)
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The Wasmfile or Dockerfile to read (default: DIR/Wasmfile, else DIR/Dockerfile)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A reference for the image, e.g. ghcr.io/me/app:1.0 (repeatable)
    #[arg(short = 't', long = "tag", value_name = "REF")]
    pub tags: Vec<String>,
    /// Set a build arg declared in [args] or by ARG (NAME=VALUE, or NAME to take it from the environment)
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    pub build_args: Vec<String>,
    /// Run every step, even those whose result is in the step cache
    #[arg(long)]
    pub no_cache: bool,
    /// Also write the module to this folder as <name>.wasm, and each precompiled target's
    /// code as <name>.<target>.cwasm
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Push every reference to its registry after the build (with the precompiled artifacts)
    #[arg(long)]
    pub push: bool,
    #[command(flatten)]
    pub connection: super::registry::Connection,
    #[command(flatten)]
    pub result: super::registry::Output,
}

/// The `--json` document of a build without `--push`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Built {
    references: Vec<String>,
    digest: String,
    media_type: String,
    size: u64,
    platform: serde_json::Value,
    module: ModuleSummary,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ModuleSummary {
    name: String,
    size: u64,
    precompiled: Vec<String>,
}

pub fn run(args: Args, global: &GlobalArgs) -> Result<ExitCode> {
    // Read before the build, so a missing password fails at once.
    let explicit = args.connection.explicit()?;
    let options = wasmbuild_spec::Options {
        build_args: build_args(&args.build_args)?,
    };
    // As `docker build -f Dockerfile DIR`: a Dockerfile's context is DIR.
    let resolved = match build_file(&args) {
        (file, true) => wasmbuild_spec::load_dockerfile(&file, &args.dir, &options)?,
        (file, false) => wasmbuild_spec::load(&file, &options)?,
    };
    let plan = resolved.plan;

    let terminal = Terminal::new(global);
    for warning in &resolved.warnings {
        terminal.warn(warning);
    }
    // References are checked before the build, so a typo fails in a second, not after it.
    let mut references = requested_references(&args.tags, &plan.image)?;
    let default_repository = if references.is_empty() {
        default_repository()?
    } else {
        None
    };
    let cache = if args.no_cache {
        Cache::disabled()
    } else {
        Cache::at(crate::home::home()?.join("cache"))
    };

    let artifacts = wasmbuild_builder::build(&plan, &cache, &terminal).inspect_err(|error| {
        // A quiet build hid the toolchain's output; the error is where it belongs then.
        if let (Terminal::Quiet, BuildError::ToolchainFailed { stderr, .. }) = (&terminal, error) {
            eprintln!("{}", stderr.trim_end());
        }
    })?;
    if let Some(repository) = &default_repository {
        for tag in &plan.image.tags {
            let text = format!("{repository}/{}:{tag}", artifacts.name);
            references.push(super::reference(&text).context("from WASMBUILD_REPO")?);
        }
    }
    if references.is_empty() {
        references.push(super::reference(&artifacts.name)?);
    }

    terminal.step("pack", &format!("{} image", format_name(plan.image.format)));
    let image = wasmbuild_packer::pack(&ImageInput {
        module_name: &artifacts.name,
        module: &artifacts.module,
        config: &plan.image,
        copies: &plan.copies,
        source_date_epoch: source_date_epoch()?,
    })?;
    // Each target's cwasm is an artifact that refers to the image, never part of it.
    let subject = image.manifest_descriptor();
    let precompiled = artifacts
        .precompiled
        .iter()
        .map(|p| {
            wasmbuild_packer::pack_precompiled(
                &subject,
                &PrecompiledInput {
                    module_name: &artifacts.name,
                    target: &p.target,
                    cwasm: &p.cwasm,
                    wasmtime_version: &p.wasmtime,
                    engine: &p.engine,
                },
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    terminal.step(
        "store",
        &format!(
            "{} reference(s), {} precompiled artifact(s)",
            references.len(),
            precompiled.len()
        ),
    );
    let store = crate::home::store()?;
    store.put_with_referrers(&image, &references, media_type::PRECOMPILED, &precompiled)?;

    if let Some(dir) = &args.output {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut files = vec![(format!("{}.wasm", artifacts.name), &artifacts.module)];
        for p in &artifacts.precompiled {
            let name = wasmbuild_packer::cwasm_file_name(&artifacts.name, &p.target);
            files.push((name, &p.cwasm));
        }
        for (name, bytes) in files {
            let path = dir.join(name);
            std::fs::write(&path, bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    terminal.finish();
    terminal.say(&format!(
        "built {}.wasm ({}) as {}",
        artifacts.name,
        human_size(artifacts.module.len() as u64),
        image.digest()
    ));
    let digest = *image.digest();
    let manifest = image.manifest_descriptor();
    if args.push {
        let mut pushes = Vec::new();
        for reference in &references {
            pushes.push(super::push::push_one(
                &store,
                reference,
                &args.connection,
                explicit.as_ref(),
                &terminal,
            )?);
        }
        terminal.finish();
        return super::push::emit(&args.result, &super::push::Pushed::from_reports(pushes))
            .map(|()| ExitCode::SUCCESS);
    }
    let doc = Built {
        references: references.iter().map(ToString::to_string).collect(),
        digest: digest.to_string(),
        media_type: manifest.media_type.clone(),
        size: manifest.size,
        platform: super::registry::platform(),
        module: ModuleSummary {
            name: artifacts.name.clone(),
            size: artifacts.module.len() as u64,
            precompiled: artifacts
                .precompiled
                .iter()
                .map(|p| p.target.clone())
                .collect(),
        },
    };
    super::registry::write_output(
        &args.result,
        &doc,
        &references,
        &digest,
        &manifest.media_type,
        manifest.size,
        None,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The file to read and whether it is a Dockerfile: `-f FILE` (a Dockerfile by its name or
/// its first instruction), else `DIR/Wasmfile`, else `DIR/Dockerfile` when only that exists.
fn build_file(args: &Args) -> (PathBuf, bool) {
    if let Some(file) = &args.file {
        return (file.clone(), wasmbuild_spec::is_dockerfile(file));
    }
    let wasmfile = args.dir.join("Wasmfile");
    let dockerfile = args.dir.join("Dockerfile");
    if !wasmfile.exists() && dockerfile.is_file() {
        (dockerfile, true)
    } else {
        (wasmfile, false)
    }
}

fn format_name(format: wasmbuild_spec::ImageFormat) -> &'static str {
    match format {
        wasmbuild_spec::ImageFormat::Image => "OCI",
        wasmbuild_spec::ImageFormat::Artifact => "Wasm artifact",
    }
}

/// `-t` references, then `[image] name` with each of `[image] tags`.
fn requested_references(
    tags: &[String],
    image: &wasmbuild_spec::ImageConfig,
) -> Result<Vec<Reference>> {
    let mut references = Vec::new();
    for tag in tags {
        references.push(super::reference(tag).context("in `--tag`")?);
    }
    if let Some(repository) = &image.name {
        for tag in &image.tags {
            let text = format!("{repository}:{tag}");
            references.push(super::reference(&text).context("from `[image] name` and `tags`")?);
        }
    }
    references.dedup_by(|a, b| a.to_string() == b.to_string());
    Ok(references)
}

/// `WASMBUILD_REPO`, where an image goes that neither `-t` nor `[image] name` names: as
/// ko's `KO_DOCKER_REPO`, a prefix for `<repo>/<module name>`. Checked before the build,
/// with a stand-in for the name that only the build tells.
fn default_repository() -> Result<Option<String>> {
    let Some(repository) = std::env::var("WASMBUILD_REPO")
        .ok()
        .map(|v| v.trim_end_matches('/').to_owned())
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    super::reference(&format!("{repository}/module:latest")).map_err(|_| {
        super::hinted(
            format!("WASMBUILD_REPO is `{repository}`, not a repository to put images under"),
            "set it to a registry and path, such as `ghcr.io/me` (images are then named \
             ghcr.io/me/<module name>), or unset it",
        )
    })?;
    Ok(Some(repository))
}

fn build_args(given: &[String]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for arg in given {
        match arg.split_once('=') {
            Some((name, value)) => out.push((name.to_owned(), value.to_owned())),
            // Docker's rule: a bare NAME takes its value from the environment, if set.
            None => {
                if let Ok(value) = std::env::var(arg) {
                    out.push((arg.clone(), value));
                }
            }
        }
    }
    Ok(out)
}

/// `SOURCE_DATE_EPOCH`, the reproducible-builds convention for "when" in outputs.
fn source_date_epoch() -> Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map(Some).map_err(|_| {
            super::hinted(
                format!("SOURCE_DATE_EPOCH is `{v}`, not a number of seconds"),
                "set it to a Unix time, e.g. `$(git log -1 --format=%ct)`",
            )
        }),
        _ => Ok(None),
    }
}

pub use wasmbuild_builder::human_size;
