//! `wasmbuild init`: a new project from each template builds and runs with the real
//! toolchain (TinyGo, which no registry here ships, only as far as its Wasmfile); an
//! existing project is detected and gets a Wasmfile and nothing else; files are never
//! replaced without `--force`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{Home, require, snapshot, stderr, stdout};

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs `wasmbuild init DIR ARGS...`, insisting it succeeds with nothing on stdout; returns
/// stderr.
fn init(home: &Home, dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["init", path(dir)];
    all.extend_from_slice(args);
    let output = home.run(&all);
    assert!(
        output.status.success(),
        "wasmbuild {all:?} failed:\n{}",
        stderr(&output)
    );
    assert_eq!(stdout(&output), "", "talk goes to stderr");
    stderr(&output)
}

/// Runs `wasmbuild init DIR ARGS...` expecting exit status 1 and nothing on stdout; returns
/// stderr.
fn init_fails(home: &Home, dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["init", path(dir)];
    all.extend_from_slice(args);
    let output = home.run(&all);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(output.stdout.is_empty(), "nothing on stdout");
    stderr(&output)
}

/// Builds the folder as `x:1` and returns what the image prints when it runs.
fn build_and_run(home: &Home, dir: &Path) -> String {
    let built = home.ok(&["build", path(dir), "-t", "x:1"]);
    assert!(
        built.starts_with("docker.io/library/x:1@sha256:"),
        "{built}"
    );
    home.ok(&["run", "x:1"])
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The files below `dir`, relative to it.
fn files(dir: &Path) -> Vec<String> {
    snapshot(dir)
        .into_iter()
        .map(|(file, _)| file.strip_prefix(dir).unwrap().display().to_string())
        .collect()
}

/// `init --lang LANG` in a new folder writes these files and names the next commands;
/// the project builds, and its image greets.
fn new_project_builds_and_runs(lang: &str, written: &[&str]) {
    let home = Home::new();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(format!("hello-{lang}"));
    let talk = init(&home, &dir, &["--lang", lang]);

    let mut expected = String::new();
    for file in written {
        expected.push_str(&format!("wrote {}\n", dir.join(file).display()));
    }
    expected.push_str(&format!(
        "to build and run it:\n  wasmbuild build {} -t hello-{lang}\n  wasmbuild run hello-{lang}\n",
        dir.display()
    ));
    assert_eq!(talk, expected);
    let mut on_disk = files(&dir);
    on_disk.sort();
    let mut written: Vec<String> = written.iter().map(|f| (*f).to_owned()).collect();
    written.sort();
    assert_eq!(on_disk, written);

    assert_eq!(
        build_and_run(&home, &dir),
        format!("Hello from hello-{lang}!\n")
    );
}

#[test]
fn a_new_rust_project_builds_and_runs() {
    require("cargo");
    new_project_builds_and_runs("rust", &["Cargo.toml", "src/main.rs", "Wasmfile"]);
}

#[test]
fn a_new_c_project_builds_and_runs() {
    require("clang");
    new_project_builds_and_runs("c", &["main.c", "Wasmfile"]);
}

#[test]
fn a_new_go_project_builds_and_runs() {
    require("go");
    new_project_builds_and_runs("go", &["go.mod", "main.go", "Wasmfile"]);
}

/// TinyGo is in no registry reachable here: its Wasmfile resolves, and the build gets as
/// far as looking for `tinygo` (on a PATH that has none, wherever this runs).
#[test]
fn a_new_tinygo_project_has_a_wasmfile_that_resolves() {
    let home = Home::new();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("hello-tinygo");
    init(&home, &dir, &["--lang", "tinygo"]);
    assert!(read(&dir.join("go.mod")).starts_with("module hello-tinygo\n"));
    assert!(read(&dir.join("main.go")).contains("\"Hello from hello-tinygo!\""));
    let wasmfile = read(&dir.join("Wasmfile"));
    assert!(wasmfile.contains("\ntoolchain = \"tinygo\" "), "{wasmfile}");
    assert!(wasmfile.contains("\nmain = \".\" "), "{wasmfile}");

    let empty = tempfile::tempdir().unwrap();
    let output = home
        .cmd()
        .args(["build", path(&dir)])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("error: `tinygo` is not installed: it is not on PATH\n"),
        "{err}"
    );
}

/// A Cargo package in a folder of another name, with two binaries.
fn greeter_crate() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("greeter-src");
    write(
        &dir.join("Cargo.toml"),
        "[package]\nname = \"greeter\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    write(
        &dir.join("src/main.rs"),
        "fn main() {\n    println!(\"greeter says hi\");\n}\n",
    );
    write(
        &dir.join("src/bin/admin.rs"),
        "fn main() {\n    println!(\"admin\");\n}\n",
    );
    (root, dir)
}

