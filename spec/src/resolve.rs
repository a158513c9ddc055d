//! From a deserialized [`Wasmfile`] to a [`BuildPlan`]: build args, toolchain detection,
//! the keys each toolchain accepts, and paths checked against the context.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::Resolved;
use crate::error::{BUILD_CONTEXT, SpecError, WASMFILE_FOLDER};
use crate::interpolate::{interpolate, is_arg_name};
use crate::locate::{Seg, SourceMap, describe_key};
use crate::plan::{
    BuildPlan, CargoSettings, ClangSettings, CopyRule, GoSettings, ImageConfig, Optimize, Policy,
    Precompile, Toolchain,
};
use crate::wasmfile::{BuildSection, ImageSection, ToolchainKind, Wasmfile};

/// How the module gets built, before the toolchain's settings are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Builder {
    Cargo,
    Clang,
    Go,
    TinyGo,
    Prebuilt,
    Command,
}

impl Builder {
    fn name(self) -> &'static str {
        match self {
            Builder::Cargo => "cargo",
            Builder::Clang => "clang",
            Builder::Go => "go",
            Builder::TinyGo => "tinygo",
            Builder::Prebuilt => "prebuilt",
            Builder::Command => "command",
        }
    }
}

impl From<ToolchainKind> for Builder {
    fn from(kind: ToolchainKind) -> Self {
        match kind {
            ToolchainKind::Cargo => Builder::Cargo,
            ToolchainKind::Clang => Builder::Clang,
            ToolchainKind::Go => Builder::Go,
            ToolchainKind::Tinygo => Builder::TinyGo,
            ToolchainKind::Prebuilt => Builder::Prebuilt,
        }
    }
}

/// The builder and how it was chosen, for messages ("cargo (detected from Cargo.toml)").
struct Chosen {
    builder: Builder,
    /// Why, when the Wasmfile did not name it.
    reason: Option<String>,
}

impl Chosen {
    fn describe(&self) -> String {
        match (self.builder, &self.reason) {
            (Builder::Command, _) => "its `command`".to_owned(),
            (builder, Some(reason)) => format!("{} ({reason})", builder.name()),
            (builder, None) => builder.name().to_owned(),
        }
    }
}

/// Keys that only some builders accept, with the builders that accept them.
const TOOLCHAIN_KEYS: &[(&str, &[Builder])] = &[
    ("package", &[Builder::Cargo]),
    ("bin", &[Builder::Cargo]),
    ("profile", &[Builder::Cargo]),
    ("features", &[Builder::Cargo]),
    ("no-default-features", &[Builder::Cargo]),
    ("sources", &[Builder::Clang]),
    ("include", &[Builder::Clang]),
    ("defines", &[Builder::Clang]),
    ("flags", &[Builder::Clang, Builder::Go, Builder::TinyGo]),
    ("libs", &[Builder::Clang]),
    ("main", &[Builder::Go, Builder::TinyGo]),
    ("module", &[Builder::Prebuilt]),
    ("output", &[Builder::Command]),
];

/// "toolchain clang", "toolchains go and tinygo", "a `command` build".
fn describe_builders(builders: &[Builder]) -> String {
    match builders {
        [Builder::Command] => "a `command` build".to_owned(),
        [one] => format!("toolchain {}", one.name()),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(|builder| builder.name()).collect();
            format!("toolchains {} and {}", init.join(", "), last.name())
        }
        [] => "no toolchain".to_owned(),
    }
}

fn is_given(build: &BuildSection, key: &str) -> bool {
    match key {
        "package" => build.package.is_some(),
        "bin" => build.bin.is_some(),
        "profile" => build.profile.is_some(),
        "features" => build.features.is_some(),
        "no-default-features" => build.no_default_features.is_some(),
        "sources" => build.sources.is_some(),
        "include" => build.include.is_some(),
        "defines" => build.defines.is_some(),
        "flags" => build.flags.is_some(),
        "libs" => build.libs.is_some(),
        "main" => build.main.is_some(),
        "module" => build.module.is_some(),
        "output" => build.output.is_some(),
        _ => false,
    }
}

/// Paths as written in the Wasmfile are joined to a base folder without touching the file
/// system; `..` pops a component, so the result never contains `.` or `..`.
pub(crate) fn lexical_join(base: &Path, relative: &Path) -> PathBuf {
    let mut joined = base.to_path_buf();
    for component in relative.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => {
                joined = PathBuf::from(component.as_os_str());
            }
            Component::CurDir => {}
            Component::ParentDir => {
                joined.pop();
            }
            Component::Normal(name) => joined.push(name),
        }
    }
    joined
}

