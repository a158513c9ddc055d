//! `wasmbuild init`: a Wasmfile for the project in a folder, or, where the folder holds no
//! project, a small new one from `templates/<lang>/` (embedded in the binary). Files that
//! exist are never replaced without `--force`, and an existing project's sources are never
//! written at all.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use wasmbuild_builder::Reporter as _;

use super::hinted;
use crate::cli::GlobalArgs;
use crate::progress::Terminal;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  wasmbuild init                        # a Wasmfile for the Cargo, Go or C project here
  wasmbuild init hello --lang rust      # a new Rust project in hello/
  wasmbuild init --lang go --ci github  # and a workflow that pushes to ghcr.io from main")]
pub struct Args {
    /// The project's folder (created when missing)
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The language; an existing project's is detected (Cargo.toml: rust, go.mod: go, *.c: c),
    /// a new project needs it
    #[arg(long, value_enum)]
    pub lang: Option<Lang>,
    /// The image's name, and a new project's package or module name [default: the package or
    /// module name, else the folder's name]
    #[arg(long)]
    pub name: Option<String>,
    /// Also write a CI workflow that builds the image, and pushes it to ghcr.io from main
    #[arg(long, value_enum, value_name = "SERVICE")]
    pub ci: Option<Ci>,
    /// Overwrite files that already exist
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Cargo, for wasm32-wasip1
    Rust,
    /// clang with wasi-libc
    C,
    /// Go ≥ 1.21 (GOOS=wasip1)
    Go,
    /// TinyGo ≥ 0.30 (-target=wasip1)
    Tinygo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Ci {
    /// GitHub Actions: .github/workflows/wasmbuild.yml
    Github,
}

impl Lang {
    fn word(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::C => "c",
            Lang::Go => "go",
            Lang::Tinygo => "tinygo",
        }
    }

    fn template(self) -> &'static Template {
        match self {
            Lang::Rust => &RUST,
            Lang::C => &C,
            Lang::Go => &GO,
            Lang::Tinygo => &TINYGO,
        }
    }
}

/// A language's Wasmfile, and the files of a new project. `{{name}}` stands for the
/// project's name everywhere; `{{build}}` in the Wasmfile for the toolchain's own keys.
struct Template {
    wasmfile: &'static str,
    /// Paths relative to the project's folder, with their text.
    sources: &'static [(&'static str, &'static str)],
}

const RUST: Template = Template {
    wasmfile: include_str!("../../templates/rust/Wasmfile"),
    sources: &[
        (
            "Cargo.toml",
            include_str!("../../templates/rust/Cargo.toml"),
        ),
        (
            "src/main.rs",
            include_str!("../../templates/rust/src/main.rs"),
        ),
    ],
};

const C: Template = Template {
    wasmfile: include_str!("../../templates/c/Wasmfile"),
    sources: &[("main.c", include_str!("../../templates/c/main.c"))],
};

const GO: Template = Template {
    wasmfile: include_str!("../../templates/go/Wasmfile"),
    sources: &[
        ("go.mod", include_str!("../../templates/go/go.mod")),
        ("main.go", include_str!("../../templates/go/main.go")),
    ],
};

const TINYGO: Template = Template {
    wasmfile: include_str!("../../templates/tinygo/Wasmfile"),
    sources: &[
        ("go.mod", include_str!("../../templates/tinygo/go.mod")),
        ("main.go", include_str!("../../templates/tinygo/main.go")),
    ],
};

/// The repository's own workflow for the wasmbuild action, which builds the Wasmfile at the
/// repository's root; `init` adds the steps that install the project's toolchain.
const GITHUB_WORKFLOW: &str = include_str!("../../templates/github-workflow.yml");
const GITHUB_WORKFLOW_PATH: &str = ".github/workflows/wasmbuild.yml";

/// The toolchain's keys in `[build]`, as detected or as a new project needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Build {
    Cargo {
        /// Pinned even in a one-package folder, so the Wasmfile keeps building the same
        /// package if the folder later becomes a workspace root.
        package: String,
        /// Only when the package has more than one binary: the chosen one, then the others.
        bin: Option<(String, Vec<String>)>,
    },
    Clang {
        /// A glob relative to the folder.
        sources: String,
        include: bool,
    },
    Go {
        /// The main package, then the others found.
        main: String,
        others: Vec<String>,
    },
}

