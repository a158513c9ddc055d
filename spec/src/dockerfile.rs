//! The Dockerfile subset Docker documents for Wasm images (`FROM scratch`, `COPY`,
//! `ENTRYPOINT`, `CMD`, `ENV`, `WORKDIR`, `LABEL`, `ARG`), resolved into the same
//! [`BuildPlan`](crate::BuildPlan) as a Wasmfile. Every other instruction is refused with the
//! reason a Wasm image cannot have it.
//!
//! Reading follows BuildKit's Dockerfile frontend, so a file means what it means to
//! `docker build`: parser directives, continuation lines, comments, case-insensitive
//! instructions, exec (JSON) forms, and `$NAME` / `${NAME}` (with `-`, `+`, `?` and their
//! `:` forms) in the instructions Docker substitutes in, with ENV winning over ARG.
//!
//! The module is the file that `ENTRYPOINT` runs: the `COPY` that puts it there becomes a
//! prebuilt toolchain, and every other `COPY` a [`CopyRule`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::iter::Peekable;
use std::path::{Path, PathBuf};
use std::str::CharIndices;

use crate::Resolved;
use crate::error::{BUILD_CONTEXT, Location, SpecError};
use crate::interpolate::is_arg_name;
use crate::locate::location;
use crate::plan::{BuildPlan, CopyRule, ImageConfig, Optimize, Policy, Precompile, Toolchain};
use crate::resolve::lexical_join;
use crate::wasmfile::{ImageSection, OptimizeSection, PrecompileSection};

/// What the automatic platform ARGs hold: BuildKit sets them from `--platform`, and what
/// wasmbuild builds is always `wasi/wasm`. As in Docker, a stage sees them once it declares
/// them (`ARG TARGETARCH`); `FROM` sees them without.
const PLATFORM_ARGS: [(&str, &str); 4] = [
    ("TARGETPLATFORM", "wasi/wasm"),
    ("TARGETOS", "wasi"),
    ("TARGETARCH", "wasm"),
    ("TARGETVARIANT", ""),
];

/// The platforms `FROM --platform=` may name.
const PLATFORMS: [&str; 2] = ["wasi/wasm", "wasip1/wasm"];

/// The advice for everything that would build the module inside the image.
const BUILD_FIRST: &str =
    "build the module first (cargo/clang/go via a Wasmfile, or your own tooling) and COPY it";

/// Every Dockerfile instruction, for suggestions.
const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Whether a file's name says it is a Dockerfile: `Dockerfile`, `*.Dockerfile`,
/// `Dockerfile.*`, or the same with Podman's `Containerfile`. Case is ignored.
pub fn is_dockerfile_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        return false;
    };
    let name = name.to_ascii_lowercase();
    ["dockerfile", "containerfile"].iter().any(|kind| {
        name == *kind
            || name.ends_with(&format!(".{kind}"))
            || name.starts_with(&format!("{kind}."))
    })
}

/// Whether a file's text reads as a Dockerfile rather than a Wasmfile: its first line that
/// is neither blank nor a comment is a `FROM`, or an `ARG` before it. (A TOML key named
/// `from` or `arg` is followed by `=`, never by a word.)
pub fn looks_like_dockerfile(source: &str) -> bool {
    let first = source
        .trim_start_matches('\u{feff}')
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'));
    let Some(first) = first else {
        return false;
    };
    let mut words = first.split_whitespace();
    let keyword = words.next().unwrap_or_default();
    (keyword.eq_ignore_ascii_case("FROM") || keyword.eq_ignore_ascii_case("ARG"))
        && words.next().is_some_and(|word| !word.starts_with('='))
}

/// Reads a Dockerfile's text into a plan; `given` holds the checked `--build-arg`s.
pub(crate) fn parse(
    source: &str,
    path: &Path,
    context: &Path,
    given: &BTreeMap<String, String>,
) -> Result<Resolved, SpecError> {
    let mut parser = Parser {
        source,
        path,
        escape: '\\',
        warnings: Vec::new(),
    };
    let lines = parser.lines()?;

    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| SpecError::Io { path, what, source }
    };
    let context = fs::canonicalize(context).map_err(io("the build context", context))?;
    if !context.is_dir() {
        return Err(SpecError::Invalid {
            path: path.to_path_buf(),
            location: None,
            message: format!("the build context {} is not a folder", context.display()),
            hint: None,
        });
    }
    let absolute = std::path::absolute(path).map_err(io("the Dockerfile", path))?;
    let dockerfile = match (absolute.parent(), absolute.file_name()) {
        (Some(folder), Some(name)) => fs::canonicalize(folder)
            .map(|folder| folder.join(name))
            .unwrap_or_else(|_| absolute.clone()),
        _ => absolute.clone(),
    };

    let mut build = Build {
        context: &context,
        given,
        globals: BTreeMap::new(),
        declared: BTreeSet::new(),
        stage: None,
    };
    for line in &lines {
        parser.instruction(line, &mut build)?;
    }
    let Some(stage) = build.stage.take() else {
        return Err(SpecError::Invalid {
            path: path.to_path_buf(),
            location: None,
            message: "the Dockerfile has no FROM line".to_owned(),
            hint: Some(
                "start it with FROM scratch, then COPY the module and name it in ENTRYPOINT"
                    .to_owned(),
            ),
        });
    };

    for name in given.keys() {
        if !build.declared.contains(name) {
            parser.warnings.push(format!(
                "build arg {name} was given but the Dockerfile declares no such ARG"
            ));
        }
    }
    if context.join(".dockerignore").exists() {
        parser.warnings.push(format!(
            "{} is not applied: wasmbuild copies exactly what each COPY names, folders whole",
            context.join(".dockerignore").display()
        ));
    }

    let mut args = BTreeMap::new();
    for (name, value) in build.globals.iter().chain(&stage.args) {
        if let Some(value) = value {
            args.insert(name.clone(), value.clone());
        }
    }
    let (module, image, copies) = parser.module(stage)?;
    Ok(Resolved {
        plan: BuildPlan {
            wasmfile: dockerfile,
            context,
            toolchain: Toolchain::Prebuilt { module },
            env: BTreeMap::new(),
            optimize: {
                let defaults = OptimizeSection::default();
                Optimize {
                    level: defaults.level,
                    strip: defaults.strip,
                    on_failure: defaults.on_failure,
                }
            },
            precompile: Precompile {
                targets: PrecompileSection::default().targets,
            },
            image,
            copies,
            args,
            policy: Policy::default(),
        },
        warnings: parser.warnings,
    })
}

/// One instruction with its continuation lines joined, as BuildKit joins them: the escape
/// character that ends a line and the line break are removed, comment and blank lines
/// inside are skipped.
#[derive(Debug, Default)]
struct Line {
    text: String,
    /// The offset in the file of each byte of `text`.
    offsets: Vec<usize>,
}

impl Line {
    fn push(&mut self, text: &str, offset: usize) {
        self.text.push_str(text);
        self.offsets.extend(offset..offset + text.len());
    }

