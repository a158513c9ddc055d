//! `[precompile]`: wasmtime `.cwasm` artifacts, one per target, made by engines configured
//! as `engine` says so that a loader can check it matches.

use wasmtime::Engine;

use crate::cache::{Cache, Key};
use crate::engine;
use crate::{BuildError, Reporter};

/// One target's precompiled module and what a loader must match to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precompiled {
    pub target: String,
    pub cwasm: Vec<u8>,
    /// The wasmtime version that made it (`48.0.8`).
    pub wasmtime: String,
    /// The engine settings it was compiled with, as a stable string.
    pub engine: String,
    pub cached: bool,
}

/// Compiles `module` for each of `targets`. Every target is checked before any compiles,
/// so a typo in the last one fails at once.
pub fn run(
    module: &[u8],
    targets: &[String],
    cache: &Cache,
    reporter: &dyn Reporter,
) -> Result<Vec<Precompiled>, BuildError> {
    let engines = targets
        .iter()
        .map(|target| Ok((target, engine_for(target)?)))
        .collect::<Result<Vec<_>, BuildError>>()?;
    let mut out = Vec::with_capacity(engines.len());
    for (target, engine) in engines {
        let settings = engine::settings_of(&engine);
        let key = Key::new(&[
            b"precompile",
            module,
            target.as_bytes(),
            engine::wasmtime_version().as_bytes(),
            settings.as_bytes(),
        ]);
        let (cwasm, cached) = match cache.get("precompile", &key) {
            Some(cwasm) => {
                reporter.step("precompile", &format!("{target}: cached"));
                (cwasm, true)
            }
            None => {
                reporter.step(
                    "precompile",
                    &format!("{target} ({} kB)", module.len().div_ceil(1000)),
                );
                let cwasm =
                    engine
                        .precompile_module(module)
                        .map_err(|error| BuildError::Precompile {
                            target: target.clone(),
                            message: format!("{error:#}"),
                        })?;
                if let Err(error) = cache.put("precompile", &key, &cwasm) {
                    reporter.warn(&format!(
                        "cannot store the precompiled {target} module in the step cache: {error}"
                    ));
                }
                (cwasm, false)
            }
        };
        out.push(Precompiled {
            target: target.clone(),
            cwasm,
            wasmtime: engine::wasmtime_version().to_owned(),
            engine: settings,
            cached,
        });
    }
    Ok(out)
}

