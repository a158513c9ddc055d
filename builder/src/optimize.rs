//! `[optimize]`: the built-in strip pass, then binaryen's `wasm-opt` at the chosen level.
//!
//! Stripping comes first: binaryen 108 crashes on DWARF 5, and what is stripped need not be
//! read. `wasm-opt` is told exactly which proposals the module uses (`--enable-*`), never
//! `-all`, which lets it write instructions a host may not support and corrupts Go modules.
//! The result is cached under the module's bytes, the settings, the flags and the
//! `wasm-opt` version, so a rebuild of the same module costs one `wasm-opt --version`.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use wasmbuild_spec::{OnFailure, OptLevel, Optimize, Strip};
use wasmparser::{Validator, WasmFeatures};

use crate::cache::{Cache, Key};
use crate::toolchain::process;
use crate::validate::ModuleError;
use crate::{BuildError, ModuleInfo, Reporter, strip};

/// The cache's folder for this step.
const STEP: &str = "optimize";

/// What optimizing did, for the build summary and `inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub before: u64,
    pub after: u64,
    /// `wasm-opt --version` ("wasm-opt version 108"), when a level asked for it.
    pub wasm_opt: Option<String>,
    pub cached: bool,
    /// The custom sections the strip pass removed, in module order.
    pub stripped: Vec<String>,
    /// Why `wasm-opt`'s result was not used (`on-failure = "warn"`), as the warning said.
    pub skipped: Option<String>,
}

/// Strips and optimizes `module` as `settings` say; returns the new bytes.
pub fn run(
    module: Vec<u8>,
    info: &ModuleInfo,
    settings: &Optimize,
    cache: &Cache,
    reporter: &dyn Reporter,
) -> Result<(Vec<u8>, Report), BuildError> {
    let before = module.len() as u64;
    let stripped: Vec<String> = info
        .custom_sections
        .iter()
        .filter(|name| !strip::keeps(settings.strip, name))
        .cloned()
        .collect();

    if settings.level == OptLevel::None {
        // Stripping alone is a copy of the module: not worth a cache entry.
        let (module, _) = strip_module(module, settings.strip)?;
        let after = module.len() as u64;
        reporter.step(
            STEP,
            &match settings.strip {
                Strip::None => "none (level = \"none\", strip = \"none\")".to_owned(),
                mode => format!(
                    "strip {}: {} ({})",
                    mode.as_str(),
                    removed(&stripped),
                    change(before, after)
                ),
            },
        );
        return Ok((
            module,
            Report {
                before,
                after,
                wasm_opt: None,
                cached: false,
                stripped,
                skipped: None,
            },
        ));
    }

    let wasm_opt = WasmOpt::find(settings.level, cache)?;
    let features = binaryen_features(&info.features);
    let key = Key::new(&[
        STEP.as_bytes(),
        &module,
        settings.level.as_str().as_bytes(),
        settings.strip.as_str().as_bytes(),
        settings.on_failure.as_str().as_bytes(),
        wasm_opt.version.as_bytes(),
        features.join(" ").as_bytes(),
    ]);
    let report = |after: u64, cached: bool, skipped: Option<String>| Report {
        before,
        after,
        wasm_opt: Some(wasm_opt.version.clone()),
        cached,
        stripped: stripped.clone(),
        skipped,
    };
    if let Some(optimized) = cache.get(STEP, &key) {
        let after = optimized.len() as u64;
        reporter.step(STEP, &format!("cached ({})", change(before, after)));
        return Ok((optimized, report(after, true, None)));
    }

    let (module, _) = strip_module(module, settings.strip)?;
    let mut command = wasm_opt.command(settings, &features);
    let line = process::display(&command);
    let strip_note = match (settings.strip, stripped.len()) {
        (Strip::None, _) | (_, 0) => String::new(),
        (mode, _) => format!("strip {}: {}, then ", mode.as_str(), removed(&stripped)),
    };
    reporter.step(
        STEP,
        &format!(
            "{strip_note}{line} ({})",
            crate::human_size(module.len() as u64)
        ),
    );

    match optimize(
        &module,
        &wasm_opt,
        &features,
        settings,
        &mut command,
        reporter,
    ) {
        Ok(optimized) => {
            let after = optimized.len() as u64;
            reporter.step(
                STEP,
                &format!("{}: {}", wasm_opt.version, change(before, after)),
            );
            if let Err(error) = cache.put(STEP, &key, &optimized) {
                let root = cache.root().map(|r| r.display().to_string());
                reporter.warn(&format!(
                    "cannot store the optimized module in the step cache at {}: {error}",
                    root.unwrap_or_default()
                ));
            }
            Ok((optimized, report(after, false, None)))
        }
        Err(error) => match settings.on_failure {
            OnFailure::Error => Err(error),
            OnFailure::Warn => {
                let message = format!(
                    "{error}; packing the module without wasm-opt's changes (on-failure = \"warn\")"
                );
                reporter.warn(&message);
                let after = module.len() as u64;
                Ok((module, report(after, false, Some(message))))
            }
        },
    }
}

