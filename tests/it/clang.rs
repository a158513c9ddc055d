//! The clang toolchain: C projects built with Debian's clang and wasi-libc (which
//! `scripts/test` installs), run by wasmbuild and by the Python wasmtime package; its errors
//! exactly as a user sees them; and a real C program, bzip2, from a crate's vendored sources.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::{Home, digest_of, fixture, repo, require, stderr, stdout, without_durations};

/// The install hint every "no clang" error carries.
const INSTALL_CLANG: &str = "  hint: install clang, lld and wasi-libc (Debian: `apt-get install clang lld wasi-libc \
                             libclang-rt-14-dev-wasm32`), or set WASI_SDK_PATH to an unpacked wasi-sdk\n";

/// wasmbuild with the machine's own clang and wasi-libc: no compiler or sysroot chosen by
/// the environment the tests happen to run in.
fn wasmbuild(home: &Home) -> Command {
    require("clang");
    let mut command = home.cmd();
    command
        .env_remove("CC")
        .env_remove("WASI_SDK_PATH")
        .env_remove("WASI_SYSROOT");
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("run wasmbuild")
}

/// The `error:` block, without the progress and compiler output before it.
fn error_block(stderr: &str) -> &str {
    let at = if stderr.starts_with("error: ") {
        0
    } else {
        stderr.find("\nerror: ").expect("an error line") + 1
    };
    &stderr[at..]
}

/// Runs a build that must fail with exit code 1 and nothing on stdout; returns stderr.
fn fails(command: &mut Command) -> String {
    let output = run(command);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(output.stdout.is_empty(), "nothing on stdout");
    stderr(&output)
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().expect("canonical path")
}

#[test]
fn a_multi_file_c_project_builds_and_runs() {
    let home = Home::new();
    let line = home.build("c-hello", &[]);
    assert!(
        line.starts_with("docker.io/library/c-hello:latest@sha256:"),
        "{line}"
    );
    assert_eq!(
        home.ok(&["run", "c-hello"]),
        "Hello from wasmbuild, world!\nWORLD has 5 letters\nargv[0]=/c-hello.wasm\nc-hello 1.0\n"
    );
    assert_eq!(
        home.ok(&["run", "-e", "GREETING=Hi", "c-hello", "there"]),
        "Hi, there!\nTHERE has 5 letters\nargv[0]=/c-hello.wasm\nc-hello 1.0\n"
    );
}

#[test]
fn the_build_shows_the_clang_command() {
    let home = Home::new();
    let context = canonical(&fixture("c-hello"));
    let output = run(wasmbuild(&home).args(["build", context.to_str().unwrap()]));
    assert!(output.status.success(), "{}", stderr(&output));
    let err = without_durations(&stderr(&output));
    assert!(
        err.contains(
            "=> clang: clang 14.0.6 for wasm32-wasi, wasi-libc in /usr (Debian's wasi-libc)\n"
        ),
        "{err}"
    );
    // Sources sorted, the emulation library's macro added, the libraries last; with -O,
    // clang 14 would run wasm-opt itself unless a stand-in is found first (-B).
    assert!(
        err.contains(&format!(
            "=> compile: clang --target=wasm32-wasi --sysroot=/usr -Btarget/wasmbuild/no-wasm-opt/ \
             -ffile-prefix-map={}=. -Iinclude \
             -DAPP_VERSION=\"1.0\" -DNDEBUG -D_WASI_EMULATED_PROCESS_CLOCKS -O2 -Wall -Werror \
             -o target/wasmbuild/c-hello.wasm src/main.c src/util/strings.c -lwasi-emulated-process-clocks\n",
            context.display()
        )),
        "{err}"
    );
}

#[test]
fn python_wasmtime_runs_the_c_module_with_the_same_output() {
    let python = require("python3");
    let home = Home::new();
    home.build("c-hello", &[]);
    for args in [vec![], vec!["from", "python"]] {
        let mut ours = vec!["run", "c-hello"];
        ours.extend(&args);
        let ours = home.run(&ours);
        let theirs = Command::new(&python)
            .arg(repo().join("tests/python/run_from_store.py"))
            .arg(home.store())
            .arg("docker.io/library/c-hello:latest")
            .args(&args)
            .output()
            .expect("run python3");
        assert!(
            theirs.status.success(),
            "python wasmtime failed:\n{}",
            stderr(&theirs)
        );
        assert_eq!(stdout(&theirs), stdout(&ours), "{args:?}");
        assert_eq!(theirs.status.code(), ours.status.code());
    }
    assert_eq!(
        stdout(&home.run(&["run", "c-hello", "from", "python"])),
        "Hello from wasmbuild, from!\nFROM has 4 letters\nargv[0]=/c-hello.wasm\nc-hello 1.0\n"
    );
}

