//! What runs inside a container's process: the module at the spec's `args[0]` (read from the
//! container's root, where runwasi's libcontainer has already mounted what the spec asks
//! for and moved into its working folder), loaded from the node's cache when it holds the
//! module's code for this engine and compiled (then cached) when not, and run with WASI
//! preview 1: the spec's args and env, the container's root as `/`, its stdio.

use std::time::Instant;

use anyhow::{Context as _, Result};
use containerd_shim_wasm::sandbox::Sandbox;
use containerd_shim_wasm::sandbox::context::RuntimeContext;
use wasmtime::{Engine, Linker, Module, Store, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::cache;

/// The exit status of a guest that trapped, as `wasmbuild run` gives it.
const TRAP_EXIT: i32 = 134;

/// An epoch deadline no run reaches: the shared engine compiles epoch checks in (for
/// `wasmbuild run --timeout`), and nothing advances the epoch here.
const NO_DEADLINE: u64 = u64::MAX / 2;

#[derive(Default)]
pub struct WasmbuildSandbox;

impl Sandbox for WasmbuildSandbox {
    async fn run_wasi(&self, ctx: &impl RuntimeContext) -> Result<i32> {
        exit_on_termination_signals();
        // runwasi drives this future on its own async runtime, and wasmtime-wasi's
        // synchronous preview 1 starts one of its own for every call: a thread keeps them
        // apart.
        std::thread::scope(|scope| {
            scope
                .spawn(|| run(ctx))
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the guest's thread panicked")))
        })
    }
}

fn run(ctx: &impl RuntimeContext) -> Result<i32> {
    let entrypoint = ctx.entrypoint();
    let path = entrypoint
        .arg0
        .map(|p| {
            p.to_string_lossy()
                .split('#')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    let bytes = entrypoint
        .source
        .as_bytes()
        .with_context(|| format!("cannot read the module {path}"))?;
    let engine = wasmbuild_builder::engine::host_engine().map_err(anyhow::Error::from)?;
    let module = load(&engine, &bytes, &path)?;

    reopen_stdin_read_only();
    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdio();
    let mut argv: Vec<String> = ctx.args().to_vec();
    if let Some(first) = argv.first_mut() {
        *first = path.clone();
    }
    wasi.args(&argv);
    let mut has_pwd = false;
    for pair in ctx.envs() {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        has_pwd |= name == "PWD";
        wasi.env(name, value);
    }
    // WASI has no working folder: the guest learns it from PWD, as with `wasmbuild run`.
    if !has_pwd && let Ok(cwd) = std::env::current_dir() {
        wasi.env("PWD", cwd.to_string_lossy());
    }
    // The container's root, with the spec's mounts in it; read-only where the spec says.
    wasi.preopened_dir("/", "/", FsPerms::ReadWrite)
        .map_err(|e| anyhow::anyhow!("cannot open the container's root for the guest: {e}"))?;
    start(&engine, &module, wasi.build_p1(), &path, &entrypoint.func)
}

/// The container's process is pid 1 of its namespace, where a signal nothing handles does
/// nothing: the SIGTERM of `ctr task kill` or of a pod's deletion would wait out its grace
/// period for a SIGKILL. A WASI preview 1 guest cannot handle signals, so these end it as
/// they end a process that does not: exit status 128 + the signal.
fn exit_on_termination_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    std::process::exit(128 + signal);
                }
            });
        }
        Err(error) => log::warn!("cannot handle SIGTERM ({error}): only SIGKILL stops the guest"),
    }
}

/// runwasi opens the container's stdin fifo for reading and writing, so a guest that reads
/// stdin to its end (gofmt, `cat`) would wait forever: the container's own write end keeps
/// the fifo open after ctr or the kubelet closed theirs. The guest reads a read-only
/// descriptor of the same fifo instead.
fn reopen_stdin_read_only() {
    use rustix::fs::{FileType, Mode, OFlags};
    let stdin = std::io::stdin();
    let Ok(flags) = rustix::fs::fcntl_getfl(&stdin) else {
        return;
    };
    let is_fifo = rustix::fs::fstat(&stdin)
        .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Fifo);
    if !is_fifo || flags & OFlags::ACCMODE != OFlags::RDWR {
        return;
    }
    match rustix::fs::open(
        "/proc/self/fd/0",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .and_then(|fd| rustix::stdio::dup2_stdin(&fd))
    {
        Ok(()) => {}
        Err(error) => log::warn!(
            "cannot reopen stdin read-only ({error}): a guest reading it may not see its end"
        ),
    }
}

