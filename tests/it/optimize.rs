//! `[optimize]`: the strip pass and binaryen's wasm-opt, through the CLI, against wasm-opt
//! run by hand on the same module; the step cache; and every way wasm-opt can be missing
//! or fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::{Home, digest_of, fixture, require, stderr, stdout};

/// A Wasmfile beside a fixture's own (so the context and the paths it names are the
/// fixture's) with an `[optimize]` table of its own; removed when dropped.
struct Variant {
    path: PathBuf,
}

impl Variant {
    fn new(fixture_name: &str, optimize: &str) -> Variant {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = fixture(fixture_name);
        let original = std::fs::read_to_string(dir.join("Wasmfile")).unwrap();
        assert!(
            !original.contains("[optimize]") && !original.contains("[precompile]"),
            "{fixture_name}/Wasmfile sets [optimize] or [precompile] itself"
        );
        let path = dir.join(format!(
            "optimize-test-{}-{}.Wasmfile",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // Precompiling is not what these tests look at, and it is slow for a Go module.
        let text = format!("{original}\n[optimize]\n{optimize}\n\n[precompile]\ntargets = []\n");
        std::fs::write(&path, text).unwrap();
        Variant { path }
    }

    fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for Variant {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What one build gave: its digest, the module it packed and what it said on stderr.
struct Built {
    digest: String,
    module: Vec<u8>,
    stderr: String,
}

/// Builds `fixture_name` with `optimize` as its `[optimize]` table, tagged `tag`.
fn build(home: &Home, fixture_name: &str, optimize: &str, tag: &str, extra: &[&str]) -> Built {
    let variant = Variant::new(fixture_name, optimize);
    let out = tempfile::tempdir().unwrap();
    let dir = fixture(fixture_name);
    let mut args = vec![
        "build",
        dir.to_str().unwrap(),
        "-f",
        variant.arg(),
        "-t",
        tag,
        "-o",
        out.path().to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = home.run(&args);
    assert!(
        output.status.success(),
        "{fixture_name} with {optimize:?} failed:\n{}",
        stderr(&output)
    );
    Built {
        digest: digest_of(stdout(&output).lines().next().unwrap()).to_owned(),
        module: the_module_in(out.path()),
        stderr: stderr(&output),
    }
}

fn the_module_in(dir: &Path) -> Vec<u8> {
    let modules: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    assert_eq!(modules.len(), 1, "{modules:?}");
    std::fs::read(&modules[0]).unwrap()
}

/// `inspect --json`'s `module` object.
fn module_json(home: &Home, reference: &str) -> serde_json::Value {
    let json: serde_json::Value =
        serde_json::from_str(&home.ok(&["inspect", "--json", reference])).unwrap();
    json["module"].clone()
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// `wasm-opt ARGS raw -o out` by hand; returns the module it wrote.
fn wasm_opt(raw: &[u8], args: &[String]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("raw.wasm"), raw).unwrap();
    let output = Command::new(require("wasm-opt"))
        .args(args)
        .args(["raw.wasm", "-o", "out.wasm"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "wasm-opt {args:?}: {}",
        stderr(&output)
    );
    std::fs::read(dir.path().join("out.wasm")).unwrap()
}

/// Exit code, stdout and stderr of `wasmbuild run REF`.
fn run(home: &Home, reference: &str) -> (Option<i32>, String, String) {
    let output = home.run(&["run", reference]);
    (output.status.code(), stdout(&output), stderr(&output))
}

/// `strip = "debug"` and `Oz` through wasmbuild against wasm-opt run by hand on the module
/// the toolchain wrote, with the same `--enable-*` flags and the same strip; and the
/// program does what it did unoptimized.
fn no_larger_than_wasm_opt_and_runs_the_same(fixture_name: &str) {
    let home = Home::new();
    let raw = build(
        &home,
        fixture_name,
        "level = \"none\"\nstrip = \"none\"",
        "localhost/raw:1",
        &[],
    );
    let ours = build(
        &home,
        fixture_name,
        "level = \"Oz\"\nstrip = \"debug\"",
        "localhost/oz:1",
        &[],
    );
    let raw_info = module_json(&home, "localhost/raw:1");
    let flags: Vec<String> = strings(&raw_info["features"])
        .iter()
        .map(|f| format!("--enable-{f}"))
        .collect();
    // The same strip: DWARF and producers go, the name section stays (-g).
    let mut same = vec!["-Oz".to_owned(), "-g".to_owned()];
    same.extend(flags.iter().cloned());
    same.extend(["--strip-dwarf".to_owned(), "--strip-producers".to_owned()]);
    let direct = wasm_opt(&raw.module, &same);
    // `--strip-debug` also drops the name section, which `strip = "debug"` keeps.
    let mut no_names = vec!["-Oz".to_owned()];
    no_names.extend(flags.iter().cloned());
    no_names.extend(["--strip-debug".to_owned(), "--strip-producers".to_owned()]);
    let direct_no_names = wasm_opt(&raw.module, &no_names);
    eprintln!(
        "{fixture_name}: toolchain {} B; wasmbuild Oz+debug {} B; wasm-opt -Oz -g --strip-dwarf \
         --strip-producers {} B; wasm-opt -Oz --strip-debug --strip-producers {} B",
        raw.module.len(),
        ours.module.len(),
        direct.len(),
        direct_no_names.len()
    );
    assert!(
        ours.module.len() <= direct.len(),
        "{fixture_name}: wasmbuild wrote {} bytes, wasm-opt by hand {}",
        ours.module.len(),
        direct.len()
    );
    assert!(
        ours.stderr.contains("=> optimize: ") && ours.stderr.contains("wasm-opt -Oz -g"),
        "{}",
        ours.stderr
    );

    let ours_info = module_json(&home, "localhost/oz:1");
    let sections = strings(&ours_info["custom_sections"]);
    assert!(
        !sections
            .iter()
            .any(|s| s.starts_with(".debug_") || s == "producers"),
        "{sections:?}"
    );
    if strings(&raw_info["custom_sections"]).contains(&"name".to_owned()) {
        assert!(sections.contains(&"name".to_owned()), "{sections:?}");
    }
    // wasm-opt merges an import declared twice (Go declares `fd_write` twice); offsets move.
    let imports = |info: &serde_json::Value| {
        let mut names: Vec<String> = info["imports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| format!("{}.{} {}", i["module"], i["name"], i["kind"]))
            .collect();
        names.sort();
        names.dedup();
        names
    };
    assert_eq!(imports(&ours_info), imports(&raw_info));
    assert_eq!(ours_info["exports"], raw_info["exports"]);

    assert_eq!(run(&home, "localhost/oz:1"), run(&home, "localhost/raw:1"));
}

#[test]
fn hello_optimized() {
    no_larger_than_wasm_opt_and_runs_the_same("hello");
}

#[test]
fn copy_optimized() {
    no_larger_than_wasm_opt_and_runs_the_same("copy");
}

#[test]
fn c_hello_optimized() {
    // Its module carries DWARF: stripped before wasm-opt reads it.
    no_larger_than_wasm_opt_and_runs_the_same("c-hello");
}

#[test]
fn prebuilt_optimized() {
    no_larger_than_wasm_opt_and_runs_the_same("prebuilt");
}

#[test]
fn cargo_workspace_optimized() {
    no_larger_than_wasm_opt_and_runs_the_same("cargo-workspace");
}

#[test]
fn a_multi_megabyte_go_module_optimized() {
    // About 2.7 MB: the size where wasm-opt's time matters, and a module `-all` corrupts.
    require("go");
    no_larger_than_wasm_opt_and_runs_the_same("go-hello");
}

#[test]
fn a_second_build_takes_the_cached_result_and_a_damaged_entry_is_rebuilt() {
    let home = Home::new();
    let settings = "level = \"Oz\"";
    let first = build(&home, "hello", settings, "localhost/c:1", &[]);
    assert!(
        !first.stderr.contains("optimize: cached"),
        "{}",
        first.stderr
    );

    let second = build(&home, "hello", settings, "localhost/c:1", &[]);
    assert!(
        second.stderr.contains("=> optimize: cached ("),
        "{}",
        second.stderr
    );
    assert_eq!(second.digest, first.digest);
    assert_eq!(second.module, first.module);

    let entries: Vec<PathBuf> = std::fs::read_dir(home.dir.path().join("cache/optimize"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&entries[0], &bytes).unwrap();
    let repaired = build(&home, "hello", settings, "localhost/c:1", &[]);
    assert!(
        !repaired.stderr.contains("optimize: cached"),
        "a damaged entry is not used:\n{}",
        repaired.stderr
    );
    assert_eq!(repaired.digest, first.digest);
    let again = build(&home, "hello", settings, "localhost/c:1", &[]);
    assert!(
        again.stderr.contains("=> optimize: cached ("),
        "and it was stored again:\n{}",
        again.stderr
    );

    let uncached = build(&home, "hello", settings, "localhost/c:1", &["--no-cache"]);
    assert!(
        !uncached.stderr.contains("optimize: cached") && uncached.stderr.contains("wasm-opt -Oz"),
        "{}",
        uncached.stderr
    );
    assert_eq!(uncached.digest, first.digest);

    // Other settings are another entry.
    let other = build(&home, "hello", "level = \"O1\"", "localhost/c:2", &[]);
    assert!(
        !other.stderr.contains("optimize: cached"),
        "{}",
        other.stderr
    );
}

#[test]
fn a_cache_that_cannot_be_written_is_a_warning() {
    let home = Home::new();
    // A file where the cache's folder would be.
    std::fs::write(home.dir.path().join("cache"), b"not a folder").unwrap();
    let built = build(&home, "prebuilt", "level = \"O1\"", "localhost/w:1", &[]);
    assert!(
        built
            .stderr
            .contains("warning: cannot store the optimized module in the step cache at "),
        "{}",
        built.stderr
    );
}

/// The error lines at the end of stderr of a build that failed.
fn fails(command: &mut Command) -> String {
    let output: Output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    let start = text.find("error: ").unwrap_or_else(|| panic!("{text}"));
    text[start..].to_owned()
}

fn prebuilt_with(optimize: &str) -> Variant {
    Variant::new("prebuilt", optimize)
}

#[test]
fn without_wasm_opt_a_level_is_an_error_that_says_how_to_get_it() {
    let home = Home::new();
    let variant = prebuilt_with("level = \"Oz\"");
    let dir = fixture("prebuilt");
    let error = fails(home.cmd().env("WASM_OPT", "/nonexistent").args([
        "build",
        dir.to_str().unwrap(),
        "-f",
        variant.arg(),
    ]));
    assert_eq!(
        error,
        "error: `level = \"Oz\"` in [optimize] needs binaryen's wasm-opt, but WASM_OPT names \
         `/nonexistent`, which does not exist\n  \
         hint: install binaryen (Debian: `apt-get install binaryen`) and point WASM_OPT at its \
         wasm-opt, or unset WASM_OPT to use the one on PATH, or set `level = \"none\"` in \
         [optimize] to build without it\n"
    );

    // Not on PATH (the default level is Os).
    let empty = tempfile::tempdir().unwrap();
    let error = fails(
        home.cmd()
            .env_remove("WASM_OPT")
            .env("PATH", empty.path())
            .args(["build", dir.to_str().unwrap()]),
    );
    assert_eq!(
        error,
        "error: `level = \"Os\"` in [optimize] needs binaryen's wasm-opt, which is not on PATH\n  \
         hint: install binaryen (Debian: `apt-get install binaryen`) or set WASM_OPT to a \
         wasm-opt binary, or set `level = \"none\"` in [optimize] to build without it\n"
    );
}

#[test]
fn level_none_needs_no_wasm_opt() {
    let home = Home::new();
    let variant = Variant::new("c-hello", "level = \"none\"");
    let dir = fixture("c-hello");
    let out = tempfile::tempdir().unwrap();
    let output = home
        .cmd()
        .env("WASM_OPT", "/nonexistent")
        .args([
            "build",
            dir.to_str().unwrap(),
            "-f",
            variant.arg(),
            "-t",
            "localhost/n:1",
        ])
        .args(["-o", out.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("=> optimize: strip debug: removed 7 custom sections ("),
        "{}",
        stderr(&output)
    );
    let info = module_json(&home, "localhost/n:1");
    assert_eq!(strings(&info["custom_sections"]), ["name"]);
    assert_eq!(
        run(&home, "localhost/n:1").1,
        "Hello from wasmbuild, world!\nWORLD has 5 letters\nargv[0]=/c-hello.wasm\nc-hello 1.0\n"
    );
}

/// A stand-in wasm-opt: answers `--version` and `--help` (listing `help`'s flags), and
/// otherwise runs `body` in the folder wasmbuild runs it in.
fn fake_wasm_opt(dir: &Path, help: &str, body: &str) -> PathBuf {
    let path = dir.join("wasm-opt");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n\
             case \"$1\" in\n\
             --version) echo 'wasm-opt version 999 (fake)'; exit 0 ;;\n\
             --help) printf '%s\\n' {help}; exit 0 ;;\n\
             esac\n\
             echo \"$@\" > \"{log}\"\n\
             {body}\n",
            log = dir.join("args").display()
        ),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&path, permissions).unwrap();
    path
}

#[test]
fn a_failing_wasm_opt_stops_the_build_or_warns_as_the_wasmfile_says() {
    let home = Home::new();
    let tools = tempfile::tempdir().unwrap();
    let fake = fake_wasm_opt(
        tools.path(),
        "'  --enable-sign-ext'",
        "echo 'fake wasm-opt: something broke' >&2\nexit 1",
    );
    let dir = fixture("prebuilt");

    let variant = prebuilt_with("level = \"Oz\"");
    let output = home
        .cmd()
        .env("WASM_OPT", &fake)
        .args(["build", dir.to_str().unwrap(), "-f", variant.arg()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("   fake wasm-opt: something broke\n"),
        "its stderr is shown as it comes:\n{text}"
    );
    assert!(
        text.ends_with(&format!(
            "error: `{} -Oz -g input.wasm -o output.wasm` failed (exit status: 1)\n  \
             hint: to pack the module without wasm-opt's changes when this happens, set \
             `on-failure = \"warn\"` in [optimize]; `level = \"none\"` skips wasm-opt\n",
            fake.display()
        )),
        "{text}"
    );

    let variant = prebuilt_with("level = \"Oz\"\non-failure = \"warn\"");
    let out = tempfile::tempdir().unwrap();
    let output = home
        .cmd()
        .env("WASM_OPT", &fake)
        .args([
            "build",
            dir.to_str().unwrap(),
            "-f",
            variant.arg(),
            "-t",
            "localhost/warn:1",
        ])
        .args(["-o", out.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!(
            "warning: `{} -Oz -g input.wasm -o output.wasm` failed (exit status: 1); packing the \
             module without wasm-opt's changes (on-failure = \"warn\")\n",
            fake.display()
        )),
        "{}",
        stderr(&output)
    );
    // Nothing to strip in it, so it is packed as it came.
    assert_eq!(
        the_module_in(out.path()),
        std::fs::read(dir.join("hello.wasm")).unwrap()
    );
    assert_eq!(
        run(&home, "localhost/warn:1").1,
        "Hello from a prebuilt module\n"
    );
    assert!(
        !home.dir.path().join("cache/optimize").exists()
            || std::fs::read_dir(home.dir.path().join("cache/optimize"))
                .unwrap()
                .next()
                .is_none(),
        "a fallback is not cached"
    );
}

#[test]
fn a_larger_result_at_a_size_level_is_a_failure_too() {
    let home = Home::new();
    let tools = tempfile::tempdir().unwrap();
    // "Optimizes" the small prebuilt module into a bigger (valid) one: hello's.
    let bigger = tools.path().join("bigger.wasm");
    let hello = build(&home, "hello", "level = \"none\"", "localhost/big:1", &[]);
    std::fs::write(&bigger, &hello.module).unwrap();
    let fake = fake_wasm_opt(
        tools.path(),
        "''",
        &format!("cp '{}' output.wasm", bigger.display()),
    );
    let dir = fixture("prebuilt");
    let variant = prebuilt_with("level = \"Os\"");
    let error = fails(home.cmd().env("WASM_OPT", &fake).args([
        "build",
        dir.to_str().unwrap(),
        "-f",
        variant.arg(),
    ]));
    let prefix = format!(
        "error: `{} -Os -g input.wasm -o output.wasm` made the module larger: 156 → ",
        fake.display()
    );
    assert!(error.starts_with(&prefix), "{error}");
    assert!(
        error.ends_with(
            " bytes of code and data\n  hint: choose another `level` in [optimize], or set \
             `on-failure = \"warn\"` there to pack the module without wasm-opt's changes\n"
        ),
        "{error}"
    );

    let variant = prebuilt_with("level = \"Os\"\non-failure = \"warn\"");
    let output = home
        .cmd()
        .env("WASM_OPT", &fake)
        .args(["build", dir.to_str().unwrap(), "-f", variant.arg()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("made the module larger: 156 → "),
        "{}",
        stderr(&output)
    );

    // At a speed level, growing is what inlining does.
    let variant = prebuilt_with("level = \"O3\"");
    let output = home
        .cmd()
        .env("WASM_OPT", &fake)
        .args(["build", dir.to_str().unwrap(), "-f", variant.arg()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn wasm_opt_is_told_the_features_the_module_uses_and_never_all() {
    let home = Home::new();
    let tools = tempfile::tempdir().unwrap();
    let fake = fake_wasm_opt(
        tools.path(),
        "'  --enable-sign-ext' '  --enable-bulk-memory' '  --enable-mutable-globals' \
         '  --enable-nontrapping-float-to-int' '  --enable-multivalue' \
         '  --enable-reference-types' '  --enable-simd'",
        "cp input.wasm output.wasm",
    );
    let raw = build(
        &home,
        "hello",
        "level = \"none\"\nstrip = \"none\"",
        "localhost/raw:1",
        &[],
    );
    let features = strings(&module_json(&home, "localhost/raw:1")["features"]);
    assert!(!features.is_empty(), "a Rust module uses a proposal or two");
    let _ = raw;

    for (strip, debuginfo) in [("none", " -g"), ("debug", " -g"), ("all", "")] {
        let variant = Variant::new("hello", &format!("level = \"O2\"\nstrip = \"{strip}\""));
        let output = home
            .cmd()
            .env("WASM_OPT", &fake)
            .args([
                "build",
                fixture("hello").to_str().unwrap(),
                "-f",
                variant.arg(),
            ])
            .arg("--no-cache")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        let args = std::fs::read_to_string(tools.path().join("args")).unwrap();
        let enables: String = features.iter().map(|f| format!(" --enable-{f}")).collect();
        assert_eq!(
            args,
            format!("-O2{debuginfo}{enables} input.wasm -o output.wasm\n"),
            "strip = {strip}"
        );
    }

    // A proposal this wasm-opt has no flag for: said before it runs.
    let fake = fake_wasm_opt(tools.path(), "'  --enable-sign-ext'", "exit 1");
    let variant = Variant::new("hello", "level = \"O2\"");
    let error = fails(home.cmd().env("WASM_OPT", &fake).args([
        "build",
        fixture("hello").to_str().unwrap(),
        "-f",
        variant.arg(),
        "--no-cache",
    ]));
    let missing: Vec<String> = features
        .iter()
        .filter(|f| *f != "sign-ext")
        .map(|f| format!("`{f}`"))
        .collect();
    assert_eq!(
        error,
        format!(
            "error: wasm-opt version 999 (fake) cannot optimize this module: it has no flag for \
             {}, which the module uses\n  hint: install a newer binaryen (or set WASM_OPT to \
             one), or set `on-failure = \"warn\"` in [optimize] to pack the module without \
             wasm-opt's changes\n",
            missing.join(", ")
        )
    );
}