/// What `init` found in (or decided for) the folder.
#[derive(Debug)]
struct Project {
    lang: Lang,
    /// The image's name (and a new project's package or module name).
    name: String,
    build: Build,
    /// The file the settings came from, or `None` for a new project.
    detected_from: Option<&'static str>,
}

/// A file to write, relative to the project's folder.
struct File {
    path: &'static str,
    text: String,
}

pub fn run(args: Args, global: &GlobalArgs) -> Result<ExitCode> {
    let dir = &args.dir;
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!("{} is not a folder", dir.display());
    }
    let terminal = Terminal::new(global);
    let project = project(&args, &terminal)?;
    let mut files = Vec::new();
    if project.detected_from.is_none() {
        for (path, text) in project.lang.template().sources {
            files.push(File {
                path,
                text: text.replace("{{name}}", &project.name),
            });
        }
    }
    files.push(File {
        path: "Wasmfile",
        text: wasmfile(&project),
    });
    if let Some(Ci::Github) = args.ci {
        files.push(File {
            path: GITHUB_WORKFLOW_PATH,
            text: github_workflow(&project),
        });
    }

    // Every file is checked before any is written, so a refusal leaves the folder as it was.
    let mut replaced = Vec::new();
    for file in &files {
        let path = dir.join(file.path);
        let Ok(metadata) = path.symlink_metadata() else {
            replaced.push(false);
            continue;
        };
        if metadata.is_dir() {
            anyhow::bail!(
                "{} is a folder: init writes a file there",
                shown(dir, file.path)
            );
        }
        if !args.force {
            return Err(hinted(
                format!("{} already exists", shown(dir, file.path)),
                "pass --force to overwrite it",
            ));
        }
        replaced.push(true);
    }

    for (file, replaced) in files.iter().zip(&replaced) {
        let path = dir.join(file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        if *replaced {
            // A symbolic link is replaced, never written through.
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot replace {}", path.display()))?;
        }
        std::fs::write(&path, &file.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }

    for (file, replaced) in files.iter().zip(&replaced) {
        let verb = if *replaced { "replaced" } else { "wrote" };
        let about = match (file.path, project.detected_from) {
            ("Wasmfile", Some(from)) => {
                format!(" ({}, from {from})", toolchain_word(&project))
            }
            _ => String::new(),
        };
        terminal.say(&format!("{verb} {}{about}", shown(dir, file.path)));
    }
    let build_dir = if dir == Path::new(".") {
        String::new()
    } else {
        format!(" {}", shell_word(&dir.to_string_lossy()))
    };
    terminal.say("to build and run it:");
    terminal.say(&format!("  wasmbuild build{build_dir} -t {}", project.name));
    terminal.say(&format!("  wasmbuild run {}", project.name));
    terminal.finish();
    Ok(ExitCode::SUCCESS)
}

/// Decides the language and the settings: detected from the folder's project files, or a
/// new project when it holds none.
fn project(args: &Args, terminal: &Terminal) -> Result<Project> {
    let dir = &args.dir;
    let found = Found::scan(dir);
    let lang = match args.lang {
        Some(lang) if found.has(lang) => lang,
        Some(lang) => match found.first() {
            Some((other, marker)) => {
                return Err(hinted(
                    format!(
                        "{} holds a {} project ({marker}), not a {} one",
                        shown_dir(dir),
                        other.word(),
                        lang.word()
                    ),
                    format!(
                        "leave out --lang to write a Wasmfile for the {} project, or start the {} \
                         project in an empty folder",
                        other.word(),
                        lang.word()
                    ),
                ));
            }
            None => return new_project(lang, args),
        },
        None => match found.first() {
            Some((lang, _)) => lang,
            None => {
                return Err(hinted(
                    format!(
                        "found no project in {}: no Cargo.toml, go.mod or .c files",
                        shown_dir(dir)
                    ),
                    "pass --lang rust, c, go or tinygo to start a new project there",
                ));
            }
        },
    };
    let name = args.name.as_deref().map(checked_name).transpose()?;
    match lang {
        Lang::Rust => cargo_project(dir, name),
        Lang::Go | Lang::Tinygo => go_project(dir, lang, name, terminal),
        Lang::C => {
            let (sources, from) = c_sources(dir).context("the C sources are gone")?;
            let name = match name {
                Some(name) => name,
                None => sanitize(&folder_name(dir)?),
            };
            Ok(Project {
                lang,
                name,
                build: Build::Clang {
                    sources,
                    include: dir.join("include").is_dir(),
                },
                detected_from: Some(from),
            })
        }
    }
}

/// Which languages' project files are in the folder.
struct Found {
    cargo: bool,
    go_mod: bool,
    c: Option<&'static str>,
}

impl Found {
    fn scan(dir: &Path) -> Found {
        Found {
            cargo: dir.join("Cargo.toml").is_file(),
            go_mod: dir.join("go.mod").is_file(),
            c: c_sources(dir).map(|(_, from)| from),
        }
    }

    fn has(&self, lang: Lang) -> bool {
        match lang {
            Lang::Rust => self.cargo,
            Lang::Go | Lang::Tinygo => self.go_mod,
            Lang::C => self.c.is_some(),
        }
    }

    /// The language `build` would detect, in its order, and the file that says so.
    fn first(&self) -> Option<(Lang, &'static str)> {
        if self.cargo {
            Some((Lang::Rust, "Cargo.toml"))
        } else if self.go_mod {
            Some((Lang::Go, "go.mod"))
        } else {
            self.c.map(|from| (Lang::C, from))
        }
    }
}

fn new_project(lang: Lang, args: &Args) -> Result<Project> {
    let name = match &args.name {
        Some(name) => checked_name(name)?,
        None => sanitize(&folder_name(&args.dir)?),
    };
    if lang == Lang::Rust && RESERVED_BY_CARGO.contains(&name.as_str()) {
        return Err(hinted(
            format!("`{name}` cannot be the name of a Cargo package"),
            format!("pass another name, e.g. --name {name}-app"),
        ));
    }
    let build = match lang {
        Lang::Rust => Build::Cargo {
            package: name.clone(),
            bin: None,
        },
        Lang::C => Build::Clang {
            sources: "*.c".to_owned(),
            include: false,
        },
        Lang::Go | Lang::Tinygo => Build::Go {
            main: ".".to_owned(),
            others: Vec::new(),
        },
    };
    Ok(Project {
        lang,
        name,
        build,
        detected_from: None,
    })
}

/// Names `cargo new` refuses: Rust keywords, the standard crates, and cargo's own folders.
const RESERVED_BY_CARGO: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "build",
    "const",
    "continue",
    "core",
    "crate",
    "deps",
    "do",
    "dyn",
    "else",
    "enum",
    "examples",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "incremental",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc_macro",
    "proc-macro",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
];

