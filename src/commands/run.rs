//! `wasmbuild run REF [ARGS...]`: the image's module on the embedded wasmtime, WASI preview 1,
//! started the way `docker run` starts a container (see [`process`]): the image's files
//! read-only at `/`, `-v` folders beside them ([`volumes`]), stdin only with `-i`, and the
//! limits `--memory`, `--timeout` and `--fuel` ([`limits`]).
//!
//! A precompiled artifact of the image made for this host by this wasmtime with the same
//! engine settings is loaded instead of compiling the module; any other is passed over with
//! a note, and the portable module is compiled.
//!
//! What one run unpacked, compiled or verified, later runs reuse from the cache (see
//! [`cache`]), so a run after the first does no work in proportion to the module's size.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use wasmbuild_builder::Cache;
use wasmbuild_packer::image::{annotation, media_type};
use wasmbuild_packer::{Descriptor, HostEngine, Mismatch, PrecompiledInfo, Reference};
use wasmtime::{Engine, Linker, Module, Store, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::cli::GlobalArgs;

mod cache;
mod limits;
mod net;
mod process;
mod volumes;

use limits::{Limits, MemoryLimiter, MemorySize, Timeout, Watchdog};
use volumes::Volume;

#[derive(Debug, clap::Args)]
#[command(trailing_var_arg = true)]
#[command(after_help = "Examples:
  wasmbuild run ghcr.io/me/hello:1.0 there
  wasmbuild run -e GREETING=Hi --env-file app.env app
  wasmbuild run -v ./data:/data:ro -w /data app
  wasmbuild run -p 8080 --timeout 30s --memory 64m server
  echo hello | wasmbuild run -i app")]
pub struct Args {
    /// Set an environment variable in the guest (NAME=VALUE, or NAME to pass the host's)
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file of NAME=VALUE lines (before any -e)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Pass stdin to the guest (without it, the guest reads an empty stdin)
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Share a host folder with the guest at GUEST, read-write, or read-only with `:ro`
    #[arg(short = 'v', long = "volume", value_name = "HOST:GUEST[:ro]")]
    pub volumes: Vec<Volume>,
    /// Listen on a host TCP port (on 127.0.0.1 unless HOST_IP says) and hand the socket to
    /// the guest to accept connections on: fd 3 + the number of preopened folders, given
    /// in LISTEN_FDS and LISTEN_FDS_START
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[HOST_IP:]HOST_PORT[:GUEST_FD]"
    )]
    pub publish: Vec<net::Publish>,
    /// The guest's working directory, instead of the image's WorkingDir (the guest sees it
    /// as PWD)
    #[arg(short = 'w', long, value_name = "DIR", value_parser = absolute_dir)]
    pub workdir: Option<String>,
    /// Run this module of the image instead of its Entrypoint (the image's Cmd is dropped
    /// too; ARGS still apply)
    #[arg(long, value_name = "PATH")]
    pub entrypoint: Option<String>,
    /// Cap the guest's memory (64m: 64 MiB; units b, k, m, g); growing past it fails
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<MemorySize>,
    /// Stop the guest after this long (30s; units ms, s, m, h), with exit status 124
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<Timeout>,
    /// Stop the guest when it has used this much fuel (about one unit per wasm
    /// instruction), with exit status 152; the module is compiled to count it
    #[arg(long, value_name = "N")]
    pub fuel: Option<u64>,
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

/// `-w`: absolute, as Docker requires.
fn absolute_dir(dir: &str) -> Result<String, String> {
    if dir.starts_with('/') {
        Ok(dir.to_owned())
    } else {
        Err(format!(
            "the working directory `{dir}` must be an absolute path"
        ))
    }
}

/// Exit status for a guest that trapped, as a process killed by SIGABRT would report.
const TRAP_EXIT: u8 = 134;

