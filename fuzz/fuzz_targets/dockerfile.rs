//! The Dockerfile-subset parser: any text is a plan or an error, never a panic, and a
//! plan's COPY sources stay inside the build context.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmbuild_spec::Options;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let context = wasmbuild_fuzz::context();
    let options = Options {
        build_args: vec![("GREETING".into(), "hi".into())],
    };
    let _ = wasmbuild_spec::looks_like_dockerfile(source);
    let dockerfile = context.join("Dockerfile");
    if let Ok(resolved) = wasmbuild_spec::parse_dockerfile(source, &dockerfile, context, &options) {
        wasmbuild_fuzz::assert_inside(&resolved.plan, context);
    }
});
