//! The built-in strip pass: drops custom sections, copying every other section byte for byte.
//!
//! It never decodes code or data, so it is as fast as copying the module, and it runs
//! before `wasm-opt`: binaryen 108 crashes on DWARF 5, and what it would strip it need not
//! read.

use wasm_encoder::RawSection;
use wasmbuild_spec::Strip;
use wasmparser::{BinaryReaderError, Chunk, Encoding, Parser, Payload};

use crate::validate::ModuleError;

/// Whether `strip` keeps a custom section called `name`.
pub fn keeps(strip: Strip, name: &str) -> bool {
    match strip {
        Strip::None => true,
        Strip::All => false,
        // Debug info, and where a debugger would look for more of it; the name section is
        // what a trace shows, so it stays.
        Strip::Debug => {
            !(name.starts_with(".debug_")
                || matches!(
                    name,
                    "producers" | "sourceMappingURL" | "external_debug_info"
                ))
        }
    }
}

/// `module` without the custom sections `strip` drops, and their names. A module with
/// nothing to drop comes back as it was, not copied.
pub fn strip(module: Vec<u8>, strip: Strip) -> Result<(Vec<u8>, Vec<String>), ModuleError> {
    if strip == Strip::None {
        return Ok((module, Vec::new()));
    }
    let sections = sections(&module)?;
    let removed: Vec<String> = sections
        .iter()
        .filter_map(|s| s.custom.filter(|name| !keeps(strip, name)))
        .map(str::to_owned)
        .collect();
    if removed.is_empty() {
        return Ok((module, removed));
    }
    let mut out = wasm_encoder::Module::new();
    for section in &sections {
        if section.custom.is_none_or(|name| keeps(strip, name)) {
            out.section(&RawSection {
                id: section.id,
                data: &module[section.range.clone()],
            });
        }
    }
    Ok((out.finish(), removed))
}

/// One section of a module: its id, where its contents lie, and a custom section's name.
struct Section<'a> {
    id: u8,
    range: std::ops::Range<usize>,
    custom: Option<&'a str>,
}