/// `wasm-opt` on `module`; any way it can fail is an error that `on-failure` decides about.
fn optimize(
    module: &[u8],
    wasm_opt: &WasmOpt,
    features: &[String],
    settings: &Optimize,
    command: &mut Command,
    reporter: &dyn Reporter,
) -> Result<Vec<u8>, BuildError> {
    let unknown = wasm_opt.unknown_features(features);
    if !unknown.is_empty() {
        return Err(BuildError::OptimizerUnsupported {
            version: wasm_opt.version.clone(),
            features: unknown,
        });
    }
    let line = process::display(command);
    // Temp files named plainly, with wasm-opt run beside them, so the command line in a
    // message is one a person can read and run.
    let dir = tempfile::Builder::new()
        .prefix("wasmbuild-optimize-")
        .tempdir()
        .map_err(|source| BuildError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let input = dir.path().join(INPUT);
    std::fs::write(&input, module).map_err(|source| BuildError::Io {
        path: input.clone(),
        source,
    })?;
    command.current_dir(dir.path());
    let finished = process::run_streaming(command, reporter)?;
    if !finished.success {
        return Err(BuildError::ToolchainFailed {
            command: line,
            status: finished.status,
            stderr: finished.stderr_tail,
            hint: Some(ON_FAILURE_HINT.to_owned()),
        });
    }
    let output = dir.path().join(OUTPUT);
    let optimized = match std::fs::read(&output) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(BuildError::MissingOutput {
                command: line,
                output,
            });
        }
        Err(source) => {
            return Err(BuildError::Io {
                path: output,
                source,
            });
        }
    };
    Validator::new_with_features(WasmFeatures::default())
        .validate_all(&optimized)
        .map_err(|e| BuildError::Optimized {
            error: ModuleError::Malformed {
                offset: e.offset(),
                message: e.message().to_owned(),
            },
        })?;
    // A later binaryen may add a section of its own; what `strip` drops stays dropped.
    let (optimized, _) = strip_module(optimized, settings.strip)?;
    let (was, now) = (code_size(module)?, code_size(&optimized)?);
    if matches!(settings.level, OptLevel::Os | OptLevel::Oz) && now > was {
        return Err(BuildError::OptimizedLarger {
            command: line,
            before: was,
            after: now,
        });
    }
    Ok(optimized)
}

const INPUT: &str = "input.wasm";
const OUTPUT: &str = "output.wasm";
const ON_FAILURE_HINT: &str = "to pack the module without wasm-opt's changes when this happens, set `on-failure = \"warn\"` in [optimize]; `level = \"none\"` skips wasm-opt";

/// Bytes outside custom sections: what `wasm-opt` optimizes. Debug info it rewrites (with
/// `-g` and `strip = "none"`) may grow, and that is not the optimizer making code larger.
fn code_size(module: &[u8]) -> Result<u64, BuildError> {
    let (bare, _) = strip::strip(module.to_vec(), Strip::All)
        .map_err(|error| BuildError::Optimized { error })?;
    Ok(bare.len() as u64)
}

