//! `wasmbuild --version`: wasmbuild's version, the wasmtime it embeds (what its precompiled
//! artifacts need) and the wasm-opt a build would run, one per line.

use std::process::ExitCode;

use wasmbuild_builder::Cache;

pub fn run() -> ExitCode {
    outln!("wasmbuild {}", env!("CARGO_PKG_VERSION"));
    outln!("wasmtime {}", wasmbuild_builder::engine::wasmtime_version());
    // No cache: asking for a version should not write to $WASMBUILD_HOME.
    let wasm_opt = match wasmbuild_builder::optimize::wasm_opt_version(&Cache::disabled()) {
        Ok(Some(version)) => match version.strip_prefix("wasm-opt version ") {
            Some(number) => format!("wasm-opt {number}"),
            None => format!("wasm-opt: {version}"),
        },
        Ok(None) => match std::env::var_os("WASM_OPT").filter(|v| !v.is_empty()) {
            Some(program) => format!(
                "wasm-opt: not found (install binaryen; WASM_OPT is {})",
                program.to_string_lossy()
            ),
            None => "wasm-opt: not found (install binaryen)".to_owned(),
        },
        Err(error) => format!("wasm-opt: {error}"),
    };
    outln!("{wasm_opt}");
    ExitCode::SUCCESS
}