fn cargo_project(dir: &Path, name: Option<String>) -> Result<Project> {
    let path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let manifest: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let Some(package) = manifest.get("package").and_then(toml::Value::as_table) else {
        if !manifest.contains_key("workspace") {
            anyhow::bail!("{} has no [package]", path.display());
        }
        // A workspace root: the package to build has to be named.
        let Some(name) = name else {
            return Err(hinted(
                format!(
                    "{} is a workspace root without a [package] of its own",
                    path.display()
                ),
                "run `wasmbuild init` in the folder of the member to build, or pass --name with \
                 its package name",
            ));
        };
        return Ok(Project {
            lang: Lang::Rust,
            build: Build::Cargo {
                package: name.clone(),
                bin: None,
            },
            name,
            detected_from: Some("Cargo.toml"),
        });
    };
    let package_name = package
        .get("name")
        .and_then(toml::Value::as_str)
        .with_context(|| format!("{} has no `name` in [package]", path.display()))?
        .to_owned();
    let mut bins = cargo_bins(dir, &manifest, package, &package_name);
    if bins.is_empty() {
        return Err(hinted(
            format!(
                "package `{package_name}` has no binary target: a WASI command module is a \
                 program with a `main`"
            ),
            "add src/main.rs, or a [[bin]] in Cargo.toml",
        ));
    }
    let bin = if bins.len() == 1 {
        None
    } else {
        let at = bins.iter().position(|b| *b == package_name).unwrap_or(0);
        let chosen = bins.remove(at);
        Some((chosen, bins))
    };
    Ok(Project {
        lang: Lang::Rust,
        name: name.unwrap_or_else(|| sanitize(&package_name)),
        build: Build::Cargo {
            package: package_name,
            bin,
        },
        detected_from: Some("Cargo.toml"),
    })
}