    /// The offset in the file of byte `index` of `text` (just past the end for the end).
    fn offset(&self, index: usize) -> usize {
        match self.offsets.get(index) {
            Some(offset) => *offset,
            None => self.offsets.last().map_or(0, |last| last + 1),
        }
    }
}

/// A word of an instruction and where it starts in its [`Line`].
#[derive(Debug, Clone)]
struct Word {
    text: String,
    at: usize,
    /// Whether `text` is the line's text from `at` on, so that a problem inside the word
    /// can be located; false for the strings of a JSON array.
    exact: bool,
}

impl Word {
    fn new(text: &str, at: usize) -> Word {
        Word {
            text: text.to_owned(),
            at,
            exact: true,
        }
    }
}

/// A `--name[=value]` before an instruction's arguments.
#[derive(Debug)]
struct Flag {
    name: String,
    value: Option<String>,
    at: usize,
}

/// An instruction split into its parts.
struct Instruction<'l> {
    line: &'l Line,
    /// Upper case.
    name: String,
    flags: Vec<Flag>,
    /// Where the arguments (after the flags) start in the line.
    args_at: usize,
}

impl Instruction<'_> {
    fn args(&self) -> &str {
        self.line.text[self.args_at..].trim_end()
    }
}

/// The state of the build as instructions are read.
struct Build<'b> {
    context: &'b Path,
    given: &'b BTreeMap<String, String>,
    /// ARGs declared before FROM, with their values (`None`: declared without a value).
    globals: BTreeMap<String, Option<String>>,
    /// Every ARG name, to warn about a `--build-arg` nothing uses.
    declared: BTreeSet<String>,
    stage: Option<Stage>,
}

/// What `FROM scratch` and the instructions after it have set.
struct Stage {
    args: BTreeMap<String, Option<String>>,
    env: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    workdir: String,
    /// The last ENTRYPOINT and where it is.
    entrypoint: Option<(Vec<String>, Location)>,
    cmd: Vec<String>,
    copies: Vec<Copy>,
}

/// One COPY instruction, resolved.
struct Copy {
    sources: Vec<CopySource>,
    /// Absolute path in the image, ending in `/` when it names a folder.
    dest: String,
}

struct CopySource {
    /// In the context.
    path: PathBuf,
    /// As written (after substitution).
    raw: String,
    location: Location,
    is_dir: bool,
}

/// The variables an instruction sees. ENV wins over ARG, whatever their order, as in Docker.
struct Scope<'s> {
    env: &'s BTreeMap<String, String>,
    args: &'s BTreeMap<String, Option<String>>,
}

impl Scope<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .or_else(|| self.args.get(name).and_then(|value| value.as_deref()))
    }

    fn declared(&self, name: &str) -> bool {
        self.env.contains_key(name) || self.args.contains_key(name)
    }
}

struct Parser<'a> {
    source: &'a str,
    path: &'a Path,
    /// The escape character: `\`, or `` ` `` after `# escape=``.
    escape: char,
    warnings: Vec<String>,
}

