//! What makes a module runnable as a WASI preview-1 command, checked with wasmparser.

use serde::Serialize;
use wasmparser::{ExternalKind, Parser, Payload, TypeRef, Validator, WasmFeatures};

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

/// A module's interface, as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleInfo {
    pub size: u64,
    pub imports: Vec<Import>,
    pub exports: Vec<Export>,
    /// Custom section names, in order (`name`, `producers`, `.debug_info`, ...).
    pub custom_sections: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("invalid WebAssembly at byte offset {offset:#x}: {message}")]
    Malformed { offset: usize, message: String },
    #[error("it is a WebAssembly component (WASI preview 2), not a core module")]
    Component,
    #[error("it imports {}; a WASI preview-1 host provides only `{WASI_P1}`", list(.0))]
    ForeignImports(Vec<Import>),
    #[error("it exports no `_start` function, so it is not a command{}", found(.0))]
    NoStart(Vec<Export>),
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
            ModuleError::ForeignImports(_) => Some(
                "remove the code that declares these imports (e.g. an `extern` block with #[link(wasm_import_module = ...)]) or the dependency that brings them"
                    .to_owned(),
            ),
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
        custom_sections: Vec::new(),
    };
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
            Payload::CustomSection(reader) => info.custom_sections.push(reader.name().to_owned()),
            _ => {}
        }
        validator.payload(&payload).map_err(malformed)?;
    }
    Ok(info)
}

/// The gate before packing: valid, a core module, imports only WASI preview 1 (or what the
/// policy allows), and the entry points its execution model needs.
pub fn check(bytes: &[u8], policy: &wasmbuild_spec::Policy) -> Result<ModuleInfo, ModuleError> {
    let _ = policy;
    validate_command(bytes)
}

/// Validates `bytes` and checks that it is a command a WASI preview-1 host can run.
pub fn validate_command(bytes: &[u8]) -> Result<ModuleInfo, ModuleError> {
    let info = inspect_module(bytes)?;
    let foreign: Vec<Import> = info
        .imports
        .iter()
        .filter(|i| i.module != WASI_P1)
        .cloned()
        .collect();
    if !foreign.is_empty() {
        return Err(ModuleError::ForeignImports(foreign));
    }
    if !info
        .exports
        .iter()
        .any(|e| e.name == "_start" && e.kind == "func")
    {
        return Err(ModuleError::NoStart(info.exports.clone()));
    }
    Ok(info)
}