/// The module's code for `engine`: from the node's cache, else compiled now and cached.
fn load(engine: &Engine, bytes: &[u8], path: &str) -> Result<Module> {
    let host = cache::host_engine(engine);
    let digest = cache::module_digest_hex(bytes);
    let name = cache::entry_name(&digest, &host);
    let dir = cache::compiled();
    // `start` may still be fetching the image's precompiled artifact: a compile would only
    // race it.
    if let Some(dir) = dir
        && cache::open_entry(dir, &name).is_none()
    {
        cache::wait_for_entry(dir, &name, std::time::Duration::from_secs(60));
    }
    if let Some(file) = dir.and_then(|dir| cache::open_entry(dir, &name)) {
        match deserialize(engine, file) {
            Ok(module) => {
                log::info!("{path} (sha256:{digest}): loaded its compiled code {name}");
                return Ok(module);
            }
            Err(error) => {
                log::warn!("{path}: the cached {name} does not load ({error}); compiling")
            }
        }
    }
    let started = Instant::now();
    let module = Module::new(engine, bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot compile {path}"))?;
    log::info!(
        "{path} (sha256:{digest}): compiled in {} ms",
        started.elapsed().as_millis()
    );
    match dir {
        Some(dir) => match module.serialize() {
            Ok(code) => match cache::write_entry(dir, &name, &code) {
                Ok(()) => log::info!("{path}: cached its compiled code as {name}"),
                Err(error) => log::warn!("{path}: cannot cache its compiled code: {error}"),
            },
            Err(error) => log::warn!("{path}: cannot serialize its compiled code: {error}"),
        },
        None => log::warn!("{path}: no cache folder; the next start compiles again"),
    }
    Ok(module)
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, file: std::fs::File) -> wasmtime::Result<Module> {
    // SAFETY: `deserialize_open_file` runs the native code in the file, so it must be code
    // wasmtime wrote for this engine and nothing else. Entries of the cache are written by
    // this shim only: modules it compiled, or a precompiled artifact `start` fetched from
    // the image's own repository after checking its digest (the same trust `wasmbuild run`
    // gives an image's precompiled artifacts). wasmtime checks the header, the version and
    // the engine settings before it maps anything, so a stale or foreign entry is an
    // error, and the file is not changed while mapped: entries are replaced by rename.
    unsafe { Module::deserialize_open_file(engine, file) }
}

/// Instantiates `module` and calls `func` (`_start` unless `args[0]` named another after
/// `#`); the guest's exit code is the container's. A trap is said on stderr with its wasm
/// backtrace, and exits 134 as with `wasmbuild run`.
fn start(engine: &Engine, module: &Module, wasi: WasiP1Ctx, path: &str, func: &str) -> Result<i32> {
    let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |wasi| wasi).map_err(anyhow::Error::from)?;
    let mut store = Store::new(engine, wasi);
    store.set_epoch_deadline(NO_DEADLINE);
    let result = match linker.instantiate(&mut store, module) {
        Ok(instance) => match instance.get_typed_func::<(), ()>(&mut store, func) {
            Ok(function) => function.call(&mut store, ()),
            Err(error) => {
                return Err(anyhow::Error::from(error).context(format!(
                    "{path} has no `{func}` function taking and returning nothing"
                )));
            }
        },
        Err(error) if error.is::<Trap>() || error.is::<I32Exit>() => Err(error),
        Err(error) => {
            return Err(anyhow::Error::from(error).context(format!("cannot instantiate {path}")));
        }
    };
    Ok(match result {
        Ok(()) => 0,
        Err(error) => exit_code(&error, path),
    })
}

fn exit_code(error: &wasmtime::Error, path: &str) -> i32 {
    if let Some(I32Exit(code)) = error.downcast_ref::<I32Exit>() {
        return *code;
    }
    eprintln!(
        "error: {}{}",
        wasmbuild_builder::engine::failure_summary(error, path),
        wasmbuild_builder::engine::backtrace_text(error)
    );
    TRAP_EXIT
}