/// Copies the files of `from` (not `target/`) into `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "target" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn the_same_sources_elsewhere_give_the_same_digest_even_with_debug_info() {
    let home = Home::new();
    let temp = tempfile::tempdir().unwrap();
    let mut digests = Vec::new();
    for place in ["one/c-hello", "two/deeper/c-hello"] {
        let copy = temp.path().join(place);
        copy_tree(&fixture("c-hello"), &copy);
        // DWARF names the compilation folder: -ffile-prefix-map keeps it out. Kept in the
        // image (`strip = "none"`, and no wasm-opt to rewrite it) so the digest shows it.
        let wasmfile = copy.join("Wasmfile");
        let text = std::fs::read_to_string(&wasmfile).unwrap();
        let text = text.replace("flags = [", "flags = [\"-g\", ");
        std::fs::write(
            &wasmfile,
            format!("{text}\n[optimize]\nlevel = \"none\"\nstrip = \"none\"\n"),
        )
        .unwrap();
        let line = home.ok(&["build", copy.to_str().unwrap()]);
        digests.push(digest_of(line.trim()).to_owned());
    }
    assert_eq!(digests[0], digests[1]);
    let fixture_line = home.build("c-hello", &[]);
    assert_ne!(
        digest_of(&fixture_line),
        digests[0],
        "-g did change the module"
    );
}

