//! Generated Wasmfiles: a plan's worth of values, written out as TOML (quoting, escapes,
//! `${ARG}`s and `$${` included), resolve to exactly the plan they were written from.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::option::of as opt;
use proptest::prelude::*;
use wasmbuild_spec::{
    BuildPlan, CargoSettings, ClangSettings, CopyRule, ExecModel, GoSettings, ImageConfig,
    ImageFormat, OnFailure, OptLevel, Optimize, Os, Policy, Precompile, Strip, Toolchain,
};

use crate::Project;

// --- string values ------------------------------------------------------------------------

/// Characters of generated text: quotes, backslashes, braces, control characters and
/// non-ASCII, which the TOML must escape or carry; never `$`, which only [`Piece`]s write.
const TEXT: &[char] = &[
    'a', 'b', 'z', 'A', 'Q', '0', '7', ' ', '"', '\'', '\\', '{', '}', '#', '=', '.', '/', '-',
    '_', ',', '[', ']', '\n', '\t', '\r', '\u{1}', '\u{7f}', 'é', '日', '😀',
];

fn text(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TEXT), len)
        .prop_map(|chars| chars.into_iter().collect())
}

/// One part of a string value as written.
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    /// `${NAME}` of the declared arg with this index (modulo their count; nothing when
    /// none is declared).
    Arg(usize),
    /// `$${`: a literal `${`.
    Escaped,
}

/// A string value: pieces, of which the first is text.
#[derive(Debug, Clone)]
struct Value(Vec<Piece>);

fn pieces(first: impl Strategy<Value = String>) -> impl Strategy<Value = Value> {
    let piece = prop_oneof![
        4 => text(0..8).prop_map(Piece::Text),
        2 => any::<usize>().prop_map(Piece::Arg),
        1 => Just(Piece::Escaped),
    ];
    (first, prop::collection::vec(piece, 0..4)).prop_map(|(first, rest)| {
        let mut pieces = vec![Piece::Text(first)];
        pieces.extend(rest);
        Value(pieces)
    })
}

/// Any string value, possibly empty.
fn value() -> impl Strategy<Value = Value> {
    pieces(text(0..8))
}

/// A string value that is never empty, for keys that need a name.
fn named() -> impl Strategy<Value = Value> {
    pieces(text(1..8))
}

/// The declared args, by name.
type Args = BTreeMap<String, String>;

impl Value {
    fn arg<'a>(&self, index: usize, args: &'a Args) -> Option<(&'a String, &'a String)> {
        let count = args.len();
        (count > 0)
            .then(|| args.iter().nth(index % count))
            .flatten()
    }

    /// As the Wasmfile writes it (before TOML quoting).
    fn written(&self, args: &Args) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Arg(index) => {
                    if let Some((name, _)) = self.arg(*index, args) {
                        out.push_str(&format!("${{{name}}}"));
                    }
                }
                Piece::Escaped => out.push_str("$${"),
            }
        }
        out
    }

    /// What the plan holds: args replaced by their values (`given` ones win).
    fn resolved(&self, args: &Args) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Arg(index) => {
                    if let Some((_, value)) = self.arg(*index, args) {
                        out.push_str(value);
                    }
                }
                Piece::Escaped => out.push_str("${"),
            }
        }
        out
    }
}

/// A TOML basic string: `"`, `\` and control characters escaped.
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' || c == '\u{7f}' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// --- the generated Wasmfile -----------------------------------------------------------------

#[derive(Debug, Clone)]
enum Tool {
    Cargo {
        package: Option<Value>,
        bin: Option<Value>,
        profile: Option<Value>,
        features: Option<Vec<Value>>,
        no_default_features: Option<bool>,
    },
    Clang {
        sources: Option<Vec<Value>>,
        include: Option<Vec<String>>,
        defines: Option<Vec<Value>>,
        flags: Option<Vec<Value>>,
        libs: Option<Vec<Value>>,
    },
    Go {
        tiny: bool,
        main: Option<Value>,
        flags: Option<Vec<Value>>,
    },
    /// The module's file name, created in the context.
    Prebuilt {
        module: String,
    },
    Command {
        command: Vec<Value>,
        output: String,
    },
}

