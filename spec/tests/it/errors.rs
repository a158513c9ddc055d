//! Every kind of error, with the exact text, location and hint a user gets.

use std::io::ErrorKind;
use std::path::Path;

use wasmbuild_spec::{Location, Options, SpecError, load, parse, parse_build_arg};

use crate::Project;

/// A project that detects as cargo, so that only the Wasmfile under test can fail.
fn cargo_project() -> Project {
    let project = Project::new();
    project.file("Cargo.toml", "[package]\nname = \"hello\"\n");
    project
}

/// The message (with the project folder as `<root>`), location and hint of an error.
fn report(
    project: &Project,
    error: &SpecError,
) -> (String, Option<(usize, usize)>, Option<String>) {
    (
        project.show(error),
        error
            .location()
            .map(|Location { line, column }| (line, column)),
        error.hint(),
    )
}

fn check(wasmfile: &str, message: &str, at: Option<(usize, usize)>, hint: Option<&str>) {
    let project = cargo_project();
    let error = project.error(wasmfile);
    assert_eq!(
        report(&project, &error),
        (message.to_owned(), at, hint.map(str::to_owned)),
        "{error:?}"
    );
}

#[test]
fn io_names_the_file_and_keeps_the_cause() {
    let project = Project::new();
    let error = load(&project.path("Nope"), &Options::default()).expect_err("no file");
    assert_eq!(
        project.show(&error),
        "<root>/Nope: cannot read the Wasmfile"
    );
    assert_eq!(error.path(), Some(project.path("Nope").as_path()));
    let source = std::error::Error::source(&error).expect("a cause");
    assert_eq!(
        source
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind),
        Some(ErrorKind::NotFound)
    );
    assert!(matches!(error, SpecError::Io { .. }));
}

#[test]
fn io_for_a_wasmfile_in_a_missing_folder() {
    let project = Project::new();
    let error =
        parse("", &project.path("gone/Wasmfile"), &Options::default()).expect_err("no folder");
    assert_eq!(
        project.show(&error),
        "<root>/gone: cannot read the Wasmfile's folder"
    );
}

#[test]
fn syntax() {
    check(
        "[build]\ncontext = \".\"\n[image\n",
        "<root>/Wasmfile:3:7: invalid TOML: unclosed table, expected `]`",
        Some((3, 7)),
        None,
    );
    check(
        "[image]\nname = \"a\"\nname = \"b\"\n",
        "<root>/Wasmfile:3:1: invalid TOML: duplicate key `name`",
        Some((3, 1)),
        None,
    );
    check(
        "[image]\nname = \"unterminated\n",
        "<root>/Wasmfile:2:21: invalid TOML: invalid basic string, expected `\"`",
        Some((2, 21)),
        None,
    );
}

#[test]
fn unknown_key_with_a_suggestion() {
    let project = cargo_project();
    let error = project.error("[image]\nname = \"app\"\n  tag = [\"1.0\"]\n");
    assert_eq!(
        report(&project, &error),
        (
            "<root>/Wasmfile:3:3: unknown key `tag` in [image], expected one of `name`, `tags`, \
             `format`, `os`, `entrypoint`, `cmd`, `env`, `workdir`, `labels`, `annotations`"
                .to_owned(),
            Some((3, 3)),
            Some("did you mean `tags`?".to_owned())
        )
    );
    let SpecError::UnknownKey {
        key,
        table,
        suggestion,
        ..
    } = error
    else {
        panic!("expected UnknownKey, got {error:?}");
    };
    assert_eq!(
        (key.as_str(), table.as_str(), suggestion.as_deref()),
        ("tag", "[image]", Some("tags"))
    );
}