#[test]
fn builds_of_one_project_at_once_all_succeed_alike() {
    // They share `target/wasmbuild/`: none may remove or half-write the module another reads.
    let context = fixture("c-hello");
    let homes: Vec<Home> = (0..3).map(|_| Home::new()).collect();
    let children: Vec<_> = homes
        .iter()
        .map(|home| {
            wasmbuild(home)
                .args(["build", "--quiet", context.to_str().unwrap()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let lines: Vec<String> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "{}", stderr(&output));
            stdout(&output)
        })
        .collect();
    assert!(lines.iter().all(|line| line == &lines[0]), "{lines:?}");
}

#[test]
fn a_c_compile_error_shows_the_command_and_the_compiler_output() {
    let home = Home::new();
    let err = fails(
        wasmbuild(&home)
            .current_dir(repo())
            .args(["build", "fixtures/broken/c-compile-error"]),
    );
    // clang's own diagnostics streamed as they came...
    assert!(
        err.contains("   src/main.c:5:26: error: expected ';' after expression\n"),
        "{err}"
    );
    assert!(
        err.contains("   1 warning and 1 error generated.\n"),
        "{err}"
    );
    // ...then one error naming the command and its status.
    assert_eq!(
        error_block(&err),
        format!(
            "error: `clang --target=wasm32-wasi --sysroot=/usr -ffile-prefix-map={}=. \
             -o target/wasmbuild/c-compile-error.wasm src/main.c` failed (exit status: 1)\n",
            canonical(&fixture("broken/c-compile-error")).display()
        )
    );
    let images = home.ok(&["images"]);
    assert_eq!(images.lines().count(), 1, "only the header: {images}");
}

/// A context with this Wasmfile and these files.
fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("c-project-")
        .tempdir()
        .unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

#[test]
fn a_sources_pattern_that_matches_nothing_is_named() {
    let home = Home::new();
    let dir = project(&[
        (
            "Wasmfile",
            "[build]\ntoolchain = \"clang\"\nsources = [\"src/*.c\", \"lib/**/*.c\"]\n",
        ),
        ("src/main.c", "int main(void) { return 0; }\n"),
    ]);
    let context = canonical(dir.path());
    let err = fails(wasmbuild(&home).args(["build", context.to_str().unwrap()]));
    assert_eq!(
        error_block(&err),
        format!(
            "error: the `sources` pattern \"lib/**/*.c\" matches no file in {}\n  \
             hint: patterns are relative to the build context; `*` matches within one folder, `**` any \
             number of folders\n",
            context.display()
        )
    );
}

#[test]
fn a_missing_clang_is_named_with_how_to_install_it() {
    let home = Home::new();
    let context = fixture("c-hello");
    let err = fails(
        wasmbuild(&home)
            .env("CC", "/nonexistent/clang")
            .args(["build", context.to_str().unwrap()]),
    );
    assert_eq!(
        err,
        format!(
            "error: cannot find the C compiler `/nonexistent/clang` (from CC)\n{INSTALL_CLANG}"
        )
    );

    let empty = tempfile::tempdir().unwrap();
    let err = fails(
        wasmbuild(&home)
            .env("PATH", empty.path())
            .args(["build", context.to_str().unwrap()]),
    );
    assert_eq!(
        err,
        format!("error: cannot find the C compiler `clang` on PATH\n{INSTALL_CLANG}")
    );
}

#[test]
fn a_cc_that_is_not_clang_is_refused() {
    let home = Home::new();
    // A stand-in for gcc: what its --version says is all that is asked of it.
    let dir = tempfile::tempdir().unwrap();
    let gcc = dir.path().join("gcc");
    std::fs::write(&gcc, "#!/bin/sh\necho 'gcc (Debian 12.2.0-14) 12.2.0'\n").unwrap();
    std::fs::set_permissions(&gcc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let err = fails(
        wasmbuild(&home)
            .env("CC", &gcc)
            .args(["build", fixture("c-hello").to_str().unwrap()]),
    );
    assert_eq!(
        err,
        format!(
            "error: `{}` (from CC) is not clang: its `--version` says \"gcc (Debian 12.2.0-14) 12.2.0\"\n  \
             hint: WebAssembly needs clang: set CC to a clang, or unset it to use `clang` from PATH\n",
            gcc.display()
        )
    );
}

#[test]
fn a_sysroot_without_wasi_libc_says_where_it_looked() {
    let home = Home::new();
    let empty = tempfile::tempdir().unwrap();
    let err = fails(
        wasmbuild(&home)
            .env("WASI_SYSROOT", empty.path())
            .args(["build", fixture("c-hello").to_str().unwrap()]),
    );
    assert_eq!(
        err,
        format!(
            "error: cannot find wasi-libc (a WASI sysroot); looked at {} from WASI_SYSROOT (no \
             lib/wasm32-wasi[p1]/libc.a and include/wasm32-wasi[p1]/stdio.h)\n  \
             hint: install wasi-libc (Debian: `apt-get install wasi-libc libclang-rt-14-dev-wasm32`), or set \
             WASI_SDK_PATH to an unpacked wasi-sdk, or WASI_SYSROOT to a wasi-sysroot\n",
            empty.path().display()
        )
    );
}

/// Another clang install: a copy of the real driver in `<dir>/bin`, beside the real
/// install's `lib/` (headers, compiler-rt), and nothing else in `bin/` unless a test puts it.
fn clang_install() -> (tempfile::TempDir, PathBuf) {
    let real = canonical(&require("clang"));
    let install = real
        .parent()
        .and_then(Path::parent)
        .expect("clang in <prefix>/bin");
    let fake = tempfile::tempdir().unwrap();
    std::fs::create_dir(fake.path().join("bin")).unwrap();
    let clang = fake.path().join("bin/clang");
    std::fs::copy(&real, &clang).unwrap();
    std::os::unix::fs::symlink(install.join("lib"), fake.path().join("lib")).unwrap();
    (fake, clang)
}

#[test]
fn clang_never_runs_a_wasm_opt_it_finds() {
    // Given -O, clang 14 runs any wasm-opt it finds (its own folder first) on the module.
    // One that would ruin the module sits beside this clang: the module must not change.
    let home = Home::new();
    let (fake, clang) = clang_install();
    let wasm_opt = fake.path().join("bin/wasm-opt");
    std::fs::write(
        &wasm_opt,
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = -o ] && echo ruined > \"$2\"; shift; done\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &wasm_opt,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let line = |cc: Option<&Path>| {
        let mut command = wasmbuild(&home);
        if let Some(cc) = cc {
            command.env("CC", cc);
        }
        let output = run(command.args(["build", fixture("c-hello").to_str().unwrap()]));
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    assert_eq!(line(Some(&clang)), line(None));
}

/// clang installed without lld: no `wasm-ld` beside it or on PATH.
#[test]
fn a_missing_wasm_ld_is_hinted() {
    let home = Home::new();
    let (_fake, clang) = clang_install();
    let empty = tempfile::tempdir().unwrap();
    let err = fails(
        wasmbuild(&home)
            .env("CC", &clang)
            .env("PATH", empty.path())
            .args(["build", fixture("c-hello").to_str().unwrap()]),
    );
    assert!(
        err.contains("   clang: error: unable to execute command: Executable \"wasm-ld"),
        "{err}"
    );
    let block = error_block(&err);
    assert!(
        block.starts_with(&format!(
            "error: `{} --target=wasm32-wasi ",
            clang.display()
        )),
        "{block}"
    );
    assert!(
        block.ends_with(
            "failed (exit status: 1)\n  hint: clang links WebAssembly with wasm-ld, from lld: install it \
             (Debian: `apt-get install lld`)\n"
        ),
        "{block}"
    );
}

/// The bzip2 1.0.8 sources that the `bzip2-sys` crate vendors, fetched by cargo.
fn bzip2_sources() -> PathBuf {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("Cargo.toml"),
        "[package]\nname = \"fetch-bzip2\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [lib]\npath = \"lib.rs\"\n\n[dependencies]\nbzip2-sys = \"=0.1.13\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(project.path().join("lib.rs"), "").unwrap();
    // `cargo metadata` downloads the crate and says where it unpacked it.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(project.path())
        .args(["metadata", "--format-version", "1"])
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo metadata");
    assert!(output.status.success(), "cargo metadata failed");
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let manifest = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bzip2-sys")
        .expect("bzip2-sys in the metadata")["manifest_path"]
        .as_str()
        .unwrap()
        .to_owned();
    Path::new(&manifest).parent().unwrap().join("bzip2-1.0.8")
}

const BZIP2_LIBRARY: [&str; 7] = [
    "blocksort.c",
    "huffman.c",
    "crctable.c",
    "randtable.c",
    "compress.c",
    "decompress.c",
    "bzlib.c",
];

#[test]
fn bzip2_from_a_crates_vendored_sources_passes_its_own_tests() {
    let vendored = bzip2_sources();
    let temp = tempfile::tempdir().unwrap();
    let context = temp.path().join("bzip2");
    std::fs::create_dir(&context).unwrap();
    let samples: Vec<String> = (1..=3)
        .flat_map(|n| [format!("sample{n}.ref"), format!("sample{n}.bz2")])
        .collect();
    for file in BZIP2_LIBRARY
        .iter()
        .copied()
        .chain(["bzip2.c", "bzlib.h", "bzlib_private.h", "LICENSE"])
        .chain(samples.iter().map(String::as_str))
    {
        std::fs::copy(vendored.join(file), context.join(file)).unwrap();
    }
    // bzip2.c is a Unix program: the signal handlers and times() it uses are emulated by
    // wasi-libc; fchmod and fchown (keeping a file's mode and owner) do not exist in WASI.
    let sources: Vec<String> = std::iter::once("bzip2.c")
        .chain(BZIP2_LIBRARY)
        .map(|s| format!("{s:?}"))
        .collect();
    std::fs::write(
        context.join("Wasmfile"),
        format!(
            "[build]\ntoolchain = \"clang\"\nsources = [{}]\n\
             defines = [\"_FILE_OFFSET_BITS=64\", \"fchmod(fd,mode)=0\", \"fchown(fd,uid,gid)=0\"]\n\
             flags = [\"-O2\"]\nlibs = [\"wasi-emulated-signal\", \"wasi-emulated-process-clocks\"]\n",
            sources.join(", ")
        ),
    )
    .unwrap();

    let home = Home::new();
    let output = run(wasmbuild(&home).args(["build", context.to_str().unwrap()]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).starts_with("docker.io/library/bzip2:latest@sha256:"));

    // bzip2's own `make test`: compress at -1/-2/-3 and decompress (-s: small memory),
    // byte for byte against the samples it ships. Data goes through stdin and stdout.
    for (args, input, expected) in [
        (&["-1"][..], "sample1.ref", "sample1.bz2"),
        (&["-2"], "sample2.ref", "sample2.bz2"),
        (&["-3"], "sample3.ref", "sample3.bz2"),
        (&["-d"], "sample1.bz2", "sample1.ref"),
        (&["-d"], "sample2.bz2", "sample2.ref"),
        (&["-ds"], "sample3.bz2", "sample3.ref"),
    ] {
        let output = home
            .cmd()
            .args(["run", "-i", "bzip2"])
            .args(args)
            .stdin(std::fs::File::open(context.join(input)).unwrap())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "bzip2 {args:?} < {input}: {}",
            stderr(&output)
        );
        let want = std::fs::read(context.join(expected)).unwrap();
        assert!(
            output.stdout == want,
            "bzip2 {args:?} < {input}: {} bytes, {expected} has {}",
            output.stdout.len(),
            want.len()
        );
    }
    // A damaged stream is an error with bzip2's own message and exit code.
    let output = home
        .cmd()
        .args(["run", "-i", "bzip2", "-d"])
        .stdin(std::fs::File::open(context.join("sample1.ref")).unwrap())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("bzip2.wasm: (stdin) is not a bzip2 file.\n"),
        "{}",
        stderr(&output)
    );
}
