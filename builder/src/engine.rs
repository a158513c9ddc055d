//! The one wasmtime configuration that precompile, `run` and the shim share: a `.cwasm` only
//! loads into an engine configured exactly like the one that produced it.
//!
//! The target is always set explicitly, for the host too: wasmtime then uses that target's
//! baseline CPU features instead of probing this machine's, so the code it writes for a
//! target is the same on every build machine and runs on every CPU of that target, and
//! `run` (configured the same way) accepts it.

use sha2::{Digest as _, Sha256};
use wasmtime::{Config, Engine, OptLevel, WasmBacktraceDetails};

/// The wasmtime crate this build links, as `Cargo.lock` pins it (a unit test checks).
/// wasmtime exports no version constant, and its own artifacts record only the major.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Triples `[precompile] targets` is known to accept; others that Cranelift compiles for
/// (another OS or libc of these architectures) work too.
pub const SUPPORTED_TARGETS: &[&str] = &[
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "riscv64gc-unknown-linux-gnu",
    "s390x-unknown-linux-gnu",
    "x86_64-unknown-linux-musl",
    "aarch64-unknown-linux-musl",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
    "x86_64-pc-windows-msvc",
];

/// The engine settings for `target`: everything but the target is the same for all.
pub fn config_for(target: &str) -> wasmtime::Result<Config> {
    let mut config = Config::new();
    config.target(target)?;
    config.cranelift_opt_level(OptLevel::Speed);
    // `run --timeout` stops a guest at an epoch deadline. The checks are compiled into the
    // code and are part of wasmtime's compatibility hash, so every engine has them: the
    // artifacts precompile writes then load into `run`'s engine, with or without a timeout.
    config.epoch_interruption(true);
    // A trap's backtrace names functions from the module's name section, and adds file and
    // line from its DWARF when it kept any. Said here rather than left to
    // WASMTIME_BACKTRACE_DETAILS, wasmtime's default: the setting is part of the
    // compatibility hash, and an environment variable must not decide whether an artifact
    // loads.
    config.wasm_backtrace_details(WasmBacktraceDetails::Enable);
    Ok(config)
}

/// The engine settings for running modules on this host.
pub fn config() -> wasmtime::Result<Config> {
    config_for(&host_target())
}

pub fn host_engine() -> wasmtime::Result<Engine> {
    Engine::new(&config()?)
}

/// The host engine with fuel metering too, for `run --fuel`. Counting fuel is compiled into
/// the code, so these settings differ from [`host_engine`]'s: no precompiled artifact loads
/// into this engine, and `run` compiles the module for it (and caches it apart).
pub fn host_engine_with_fuel() -> wasmtime::Result<Engine> {
    let mut config = config()?;
    config.consume_fuel(true);
    Engine::new(&config)
}

/// This host's target triple, as `[precompile] targets` spells it
/// (`x86_64-unknown-linux-gnu`).
pub fn host_target() -> String {
    let arch = match std::env::consts::ARCH {
        "riscv64" => "riscv64gc",
        arch => arch,
    };
    let rest = match std::env::consts::OS {
        "linux" if cfg!(target_env = "musl") => "unknown-linux-musl",
        "linux" => "unknown-linux-gnu",
        "macos" => "apple-darwin",
        "windows" if cfg!(target_env = "gnu") => "pc-windows-gnu",
        "windows" => "pc-windows-msvc",
        "freebsd" => "unknown-freebsd",
        os => return format!("{arch}-unknown-{os}"),
    };
    format!("{arch}-{rest}")
}

/// The wasmtime version that compiles and loads modules here (`48.0.8`).
pub fn wasmtime_version() -> &'static str {
    WASMTIME_VERSION
}

/// What an engine's precompiled code depends on, as a stable string: wasmtime's own
/// compatibility hash (target, Cranelift and ISA flags, tunables, wasm features, artifact
/// version), through SHA-256. Two engines with the same string load each other's `.cwasm`.
pub fn settings_of(engine: &Engine) -> String {
    use std::hash::Hash;
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!(
        "cranelift opt-level=speed; compat sha256:{}",
        hex::encode(hasher.0.finalize())
    )
}

