//! What makes a module runnable as a WASI preview-1 command, checked with wasmparser.

use serde::Serialize;
use wasmbuild_spec::{ExecModel, Policy};
use wasmparser::{ExternalKind, KnownCustom, Parser, Payload, TypeRef, Validator, WasmFeatures};

use crate::features::FeatureScan;

/// The only import module a WASI preview-1 host provides.
pub const WASI_P1: &str = "wasi_snapshot_preview1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Import {
    pub module: String,
    pub name: String,
    pub kind: &'static str,
    /// Where the import is declared in the module.
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Export {
    pub name: String,
    pub kind: &'static str,
}

/// A linear memory, in 64 KiB pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Memory {
    pub initial_pages: u64,
    pub maximum_pages: Option<u64>,
    pub shared: bool,
    pub memory64: bool,
    pub imported: bool,
}

/// One entry of the `producers` custom section ("language", "processed-by", "sdk").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Producer {
    pub field: String,
    pub name: String,
    pub version: String,
}

/// A module's interface, as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleInfo {
    pub size: u64,
    pub imports: Vec<Import>,
    pub exports: Vec<Export>,
    pub memories: Vec<Memory>,
    /// The proposals beyond WebAssembly 1.0 it uses, by binaryen's names (`bulk-memory`, ...).
    pub features: Vec<String>,
    pub producers: Vec<Producer>,
    /// Custom section names, in order (`name`, `producers`, `.debug_info`, ...).
    pub custom_sections: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("invalid WebAssembly at byte offset {offset:#x}: {message}")]
    Malformed { offset: usize, message: String },
    #[error(
        "it is a WebAssembly component (WASI preview 2); components are not supported yet, only core modules (WASI preview 1)"
    )]
    Component,
    #[error("it imports {}; a WASI preview-1 host provides only `{WASI_P1}`", list(.0))]
    ForeignImports(Vec<Import>),
    #[error("it exports no `_start` function, so it is not a command{}", found(.0))]
    NoStart(Vec<Export>),
    #[error("it is a reactor (it exports `_initialize` and no `_start`), not a command")]
    Reactor,
    #[error(
        "it exports `_start`, so it is a command, but the Wasmfile says `exec-model = \"reactor\"`"
    )]
    NotAReactor,
}