/// The package's binaries, as cargo finds them: `[[bin]]` entries, and unless
/// `autobins = false`, src/main.rs (named after the package), src/bin/*.rs and
/// src/bin/*/main.rs.
fn cargo_bins(
    dir: &Path,
    manifest: &toml::Table,
    package: &toml::Table,
    package_name: &str,
) -> Vec<String> {
    let mut bins = Vec::new();
    let mut main_rs_declared = false;
    for bin in manifest
        .get("bin")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = bin.get("name").and_then(toml::Value::as_str) {
            bins.push(name.to_owned());
        }
        if bin.get("path").and_then(toml::Value::as_str) == Some("src/main.rs") {
            main_rs_declared = true;
        }
    }
    let autobins = package.get("autobins").and_then(toml::Value::as_bool) != Some(false);
    if autobins {
        if !main_rs_declared && dir.join("src/main.rs").is_file() {
            bins.push(package_name.to_owned());
        }
        for path in read_dir_sorted(&dir.join("src/bin")) {
            let Some(stem) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                continue;
            };
            let is_file = path.is_file() && path.extension().is_some_and(|e| e == "rs");
            if is_file || path.join("main.rs").is_file() {
                bins.push(stem);
            }
        }
    }
    bins.sort();
    bins.dedup();
    bins
}

fn go_project(
    dir: &Path,
    lang: Lang,
    name: Option<String>,
    terminal: &Terminal,
) -> Result<Project> {
    let path = dir.join("go.mod");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let module = go_module_path(&text).ok_or_else(|| {
        hinted(
            format!("{} has no `module` line", path.display()),
            "run `go mod init <module path>` first",
        )
    })?;
    let name = match name {
        Some(name) => name,
        None => sanitize(last_element(&module)),
    };
    let mut mains = go_main_packages(dir);
    let (main, others) = if mains.is_empty() {
        // Written anyway: the user knows where the program is better than a guess does.
        terminal.warn(&format!(
            "found no `package main` in {}, its cmd/* or its subfolders: set `main` in the \
             Wasmfile to the package to build",
            shown_dir(dir)
        ));
        (".".to_owned(), Vec::new())
    } else {
        // `./cmd/<name>` is the convention for a module's main program.
        let at = mains
            .iter()
            .position(|m| m.rsplit('/').next() == Some(last_element(&module)))
            .unwrap_or(0);
        let main = mains.remove(at);
        (main, mains)
    };
    Ok(Project {
        lang,
        name,
        build: Build::Go { main, others },
        detected_from: Some("go.mod"),
    })
}

/// The module path of a go.mod: `module example.com/app` (quoted or not, comments aside).
fn go_module_path(go_mod: &str) -> Option<String> {
    go_mod.lines().find_map(|line| {
        let line = line.split("//").next().unwrap_or_default().trim();
        let rest = line.strip_prefix("module")?;
        if !rest.starts_with(char::is_whitespace) && !rest.starts_with('"') {
            return None;
        }
        let path = rest.trim().trim_matches(|c| c == '"' || c == '`');
        (!path.is_empty()).then(|| path.to_owned())
    })
}

