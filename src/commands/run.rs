//! `wasmbuild run REF [ARGS...]`: the image's module on the embedded wasmtime, WASI preview 1.
//!
//! A precompiled artifact of the image made for this host by this wasmtime with the same
//! engine settings is loaded instead of compiling the module; any other is passed over with
//! a note, and the portable module is compiled.
//!
//! What one run unpacked, compiled or verified, later runs reuse from the cache (see
//! [`cache`]), so a run after the first does no work in proportion to the module's size.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use wasmbuild_builder::Cache;
use wasmbuild_packer::{Descriptor, PrecompiledInfo, Reference};
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::cli::GlobalArgs;

mod cache;

#[derive(Debug, clap::Args)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// Set an environment variable in the guest (NAME=VALUE, or NAME to pass the host's)
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Neither use nor keep the unpacked image, the compiled module or what was verified
    /// (all kept in $WASMBUILD_HOME/cache otherwise)
    #[arg(long)]
    pub no_cache: bool,
    /// When to pull the image from its registry first
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing)]
    pub pull: PullPolicy,
    /// Allow plain HTTP to this registry host when pulling (loopback hosts always may)
    #[arg(
        long = "insecure-registry",
        value_name = "HOST",
        env = "WASMBUILD_INSECURE_REGISTRY",
        value_delimiter = ','
    )]
    pub insecure: Vec<String>,
    /// The image: a reference in the local store, else pulled from its registry
    pub reference: String,
    /// Arguments for the module; they replace the image's Cmd
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Docker's `--pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Pull when the store does not have the image
    Missing,
    /// Pull every time (a no-op transfer when nothing changed)
    Always,
    /// Never pull: the image must be in the store
    Never,
}

/// Exit status for a guest that trapped, as a process killed by SIGABRT would report.
const TRAP_EXIT: u8 = 134;

pub fn run(args: Args, global: &GlobalArgs) -> Result<ExitCode> {
    let reference = super::reference(&args.reference)?;
    let store = crate::home::store()?;
    let cache = if args.no_cache {
        Cache::disabled()
    } else {
        Cache::at(crate::home::home()?.join("cache"))
    };
    let descriptor = resolve(&store, &reference, &args, global)?;
    let manifest = store.manifest(&descriptor)?;
    let config = store.config(&manifest)?.config.unwrap_or_default();
    let entrypoint = config.entrypoint.unwrap_or_default();

    let Some(module_path) = entrypoint.first() else {
        bail!("{reference} has no Entrypoint: nothing to run");
    };
    // The engine and the module it loads; the precompiled artifact, when there is one.
    let load = || -> Result<(Engine, HostEngine, Option<Module>)> {
        let engine = wasmbuild_builder::engine::host_engine()
            .map_err(anyhow::Error::from)
            .context("cannot set up wasmtime for this host")?;
        let host = HostEngine::of(&engine);
        let module = precompiled(
            &store,
            &cache,
            &descriptor,
            &engine,
            &host,
            &reference,
            |note| {
                if !global.quiet {
                    eprintln!("note: {note}");
                }
            },
        )?;
        Ok((engine, host, module))
    };
    let root_key = cache::root_key(&manifest.layers);
    let (root, loaded) = match cache::cached_root(&cache, &root_key) {
        Some(root) => (Ok(root), load()),
        // The layers unpack on one core while the engine loads the module on another.
        None => std::thread::scope(|scope| {
            let unpacking = scope.spawn(|| {
                cache::unpack_root(&cache, &root_key, &store, &manifest.layers, &reference)
            });
            let loaded = load();
            let root = unpacking
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("unpacking {reference} panicked")));
            (root, loaded)
        }),
    };
    let root = root?;
    let (engine, host, precompiled) = loaded?;

    // Docker's rule: arguments after the image replace Cmd; Entrypoint stays.
    let cmd = if args.args.is_empty() {
        config.cmd.unwrap_or_default()
    } else {
        args.args.clone()
    };
    let argv: Vec<String> = entrypoint.iter().cloned().chain(cmd).collect();

    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdio().args(&argv);
    // WASI preview 1 has no working directory: a guest starts at `/`. Go's runtime and
    // programs that honour PWD start in WorkingDir when PWD names it.
    let mut image_env = config.env.unwrap_or_default();
    if let Some(workdir) = config.working_dir.filter(|w| w != "/" && !w.is_empty())
        && !image_env.iter().any(|e| e.starts_with("PWD="))
    {
        image_env.push(format!("PWD={workdir}"));
    }
    for (name, value) in environment(&image_env, &args.env) {
        wasi.env(name, value);
    }
    wasi.preopened_dir(root.path(), "/", FsPerms::ReadOnly)
        .map_err(|e| anyhow::anyhow!("cannot open the image's files for the guest: {e}"))?;
    let wasi = wasi.build_p1();

    let compiled_key = cache::compiled_key(&root_key, module_path, &host);
    let (module, compiled_now) = match precompiled {
        Some(module) => (module, false),
        None => match cache::compiled_module(&cache, &compiled_key, &engine) {
            Some(module) => (module, false),
            None => {
                debug(&format!("compiling {module_path}"));
                let host_module = root.path().join(module_path.trim_start_matches('/'));
                let module = Module::from_file(&engine, &host_module)
                    .map_err(anyhow::Error::from)
                    .with_context(|| format!("cannot compile {module_path} from {reference}"))?;
                (module, true)
            }
        },
    };
    // The compiled module is written for later runs while this one runs the guest.
    let keeping = compiled_now.then(|| {
        let (cache, key, module) = (cache.clone(), compiled_key.clone(), module.clone());
        std::thread::spawn(move || cache::keep_compiled(&cache, &key, &module))
    });
    let outcome = start(&engine, &module, wasi, module_path);
    if let Some(keeping) = keeping {
        let kept = keeping
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the thread writing it panicked")));
        if let Err(error) = kept {
            debug(&format!("cannot keep the compiled module: {error:#}"));
        }
    }
    drop(root);
    outcome
}

