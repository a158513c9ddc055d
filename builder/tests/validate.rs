//! The command-module policy on small hand-assembled modules.

#![allow(clippy::unwrap_used)]

use wasmbuild_builder::validate::{ModuleError, check, validate_command};
use wasmbuild_spec::{ExecModel, Policy};

fn leb(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![id];
    leb(payload.len(), &mut out);
    out.extend_from_slice(payload);
    out
}

fn name(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    leb(text.len(), &mut out);
    out.extend_from_slice(text.as_bytes());
    out
}

/// A module with one `() -> ()` type, the given function imports, one defined function,
/// exported under `export`.
fn module(imports: &[(&str, &str)], export: &str) -> Vec<u8> {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.extend(section(1, &[1, 0x60, 0, 0]));
    if !imports.is_empty() {
        let mut payload = vec![imports.len() as u8];
        for (module, field) in imports {
            payload.extend(name(module));
            payload.extend(name(field));
            payload.extend([0x00, 0x00]);
        }
        bytes.extend(section(2, &payload));
    }
    bytes.extend(section(3, &[1, 0]));
    let mut exports = vec![1];
    exports.extend(name(export));
    exports.extend([0x00, imports.len() as u8]);
    bytes.extend(section(7, &exports));
    bytes.extend(section(10, &[1, 2, 0, 0x0b]));
    bytes
}

#[test]
fn a_wasi_command_passes_and_lists_its_interface() {
    let info = validate_command(&module(
        &[("wasi_snapshot_preview1", "proc_exit")],
        "_start",
    ))
    .unwrap();
    assert_eq!(info.imports.len(), 1);
    assert_eq!(info.imports[0].name, "proc_exit");
    assert_eq!(info.exports[0].name, "_start");
}

#[test]
fn an_import_from_another_module_is_named() {
    let error = validate_command(&module(
        &[
            ("wasi_snapshot_preview1", "fd_write"),
            ("env", "host_log"),
            ("env", "now"),
        ],
        "_start",
    ))
    .unwrap_err();
    assert!(matches!(error, ModuleError::ForeignImports(ref i) if i.len() == 2));
    assert_eq!(
        error.to_string(),
        // Header 8 + type section 6 = 14; the import section's id, size and count take 3 bytes;
        // the WASI import takes 34 (0x33), `env.host_log` 15 (0x42).
        "it imports `env.host_log` (func, at byte offset 0x33), `env.now` (func, at byte offset 0x42); \
         a WASI preview-1 host provides only `wasi_snapshot_preview1`"
    );
    assert!(error.hint().is_some());
}

#[test]
fn a_module_without_start_is_not_a_command() {
    let error = validate_command(&module(&[], "main")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "it exports no `_start` function, so it is not a command (it exports `main`)"
    );
}

#[test]
fn a_reactor_passes_only_when_the_wasmfile_says_so() {
    let reactor = module(&[], "_initialize");
    let error = validate_command(&reactor).unwrap_err();
    assert_eq!(
        error.to_string(),
        "it is a reactor (it exports `_initialize` and no `_start`), not a command"
    );
    assert_eq!(
        error.hint().unwrap(),
        "to pack it as a library for a host to call, set `[build] exec-model = \"reactor\"`"
    );
    let policy = Policy {
        exec_model: ExecModel::Reactor,
        ..Policy::default()
    };
    assert!(check(&reactor, &policy).is_ok());
    let error = check(&module(&[], "_start"), &policy).unwrap_err();
    assert_eq!(
        error.to_string(),
        "it exports `_start`, so it is a command, but the Wasmfile says `exec-model = \"reactor\"`"
    );
}

#[test]
fn allow_imports_lets_named_host_functions_through() {
    let bytes = module(
        &[
            ("wasi_snapshot_preview1", "fd_write"),
            ("env", "host_log"),
            ("env", "now"),
        ],
        "_start",
    );
    let exact = Policy {
        allow_imports: vec!["env.host_log".into(), "env.now".into()],
        ..Policy::default()
    };
    assert!(check(&bytes, &exact).is_ok());
    let wildcard = Policy {
        allow_imports: vec!["env.*".into()],
        ..Policy::default()
    };
    assert!(check(&bytes, &wildcard).is_ok());
    let partial = Policy {
        allow_imports: vec!["env.host_log".into()],
        ..Policy::default()
    };
    let error = check(&bytes, &partial).unwrap_err();
    assert_eq!(
        error.to_string(),
        "it imports `env.now` (func, at byte offset 0x42); a WASI preview-1 host provides only `wasi_snapshot_preview1`"
    );
    assert!(
        error
            .hint()
            .unwrap()
            .ends_with("allow them: `[build] allow-imports = [\"env.now\"]`")
    );
}

#[test]
fn inspect_reports_memory_features_and_producers() {
    // () -> () whose body is `i32.const 1; i32.extend8_s; drop` (sign-ext), one memory of
    // 1..=2 pages, and a producers section naming the language.
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.extend(section(1, &[1, 0x60, 0, 0]));
    bytes.extend(section(3, &[1, 0]));
    bytes.extend(section(5, &[1, 0x01, 1, 2]));
    let mut exports = vec![1];
    exports.extend(name("_start"));
    exports.extend([0x00, 0]);
    bytes.extend(section(7, &exports));
    bytes.extend(section(10, &[1, 6, 0, 0x41, 1, 0xc0, 0x1a, 0x0b]));
    let mut producers = name("producers");
    producers.push(1);
    producers.extend(name("language"));
    producers.push(1);
    producers.extend(name("C11"));
    producers.extend(name(""));
    bytes.extend(section(0, &producers));

    let info = validate_command(&bytes).unwrap();
    assert_eq!(info.features, ["sign-ext"]);
    assert_eq!(info.memories.len(), 1);
    assert_eq!(
        (
            info.memories[0].initial_pages,
            info.memories[0].maximum_pages
        ),
        (1, Some(2))
    );
    assert_eq!(info.producers.len(), 1);
    assert_eq!(
        (
            info.producers[0].field.as_str(),
            info.producers[0].name.as_str()
        ),
        ("language", "C11")
    );
    assert_eq!(info.custom_sections, ["producers"]);
}

#[test]
fn garbage_and_truncation_report_the_byte_offset() {
    let error = validate_command(b"not wasm at all").unwrap_err();
    assert!(
        matches!(error, ModuleError::Malformed { offset: 0, .. }),
        "{error}"
    );
    let whole = module(&[], "_start");
    let error = validate_command(&whole[..whole.len() - 3]).unwrap_err();
    let ModuleError::Malformed { offset, .. } = error else {
        panic!("{error}")
    };
    assert!(offset > 8 && offset <= whole.len(), "{offset}");
    assert!(
        error_text(&whole[..whole.len() - 3]).starts_with("invalid WebAssembly at byte offset 0x")
    );
}

#[test]
fn a_component_is_refused_as_such() {
    // The component-model preamble: magic, version 0x0d, layer 1.
    let error = validate_command(b"\0asm\x0d\0\x01\0").unwrap_err();
    assert!(matches!(error, ModuleError::Component), "{error}");
    assert_eq!(
        error.to_string(),
        "it is a WebAssembly component (WASI preview 2); components are not supported yet, only core modules (WASI preview 1)"
    );
}

fn error_text(bytes: &[u8]) -> String {
    validate_command(bytes).unwrap_err().to_string()
}