/// The module's sections in order, read without decoding function bodies.
fn sections(module: &[u8]) -> Result<Vec<Section<'_>>, ModuleError> {
    let malformed = |e: BinaryReaderError| ModuleError::Malformed {
        offset: e.offset(),
        message: e.message().to_owned(),
    };
    let mut parser = Parser::new(0);
    let mut offset = 0;
    let mut sections = Vec::new();
    loop {
        let (consumed, payload) = match parser.parse(&module[offset..], true).map_err(malformed)? {
            Chunk::Parsed { consumed, payload } => (consumed, payload),
            // With `eof` set the parser reports truncation as an error instead.
            Chunk::NeedMoreData(_) => {
                return Err(ModuleError::Malformed {
                    offset,
                    message: "unexpected end of module".to_owned(),
                });
            }
        };
        offset += consumed;
        match payload {
            Payload::Version {
                encoding: Encoding::Component,
                ..
            } => return Err(ModuleError::Component),
            Payload::CodeSectionStart { size, range, .. } => {
                // The parser has read only the section's header: its end may lie past ours.
                if range.end > module.len() {
                    return Err(ModuleError::Malformed {
                        offset: range.start,
                        message: "the code section runs past the end of the module".to_owned(),
                    });
                }
                parser.skip_section();
                offset += size as usize;
                sections.push(Section {
                    id: wasm_encoder::SectionId::Code as u8,
                    range,
                    custom: None,
                });
            }
            Payload::CustomSection(reader) => sections.push(Section {
                id: wasm_encoder::SectionId::Custom as u8,
                range: reader.range(),
                custom: Some(reader.name()),
            }),
            Payload::End(_) => return Ok(sections),
            other => {
                if let Some((id, range)) = other.as_section() {
                    sections.push(Section {
                        id,
                        range,
                        custom: None,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use wasm_encoder::{
        CodeSection, CustomSection, DataSection, ExportKind, ExportSection, Function,
        FunctionSection, Instruction, MemorySection, MemoryType, Module, TypeSection,
    };

    use super::*;

    /// A small command with custom sections between and after the others, as toolchains
    /// place them: DWARF, `producers`, `name` and one nobody knows.
    fn module() -> Vec<u8> {
        let mut module = Module::new();
        let custom = |name: &'static str, data: &'static [u8]| CustomSection {
            name: name.into(),
            data: data.into(),
        };
        module.section(&custom("go:buildid", b"abc"));
        let mut types = TypeSection::new();
        types.ty().function([], []);
        module.section(&types);
        let mut functions = FunctionSection::new();
        functions.function(0);
        module.section(&functions);
        let mut memories = MemorySection::new();
        memories.memory(MemoryType {
            minimum: 1,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        module.section(&memories);
        let mut exports = ExportSection::new();
        exports.export("_start", ExportKind::Func, 0);
        exports.export("memory", ExportKind::Memory, 0);
        module.section(&exports);
        let mut code = CodeSection::new();
        let mut body = Function::new([]);
        body.instruction(&Instruction::Nop);
        body.instruction(&Instruction::End);
        code.function(&body);
        module.section(&code);
        let mut data = DataSection::new();
        data.active(0, &wasm_encoder::ConstExpr::i32_const(8), b"hello".to_vec());
        module.section(&data);
        module.section(&custom(".debug_info", &[1; 40]));
        module.section(&custom(".debug_line", &[2; 30]));
        module.section(&custom("name", b"\x00\x04demo"));
        module.section(&custom("producers", b"\x00"));
        module.section(&custom("sourceMappingURL", b"\x07app.map"));
        module.section(&custom("external_debug_info", b"\x09app.debug"));
        module.section(&custom("unknown-tool", b"xyz"));
        module.finish()
    }

    fn customs(module: &[u8]) -> Vec<String> {
        sections(module)
            .unwrap()
            .iter()
            .filter_map(|s| s.custom.map(str::to_owned))
            .collect()
    }

    /// Every non-custom section: its id and contents.
    fn others(module: &[u8]) -> Vec<(u8, Vec<u8>)> {
        sections(module)
            .unwrap()
            .iter()
            .filter(|s| s.custom.is_none())
            .map(|s| (s.id, module[s.range.clone()].to_vec()))
            .collect()
    }

    #[test]
    fn debug_drops_dwarf_producers_and_source_maps_and_keeps_the_rest() {
        let input = module();
        let (output, removed) = strip(input.clone(), Strip::Debug).unwrap();
        assert_eq!(
            removed,
            [
                ".debug_info",
                ".debug_line",
                "producers",
                "sourceMappingURL",
                "external_debug_info"
            ]
        );
        assert_eq!(customs(&output), ["go:buildid", "name", "unknown-tool"]);
        assert_eq!(others(&output), others(&input));
        assert_eq!(others(&input).len(), 6);
        crate::validate::validate_command(&output).unwrap();
    }

    #[test]
    fn all_drops_every_custom_section() {
        let input = module();
        let (output, removed) = strip(input.clone(), Strip::All).unwrap();
        assert_eq!(removed, customs(&input));
        assert!(customs(&output).is_empty());
        assert_eq!(others(&output), others(&input));
        crate::validate::validate_command(&output).unwrap();
    }

    #[test]
    fn none_and_nothing_to_drop_leave_the_bytes_alone() {
        let input = module();
        let (output, removed) = strip(input.clone(), Strip::None).unwrap();
        assert_eq!(output, input);
        assert!(removed.is_empty());

        let (bare, _) = strip(input, Strip::All).unwrap();
        for mode in [Strip::Debug, Strip::All] {
            let (again, removed) = strip(bare.clone(), mode).unwrap();
            assert_eq!(again, bare);
            assert!(removed.is_empty());
        }
    }

    /// Found by `fuzz/fuzz_targets/module.rs`: a code section longer than the module sent
    /// the reader past its end, and slicing there panicked.
    #[test]
    fn a_code_section_longer_than_the_module_is_an_error() {
        // One function declared; its code section claims 16 bytes and holds 2.
        let input = b"\0asm\x01\0\0\0\x03\x02\x01\x00\x0a\x10\x01\x00".to_vec();
        for mode in [Strip::Debug, Strip::All] {
            let error = strip(input.clone(), mode).unwrap_err();
            assert!(
                matches!(error, ModuleError::Malformed { offset: 8.., .. }),
                "{error}"
            );
        }
    }

    #[test]
    fn a_truncated_module_is_an_error_with_its_offset() {
        let mut input = module();
        input.truncate(input.len() - 2);
        let error = strip(input, Strip::All).unwrap_err();
        assert!(
            matches!(error, ModuleError::Malformed { offset, .. } if offset > 8),
            "{error}"
        );
    }

    /// Generated modules: any valid module keeps its interface and every non-custom section
    /// through each strip mode, and loses exactly the custom sections the mode drops.
    mod properties {
        use std::collections::BTreeMap;

        use proptest::prelude::*;
        use wasm_encoder::{NameMap, NameSection, ProducersField, ProducersSection, ValType};

        use super::*;
        use crate::validate::inspect_module;

        #[derive(Debug, Clone)]
        enum Custom {
            /// A valid name section: the module's name and its functions'.
            Name(String, Vec<String>),
            /// A valid producers section: (field, name, version).
            Producers(Vec<(String, String, String)>),
            /// Any name, any bytes.
            Raw(String, Vec<u8>),
        }

        /// Where a custom section goes: before the types, after the types, functions,
        /// memory, exports, or at the end.
        const SLOTS: usize = 6;

        #[derive(Debug, Clone)]
        struct Shape {
            /// Per function: `(i32) -> i32` when true, else `() -> ()`.
            functions: Vec<bool>,
            memory: bool,
            /// Export name → the function it names, or the memory (`None`).
            exports: BTreeMap<String, Option<u32>>,
            customs: Vec<(usize, Custom)>,
        }

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("_start".to_owned()),
                Just("memory".to_owned()),
                "[a-zA-Z_.:-]{1,12}",
                "\\PC{0,8}",
            ]
        }

        fn custom() -> impl Strategy<Value = Custom> {
            let known = prop_oneof![
                Just(".debug_info"),
                Just(".debug_line"),
                Just(".debug_str"),
                Just(".debug_abbrev"),
                Just("sourceMappingURL"),
                Just("external_debug_info"),
                Just("go:buildid"),
                Just("target_features"),
                Just("linking"),
            ]
            .prop_map(str::to_owned);
            let raw_name = prop_oneof![3 => known, 1 => text()];
            let triple = (text(), text(), text());
            prop_oneof![
                1 => (text(), prop::collection::vec(text(), 0..4))
                    .prop_map(|(module, functions)| Custom::Name(module, functions)),
                1 => prop::collection::vec(triple, 0..4).prop_map(Custom::Producers),
                4 => (raw_name, prop::collection::vec(any::<u8>(), 0..80))
                    .prop_map(|(name, data)| Custom::Raw(name, data)),
            ]
        }

        fn shape() -> impl Strategy<Value = Shape> {
            (
                prop::collection::vec(any::<bool>(), 1..5),
                any::<bool>(),
                prop::collection::btree_map(text(), any::<Option<u32>>(), 0..5),
                prop::collection::vec((0..SLOTS, custom()), 0..8),
            )
                .prop_map(|(functions, memory, exports, customs)| {
                    let count = functions.len() as u32;
                    let exports = exports
                        .into_iter()
                        .map(|(name, target)| match target {
                            Some(index) => (name, Some(index % count)),
                            None if memory => (name, None),
                            None => (name, Some(0)),
                        })
                        .collect();
                    Shape {
                        functions,
                        memory,
                        exports,
                        customs,
                    }
                })
        }

        fn encode(shape: &Shape) -> Vec<u8> {
            let mut module = Module::new();
            let customs_at = |module: &mut Module, slot: usize| {
                for (_, custom) in shape.customs.iter().filter(|(at, _)| *at == slot) {
                    match custom {
                        Custom::Name(name, functions) => {
                            let mut names = NameSection::new();
                            names.module(name);
                            let mut map = NameMap::new();
                            for (index, function) in functions.iter().enumerate() {
                                map.append(index as u32, function);
                            }
                            names.functions(&map);
                            module.section(&names);
                        }
                        Custom::Producers(values) => {
                            let mut producers = ProducersSection::new();
                            for (field, name, version) in values {
                                let mut value = ProducersField::new();
                                value.value(name, version);
                                producers.field(field, &value);
                            }
                            module.section(&producers);
                        }
                        Custom::Raw(name, data) => {
                            module.section(&CustomSection {
                                name: name.into(),
                                data: data.into(),
                            });
                        }
                    }
                }
            };
            customs_at(&mut module, 0);
            let mut types = TypeSection::new();
            types.ty().function([], []);
            types.ty().function([ValType::I32], [ValType::I32]);
            module.section(&types);
            customs_at(&mut module, 1);
            let mut functions = FunctionSection::new();
            for takes_i32 in &shape.functions {
                functions.function(u32::from(*takes_i32));
            }
            module.section(&functions);
            customs_at(&mut module, 2);
            if shape.memory {
                let mut memories = MemorySection::new();
                memories.memory(MemoryType {
                    minimum: 1,
                    maximum: Some(2),
                    memory64: false,
                    shared: false,
                    page_size_log2: None,
                });
                module.section(&memories);
            }
            customs_at(&mut module, 3);
            let mut exports = ExportSection::new();
            for (name, target) in &shape.exports {
                match target {
                    Some(index) => exports.export(name, ExportKind::Func, *index),
                    None => exports.export(name, ExportKind::Memory, 0),
                };
            }
            module.section(&exports);
            customs_at(&mut module, 4);
            let mut code = CodeSection::new();
            for takes_i32 in &shape.functions {
                let mut body = Function::new([]);
                if *takes_i32 {
                    body.instruction(&Instruction::LocalGet(0));
                } else {
                    body.instruction(&Instruction::Nop);
                }
                body.instruction(&Instruction::End);
                code.function(&body);
            }
            module.section(&code);
            customs_at(&mut module, 5);
            module.finish()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            #[test]
            fn every_mode_keeps_a_valid_module_and_its_interface(shape in shape()) {
                let input = encode(&shape);
                let before = inspect_module(&input).unwrap();
                let names = customs(&input);
                prop_assert_eq!(names.len(), shape.customs.len());
                for mode in [Strip::None, Strip::Debug, Strip::All] {
                    let (output, removed) = strip(input.clone(), mode).unwrap();
                    let after = inspect_module(&output).unwrap();
                    prop_assert_eq!(&after.exports, &before.exports);
                    prop_assert_eq!(&after.imports, &before.imports);
                    prop_assert_eq!(&after.memories, &before.memories);
                    prop_assert_eq!(others(&output), others(&input));
                    let (kept, dropped): (Vec<String>, Vec<String>) =
                        names.iter().cloned().partition(|name| keeps(mode, name));
                    prop_assert_eq!(customs(&output), kept);
                    prop_assert_eq!(&after.custom_sections, &customs(&output));
                    if dropped.is_empty() {
                        prop_assert_eq!(&output, &input);
                    }
                    prop_assert_eq!(removed, dropped);
                    // Stripping what is stripped changes nothing.
                    let (again, removed) = strip(output.clone(), mode).unwrap();
                    prop_assert_eq!(again, output);
                    prop_assert!(removed.is_empty());
                }
            }
        }
    }
}
