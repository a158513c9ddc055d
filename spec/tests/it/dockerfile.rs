//! Dockerfiles: what each accepted instruction puts in the plan, `ARG` substitution by
//! Docker's rules, continuation lines and directives, exec versus shell forms, how the module
//! is found, and every refusal with its exact text, line and column.

use std::collections::BTreeMap;
use std::path::Path;

use wasmbuild_spec::{
    CopyRule, ImageConfig, ImageFormat, Location, OnFailure, OptLevel, Optimize, Options, Os,
    Policy, Precompile, Resolved, SpecError, Strip, Toolchain, is_dockerfile, is_dockerfile_name,
    load_dockerfile, looks_like_dockerfile, parse_dockerfile,
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

/// A build context holding `app.wasm` (the spec never reads a module's bytes).
fn context() -> Project {
    let project = Project::new();
    project.file("app.wasm", "\0asm");
    project
}

fn options(build_args: &[(&str, &str)]) -> Options {
    Options {
        build_args: build_args
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
    }
}

fn load_with(
    project: &Project,
    dockerfile: &str,
    build_args: &[(&str, &str)],
) -> Result<Resolved, SpecError> {
    project.file("Dockerfile", dockerfile);
    load_dockerfile(
        &project.path("Dockerfile"),
        project.root(),
        &options(build_args),
    )
}

fn plan_with(project: &Project, dockerfile: &str, build_args: &[(&str, &str)]) -> Resolved {
    match load_with(project, dockerfile, build_args) {
        Ok(resolved) => resolved,
        Err(error) => panic!("{error}"),
    }
}

fn plan(project: &Project, dockerfile: &str) -> Resolved {
    plan_with(project, dockerfile, &[])
}

/// The message (with the project folder as `<root>`), `(line, column)` and hint.
type Report = (String, Option<(usize, usize)>, Option<String>);

fn report(project: &Project, error: &SpecError) -> Report {
    (
        project.show(error),
        error
            .location()
            .map(|Location { line, column }| (line, column)),
        error.hint(),
    )
}

fn error_with(project: &Project, dockerfile: &str, build_args: &[(&str, &str)]) -> SpecError {
    match load_with(project, dockerfile, build_args) {
        Ok(resolved) => panic!("expected an error, got {:#?}", resolved.plan),
        Err(error) => error,
    }
}

/// Checks the error a Dockerfile gives in a context holding `app.wasm`.
fn check(dockerfile: &str, message: &str, at: Option<(usize, usize)>, hint: Option<&str>) {
    let project = context();
    let error = error_with(&project, dockerfile, &[]);
    assert_eq!(
        report(&project, &error),
        (message.to_owned(), at, hint.map(str::to_owned)),
        "{error:?}"
    );
}

/// Checks a refusal: its text, place and hint, and that it names the instruction.
fn refused(
    dockerfile: &str,
    instruction: &str,
    message: &str,
    at: (usize, usize),
    hint: Option<&str>,
) {
    let project = context();
    let error = error_with(&project, dockerfile, &[]);
    assert_eq!(
        report(&project, &error),
        (message.to_owned(), Some(at), hint.map(str::to_owned)),
        "{error:?}"
    );
    let SpecError::Unsupported {
        instruction: named, ..
    } = &error
    else {
        panic!("expected Unsupported, got {error:?}");
    };
    assert_eq!(named, instruction);
}

const CANONICAL: &str = "FROM scratch\nCOPY app.wasm /app.wasm\nENTRYPOINT [\"/app.wasm\"]\n";

#[test]
fn docker_wasm_guide_example_gets_every_default() {
    let project = context();
    let resolved = plan(&project, CANONICAL);
    assert!(resolved.warnings.is_empty(), "{:?}", resolved.warnings);
    let plan = resolved.plan;
    assert_eq!(plan.wasmfile, project.path("Dockerfile"));
    assert_eq!(plan.context, project.root());
    assert_eq!(
        plan.toolchain,
        Toolchain::Prebuilt {
            module: project.path("app.wasm")
        }
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
            entrypoint: Some(strings(&["/app.wasm"])),
            cmd: Vec::new(),
            env: BTreeMap::new(),
            workdir: "/".to_owned(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    );
    assert!(plan.copies.is_empty());
    assert!(plan.args.is_empty());
    assert_eq!(plan.policy, Policy::default());
}

#[test]
fn the_plan_equals_the_equivalent_wasmfile_but_for_the_file() {
    let project = context();
    project.file("motd.txt", "hi\n");
    let dockerfile = plan(
        &project,
        "FROM scratch\n\
         ENV GREETING=hello\n\
         LABEL org.example.team=wasm\n\
         WORKDIR /srv\n\
         COPY motd.txt /etc/motd.txt\n\
         COPY app.wasm /app.wasm\n\
         ENTRYPOINT [\"/app.wasm\"]\n\
         CMD [\"world\"]\n",
    )
    .plan;
    let wasmfile = project
        .load(
            "[build]\ntoolchain = \"prebuilt\"\nmodule = \"app.wasm\"\n\n\
             [image]\nentrypoint = [\"/app.wasm\"]\ncmd = [\"world\"]\n\
             env = { GREETING = \"hello\" }\nworkdir = \"/srv\"\n\
             labels = { \"org.example.team\" = \"wasm\" }\n\n\
             [[copy]]\nfrom = \"motd.txt\"\nto = \"/etc/motd.txt\"\n",
        )
        .expect("the Wasmfile resolves")
        .plan;
    assert_eq!(dockerfile.wasmfile, project.path("Dockerfile"));
    assert_eq!(
        wasmbuild_spec::BuildPlan {
            wasmfile: wasmfile.wasmfile.clone(),
            ..dockerfile
        },
        wasmfile
    );
}

#[test]
fn every_accepted_instruction_reaches_the_plan() {
    let project = context();
    project
        .file("static/index.html", "<p>hi</p>")
        .file("a.txt", "a")
        .file("b.txt", "b")
        .file("c d.txt", "c");
    let resolved = plan(
        &project,
        r#"# syntax=docker/dockerfile:1
# A comment, then every instruction wasmbuild reads.
FROM scratch AS app
ENV LOG=info MODE="fast mode" QUIET=a\ b
ENV LEGACY value with  spaces
LABEL org.example.team=wasm "org.example.quoted"='x y' \
      org.example.version=1
WORKDIR /srv
WORKDIR www
COPY static/ /static/
COPY a.txt b.txt /etc/
COPY ["c d.txt", "notes/"]
COPY --link app.wasm bin/
ENTRYPOINT ["/srv/www/bin/app.wasm", "--serve"]
CMD ["--port", "8080"]
"#,
    );
    assert!(resolved.warnings.is_empty(), "{:?}", resolved.warnings);
    let plan = resolved.plan;
    assert_eq!(
        plan.toolchain,
        Toolchain::Prebuilt {
            module: project.path("app.wasm")
        }
    );
    assert_eq!(
        plan.image.entrypoint,
        Some(strings(&["/srv/www/bin/app.wasm", "--serve"]))
    );
    assert_eq!(plan.image.cmd, strings(&["--port", "8080"]));
    assert_eq!(
        plan.image.env,
        map(&[
            ("LOG", "info"),
            ("MODE", "fast mode"),
            ("QUIET", "a b"),
            ("LEGACY", "value with  spaces"),
        ])
    );
    assert_eq!(
        plan.image.labels,
        map(&[
            ("org.example.team", "wasm"),
            ("org.example.quoted", "x y"),
            ("org.example.version", "1"),
        ])
    );
    assert_eq!(plan.image.workdir, "/srv/www");
    assert_eq!(
        plan.copies,
        [
            CopyRule {
                from: project.path("static"),
                to: "/static/".to_owned()
            },
            CopyRule {
                from: project.path("a.txt"),
                to: "/etc/".to_owned()
            },
            CopyRule {
                from: project.path("b.txt"),
                to: "/etc/".to_owned()
            },
            CopyRule {
                from: project.path("c d.txt"),
                to: "/srv/www/notes/".to_owned()
            },
        ]
    );
}

#[test]
fn instructions_are_case_insensitive() {
    let project = context();
    let plan = plan(
        &project,
        "from scratch\ncopy app.wasm /app.wasm\nEntryPoint [\"/app.wasm\"]\ncmd [\"x\"]\n",
    )
    .plan;
    assert_eq!(plan.image.entrypoint, Some(strings(&["/app.wasm"])));
    assert_eq!(plan.image.cmd, strings(&["x"]));
}

#[test]
fn the_last_entrypoint_cmd_and_env_win() {
    let project = context();
    let plan = plan(
        &project,
        "FROM scratch\nCOPY app.wasm /app.wasm\nENTRYPOINT [\"/nope.wasm\"]\n\
         ENTRYPOINT [\"/app.wasm\"]\nCMD [\"a\"]\nCMD []\nENV A=1\nENV A=2\n",
    )
    .plan;
    assert_eq!(plan.image.entrypoint, Some(strings(&["/app.wasm"])));
    assert!(plan.image.cmd.is_empty());
    assert_eq!(plan.image.env, map(&[("A", "2")]));
}

#[test]
fn continuation_lines_comments_and_blank_lines_inside_them() {
    let project = context();
    let plan = plan(
        &project,
        "FROM \\\n  scratch\n\n   # indented comment\nCOPY app.wasm \\\n# a comment inside\n\n\
         \t/app.wasm  \nENTRYPOINT [\"/app.wasm\", \\ \t\n  \"--x\"]\n\nLABEL a=1\r\n",
    )
    .plan;
    assert_eq!(plan.image.entrypoint, Some(strings(&["/app.wasm", "--x"])));
    assert_eq!(
        plan.toolchain,
        Toolchain::Prebuilt {
            module: project.path("app.wasm")
        }
    );
    assert_eq!(plan.image.labels, map(&[("a", "1")]));
}

#[test]
fn the_escape_directive_changes_the_continuation_and_escape_character() {
    let project = context();
    let plan = plan(
        &project,
        "# escape=`\nFROM scratch\nENV WIN=C:\\dir PRICE=`$5\nCOPY app.wasm `\n  /app.wasm\n\
         ENTRYPOINT [\"/app.wasm\"]\n",
    )
    .plan;
    assert_eq!(plan.image.env, map(&[("WIN", "C:\\dir"), ("PRICE", "$5")]));
}

#[test]
fn directives_only_count_at_the_top() {
    // After a comment, `# escape=` is a comment: the backtick stays an ordinary character.
    let project = context();
    let plan = plan(
        &project,
        "# a comment\n# escape=`\nFROM scratch\nENV A=x`y\nCOPY app.wasm /app.wasm\n\
         ENTRYPOINT [\"/app.wasm\"]\n",
    )
    .plan;
    assert_eq!(plan.image.env, map(&[("A", "x`y")]));
}

#[test]
fn an_unknown_syntax_frontend_is_only_a_warning() {
    let project = context();
    let resolved = plan(
        &project,
        &format!("# syntax=example.com/other:1\n{CANONICAL}"),
    );
    assert_eq!(
        resolved
            .warnings
            .iter()
            .map(|warning| warning.replace(&project.root().display().to_string(), "<root>"))
            .collect::<Vec<_>>(),
        [
            "<root>/Dockerfile:1:10: `# syntax=example.com/other:1` is ignored: wasmbuild reads \
          the file as Docker's own Dockerfile syntax"
        ]
    );
    let quiet = plan(
        &project,
        &format!("# syntax=docker.io/docker/dockerfile:1.7\n# check=skip=all\n{CANONICAL}"),
    );
    assert!(quiet.warnings.is_empty(), "{:?}", quiet.warnings);
}

#[test]
fn directive_errors() {
    check(
        "# escape=!\nFROM scratch\n",
        "<root>/Dockerfile:1:10: invalid escape character \"!\": expected `\\` or `` ` ``",
        Some((1, 10)),
        None,
    );
    check(
        "# escape=`\n# Escape=\\\nFROM scratch\n",
        "<root>/Dockerfile:2:10: only one `# escape=` parser directive can be used",
        Some((2, 10)),
        None,
    );
}

#[test]
fn arg_defaults_build_args_and_substitution() {
    let project = context();
    let dockerfile = r#"ARG BASE=scratch
ARG VERSION=dev
FROM ${BASE}
ARG VERSION
ARG NAME=app TEAM="the ${NAME} team"
ARG EMPTY=
ARG UNSET
ENV APP_VERSION=$VERSION
LABEL org.example.version="v${VERSION}" org.example.team=${TEAM}
LABEL default=${UNSET:-fallback} alt=${UNSET-unset} empty=${EMPTY-kept} \
      colon=${EMPTY:-empty} plus=${VERSION:+set} noplus=${UNSET+x} \
      single='$VERSION' escaped=\$VERSION quoted="\$VERSION"
WORKDIR /srv/${NAME}
COPY ${NAME}.wasm ./
ENTRYPOINT ["/srv/app/app.wasm", "$VERSION"]
CMD ["${NAME}"]
"#;
    let resolved = plan_with(&project, dockerfile, &[("VERSION", "1.2.3")]);
    // ARG defaults see the ARGs before the instruction, not the ones beside them.
    assert_eq!(
        resolved
            .warnings
            .iter()
            .map(|warning| warning.replace(&project.root().display().to_string(), "<root>"))
            .collect::<Vec<_>>(),
        [
            "<root>/Dockerfile:5:24: $NAME is not set by any ARG or ENV before it, so it expands \
          to an empty string"
        ]
    );
    let plan = resolved.plan;
    assert_eq!(plan.image.env, map(&[("APP_VERSION", "1.2.3")]));
    assert_eq!(
        plan.image.labels,
        map(&[
            ("org.example.version", "v1.2.3"),
            ("org.example.team", "the  team"),
            ("default", "fallback"),
            ("alt", "unset"),
            ("empty", ""),
            ("colon", "empty"),
            ("plus", "set"),
            ("noplus", ""),
            ("single", "$VERSION"),
            ("escaped", "$VERSION"),
            ("quoted", "$VERSION"),
        ])
    );
    assert_eq!(plan.image.workdir, "/srv/app");
    // ENTRYPOINT and CMD are not substituted: Docker leaves that to the program's shell.
    assert_eq!(
        plan.image.entrypoint,
        Some(strings(&["/srv/app/app.wasm", "$VERSION"]))
    );
    assert_eq!(plan.image.cmd, strings(&["${NAME}"]));
    assert_eq!(
        plan.args,
        map(&[
            ("BASE", "scratch"),
            ("VERSION", "1.2.3"),
            ("NAME", "app"),
            ("TEAM", "the  team"),
            ("EMPTY", ""),
        ])
    );

    // Without --build-arg, the stage's `ARG VERSION` takes the default from before FROM.
    let plan = plan_with(&project, dockerfile, &[]).plan;
    assert_eq!(plan.image.env, map(&[("APP_VERSION", "dev")]));
}

#[test]
fn env_wins_over_arg_and_each_instruction_sees_the_values_before_it() {
    let project = context();
    let plan = plan_with(
        &project,
        "FROM scratch\nENV MODE=env\nARG MODE=arg\nENV A=1\nENV A=2 B=$A\nLABEL mode=$MODE\n\
         COPY app.wasm /\nENTRYPOINT [\"/app.wasm\"]\n",
        &[("MODE", "given")],
    )
    .plan;
    assert_eq!(
        plan.image.env,
        map(&[("MODE", "env"), ("A", "2"), ("B", "1")])
    );
    assert_eq!(plan.image.labels, map(&[("mode", "env")]));
}

#[test]
fn args_before_from_need_redeclaring_in_the_stage() {
    let project = context();
    let resolved = plan(
        &project,
        "ARG V=1\nFROM scratch\nENV V=$V\nCOPY app.wasm /\nENTRYPOINT [\"/app.wasm\"]\n",
    );
    assert_eq!(resolved.plan.image.env, map(&[("V", "")]));
    assert_eq!(
        resolved
            .warnings
            .iter()
            .map(|warning| warning.replace(&project.root().display().to_string(), "<root>"))
            .collect::<Vec<_>>(),
        [
            "<root>/Dockerfile:3:7: $V is not set by any ARG or ENV before it, so it expands to an \
          empty string"
        ]
    );
}

#[test]
fn platform_args_are_wasi_wasm() {
    let project = context();
    let plan = plan(
        &project,
        "FROM --platform=$TARGETPLATFORM scratch\nARG TARGETOS\nARG TARGETARCH\n\
         LABEL platform=$TARGETOS/$TARGETARCH\nCOPY app.wasm /\nENTRYPOINT [\"/app.wasm\"]\n",
    )
    .plan;
    assert_eq!(plan.image.labels, map(&[("platform", "wasi/wasm")]));
}

#[test]
fn an_unused_build_arg_is_a_warning() {
    let project = context();
    let resolved = plan_with(&project, CANONICAL, &[("NOPE", "1")]);
    assert_eq!(
        resolved.warnings,
        ["build arg NOPE was given but the Dockerfile declares no such ARG"]
    );
}

#[test]
fn substitution_errors_point_into_the_word() {
    check(
        "FROM scratch\nENV A=${B:?required}\n",
        "<root>/Dockerfile:2:7: cannot substitute in \"${B:?required}\": B: required",
        Some((2, 7)),
        None,
    );
    check(
        "FROM scratch\nLABEL a=x${B\n",
        "<root>/Dockerfile:2:10: cannot substitute in \"x${B\": `${B` has no closing `}`",
        Some((2, 10)),
        None,
    );
    check(
        "FROM scratch\nWORKDIR /${B#x}\n",
        "<root>/Dockerfile:2:10: cannot substitute in \"/${B#x}\": unsupported modifier `#` in \
         `${B...}`: expected `}`, or `-`, `+` or `?` with or without `:`",
        Some((2, 10)),
        None,
    );
    check(
        "FROM scratch\nENV A=\"open\n",
        "<root>/Dockerfile:2:7: cannot substitute in \"\\\"open\": unclosed double quote",
        Some((2, 7)),
        None,
    );
}

#[test]
fn the_module_without_entrypoint_is_the_one_wasm_file() {
    let project = context();
    project.file("motd.txt", "hi");
    let plan = plan(
        &project,
        "FROM scratch\nCOPY motd.txt /etc/\nCOPY app.wasm /bin/\nCMD [\"--help\"]\n",
    )
    .plan;
    assert_eq!(
        plan.toolchain,
        Toolchain::Prebuilt {
            module: project.path("app.wasm")
        }
    );
    assert_eq!(plan.image.entrypoint, Some(strings(&["/bin/app.wasm"])));
    assert_eq!(plan.image.cmd, strings(&["--help"]));
    assert_eq!(
        plan.copies,
        [CopyRule {
            from: project.path("motd.txt"),
            to: "/etc/".to_owned()
        }]
    );
}

#[test]
fn without_entrypoint_a_cmd_that_runs_the_module_becomes_the_entrypoint() {
    let project = context();
    let plan = plan(
        &project,
        "FROM scratch\nCOPY app.wasm /app.wasm\nCMD [\"/app.wasm\", \"--serve\"]\n",
    )
    .plan;
    assert_eq!(plan.image.entrypoint, Some(strings(&["/app.wasm"])));
    assert_eq!(plan.image.cmd, strings(&["--serve"]));
}

#[test]
fn a_relative_entrypoint_is_found_through_workdir() {
    let project = context();
    let plan = plan(
        &project,
        "FROM scratch\nWORKDIR /opt\nCOPY app.wasm .\nENTRYPOINT [\"app.wasm\"]\n",
    )
    .plan;
    assert_eq!(plan.image.entrypoint, Some(strings(&["app.wasm"])));
    assert_eq!(plan.image.workdir, "/opt");
    assert!(plan.copies.is_empty());
}

#[test]
fn the_last_copy_to_the_module_path_is_the_module() {
    let project = context();
    project.file("old.wasm", "\0asm");
    let plan = plan(
        &project,
        "FROM scratch\nCOPY old.wasm /app.wasm\nCOPY app.wasm /\nENTRYPOINT [\"/app.wasm\"]\n",
    )
    .plan;
    assert_eq!(
        plan.toolchain,
        Toolchain::Prebuilt {
            module: project.path("app.wasm")
        }
    );
    assert!(plan.copies.is_empty(), "{:?}", plan.copies);
}

#[test]
fn copy_sources_are_relative_to_the_context_and_may_be_wildcards() {
    let project = context();
    project
        .file("conf/a.toml", "")
        .file("conf/b.toml", "")
        .file("conf/c.json", "");
    let plan = plan(
        &project,
        "FROM scratch\nCOPY /app.wasm /\nCOPY conf/*.toml /etc/\nENTRYPOINT [\"/app.wasm\"]\n",
    )
    .plan;
    assert_eq!(
        plan.toolchain,
        Toolchain::Prebuilt {
            module: project.path("app.wasm")
        }
    );
    assert_eq!(
        plan.copies,
        [
            CopyRule {
                from: project.path("conf/a.toml"),
                to: "/etc/".to_owned()
            },
            CopyRule {
                from: project.path("conf/b.toml"),
                to: "/etc/".to_owned()
            },
        ]
    );
}

#[test]
fn the_context_is_the_given_folder_not_the_dockerfiles() {
    let project = Project::new();
    project
        .file("build/Dockerfile", CANONICAL)
        .file("ctx/app.wasm", "\0asm");
    let plan = load_dockerfile(
        &project.path("build/Dockerfile"),
        &project.path("ctx"),
        &Options::default(),
    )
    .expect("resolves")
    .plan;
    assert_eq!(plan.context, project.path("ctx"));
    assert_eq!(plan.wasmfile, project.path("build/Dockerfile"));
    assert_eq!(
        plan.toolchain,
        Toolchain::Prebuilt {
            module: project.path("ctx/app.wasm")
        }
    );
}

#[test]
fn a_dockerignore_is_not_applied_and_says_so() {
    let project = context();
    project.file(".dockerignore", "target\n");
    let resolved = plan(&project, CANONICAL);
    assert_eq!(
        resolved
            .warnings
            .iter()
            .map(|warning| warning.replace(&project.root().display().to_string(), "<root>"))
            .collect::<Vec<_>>(),
        [
            "<root>/.dockerignore is not applied: wasmbuild copies exactly what each COPY names, \
          folders whole"
        ]
    );
}

// Refusals: every instruction a Wasm image cannot have, with the reason.

#[test]
fn run_is_refused() {
    refused(
        "FROM scratch\n  RUN cargo build --target wasm32-wasip1\n",
        "RUN",
        "<root>/Dockerfile:2:3: RUN is not supported: there is no shell to run commands in a \
         Wasm image; build the module first (cargo/clang/go via a Wasmfile, or your own \
         tooling) and COPY it",
        (2, 3),
        None,
    );
}

#[test]
fn every_other_instruction_is_refused_with_its_reason() {
    let cases: [(&str, &str, Option<&str>); 10] = [
        (
            "ADD https://example.com/app.wasm /",
            "ADD is not supported: wasmbuild neither downloads URLs nor unpacks archives",
            Some("use COPY for files in the build context"),
        ),
        (
            "EXPOSE 8080",
            "EXPOSE is not supported: a WASI preview 1 module cannot open a listening port",
            Some("remove the EXPOSE line"),
        ),
        (
            "USER 1000",
            "USER is not supported: WASI has no users; the module runs with the runtime's \
             permissions",
            Some("remove the USER line"),
        ),
        (
            "VOLUME /data",
            "VOLUME is not supported: a WASI module sees only the folders its runtime preopens",
            Some("remove the VOLUME line, and give the runtime the folders when it runs"),
        ),
        (
            "HEALTHCHECK CMD [\"/app.wasm\", \"--check\"]",
            "HEALTHCHECK is not supported: a health check runs a command in the image, and a \
             Wasm image has no commands besides its module",
            Some("remove the HEALTHCHECK, and check the service from outside"),
        ),
        (
            "SHELL [\"/bin/sh\", \"-c\"]",
            "SHELL is not supported: a Wasm image has no shell",
            Some("remove the SHELL line"),
        ),
        (
            "ONBUILD COPY . /",
            "ONBUILD is not supported: wasmbuild builds every image FROM scratch, so no build \
             ever runs the trigger",
            Some("remove the ONBUILD line"),
        ),
        (
            "STOPSIGNAL SIGTERM",
            "STOPSIGNAL is not supported: WASI preview 1 has no signals",
            Some("remove the STOPSIGNAL line"),
        ),
        (
            "MAINTAINER me",
            "MAINTAINER is not supported: it is deprecated",
            Some("use LABEL org.opencontainers.image.authors=\"name <mail>\""),
        ),
        (
            "run echo hi",
            "RUN is not supported: there is no shell to run commands in a Wasm image; build the \
             module first (cargo/clang/go via a Wasmfile, or your own tooling) and COPY it",
            None,
        ),
    ];
    for (line, message, hint) in cases {
        let instruction = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_uppercase();
        refused(
            &format!("FROM scratch\nCOPY app.wasm /\n{line}\n"),
            &instruction,
            &format!("<root>/Dockerfile:3:1: {message}"),
            (3, 1),
            hint,
        );
    }
}

#[test]
fn from_anything_but_scratch_is_refused() {
    refused(
        "FROM rust:1.85 AS build\n",
        "FROM",
        "<root>/Dockerfile:1:6: wasmbuild builds images from scratch; FROM rust:1.85 is not \
         supported",
        (1, 6),
        Some(
            "start with FROM scratch and COPY a module built beforehand (a Wasmfile builds one \
             with cargo, clang or go)",
        ),
    );
    refused(
        "ARG BASE=alpine\nFROM ${BASE}\n",
        "FROM",
        "<root>/Dockerfile:2:6: wasmbuild builds images from scratch; FROM alpine is not \
         supported",
        (2, 6),
        Some(
            "start with FROM scratch and COPY a module built beforehand (a Wasmfile builds one \
             with cargo, clang or go)",
        ),
    );
    refused(
        "FROM Scratch\n",
        "FROM",
        "<root>/Dockerfile:1:6: wasmbuild builds images from scratch; FROM Scratch is not \
         supported",
        (1, 6),
        Some("write it in lower case: FROM scratch"),
    );
    refused(
        "FROM --platform=linux/amd64 scratch\n",
        "FROM",
        "<root>/Dockerfile:1:6: FROM --platform=linux/amd64 is not supported: wasmbuild builds \
         wasi/wasm images",
        (1, 6),
        Some("use --platform=wasi/wasm, or leave --platform out"),
    );
}

#[test]
fn a_second_stage_is_refused() {
    refused(
        "FROM scratch AS one\nCOPY app.wasm /\nFROM scratch\n",
        "FROM",
        "<root>/Dockerfile:3:1: multi-stage builds are not supported: wasmbuild builds a single \
         FROM scratch stage",
        (3, 1),
        Some(
            "build the module first (cargo/clang/go via a Wasmfile, or your own tooling) and \
             COPY it",
        ),
    );
}

#[test]
fn copy_flags_are_refused_but_link() {
    refused(
        "FROM scratch\nCOPY --from=build /out/app.wasm /app.wasm\n",
        "COPY",
        "<root>/Dockerfile:2:6: COPY --from is not supported: there is a single FROM scratch \
         stage and no other image to copy from",
        (2, 6),
        Some(
            "build the module first (cargo/clang/go via a Wasmfile, or your own tooling) and \
             COPY it from the build context",
        ),
    );
    refused(
        "FROM scratch\nCOPY --link --chown=1000:1000 app.wasm /\n",
        "COPY",
        "<root>/Dockerfile:2:13: COPY --chown is not supported: WASI has no users, and every \
         file in the image belongs to root (uid 0, gid 0)",
        (2, 13),
        Some("remove --chown"),
    );
    refused(
        "FROM scratch\nCOPY --chmod=0755 app.wasm /\n",
        "COPY",
        "<root>/Dockerfile:2:6: COPY --chmod is not supported: file modes are fixed so that \
         images are reproducible: 0755 for a file that is executable in the build context, \
         else 0644",
        (2, 6),
        Some("remove --chmod, and chmod the file in the build context instead"),
    );
    refused(
        "FROM scratch\nCOPY --exclude=*.txt . /\n",
        "COPY",
        "<root>/Dockerfile:2:6: COPY --exclude is not supported: wasmbuild copies exactly the \
         sources a COPY names",
        (2, 6),
        Some("name each source, with a COPY per destination"),
    );
    check(
        "FROM scratch\nCOPY --mode=x app.wasm /\n",
        "<root>/Dockerfile:2:6: unknown flag --mode for COPY",
        Some((2, 6)),
        Some("COPY accepts --link (--from, --chown, --chmod, --parents and --exclude are refused)"),
    );
    check(
        "FROM scratch\nENV --x=1 A=1\n",
        "<root>/Dockerfile:2:5: unknown flag --x for ENV",
        Some((2, 5)),
        Some("ENV takes no flags"),
    );
}

#[test]
fn copy_heredocs_are_refused() {
    refused(
        "FROM scratch\nCOPY <<EOF /etc/motd\n",
        "COPY",
        "<root>/Dockerfile:2:6: COPY <<EOF is not supported: heredocs are not read",
        (2, 6),
        Some("put the text in a file in the build context and COPY that file"),
    );
}

#[test]
fn shell_forms_are_refused_with_the_json_form_to_write() {
    refused(
        "FROM scratch\nCOPY app.wasm /\nENTRYPOINT /app.wasm --serve\n",
        "ENTRYPOINT",
        "<root>/Dockerfile:3:12: ENTRYPOINT in shell form is not supported: it runs /bin/sh -c, \
         and a Wasm image has no shell",
        (3, 12),
        Some("use the exec (JSON) form: ENTRYPOINT [\"/app.wasm\", \"--serve\"]"),
    );
    refused(
        "FROM scratch\nCOPY app.wasm /\nCMD  world\n",
        "CMD",
        "<root>/Dockerfile:3:6: CMD in shell form is not supported: it runs /bin/sh -c, and a \
         Wasm image has no shell",
        (3, 6),
        Some("use the exec (JSON) form: CMD [\"world\"]"),
    );
    refused(
        "FROM scratch\nCOPY app.wasm /\nENTRYPOINT ['/app.wasm']\n",
        "ENTRYPOINT",
        "<root>/Dockerfile:3:12: ENTRYPOINT ['/app.wasm'] is not a JSON array of strings, so it \
         is the shell form, which runs /bin/sh -c: a Wasm image has no shell",
        (3, 12),
        Some("write the array with double quotes, such as ENTRYPOINT [\"/app.wasm\"]"),
    );
    check(
        "FROM scratch\nCMD [\"a\", 1]\n",
        "<root>/Dockerfile:2:5: CMD takes a JSON array of strings, not [\"a\", 1]",
        Some((2, 5)),
        None,
    );
    check(
        "FROM scratch\nCMD\n",
        "<root>/Dockerfile:2:1: CMD needs a JSON array, such as CMD [\"/app.wasm\"]",
        Some((2, 1)),
        None,
    );
}

#[test]
fn unknown_instructions_suggest_the_nearest() {
    check(
        "FROM scratch\nCOPPY app.wasm /\n",
        "<root>/Dockerfile:2:1: unknown instruction `COPPY`",
        Some((2, 1)),
        Some("did you mean COPY?"),
    );
    check(
        "FROM scratch\nFROBNICATE\n",
        "<root>/Dockerfile:2:1: unknown instruction `FROBNICATE`",
        Some((2, 1)),
        None,
    );
}

#[test]
fn structure_errors() {
    check(
        "# only comments\n",
        "<root>/Dockerfile: the Dockerfile has no FROM line",
        None,
        Some("start it with FROM scratch, then COPY the module and name it in ENTRYPOINT"),
    );
    check(
        "COPY app.wasm /\nFROM scratch\n",
        "<root>/Dockerfile:1:1: COPY before FROM: a Dockerfile starts with FROM (only ARG may \
         come before it)",
        Some((1, 1)),
        Some("add FROM scratch above it"),
    );
    check(
        "FROM scratch AS\n",
        "<root>/Dockerfile:1:1: FROM takes an image and optionally `AS name`, such as FROM scratch",
        Some((1, 1)),
        None,
    );
    check(
        "FROM scratch\nCOPY app.wasm\n",
        "<root>/Dockerfile:2:1: COPY needs a source and a destination, such as COPY app.wasm \
         /app.wasm",
        Some((2, 1)),
        None,
    );
    check(
        "FROM scratch\nCOPY app.wasm app.wasm /bin\n",
        "<root>/Dockerfile:2:24: COPY with several sources needs a destination folder ending in \
         `/`, not \"/bin\"",
        Some((2, 24)),
        Some("write \"/bin/\""),
    );
    check(
        "FROM scratch\nENV NAME\n",
        "<root>/Dockerfile:2:5: ENV NAME has no value: expected ENV LOG=info",
        Some((2, 5)),
        None,
    );
    check(
        "FROM scratch\nLABEL a=1 b\n",
        "<root>/Dockerfile:2:11: LABEL expects NAME=VALUE, but \"b\" has no `=`",
        Some((2, 11)),
        Some("quote values with spaces: \"LABEL org.example.team=wasm\""),
    );
    check(
        "FROM scratch\nARG 1X=2\n",
        "<root>/Dockerfile:2:5: invalid ARG name `1X`: expected letters, digits and `_`, not \
         starting with a digit",
        Some((2, 5)),
        None,
    );
    check(
        "FROM scratch\nENV =x\n",
        "<root>/Dockerfile:2:5: invalid environment variable name \"\": expected a non-empty name \
         without `=`",
        Some((2, 5)),
        None,
    );
    check(
        "FROM scratch\nWORKDIR\n",
        "<root>/Dockerfile:2:1: WORKDIR needs a path, such as WORKDIR /srv",
        Some((2, 1)),
        None,
    );
}

#[test]
fn the_module_must_be_copied() {
    check(
        "FROM scratch\nCOPY app.wasm /app.wasm\nENTRYPOINT [\"/main.wasm\"]\n",
        "<root>/Dockerfile:3:1: ENTRYPOINT runs /main.wasm, but no COPY puts a file there",
        Some((3, 1)),
        Some("COPY the module there, such as COPY app.wasm /main.wasm"),
    );
    let project = context();
    project.file("dist/app.wasm", "\0asm");
    let error = error_with(
        &project,
        "FROM scratch\nCOPY dist /opt/\nENTRYPOINT [\"/opt/app.wasm\"]\n",
        &[],
    );
    assert_eq!(
        report(&project, &error),
        (
            "<root>/Dockerfile:3:1: ENTRYPOINT runs /opt/app.wasm, which only the COPY of the \
             folder \"dist\" at line 2 puts there; the module must be COPYed as a file of its own"
                .to_owned(),
            Some((3, 1)),
            Some(
                "COPY the .wasm file to /opt/app.wasm on its own, and keep it out of that folder"
                    .to_owned()
            )
        )
    );
    check(
        "FROM scratch\nCMD [\"x\"]\n",
        "<root>/Dockerfile: the Dockerfile has no ENTRYPOINT and COPYs no .wasm file, so there \
         is no module to run",
        None,
        Some(
            "COPY the module and name it: COPY app.wasm /app.wasm, then ENTRYPOINT [\"/app.wasm\"]",
        ),
    );
    let project = context();
    project.file("b.wasm", "\0asm");
    let error = error_with(&project, "FROM scratch\nCOPY app.wasm b.wasm /\n", &[]);
    assert_eq!(
        report(&project, &error),
        (
            "<root>/Dockerfile: the Dockerfile has no ENTRYPOINT and COPYs 2 .wasm files \
             (/app.wasm, /b.wasm), so which one runs is not clear"
                .to_owned(),
            None,
            Some("name the module: ENTRYPOINT [\"/app.wasm\"]".to_owned())
        )
    );
}

#[test]
fn copy_sources_must_exist_inside_the_context() {
    check(
        "FROM scratch\nCOPY missing.wasm /\n",
        "<root>/Dockerfile:2:6: the COPY source = \"missing.wasm\" does not exist (looked for \
         <root>/missing.wasm)",
        Some((2, 6)),
        Some("build the module into the build context first"),
    );
    check(
        "FROM scratch\nCOPY ../secret /\n",
        &format!(
            "<root>/Dockerfile:2:6: the COPY source = \"../secret\" resolves to {}, outside the \
             build context <root>",
            context()
                .root()
                .parent()
                .unwrap_or(Path::new("/"))
                .join("secret")
                .display()
        ),
        Some((2, 6)),
        Some(
            "paths are relative to the build context and must stay inside it, so that a build \
             only reads what the context holds",
        ),
    );
    check(
        "FROM scratch\nCOPY *.txt /\n",
        "<root>/Dockerfile:2:6: COPY source \"*.txt\" matches no file in the build context",
        Some((2, 6)),
        None,
    );
}

#[cfg(unix)]
#[test]
fn copy_sources_cannot_leave_the_context_through_a_symlink() {
    let outside = Project::new();
    outside.file("secret", "x");
    let project = context();
    project.symlink(&outside.path("secret"), "link");
    let error = error_with(&project, "FROM scratch\nCOPY link /\n", &[]);
    assert_eq!(
        report(&project, &error).0,
        format!(
            "<root>/Dockerfile:2:6: the COPY source = \"link\" resolves through a symlink to {}, \
             outside the build context <root>",
            outside.path("secret").display()
        )
    );
}

#[test]
fn build_args_are_checked_and_files_read() {
    let project = context();
    let error = parse_dockerfile(
        CANONICAL,
        &project.path("Dockerfile"),
        project.root(),
        &options(&[("1X", "y")]),
    )
    .expect_err("a bad name");
    assert_eq!(
        error.to_string(),
        "--build-arg \"1X=y\": expected NAME=VALUE with a name of letters, digits and `_`, not \
         starting with a digit"
    );
    let error = load_dockerfile(&project.path("Nope"), project.root(), &Options::default())
        .expect_err("no file");
    assert_eq!(
        project.show(&error),
        "<root>/Nope: cannot read the Dockerfile"
    );
    let error = parse_dockerfile(
        CANONICAL,
        &project.path("Dockerfile"),
        &project.path("gone"),
        &Options::default(),
    )
    .expect_err("no context");
    assert_eq!(
        project.show(&error),
        "<root>/gone: cannot read the build context"
    );
}

#[test]
fn dockerfiles_are_told_from_wasmfiles() {
    for name in [
        "Dockerfile",
        "dockerfile",
        "app.Dockerfile",
        "Dockerfile.wasm",
        "Containerfile",
    ] {
        assert!(is_dockerfile_name(Path::new(name)), "{name}");
    }
    for name in ["Wasmfile", "Dockerfiles", "wasm.toml"] {
        assert!(!is_dockerfile_name(Path::new(name)), "{name}");
    }
    assert!(looks_like_dockerfile("# comment\n\n  from scratch\n"));
    assert!(looks_like_dockerfile("\u{feff}ARG V=1\nFROM scratch\n"));
    assert!(!looks_like_dockerfile("[build]\ntoolchain = \"cargo\"\n"));
    assert!(!looks_like_dockerfile("from = \"x\"\n"));
    assert!(!looks_like_dockerfile("# only a comment\n"));

    let project = context();
    project
        .file("build.conf", "FROM scratch\n")
        .file("Wasmfile", "[build]\n");
    assert!(is_dockerfile(&project.path("build.conf")));
    assert!(!is_dockerfile(&project.path("Wasmfile")));
    assert!(!is_dockerfile(&project.path("missing")));
}
