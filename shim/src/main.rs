//! `containerd-shim-wasmbuild-v1`: containerd's runtime `io.containerd.wasmbuild.v1`, on
//! runwasi's `containerd-shim-wasm`. It runs WASI preview 1 modules from wasi/wasm images
//! with wasmtime configured exactly as `wasmbuild run` is (`wasmbuild_builder::engine`),
//! so the precompiled artifacts wasmbuild attaches to an image load here too.
//!
//! containerd runs this binary three ways: `start` (find or start the shim for a new
//! container, print its address), the long-lived daemon (serve the task API; runwasi),
//! and `delete`. `start` also sets off the search for the image's precompiled artifact
//! ([`prepare`]), which goes on beside containerd creating the container; the daemon opens the node's cache for the containers it forks
//! ([`cache`]); a container's process runs the module ([`sandbox`]).

mod cache;
mod prepare;
mod sandbox;

use containerd_shim_wasm::shim::{Cli, Config, Shim, Version, version};

struct WasmbuildShim;

impl Shim for WasmbuildShim {
    type Sandbox = sandbox::WasmbuildSandbox;

    fn name() -> &'static str {
        "wasmbuild"
    }

    fn version() -> Version {
        version!()
    }
}

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // The lookup `start` hands to a process of its own (see `prepare::spawn`).
    if args.first().is_some_and(|a| a == prepare::PREPARE_ARG)
        && let [_, address, namespace, id] = args.as_slice()
    {
        let text = |a: &std::ffi::OsString| a.to_string_lossy().into_owned();
        prepare::prepare_logged(&cache::home(), &text(address), &text(namespace), &text(id));
        return;
    }
    if let Ok(flags) = containerd_shim::parse(&args) {
        let home = cache::home();
        match flags.action.as_str() {
            "start" if !flags.id.is_empty() && !flags.address.is_empty() => {
                prepare::spawn(&flags.address, &flags.namespace, &flags.id);
            }
            // The daemon: every container process is forked from it.
            "" if !flags.version && !flags.info => {
                if let Err(error) = cache::open_for_containers(&home) {
                    // runwasi's logger is not set up yet; containerd logs the shim's stderr.
                    eprintln!(
                        "containerd-shim-wasmbuild-v1: no cache of compiled modules at {}: {error}",
                        home.join("compiled").display()
                    );
                }
            }
            _ => {}
        }
    }
    WasmbuildShim::run(Config::default());
}
