//! `wasmbuild run REF [ARGS...]`: the image's module on the embedded wasmtime, WASI preview 1.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use wasmtime::{Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// Set an environment variable in the guest (NAME=VALUE, or NAME to pass the host's)
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// The image: a reference in the local store
    pub reference: String,
    /// Arguments for the module; they replace the image's Cmd
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Exit status for a guest that trapped, as a process killed by SIGABRT would report.
const TRAP_EXIT: u8 = 134;

pub fn run(args: Args, _global: &GlobalArgs) -> Result<ExitCode> {
    let reference = super::reference(&args.reference)?;
    let store = crate::home::store()?;
    let descriptor = store.resolve(&reference)?;
    let manifest = store.manifest(&descriptor)?;
    let config = store.config(&manifest)?.config.unwrap_or_default();
    let entrypoint = config.entrypoint.unwrap_or_default();

    let root = tempfile::Builder::new()
        .prefix("wasmbuild-run-")
        .tempdir()?;
    for layer in &manifest.layers {
        let blob = store.read_blob(&layer.digest)?;
        wasmbuild_packer::unpack_layer(&blob, root.path())
            .with_context(|| format!("cannot unpack layer {} of {reference}", layer.digest))?;
    }

    let Some(module_path) = entrypoint.first() else {
        bail!("{reference} has no Entrypoint: nothing to run");
    };
    let relative = module_path.trim_start_matches('/');
    let host_module = root.path().join(relative);
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

    let engine = wasmbuild_builder::engine::host_engine()?;
    let module = Module::from_file(&engine, &host_module)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot compile {module_path} from {reference}"))?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |cx| cx)?;
    let mut wasm_store = Store::new(&engine, wasi);
    let instance = linker
        .instantiate(&mut wasm_store, &module)
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