impl Parser<'_> {
    fn at(&self, line: &Line, index: usize) -> Location {
        location(self.source, line.offset(index))
    }

    fn invalid(&self, line: &Line, index: usize, message: String, hint: Option<&str>) -> SpecError {
        SpecError::Invalid {
            path: self.path.to_path_buf(),
            location: Some(self.at(line, index)),
            message,
            hint: hint.map(str::to_owned),
        }
    }

    fn unsupported(
        &self,
        line: &Line,
        index: usize,
        instruction: &str,
        message: String,
        hint: Option<String>,
    ) -> SpecError {
        SpecError::Unsupported {
            path: self.path.to_path_buf(),
            location: Some(self.at(line, index)),
            instruction: instruction.to_owned(),
            message,
            hint,
        }
    }

    fn warn(&mut self, location: Location, message: &str) {
        self.warnings
            .push(format!("{}:{location}: {message}", self.path.display()));
    }

    /// Parser directives, then the instructions with their continuation lines joined.
    fn lines(&mut self) -> Result<Vec<Line>, SpecError> {
        let mut physical = Vec::new();
        let mut offset = 0;
        let body = match self.source.strip_prefix('\u{feff}') {
            Some(rest) => {
                offset = '\u{feff}'.len_utf8();
                rest
            }
            None => self.source,
        };
        for piece in body.split_inclusive('\n') {
            let text = piece.strip_suffix('\n').unwrap_or(piece);
            let text = text.strip_suffix('\r').unwrap_or(text);
            physical.push((offset, text));
            offset += piece.len();
        }

        self.directives(&physical)?;

        let mut lines = Vec::new();
        let mut rest = physical.iter();
        while let Some(&(offset, text)) = rest.next() {
            let indent = text.len() - text.trim_start().len();
            let text = &text[indent..];
            if text.trim().is_empty() || text.starts_with('#') {
                continue;
            }
            let mut line = Line::default();
            let (content, mut continues) = self.continuation(text);
            line.push(content, offset + indent);
            while continues {
                let Some(&(offset, text)) = rest.next() else {
                    break;
                };
                // Comment and blank lines inside an instruction are skipped, as in BuildKit.
                if text.trim().is_empty() || text.trim_start().starts_with('#') {
                    continue;
                }
                let (content, more) = self.continuation(text);
                line.push(content, offset);
                continues = more;
            }
            if !line.text.trim().is_empty() {
                lines.push(line);
            }
        }
        Ok(lines)
    }

    /// A line without its trailing escape character, and whether the instruction goes on.
    fn continuation<'t>(&self, text: &'t str) -> (&'t str, bool) {
        let trimmed = text.trim_end_matches([' ', '\t']);
        match trimmed.strip_suffix(self.escape) {
            Some(content) => (content, true),
            None => (text, false),
        }
    }

    /// `# escape=`, `# syntax=` and `# check=` at the top of the file, before any other
    /// line; anything else ends them, as in BuildKit.
    fn directives(&mut self, physical: &[(usize, &str)]) -> Result<(), SpecError> {
        let mut seen = BTreeSet::new();
        for &(offset, text) in physical {
            let Some((name, value, value_at)) = directive(text) else {
                return Ok(());
            };
            let name = name.to_ascii_lowercase();
            if !["escape", "syntax", "check"].contains(&name.as_str()) {
                return Ok(());
            }
            let location = location(self.source, offset + value_at);
            if !seen.insert(name.clone()) {
                return Err(SpecError::Invalid {
                    path: self.path.to_path_buf(),
                    location: Some(location),
                    message: format!("only one `# {name}=` parser directive can be used"),
                    hint: None,
                });
            }
            match name.as_str() {
                "escape" => {
                    self.escape = match value {
                        "\\" => '\\',
                        "`" => '`',
                        _ => {
                            return Err(SpecError::Invalid {
                                path: self.path.to_path_buf(),
                                location: Some(location),
                                message: format!(
                                    "invalid escape character {value:?}: expected `\\` or `` ` ``"
                                ),
                                hint: None,
                            });
                        }
                    }
                }
                "syntax" => {
                    let frontend = value.strip_prefix("docker.io/").unwrap_or(value);
                    if !frontend.starts_with("docker/dockerfile:")
                        && frontend != "docker/dockerfile"
                    {
                        self.warn(
                            location,
                            &format!(
                                "`# syntax={value}` is ignored: wasmbuild reads the file as \
                                 Docker's own Dockerfile syntax"
                            ),
                        );
                    }
                }
                // BuildKit's lint settings: there is nothing to lint here.
                _ => {}
            }
        }
        Ok(())
    }

    fn instruction(&mut self, line: &Line, build: &mut Build<'_>) -> Result<(), SpecError> {
        let text = &line.text;
        let keyword_end = text.find(char::is_whitespace).unwrap_or(text.len());
        let keyword = &text[..keyword_end];
        let name = keyword.to_ascii_uppercase();

        if let Some((reason, hint)) = refusal(&name) {
            return Err(self.unsupported(
                line,
                0,
                &name,
                format!("{name} is not supported: {reason}"),
                hint.map(str::to_owned),
            ));
        }
        if !INSTRUCTIONS.contains(&name.as_str()) {
            let suggestion = crate::closest(&name, &INSTRUCTIONS);
            return Err(self.invalid(
                line,
                0,
                format!("unknown instruction `{keyword}`"),
                suggestion
                    .map(|suggestion| format!("did you mean {suggestion}?"))
                    .as_deref(),
            ));
        }

        let (flags, args_at) = flags(text, keyword_end);
        let instruction = Instruction {
            line,
            name,
            flags,
            args_at,
        };
        if instruction.name == "ARG" {
            return self.arg(&instruction, build);
        }
        if instruction.name == "FROM" {
            if build.stage.is_some() {
                return Err(self.unsupported(
                    line,
                    0,
                    "FROM",
                    "multi-stage builds are not supported: wasmbuild builds a single FROM scratch \
                     stage"
                        .to_owned(),
                    Some(BUILD_FIRST.to_owned()),
                ));
            }
            build.stage = Some(self.from(&instruction, build)?);
            return Ok(());
        }
        let Some(stage) = build.stage.as_mut() else {
            return Err(self.invalid(
                line,
                0,
                format!(
                    "{} before FROM: a Dockerfile starts with FROM (only ARG may come before it)",
                    instruction.name
                ),
                Some("add FROM scratch above it"),
            ));
        };
        match instruction.name.as_str() {
            "COPY" => {
                let copy = self.copy(&instruction, stage, build.context)?;
                stage.copies.push(copy);
            }
            "ENTRYPOINT" => {
                self.no_flags(&instruction)?;
                let words = self.exec_form(&instruction)?;
                if words.first().is_some_and(String::is_empty) {
                    return Err(self.invalid(
                        line,
                        instruction.args_at,
                        "the program in ENTRYPOINT is empty".to_owned(),
                        Some("name the module, such as ENTRYPOINT [\"/app.wasm\"]"),
                    ));
                }
                stage.entrypoint = Some((words, self.at(line, 0)));
            }
            "CMD" => {
                self.no_flags(&instruction)?;
                stage.cmd = self.exec_form(&instruction)?;
            }
            "ENV" => {
                self.no_flags(&instruction)?;
                let pairs = self.pairs(&instruction, stage)?;
                for (name, value, at) in pairs {
                    if name.is_empty() || name.contains(['=', '\0']) {
                        return Err(self.invalid(
                            line,
                            at,
                            format!(
                                "invalid environment variable name {name:?}: expected a \
                                 non-empty name without `=`"
                            ),
                            None,
                        ));
                    }
                    stage.env.insert(name, value);
                }
            }
            "LABEL" => {
                self.no_flags(&instruction)?;
                let pairs = self.pairs(&instruction, stage)?;
                for (name, value, at) in pairs {
                    if name.is_empty() {
                        return Err(self.invalid(
                            line,
                            at,
                            "empty LABEL name: expected a name such as org.example.team".to_owned(),
                            None,
                        ));
                    }
                    stage.labels.insert(name, value);
                }
            }
            "WORKDIR" => {
                self.no_flags(&instruction)?;
                let raw = instruction.args();
                if raw.is_empty() {
                    return Err(self.invalid(
                        line,
                        0,
                        "WORKDIR needs a path, such as WORKDIR /srv".to_owned(),
                        None,
                    ));
                }
                let word = Word::new(raw, instruction.args_at);
                let scope = Scope {
                    env: &stage.env,
                    args: &stage.args,
                };
                let path = self.expand(line, &word, &scope)?;
                if path.is_empty() {
                    return Err(self.invalid(
                        line,
                        word.at,
                        format!("WORKDIR {raw} is empty once substituted"),
                        None,
                    ));
                }
                // Relative to the previous WORKDIR, as in Docker.
                stage.workdir = image_path(&stage.workdir, &path);
            }
            // Every instruction is either refused, handled above, or one of these.
            _ => {}
        }
        Ok(())
    }

    fn no_flags(&self, instruction: &Instruction<'_>) -> Result<(), SpecError> {
        match instruction.flags.first() {
            Some(flag) => Err(self.invalid(
                instruction.line,
                flag.at,
                format!("unknown flag --{} for {}", flag.name, instruction.name),
                Some(&format!("{} takes no flags", instruction.name)),
            )),
            None => Ok(()),
        }
    }

    /// Substitutes variables in a word and removes its quotes and escapes; names that no ARG
    /// or ENV declares expand to nothing, with a warning.
    fn expand(&mut self, line: &Line, word: &Word, scope: &Scope<'_>) -> Result<String, SpecError> {
        let mut expansion = Expansion {
            scope,
            escape: self.escape,
            undeclared: Vec::new(),
        };
        let result = expansion.word(&word.text);
        let place = |index: usize| {
            if word.exact { word.at + index } else { word.at }
        };
        match result {
            Ok(text) => {
                for (name, index) in expansion.undeclared {
                    let location = self.at(line, place(index));
                    self.warn(
                        location,
                        &format!(
                            "${name} is not set by any ARG or ENV before it, so it expands to an \
                             empty string"
                        ),
                    );
                }
                Ok(text)
            }
            Err(problem) => Err(self.invalid(
                line,
                place(problem.at),
                format!("cannot substitute in {:?}: {}", word.text, problem.message),
                None,
            )),
        }
    }

    /// `ARG NAME[=default] ...`: before FROM, for FROM; after it, for the stage. A
    /// `--build-arg` overrides the default; a stage's `ARG NAME` without one takes the
    /// value of the ARG before FROM, as in Docker.
    fn arg(
        &mut self,
        instruction: &Instruction<'_>,
        build: &mut Build<'_>,
    ) -> Result<(), SpecError> {
        self.no_flags(instruction)?;
        let line = instruction.line;
        let words = quoted_words(&line.text, instruction.args_at, self.escape);
        if words.is_empty() {
            return Err(self.invalid(
                line,
                0,
                "ARG needs a name, such as ARG VERSION or ARG VERSION=1.0".to_owned(),
                None,
            ));
        }
        let empty = BTreeMap::new();
        let mut values = Vec::new();
        {
            let scope = match &build.stage {
                Some(stage) => Scope {
                    env: &stage.env,
                    args: &stage.args,
                },
                None => Scope {
                    env: &empty,
                    args: &build.globals,
                },
            };
            for word in &words {
                let (name, default) = match word.text.split_once('=') {
                    Some((name, default)) => {
                        let default = Word::new(default, word.at + name.len() + 1);
                        (name, Some(self.expand(line, &default, &scope)?))
                    }
                    None => (word.text.as_str(), None),
                };
                if !is_arg_name(name) {
                    return Err(self.invalid(
                        line,
                        word.at,
                        format!(
                            "invalid ARG name `{name}`: expected letters, digits and `_`, not \
                             starting with a digit"
                        ),
                        None,
                    ));
                }
                values.push((name.to_owned(), default));
            }
        }
        for (name, default) in values {
            build.declared.insert(name.clone());
            let platform = PLATFORM_ARGS
                .iter()
                .find(|(platform, _)| *platform == name)
                .map(|(_, value)| (*value).to_owned());
            let value = match &build.stage {
                Some(_) => build
                    .given
                    .get(&name)
                    .cloned()
                    .or(default)
                    .or_else(|| build.globals.get(&name).cloned().flatten())
                    .or(platform),
                None => build.given.get(&name).cloned().or(default).or(platform),
            };
            match build.stage.as_mut() {
                Some(stage) => stage.args.insert(name, value),
                None => build.globals.insert(name, value),
            };
        }
        Ok(())
    }

    /// `FROM scratch`, optionally `AS name` and `--platform=wasi/wasm`.
    fn from(
        &mut self,
        instruction: &Instruction<'_>,
        build: &Build<'_>,
    ) -> Result<Stage, SpecError> {
        let line = instruction.line;
        // FROM sees the ARGs before it and the platform ARGs.
        let mut args: BTreeMap<String, Option<String>> = PLATFORM_ARGS
            .iter()
            .map(|(name, value)| ((*name).to_owned(), Some((*value).to_owned())))
            .collect();
        args.extend(build.globals.clone());
        let empty = BTreeMap::new();
        let scope = Scope {
            env: &empty,
            args: &args,
        };
        for flag in &instruction.flags {
            if flag.name != "platform" {
                return Err(self.invalid(
                    line,
                    flag.at,
                    format!("unknown flag --{} for FROM", flag.name),
                    Some("FROM takes only --platform"),
                ));
            }
            let raw = flag.value.clone().unwrap_or_default();
            let value_at = flag.at + "--platform=".len();
            let platform = self.expand(line, &Word::new(&raw, value_at), &scope)?;
            if !PLATFORMS.contains(&platform.as_str()) {
                return Err(self.unsupported(
                    line,
                    flag.at,
                    "FROM",
                    format!(
                        "FROM --platform={platform} is not supported: wasmbuild builds wasi/wasm \
                         images"
                    ),
                    Some("use --platform=wasi/wasm, or leave --platform out".to_owned()),
                ));
            }
        }
        let words = whitespace_words(&line.text, instruction.args_at);
        let image = match words.as_slice() {
            [image] => image,
            [image, keyword, _name] if keyword.text.eq_ignore_ascii_case("AS") => image,
            _ => {
                return Err(self.invalid(
                    line,
                    0,
                    "FROM takes an image and optionally `AS name`, such as FROM scratch".to_owned(),
                    None,
                ));
            }
        };
        let base = self.expand(line, image, &scope)?;
        if base != "scratch" {
            let hint = if base.eq_ignore_ascii_case("scratch") {
                "write it in lower case: FROM scratch".to_owned()
            } else {
                "start with FROM scratch and COPY a module built beforehand (a Wasmfile builds \
                 one with cargo, clang or go)"
                    .to_owned()
            };
            return Err(self.unsupported(
                line,
                image.at,
                "FROM",
                format!("wasmbuild builds images from scratch; FROM {base} is not supported"),
                Some(hint),
            ));
        }
        Ok(Stage {
            args: BTreeMap::new(),
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            workdir: "/".to_owned(),
            entrypoint: None,
            cmd: Vec::new(),
            copies: Vec::new(),
        })
    }

    /// `COPY [--link] src... dest`, or `COPY ["src", ..., "dest"]`.
    fn copy(
        &mut self,
        instruction: &Instruction<'_>,
        stage: &Stage,
        context: &Path,
    ) -> Result<Copy, SpecError> {
        let line = instruction.line;
        for flag in &instruction.flags {
            let refused = match flag.name.as_str() {
                "link" => {
                    match flag.value.as_deref() {
                        // One layer from scratch: linking changes nothing in it.
                        None | Some("true" | "false") => continue,
                        Some(other) => {
                            return Err(self.invalid(
                            line,
                            flag.at,
                            format!("invalid value {other:?} for COPY --link: expected true or false"),
                            None,
                        ));
                        }
                    }
                }
                "from" => (
                    "there is a single FROM scratch stage and no other image to copy from",
                    format!("{BUILD_FIRST} from the build context"),
                ),
                "chown" => (
                    "WASI has no users, and every file in the image belongs to root (uid 0, gid 0)",
                    "remove --chown".to_owned(),
                ),
                "chmod" => (
                    "file modes are fixed so that images are reproducible: 0755 for a file that is \
                     executable in the build context, else 0644",
                    "remove --chmod, and chmod the file in the build context instead".to_owned(),
                ),
                "parents" | "exclude" => (
                    "wasmbuild copies exactly the sources a COPY names",
                    "name each source, with a COPY per destination".to_owned(),
                ),
                other => {
                    return Err(self.invalid(
                        line,
                        flag.at,
                        format!("unknown flag --{other} for COPY"),
                        Some("COPY accepts --link (--from, --chown, --chmod, --parents and --exclude are refused)"),
                    ));
                }
            };
            return Err(self.unsupported(
                line,
                flag.at,
                "COPY",
                format!("COPY --{} is not supported: {}", flag.name, refused.0),
                Some(refused.1),
            ));
        }

        let words = match self.json_array(instruction)? {
            Some(strings) => strings
                .into_iter()
                .map(|text| Word {
                    text,
                    at: instruction.args_at,
                    exact: false,
                })
                .collect(),
            None => whitespace_words(&line.text, instruction.args_at),
        };
        let Some((dest_word, source_words)) = words.split_last().filter(|(_, s)| !s.is_empty())
        else {
            return Err(self.invalid(
                line,
                0,
                "COPY needs a source and a destination, such as COPY app.wasm /app.wasm".to_owned(),
                None,
            ));
        };
        if let Some(heredoc) = source_words.iter().find(|word| word.text.starts_with("<<")) {
            return Err(self.unsupported(
                line,
                heredoc.at,
                "COPY",
                format!(
                    "COPY {} is not supported: heredocs are not read",
                    heredoc.text
                ),
                Some("put the text in a file in the build context and COPY that file".to_owned()),
            ));
        }

        let scope = Scope {
            env: &stage.env,
            args: &stage.args,
        };
        let dest = self.expand(line, dest_word, &scope)?;
        if dest.is_empty() {
            return Err(self.invalid(
                line,
                dest_word.at,
                "the COPY destination is empty".to_owned(),
                None,
            ));
        }
        let into_folder = dest.ends_with('/') || dest == "." || dest.ends_with("/.");
        let mut dest = image_path(&stage.workdir, &dest);
        if into_folder && !dest.ends_with('/') {
            dest.push('/');
        }

        let mut sources = Vec::new();
        for word in source_words {
            let raw = self.expand(line, word, &scope)?;
            let location = self.at(line, word.at);
            let relative = raw.trim_start_matches('/');
            let found: Vec<String> = if relative.contains(['*', '?', '[']) {
                let matched = glob(context, relative);
                if matched.is_empty() {
                    return Err(self.invalid(
                        line,
                        word.at,
                        format!("COPY source {raw:?} matches no file in the build context"),
                        None,
                    ));
                }
                matched
            } else {
                vec![relative.to_owned()]
            };
            for relative in found {
                let path = self.context_path(context, &raw, &relative, location)?;
                sources.push(CopySource {
                    is_dir: path.is_dir(),
                    path,
                    raw: raw.clone(),
                    location,
                });
            }
        }
        if sources.len() > 1 && !dest.ends_with('/') {
            return Err(self.invalid(
                line,
                dest_word.at,
                format!(
                    "COPY with several sources needs a destination folder ending in `/`, not {:?}",
                    dest_word.text
                ),
                Some(&format!("write {:?}", format!("{}/", dest_word.text))),
            ));
        }
        Ok(Copy { sources, dest })
    }

    /// A file or folder named in a COPY, inside the context: lexically first, so `..`
    /// cannot climb out, then through the file system, so a symlink cannot lead out either.
    /// Returns the lexical path, so that a symlink keeps its name.
    fn context_path(
        &self,
        context: &Path,
        raw: &str,
        relative: &str,
        location: Location,
    ) -> Result<PathBuf, SpecError> {
        let key = "the COPY source".to_owned();
        let escapes = |resolved: PathBuf, via_symlink: bool| SpecError::EscapesContext {
            path: self.path.to_path_buf(),
            location: Some(location),
            key: key.clone(),
            value: raw.to_owned(),
            resolved,
            within: BUILD_CONTEXT,
            base: context.to_path_buf(),
            via_symlink,
        };
        let lexical = lexical_join(context, Path::new(relative));
        if !lexical.starts_with(context) {
            return Err(escapes(lexical, false));
        }
        let canonical = fs::canonicalize(&lexical).map_err(|_| SpecError::Missing {
            path: self.path.to_path_buf(),
            location: Some(location),
            key: key.clone(),
            value: raw.to_owned(),
            resolved: lexical.clone(),
            hint: raw
                .ends_with(".wasm")
                .then(|| "build the module into the build context first".to_owned()),
        })?;
        if !canonical.starts_with(context) {
            return Err(escapes(canonical, true));
        }
        Ok(lexical)
    }

    /// `NAME=VALUE ...`, or the legacy `NAME VALUE` (the rest of the line), for ENV and LABEL.
    /// Every value sees the variables as they were before the instruction, as in Docker.
    fn pairs(
        &mut self,
        instruction: &Instruction<'_>,
        stage: &Stage,
    ) -> Result<Vec<(String, String, usize)>, SpecError> {
        let line = instruction.line;
        let name = &instruction.name;
        let words = quoted_words(&line.text, instruction.args_at, self.escape);
        let example = if name == "ENV" {
            "ENV LOG=info"
        } else {
            "LABEL org.example.team=wasm"
        };
        let Some(first) = words.first() else {
            return Err(self.invalid(
                line,
                0,
                format!("{name} needs NAME=VALUE, such as {example}"),
                None,
            ));
        };
        let mut raw_pairs = Vec::new();
        if !first.text.contains('=') {
            // Legacy `ENV NAME VALUE`: the value is the rest of the line.
            let rest = &line.text[first.at + first.text.len()..];
            let value = rest.trim();
            if value.is_empty() {
                return Err(self.invalid(
                    line,
                    first.at,
                    format!("{name} {} has no value: expected {example}", first.text),
                    None,
                ));
            }
            let value_at = first.at + first.text.len() + (rest.len() - rest.trim_start().len());
            raw_pairs.push((first.clone(), Word::new(value, value_at)));
        } else {
            for word in &words {
                let Some((key, value)) = word.text.split_once('=') else {
                    return Err(self.invalid(
                        line,
                        word.at,
                        format!("{name} expects NAME=VALUE, but {:?} has no `=`", word.text),
                        Some(&format!("quote values with spaces: {example:?}")),
                    ));
                };
                raw_pairs.push((
                    Word::new(key, word.at),
                    Word::new(value, word.at + key.len() + 1),
                ));
            }
        }
        let scope = Scope {
            env: &stage.env,
            args: &stage.args,
        };
        let mut pairs = Vec::new();
        for (key, value) in raw_pairs {
            let expanded_key = self.expand(line, &key, &scope)?;
            let expanded_value = self.expand(line, &value, &scope)?;
            pairs.push((expanded_key, expanded_value, key.at));
        }
        Ok(pairs)
    }

    /// The strings of `INSTRUCTION ["a", "b"]`, or `None` when the arguments are not a JSON
    /// array (the shell form). A JSON array of anything but strings is an error.
    fn json_array(&self, instruction: &Instruction<'_>) -> Result<Option<Vec<String>>, SpecError> {
        let args = instruction.args();
        if !args.starts_with('[') {
            return Ok(None);
        }
        let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(args) else {
            return Ok(None);
        };
        let mut strings = Vec::with_capacity(values.len());
        for value in values {
            match value {
                serde_json::Value::String(text) => strings.push(text),
                _ => {
                    return Err(self.invalid(
                        instruction.line,
                        instruction.args_at,
                        format!(
                            "{} takes a JSON array of strings, not {args}",
                            instruction.name
                        ),
                        None,
                    ));
                }
            }
        }
        Ok(Some(strings))
    }

    /// ENTRYPOINT and CMD: only the exec (JSON) form, since the shell form runs
    /// `/bin/sh -c` and a Wasm image has no shell.
    fn exec_form(&self, instruction: &Instruction<'_>) -> Result<Vec<String>, SpecError> {
        let name = &instruction.name;
        let args = instruction.args();
        let line = instruction.line;
        if args.is_empty() {
            return Err(self.invalid(
                line,
                0,
                format!("{name} needs a JSON array, such as {name} [\"/app.wasm\"]"),
                None,
            ));
        }
        if let Some(words) = self.json_array(instruction)? {
            return Ok(words);
        }
        let suggestion: Vec<String> = if args.starts_with('[') {
            Vec::new()
        } else {
            args.split_whitespace()
                .map(|word| serde_json::to_string(word).unwrap_or_default())
                .collect()
        };
        let (message, hint) = if suggestion.is_empty() {
            (
                format!(
                    "{name} {args} is not a JSON array of strings, so it is the shell form, which \
                     runs /bin/sh -c: a Wasm image has no shell"
                ),
                format!("write the array with double quotes, such as {name} [\"/app.wasm\"]"),
            )
        } else {
            (
                format!(
                    "{name} in shell form is not supported: it runs /bin/sh -c, and a Wasm image \
                     has no shell"
                ),
                format!(
                    "use the exec (JSON) form: {name} [{}]",
                    suggestion.join(", ")
                ),
            )
        };
        Err(self.unsupported(line, instruction.args_at, name, message, Some(hint)))
    }

    /// Finds the module (the file ENTRYPOINT runs) among the COPYs; the rest become
    /// [`CopyRule`]s.
    fn module(&mut self, stage: Stage) -> Result<(PathBuf, ImageConfig, Vec<CopyRule>), SpecError> {
        let Stage {
            env,
            labels,
            workdir,
            entrypoint,
            mut cmd,
            mut copies,
            ..
        } = stage;

        // Where each file a COPY names lands in the image.
        let mut placed: Vec<(usize, usize, String)> = Vec::new();
        for (c, copy) in copies.iter().enumerate() {
            for (s, source) in copy.sources.iter().enumerate() {
                if source.is_dir {
                    continue;
                }
                let target = if copy.dest.ends_with('/') {
                    let name = source
                        .path
                        .file_name()
                        .map(|name| name.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    format!("{}{name}", copy.dest)
                } else {
                    copy.dest.clone()
                };
                placed.push((c, s, target));
            }
        }
        let last_at = |target: &str| placed.iter().rev().find(|(_, _, t)| t == target).cloned();

        let (entry, chosen) = match entrypoint.filter(|(words, _)| !words.is_empty()) {
            Some((words, at)) => {
                let program = image_path(&workdir, &words[0]);
                match last_at(&program) {
                    Some(found) => (words, found),
                    None => return Err(self.not_copied(&program, at, &copies)),
                }
            }
            None => {
                // Without ENTRYPOINT, CMD's first word is the program, as in Docker.
                let from_cmd = cmd
                    .first()
                    .and_then(|program| last_at(&image_path(&workdir, program)));
                match from_cmd {
                    Some(found) => {
                        let program = cmd.remove(0);
                        (vec![program], found)
                    }
                    None => {
                        let mut modules: Vec<&str> = placed
                            .iter()
                            .map(|(_, _, target)| target.as_str())
                            .filter(|target| target.ends_with(".wasm"))
                            .collect();
                        modules.sort_unstable();
                        modules.dedup();
                        match modules.as_slice() {
                            [one] => {
                                let found = last_at(one).unwrap_or_default();
                                (vec![(*one).to_owned()], found)
                            }
                            [] => {
                                return Err(SpecError::Invalid {
                                    path: self.path.to_path_buf(),
                                    location: None,
                                    message: "the Dockerfile has no ENTRYPOINT and COPYs no .wasm \
                                              file, so there is no module to run"
                                        .to_owned(),
                                    hint: Some(
                                        "COPY the module and name it: COPY app.wasm /app.wasm, \
                                         then ENTRYPOINT [\"/app.wasm\"]"
                                            .to_owned(),
                                    ),
                                });
                            }
                            several => {
                                return Err(SpecError::Invalid {
                                    path: self.path.to_path_buf(),
                                    location: None,
                                    message: format!(
                                        "the Dockerfile has no ENTRYPOINT and COPYs {} .wasm files \
                                         ({}), so which one runs is not clear",
                                        several.len(),
                                        several.join(", ")
                                    ),
                                    hint: Some(format!(
                                        "name the module: ENTRYPOINT [\"{}\"]",
                                        several[0]
                                    )),
                                });
                            }
                        }
                    }
                }
            }
        };

        let (module_copy, module_source, target) = chosen;
        let module = copies[module_copy].sources[module_source].path.clone();
        // The module replaces whatever an earlier COPY put at its path, as in Docker.
        for (c, s, t) in placed.iter().rev() {
            if *t == target {
                copies[*c].sources.remove(*s);
            }
        }
        let copies = copies
            .into_iter()
            .flat_map(|copy| {
                let dest = copy.dest;
                copy.sources.into_iter().map(move |source| CopyRule {
                    from: source.path,
                    to: dest.clone(),
                })
            })
            .collect();
        let defaults = ImageSection::default();
        let image = ImageConfig {
            name: None,
            tags: defaults.tags,
            format: defaults.format,
            os: defaults.os,
            entrypoint: Some(entry),
            cmd,
            env,
            workdir,
            labels,
            annotations: BTreeMap::new(),
        };
        Ok((module, image, copies))
    }

    /// ENTRYPOINT runs a file no COPY puts there as a file of its own.
    fn not_copied(&self, program: &str, at: Location, copies: &[Copy]) -> SpecError {
        let in_folder = copies
            .iter()
            .flat_map(|copy| copy.sources.iter().map(move |source| (copy, source)))
            .filter(|(_, source)| source.is_dir)
            .rfind(|(copy, _)| {
                let folder = copy.dest.trim_end_matches('/');
                program.starts_with(&format!("{folder}/"))
            });
        let (message, hint) = match in_folder {
            Some((_, source)) => (
                format!(
                    "ENTRYPOINT runs {program}, which only the COPY of the folder {:?} at line {} \
                     puts there; the module must be COPYed as a file of its own",
                    source.raw, source.location.line
                ),
                format!(
                    "COPY the .wasm file to {program} on its own, and keep it out of that folder"
                ),
            ),
            None => (
                format!("ENTRYPOINT runs {program}, but no COPY puts a file there"),
                format!("COPY the module there, such as COPY app.wasm {program}"),
            ),
        };
        SpecError::Invalid {
            path: self.path.to_path_buf(),
            location: Some(at),
            message,
            hint: Some(hint),
        }
    }
}

