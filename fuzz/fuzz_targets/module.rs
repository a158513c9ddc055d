//! The module inspector, the command gate and the strip pass. Any bytes: an answer or an
//! error, never a panic. A module the inspector accepts strips, in every mode, into one it
//! accepts again with the same interface and proposals, so the same verdict as a command
//! (which `validate::check` reads from the imports and exports alone).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmbuild_builder::validate::{ModuleInfo, inspect_module, validate_command};
use wasmbuild_builder::{Cache, Silent, optimize};
use wasmbuild_spec::{OnFailure, OptLevel, Optimize, Strip};

fuzz_target!(|data: &[u8]| {
    let before = inspect_module(data);
    if let Ok(info) = &before
        && validate_command(data).is_ok()
    {
        assert!(
            info.exports.iter().any(|e| e.name == "_start"),
            "a command without `_start`"
        );
    }
    let unknown = ModuleInfo {
        size: data.len() as u64,
        imports: Vec::new(),
        exports: Vec::new(),
        memories: Vec::new(),
        features: Vec::new(),
        producers: Vec::new(),
        custom_sections: Vec::new(),
    };
    for strip in [Strip::None, Strip::Debug, Strip::All] {
        let settings = Optimize {
            level: OptLevel::None,
            strip,
            on_failure: OnFailure::Error,
        };
        // Level `none` runs the strip pass alone: no wasm-opt, no cache.
        let info = before.as_ref().unwrap_or(&unknown);
        let result = optimize::run(data.to_vec(), info, &settings, &Cache::disabled(), &Silent);
        let Ok(info) = &before else {
            continue;
        };
        let (stripped, report) = match result {
            Ok(done) => done,
            Err(error) => panic!("strip {strip:?} refused a module the inspector accepts: {error}"),
        };
        if strip == Strip::None {
            assert_eq!(stripped, data, "strip none changed the bytes");
            continue;
        }
        let after = match inspect_module(&stripped) {
            Ok(after) => after,
            Err(error) => panic!("strip {strip:?} made an invalid module: {error}"),
        };
        assert_eq!(
            after.exports, info.exports,
            "strip {strip:?} changed the exports"
        );
        let interface = |info: &ModuleInfo| -> Vec<(String, String, &'static str)> {
            info.imports
                .iter()
                .map(|i| (i.module.clone(), i.name.clone(), i.kind))
                .collect()
        };
        assert_eq!(
            interface(&after),
            interface(info),
            "strip {strip:?} changed the imports"
        );
        assert_eq!(
            after.memories, info.memories,
            "strip {strip:?} changed the memories"
        );
        assert_eq!(
            after.features, info.features,
            "strip {strip:?} changed the proposals"
        );
        let kept: Vec<&String> = info
            .custom_sections
            .iter()
            .filter(|name| !report.stripped.contains(name))
            .collect();
        assert_eq!(
            after.custom_sections.iter().collect::<Vec<_>>(),
            kept,
            "strip {strip:?} kept other custom sections than it reported"
        );
        if strip == Strip::All {
            assert!(
                after.custom_sections.is_empty(),
                "strip all kept a custom section"
            );
        }
    }
});