/// This host's engine settings (see [`settings_of`]).
pub fn settings() -> wasmtime::Result<String> {
    Ok(settings_of(&host_engine()?))
}

/// What ended a guest that neither returned nor exited, in a line: "PATH trapped: WHAT"
/// (without wasmtime's "wasm trap: " prefix), or "PATH failed: CAUSE" for a host
/// function's error. `run` and the containerd shim say it the same way.
pub fn failure_summary(error: &wasmtime::Error, module_path: &str) -> String {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => {
            let trap = trap.to_string();
            let trap = trap.strip_prefix("wasm trap: ").unwrap_or(&trap);
            format!("{module_path} trapped: {trap}")
        }
        None => format!("{module_path} failed: {}", error.root_cause()),
    }
}

/// The frames of `error`'s wasm backtrace, innermost first, each with its function's name
/// from the module's name section (and file and line where the module kept DWARF), under a
/// `wasm backtrace:` line; empty without one.
pub fn backtrace_text(error: &wasmtime::Error) -> String {
    let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return String::new();
    };
    // wasmtime's own rendering (it demangles names and lists inlined frames), without its
    // first line, which frames it as an error of its own.
    let rendered = backtrace.to_string();
    let frames = rendered.split_once('\n').map_or("", |(_, frames)| frames);
    if frames.trim().is_empty() {
        return String::new();
    }
    format!("\nwasm backtrace:\n{frames}")
}

/// Feeds `Hash` into SHA-256, which unlike `DefaultHasher` is the same in every process
/// and Rust release.
struct Sha256Hasher(Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes([
            digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
        ])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_version_constant_is_the_locked_wasmtime() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap();
        let locked = lock
            .split("[[package]]")
            .find(|p| p.contains("\nname = \"wasmtime\"\n"))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
            .map(|v| v.trim_matches('"').to_owned());
        assert_eq!(locked.as_deref(), Some(WASMTIME_VERSION));
    }

    #[test]
    fn the_host_is_a_target_wasmtime_takes() {
        let host = host_target();
        assert!(host.matches('-').count() >= 2, "{host}");
        if cfg!(all(
            target_arch = "x86_64",
            target_os = "linux",
            target_env = "gnu"
        )) {
            assert_eq!(host, "x86_64-unknown-linux-gnu");
        }
        host_engine().unwrap();
    }

    #[test]
    fn settings_are_stable_and_differ_by_target() {
        let x86 = Engine::new(&config_for("x86_64-unknown-linux-gnu").unwrap()).unwrap();
        let again = Engine::new(&config_for("x86_64-unknown-linux-gnu").unwrap()).unwrap();
        let arm = Engine::new(&config_for("aarch64-unknown-linux-gnu").unwrap()).unwrap();
        assert_eq!(settings_of(&x86), settings_of(&again));
        assert_ne!(settings_of(&x86), settings_of(&arm));
        assert!(settings_of(&x86).starts_with("cranelift opt-level=speed; compat sha256:"));
    }

    #[test]
    fn epoch_checks_are_part_of_the_settings() {
        // Why precompile's engine must have them too: without, its artifacts would not
        // match `run`'s engine.
        let mut without = config().unwrap();
        without.epoch_interruption(false);
        let without = Engine::new(&without).unwrap();
        assert_ne!(settings_of(&without), settings_of(&host_engine().unwrap()));
    }

    #[test]
    fn fuel_metering_is_other_settings() {
        let plain = host_engine().unwrap();
        let metered = host_engine_with_fuel().unwrap();
        assert_ne!(settings_of(&plain), settings_of(&metered));
    }

    #[test]
    fn every_listed_target_makes_an_engine() {
        for target in SUPPORTED_TARGETS {
            Engine::new(&config_for(target).unwrap()).unwrap_or_else(|e| panic!("{target}: {e:#}"));
        }
    }
}