#[derive(Debug, Clone)]
struct Image {
    name: Option<Value>,
    tags: Option<Vec<String>>,
    format: Option<ImageFormat>,
    os: Option<Os>,
    entrypoint: Option<Vec<Value>>,
    cmd: Option<Vec<Value>>,
    env: BTreeMap<String, Value>,
    workdir: Option<Value>,
    labels: BTreeMap<String, Value>,
    annotations: BTreeMap<String, Value>,
}

#[derive(Debug, Clone)]
struct Draft {
    /// Declared args and their defaults (written literally).
    args: Args,
    /// `--build-arg`s for some of them: (index, value).
    given: Vec<(usize, String)>,
    /// `None`: the Wasmfile's folder; else this subfolder.
    context: Option<String>,
    tool: Tool,
    env: BTreeMap<String, Value>,
    allow_imports: Vec<String>,
    exec_model: Option<ExecModel>,
    level: Option<OptLevel>,
    strip: Option<Strip>,
    on_failure: Option<OnFailure>,
    targets: Option<Vec<Value>>,
    image: Image,
    /// (file name in the context, path in the image).
    copies: Vec<(String, String)>,
}

fn list(item: impl Strategy<Value = Value>) -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(item, 0..3)
}

/// A list whose first item is never empty (a program, a target).
fn nonempty_list() -> impl Strategy<Value = Vec<Value>> {
    (named(), list(value())).prop_map(|(first, rest)| [vec![first], rest].concat())
}

/// A relative path inside the context.
fn relative() -> impl Strategy<Value = String> {
    "[a-z]{1,6}(/[a-z]{1,6}){0,2}"
}

/// A name for an environment variable, label or annotation: not empty, no `=` or NUL.
fn key() -> impl Strategy<Value = String> {
    text(1..8).prop_filter("`=`", |key| !key.contains('='))
}

fn tool() -> impl Strategy<Value = Tool> {
    prop_oneof![
        (
            opt(named()),
            opt(named()),
            opt(named()),
            opt(list(value())),
            opt(any::<bool>())
        )
            .prop_map(|(package, bin, profile, features, no_default_features)| {
                Tool::Cargo {
                    package,
                    bin,
                    profile,
                    features,
                    no_default_features,
                }
            }),
        (
            opt(nonempty_list()),
            opt(prop::collection::vec(relative(), 0..3)),
            opt(list(value())),
            opt(list(value())),
            opt(list(value())),
        )
            .prop_map(|(sources, include, defines, flags, libs)| Tool::Clang {
                sources,
                include,
                defines,
                flags,
                libs,
            }),
        (any::<bool>(), opt(named()), opt(list(value())))
            .prop_map(|(tiny, main, flags)| Tool::Go { tiny, main, flags }),
        "[a-z]{1,8}\\.wasm".prop_map(|module| Tool::Prebuilt { module }),
        (nonempty_list(), relative())
            .prop_map(|(command, output)| Tool::Command { command, output }),
    ]
}

fn image() -> impl Strategy<Value = Image> {
    let map = |value| prop::collection::btree_map(key(), value, 0..3);
    (
        (
            opt(named()),
            opt(prop::collection::vec(
                "[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,20}",
                0..3,
            )),
            opt(prop_oneof![
                Just(ImageFormat::Image),
                Just(ImageFormat::Artifact)
            ]),
            opt(prop_oneof![Just(Os::Wasi), Just(Os::Wasip1)]),
            opt(nonempty_list()),
            opt(list(value())),
        ),
        (
            map(value()),
            opt(pieces(text(0..8).prop_map(|rest| format!("/{rest}")))),
            map(value()),
            map(value()),
        ),
    )
        .prop_map(
            |((name, tags, format, os, entrypoint, cmd), (env, workdir, labels, annotations))| {
                Image {
                    name,
                    tags,
                    format,
                    os,
                    entrypoint,
                    cmd,
                    env,
                    workdir,
                    labels,
                    annotations,
                }
            },
        )
}