pub fn run(args: Args, global: &GlobalArgs) -> Result<ExitCode> {
    let reference = super::reference(&args.reference)?;
    // What the flags name on the host is checked before any work.
    let host_env = |name: &str| std::env::var(name).ok();
    let env_files = args
        .env_files
        .iter()
        .map(|path| process::env_file(path, host_env))
        .collect::<Result<Vec<_>>>()?;
    volumes::check_distinct(&args.volumes)?;
    let volumes = args
        .volumes
        .iter()
        .map(|volume| Ok((volume, volume.host_dir()?)))
        .collect::<Result<Vec<_>>>()?;
    // The image's root and each -v come before the sockets.
    let listeners = net::Listeners::bind(&args.publish, 1 + volumes.len() as u32)?;
    let limits = Limits {
        memory: args.memory.clone(),
        timeout: args.timeout.clone(),
        fuel: args.fuel,
    };

    let store = crate::home::store()?;
    let cache = if args.no_cache {
        Cache::disabled()
    } else {
        Cache::at(crate::home::home()?.join("cache"))
    };
    let descriptor = resolve(&store, &reference, &args, global)?;
    let manifest = store.manifest(&descriptor)?;
    let config = store.config(&manifest)?.config.unwrap_or_default();
    // A CNCF Wasm artifact has no Entrypoint: its module is its one `application/wasm`
    // layer, run as `/<title>` with an empty root.
    let wasm_layer = manifest
        .layers
        .iter()
        .find(|l| l.media_type == media_type::WASM_LAYER)
        .cloned();
    let tar_layers: Vec<Descriptor> = manifest
        .layers
        .iter()
        .filter(|l| l.media_type != media_type::WASM_LAYER)
        .cloned()
        .collect();
    let image_entrypoint = match (&wasm_layer, config.entrypoint) {
        (_, Some(entrypoint)) => entrypoint,
        (Some(layer), None) => vec![format!(
            "/{}",
            layer
                .annotations
                .get(annotation::TITLE)
                .map_or("module.wasm", String::as_str)
        )],
        (None, None) => Vec::new(),
    };
    let image_cmd = config.cmd.unwrap_or_default();

    let argv = process::argv(
        &image_entrypoint,
        &image_cmd,
        args.entrypoint.as_deref(),
        &args.args,
    );
    let Some(module_path) = argv.first().cloned() else {
        if args.entrypoint.is_some() {
            bail!("--entrypoint \"\" and no arguments: nothing to run");
        }
        bail!("{reference} has neither Entrypoint nor Cmd: nothing to run");
    };
    let module_file = module_in_image(&module_path)?;
    let image_env = config.env.unwrap_or_default();
    let env = process::environment(
        &process::EnvSources {
            image: &image_env,
            image_workdir: config.working_dir.as_deref(),
            workdir: args.workdir.as_deref(),
            files: &env_files,
            flags: &args.env,
        },
        host_env,
    )?;
    // The image's precompiled artifacts are of the module its own command runs, made by an
    // engine that counts no fuel.
    let image_module = process::argv(&image_entrypoint, &image_cmd, None, &[])
        .into_iter()
        .next();
    let precompiled_applies = if limits.fuel.is_some() {
        debug("--fuel: compiling the module to count fuel");
        false
    } else if image_module
        .as_deref()
        .and_then(|m| module_in_image(m).ok())
        != Some(module_file.clone())
    {
        debug(&format!(
            "running {module_path}, not the image's own module: its precompiled artifacts do not apply"
        ));
        false
    } else {
        true
    };

    // The engine and the module it loads; the precompiled artifact, when there is one.
    let load = || -> Result<(Engine, HostEngine, Option<Module>)> {
        let engine = match limits.fuel {
            Some(_) => wasmbuild_builder::engine::host_engine_with_fuel(),
            None => wasmbuild_builder::engine::host_engine(),
        }
        .map_err(anyhow::Error::from)
        .context("cannot set up wasmtime for this host")?;
        let host = host_engine(&engine);
        if !precompiled_applies {
            return Ok((engine, host, None));
        }
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
            let unpacking = scope
                .spawn(|| cache::unpack_root(&cache, &root_key, &store, &tar_layers, &reference));
            let loaded = load();
            let root = unpacking
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("unpacking {reference} panicked")));
            (root, loaded)
        }),
    };
    let root = root?;
    let (engine, host, precompiled) = loaded?;

    // The guest's WASI context: its argv and environment, stdio, and the folders it sees.
    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdout().inherit_stderr().args(&argv);
    // Without -i the guest reads an empty stdin, as with `docker run` without -i.
    if args.interactive {
        wasi.inherit_stdin();
    }
    for (name, value) in &env {
        wasi.env(name, value);
    }
    wasi.preopened_dir(root.path(), "/", FsPerms::ReadOnly)
        .map_err(|e| anyhow::anyhow!("cannot open the image's files for the guest: {e}"))?;
    for (volume, host_dir) in &volumes {
        let perms = if volume.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        wasi.preopened_dir(host_dir, &volume.guest, perms)
            .map_err(|e| {
                anyhow::anyhow!("cannot share {} with the guest: {e}", host_dir.display())
            })?;
    }
    listeners.preopen(&mut wasi, root.path())?;
    let wasi = wasi.build_p1();

    let compiled_key = cache::compiled_key(&root_key, &module_path, &host);
    let (module, compiled_now) = match precompiled {
        Some(module) => (module, false),
        None => match cache::compiled_module(&cache, &compiled_key, &engine) {
            Some(module) => (module, false),
            None => {
                debug(&format!("compiling {module_path}"));
                let host_module = match &wasm_layer {
                    Some(layer) if Some(&module_path) == image_entrypoint.first() => {
                        store.verify_blob(layer)?
                    }
                    _ => root.path().join(&module_file),
                };
                if !host_module.is_file() {
                    bail!("{reference} has no module at {module_path}");
                }
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
    let outcome = start(&engine, &module, wasi, &module_path, &limits, &listeners);
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

/// Where the module at `module_path` (absolute, or relative to the image's root) is in the
/// unpacked image; a path that climbs out of it with `..` is an error.
fn module_in_image(module_path: &str) -> Result<PathBuf> {
    let mut file = PathBuf::new();
    for part in module_path.split('/') {
        match part {
            "" | "." => {}
            ".." => bail!("{module_path} is not a path inside the image (it has `..`)"),
            part => file.push(part),
        }
    }
    if file.as_os_str().is_empty() {
        bail!("`{module_path}` names no module");
    }
    Ok(file)
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

/// What the guest's store holds: its WASI context, and the limiter that enforces
/// `--memory`.
struct Guest {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
}

/// An epoch deadline no run reaches: without `--timeout` nothing advances the epoch, and
/// the engine's code checks it all the same.
const NO_DEADLINE: u64 = u64::MAX / 2;

/// Instantiates `module` with WASI and runs its `_start` within `limits`; the guest's exit
/// code is ours. How a guest that did not exit ended is said on stderr: a trap with its
/// wasm backtrace (134), `--timeout` (124), `--fuel` (152), and, for a guest that failed
/// after `--memory` refused it memory, that limit.
fn start(
    engine: &Engine,
    module: &Module,
    wasi: WasiP1Ctx,
    module_path: &str,
    limits: &Limits,
    listeners: &net::Listeners,
) -> Result<ExitCode> {
    let mut linker: Linker<Guest> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |guest: &mut Guest| &mut guest.wasi)?;
    listeners.add_to_linker(&mut linker, module, |guest: &mut Guest| &mut guest.wasi)?;
    let guest = Guest {
        wasi,
        limiter: MemoryLimiter::new(limits.memory.as_ref()),
    };
    let mut wasm_store = Store::new(engine, guest);
    wasm_store.limiter(|guest| &mut guest.limiter);
    if let Some(fuel) = limits.fuel {
        wasm_store.set_fuel(fuel)?;
    }
    // The watchdog advances the epoch once, at the deadline.
    wasm_store.set_epoch_deadline(if limits.timeout.is_some() {
        1
    } else {
        NO_DEADLINE
    });
    let watchdog = limits
        .timeout
        .as_ref()
        .map(|timeout| Watchdog::start(engine, timeout));
    let result = match linker.instantiate(&mut wasm_store, module) {
        Ok(instance) => match instance.get_typed_func::<(), ()>(&mut wasm_store, "_start") {
            Ok(start) => start.call(&mut wasm_store, ()),
            Err(error) => {
                return Err(anyhow::Error::from(error)
                    .context(format!("{module_path} has no `_start` function")));
            }
        },
        // A trap in the module's start function is the guest's doing, as one in `_start` is.
        Err(error) if error.is::<Trap>() || error.is::<I32Exit>() => Err(error),
        Err(error) => {
            let error =
                anyhow::Error::from(error).context(format!("cannot instantiate {module_path}"));
            return Err(match refused_memory(&wasm_store, limits) {
                Some(memory) => error.context(limits::memory_message(memory)),
                None => error,
            });
        }
    };
    // From here on, `run` says how the guest ended, not the watchdog.
    drop(watchdog);
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => Ok(ended(
            &error,
            module_path,
            limits,
            refused_memory(&wasm_store, limits),
        )),
    }
}

/// The exit status of a guest that exited or failed with `error`, after saying on stderr
/// how it ended when that was not its own exit.
fn ended(
    error: &wasmtime::Error,
    module_path: &str,
    limits: &Limits,
    refused: Option<&MemorySize>,
) -> ExitCode {
    if let Some(I32Exit(code)) = error.downcast_ref::<I32Exit>() {
        if *code != 0
            && let Some(memory) = refused
        {
            eprintln!("error: {}", limits::memory_message(memory));
        }
        // WASI preview 1 exit statuses are below 126 (wasmtime refuses others).
        return ExitCode::from(u8::try_from(*code).unwrap_or(1));
    }
    match (error.downcast_ref::<Trap>(), &limits.timeout, limits.fuel) {
        (Some(Trap::Interrupt), Some(timeout), _) => {
            eprintln!("error: {}", limits::timeout_message(timeout));
            ExitCode::from(limits::TIMEOUT_EXIT)
        }
        (Some(Trap::OutOfFuel), _, Some(fuel)) => {
            eprintln!("error: {}", limits::fuel_message(fuel));
            ExitCode::from(limits::OUT_OF_FUEL_EXIT)
        }
        _ => {
            // A trap, or a host function's error (an exit status WASI does not allow).
            let what = wasmbuild_builder::engine::failure_summary(error, module_path);
            let mut message = match refused {
                Some(memory) => format!(
                    "error: {}\n  caused by: {what}",
                    limits::memory_message(memory)
                ),
                None => format!("error: {what}"),
            };
            message.push_str(&wasmbuild_builder::engine::backtrace_text(error));
            eprintln!("{message}");
            ExitCode::from(TRAP_EXIT)
        }
    }
}

/// `--memory`, when it refused the guest memory.
fn refused_memory<'a>(store: &Store<Guest>, limits: &'a Limits) -> Option<&'a MemorySize> {
    limits
        .memory
        .as_ref()
        .filter(|_| store.data().limiter.refused())
}

/// What a precompiled artifact must match to load into `engine` on this host.
pub fn host_engine(engine: &Engine) -> HostEngine {
    HostEngine {
        target: wasmbuild_builder::engine::host_target(),
        wasmtime_version: wasmbuild_builder::engine::wasmtime_version().to_owned(),
        settings: wasmbuild_builder::engine::settings_of(engine),
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