/// `example.com/app` → `app`; a major-version suffix is skipped (`example.com/app/v2` → `app`).
fn last_element(module: &str) -> &str {
    let mut parts = module.rsplit('/');
    let last = parts.next().unwrap_or(module);
    let is_major =
        last.len() > 1 && last.starts_with('v') && last[1..].bytes().all(|b| b.is_ascii_digit());
    match parts.next() {
        Some(before) if is_major => before,
        _ => last,
    }
}

/// The folder's main packages, as `main` values: `.` alone when the folder itself is one,
/// else those in `cmd/*`, else those in its immediate subfolders.
fn go_main_packages(dir: &Path) -> Vec<String> {
    if is_go_main_package(dir) {
        return vec![".".to_owned()];
    }
    let below = |folder: &str, prefix: &str| -> Vec<String> {
        read_dir_sorted(&dir.join(folder))
            .into_iter()
            .filter(|path| {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                // The folders go itself ignores.
                !(name.starts_with('.') || name.starts_with('_') || name == "testdata")
                    && name != "vendor"
                    && is_go_main_package(path)
            })
            .filter_map(|path| {
                let name = path.file_name()?.to_string_lossy().into_owned();
                Some(format!("{prefix}{name}"))
            })
            .collect()
    };
    let commands = below("cmd", "./cmd/");
    if !commands.is_empty() {
        return commands;
    }
    below(".", "./")
}

/// Whether a folder holds a Go file (not a test) whose package clause is `package main`.
fn is_go_main_package(folder: &Path) -> bool {
    read_dir_sorted(folder).into_iter().any(|path| {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        name.ends_with(".go")
            && !name.ends_with("_test.go")
            && path.is_file()
            && std::fs::read_to_string(&path).is_ok_and(|text| go_package(&text) == Some("main"))
    })
}

/// The name in a Go file's package clause, skipping the comments before it.
fn go_package(source: &str) -> Option<&str> {
    let mut in_block = false;
    for line in source.lines() {
        let mut line = line.trim();
        if in_block {
            let (_, after) = line.split_once("*/")?;
            line = after.trim();
            in_block = false;
        }
        while let Some(rest) = line.strip_prefix("/*") {
            match rest.split_once("*/") {
                Some((_, after)) => line = after.trim(),
                None => {
                    in_block = true;
                    line = "";
                }
            }
        }
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let name = line.strip_prefix("package")?;
        return name
            .split(|c: char| c.is_whitespace() || c == '/' || c == ';')
            .find(|word| !word.is_empty());
    }
    None
}

/// The C sources of a folder, as a `sources` glob, and the example the message names:
/// `*.c` when there are some at the top, else `src/**/*.c` when src/ holds some.
fn c_sources(dir: &Path) -> Option<(String, &'static str)> {
    let is_c = |path: &Path| path.extension().is_some_and(|e| e == "c") && path.is_file();
    if read_dir_sorted(dir).iter().any(|p| is_c(p)) {
        return Some(("*.c".to_owned(), "*.c"));
    }
    let mut pending = vec![dir.join("src")];
    while let Some(folder) = pending.pop() {
        for path in read_dir_sorted(&folder) {
            if is_c(&path) {
                return Some(("src/**/*.c".to_owned(), "src/**/*.c"));
            }
            if path.is_dir() && !path.is_symlink() {
                pending.push(path);
            }
        }
    }
    None
}

/// A folder's entries, sorted; none when it cannot be read.
fn read_dir_sorted(folder: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .filter_map(|entry| Some(entry.ok()?.path()))
        .collect();
    paths.sort();
    paths
}

fn wasmfile(project: &Project) -> String {
    let template = project.lang.template().wasmfile;
    template
        .replace("{{build}}\n", &build_keys(&project.build))
        .replace("{{name}}", &project.name)
}