/// What [`Resolver::path`] checks beyond staying inside the base.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MustExist {
    Yes,
    No,
}

struct Resolver<'m, 'a> {
    map: &'m SourceMap<'a>,
    /// The Wasmfile as the caller named it, for messages.
    wasmfile: &'m Path,
}

impl Resolver<'_, '_> {
    fn invalid(&self, at: Option<&[Seg<'_>]>, message: String, hint: Option<&str>) -> SpecError {
        SpecError::Invalid {
            path: self.wasmfile.to_path_buf(),
            location: at.and_then(|at| self.map.value(at)),
            message,
            hint: hint.map(str::to_owned),
        }
    }

    fn invalid_key(&self, at: &[Seg<'_>], message: String, hint: Option<&str>) -> SpecError {
        SpecError::Invalid {
            path: self.wasmfile.to_path_buf(),
            location: self.map.key(at),
            message,
            hint: hint.map(str::to_owned),
        }
    }

    /// Resolves `raw` (the value at `at`) inside `base` (canonical): lexically first, so
    /// `..` cannot climb out, then through the file system, so a symlink cannot lead out
    /// either. A path that does not exist yet is checked through its deepest existing folder.
    ///
    /// Returns the lexical path: later stages use it, so that a file keeps the name it has in
    /// the context even when it is a symlink.
    fn path(
        &self,
        base: &Path,
        within: &'static str,
        raw: &str,
        at: &[Seg<'_>],
        must_exist: MustExist,
        missing_hint: Option<&str>,
    ) -> Result<PathBuf, SpecError> {
        let escapes = |resolved: PathBuf, via_symlink: bool| SpecError::EscapesContext {
            path: self.wasmfile.to_path_buf(),
            location: self.map.value(at),
            key: describe_key(at),
            value: raw.to_owned(),
            resolved,
            within,
            base: base.to_path_buf(),
            via_symlink,
        };
        let lexical = lexical_join(base, Path::new(raw));
        if !lexical.starts_with(base) {
            return Err(escapes(lexical, false));
        }
        let mut exists = false;
        for ancestor in lexical.ancestors() {
            // Errors other than "not found" (a file used as a folder, no permission) also
            // mean this ancestor cannot be followed; its parent is checked instead.
            let Ok(canonical) = fs::canonicalize(ancestor) else {
                continue;
            };
            let real = match lexical.strip_prefix(ancestor) {
                // `join("")` would add a trailing `/`.
                Ok(rest) if !rest.as_os_str().is_empty() => canonical.join(rest),
                _ => canonical,
            };
            if !real.starts_with(base) {
                return Err(escapes(real, true));
            }
            exists = ancestor == lexical;
            break;
        }
        if must_exist == MustExist::Yes && !exists {
            return Err(SpecError::Missing {
                path: self.wasmfile.to_path_buf(),
                location: self.map.value(at),
                key: describe_key(at),
                value: raw.to_owned(),
                resolved: lexical,
                hint: missing_hint.map(str::to_owned),
            });
        }
        Ok(lexical)
    }

    /// Rejects an empty string where a name is needed.
    fn non_empty(&self, value: &str, at: &[Seg<'_>], expected: &str) -> Result<(), SpecError> {
        if value.is_empty() {
            return Err(self.invalid(
                Some(at),
                format!("{} is empty: expected {expected}", describe_key(at)),
                None,
            ));
        }
        Ok(())
    }

    /// Environment variable names may be almost anything, but never empty or with `=`:
    /// the image config stores them as `NAME=VALUE`.
    fn env(&self, env: &BTreeMap<String, String>, table: &str) -> Result<(), SpecError> {
        for name in env.keys() {
            if name.is_empty() || name.contains(['=', '\0']) {
                let at = [Seg::Key(table), Seg::Key("env"), Seg::Key(name)];
                return Err(self.invalid_key(
                    &at,
                    format!(
                        "invalid environment variable name {}: expected a non-empty name \
                         without `=`",
                        describe_key(&at)
                    ),
                    None,
                ));
            }
        }
        Ok(())
    }

    fn choose_builder(&self, build: &BuildSection, context: &Path) -> Result<Chosen, SpecError> {
        if build.command.is_some() {
            return Ok(Chosen {
                builder: Builder::Command,
                reason: None,
            });
        }
        if let Some(kind) = build.toolchain {
            return Ok(Chosen {
                builder: kind.into(),
                reason: None,
            });
        }
        if build.module.is_some() {
            return Ok(Chosen {
                builder: Builder::Prebuilt,
                reason: Some("because `module` is set".to_owned()),
            });
        }
        let detected_from = |file: &str| Some(format!("detected from {file}"));
        if context.join("Cargo.toml").is_file() {
            return Ok(Chosen {
                builder: Builder::Cargo,
                reason: detected_from("Cargo.toml"),
            });
        }
        if context.join("go.mod").is_file() {
            return Ok(Chosen {
                builder: Builder::Go,
                reason: detected_from("go.mod"),
            });
        }
        let entries = fs::read_dir(context).map_err(|source| SpecError::Io {
            path: context.to_path_buf(),
            what: "the build context",
            source,
        })?;
        let mut c_files: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "c") && path.is_file())
            .filter_map(|path| Some(path.file_name()?.to_string_lossy().into_owned()))
            .collect();
        c_files.sort();
        match c_files.first() {
            Some(first) => Ok(Chosen {
                builder: Builder::Clang,
                reason: detected_from(first),
            }),
            None => Err(SpecError::Detect {
                path: self.wasmfile.to_path_buf(),
                context: context.to_path_buf(),
            }),
        }
    }

    /// The first key (in the file) that the chosen builder does not accept.
    fn check_toolchain_keys(&self, build: &BuildSection, chosen: &Chosen) -> Result<(), SpecError> {
        let wrong = TOOLCHAIN_KEYS
            .iter()
            .filter(|(key, builders)| is_given(build, key) && !builders.contains(&chosen.builder))
            .map(|(key, builders)| {
                let location = self.map.key(&[Seg::Key("build"), Seg::Key(key)]);
                (location, key, builders)
            })
            .min_by_key(|(location, _, _)| *location);
        match wrong {
            Some((location, key, builders)) => Err(SpecError::WrongToolchainKey {
                path: self.wasmfile.to_path_buf(),
                location,
                key: (*key).to_owned(),
                applies_to: describe_builders(builders),
                builds_with: chosen.describe(),
            }),
            None => Ok(()),
        }
    }

    fn toolchain(
        &self,
        build: BuildSection,
        chosen: &Chosen,
        context: &Path,
    ) -> Result<Toolchain, SpecError> {
        let b = |key| [Seg::Key("build"), Seg::Key(key)];
        let go = |build: BuildSection| -> Result<GoSettings, SpecError> {
            let main = build.main.unwrap_or_else(|| ".".to_owned());
            self.non_empty(&main, &b("main"), "a Go package such as \"./cmd/app\"")?;
            Ok(GoSettings {
                main,
                flags: build.flags.unwrap_or_default(),
            })
        };
        Ok(match chosen.builder {
            Builder::Cargo => {
                for (key, value) in [
                    ("package", &build.package),
                    ("bin", &build.bin),
                    ("profile", &build.profile),
                ] {
                    if let Some(value) = value {
                        self.non_empty(value, &b(key), "a name")?;
                    }
                }
                Toolchain::Cargo(CargoSettings {
                    package: build.package,
                    bin: build.bin,
                    profile: build.profile.unwrap_or_else(|| "release".to_owned()),
                    features: build.features.unwrap_or_default(),
                    no_default_features: build.no_default_features.unwrap_or(false),
                })
            }
            Builder::Clang => {
                let sources = build.sources.unwrap_or_else(|| vec!["*.c".to_owned()]);
                if sources.is_empty() {
                    return Err(self.invalid(
                        Some(&b("sources")),
                        "`sources` in [build] is empty: expected glob patterns such as \"src/*.c\""
                            .to_owned(),
                        None,
                    ));
                }
                let mut include = Vec::new();
                for (index, raw) in build.include.unwrap_or_default().iter().enumerate() {
                    let at = [Seg::Key("build"), Seg::Key("include"), Seg::Index(index)];
                    let inside =
                        self.path(context, BUILD_CONTEXT, raw, &at, MustExist::No, None)?;
                    include.push(inside);
                }
                Toolchain::Clang(ClangSettings {
                    sources,
                    include,
                    defines: build.defines.unwrap_or_default(),
                    flags: build.flags.unwrap_or_default(),
                    libs: build.libs.unwrap_or_default(),
                })
            }
            Builder::Go => Toolchain::Go(go(build)?),
            Builder::TinyGo => Toolchain::TinyGo(go(build)?),
            Builder::Prebuilt => {
                let Some(raw) = &build.module else {
                    return Err(self.invalid(
                        Some(&b("toolchain")),
                        "toolchain prebuilt needs `module` in [build]: the .wasm file to pack, \
                         relative to the context"
                            .to_owned(),
                        Some("add module = \"path/to/app.wasm\" under [build]"),
                    ));
                };
                let at = b("module");
                let hint = "build the module first, or set `[build] toolchain` to the toolchain that builds it";
                let inside =
                    self.path(context, BUILD_CONTEXT, raw, &at, MustExist::Yes, Some(hint))?;
                if !inside.is_file() {
                    return Err(self.invalid(
                        Some(&at),
                        format!(
                            "{} = {raw:?} is not a file: expected a .wasm module",
                            describe_key(&at)
                        ),
                        None,
                    ));
                }
                Toolchain::Prebuilt { module: inside }
            }
            Builder::Command => {
                let command = build.command.unwrap_or_default();
                if command.first().is_none_or(String::is_empty) {
                    return Err(self.invalid(
                        Some(&b("command")),
                        "`command` in [build] is empty: expected the program and its arguments, \
                         such as [\"make\", \"wasm\"]"
                            .to_owned(),
                        None,
                    ));
                }
                let Some(raw) = &build.output else {
                    return Err(self.invalid_key(
                        &b("command"),
                        "`command` in [build] needs `output`: where the command leaves the \
                         module, relative to the context"
                            .to_owned(),
                        Some("add output = \"path/to/app.wasm\" under [build]"),
                    ));
                };
                let inside = self.path(
                    context,
                    BUILD_CONTEXT,
                    raw,
                    &b("output"),
                    MustExist::No,
                    None,
                )?;
                Toolchain::Command {
                    command,
                    output: inside,
                }
            }
        })
    }

    fn image(&self, image: ImageSection) -> Result<ImageConfig, SpecError> {
        let i = |key| [Seg::Key("image"), Seg::Key(key)];
        if let Some(name) = &image.name {
            self.non_empty(name, &i("name"), "a repository such as \"ghcr.io/me/app\"")?;
        }
        for (index, tag) in image.tags.iter().enumerate() {
            if !is_tag(tag) {
                let at = [Seg::Key("image"), Seg::Key("tags"), Seg::Index(index)];
                return Err(self.invalid(
                    Some(&at),
                    format!(
                        "invalid tag {tag:?} in {}: expected up to 128 letters, digits, `_`, `.` \
                         and `-`, not starting with `.` or `-`",
                        describe_key(&at)
                    ),
                    None,
                ));
            }
        }
        if let Some(entrypoint) = &image.entrypoint
            && entrypoint.first().is_none_or(String::is_empty)
        {
            return Err(self.invalid(
                Some(&i("entrypoint")),
                "`entrypoint` in [image] is empty: expected the program and its arguments, \
                 such as [\"/app.wasm\"]"
                    .to_owned(),
                Some("omit `entrypoint` to run the module itself"),
            ));
        }
        self.env(&image.env, "image")?;
        if !image.workdir.starts_with('/') {
            return Err(self.invalid(
                Some(&i("workdir")),
                format!(
                    "`workdir` in [image] = {:?} is not absolute: expected a path that starts with `/`",
                    image.workdir
                ),
                None,
            ));
        }
        for (table, map) in [
            ("labels", &image.labels),
            ("annotations", &image.annotations),
        ] {
            if map.contains_key("") {
                let at = [Seg::Key("image"), Seg::Key(table), Seg::Key("")];
                return Err(self.invalid_key(
                    &at,
                    format!(
                        "empty key in [image.{table}]: expected a name such as \"org.example.team\""
                    ),
                    None,
                ));
            }
        }
        Ok(ImageConfig {
            name: image.name,
            tags: image.tags,
            format: image.format,
            os: image.os,
            entrypoint: image.entrypoint,
            cmd: image.cmd,
            env: image.env,
            workdir: image.workdir,
            labels: image.labels,
            annotations: image.annotations,
        })
    }
}

/// An OCI tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    tag.len() <= 128
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Applies `--build-arg`s to the declared `[args]`; an undeclared one is only a warning, as
/// in Docker, so one command line can serve several Wasmfiles.
fn build_args(
    declared: &BTreeMap<String, String>,
    given: &BTreeMap<String, String>,
    resolver: &Resolver<'_, '_>,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, String>, SpecError> {
    if let Some(name) = declared.keys().find(|name| !is_arg_name(name)) {
        let at = [Seg::Key("args"), Seg::Key(name)];
        return Err(resolver.invalid_key(
            &at,
            format!(
                "invalid build arg name `{name}` in [args]: expected letters, digits and `_`, \
                 not starting with a digit"
            ),
            None,
        ));
    }
    let mut args = declared.clone();
    for (name, value) in given {
        match args.get_mut(name) {
            Some(arg) => value.clone_into(arg),
            None => warnings.push(format!(
                "build arg {name} was given but the Wasmfile declares no such [args] entry"
            )),
        }
    }
    Ok(args)
}

pub(crate) fn resolve(
    mut wasmfile: Wasmfile,
    map: &SourceMap<'_>,
    path: &Path,
    given: &BTreeMap<String, String>,
) -> Result<Resolved, SpecError> {
    let resolver = Resolver {
        map,
        wasmfile: path,
    };
    let mut warnings = Vec::new();

    let args = build_args(&wasmfile.args, given, &resolver, &mut warnings)?;
    interpolate(&mut wasmfile, &args, given, map, path)?;
    let Wasmfile {
        build,
        optimize,
        precompile,
        image,
        copy,
        args: _,
    } = wasmfile;

    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| SpecError::Io { path, what, source }
    };
    let absolute = std::path::absolute(path).map_err(io("the Wasmfile", path))?;
    let folder = absolute.parent().unwrap_or(Path::new("/"));
    let folder = fs::canonicalize(folder).map_err(io("the Wasmfile's folder", folder))?;
    let wasmfile_path = match absolute.file_name() {
        Some(name) => folder.join(name),
        None => absolute.clone(),
    };

    let context_at = [Seg::Key("build"), Seg::Key("context")];
    let context = resolver.path(
        &folder,
        WASMFILE_FOLDER,
        &build.context,
        &context_at,
        MustExist::Yes,
        None,
    )?;
    // Canonical, as BuildPlan promises; `path` has checked it stays inside the folder.
    let context = fs::canonicalize(&context).map_err(io("the build context", &context))?;
    if !context.is_dir() {
        return Err(resolver.invalid(
            Some(&context_at),
            format!("`context` in [build] = {:?} is not a folder", build.context),
            None,
        ));
    }

    resolver.env(&build.env, "build")?;
    let chosen = resolver.choose_builder(&build, &context)?;
    resolver.check_toolchain_keys(&build, &chosen)?;
    let env = build.env.clone();
    for (index, pattern) in build.allow_imports.iter().enumerate() {
        let at = [
            Seg::Key("build"),
            Seg::Key("allow-imports"),
            Seg::Index(index),
        ];
        let valid = pattern
            .split_once('.')
            .is_some_and(|(module, name)| !module.is_empty() && !name.is_empty());
        if !valid {
            return Err(resolver.invalid(
                Some(&at),
                format!("`allow-imports` in [build] has {pattern:?}: expected `module.name` or `module.*`"),
                Some("such as \"env.log\" or \"env.*\""),
            ));
        }
    }
    let policy = Policy {
        allow_imports: build.allow_imports.clone(),
        exec_model: build.exec_model,
    };
    let toolchain = resolver.toolchain(build, &chosen, &context)?;

    for (index, target) in precompile.targets.iter().enumerate() {
        let at = [
            Seg::Key("precompile"),
            Seg::Key("targets"),
            Seg::Index(index),
        ];
        resolver.non_empty(
            target,
            &at,
            "a target triple such as \"x86_64-unknown-linux-gnu\"",
        )?;
    }

    let image = resolver.image(image)?;

    let mut copies = Vec::with_capacity(copy.len());
    for (index, entry) in copy.into_iter().enumerate() {
        let from_at = [Seg::Key("copy"), Seg::Index(index), Seg::Key("from")];
        let from = resolver.path(
            &context,
            BUILD_CONTEXT,
            &entry.from,
            &from_at,
            MustExist::Yes,
            None,
        )?;
        let to_at = [Seg::Key("copy"), Seg::Index(index), Seg::Key("to")];
        if !entry.to.starts_with('/') {
            return Err(resolver.invalid(
                Some(&to_at),
                format!(
                    "`to` in [[copy]] = {:?} is not absolute: expected a path in the image that \
                     starts with `/`",
                    entry.to
                ),
                Some("end it with `/` to copy into a folder, such as \"/static/\""),
            ));
        }
        if Path::new(&entry.to)
            .components()
            .any(|c| c == Component::ParentDir)
        {
            return Err(resolver.invalid(
                Some(&to_at),
                format!(
                    "`to` in [[copy]] = {:?} contains `..`: expected a plain absolute path",
                    entry.to
                ),
                None,
            ));
        }
        copies.push(CopyRule { from, to: entry.to });
    }

    Ok(Resolved {
        plan: BuildPlan {
            wasmfile: wasmfile_path,
            context,
            toolchain,
            env,
            optimize: Optimize {
                level: optimize.level,
                strip: optimize.strip,
                on_failure: optimize.on_failure,
            },
            precompile: Precompile {
                targets: precompile.targets,
            },
            image,
            copies,
            args,
            policy,
        },
        warnings,
    })
}