/// Why an instruction cannot be in a Wasm image, and what to do instead.
fn refusal(name: &str) -> Option<(&'static str, Option<&'static str>)> {
    Some(match name {
        "RUN" => (
            "there is no shell to run commands in a Wasm image; build the module first \
             (cargo/clang/go via a Wasmfile, or your own tooling) and COPY it",
            None,
        ),
        "ADD" => (
            "wasmbuild neither downloads URLs nor unpacks archives",
            Some("use COPY for files in the build context"),
        ),
        "EXPOSE" => (
            "a WASI preview 1 module cannot open a listening port",
            Some("remove the EXPOSE line"),
        ),
        "USER" => (
            "WASI has no users; the module runs with the runtime's permissions",
            Some("remove the USER line"),
        ),
        "VOLUME" => (
            "a WASI module sees only the folders its runtime preopens",
            Some("remove the VOLUME line, and give the runtime the folders when it runs"),
        ),
        "HEALTHCHECK" => (
            "a health check runs a command in the image, and a Wasm image has no commands \
             besides its module",
            Some("remove the HEALTHCHECK, and check the service from outside"),
        ),
        "SHELL" => ("a Wasm image has no shell", Some("remove the SHELL line")),
        "ONBUILD" => (
            "wasmbuild builds every image FROM scratch, so no build ever runs the trigger",
            Some("remove the ONBUILD line"),
        ),
        "STOPSIGNAL" => (
            "WASI preview 1 has no signals",
            Some("remove the STOPSIGNAL line"),
        ),
        "MAINTAINER" => (
            "it is deprecated",
            Some("use LABEL org.opencontainers.image.authors=\"name <mail>\""),
        ),
        _ => return None,
    })
}