#[test]
fn unknown_key_suggestions_forgive_case_and_underscores() {
    check(
        "[build]\nno_default_features = true\n",
        "<root>/Wasmfile:2:1: unknown key `no_default_features` in [build], expected one of \
         `toolchain`, `context`, `env`, `package`, `bin`, `profile`, `features`, \
         `no-default-features`, `sources`, `include`, `defines`, `flags`, `libs`, `main`, \
         `module`, `command`, `output`, `allow-imports`, `exec-model`",
        Some((2, 1)),
        Some("did you mean `no-default-features`?"),
    );
    let project = cargo_project();
    let error = project.error("[Image]\nname = \"x\"\n");
    assert_eq!(error.hint().as_deref(), Some("did you mean `image`?"));
    assert_eq!(error.location(), Some(Location { line: 1, column: 2 }));
}

#[test]
fn unknown_key_in_the_wrong_table_says_where_it_belongs() {
    check(
        "toolchain = \"cargo\"\n",
        "<root>/Wasmfile:1:1: unknown key `toolchain` in the Wasmfile, expected one of `build`, \
         `optimize`, `precompile`, `image`, `copy`, `args`",
        Some((1, 1)),
        Some("`toolchain` belongs in [build]"),
    );
}

#[test]
fn unknown_key_far_from_anything_has_no_hint() {
    check(
        "[[copy]]\nfrom = \"Cargo.toml\"\nto = \"/x\"\nmode = 420\n",
        "<root>/Wasmfile:4:1: unknown key `mode` in [[copy]], expected `from` or `to`",
        Some((4, 1)),
        None,
    );
}

#[test]
fn unknown_key_in_a_dotted_key() {
    check(
        "image.tagz = [\"a\"]\n",
        "<root>/Wasmfile:1:7: unknown key `tagz` in [image], expected one of `name`, `tags`, \
         `format`, `os`, `entrypoint`, `cmd`, `env`, `workdir`, `labels`, `annotations`",
        Some((1, 7)),
        Some("did you mean `tags`?"),
    );
}

#[test]
fn invalid_value_points_at_the_value() {
    check(
        "[image]\ntags = \"latest\"\n",
        "<root>/Wasmfile:2:8: invalid value for `tags` in [image]: invalid type: string \"latest\", \
         expected a sequence",
        Some((2, 8)),
        None,
    );
    check(
        "[image]\ntags = [\"a\", 3]\n",
        "<root>/Wasmfile:2:14: invalid value for `tags` in [image]: invalid type: integer `3`, \
         expected a string",
        Some((2, 14)),
        None,
    );
    check(
        "[build]\nenv = { A = 1 }\n",
        "<root>/Wasmfile:2:13: invalid value for `A` in [build.env]: invalid type: integer `1`, \
         expected a string",
        Some((2, 13)),
        None,
    );
    check(
        "image = 3\n",
        "<root>/Wasmfile:1:9: invalid value for `image` in the Wasmfile: invalid type: integer `3`, \
         expected the [image] table",
        Some((1, 9)),
        None,
    );
    check(
        "[image]\nname = 1979-05-27\n",
        "<root>/Wasmfile:2:8: invalid value for `name` in [image]: invalid type: datetime, \
         expected a string",
        Some((2, 8)),
        None,
    );
    check(
        "[args]\nVERSION = 1\n",
        "<root>/Wasmfile:2:11: invalid value for `VERSION` in [args]: invalid type: integer `1`, \
         expected a string",
        Some((2, 11)),
        None,
    );
}

#[test]
fn invalid_enum_value_suggests_the_closest() {
    check(
        "[optimize]\nlevel = \"o2\"\n",
        "<root>/Wasmfile:2:9: invalid value for `level` in [optimize]: unknown variant `o2`, \
         expected one of `none`, `O1`, `O2`, `O3`, `O4`, `Os`, `Oz`",
        Some((2, 9)),
        Some("did you mean `O2`?"),
    );
    check(
        "[build]\ntoolchain = \"rust\"\n",
        "<root>/Wasmfile:2:13: invalid value for `toolchain` in [build]: unknown variant `rust`, \
         expected one of `cargo`, `clang`, `go`, `tinygo`, `prebuilt`",
        Some((2, 13)),
        None,
    );
    check(
        "[optimize]\non-failure = \"warning\"\n",
        "<root>/Wasmfile:2:14: invalid value for `on-failure` in [optimize]: unknown variant \
         `warning`, expected `error` or `warn`",
        Some((2, 14)),
        Some("did you mean `warn`?"),
    );
    check(
        "[optimize]\nstrip = true\n",
        "<root>/Wasmfile:2:9: invalid value for `strip` in [optimize]: invalid type, expected a string",
        Some((2, 9)),
        None,
    );
}