fn strip_module(module: Vec<u8>, mode: Strip) -> Result<(Vec<u8>, Vec<String>), BuildError> {
    strip::strip(module, mode).map_err(|error| BuildError::Optimized { error })
}

/// Step-cache folder for what tools say about themselves.
const TOOLS: &str = "tools";

/// A key naming one installed binary as it is now: `program` found as the OS would find it,
/// with its size, modification time and inode, so replacing or upgrading it changes the key.
fn identity(program: &OsString) -> Option<Key> {
    use std::os::unix::fs::MetadataExt;
    let as_path = PathBuf::from(program);
    let path = if as_path.components().count() > 1 {
        as_path
    } else {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join(&as_path))
            .find(|candidate| candidate.is_file())?
    };
    let path = std::fs::canonicalize(path).ok()?;
    let meta = std::fs::metadata(&path).ok()?;
    Some(Key::new(&[
        b"wasm-opt --version",
        path.as_os_str().as_encoded_bytes(),
        &meta.len().to_le_bytes(),
        &meta.mtime().to_le_bytes(),
        &meta.mtime_nsec().to_le_bytes(),
        &meta.ino().to_le_bytes(),
    ]))
}

/// What the `wasm-opt` a build would run (`WASM_OPT`, else on PATH) says its version is
/// ("wasm-opt version 108"), for `wasmbuild --version`; `None` when there is none.
pub fn wasm_opt_version(cache: &Cache) -> Result<Option<String>, BuildError> {
    match WasmOpt::find(OptLevel::Os, cache) {
        Ok(wasm_opt) => Ok(Some(wasm_opt.version)),
        Err(BuildError::WasmOptNotFound { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The `wasm-opt` to run and what it says its version is.
struct WasmOpt {
    program: OsString,
    version: String,
}

impl WasmOpt {
    /// `WASM_OPT`, else `wasm-opt` on PATH; asks it for its version.
    fn find(level: OptLevel, cache: &Cache) -> Result<WasmOpt, BuildError> {
        let from_env = std::env::var_os("WASM_OPT").filter(|v| !v.is_empty());
        let program = match &from_env {
            // A relative path stays right when wasm-opt runs in its temp folder.
            Some(path) if PathBuf::from(path).components().count() > 1 => {
                std::path::absolute(path).map_or_else(|_| path.clone(), PathBuf::into_os_string)
            }
            Some(name) => name.clone(),
            None => OsString::from("wasm-opt"),
        };
        // The version is part of every cache key; asking the binary costs a process per
        // build, so it is remembered per binary (path, size, mtime, inode).
        let identity = identity(&program);
        if let Some(version) = identity.as_ref().and_then(|key| cache.get(TOOLS, key))
            && let Ok(version) = String::from_utf8(version)
        {
            return Ok(WasmOpt { program, version });
        }
        let mut command = Command::new(&program);
        command.arg("--version");
        let output = command.output().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                BuildError::WasmOptNotFound {
                    level: level.as_str().to_owned(),
                    program: program.to_string_lossy().into_owned(),
                    from_env: from_env.is_some(),
                }
            } else {
                BuildError::Spawn {
                    command: process::display(&command),
                    source,
                }
            }
        })?;
        if !output.status.success() {
            return Err(BuildError::ToolchainFailed {
                command: process::display(&command),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr)
                    .trim_end()
                    .to_owned(),
                hint: Some(
                    "WASM_OPT (or `wasm-opt` on PATH) must be binaryen's wasm-opt".to_owned(),
                ),
            });
        }
        let version = String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        if let Some(key) = &identity {
            // Only a speed-up: a cache that cannot be written is no reason to fail.
            let _ = cache.put(TOOLS, key, version.as_bytes());
        }
        Ok(WasmOpt { program, version })
    }

    /// `wasm-opt -Oz [-g] --enable-... input.wasm -o output.wasm`, to run in the folder
    /// that holds `input.wasm`.
    fn command(&self, settings: &Optimize, features: &[String]) -> Command {
        let mut command = Command::new(&self.program);
        command.arg(format!("-{}", settings.level.as_str()));
        // The name section is written only with -g; keep it when strip keeps it.
        if settings.strip != Strip::All {
            command.arg("-g");
        }
        for feature in features {
            command.arg(format!("--enable-{feature}"));
        }
        command.args([INPUT, "-o", OUTPUT]);
        command
    }

    /// Which of `features` this wasm-opt has no `--enable-*` flag for, by its `--help`.
    fn unknown_features(&self, features: &[String]) -> Vec<String> {
        let Ok(help) = Command::new(&self.program).arg("--help").output() else {
            return Vec::new();
        };
        let help = String::from_utf8_lossy(&help.stdout);
        let known: BTreeSet<&str> = help
            .split_whitespace()
            .filter_map(|word| word.trim_end_matches(',').strip_prefix("--enable-"))
            .collect();
        if known.is_empty() {
            // A help text this cannot read: let wasm-opt itself say what it does not know.
            return Vec::new();
        }
        features
            .iter()
            .filter(|f| !known.contains(f.as_str()))
            .cloned()
            .collect()
    }
}

