//! The Wasmfile parser: any text is a plan or an error, never a panic, and a plan's paths
//! stay inside the project.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmbuild_spec::Options;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let context = wasmbuild_fuzz::context();
    let options = Options {
        build_args: vec![("VERSION".into(), "1.0".into())],
    };
    let _ = wasmbuild_spec::looks_like_dockerfile(source);
    if let Ok(resolved) = wasmbuild_spec::parse(source, &context.join("Wasmfile"), &options) {
        wasmbuild_fuzz::assert_inside(&resolved.plan, context);
    }
});