/// The `[build]` keys of the toolchain, one per line, with a short comment.
fn build_keys(build: &Build) -> String {
    let mut lines = Vec::new();
    match build {
        Build::Cargo { package, bin } => {
            lines.push(key_line(
                "package",
                toml_string(package),
                "the package to build",
            ));
            if let Some((bin, others)) = bin {
                let comment = format!("its binary; the others: {}", others.join(", "));
                lines.push(key_line("bin", toml_string(bin), &comment));
            }
        }
        Build::Clang { sources, include } => {
            let sources = toml_array(std::slice::from_ref(sources));
            lines.push(key_line(
                "sources",
                sources,
                "globs: `*` in one folder, `**` across",
            ));
            if *include {
                lines.push(key_line(
                    "include",
                    toml_array(&["include".to_owned()]),
                    "header folders (-I)",
                ));
            }
            lines.push(key_line(
                "flags",
                toml_array(&["-O2".to_owned(), "-Wall".to_owned()]),
                "more clang flags",
            ));
        }
        Build::Go { main, others } => {
            let comment = if others.is_empty() {
                "the main package, e.g. \"./cmd/app\"".to_owned()
            } else {
                format!("the main package; the others: {}", others.join(", "))
            };
            lines.push(key_line("main", toml_string(main), &comment));
        }
    }
    lines.concat()
}

/// `key = value` with its comment in the template's comment column.
fn key_line(key: &str, value: String, comment: &str) -> String {
    format!("{:<26} # {comment}\n", format!("{key} = {value}"))
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

fn toml_array(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| toml_string(item)).collect();
    format!("[{}]", items.join(", "))
}

fn toolchain_word(project: &Project) -> &'static str {
    match project.lang {
        Lang::Rust => "cargo",
        Lang::C => "clang",
        Lang::Go => "go",
        Lang::Tinygo => "tinygo",
    }
}

fn github_workflow(project: &Project) -> String {
    // The action installs wasmbuild, wasm-opt and Rust's wasm32-wasip1 target; the runner
    // has Go, but no wasi-libc and no TinyGo.
    let setup = match project.lang {
        Lang::Rust => "",
        Lang::C => {
            "      - name: Install wasi-sdk (clang with wasi-libc)\n        \
             run: |\n          \
             curl -sSfL https://github.com/WebAssembly/wasi-sdk/releases/download/wasi-sdk-25/wasi-sdk-25.0-x86_64-linux.tar.gz | tar -xz -C \"$RUNNER_TEMP\"\n          \
             echo \"WASI_SDK_PATH=$RUNNER_TEMP/wasi-sdk-25.0-x86_64-linux\" >> \"$GITHUB_ENV\"\n"
        }
        Lang::Go => {
            "      - uses: actions/setup-go@v5\n        \
             with:\n          \
             go-version: stable\n"
        }
        Lang::Tinygo => {
            "      - uses: actions/setup-go@v5\n        \
             with:\n          \
             go-version: \"1.24\"\n      \
             - uses: acifani/setup-tinygo@v2\n        \
             with:\n          \
             tinygo-version: \"0.37.0\"\n"
        }
    };
    // Before the step that runs the action.
    let Some(action) = GITHUB_WORKFLOW.find("uses: wasmbuild/wasmbuild@") else {
        return GITHUB_WORKFLOW.to_owned();
    };
    let step = GITHUB_WORKFLOW[..action]
        .rfind("\n      - ")
        .map_or(0, |at| at + 1);
    let mut workflow = GITHUB_WORKFLOW.to_owned();
    workflow.insert_str(step, setup);
    workflow
}

/// A name that is at once a valid repository path component, Cargo package name and Go
/// module path: lower-case letters and digits, single `-` or `_` between them, a letter first.
fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
        && !bytes
            .windows(2)
            .any(|pair| matches!(pair, [b'-' | b'_', b'-' | b'_']))
}

fn checked_name(name: &str) -> Result<String> {
    if is_valid_name(name) {
        return Ok(name.to_owned());
    }
    Err(hinted(
        format!(
            "`{name}` cannot be the name: use lower-case letters, digits, and `-` or `_` between \
             them, starting with a letter"
        ),
        format!("pass --name {}", sanitize(name)),
    ))
}

/// Any text made into a valid name: `My App` → `my-app`, `2048` → `app-2048`.
fn sanitize(raw: &str) -> String {
    let mut name = String::new();
    for c in raw.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
        } else if !name.is_empty() && !name.ends_with(['-', '_']) {
            name.push(if c == '_' { '_' } else { '-' });
        }
    }
    let name = name.trim_end_matches(['-', '_']);
    if name.is_empty() {
        "app".to_owned()
    } else if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("app-{name}")
    } else {
        name.to_owned()
    }
}