fn draft() -> impl Strategy<Value = Draft> {
    let levels = prop_oneof![
        Just(OptLevel::None),
        Just(OptLevel::O1),
        Just(OptLevel::O2),
        Just(OptLevel::O3),
        Just(OptLevel::O4),
        Just(OptLevel::Os),
        Just(OptLevel::Oz),
    ];
    // Arg defaults are literal, `$` and `${` included.
    let arg_value = prop::collection::vec(
        prop_oneof![4 => prop::sample::select(TEXT), 1 => Just('$')],
        0..8,
    )
    .prop_map(|chars| chars.into_iter().collect::<String>());
    (
        (
            prop::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,6}", arg_value, 0..4),
            prop::collection::vec((any::<usize>(), text(0..6)), 0..2),
            opt(Just("src".to_owned())),
            tool(),
            prop::collection::btree_map(key(), value(), 0..3),
            prop::collection::vec("[a-z_]{1,6}\\.([a-z_]{1,6}|\\*)", 0..3),
        ),
        (
            opt(prop_oneof![
                Just(ExecModel::Command),
                Just(ExecModel::Reactor)
            ]),
            opt(levels),
            opt(prop_oneof![
                Just(Strip::None),
                Just(Strip::Debug),
                Just(Strip::All)
            ]),
            opt(prop_oneof![Just(OnFailure::Error), Just(OnFailure::Warn)]),
            opt(prop::collection::vec(named(), 0..3)),
            image(),
            prop::collection::vec(("[a-z]{1,8}", "/[a-z]{1,6}(/[a-z]{1,6})?/?"), 0..3),
        ),
    )
        .prop_map(
            |(
                (args, given, context, tool, env, allow_imports),
                (exec_model, level, strip, on_failure, targets, image, copies),
            )| Draft {
                args,
                given,
                context,
                tool,
                env,
                allow_imports,
                exec_model,
                level,
                strip,
                on_failure,
                targets,
                image,
                copies,
            },
        )
}

impl Draft {
    /// The `--build-arg`s, by name.
    fn given(&self) -> Vec<(String, String)> {
        let names: Vec<&String> = self.args.keys().collect();
        if names.is_empty() {
            return Vec::new();
        }
        self.given
            .iter()
            .map(|(index, value)| (names[index % names.len()].clone(), value.clone()))
            .collect()
    }

    /// The args interpolation sees: defaults, then the `--build-arg`s (a later one wins).
    fn effective_args(&self) -> Args {
        let mut args = self.args.clone();
        args.extend(self.given());
        args
    }