#[test]
fn a_cargo_package_is_detected_and_gets_only_a_wasmfile() {
    require("cargo");
    let home = Home::new();
    let (_root, dir) = greeter_crate();
    let before = snapshot(&dir);
    let talk = init(&home, &dir, &[]);
    assert_eq!(
        talk,
        format!(
            "wrote {} (cargo, from Cargo.toml)\nto build and run it:\n  wasmbuild build {} -t \
             greeter\n  wasmbuild run greeter\n",
            dir.join("Wasmfile").display(),
            dir.display()
        )
    );
    let wasmfile = read(&dir.join("Wasmfile"));
    assert!(wasmfile.contains("\npackage = \"greeter\" "), "{wasmfile}");
    assert!(
        wasmfile.contains("\nbin = \"greeter\"            # its binary; the others: admin\n"),
        "{wasmfile}"
    );
    let mut after = snapshot(&dir);
    after.retain(|(file, _)| !file.ends_with("Wasmfile"));
    assert_eq!(after, before, "the sources are untouched");

    assert_eq!(build_and_run(&home, &dir), "greeter says hi\n");
}

#[test]
fn a_go_module_is_detected_with_its_command_below_cmd() {
    require("go");
    let home = Home::new();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("src");
    write(
        &dir.join("go.mod"),
        "module example.com/tools/greeter/v2\n\ngo 1.21\n",
    );
    write(
        &dir.join("greeting/greeting.go"),
        "package greeting\n\nfunc Text() string { return \"greeter in Go\" }\n",
    );
    let main = "// The command.\npackage main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/tools/greeter/v2/greeting\"\n)\n\nfunc main() { fmt.Println(greeting.Text()) }\n";
    write(&dir.join("cmd/greeter/main.go"), main);
    write(&dir.join("cmd/admin/main.go"), main);

    let talk = init(&home, &dir, &[]);
    assert!(talk.contains(" (go, from go.mod)\n"), "{talk}");
    assert!(talk.contains("\n  wasmbuild run greeter\n"), "{talk}");
    let wasmfile = read(&dir.join("Wasmfile"));
    assert!(
        wasmfile.contains(
            "\nmain = \"./cmd/greeter\"     # the main package; the others: ./cmd/admin\n"
        ),
        "{wasmfile}"
    );
    assert_eq!(build_and_run(&home, &dir), "greeter in Go\n");
}

#[test]
fn c_sources_under_src_are_detected_with_their_headers() {
    require("clang");
    let home = Home::new();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("Greeter C");
    write(
        &dir.join("include/greet.h"),
        "const char *greeting(void);\n",
    );
    write(
        &dir.join("src/lib/greet.c"),
        "#include \"greet.h\"\nconst char *greeting(void) { return \"greeter in C\"; }\n",
    );
    write(
        &dir.join("src/main.c"),
        "#include <stdio.h>\n#include \"greet.h\"\nint main(void) { puts(greeting()); return 0; }\n",
    );
    let talk = init(&home, &dir, &[]);
    assert!(talk.contains(" (clang, from src/**/*.c)\n"), "{talk}");
    // The folder's name, made a valid image name; quoted for the shell.
    assert!(
        talk.contains(&format!(
            "\n  wasmbuild build '{}' -t greeter-c\n  wasmbuild run greeter-c\n",
            dir.display()
        )),
        "{talk}"
    );
    let wasmfile = read(&dir.join("Wasmfile"));
    assert!(
        wasmfile.contains("\nsources = [\"src/**/*.c\"]"),
        "{wasmfile}"
    );
    assert!(wasmfile.contains("\ninclude = [\"include\"]"), "{wasmfile}");
    assert_eq!(build_and_run(&home, &dir), "greeter in C\n");
}

#[test]
fn an_existing_file_is_never_replaced_without_force() {
    let home = Home::new();
    let (_root, dir) = greeter_crate();
    write(&dir.join("Wasmfile"), "# mine\n");
    let before = snapshot(&dir);
    let err = init_fails(&home, &dir, &[]);
    assert_eq!(
        err,
        format!(
            "error: {} already exists\n  hint: pass --force to overwrite it\n",
            dir.join("Wasmfile").display()
        )
    );
    assert_eq!(snapshot(&dir), before);

    // A new project's files too, and then nothing at all is written.
    let root = tempfile::tempdir().unwrap();
    let fresh = root.path().join("fresh");
    write(&fresh.join("src/main.rs"), "// mine\n");
    let err = init_fails(&home, &fresh, &["--lang", "rust"]);
    assert_eq!(
        err,
        format!(
            "error: {} already exists\n  hint: pass --force to overwrite it\n",
            fresh.join("src/main.rs").display()
        )
    );
    assert_eq!(files(&fresh), ["src/main.rs"]);
}

