//! Wasmfiles that resolve: defaults, every key, detection and interpolation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wasmbuild_spec::{
    CargoSettings, ClangSettings, CopyRule, GoSettings, ImageConfig, ImageFormat, OnFailure,
    OptLevel, Optimize, Options, Os, Precompile, Strip, Toolchain, parse,
};

use crate::Project;

fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

#[test]
fn an_empty_wasmfile_gets_every_default() {
    let project = Project::new();
    project.file("Cargo.toml", "[package]\nname = \"hello\"\n");
    let resolved = project.plan("");
    let plan = resolved.plan;
    assert_eq!(plan.wasmfile, project.path("Wasmfile"));
    assert_eq!(plan.context, project.root());
    assert_eq!(
        plan.toolchain,
        Toolchain::Cargo(CargoSettings {
            package: None,
            bin: None,
            profile: "release".to_owned(),
            features: Vec::new(),
            no_default_features: false,
        })
    );
    assert!(plan.env.is_empty());
    assert_eq!(
        plan.optimize,
        Optimize {
            level: OptLevel::Os,
            strip: Strip::Debug,
            on_failure: OnFailure::Error,
        }
    );
    assert_eq!(
        plan.precompile,
        Precompile {
            targets: strings(&["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"])
        }
    );
    assert_eq!(
        plan.image,
        ImageConfig {
            name: None,
            tags: strings(&["latest"]),
            format: ImageFormat::Image,
            os: Os::Wasi,
            entrypoint: None,
            cmd: Vec::new(),
            env: BTreeMap::new(),
            workdir: "/".to_owned(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    );
    assert!(plan.copies.is_empty());
    assert!(plan.args.is_empty());
    assert!(resolved.warnings.is_empty());
}

const FULL_CARGO: &str = r#"
# Every key that is not specific to another toolchain.
[build]
toolchain = "cargo"
context = "app"
env = { RUSTFLAGS = "-C opt-level=s", BUILD_VERSION = "${VERSION}" }
package = "hello"
bin = "hello-${VERSION}"
profile = "wasm"
features = ["fast", "${FEATURE}"]
no-default-features = true

[optimize]
level = "O3"
strip = "all"
on-failure = "warn"

[precompile]
targets = ["x86_64-unknown-linux-gnu"]

[image]
name = "ghcr.io/me/${NAME}"
tags = ["${VERSION}", "latest"]
format = "artifact"
os = "wasip1"
entrypoint = ["/hello.wasm", "--serve"]
cmd = ["--port", "8080"]
env = { LOG = "info", VERSION = "${VERSION}" }
workdir = "/srv"
labels = { "org.example.team" = "wasm" }
annotations = { "org.opencontainers.image.version" = "${VERSION}" }

[[copy]]
from = "static/"
to = "/static/"

[[copy]]
from = "config.toml"
to = "/etc/hello.toml"

[args]
VERSION = "dev"
FEATURE = "extra"
NAME = "hello"
"#;

fn full_project() -> Project {
    let project = Project::new();
    project
        .file("app/Cargo.toml", "[package]\nname = \"hello\"\n")
        .file("app/static/index.html", "<p>hi</p>")
        .file("app/config.toml", "");
    project
}

#[test]
fn a_full_wasmfile_resolves_every_key() {
    let project = full_project();
    let resolved = project
        .load_with(FULL_CARGO, &[("VERSION", "1.2.0")])
        .expect("resolves");
    let plan = resolved.plan;
    let app = project.path("app");
    assert_eq!(plan.context, app);
    assert_eq!(
        plan.toolchain,
        Toolchain::Cargo(CargoSettings {
            package: Some("hello".to_owned()),
            bin: Some("hello-1.2.0".to_owned()),
            profile: "wasm".to_owned(),
            features: strings(&["fast", "extra"]),
            no_default_features: true,
        })
    );
    assert_eq!(
        plan.env,
        map(&[("RUSTFLAGS", "-C opt-level=s"), ("BUILD_VERSION", "1.2.0")])
    );
    assert_eq!(
        plan.optimize,
        Optimize {
            level: OptLevel::O3,
            strip: Strip::All,
            on_failure: OnFailure::Warn,
        }
    );
    assert_eq!(
        plan.precompile.targets,
        strings(&["x86_64-unknown-linux-gnu"])
    );
    assert_eq!(
        plan.image,
        ImageConfig {
            name: Some("ghcr.io/me/hello".to_owned()),
            tags: strings(&["1.2.0", "latest"]),
            format: ImageFormat::Artifact,
            os: Os::Wasip1,
            entrypoint: Some(strings(&["/hello.wasm", "--serve"])),
            cmd: strings(&["--port", "8080"]),
            env: map(&[("LOG", "info"), ("VERSION", "1.2.0")]),
            workdir: "/srv".to_owned(),
            labels: map(&[("org.example.team", "wasm")]),
            annotations: map(&[("org.opencontainers.image.version", "1.2.0")]),
        }
    );
    assert_eq!(
        plan.copies,
        [
            CopyRule {
                from: app.join("static"),
                to: "/static/".to_owned()
            },
            CopyRule {
                from: app.join("config.toml"),
                to: "/etc/hello.toml".to_owned()
            },
        ]
    );
    assert_eq!(
        plan.args,
        map(&[
            ("VERSION", "1.2.0"),
            ("FEATURE", "extra"),
            ("NAME", "hello")
        ])
    );
    assert!(resolved.warnings.is_empty());
}

#[test]
fn no_prefix_of_a_wasmfile_makes_it_panic() {
    let project = full_project();
    let wasmfile = project.path("Wasmfile");
    for (end, _) in FULL_CARGO.char_indices() {
        // Errors are expected; a panic fails the test.
        let _ = parse(&FULL_CARGO[..end], &wasmfile, &Options::default());
    }
    for garbage in [
        "\u{0}",
        "[",
        "]]",
        "a.b.c.d = 1",
        "[[image]]",
        "copy = 1",
        "[args]\n1 = 2",
        "\"\" = 1",
        "[image]\nenv = { \"\" = \"x\" }",
    ] {
        let _ = parse(garbage, &wasmfile, &Options::default());
    }
}

#[test]
fn clang_keys_resolve_with_defaults_and_paths() {
    let project = Project::new();
    project
        .file("main.c", "int main(void) { return 0; }")
        .dir("include");
    let plan = project.plan("[build]\ntoolchain = \"clang\"\n").plan;
    assert_eq!(
        plan.toolchain,
        Toolchain::Clang(ClangSettings {
            sources: strings(&["*.c"]),
            include: Vec::new(),
            defines: Vec::new(),
            flags: Vec::new(),
            libs: Vec::new(),
        })
    );
    let plan = project
        .plan(
            "[build]\ntoolchain = \"clang\"\nsources = [\"src/*.c\"]\ninclude = [\"include\", \"gen/\"]\n\
             defines = [\"NDEBUG\"]\nflags = [\"-O2\"]\nlibs = [\"m\"]\n",
        )
        .plan;
    assert_eq!(
        plan.toolchain,
        Toolchain::Clang(ClangSettings {
            sources: strings(&["src/*.c"]),
            // `gen` need not exist yet: a build step may create it.
            include: vec![project.path("include"), project.path("gen")],
            defines: strings(&["NDEBUG"]),
            flags: strings(&["-O2"]),
            libs: strings(&["m"]),
        })
    );
}

#[test]
fn go_and_tinygo_keys_resolve() {
    let project = Project::new();
    project.file("go.mod", "module example.com/app\n");
    assert_eq!(
        project.plan("").plan.toolchain,
        Toolchain::Go(GoSettings {
            main: ".".to_owned(),
            flags: Vec::new()
        })
    );
    assert_eq!(
        project
            .plan(
                "[build]\ntoolchain = \"tinygo\"\nmain = \"./cmd/app\"\nflags = [\"-no-debug\"]\n"
            )
            .plan
            .toolchain,
        Toolchain::TinyGo(GoSettings {
            main: "./cmd/app".to_owned(),
            flags: strings(&["-no-debug"])
        })
    );
}

#[test]
fn prebuilt_and_command_resolve_their_paths() {
    let project = Project::new();
    project.file("dist/app.wasm", "\0asm");
    assert_eq!(
        project
            .plan("[build]\nmodule = \"dist/app.wasm\"\n")
            .plan
            .toolchain,
        Toolchain::Prebuilt {
            module: project.path("dist/app.wasm")
        }
    );
    assert_eq!(
        project
            .plan("[build]\ntoolchain = \"prebuilt\"\nmodule = \"./dist/../dist/app.wasm\"\n")
            .plan
            .toolchain,
        Toolchain::Prebuilt {
            module: project.path("dist/app.wasm")
        }
    );
    // `command` wins over a named toolchain, and its output need not exist yet.
    assert_eq!(
        project
            .plan(
                "[build]\ntoolchain = \"cargo\"\ncommand = [\"make\", \"wasm\"]\n\
                 output = \"build/app.wasm\"\n"
            )
            .plan
            .toolchain,
        Toolchain::Command {
            command: strings(&["make", "wasm"]),
            output: project.path("build/app.wasm"),
        }
    );
}

#[test]
fn detection_looks_for_cargo_then_go_then_c() {
    let project = Project::new();
    project.file("hello.c", "").file("go.mod", "module x\n");
    assert_eq!(project.plan("").plan.toolchain.name(), "go");
    project.file("Cargo.toml", "[package]\nname = \"x\"\n");
    assert_eq!(project.plan("").plan.toolchain.name(), "cargo");

    let c_only = Project::new();
    c_only.file("src/ignored.go", "").file("hello.c", "");
    assert_eq!(c_only.plan("").plan.toolchain.name(), "clang");

    // `command` and `module` decide before the files do.
    assert_eq!(
        project
            .plan("[build]\ncommand = [\"make\"]\noutput = \"app.wasm\"\n")
            .plan
            .toolchain
            .name(),
        "command"
    );
    project.file("app.wasm", "");
    assert_eq!(
        project
            .plan("[build]\nmodule = \"app.wasm\"\n")
            .plan
            .toolchain
            .name(),
        "prebuilt"
    );
}

#[test]
fn detection_uses_the_context_not_the_wasmfile_folder() {
    let project = Project::new();
    project
        .file("Cargo.toml", "")
        .file("web/go.mod", "module x\n");
    let plan = project.plan("[build]\ncontext = \"web\"\n").plan;
    assert_eq!(plan.context, project.path("web"));
    assert_eq!(plan.toolchain.name(), "go");
}

#[test]
fn paths_resolve_relative_to_the_wasmfile_then_the_context() {
    let project = Project::new();
    project
        .file("deploy/Wasmfile.extra", "")
        .file("deploy/app/Cargo.toml", "")
        .file("deploy/app/assets/a.txt", "");
    let source = "[build]\ncontext = \"./app/\"\n[[copy]]\nfrom = \"assets/../assets/a.txt\"\nto = \"/a.txt\"\n";
    let resolved = parse(
        source,
        &project.path("deploy/Wasmfile"),
        &Options::default(),
    )
    .expect("resolves");
    assert_eq!(resolved.plan.context, project.path("deploy/app"));
    assert_eq!(
        resolved.plan.copies[0].from,
        project.path("deploy/app/assets/a.txt")
    );
}

#[test]
fn a_relative_wasmfile_path_is_made_absolute() {
    // The path is relative to the current directory, which is the crate's folder in tests.
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let resolved = parse("", Path::new("Wasmfile"), &Options::default()).expect("resolves");
    let crate_dir = std::fs::canonicalize(crate_dir).expect("canonical");
    assert_eq!(resolved.plan.wasmfile, crate_dir.join("Wasmfile"));
    assert_eq!(resolved.plan.context, crate_dir);
    assert_eq!(resolved.plan.toolchain.name(), "cargo");
}

#[cfg(unix)]
#[test]
fn a_symlink_inside_the_context_is_fine_and_keeps_its_name() {
    let project = Project::new();
    project.file("Cargo.toml", "").file("real/data.txt", "");
    project.symlink(&project.path("real/data.txt"), "link.txt");
    let plan = project
        .plan("[[copy]]\nfrom = \"link.txt\"\nto = \"/data.txt\"\n")
        .plan;
    assert_eq!(plan.copies[0].from, project.path("link.txt"));
}

mod interpolation {
    use super::*;

    const WASMFILE: &str = r#"
[image]
name = "registry.example/${REPO}"
tags = ["${VERSION}", "v${VERSION}-${VERSION}"]
labels = { version = "${VERSION}" }

[args]
REPO = "team/app"
VERSION = "dev"
"#;

    fn project() -> Project {
        let project = Project::new();
        project.file("Cargo.toml", "");
        project
    }

    #[test]
    fn uses_the_defaults_in_args() {
        let plan = project().plan(WASMFILE).plan;
        assert_eq!(
            plan.image.name.as_deref(),
            Some("registry.example/team/app")
        );
        assert_eq!(plan.image.tags, strings(&["dev", "vdev-dev"]));
        assert_eq!(plan.image.labels, map(&[("version", "dev")]));
        assert_eq!(plan.args, map(&[("REPO", "team/app"), ("VERSION", "dev")]));
    }

    #[test]
    fn build_args_override_the_defaults_and_the_last_one_wins() {
        let resolved = project()
            .load_with(WASMFILE, &[("VERSION", "1.0"), ("VERSION", "2.0")])
            .expect("resolves");
        assert_eq!(resolved.plan.image.tags, strings(&["2.0", "v2.0-2.0"]));
        assert_eq!(resolved.plan.args["VERSION"], "2.0");
        assert!(resolved.warnings.is_empty());
    }

    #[test]
    fn an_undeclared_build_arg_is_a_warning() {
        let resolved = project()
            .load_with(WASMFILE, &[("FOO", "1"), ("VERSION", "3")])
            .expect("resolves");
        assert_eq!(
            resolved.warnings,
            ["build arg FOO was given but the Wasmfile declares no such [args] entry"]
        );
        // Only declared args reach the plan.
        assert_eq!(
            resolved.plan.args,
            map(&[("REPO", "team/app"), ("VERSION", "3")])
        );
    }

    #[test]
    fn applies_to_every_string_but_args_and_keys() {
        let project = project();
        project.file("static-dev/x", "");
        let plan = project
            .plan(
                r#"
[build]
command = ["make", "${V}"]
output = "out-${V}.wasm"
env = { "${V}" = "${V}" }
[precompile]
targets = ["${V}"]
[image]
entrypoint = ["/${V}.wasm"]
cmd = ["${V}"]
workdir = "/${V}"
annotations = { a = "${V}" }
[[copy]]
from = "static-${V}/"
to = "/${V}/"
[args]
V = "dev"
W = "${V}"
"#,
            )
            .plan;
        assert_eq!(
            plan.toolchain,
            Toolchain::Command {
                command: strings(&["make", "dev"]),
                output: project.path("out-dev.wasm"),
            }
        );
        assert_eq!(plan.env, map(&[("${V}", "dev")]));
        assert_eq!(plan.precompile.targets, strings(&["dev"]));
        assert_eq!(plan.image.entrypoint, Some(strings(&["/dev.wasm"])));
        assert_eq!(plan.image.cmd, strings(&["dev"]));
        assert_eq!(plan.image.workdir, "/dev");
        assert_eq!(plan.image.annotations, map(&[("a", "dev")]));
        assert_eq!(plan.copies[0].from, project.path("static-dev"));
        assert_eq!(plan.copies[0].to, "/dev/");
        assert_eq!(plan.args["W"], "${V}");
    }

    #[test]
    fn double_dollar_brace_is_a_literal() {
        let plan = project()
            .plan(
                "[build]\ncommand = [\"sh\", \"-c\", \"echo $${HOME} $$ $PATH ${V}\"]\n\
                 output = \"a.wasm\"\n[args]\nV = \"1\"\n",
            )
            .plan;
        let Toolchain::Command { command, .. } = plan.toolchain else {
            panic!("expected a command build");
        };
        assert_eq!(command[2], "echo ${HOME} $$ $PATH 1");
    }

    #[test]
    fn a_build_arg_can_change_a_path() {
        let project = project();
        project.file("a/x", "").file("b/x", "");
        let wasmfile = "[[copy]]\nfrom = \"${DIR}/x\"\nto = \"/x\"\n[args]\nDIR = \"a\"\n";
        let plan = project
            .load_with(wasmfile, &[("DIR", "b")])
            .expect("resolves")
            .plan;
        assert_eq!(plan.copies[0].from, project.path("b/x"));
    }
}