/// The folder's own name, also for `.` or a folder that does not exist yet.
fn folder_name(dir: &Path) -> Result<String> {
    let absolute =
        std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let absolute = absolute.canonicalize().unwrap_or(absolute);
    Ok(absolute
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default())
}

/// A path inside the project's folder as the user would type it.
fn shown(dir: &Path, path: &str) -> String {
    if dir == Path::new(".") {
        path.to_owned()
    } else {
        dir.join(path).display().to_string()
    }
}

fn shown_dir(dir: &Path) -> String {
    if dir == Path::new(".") {
        "the current folder".to_owned()
    } else {
        dir.display().to_string()
    }
}

/// `text` as one word for a POSIX shell.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn project(lang: Lang, build: Build) -> Project {
        Project {
            lang,
            name: "greeter".to_owned(),
            build,
            detected_from: None,
        }
    }

    fn plan(project: &Project) -> wasmbuild_spec::BuildPlan {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Wasmfile");
        let text = wasmfile(project);
        assert!(!text.contains("{{"), "a placeholder is left:\n{text}");
        wasmbuild_spec::parse(&text, &path, &wasmbuild_spec::Options::default())
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .plan
    }

    #[test]
    fn every_template_writes_a_wasmfile_the_spec_accepts() {
        use wasmbuild_spec::{OptLevel, Strip, Toolchain};
        for lang in [Lang::Rust, Lang::C, Lang::Go, Lang::Tinygo] {
            let project = new_project(
                lang,
                &Args {
                    dir: PathBuf::from("greeter"),
                    lang: Some(lang),
                    name: None,
                    ci: None,
                    force: false,
                },
            )
            .unwrap();
            let plan = plan(&project);
            assert_eq!(plan.toolchain.name(), toolchain_word(&project));
            assert_eq!(plan.optimize.level, OptLevel::Os);
            assert_eq!(plan.optimize.strip, Strip::Debug);
            assert_eq!(plan.image.tags, ["latest"]);
            // Pushing needs a name given on purpose, not a guess at Docker Hub.
            assert_eq!(plan.image.name, None);
            match (lang, &plan.toolchain) {
                (Lang::Rust, Toolchain::Cargo(cargo)) => {
                    assert_eq!(cargo.package.as_deref(), Some("greeter"));
                    assert_eq!(cargo.bin, None);
                    assert_eq!(cargo.profile, "release");
                }
                (Lang::C, Toolchain::Clang(clang)) => {
                    assert_eq!(clang.sources, ["*.c"]);
                    assert!(clang.include.is_empty());
                }
                (Lang::Go, Toolchain::Go(go)) | (Lang::Tinygo, Toolchain::TinyGo(go)) => {
                    assert_eq!(go.main, ".");
                }
                (lang, toolchain) => panic!("{lang:?} gave {toolchain:?}"),
            }
        }
    }

    #[test]
    fn detected_settings_write_a_wasmfile_the_spec_accepts() {
        use wasmbuild_spec::Toolchain;
        let cargo = project(
            Lang::Rust,
            Build::Cargo {
                package: "greeter".to_owned(),
                bin: Some(("greet".to_owned(), vec!["admin".to_owned()])),
            },
        );
        let Toolchain::Cargo(settings) = plan(&cargo).toolchain else {
            panic!("cargo")
        };
        assert_eq!(settings.bin.as_deref(), Some("greet"));

        let clang = project(
            Lang::C,
            Build::Clang {
                sources: "src/**/*.c".to_owned(),
                include: true,
            },
        );
        let Toolchain::Clang(settings) = plan(&clang).toolchain else {
            panic!("clang")
        };
        assert_eq!(settings.sources, ["src/**/*.c"]);
        assert!(settings.include[0].ends_with("include"));
        assert_eq!(settings.flags, ["-O2", "-Wall"]);

        let go = project(
            Lang::Tinygo,
            Build::Go {
                main: "./cmd/greet".to_owned(),
                others: vec!["./cmd/admin".to_owned()],
            },
        );
        let Toolchain::TinyGo(settings) = plan(&go).toolchain else {
            panic!("tinygo")
        };
        assert_eq!(settings.main, "./cmd/greet");
    }

    /// Every file under templates/<lang>/ is embedded, so none is silently left out.
    #[test]
    fn every_template_file_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        for lang in [Lang::Rust, Lang::C, Lang::Go, Lang::Tinygo] {
            let folder = root.join(lang.word());
            let mut on_disk = Vec::new();
            let mut pending = vec![folder.clone()];
            while let Some(next) = pending.pop() {
                for path in read_dir_sorted(&next) {
                    if path.is_dir() {
                        pending.push(path);
                    } else {
                        let relative = path.strip_prefix(&folder).unwrap();
                        on_disk.push(relative.to_string_lossy().replace('\\', "/"));
                    }
                }
            }
            on_disk.sort();
            let template = lang.template();
            let mut embedded: Vec<String> = template
                .sources
                .iter()
                .map(|(path, _)| (*path).to_owned())
                .chain(["Wasmfile".to_owned()])
                .collect();
            embedded.sort();
            assert_eq!(on_disk, embedded, "templates/{}", lang.word());
            for (path, text) in template.sources {
                let on_disk = std::fs::read_to_string(folder.join(path)).unwrap();
                assert_eq!(&on_disk, text, "templates/{}/{path}", lang.word());
            }
        }
    }

    #[test]
    fn the_workflow_installs_the_toolchain_before_the_action_runs() {
        for (lang, setup) in [
            (Lang::Rust, None),
            (Lang::C, Some("WASI_SDK_PATH=")),
            (Lang::Go, Some("uses: actions/setup-go@")),
            (Lang::Tinygo, Some("uses: acifani/setup-tinygo@")),
        ] {
            let text = github_workflow(&project(
                lang,
                Build::Go {
                    main: ".".to_owned(),
                    others: Vec::new(),
                },
            ));
            let action = text.find("uses: wasmbuild/wasmbuild@").unwrap();
            match setup {
                Some(setup) => assert!(text.find(setup).unwrap() < action, "{text}"),
                None => assert_eq!(text, GITHUB_WORKFLOW),
            }
            assert!(text.contains("\n      - "), "{text}");
        }
    }

    #[test]
    fn names_are_made_valid() {
        for (raw, name) in [
            ("hello", "hello"),
            ("My App", "my-app"),
            ("my_app", "my_app"),
            ("a__b--c", "a_b-c"),
            ("-x-", "x"),
            ("2048", "app-2048"),
            ("", "app"),
            ("Ünï", "n"),
        ] {
            let made = sanitize(raw);
            assert_eq!(made, name, "{raw:?}");
            assert!(is_valid_name(&made), "{made:?}");
        }
        for bad in ["", "App", "-a", "a-", "a--b", "a_-b", "1a", "a.b", "a b"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn go_mod_and_package_clauses_are_read() {
        assert_eq!(
            go_module_path("// x\nmodule example.com/tools/greeter/v2 // mine\n\ngo 1.21\n")
                .as_deref(),
            Some("example.com/tools/greeter/v2")
        );
        assert_eq!(
            go_module_path("module \"greeter\"\n").as_deref(),
            Some("greeter")
        );
        assert_eq!(go_module_path("modules x\n"), None);
        assert_eq!(last_element("example.com/tools/greeter/v2"), "greeter");
        assert_eq!(last_element("greeter"), "greeter");
        assert_eq!(last_element("example.com/v"), "v");
        assert_eq!(
            go_package("// Copyright\n/* a\n b */\n//go:build wasip1\n\npackage main // x\n"),
            Some("main")
        );
        assert_eq!(go_package("/* x */ package util\n"), Some("util"));
        assert_eq!(go_package("func main() {}\n"), None);
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word("apps/hello"), "apps/hello");
        assert_eq!(shell_word("my app"), "'my app'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