    /// The Wasmfile's text.
    fn toml(&self) -> String {
        let args = &self.args;
        let string = |value: &Value| quoted(&value.written(args));
        let strings = |values: &[Value]| {
            let items: Vec<String> = values.iter().map(string).collect();
            format!("[{}]", items.join(", "))
        };
        let mut out = String::new();
        let push = |out: &mut String, key: &str, value: String| {
            out.push_str(&format!("{key} = {value}\n"));
        };
        let table = |out: &mut String, name: &str, entries: &BTreeMap<String, Value>| {
            out.push_str(&format!("\n[{name}]\n"));
            for (key, value) in entries {
                out.push_str(&format!("{} = {}\n", quoted(key), string(value)));
            }
        };

        out.push_str("[build]\n");
        if let Some(context) = &self.context {
            push(&mut out, "context", quoted(context));
        }
        match &self.tool {
            Tool::Cargo {
                package,
                bin,
                profile,
                features,
                no_default_features,
            } => {
                push(&mut out, "toolchain", quoted("cargo"));
                for (key, value) in [("package", package), ("bin", bin), ("profile", profile)] {
                    if let Some(value) = value {
                        push(&mut out, key, string(value));
                    }
                }
                if let Some(features) = features {
                    push(&mut out, "features", strings(features));
                }
                if let Some(flag) = no_default_features {
                    push(&mut out, "no-default-features", flag.to_string());
                }
            }
            Tool::Clang {
                sources,
                include,
                defines,
                flags,
                libs,
            } => {
                push(&mut out, "toolchain", quoted("clang"));
                for (key, values) in [("sources", sources), ("defines", defines)] {
                    if let Some(values) = values {
                        push(&mut out, key, strings(values));
                    }
                }
                if let Some(include) = include {
                    let items: Vec<String> = include.iter().map(|path| quoted(path)).collect();
                    push(&mut out, "include", format!("[{}]", items.join(", ")));
                }
                for (key, values) in [("flags", flags), ("libs", libs)] {
                    if let Some(values) = values {
                        push(&mut out, key, strings(values));
                    }
                }
            }
            Tool::Go { tiny, main, flags } => {
                push(
                    &mut out,
                    "toolchain",
                    quoted(if *tiny { "tinygo" } else { "go" }),
                );
                if let Some(main) = main {
                    push(&mut out, "main", string(main));
                }
                if let Some(flags) = flags {
                    push(&mut out, "flags", strings(flags));
                }
            }
            Tool::Prebuilt { module } => {
                push(&mut out, "toolchain", quoted("prebuilt"));
                push(&mut out, "module", quoted(module));
            }
            Tool::Command { command, output } => {
                push(&mut out, "command", strings(command));
                push(&mut out, "output", quoted(output));
            }
        }
        if !self.allow_imports.is_empty() {
            let items: Vec<String> = self.allow_imports.iter().map(|p| quoted(p)).collect();
            push(&mut out, "allow-imports", format!("[{}]", items.join(", ")));
        }
        if let Some(model) = self.exec_model {
            let model = match model {
                ExecModel::Command => "command",
                ExecModel::Reactor => "reactor",
            };
            push(&mut out, "exec-model", quoted(model));
        }
        table(&mut out, "build.env", &self.env);

        out.push_str("\n[optimize]\n");
        if let Some(level) = self.level {
            push(&mut out, "level", quoted(level.as_str()));
        }
        if let Some(strip) = self.strip {
            push(&mut out, "strip", quoted(strip.as_str()));
        }
        if let Some(on_failure) = self.on_failure {
            push(&mut out, "on-failure", quoted(on_failure.as_str()));
        }

        if let Some(targets) = &self.targets {
            out.push_str("\n[precompile]\n");
            push(&mut out, "targets", strings(targets));
        }

        let image = &self.image;
        out.push_str("\n[image]\n");
        if let Some(name) = &image.name {
            push(&mut out, "name", string(name));
        }
        if let Some(tags) = &image.tags {
            let items: Vec<String> = tags.iter().map(|tag| quoted(tag)).collect();
            push(&mut out, "tags", format!("[{}]", items.join(", ")));
        }
        if let Some(format) = image.format {
            let format = match format {
                ImageFormat::Image => "image",
                ImageFormat::Artifact => "artifact",
            };
            push(&mut out, "format", quoted(format));
        }
        if let Some(os) = image.os {
            push(&mut out, "os", quoted(os.as_str()));
        }
        if let Some(entrypoint) = &image.entrypoint {
            push(&mut out, "entrypoint", strings(entrypoint));
        }
        if let Some(cmd) = &image.cmd {
            push(&mut out, "cmd", strings(cmd));
        }
        if let Some(workdir) = &image.workdir {
            push(&mut out, "workdir", string(workdir));
        }
        table(&mut out, "image.env", &image.env);
        table(&mut out, "image.labels", &image.labels);
        table(&mut out, "image.annotations", &image.annotations);

        for (from, to) in &self.copies {
            out.push_str("\n[[copy]]\n");
            push(&mut out, "from", quoted(from));
            push(&mut out, "to", quoted(to));
        }

        out.push_str("\n[args]\n");
        for (name, value) in args {
            push(&mut out, &quoted(name), quoted(value));
        }
        out
    }

