//! The one wasmtime configuration that precompile, `run` and the shim share: a `.cwasm` only
//! loads into an engine configured exactly like the one that produced it.

use wasmtime::{Config, Engine, OptLevel};

/// The engine settings for running modules on this host.
pub fn config() -> Config {
    let mut config = Config::new();
    config.cranelift_opt_level(OptLevel::Speed);
    config
}

pub fn host_engine() -> wasmtime::Result<Engine> {
    Engine::new(&config())
}