#[test]
fn force_replaces_the_wasmfile_and_leaves_the_sources_alone() {
    let home = Home::new();
    let (_root, dir) = greeter_crate();
    write(&dir.join("Wasmfile"), "# mine\n");
    let sources = snapshot(&dir.join("src"));
    let talk = init(&home, &dir, &["--force"]);
    assert!(
        talk.starts_with(&format!(
            "replaced {} (cargo, from Cargo.toml)\n",
            dir.join("Wasmfile").display()
        )),
        "{talk}"
    );
    assert!(read(&dir.join("Wasmfile")).contains("\npackage = \"greeter\" "));
    assert_eq!(snapshot(&dir.join("src")), sources);
    assert!(read(&dir.join("Cargo.toml")).starts_with("[package]\nname = \"greeter\"\n"));
}

#[test]
fn ci_github_writes_a_workflow_that_parses_as_yaml() {
    let home = Home::new();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("hello-ci");
    let talk = init(&home, &dir, &["--lang", "go", "--ci", "github"]);
    let workflow = dir.join(".github/workflows/wasmbuild.yml");
    assert!(
        talk.contains(&format!("wrote {}\n", workflow.display())),
        "{talk}"
    );
    let text = read(&workflow);
    for needle in [
        "runs-on: ",
        "uses: wasmbuild/wasmbuild@",
        "uses: actions/setup-go@",
    ] {
        assert!(text.contains(needle), "{needle}:\n{text}");
    }
    // Parsed by PyYAML where it is installed: it runs on pushes to main, and Go is set up
    // before the action builds.
    let has_yaml = Command::new("python3")
        .args(["-c", "import yaml"])
        .output()
        .is_ok_and(|output| output.status.success());
    if has_yaml {
        let script = "import json, sys, yaml\n\
                      doc = yaml.safe_load(open(sys.argv[1]))\n\
                      on = doc.get('on', doc.get(True))\n\
                      uses = [step.get('uses', '').split('@')[0] for job in doc['jobs'].values() \
                      for step in job['steps']]\n\
                      print(json.dumps({'branches': on['push']['branches'], 'uses': uses}))\n";
        let output: Output = Command::new("python3")
            .args(["-c", script, path(&workflow)])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        let parsed: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
        assert_eq!(parsed["branches"], serde_json::json!(["main"]));
        let uses: Vec<&str> = parsed["uses"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|u| u.as_str())
            .filter(|u| !u.is_empty())
            .collect();
        let go = uses.iter().position(|u| *u == "actions/setup-go").unwrap();
        let action = uses
            .iter()
            .position(|u| *u == "wasmbuild/wasmbuild")
            .unwrap();
        assert!(go < action, "{uses:?}");
    }

    // Written once: a second --ci refuses as any other file does.
    let err = init_fails(&home, &dir, &["--ci", "github"]);
    assert!(err.contains("Wasmfile already exists"), "{err}");
}

#[test]
fn a_name_is_made_from_the_folder_or_checked_when_given() {
    let home = Home::new();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("My Project");
    init(&home, &dir, &["--lang", "rust"]);
    assert!(read(&dir.join("Cargo.toml")).contains("\nname = \"my-project\"\n"));

    let other = root.path().join("other");
    init(&home, &other, &["--lang", "go", "--name", "greeter_go"]);
    assert!(read(&other.join("go.mod")).starts_with("module greeter_go\n"));

    let err = init_fails(
        &home,
        &root.path().join("x"),
        &["--lang", "c", "--name", "My App"],
    );
    assert!(err.ends_with("\n  hint: pass --name my-app\n"), "{err}");
    assert!(!root.path().join("x").exists(), "nothing is created");

    let err = init_fails(&home, &root.path().join("test"), &["--lang", "rust"]);
    assert_eq!(
        err,
        "error: `test` cannot be the name of a Cargo package\n  hint: pass another name, e.g. --name test-app\n"
    );
}

#[test]
fn what_cannot_be_decided_is_an_error_with_a_hint() {
    let home = Home::new();
    let root = tempfile::tempdir().unwrap();

    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = init_fails(&home, &empty, &[]);
    assert_eq!(
        err,
        format!(
            "error: found no project in {}: no Cargo.toml, go.mod or .c files\n  hint: pass \
             --lang rust, c, go or tinygo to start a new project there\n",
            empty.display()
        )
    );

    let (_crate_root, greeter) = greeter_crate();
    let err = init_fails(&home, &greeter, &["--lang", "go"]);
    assert_eq!(
        err,
        format!(
            "error: {} holds a rust project (Cargo.toml), not a go one\n  hint: leave out --lang \
             to write a Wasmfile for the rust project, or start the go project in an empty \
             folder\n",
            greeter.display()
        )
    );

    let workspace = root.path().join("workspace");
    write(
        &workspace.join("Cargo.toml"),
        "[workspace]\nmembers = [\"crates/*\"]\n",
    );
    let err = init_fails(&home, &workspace, &[]);
    assert!(
        err.contains("is a workspace root without a [package] of its own\n  hint: run `wasmbuild init` in the folder of the member to build, or pass --name with its package name\n"),
        "{err}"
    );
    // With --name, the member to build.
    init(&home, &workspace, &["--name", "app"]);
    assert!(read(&workspace.join("Wasmfile")).contains("\npackage = \"app\" "));
}