/// The image `reference` names, pulled first as `--pull` says.
fn resolve(
    store: &wasmbuild_packer::Store,
    reference: &Reference,
    args: &Args,
    global: &GlobalArgs,
) -> Result<Descriptor> {
    let local = match args.pull {
        PullPolicy::Always => None,
        PullPolicy::Never => return Ok(store.resolve(reference)?),
        PullPolicy::Missing => match store.resolve(reference) {
            Ok(descriptor) => Some(descriptor),
            Err(wasmbuild_packer::StoreError::NotFound { .. }) => None,
            Err(error) => return Err(error.into()),
        },
    };
    if let Some(descriptor) = local {
        return Ok(descriptor);
    }
    let connection = super::registry::Connection {
        insecure: args.insecure.clone(),
        ..Default::default()
    };
    // Progress of the pull goes to stderr, as `docker run` shows it; the guest's output
    // follows on stdout.
    let terminal = crate::progress::Terminal::new(global);
    let report = super::pull::pull_one(store, reference, &connection, None, &terminal)
        .context("the image is not in the local store, and pulling it failed")?;
    terminal.finish();
    Ok(store.resolve(&report.reference)?)
}

/// Instantiates `module` with WASI and runs its `_start`; the guest's exit code is ours.
fn start(engine: &Engine, module: &Module, wasi: WasiP1Ctx, module_path: &str) -> Result<ExitCode> {
    let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |cx| cx)?;
    let mut wasm_store = Store::new(engine, wasi);
    let instance = linker
        .instantiate(&mut wasm_store, module)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot instantiate {module_path}"))?;
    let start = instance
        .get_typed_func::<(), ()>(&mut wasm_store, "_start")
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{module_path} has no `_start` function"))?;
    match start.call(&mut wasm_store, ()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => match error.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => Ok(ExitCode::from(*code as u8)),
            None => {
                eprintln!("error: {module_path} trapped: {error:?}");
                Ok(ExitCode::from(TRAP_EXIT))
            }
        },
    }
}

/// What a precompiled artifact must match to load into this host's engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEngine {
    pub target: String,
    pub wasmtime_version: String,
    pub settings: String,
}

/// Why a precompiled artifact cannot be loaded here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    Target,
    Wasmtime,
    Settings,
}

impl HostEngine {
    pub fn of(engine: &Engine) -> HostEngine {
        HostEngine {
            target: wasmbuild_builder::engine::host_target(),
            wasmtime_version: wasmbuild_builder::engine::wasmtime_version().to_owned(),
            settings: wasmbuild_builder::engine::settings_of(engine),
        }
    }

    pub fn mismatch(&self, artifact: &PrecompiledInfo) -> Option<Mismatch> {
        if artifact.target != self.target {
            Some(Mismatch::Target)
        } else if artifact.wasmtime_version != self.wasmtime_version {
            Some(Mismatch::Wasmtime)
        } else if artifact.engine != self.settings {
            Some(Mismatch::Settings)
        } else {
            None
        }
    }

    /// "it is for aarch64-unknown-linux-gnu, this host is x86_64-unknown-linux-gnu", for
    /// `inspect`.
    pub fn why_not(&self, artifact: &PrecompiledInfo) -> Option<String> {
        Some(match self.mismatch(artifact)? {
            Mismatch::Target => format!(
                "it is for {}, this host is {}",
                artifact.target, self.target
            ),
            Mismatch::Wasmtime => format!(
                "it was compiled by wasmtime {}, this is wasmtime {}",
                artifact.wasmtime_version, self.wasmtime_version
            ),
            Mismatch::Settings => format!(
                "it was compiled with other engine settings ({}; this host: {})",
                artifact.engine, self.settings
            ),
        })
    }
}