/// `# name=value` (a parser directive): the name, the value and where the value starts.
fn directive(text: &str) -> Option<(&str, &str, usize)> {
    let indent = text.len() - text.trim_start().len();
    let rest = text[indent..].strip_prefix('#')?;
    let name_start = text.len() - rest.trim_start_matches([' ', '\t']).len();
    let rest = &text[name_start..];
    let name_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let name = &rest[..name_len];
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let rest = rest[name_len..]
        .trim_start_matches([' ', '\t'])
        .strip_prefix('=')?;
    let value = rest.trim_matches([' ', '\t']);
    if value.is_empty() {
        return None;
    }
    let value_at = text.len() - rest.trim_start_matches([' ', '\t']).len();
    Some((name, value, value_at))
}

/// The `--name[=value]` words right after the instruction, and where its arguments start.
fn flags(text: &str, mut at: usize) -> (Vec<Flag>, usize) {
    let mut flags = Vec::new();
    loop {
        let skipped = text[at..].len() - text[at..].trim_start().len();
        at += skipped;
        let rest = &text[at..];
        if !rest.starts_with("--") {
            return (flags, at);
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[2..end];
        if word.is_empty() {
            // `--` ends the flags.
            return (flags, at + end);
        }
        let (name, value) = match word.split_once('=') {
            Some((name, value)) => {
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                    .unwrap_or(value);
                (name, Some(value.to_owned()))
            }
            None => (word, None),
        };
        flags.push(Flag {
            name: name.to_ascii_lowercase(),
            value,
            at,
        });
        at += end;
    }
}

/// Words separated by whitespace, as COPY's and FROM's shell forms are split (quotes do
/// not group words there; they are removed afterwards).
fn whitespace_words(text: &str, from: usize) -> Vec<Word> {
    let mut words = Vec::new();
    let mut start = None;
    for (index, c) in text[from..].char_indices() {
        let index = from + index;
        if c.is_whitespace() {
            if let Some(start) = start.take() {
                words.push(Word::new(&text[start..index], start));
            }
        } else if start.is_none() {
            start = Some(index);
        }
    }
    if let Some(start) = start {
        words.push(Word::new(&text[start..], start));
    }
    words
}

/// Words separated by whitespace outside quotes and escapes, as ENV, LABEL and ARG are
/// split (BuildKit's `parseWords`); quotes and escapes stay in the words.
fn quoted_words(text: &str, from: usize, escape: char) -> Vec<Word> {
    let mut words = Vec::new();
    let mut chars = text[from..].char_indices().map(|(i, c)| (from + i, c));
    let mut start: Option<usize> = None;
    let mut quote: Option<char> = None;
    while let Some((index, c)) = chars.next() {
        match quote {
            None => {
                if c.is_whitespace() {
                    if let Some(start) = start.take() {
                        words.push(Word::new(&text[start..index], start));
                    }
                    continue;
                }
                start.get_or_insert(index);
                if c == '\'' || c == '"' {
                    quote = Some(c);
                } else if c == escape {
                    // The next character belongs to the word, even a space or a quote.
                    chars.next();
                }
            }
            Some(open) => {
                if c == open {
                    quote = None;
                } else if c == escape && open != '\'' {
                    chars.next();
                }
            }
        }
    }
    if let Some(start) = start {
        words.push(Word::new(&text[start..], start));
    }
    words
}

/// A problem with a substitution, at a byte index in the word.
struct Problem {
    at: usize,
    message: String,
}

type Chars<'w> = Peekable<CharIndices<'w>>;

/// BuildKit's `ProcessWord`: variables substituted, quotes and escapes removed.
struct Expansion<'s> {
    scope: &'s Scope<'s>,
    escape: char,
    /// Names used but declared by no ARG or ENV, with their index in the word.
    undeclared: Vec<(String, usize)>,
}