#[test]
fn enum_values_are_not_interpolated() {
    check(
        "[image]\nformat = \"${F}\"\n[args]\nF = \"image\"\n",
        "<root>/Wasmfile:2:10: invalid value for `format` in [image]: unknown variant `${F}`, \
         expected `image` or `artifact`",
        Some((2, 10)),
        None,
    );
}

#[test]
fn missing_required_key() {
    check(
        "[[copy]]\nfrom = \"Cargo.toml\"\n",
        "<root>/Wasmfile:1:1: missing key `to` in [[copy]]",
        Some((1, 1)),
        None,
    );
}

const CONTEXT_HINT: &str =
    "the context must be the Wasmfile's folder or a folder inside it; move the Wasmfile up instead";
const ESCAPE_HINT: &str = "paths are relative to the build context and must stay inside it, \
     so that a build only reads what the context holds";

#[test]
fn context_escaping_via_dot_dot() {
    let project = cargo_project();
    let parent = project.root().parent().expect("temp dir has a parent");
    let error = project.error("[build]\ncontext = \"sub/../..\"\n");
    assert_eq!(
        report(&project, &error),
        (
            format!(
                "<root>/Wasmfile:2:11: `context` in [build] = \"sub/../..\" resolves to {}, \
                 outside the Wasmfile's folder <root>",
                parent.display()
            ),
            Some((2, 11)),
            Some(CONTEXT_HINT.to_owned())
        )
    );
    assert!(matches!(
        error,
        SpecError::EscapesContext {
            via_symlink: false,
            ..
        }
    ));
}

#[test]
fn absolute_context_outside_the_folder_escapes() {
    let project = cargo_project();
    let error = project.error("[build]\ncontext = \"/\"\n");
    assert_eq!(
        project.show(&error),
        "<root>/Wasmfile:2:11: `context` in [build] = \"/\" resolves to /, outside the Wasmfile's \
         folder <root>"
    );
}

#[test]
fn copy_from_escaping_via_dot_dot() {
    let project = cargo_project();
    project
        .file("app/Cargo.toml", "")
        .file("app/static/index.html", "")
        .file("secret.txt", "");
    let error = project.error(
        "[build]\ncontext = \"app\"\n\n[[copy]]\nfrom = \"static/\"\nto = \"/s/\"\n\n[[copy]]\n\
         from = \"../secret.txt\"\nto = \"/secret.txt\"\n",
    );
    assert_eq!(
        report(&project, &error),
        (
            "<root>/Wasmfile:9:8: `from` in [[copy]] = \"../secret.txt\" resolves to \
             <root>/secret.txt, outside the build context <root>/app"
                .to_owned(),
            Some((9, 8)),
            Some(ESCAPE_HINT.to_owned())
        )
    );
}