    /// The plan the Wasmfile must resolve to, in a project at `root`.
    fn plan(&self, root: &Path) -> BuildPlan {
        let args = self.effective_args();
        let one = |value: &Value| value.resolved(&args);
        let all = |values: &[Value]| values.iter().map(one).collect::<Vec<String>>();
        let some = |values: &Option<Vec<Value>>| values.as_deref().map(all).unwrap_or_default();
        let map = |entries: &BTreeMap<String, Value>| {
            entries
                .iter()
                .map(|(key, value)| (key.clone(), one(value)))
                .collect::<BTreeMap<String, String>>()
        };
        let context = match &self.context {
            Some(folder) => root.join(folder),
            None => root.to_path_buf(),
        };
        let toolchain = match &self.tool {
            Tool::Cargo {
                package,
                bin,
                profile,
                features,
                no_default_features,
            } => Toolchain::Cargo(CargoSettings {
                package: package.as_ref().map(one),
                bin: bin.as_ref().map(one),
                profile: profile.as_ref().map_or("release".to_owned(), one),
                features: some(features),
                no_default_features: no_default_features.unwrap_or(false),
            }),
            Tool::Clang {
                sources,
                include,
                defines,
                flags,
                libs,
            } => Toolchain::Clang(ClangSettings {
                sources: sources
                    .as_deref()
                    .map_or_else(|| vec!["*.c".to_owned()], all),
                include: include
                    .iter()
                    .flatten()
                    .map(|path| context.join(path))
                    .collect(),
                defines: some(defines),
                flags: some(flags),
                libs: some(libs),
            }),
            Tool::Go { tiny, main, flags } => {
                let settings = GoSettings {
                    main: main.as_ref().map_or(".".to_owned(), one),
                    flags: some(flags),
                };
                if *tiny {
                    Toolchain::TinyGo(settings)
                } else {
                    Toolchain::Go(settings)
                }
            }
            Tool::Prebuilt { module } => Toolchain::Prebuilt {
                module: context.join(module),
            },
            Tool::Command { command, output } => Toolchain::Command {
                command: all(command),
                output: context.join(output),
            },
        };
        let image = &self.image;
        BuildPlan {
            wasmfile: root.join("Wasmfile"),
            context: context.clone(),
            toolchain,
            env: map(&self.env),
            optimize: Optimize {
                level: self.level.unwrap_or_default(),
                strip: self.strip.unwrap_or_default(),
                on_failure: self.on_failure.unwrap_or_default(),
            },
            precompile: Precompile {
                targets: match &self.targets {
                    Some(targets) => all(targets),
                    None => vec![
                        "x86_64-unknown-linux-gnu".to_owned(),
                        "aarch64-unknown-linux-gnu".to_owned(),
                    ],
                },
            },
            image: ImageConfig {
                name: image.name.as_ref().map(one),
                tags: image
                    .tags
                    .clone()
                    .unwrap_or_else(|| vec!["latest".to_owned()]),
                format: image.format.unwrap_or_default(),
                os: image.os.unwrap_or_default(),
                entrypoint: image.entrypoint.as_deref().map(all),
                cmd: some(&image.cmd),
                env: map(&image.env),
                workdir: image.workdir.as_ref().map_or("/".to_owned(), one),
                labels: map(&image.labels),
                annotations: map(&image.annotations),
            },
            copies: self
                .copies
                .iter()
                .map(|(from, to)| CopyRule {
                    from: context.join(from),
                    to: to.clone(),
                })
                .collect(),
            args,
            policy: Policy {
                allow_imports: self.allow_imports.clone(),
                exec_model: self.exec_model.unwrap_or_default(),
            },
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_written_plan_resolves_to_itself(draft in draft()) {
        let project = Project::new();
        let folder = draft.context.as_deref().unwrap_or(".");
        project.dir(folder);
        if let Tool::Prebuilt { module } = &draft.tool {
            project.file(&format!("{folder}/{module}"), "\0asm");
        }
        for (from, _) in &draft.copies {
            project.file(&format!("{folder}/{from}"), "copied");
        }
        let text = draft.toml();
        let given = draft.given();
        let given: Vec<(&str, &str)> = given
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let resolved = match project.load_with(&text, &given) {
            Ok(resolved) => resolved,
            Err(error) => return Err(TestCaseError::fail(format!("{error}\n{text}"))),
        };
        prop_assert_eq!(resolved.plan, draft.plan(project.root()), "{}", text);
        prop_assert!(resolved.warnings.is_empty(), "{:?}", resolved.warnings);
    }
}