impl Expansion<'_> {
    fn word(&mut self, word: &str) -> Result<String, Problem> {
        let mut chars = word.char_indices().peekable();
        self.until(&mut chars, None)
    }

    /// The word up to `stop` (not consumed) or its end.
    fn until(&mut self, chars: &mut Chars<'_>, stop: Option<char>) -> Result<String, Problem> {
        let mut out = String::new();
        while let Some(&(index, c)) = chars.peek() {
            if Some(c) == stop {
                break;
            }
            chars.next();
            match c {
                '\'' => loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, c)) => out.push(c),
                        None => {
                            return Err(Problem {
                                at: index,
                                message: "unclosed single quote".to_owned(),
                            });
                        }
                    }
                },
                '"' => loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((at, '$')) => out.push_str(&self.dollar(chars, at)?),
                        Some((_, c)) if c == self.escape => match chars.peek() {
                            Some(&(_, next))
                                if next == '"' || next == '$' || next == self.escape =>
                            {
                                out.push(next);
                                chars.next();
                            }
                            _ => out.push(c),
                        },
                        Some((_, c)) => out.push(c),
                        None => {
                            return Err(Problem {
                                at: index,
                                message: "unclosed double quote".to_owned(),
                            });
                        }
                    }
                },
                '$' => out.push_str(&self.dollar(chars, index)?),
                c if c == self.escape => {
                    if let Some((_, next)) = chars.next() {
                        out.push(next);
                    }
                }
                c => out.push(c),
            }
        }
        Ok(out)
    }

    /// What follows a `$` (at `at`): `NAME`, `{NAME}` or `{NAME<modifier>word}`; anything
    /// else leaves the `$` as it is.
    fn dollar(&mut self, chars: &mut Chars<'_>, at: usize) -> Result<String, Problem> {
        let problem = |message: String| Problem { at, message };
        match chars.peek() {
            Some(&(_, '{')) => {
                chars.next();
            }
            Some(&(_, c)) if c.is_ascii_alphabetic() || c == '_' => {
                let name = take_name(chars);
                return Ok(self.value(&name, at));
            }
            _ => return Ok("$".to_owned()),
        }
        let name = take_name(chars);
        if name.is_empty() {
            return Err(problem("expected a name after `${`".to_owned()));
        }
        let (colon, modifier) = match chars.next() {
            Some((_, '}')) => return Ok(self.value(&name, at)),
            Some((_, ':')) => match chars.next() {
                Some((_, c @ ('-' | '+' | '?'))) => (true, c),
                _ => {
                    return Err(problem(format!(
                        "unsupported modifier in `${{{name}:...}}`: expected `:-`, `:+` or `:?`"
                    )));
                }
            },
            Some((_, c @ ('-' | '+' | '?'))) => (false, c),
            Some((_, c)) => {
                return Err(problem(format!(
                    "unsupported modifier `{c}` in `${{{name}...}}`: expected `}}`, or `-`, `+` \
                     or `?` with or without `:`"
                )));
            }
            None => return Err(problem(format!("`${{{name}` has no closing `}}`"))),
        };
        let word = self.until(chars, Some('}'))?;
        if chars.next().is_none() {
            return Err(problem(format!("`${{{name}` has no closing `}}`")));
        }
        let value = self.scope.get(&name);
        let set = match value {
            Some(value) => !colon || !value.is_empty(),
            None => false,
        };
        Ok(match (modifier, set) {
            ('-', true) | ('?', true) => value.unwrap_or_default().to_owned(),
            ('-', false) => word,
            ('+', true) => word,
            ('+', false) => String::new(),
            _ => {
                let why = if word.is_empty() {
                    format!("{name} is not set")
                } else {
                    format!("{name}: {word}")
                };
                return Err(problem(why));
            }
        })
    }

    fn value(&mut self, name: &str, at: usize) -> String {
        if !self.scope.declared(name) {
            self.undeclared.push((name.to_owned(), at));
        }
        self.scope.get(name).unwrap_or_default().to_owned()
    }
}

