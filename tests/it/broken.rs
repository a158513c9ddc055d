//! Each broken fixture fails with its own error, its location, a non-zero exit code, and
//! leaves the store exactly as it was.

use crate::support::{Home, fixture, snapshot, stderr};

/// Builds `fixtures/broken/<name>` in a home that already holds an image; returns stderr.
fn fails(name: &str) -> String {
    let home = Home::new();
    home.build("hello", &[]);
    let before = snapshot(&home.store());
    let output = home
        .cmd()
        .current_dir(crate::support::repo())
        .args(["build", &format!("fixtures/broken/{name}")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{name}: {}", stderr(&output));
    assert!(output.stdout.is_empty(), "{name}: nothing on stdout");
    assert_eq!(snapshot(&home.store()), before, "{name}: the store changed");
    // Nothing else appeared beside the store and the step cache (which the first build
    // filled) either: no stray temp files.
    let entries: Vec<_> = std::fs::read_dir(home.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        entries
            .iter()
            .all(|e| e == "store" || e == "store.lock" || e == "cache"),
        "{entries:?}"
    );
    stderr(&output)
}

/// The `error:` block, without the toolchain output streamed before it.
fn error_block(stderr: &str) -> &str {
    let at = if stderr.starts_with("error: ") {
        0
    } else {
        stderr.find("\nerror: ").expect("an error line") + 1
    };
    &stderr[at..]
}

#[test]
fn a_misspelt_key_is_located_and_the_right_one_suggested() {
    let err = fails("misspelt-key");
    assert_eq!(
        err,
        "error: fixtures/broken/misspelt-key/Wasmfile:6:1: unknown key `tagz` in [image], expected one of `name`, \
         `tags`, `format`, `os`, `entrypoint`, `cmd`, `env`, `workdir`, `labels`, `annotations`\n  \
         hint: did you mean `tags`?\n"
    );
}

#[test]
fn a_value_of_the_wrong_type_says_what_was_expected() {
    let err = fails("bad-type");
    assert_eq!(
        err,
        "error: fixtures/broken/bad-type/Wasmfile:5:8: invalid value for `tags` in [image]: invalid type: \
         string \"latest\", expected a sequence\n"
    );
}

#[test]
fn a_path_escaping_the_context_is_refused() {
    let err = fails("escape");
    let context = fixture("broken/escape");
    assert_eq!(
        err.lines().next().unwrap(),
        format!(
            "error: fixtures/broken/escape/Wasmfile:5:8: `from` in [[copy]] = \"../../hello/src/main.rs\" resolves to {}, \
             outside the build context {}",
            fixture("hello/src/main.rs").display(),
            context.display()
        )
    );
}

#[test]
fn a_compile_error_shows_the_command_and_the_compiler_output() {
    let err = fails("compile-error");
    // The compiler's own diagnostic streamed as it came...
    assert!(err.contains("expected `u32`, found `&str`"), "{err}");
    assert!(err.contains("--> src/main.rs:2:22"), "{err}");
    // ...then one error naming the command and its status.
    assert_eq!(
        error_block(&err),
        "error: `cargo build --target wasm32-wasip1 --message-format=json-render-diagnostics --profile release --locked` \
         failed (exit status: 101)\n"
    );
}

#[test]
fn with_quiet_a_compile_error_still_shows_the_compiler_output() {
    let home = Home::new();
    let output = home.run(&[
        "build",
        "--quiet",
        fixture("broken/compile-error").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("expected `u32`, found `&str`"), "{err}");
    assert!(err.contains("failed (exit status: 101)"), "{err}");
}

#[test]
fn an_import_outside_wasi_is_named() {
    let err = fails("imports-env");
    let error = error_block(&err);
    assert!(error.starts_with("error: "), "{error}");
    assert!(
        error.contains("imports-env.wasm is not a WASI preview-1 command module\n"),
        "{error}"
    );
    let caused = error
        .lines()
        .find(|l| l.starts_with("  caused by: "))
        .expect("a cause");
    let (before, after) = caused.split_once("at byte offset 0x").expect("an offset");
    assert_eq!(before, "  caused by: it imports `env.host_log` (func, ");
    let (offset, rest) = after.split_once(')').unwrap();
    assert!(usize::from_str_radix(offset, 16).is_ok(), "{caused}");
    assert_eq!(
        rest,
        "; a WASI preview-1 host provides only `wasi_snapshot_preview1`"
    );
    assert!(
        error.contains("  hint: remove the code that declares these imports"),
        "{error}"
    );
}

#[test]
fn a_missing_wasmfile_says_where_it_looked() {
    let home = Home::new();
    let dir = tempfile::tempdir().unwrap();
    let output = home.run(&["build", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!(
            "error: {}: cannot read the Wasmfile",
            dir.path().join("Wasmfile").display()
        )),
        "{err}"
    );
    assert!(
        err.contains("caused by: No such file or directory"),
        "{err}"
    );
}

#[test]
fn a_bad_reference_fails_before_building() {
    let home = Home::new();
    let output = home.run(&[
        "build",
        fixture("hello").to_str().unwrap(),
        "-t",
        "Bad Name!",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.starts_with("error: in `--tag`"), "{err}");
    assert!(
        err.contains("`Bad Name!` is not a valid image reference"),
        "{err}"
    );
    assert!(!err.contains("=> compile"), "nothing was built: {err}");
}