fn engine_for(target: &str) -> Result<Engine, BuildError> {
    let unsupported = |error: wasmtime::Error| BuildError::UnsupportedTarget {
        target: target.to_owned(),
        reason: format!("{error:#}"),
    };
    let config = engine::config_for(target).map_err(unsupported)?;
    Engine::new(&config).map_err(unsupported)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Silent;

    /// A command module with some real code: a loop, calls, memory traffic.
    fn module() -> Vec<u8> {
        use wasm_encoder::{
            CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction, MemArg,
            MemorySection, MemoryType, Module, TypeSection, ValType,
        };
        let mut types = TypeSection::new();
        types.ty().function([], []);
        types.ty().function([ValType::I32], [ValType::I32]);
        let mut functions = FunctionSection::new();
        let mut code = CodeSection::new();
        functions.function(0);
        let mut start = Function::new([]);
        start.instruction(&Instruction::I32Const(10));
        start.instruction(&Instruction::Call(1));
        start.instruction(&Instruction::Drop);
        start.instruction(&Instruction::End);
        code.function(&start);
        for i in 0..40 {
            functions.function(1);
            let mut f = Function::new([(1, ValType::I32)]);
            let mem = MemArg {
                offset: 0,
                align: 2,
                memory_index: 0,
            };
            f.instruction(&Instruction::Block(wasm_encoder::BlockType::Empty));
            f.instruction(&Instruction::Loop(wasm_encoder::BlockType::Empty));
            f.instruction(&Instruction::LocalGet(0));
            f.instruction(&Instruction::I32Eqz);
            f.instruction(&Instruction::BrIf(1));
            f.instruction(&Instruction::LocalGet(1));
            f.instruction(&Instruction::LocalGet(0));
            f.instruction(&Instruction::I32Const(i + 3));
            f.instruction(&Instruction::I32Mul);
            f.instruction(&Instruction::I32Add);
            f.instruction(&Instruction::LocalSet(1));
            f.instruction(&Instruction::LocalGet(0));
            f.instruction(&Instruction::LocalGet(1));
            f.instruction(&Instruction::I32Store(mem));
            f.instruction(&Instruction::LocalGet(0));
            f.instruction(&Instruction::I32Const(1));
            f.instruction(&Instruction::I32Sub);
            f.instruction(&Instruction::LocalSet(0));
            f.instruction(&Instruction::Br(0));
            f.instruction(&Instruction::End);
            f.instruction(&Instruction::End);
            f.instruction(&Instruction::LocalGet(1));
            f.instruction(&Instruction::End);
            code.function(&f);
        }
        let mut memories = MemorySection::new();
        memories.memory(MemoryType {
            minimum: 1,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        let mut exports = ExportSection::new();
        exports.export("_start", ExportKind::Func, 0);
        exports.export("memory", ExportKind::Memory, 0);
        let mut module = Module::new();
        module
            .section(&types)
            .section(&functions)
            .section(&memories)
            .section(&exports)
            .section(&code);
        module.finish()
    }

    fn targets(names: &[&str]) -> Vec<String> {
        names.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn each_target_gets_a_cwasm_and_the_same_module_gives_the_same_bytes() {
        let module = module();
        let wanted = targets(&["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"]);
        let first = run(&module, &wanted, &Cache::disabled(), &Silent).unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].target, "x86_64-unknown-linux-gnu");
        assert_eq!(first[1].target, "aarch64-unknown-linux-gnu");
        assert_eq!(&first[0].cwasm[..4], b"\x7fELF");
        assert_ne!(first[0].cwasm, first[1].cwasm);
        assert_ne!(first[0].engine, first[1].engine);
        assert_eq!(first[0].wasmtime, engine::WASMTIME_VERSION);
        let second = run(&module, &wanted, &Cache::disabled(), &Silent).unwrap();
        assert_eq!(first, second, "parallel compilation is deterministic");
    }

    #[test]
    fn the_host_cwasm_loads_into_the_host_engine() {
        let module = module();
        let made = run(
            &module,
            &targets(&[&engine::host_target()]),
            &Cache::disabled(),
            &Silent,
        )
        .unwrap();
        let engine = engine::host_engine().unwrap();
        assert_eq!(made[0].engine, engine::settings_of(&engine));
        // SAFETY: the bytes were just made by `precompile_module` of an engine configured
        // exactly as this one.
        #[allow(unsafe_code)]
        let loaded = unsafe { wasmtime::Module::deserialize(&engine, &made[0].cwasm) };
        loaded.unwrap();
        let other = run(
            &module,
            &targets(&["aarch64-unknown-linux-gnu"]),
            &Cache::disabled(),
            &Silent,
        )
        .unwrap();
        if engine::host_target() != "aarch64-unknown-linux-gnu" {
            // SAFETY: as above; wasmtime checks the header and refuses the other target.
            #[allow(unsafe_code)]
            let refused = unsafe { wasmtime::Module::deserialize(&engine, &other[0].cwasm) };
            assert!(refused.is_err());
        }
    }

    #[test]
    fn a_second_build_comes_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let module = module();
        let wanted = targets(&["x86_64-unknown-linux-gnu"]);
        let first = run(&module, &wanted, &cache, &Silent).unwrap();
        assert!(!first[0].cached);
        let second = run(&module, &wanted, &cache, &Silent).unwrap();
        assert!(second[0].cached);
        assert_eq!(first[0].cwasm, second[0].cwasm);
    }

    #[test]
    fn an_unknown_target_names_itself_and_the_known_ones() {
        let error = run(
            &module(),
            &targets(&["x86_64-unknown-linux-gnu", "mips-unknown-linux-gnu"]),
            &Cache::disabled(),
            &Silent,
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("\"mips-unknown-linux-gnu\""), "{message}");
        let hint = error.hint().unwrap();
        assert!(hint.contains("aarch64-unknown-linux-gnu"), "{hint}");
        assert!(
            run(
                &module(),
                &targets(&["nonsense"]),
                &Cache::disabled(),
                &Silent
            )
            .is_err()
        );
    }
}
