//! Which WebAssembly proposals a module really uses, named as binaryen's `--enable-*` flags
//! name them: what `inspect` shows and what an optimizer must be told.

use std::collections::BTreeSet;

use wasmparser::{
    BinaryReaderError, ExternalKind, FunctionBody, Payload, RefType, TypeRef, ValType,
    VisitOperator, VisitSimdOperator,
};

/// Collects feature names while reading a module's payloads.
#[derive(Debug, Default)]
pub struct FeatureScan {
    pub used: BTreeSet<&'static str>,
    mutable_globals: Vec<bool>,
    memories: usize,
}

impl FeatureScan {
    fn note(&mut self, proposal: &'static str) {
        let name = match proposal {
            "mvp" => return,
            "sign_extension" => "sign-ext",
            "saturating_float_to_int" => "nontrapping-float-to-int",
            "bulk_memory" => "bulk-memory",
            "reference_types" => "reference-types",
            "simd" => "simd",
            "relaxed_simd" => "relaxed-simd",
            "threads" => "threads",
            "tail_call" => "tail-call",
            "exceptions" | "legacy_exceptions" => "exception-handling",
            "gc" => "gc",
            "stack_switching" => "stack-switching",
            "wide_arithmetic" => "wide-arithmetic",
            "memory64" => "memory64",
            other => other,
        };
        self.used.insert(name);
    }

    /// Looks at one payload; call it for every payload of the module, in order.
    pub fn payload(&mut self, payload: &Payload<'_>) -> Result<(), BinaryReaderError> {
        match payload {
            Payload::TypeSection(reader) => {
                for ty in reader.clone().into_iter_err_on_gc_types() {
                    if ty?.results().len() > 1 {
                        self.used.insert("multivalue");
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    match import?.ty {
                        TypeRef::Global(g) => {
                            if g.mutable {
                                self.used.insert("mutable-globals");
                            }
                            // Imported globals come first in the index space.
                            self.mutable_globals.push(g.mutable);
                        }
                        TypeRef::Memory(m) => self.memory(m),
                        TypeRef::Table(t) => self.table(t.element_type),
                        TypeRef::Tag(_) => {
                            self.used.insert("exception-handling");
                        }
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => {}
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader.clone() {
                    self.memory(memory?);
                }
            }
            Payload::TableSection(reader) => {
                for table in reader.clone() {
                    self.table(table?.ty.element_type);
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader.clone() {
                    let global = global?;
                    self.mutable_globals.push(global.ty.mutable);
                    if matches!(global.ty.content_type, ValType::V128) {
                        self.used.insert("simd");
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader.clone() {
                    let export = export?;
                    if export.kind == ExternalKind::Global
                        && self
                            .mutable_globals
                            .get(export.index as usize)
                            .copied()
                            .unwrap_or(false)
                    {
                        self.used.insert("mutable-globals");
                    }
                }
            }
            Payload::TagSection(_) => {
                self.used.insert("exception-handling");
            }
            Payload::DataCountSection { .. } => {
                self.used.insert("bulk-memory");
            }
            Payload::DataSection(reader) => {
                for data in reader.clone() {
                    match data?.kind {
                        wasmparser::DataKind::Passive => {
                            self.used.insert("bulk-memory");
                        }
                        wasmparser::DataKind::Active { memory_index, .. } if memory_index > 0 => {
                            self.used.insert("multimemory");
                        }
                        wasmparser::DataKind::Active { .. } => {}
                    }
                }
            }
            Payload::CodeSectionEntry(body) => self.body(body)?,
            _ => {}
        }
        Ok(())
    }

    fn memory(&mut self, memory: wasmparser::MemoryType) {
        self.memories += 1;
        if self.memories > 1 {
            self.used.insert("multimemory");
        }
        if memory.memory64 {
            self.used.insert("memory64");
        }
        if memory.shared {
            self.used.insert("threads");
        }
    }

    fn table(&mut self, element: RefType) {
        if element != RefType::FUNCREF {
            self.used.insert("reference-types");
        }
    }

    fn body(&mut self, body: &FunctionBody<'_>) -> Result<(), BinaryReaderError> {
        for local in body.get_locals_reader()? {
            if matches!(local?.1, ValType::V128) {
                self.used.insert("simd");
            }
        }
        let mut reader = body.get_operators_reader()?;
        while !reader.eof() {
            reader.visit_operator(self)?;
        }
        Ok(())
    }
}

/// One visit method per operator, each noting the proposal the operator comes from.
macro_rules! note_proposal {
    ($( @$proposal:ident $op:ident $({ $($arg:ident: $argty:ty),* })? => $visit:ident ($($ann:tt)*))*) => {
        $(
            fn $visit(&mut self $($(, $arg: $argty)*)?) {
                $($(let _ = $arg;)*)?
                self.note(stringify!($proposal));
            }
        )*
    };
}

impl<'a> VisitOperator<'a> for FeatureScan {
    type Output = ();

    fn simd_visitor(&mut self) -> Option<&mut dyn VisitSimdOperator<'a, Output = Self::Output>> {
        Some(self)
    }

    wasmparser::for_each_visit_operator!(note_proposal);
}

impl<'a> VisitSimdOperator<'a> for FeatureScan {
    wasmparser::for_each_visit_simd_operator!(note_proposal);
}