#[test]
fn module_output_and_include_cannot_escape() {
    let project = cargo_project();
    let parent = project
        .root()
        .parent()
        .expect("temp dir has a parent")
        .display()
        .to_string();
    let cases = [
        (
            "[build]\nmodule = \"../app.wasm\"\n",
            format!(
                "<root>/Wasmfile:2:10: `module` in [build] = \"../app.wasm\" resolves to \
                 {parent}/app.wasm, outside the build context <root>"
            ),
        ),
        (
            "[build]\ncommand = [\"make\"]\noutput = \"out/../../app.wasm\"\n",
            format!(
                "<root>/Wasmfile:3:10: `output` in [build] = \"out/../../app.wasm\" resolves to \
                 {parent}/app.wasm, outside the build context <root>"
            ),
        ),
        (
            "[build]\ntoolchain = \"clang\"\ninclude = [\"include\", \"../include\"]\n",
            format!(
                "<root>/Wasmfile:3:23: `include` in [build] = \"../include\" resolves to \
                 {parent}/include, outside the build context <root>"
            ),
        ),
    ];
    for (wasmfile, message) in cases {
        let error = project.error(wasmfile);
        assert_eq!(project.show(&error), message);
        assert_eq!(error.hint().as_deref(), Some(ESCAPE_HINT));
    }
}