/// The image's precompiled artifacts, by target.
pub fn precompiled_artifacts(
    store: &wasmbuild_packer::Store,
    image: &Descriptor,
) -> Result<Vec<(Descriptor, PrecompiledInfo)>> {
    let mut artifacts: Vec<(Descriptor, PrecompiledInfo)> = store
        .referrers(&image.digest)?
        .into_iter()
        .filter_map(|(descriptor, manifest)| {
            PrecompiledInfo::from_manifest(&manifest).map(|info| (descriptor, info))
        })
        .collect();
    artifacts.sort_by(|(a, x), (b, y)| (&x.target, a.digest).cmp(&(&y.target, b.digest)));
    Ok(artifacts)
}

/// The image's precompiled module for this host, if it has one that loads; `note` hears
/// why one was passed over. A cwasm blob that fails its digest is an error, never loaded.
fn precompiled(
    store: &wasmbuild_packer::Store,
    cache: &Cache,
    image: &Descriptor,
    engine: &Engine,
    host: &HostEngine,
    reference: &Reference,
    note: impl Fn(&str),
) -> Result<Option<Module>> {
    let artifacts: Vec<PrecompiledInfo> = precompiled_artifacts(store, image)?
        .into_iter()
        .map(|(_, info)| info)
        .collect();
    if artifacts.is_empty() {
        return Ok(None);
    }
    if let Some(artifact) = artifacts.iter().find(|a| host.mismatch(a).is_none()) {
        let cwasm = cache::verified_blob(cache, store, &artifact.cwasm).with_context(|| {
            format!(
                "cannot read the precompiled {} artifact of {reference}",
                artifact.target
            )
        })?;
        return match deserialize(engine, &cwasm) {
            Ok(module) => {
                debug(&format!(
                    "using precompiled {} ({})",
                    artifact.target, artifact.cwasm.digest
                ));
                Ok(Some(module))
            }
            Err(error) => {
                note(&format!(
                    "cannot load the precompiled artifact for {} ({error}); compiling the portable module",
                    artifact.target
                ));
                Ok(None)
            }
        };
    }
    note(&mismatch_note(&artifacts, host));
    Ok(None)
}

/// Why none of `artifacts` (none loads here) is used, naming the closest: one for this
/// host's target, else all of them.
fn mismatch_note(artifacts: &[PrecompiledInfo], host: &HostEngine) -> String {
    let describe = |a: &PrecompiledInfo| format!("{} (wasmtime {})", a.target, a.wasmtime_version);
    let fallback = "; compiling the portable module";
    if let Some(same_target) = artifacts.iter().find(|a| a.target == host.target) {
        let reason = match host.mismatch(same_target) {
            Some(Mismatch::Wasmtime) => format!("this host's wasmtime ({})", host.wasmtime_version),
            _ => format!("this host's engine settings ({})", host.settings),
        };
        return format!(
            "precompiled artifact for {} does not match {reason}{fallback}",
            describe(same_target)
        );
    }
    let (noun, verb) = match artifacts.len() {
        1 => ("artifact", "does"),
        _ => ("artifacts", "do"),
    };
    let listed: Vec<String> = artifacts.iter().map(describe).collect();
    format!(
        "precompiled {noun} for {} {verb} not match this host ({}){fallback}",
        listed.join(", "),
        host.target
    )
}

/// Loads precompiled code into `engine` from a store blob, mapped rather than copied.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, cwasm: &Path) -> wasmtime::Result<Module> {
    // SAFETY: `Module::deserialize_file` runs the native code in the file, so it must be
    // what wasmtime's `precompile_module` wrote, and the file must not change while the
    // module is in use. The file is a blob of the local store, verified against the
    // digest the image's own referrer names: hashed now, or hashed by an earlier run when
    // the file's identity (device, inode, size, modification and change times) is the one
    // recorded then. The store never changes a blob in place (a write makes a new file
    // under a temp name and renames it over; gc unlinks), so a file with an unchanged
    // identity still holds the bytes that were hashed, and a replaced or edited file has
    // another inode or other times and is hashed again (see `cache::verified_blob`). For
    // the same reason the mapping stays as verified. The artifact says it was compiled for this host's target by this wasmtime
    // version with identical engine settings (all compared before this call), and wasmtime
    // checks its header's version and settings again, returning an error on a mismatch.
    // Like the image itself, the code is trusted as much as whoever built the image.
    unsafe { Module::deserialize_file(engine, cwasm) }
}

/// A line for someone finding out what `run` does (`WASMBUILD_LOG=debug`). Not shown
/// otherwise: the guest's stderr is the program's own.
fn debug(line: &str) {
    if std::env::var_os("WASMBUILD_LOG").is_some_and(|v| v == "debug") {
        eprintln!("debug: {line}");
    }
}

/// The image's `Env`, then `-e` on top, the way Docker merges them.
fn environment(image: &[String], flags: &[String]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |name: String, value: String| {
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    };
    for entry in image {
        if let Some((name, value)) = entry.split_once('=') {
            set(name.to_owned(), value.to_owned());
        }
    }
    for flag in flags {
        match flag.split_once('=') {
            Some((name, value)) => set(name.to_owned(), value.to_owned()),
            None => {
                if let Ok(value) = std::env::var(flag) {
                    set(flag.clone(), value);
                }
            }
        }
    }
    env
}
