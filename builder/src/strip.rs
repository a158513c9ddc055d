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
}