#[cfg(unix)]
#[test]
fn escaping_via_a_symlink() {
    let outside = Project::new();
    outside.file("secret/key.pem", "");
    let project = cargo_project();
    project.symlink(&outside.path("secret"), "certs");

    let error = project.error("[[copy]]\nfrom = \"certs/key.pem\"\nto = \"/key.pem\"\n");
    assert_eq!(
        report(&project, &error),
        (
            format!(
                "<root>/Wasmfile:2:8: `from` in [[copy]] = \"certs/key.pem\" resolves through a \
                 symlink to {}, outside the build context <root>",
                outside.path("secret/key.pem").display()
            ),
            Some((2, 8)),
            Some(ESCAPE_HINT.to_owned())
        )
    );
    assert!(matches!(
        error,
        SpecError::EscapesContext {
            via_symlink: true,
            ..
        }
    ));

    // A path that does not exist yet is checked through the folders that do.
    let error = project.error("[build]\ncommand = [\"make\"]\noutput = \"certs/out/app.wasm\"\n");
    assert_eq!(
        project.show(&error),
        format!(
            "<root>/Wasmfile:3:10: `output` in [build] = \"certs/out/app.wasm\" resolves through a \
             symlink to {}, outside the build context <root>",
            outside.path("secret/out/app.wasm").display()
        )
    );

    // The context itself, too.
    let error = project.error("[build]\ncontext = \"certs\"\n");
    assert!(
        matches!(
            error,
            SpecError::EscapesContext {
                via_symlink: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.hint().as_deref(), Some(CONTEXT_HINT));
}

#[test]
fn missing_paths() {
    check(
        "[build]\ncontext = \"app\"\n",
        "<root>/Wasmfile:2:11: `context` in [build] = \"app\" does not exist (looked for <root>/app)",
        Some((2, 11)),
        None,
    );
    check(
        "[[copy]]\nfrom = \"static/\"\nto = \"/static/\"\n",
        "<root>/Wasmfile:2:8: `from` in [[copy]] = \"static/\" does not exist (looked for \
         <root>/static)",
        Some((2, 8)),
        None,
    );
    check(
        "[build]\ntoolchain = \"prebuilt\"\nmodule = \"dist/app.wasm\"\n",
        "<root>/Wasmfile:3:10: `module` in [build] = \"dist/app.wasm\" does not exist (looked for \
         <root>/dist/app.wasm)",
        Some((3, 10)),
        Some("build the module first, or set `[build] toolchain` to the toolchain that builds it"),
    );
}

#[test]
fn undefined_arg_points_at_its_first_use() {
    check(
        "[image]\ntags = [\"latest\", \"v${VERSION}\"]\nname = \"x/${REPO}\"\n",
        "<root>/Wasmfile:2:21: `${VERSION}` is used but [args] does not declare `VERSION`",
        Some((2, 21)),
        Some("declare it with a default under [args]: VERSION = \"\""),
    );
    // First in the text, not first in the order keys are resolved.
    check(
        "[[copy]]\nfrom = \"${A}\"\nto = \"/\"\n[build]\ncontext = \"${B}\"\n",
        "<root>/Wasmfile:2:9: `${A}` is used but [args] does not declare `A`",
        Some((2, 9)),
        Some("declare it with a default under [args]: A = \"\""),
    );
    // An escaped `$${X}` before it is not a use.
    check(
        "[image]\ncmd = [\"$${X} ${X}\"]\n",
        "<root>/Wasmfile:2:15: `${X}` is used but [args] does not declare `X`",
        Some((2, 15)),
        Some("declare it with a default under [args]: X = \"\""),
    );
}

#[test]
fn undefined_arg_given_only_on_the_command_line() {
    let project = cargo_project();
    let error = project.error_with("[image]\nname = \"${REPO}\"\n", &[("REPO", "x")]);
    assert_eq!(
        report(&project, &error),
        (
            "<root>/Wasmfile:2:9: `${REPO}` is used but [args] does not declare `REPO`".to_owned(),
            Some((2, 9)),
            Some(
                "declare it with a default under [args]: REPO = \"\"; --build-arg REPO=... only \
                 overrides args the Wasmfile declares"
                    .to_owned()
            )
        )
    );
}

#[test]
fn malformed_interpolation() {
    check(
        "[image]\nname = \"x/${REPO\"\n",
        "<root>/Wasmfile:2:11: unclosed `${` in `name` in [image]: expected `${NAME}`",
        Some((2, 11)),
        Some("write `$${` for a literal `${`"),
    );
    check(
        "[image]\nname = \"${my-repo}\"\n",
        "<root>/Wasmfile:2:9: `${my-repo}` in `name` in [image] is not a build arg: expected \
         `${NAME}` with a name of letters, digits and `_`",
        Some((2, 9)),
        Some("write `$${` for a literal `${`"),
    );
}

#[test]
fn wrong_toolchain_key() {
    check(
        "[build]\ntoolchain = \"cargo\"\nsources = [\"src/*.c\"]\n",
        "<root>/Wasmfile:3:1: `sources` applies to toolchain clang, but this Wasmfile builds with cargo",
        Some((3, 1)),
        Some("remove `sources`, or set `[build] toolchain` to the toolchain it belongs to"),
    );
    // Detected toolchains say so; the first wrong key in the file is reported.
    check(
        "[build]\nmain = \"./cmd\"\nflags = [\"-x\"]\n",
        "<root>/Wasmfile:2:1: `main` applies to toolchains go and tinygo, but this Wasmfile builds \
         with cargo (detected from Cargo.toml)",
        Some((2, 1)),
        Some("remove `main`, or set `[build] toolchain` to the toolchain it belongs to"),
    );
    check(
        "[build]\ntoolchain = \"cargo\"\nflags = [\"-x\"]\n",
        "<root>/Wasmfile:3:1: `flags` applies to toolchains clang, go and tinygo, but this \
         Wasmfile builds with cargo",
        Some((3, 1)),
        Some("remove `flags`, or set `[build] toolchain` to the toolchain it belongs to"),
    );
    check(
        "[build]\noutput = \"app.wasm\"\n",
        "<root>/Wasmfile:2:1: `output` applies to a `command` build, but this Wasmfile builds with \
         cargo (detected from Cargo.toml)",
        Some((2, 1)),
        Some("remove `output`, or set `[build] toolchain` to the toolchain it belongs to"),
    );
    check(
        "[build]\ncommand = [\"make\"]\noutput = \"app.wasm\"\nfeatures = [\"x\"]\n",
        "<root>/Wasmfile:4:1: `features` applies to toolchain cargo, but this Wasmfile builds with \
         its `command`",
        Some((4, 1)),
        Some("remove `features`, or set `[build] toolchain` to the toolchain it belongs to"),
    );
}

#[test]
fn wrong_toolchain_key_with_a_detected_c_project() {
    let project = Project::new();
    project.file("b.c", "").file("a.c", "");
    let error = project.error("[build]\nprofile = \"dev\"\n");
    assert_eq!(
        project.show(&error),
        "<root>/Wasmfile:2:1: `profile` applies to toolchain cargo, but this Wasmfile builds with \
         clang (detected from a.c)"
    );
}

#[test]
fn detect_says_what_it_looked_for() {
    let project = Project::new();
    project.file("README.md", "").file("src/main.c", "");
    let error = project.error("[image]\nname = \"app\"\n");
    assert_eq!(
        report(&project, &error),
        (
            "<root>/Wasmfile: cannot tell which toolchain builds this project: <root> has no \
             Cargo.toml, go.mod or *.c file"
                .to_owned(),
            None,
            Some(
                "set `[build] toolchain` to cargo, clang, go, tinygo or prebuilt (or give \
                 `command` and `output`)"
                    .to_owned()
            )
        )
    );
    assert!(matches!(error, SpecError::Detect { .. }));
}

#[test]
fn invalid_values() {
    /// (Wasmfile, message, line and column, hint)
    type Case<'a> = (&'a str, &'a str, (usize, usize), Option<&'a str>);
    let cases: &[Case<'_>] = &[
        (
            "[build]\ncommand = []\noutput = \"a.wasm\"\n",
            "<root>/Wasmfile:2:11: `command` in [build] is empty: expected the program and its \
             arguments, such as [\"make\", \"wasm\"]",
            (2, 11),
            None,
        ),
        (
            "[build]\ncommand = [\"\"]\noutput = \"a.wasm\"\n",
            "<root>/Wasmfile:2:11: `command` in [build] is empty: expected the program and its \
             arguments, such as [\"make\", \"wasm\"]",
            (2, 11),
            None,
        ),
        (
            "[build]\ncommand = [\"make\"]\n",
            "<root>/Wasmfile:2:1: `command` in [build] needs `output`: where the command leaves \
             the module, relative to the context",
            (2, 1),
            Some("add output = \"path/to/app.wasm\" under [build]"),
        ),
        (
            "[build]\ntoolchain = \"prebuilt\"\n",
            "<root>/Wasmfile:2:13: toolchain prebuilt needs `module` in [build]: the .wasm file \
             to pack, relative to the context",
            (2, 13),
            Some("add module = \"path/to/app.wasm\" under [build]"),
        ),
        (
            "[build]\nmodule = \"src\"\n",
            "<root>/Wasmfile:2:10: `module` in [build] = \"src\" is not a file: expected a .wasm \
             module",
            (2, 10),
            None,
        ),
        (
            "[build]\ncontext = \"Cargo.toml\"\n",
            "<root>/Wasmfile:2:11: `context` in [build] = \"Cargo.toml\" is not a folder",
            (2, 11),
            None,
        ),
        (
            "[build]\ntoolchain = \"clang\"\nsources = []\n",
            "<root>/Wasmfile:3:11: `sources` in [build] is empty: expected glob patterns such as \
             \"src/*.c\"",
            (3, 11),
            None,
        ),
        (
            "[build]\nprofile = \"\"\n",
            "<root>/Wasmfile:2:11: `profile` in [build] is empty: expected a name",
            (2, 11),
            None,
        ),
        (
            "[[copy]]\nfrom = \"Cargo.toml\"\nto = \"app/Cargo.toml\"\n",
            "<root>/Wasmfile:3:6: `to` in [[copy]] = \"app/Cargo.toml\" is not absolute: expected \
             a path in the image that starts with `/`",
            (3, 6),
            Some("end it with `/` to copy into a folder, such as \"/static/\""),
        ),
        (
            "[[copy]]\nfrom = \"Cargo.toml\"\nto = \"/app/../../x\"\n",
            "<root>/Wasmfile:3:6: `to` in [[copy]] = \"/app/../../x\" contains `..`: expected a \
             plain absolute path",
            (3, 6),
            None,
        ),
        (
            "[image]\nentrypoint = []\n",
            "<root>/Wasmfile:2:14: `entrypoint` in [image] is empty: expected the program and its \
             arguments, such as [\"/app.wasm\"]",
            (2, 14),
            Some("omit `entrypoint` to run the module itself"),
        ),
        (
            "[image]\nenv = { \"A=B\" = \"c\" }\n",
            "<root>/Wasmfile:2:9: invalid environment variable name `A=B` in [image.env]: expected \
             a non-empty name without `=`",
            (2, 9),
            None,
        ),
        (
            "[build.env]\n\"\" = \"c\"\n",
            "<root>/Wasmfile:2:1: invalid environment variable name `` in [build.env]: expected a \
             non-empty name without `=`",
            (2, 1),
            None,
        ),
        (
            "[image]\nworkdir = \"srv\"\n",
            "<root>/Wasmfile:2:11: `workdir` in [image] = \"srv\" is not absolute: expected a path \
             that starts with `/`",
            (2, 11),
            None,
        ),
        (
            "[image]\nname = \"\"\n",
            "<root>/Wasmfile:2:8: `name` in [image] is empty: expected a repository such as \
             \"ghcr.io/me/app\"",
            (2, 8),
            None,
        ),
        (
            "[image]\ntags = [\"ok\", \"${V}\"]\n[args]\nV = \"\"\n",
            "<root>/Wasmfile:2:15: invalid tag \"\" in `tags` in [image]: expected up to 128 \
             letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
            (2, 15),
            None,
        ),
        (
            "[image.labels]\n\"\" = \"x\"\n",
            "<root>/Wasmfile:2:1: empty key in [image.labels]: expected a name such as \
             \"org.example.team\"",
            (2, 1),
            None,
        ),
        (
            "[precompile]\ntargets = [\"\"]\n",
            "<root>/Wasmfile:2:12: `targets` in [precompile] is empty: expected a target triple \
             such as \"x86_64-unknown-linux-gnu\"",
            (2, 12),
            None,
        ),
        (
            "[args]\nmy-arg = \"x\"\n",
            "<root>/Wasmfile:2:1: invalid build arg name `my-arg` in [args]: expected letters, \
             digits and `_`, not starting with a digit",
            (2, 1),
            None,
        ),
    ];
    for (wasmfile, message, at, hint) in cases {
        let project = cargo_project();
        project.dir("src");
        let error = project.error(wasmfile);
        assert!(matches!(error, SpecError::Invalid { .. }), "{error:?}");
        assert_eq!(
            report(&project, &error),
            ((*message).to_owned(), Some(*at), hint.map(str::to_owned)),
            "for {wasmfile:?}"
        );
    }
}

#[test]
fn build_args_must_be_name_equals_value() {
    assert_eq!(
        parse_build_arg("VERSION=1.0=beta").expect("valid"),
        ("VERSION".to_owned(), "1.0=beta".to_owned())
    );
    assert_eq!(
        parse_build_arg("EMPTY=").expect("valid"),
        ("EMPTY".to_owned(), String::new())
    );

    let error = parse_build_arg("VERSION").expect_err("no =");
    assert_eq!(
        error.to_string(),
        "--build-arg \"VERSION\": expected NAME=VALUE"
    );
    assert_eq!(
        error.hint().as_deref(),
        Some("write --build-arg NAME=VALUE, e.g. --build-arg VERSION=1.0")
    );
    assert_eq!(error.path(), None);

    let error = parse_build_arg("=1").expect_err("no name");
    assert_eq!(
        error.to_string(),
        "--build-arg \"=1\": expected NAME=VALUE with a name of letters, digits and `_`, not \
         starting with a digit"
    );

    let options = Options {
        build_args: vec![("a b".to_owned(), "1".to_owned())],
    };
    let error = parse("", Path::new("Wasmfile"), &options).expect_err("bad name");
    assert_eq!(
        error.to_string(),
        "--build-arg \"a b=1\": expected NAME=VALUE with a name of letters, digits and `_`, not \
         starting with a digit"
    );
}
