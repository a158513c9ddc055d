//! What the fuzz targets share: a small build context on disk for the Wasmfile and
//! Dockerfile parsers, and the promise every resolved plan keeps about its paths.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use wasmbuild_spec::{BuildPlan, Toolchain};

/// A build context like the fixtures' (a prebuilt module, a C source, a `static/` tree),
/// made once per process. It is the folder the fuzzed Wasmfile or Dockerfile lives in.
pub fn context() -> &'static Path {
    static CONTEXT: OnceLock<PathBuf> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        let folder = tempfile::Builder::new()
            .prefix("wasmbuild-fuzz-context.")
            .tempdir()
            .expect("a temp folder for the build context")
            .keep();
        let files: [(&str, &[u8]); 7] = [
            (
                "hello.wasm",
                include_bytes!("../../fixtures/prebuilt/hello.wasm"),
            ),
            ("motd.txt", b"hello\n"),
            ("static/index.html", b"<p>hi</p>\n"),
            ("static/css/site.css", b"p {}\n"),
            ("src/main.c", b"int main(void) { return 0; }\n"),
            ("include/app.h", b"#define APP 1\n"),
            (".dockerignore", b"*.tmp\n!keep.tmp\n"),
        ];
        for (name, bytes) in files {
            let path = folder.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("a folder in the build context");
            }
            std::fs::write(&path, bytes).expect("a file in the build context");
        }
        std::fs::canonicalize(&folder).expect("the build context's real path")
    })
}

/// Every host path a plan names lies inside its context, and the context inside `root`
/// (the folder the Wasmfile or Dockerfile is in): the parsers' promise that a build file
/// cannot reach outside the project, also through symlinks.
pub fn assert_inside(plan: &BuildPlan, root: &Path) {
    assert!(
        plan.context.starts_with(root),
        "context {} is outside {}",
        plan.context.display(),
        root.display()
    );
    let mut paths: Vec<&Path> = plan.copies.iter().map(|copy| copy.from.as_path()).collect();
    match &plan.toolchain {
        Toolchain::Prebuilt { module } => paths.push(module),
        Toolchain::Command { output, .. } => paths.push(output),
        Toolchain::Clang(settings) => paths.extend(settings.include.iter().map(PathBuf::as_path)),
        _ => {}
    }
    for path in paths {
        assert!(
            path.starts_with(&plan.context),
            "{} is outside the context {}",
            path.display(),
            plan.context.display()
        );
        if let Ok(real) = std::fs::canonicalize(path) {
            assert!(
                real.starts_with(&plan.context),
                "{} resolves to {}, outside the context {}",
                path.display(),
                real.display(),
                plan.context.display()
            );
        }
    }
}