fn take_name(chars: &mut Chars<'_>) -> String {
    let mut name = String::new();
    while let Some(&(_, c)) = chars.peek() {
        if !(c.is_ascii_alphanumeric() || c == '_') {
            break;
        }
        name.push(c);
        chars.next();
    }
    name
}

/// A path in the image: `path` made absolute against `workdir` and cleaned (`.` and `..`
/// removed, `..` stopping at the root), without a trailing `/`.
fn image_path(workdir: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{workdir}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The paths (relative to `context`, sorted) that match a COPY source with `*`, `?` or
/// `[...]` in it, component by component, as Go's `filepath.Match` does.
fn glob(context: &Path, pattern: &str) -> Vec<String> {
    let mut found = vec![String::new()];
    for part in pattern
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
    {
        let mut next = Vec::new();
        for prefix in &found {
            let join = |name: &str| {
                if prefix.is_empty() {
                    name.to_owned()
                } else {
                    format!("{prefix}/{name}")
                }
            };
            if !part.contains(['*', '?', '[']) {
                next.push(join(part));
                continue;
            }
            let Ok(entries) = fs::read_dir(context.join(prefix)) else {
                continue;
            };
            let pattern: Vec<char> = part.chars().collect();
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.file_name().into_string().ok())
                .filter(|name| wildcard(&pattern, &name.chars().collect::<Vec<_>>()))
                .collect();
            names.sort();
            next.extend(names.iter().map(|name| join(name)));
        }
        found = next;
    }
    found.retain(|path| !path.is_empty() && context.join(path).exists());
    found
}