fn list(imports: &[Import]) -> String {
    imports
        .iter()
        .map(|i| {
            format!(
                "`{}.{}` ({}, at byte offset {:#x})",
                i.module, i.name, i.kind, i.offset
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn found(exports: &[Export]) -> String {
    if exports.is_empty() {
        " (it exports nothing)".to_owned()
    } else {
        let names: Vec<_> = exports.iter().map(|e| format!("`{}`", e.name)).collect();
        format!(" (it exports {})", names.join(", "))
    }
}

impl ModuleError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ModuleError::Component => Some("build for `wasm32-wasip1`, not `wasm32-wasip2`".to_owned()),
            ModuleError::ForeignImports(imports) => Some(format!(
                "remove the code that declares these imports (e.g. an `extern` block with #[link(wasm_import_module = ...)]) or the dependency that brings them; if the host provides them, allow them: `[build] allow-imports = [{}]`",
                imports.iter().map(|i| format!("\"{}.{}\"", i.module, i.name)).collect::<Vec<_>>().join(", ")
            )),
            ModuleError::Reactor => Some("to pack it as a library for a host to call, set `[build] exec-model = \"reactor\"`".to_owned()),
            ModuleError::NotAReactor => Some("remove `exec-model` (the default is \"command\")".to_owned()),
            ModuleError::NoStart(_) => {
                Some("build a binary with `fn main` (a cdylib or reactor module has no `_start`)".to_owned())
            }
            ModuleError::Malformed { .. } => None,
        }
    }
}

/// Reads a module's imports, exports and custom sections, validating it as it goes.
pub fn inspect_module(bytes: &[u8]) -> Result<ModuleInfo, ModuleError> {
    let mut validator = Validator::new_with_features(WasmFeatures::default());
    let mut info = ModuleInfo {
        size: bytes.len() as u64,
        imports: Vec::new(),
        exports: Vec::new(),
        memories: Vec::new(),
        features: Vec::new(),
        producers: Vec::new(),
        custom_sections: Vec::new(),
    };
    let mut features = FeatureScan::default();
    let malformed = |e: wasmparser::BinaryReaderError| ModuleError::Malformed {
        offset: e.offset(),
        message: e.message().to_owned(),
    };
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(malformed)?;
        match &payload {
            Payload::Version {
                encoding: wasmparser::Encoding::Component,
                ..
            } => {
                return Err(ModuleError::Component);
            }
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports_with_offsets() {
                    let (offset, import) = import.map_err(malformed)?;
                    if let TypeRef::Memory(memory) = import.ty {
                        info.memories.push(memory_info(memory, true));
                    }
                    info.imports.push(Import {
                        module: import.module.to_owned(),
                        name: import.name.to_owned(),
                        kind: match import.ty {
                            TypeRef::Func(_) | TypeRef::FuncExact(_) => "func",
                            TypeRef::Table(_) => "table",
                            TypeRef::Memory(_) => "memory",
                            TypeRef::Global(_) => "global",
                            TypeRef::Tag(_) => "tag",
                        },
                        offset,
                    });
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader.clone() {
                    let export = export.map_err(malformed)?;
                    info.exports.push(Export {
                        name: export.name.to_owned(),
                        kind: match export.kind {
                            ExternalKind::Func | ExternalKind::FuncExact => "func",
                            ExternalKind::Table => "table",
                            ExternalKind::Memory => "memory",
                            ExternalKind::Global => "global",
                            ExternalKind::Tag => "tag",
                        },
                    });
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader.clone() {
                    info.memories
                        .push(memory_info(memory.map_err(malformed)?, false));
                }
            }
            Payload::CustomSection(reader) => {
                info.custom_sections.push(reader.name().to_owned());
                if let KnownCustom::Producers(producers) = reader.as_known() {
                    // A malformed producers section is metadata, not a reason to refuse the module.
                    for field in producers.into_iter().flatten() {
                        for value in field.values.into_iter().flatten() {
                            info.producers.push(Producer {
                                field: field.name.to_owned(),
                                name: value.name.to_owned(),
                                version: value.version.to_owned(),
                            });
                        }
                    }
                }
            }
            _ => {}
        }
        validator.payload(&payload).map_err(malformed)?;
        features.payload(&payload).map_err(malformed)?;
    }
    info.features = features.used.into_iter().map(str::to_owned).collect();
    Ok(info)
}

fn memory_info(memory: wasmparser::MemoryType, imported: bool) -> Memory {
    Memory {
        initial_pages: memory.initial,
        maximum_pages: memory.maximum,
        shared: memory.shared,
        memory64: memory.memory64,
        imported,
    }
}

/// The gate before packing: valid, a core module, imports only WASI preview 1 (or what the
/// policy allows), and the entry points its execution model needs.
pub fn check(bytes: &[u8], policy: &Policy) -> Result<ModuleInfo, ModuleError> {
    let info = inspect_module(bytes)?;
    let foreign: Vec<Import> = info
        .imports
        .iter()
        .filter(|i| i.module != WASI_P1 && !allowed(i, &policy.allow_imports))
        .cloned()
        .collect();
    if !foreign.is_empty() {
        return Err(ModuleError::ForeignImports(foreign));
    }
    let exports = |name: &str| {
        info.exports
            .iter()
            .any(|e| e.name == name && e.kind == "func")
    };
    match (policy.exec_model, exports("_start"), exports("_initialize")) {
        (ExecModel::Command, true, _) | (ExecModel::Reactor, false, _) => Ok(info),
        (ExecModel::Command, false, true) => Err(ModuleError::Reactor),
        (ExecModel::Command, false, false) => Err(ModuleError::NoStart(info.exports.clone())),
        (ExecModel::Reactor, true, _) => Err(ModuleError::NotAReactor),
    }
}

/// `module.name` or `module.*` patterns from `[build] allow-imports`.
fn allowed(import: &Import, patterns: &[String]) -> bool {
    patterns
        .iter()
        .any(|pattern| match pattern.split_once('.') {
            Some((module, "*")) => module == import.module,
            Some((module, name)) => module == import.module && name == import.name,
            None => false,
        })
}

/// [`check`] with the default policy: a command importing only WASI preview 1.
pub fn validate_command(bytes: &[u8]) -> Result<ModuleInfo, ModuleError> {
    check(bytes, &Policy::default())
}