/// binaryen's names for the proposals `features` (from the feature scan) lists.
fn binaryen_features(features: &[String]) -> Vec<String> {
    let mut names: Vec<String> = features
        .iter()
        .map(|feature| {
            match feature.as_str() {
                "function_references" => "typed-function-references",
                "shared_everything_threads" => "shared-everything",
                "custom_descriptors" => "custom-descriptors",
                other => other,
            }
            .replace('_', "-")
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// "3 custom sections (.debug_info, ...)".
fn removed(names: &[String]) -> String {
    match names {
        [] => "no custom sections to remove".to_owned(),
        [one] => format!("removed {one}"),
        many => format!("removed {} custom sections", many.len()),
    }
}

fn change(before: u64, after: u64) -> String {
    format!(
        "{} → {}",
        crate::human_size(before),
        crate::human_size(after)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_named_as_binaryen_flags() {
        let names = |features: &[&str]| {
            binaryen_features(&features.iter().map(|f| (*f).to_owned()).collect::<Vec<_>>())
        };
        assert_eq!(
            names(&[
                "sign-ext",
                "bulk-memory",
                "function_references",
                "mutable-globals"
            ]),
            [
                "bulk-memory",
                "mutable-globals",
                "sign-ext",
                "typed-function-references"
            ]
        );
        assert_eq!(names(&["wide-arithmetic"]), ["wide-arithmetic"]);
    }

    #[test]
    fn the_command_enables_what_the_module_uses_and_keeps_names_unless_stripped() {
        let wasm_opt = WasmOpt {
            program: "wasm-opt".into(),
            version: "wasm-opt version 108".to_owned(),
        };
        let features = ["bulk-memory".to_owned(), "sign-ext".to_owned()];
        let settings = |level, strip| Optimize {
            level,
            strip,
            on_failure: OnFailure::Error,
        };
        assert_eq!(
            process::display(&wasm_opt.command(&settings(OptLevel::Oz, Strip::Debug), &features)),
            "wasm-opt -Oz -g --enable-bulk-memory --enable-sign-ext input.wasm -o output.wasm"
        );
        assert_eq!(
            process::display(&wasm_opt.command(&settings(OptLevel::O3, Strip::All), &[])),
            "wasm-opt -O3 input.wasm -o output.wasm"
        );
    }

    #[test]
    fn sizes_read_as_build_prints_them() {
        assert_eq!(crate::human_size(999), "999 B");
        assert_eq!(change(123_456, 80_100), "123.5 kB → 80.1 kB");
        assert_eq!(crate::human_size(2_658_956), "2.7 MB");
    }
}