/// Whether `name` matches a pattern with `*`, `?` and `[...]` classes (`[!...]` or `[^...]`
/// negated, `a-z` ranges).
///
/// Every token but `*` matches exactly one character, so after a mismatch only the last `*`
/// needs to take one more character: time stays within pattern × name length, where trying
/// every split for every `*` was exponential (`COPY ****…*x` hung the parser).
fn wildcard(pattern: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Where the pattern goes on after the last `*`, and where in `name` that `*` stops.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pattern.get(p) == Some(&'*') {
            p += 1;
            star = Some((p, n));
            continue;
        }
        if p == pattern.len() && n == name.len() {
            return true;
        }
        if let Some(width) = name.get(n).and_then(|c| one(&pattern[p..], *c)) {
            p += width;
            n += 1;
            continue;
        }
        match star {
            Some((after, stop)) if stop < name.len() => {
                star = Some((after, stop + 1));
                p = after;
                n = stop + 1;
            }
            _ => return false,
        }
    }
}

/// How many characters of `pattern` (which does not start with `*`) match `c`, if they do:
/// one for a literal or `?`, the whole class for `[...]`.
fn one(pattern: &[char], c: char) -> Option<usize> {
    match pattern.split_first()? {
        ('?', _) => Some(1),
        ('[', rest) => {
            let negated = matches!(rest.first(), Some('!' | '^'));
            let body_start = usize::from(negated);
            // A `]` right after the opening is part of the class.
            let Some(close) = rest
                .iter()
                .enumerate()
                .skip(body_start + 1)
                .find(|(_, c)| **c == ']')
                .map(|(index, _)| index)
            else {
                return (c == '[').then_some(1);
            };
            let class = &rest[body_start..close];
            let mut matched = false;
            let mut index = 0;
            while index < class.len() {
                if index + 2 < class.len() && class[index + 1] == '-' {
                    matched |= (class[index]..=class[index + 2]).contains(&c);
                    index += 3;
                } else {
                    matched |= class[index] == c;
                    index += 1;
                }
            }
            (matched != negated).then_some(close + 2)
        }
        (literal, _) => (*literal == c).then_some(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(text: &str) -> Vec<char> {
        text.chars().collect()
    }

    #[test]
    fn wildcards_match_like_go_filepath_match() {
        let yes = |pattern: &str, name: &str| wildcard(&chars(pattern), &chars(name));
        assert!(yes("*.wasm", "app.wasm"));
        assert!(yes("*", ".hidden"));
        assert!(yes("a?c", "abc"));
        assert!(yes("[a-c]x", "bx"));
        assert!(yes("[!a-c]x", "dx"));
        assert!(yes("[]]", "]"));
        assert!(!yes("*.wasm", "app.wat"));
        assert!(!yes("a?c", "ac"));
        assert!(!yes("[^a-c]x", "bx"));
    }

    /// Found reading the code behind `fuzz/fuzz_targets/dockerfile.rs`: each `*` tried every
    /// split of the name, so `COPY static/****…*x` (40 stars) ran for minutes.
    #[test]
    fn many_stars_match_in_linear_time() {
        let yes = |pattern: &str, name: &str| wildcard(&chars(pattern), &chars(name));
        let stars = "*".repeat(40);
        assert!(!yes(&format!("{stars}x"), "index.html"));
        assert!(yes(&format!("{stars}l"), "index.html"));
        let many = "*a".repeat(30);
        assert!(!yes(&format!("{many}b"), &"a".repeat(60)));
        assert!(yes(&many, &"a".repeat(60)));
        assert!(yes("*[a-c]*[!x]", "zzbzzy"));
        assert!(!yes("*[a-c]*[!x]", "zzbzzx"));
        assert!(yes("a*[", "ab["));
    }

    #[test]
    fn image_paths_are_absolute_and_clean() {
        assert_eq!(image_path("/", "app.wasm"), "/app.wasm");
        assert_eq!(image_path("/srv", "./bin/../app.wasm"), "/srv/app.wasm");
        assert_eq!(image_path("/srv", "/../../etc"), "/etc");
        assert_eq!(image_path("/srv", "."), "/srv");
    }

    #[test]
    fn directives_are_comments_of_one_shape() {
        assert_eq!(directive("# escape=`"), Some(("escape", "`", 9)));
        assert_eq!(
            directive("#syntax = docker/dockerfile:1 "),
            Some(("syntax", "docker/dockerfile:1", 10))
        );
        assert_eq!(directive("# a comment"), None);
        assert_eq!(directive("# escape="), None);
        assert_eq!(directive("FROM scratch"), None);
    }

    #[test]
    fn quoted_words_keep_quotes_and_escapes() {
        let words: Vec<String> = quoted_words(r#"ENV A="x y" B=a\ b C='q'"#, 4, '\\')
            .into_iter()
            .map(|word| word.text)
            .collect();
        assert_eq!(words, [r#"A="x y""#, r"B=a\ b", "C='q'"]);
    }
}
