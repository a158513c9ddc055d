//! clang with wasi-libc: one clang invocation, run in the context, compiles `sources` and
//! links a WASI command with lld (`wasm-ld`).
//!
//! The compiler is `CC`, else wasi-sdk's clang (`WASI_SDK_PATH`), else `clang` on PATH. The
//! sysroot is `WASI_SYSROOT`, else wasi-sdk's, else Debian's wasi-libc under `/usr`. The
//! target triple is the one the sysroot has folders for: clang (14 as much as 19) takes
//! `wasm32-wasip1` as WASI, but looks for headers and libraries under the triple as
//! written, and Debian's wasi-libc has only `wasm32-wasi` folders.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use wasmbuild_spec::{BuildPlan, ClangSettings};

use super::process;
use crate::{BuildError, Reporter};

/// Triples a sysroot may have folders for, the preferred first: newer clangs warn that
/// `wasm32-wasi` is deprecated.
const TRIPLES: [&str; 2] = ["wasm32-wasip1", "wasm32-wasi"];

/// Where Debian (and Ubuntu) install wasi-libc: `include/<triple>`, `lib/<triple>`.
const SYSTEM_ROOT: &str = "/usr";

/// wasi-libc's emulation libraries, and the macro its headers want before they declare
/// what the library provides.
const EMULATED: [(&str, &str); 4] = [
    ("wasi-emulated-signal", "_WASI_EMULATED_SIGNAL"),
    (
        "wasi-emulated-process-clocks",
        "_WASI_EMULATED_PROCESS_CLOCKS",
    ),
    ("wasi-emulated-mman", "_WASI_EMULATED_MMAN"),
    ("wasi-emulated-getpid", "_WASI_EMULATED_GETPID"),
];

pub fn build(
    plan: &BuildPlan,
    settings: &ClangSettings,
    reporter: &dyn Reporter,
) -> Result<(String, PathBuf), BuildError> {
    // `[build] env` reaches the compiler, so it also chooses the compiler and the sysroot.
    let var = |name: &str| {
        plan.env
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .filter(|value| !value.trim().is_empty())
    };
    let compiler = Compiler::locate(&var);
    let version = compiler.version(&plan.env)?;
    let sysroot = locate_sysroot(&var, Path::new(SYSTEM_ROOT))
        .map_err(|looked| BuildError::NoWasiLibc { looked })?;
    reporter.step(
        "clang",
        &format!(
            "clang {version} for {}, wasi-libc in {} ({})",
            sysroot.triple,
            sysroot.root.display(),
            sysroot.from
        ),
    );
    let sources = expand_sources(&plan.context, &settings.sources)?;

    let name = module_name(&plan.context);
    // The module goes to `<context>/target/wasmbuild/`, as cargo's do to `target/`: with the
    // project, where `-o` and a person find it, in a folder version control usually ignores
    // already, under a name of our own so a project's own use of `target/` is untouched; not
    // in a shared temp folder, where another user could plant a file at a predictable name.
    let relative_output = Path::new("target")
        .join("wasmbuild")
        .join(format!("{name}.wasm"));
    let output = plan.context.join(&relative_output);
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).map_err(|source| BuildError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    // A module left by an earlier build must not pass for this one's. It is not deleted
    // first: a concurrent build of the same project may be reading it. wasm-ld writes a temp
    // file and renames it, so a fresh module is a new file.
    let earlier = file_identity(&output);

    let guard = wasm_opt_guard(version, compiler.args.iter().chain(&settings.flags));
    if guard == WasmOptGuard::Stub {
        write_stub(&plan.context.join(STUB_DIR))?;
    }
    let mut command = command(
        &compiler,
        &sysroot,
        guard,
        plan,
        settings,
        &sources,
        &relative_output,
    );
    let line = process::display(&command);
    reporter.step("compile", &line);
    let finished = process::run_streaming(&mut command, reporter)?;
    if !finished.success {
        let hint = hint_for(&finished.stderr_tail);
        return Err(BuildError::ToolchainFailed {
            command: line,
            status: finished.status,
            stderr: finished.stderr_tail,
            hint,
        });
    }
    if !output.is_file() || file_identity(&output) == earlier {
        return Err(BuildError::NoNewModule {
            command: line,
            output,
        });
    }
    Ok((name, output))
}

/// The context folder's name, as the default image name can use it: lower case, and `-`
/// for what a repository name may not hold (`My App` → `my-app`).
fn module_name(context: &Path) -> String {
    let folder = context.file_name().unwrap_or_default().to_string_lossy();
    let name: String = folder
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if name.is_empty() {
        "module".to_owned()
    } else {
        name.to_owned()
    }
}

/// Which file is at `path` now: another one after a rename, even within the same second
/// (the inode), or one that reuses a freed inode (the modification time).
#[cfg(unix)]
fn file_identity(path: &Path) -> Option<(u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some((
        metadata.dev(),
        metadata.ino(),
        metadata.mtime(),
        metadata.mtime_nsec(),
    ))
}

#[cfg(not(unix))]
fn file_identity(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// The clang to run: a program and the arguments `CC` puts before ours (`ccache clang`).
#[derive(Debug, PartialEq, Eq)]
struct Compiler {
    program: String,
    args: Vec<String>,
    /// Where it came from, for messages: "(from CC)", "on PATH".
    origin: &'static str,
}

impl Compiler {
    fn locate(var: &dyn Fn(&str) -> Option<String>) -> Compiler {
        if let Some(cc) = var("CC") {
            let mut words = cc.split_whitespace().map(str::to_owned);
            if let Some(program) = words.next() {
                return Compiler {
                    program,
                    args: words.collect(),
                    origin: "(from CC)",
                };
            }
        }
        if let Some(sdk) = var("WASI_SDK_PATH") {
            return Compiler {
                program: Path::new(&sdk)
                    .join("bin")
                    .join("clang")
                    .to_string_lossy()
                    .into_owned(),
                args: Vec::new(),
                origin: "(from WASI_SDK_PATH)",
            };
        }
        Compiler {
            program: "clang".to_owned(),
            args: Vec::new(),
            origin: "on PATH",
        }
    }

    /// Runs `--version`: proves the compiler is there and is clang.
    fn version(&self, env: &BTreeMap<String, String>) -> Result<Version, BuildError> {
        let mut command = Command::new(&self.program);
        command.envs(env).args(&self.args).arg("--version");
        let output = command.output().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                BuildError::CompilerNotFound {
                    compiler: self.program.clone(),
                    origin: self.origin.to_owned(),
                }
            } else {
                BuildError::Spawn {
                    command: process::display(&command),
                    source,
                }
            }
        })?;
        let said = String::from_utf8_lossy(&output.stdout);
        let first_line = said.lines().next().unwrap_or_default().trim();
        match parse_version(first_line) {
            Some(version) if output.status.success() => Ok(version),
            _ => Err(BuildError::NotClang {
                compiler: self.program.clone(),
                origin: self.origin.to_owned(),
                said: if first_line.is_empty() {
                    String::from_utf8_lossy(&output.stderr).trim().to_owned()
                } else {
                    first_line.to_owned()
                },
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Version {
    major: u32,
    minor: u32,
    patch: u32,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The version on the first line of `clang --version`: "Debian clang version 14.0.6",
/// "clang version 19.1.5-wasi-sdk (https://…)", "Ubuntu clang version 18.1.3 (1ubuntu1)".
fn parse_version(first_line: &str) -> Option<Version> {
    let (_, rest) = first_line.split_once("clang version ")?;
    let mut numbers = rest
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()?
        .split('.');
    let mut next = || numbers.next().and_then(|n| n.parse::<u32>().ok());
    let major = next()?;
    Some(Version {
        major,
        minor: next().unwrap_or(0),
        patch: next().unwrap_or(0),
    })
}

/// A wasi-libc sysroot and the triple it has folders for.
#[derive(Debug, PartialEq, Eq)]
struct Sysroot {
    root: PathBuf,
    triple: &'static str,
    /// How it was found: "WASI_SYSROOT", "WASI_SDK_PATH", "Debian's wasi-libc".
    from: &'static str,
}

/// Finds wasi-libc: `WASI_SYSROOT`, else `$WASI_SDK_PATH/share/wasi-sysroot`, else Debian's
/// layout under `system`. A variable that is set is trusted alone: when it points at no
/// sysroot that is the error, rather than quietly building against another libc. The error
/// lists where it looked.
fn locate_sysroot(
    var: &dyn Fn(&str) -> Option<String>,
    system: &Path,
) -> Result<Sysroot, Vec<String>> {
    let libc_in = |root: &Path| {
        TRIPLES.into_iter().find(|triple| {
            root.join("lib").join(triple).join("libc.a").is_file()
                && root.join("include").join(triple).join("stdio.h").is_file()
        })
    };
    let wanted = "lib/wasm32-wasi[p1]/libc.a and include/wasm32-wasi[p1]/stdio.h";
    let mut looked = Vec::new();
    for (name, subfolder) in [
        ("WASI_SYSROOT", None),
        ("WASI_SDK_PATH", Some("share/wasi-sysroot")),
    ] {
        let Some(value) = var(name) else {
            looked.push(format!("{name} (not set)"));
            continue;
        };
        let root = match subfolder {
            Some(sub) => Path::new(&value).join(sub),
            None => PathBuf::from(value),
        };
        return match libc_in(&root) {
            Some(triple) => Ok(Sysroot {
                root,
                triple,
                from: name,
            }),
            None => {
                looked.push(format!("{} from {name} (no {wanted})", root.display()));
                Err(looked)
            }
        };
    }
    match libc_in(system) {
        Some(triple) => Ok(Sysroot {
            root: system.to_path_buf(),
            triple,
            from: "Debian's wasi-libc",
        }),
        None => {
            looked.push(format!(
                "{} (Debian's wasi-libc: no {wanted})",
                system.display()
            ));
            Err(looked)
        }
    }
}

/// The files `patterns` match in `context`, relative to it, sorted and each once.
fn expand_sources(context: &Path, patterns: &[String]) -> Result<Vec<PathBuf>, BuildError> {
    let problem = |pattern: &str, problem: String| BuildError::Sources {
        pattern: pattern.to_owned(),
        problem,
    };
    // As a shell does: `*` stays within a folder and skips hidden files; `**` crosses folders.
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let Some(base) = context.to_str() else {
        return Err(problem(
            patterns.first().map_or("", String::as_str),
            format!(
                "cannot be matched: the build context's path {} is not UTF-8",
                context.display()
            ),
        ));
    };
    let base = glob::Pattern::escape(base);
    let mut sources = BTreeSet::new();
    for pattern in patterns {
        let full = if Path::new(pattern).is_absolute() {
            pattern.clone()
        } else {
            format!("{base}/{pattern}")
        };
        let paths = glob::glob_with(&full, options)
            .map_err(|e| problem(pattern, format!("is not a valid glob: {}", e.msg)))?;
        let mut matched = false;
        for entry in paths {
            let path = entry.map_err(|e| BuildError::Io {
                path: e.path().to_path_buf(),
                source: e.into(),
            })?;
            if !path.is_file() {
                continue;
            }
            // Canonical, so neither `..` nor a symlink carries a source out of the context.
            let real = path
                .canonicalize()
                .map_err(|source| BuildError::Io { path, source })?;
            let Ok(relative) = real.strip_prefix(context) else {
                return Err(problem(
                    pattern,
                    format!(
                        "matches {}, outside the build context {}",
                        real.display(),
                        context.display()
                    ),
                ));
            };
            sources.insert(relative.to_path_buf());
            matched = true;
        }
        if !matched {
            return Err(problem(
                pattern,
                format!("matches no file in {}", context.display()),
            ));
        }
    }
    Ok(sources.into_iter().collect())
}

/// `-D` macros for the emulation libraries in `libs` that `defines` does not set already.
fn emulation_defines(libs: &[String], defines: &[String]) -> Vec<&'static str> {
    EMULATED
        .into_iter()
        .filter(|(lib, _)| {
            libs.iter()
                .any(|l| l.strip_prefix("-l").unwrap_or(l) == *lib)
        })
        .map(|(_, define)| define)
        .filter(|define| !defines.iter().any(|d| d.split('=').next() == Some(*define)))
        .collect()
}

fn command(
    compiler: &Compiler,
    sysroot: &Sysroot,
    guard: WasmOptGuard,
    plan: &BuildPlan,
    settings: &ClangSettings,
    sources: &[PathBuf],
    output: &Path,
) -> Command {
    let context = &plan.context;
    let mut command = Command::new(&compiler.program);
    command
        .current_dir(context)
        .envs(&plan.env)
        .args(&compiler.args)
        .arg(format!("--target={}", sysroot.triple))
        .arg(joined("--sysroot=", sysroot.root.as_os_str()));
    match guard {
        WasmOptGuard::NotNeeded => {}
        WasmOptGuard::Flag => {
            command.arg("--no-wasm-opt");
        }
        // `-B` folders are searched first for the programs clang runs.
        WasmOptGuard::Stub => {
            command.arg(format!("-B{STUB_DIR}/"));
        }
    }
    // Sources are named relative to the context already; this keeps the context's absolute
    // path out of debug info (`-g` in `flags`) and `__FILE__` in included headers, so two
    // checkouts build the same bytes.
    let mut prefix_map = joined("-ffile-prefix-map=", context.as_os_str());
    prefix_map.push("=.");
    command.arg(prefix_map);
    for dir in &settings.include {
        let dir = dir.strip_prefix(context).unwrap_or(dir);
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        command.arg(joined("-I", dir.as_os_str()));
    }
    for define in &settings.defines {
        command.arg(format!("-D{define}"));
    }
    for define in emulation_defines(&settings.libs, &settings.defines) {
        command.arg(format!("-D{define}"));
    }
    command
        .args(&settings.flags)
        .arg("-o")
        .arg(output)
        .args(sources);
    // After the sources: the linker takes from an archive only what earlier files need.
    for lib in &settings.libs {
        let lib = lib.strip_prefix("-l").unwrap_or(lib);
        command.arg(format!("-l{lib}"));
    }
    command
}

/// How clang is kept from running wasm-opt itself. Given `-O` it runs `wasm-opt -O<n>` in
/// place on the module whenever it finds one, without the module's feature flags: the
/// bytes would depend on whether binaryen is installed, an old wasm-opt rejects newer
/// features, and a concurrent build could read a half-rewritten file. wasmbuild runs
/// wasm-opt in its own step (`[optimize]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WasmOptGuard {
    /// No `-O` (or `-O0`): clang does not look for wasm-opt.
    NotNeeded,
    /// `--no-wasm-opt`, which clang has from version 20 on.
    Flag,
    /// Older clangs have no switch: a `wasm-opt` that does nothing, found first through `-B`.
    Stub,
}

/// Where the stand-in `wasm-opt` lives, relative to the context.
const STUB_DIR: &str = "target/wasmbuild/no-wasm-opt";

const STUB: &str = "#!/bin/sh\n\
# wasmbuild: clang before 20 runs wasm-opt on the module when it finds one and -O is\n\
# given. wasmbuild optimizes in its own step, so this one, found first, does nothing.\n\
exit 0\n";

fn wasm_opt_guard<'a>(version: Version, flags: impl Iterator<Item = &'a String>) -> WasmOptGuard {
    // As clang decides: by the last -O flag.
    let optimizing = flags
        .filter(|flag| flag.starts_with("-O"))
        .last()
        .is_some_and(|flag| flag != "-O0");
    if !optimizing {
        WasmOptGuard::NotNeeded
    } else if version.major >= 20 {
        WasmOptGuard::Flag
    } else if cfg!(unix) {
        WasmOptGuard::Stub
    } else {
        WasmOptGuard::NotNeeded
    }
}

/// Writes the stand-in `wasm-opt` unless it is there already. Through a temp file and a
/// rename: a concurrent build may be running the one in place.
fn write_stub(dir: &Path) -> Result<(), BuildError> {
    let path = dir.join("wasm-opt");
    if std::fs::read(&path).is_ok_and(|bytes| bytes == STUB.as_bytes()) {
        return Ok(());
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let temp = dir.join(format!(".wasm-opt.{}", std::process::id()));
    std::fs::write(&temp, STUB).map_err(io(&temp))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755))
            .map_err(io(&temp))?;
    }
    std::fs::rename(&temp, &path).map_err(io(&path))
}

fn joined(flag: &str, value: &std::ffi::OsStr) -> OsString {
    let mut arg = OsString::from(flag);
    arg.push(value);
    arg
}

/// What to do about a failure clang's stderr explains.
fn hint_for(stderr: &str) -> Option<String> {
    if stderr.contains("Executable \"wasm-ld") || stderr.contains("invalid linker name") {
        return Some(
            "clang links WebAssembly with wasm-ld, from lld: install it (Debian: `apt-get install lld`)"
                .to_owned(),
        );
    }
    if stderr.contains("libclang_rt.builtins-wasm32.a") {
        return Some(
            "compiler-rt's WebAssembly builtins are missing: install them for your clang \
             (Debian: `apt-get install libclang-rt-14-dev-wasm32`), or use a wasi-sdk (WASI_SDK_PATH)"
                .to_owned(),
        );
    }
    if stderr.contains("No available targets are compatible with triple") {
        return Some(
            "this clang was built without the WebAssembly target: use LLVM's own clang or a \
             wasi-sdk (WASI_SDK_PATH)"
                .to_owned(),
        );
    }
    // wasi-libc's headers name the library that emulates what WASI lacks: `… compile with
    // -D_WASI_EMULATED_SIGNAL and link with -lwasi-emulated-signal`.
    if let Some((_, after)) = stderr.split_once("link with -lwasi-emulated-") {
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if !name.is_empty() {
            return Some(format!(
                "add \"wasi-emulated-{name}\" to `libs` in [build]: wasi-libc emulates this, \
                 and wasmbuild then defines the macro its headers ask for"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_is_named_after_the_context_as_an_image_name_allows() {
        for (folder, name) in [
            ("/src/c-hello", "c-hello"),
            ("/src/MyApp", "myapp"),
            ("/src/My App (2)", "my-app--2"),
            ("/src/_tool.v2", "tool.v2"),
            ("/src/ünï", "n"),
            ("/", "module"),
        ] {
            assert_eq!(module_name(Path::new(folder)), name, "{folder}");
        }
    }

    #[test]
    fn versions_are_read_from_the_first_line_of_clang_version() {
        let v = |major, minor, patch| {
            Some(Version {
                major,
                minor,
                patch,
            })
        };
        assert_eq!(parse_version("Debian clang version 14.0.6"), v(14, 0, 6));
        assert_eq!(
            parse_version(
                "clang version 19.1.5-wasi-sdk (https://github.com/llvm/llvm-project ab4b5a2d)"
            ),
            v(19, 1, 5)
        );
        assert_eq!(
            parse_version("Ubuntu clang version 18.1.3 (1ubuntu1)"),
            v(18, 1, 3)
        );
        assert_eq!(
            parse_version("Apple clang version 15.0.0 (clang-1500.3.9.4)"),
            v(15, 0, 0)
        );
        assert_eq!(parse_version("clang version 22"), v(22, 0, 0));
        assert_eq!(parse_version("gcc (Debian 12.2.0-14) 12.2.0"), None);
        assert_eq!(parse_version("clang version unknown"), None);
        assert_eq!(parse_version(""), None);
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_compiler_is_cc_then_wasi_sdk_then_path() {
        let cc = Compiler::locate(&env(&[
            ("CC", "ccache clang-19"),
            ("WASI_SDK_PATH", "/sdk"),
        ]));
        assert_eq!(
            (cc.program.as_str(), cc.args, cc.origin),
            ("ccache", vec!["clang-19".to_owned()], "(from CC)")
        );
        let sdk = Compiler::locate(&env(&[("WASI_SDK_PATH", "/opt/wasi-sdk")]));
        assert_eq!(
            (sdk.program.as_str(), sdk.origin),
            ("/opt/wasi-sdk/bin/clang", "(from WASI_SDK_PATH)")
        );
        let path = Compiler::locate(&env(&[]));
        assert_eq!((path.program.as_str(), path.origin), ("clang", "on PATH"));
    }

    /// A sysroot with wasi-libc's marker files for `triples`.
    fn sysroot(root: &Path, triples: &[&str]) {
        for triple in triples {
            for (dir, file) in [("lib", "libc.a"), ("include", "stdio.h")] {
                let dir = root.join(dir).join(triple);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(file), "").unwrap();
            }
        }
    }

    #[test]
    fn the_triple_is_the_one_the_sysroot_has_folders_for() {
        let temp = tempfile::tempdir().unwrap();
        // Debian's wasi-libc (2022): `wasm32-wasi` only, whatever the clang.
        let debian = temp.path().join("usr");
        sysroot(&debian, &["wasm32-wasi"]);
        let found = locate_sysroot(&env(&[]), &debian).unwrap();
        assert_eq!(
            found,
            Sysroot {
                root: debian.clone(),
                triple: "wasm32-wasi",
                from: "Debian's wasi-libc"
            }
        );
        // wasi-sdk ≥ 22 ships both: the new name wins (clang 22 deprecates the old one).
        let sdk = temp.path().join("wasi-sdk");
        sysroot(
            &sdk.join("share/wasi-sysroot"),
            &["wasm32-wasi", "wasm32-wasip1"],
        );
        let found =
            locate_sysroot(&env(&[("WASI_SDK_PATH", sdk.to_str().unwrap())]), &debian).unwrap();
        assert_eq!(found.root, sdk.join("share/wasi-sysroot"));
        assert_eq!(
            (found.triple, found.from),
            ("wasm32-wasip1", "WASI_SDK_PATH")
        );
        // WASI_SYSROOT comes first; wasi-sdk ≥ 34 has `wasm32-wasip1` only.
        let own = temp.path().join("sysroot");
        sysroot(&own, &["wasm32-wasip1"]);
        let found = locate_sysroot(
            &env(&[
                ("WASI_SYSROOT", own.to_str().unwrap()),
                ("WASI_SDK_PATH", sdk.to_str().unwrap()),
            ]),
            &debian,
        )
        .unwrap();
        assert_eq!((found.root, found.triple), (own, "wasm32-wasip1"));
    }

    #[test]
    fn a_missing_sysroot_says_where_it_looked() {
        let temp = tempfile::tempdir().unwrap();
        let nothing = temp.path().join("usr");
        let looked = locate_sysroot(&env(&[]), &nothing).unwrap_err();
        assert_eq!(
            looked,
            vec![
                "WASI_SYSROOT (not set)".to_owned(),
                "WASI_SDK_PATH (not set)".to_owned(),
                format!(
                    "{} (Debian's wasi-libc: no lib/wasm32-wasi[p1]/libc.a and include/wasm32-wasi[p1]/stdio.h)",
                    nothing.display()
                ),
            ]
        );
        // A variable that is set but wrong is the error, even where Debian's libc exists.
        sysroot(&nothing, &["wasm32-wasi"]);
        let looked = locate_sysroot(&env(&[("WASI_SDK_PATH", "/opt/none")]), &nothing).unwrap_err();
        assert_eq!(
            looked,
            vec![
                "WASI_SYSROOT (not set)".to_owned(),
                "/opt/none/share/wasi-sysroot from WASI_SDK_PATH (no lib/wasm32-wasi[p1]/libc.a and \
                 include/wasm32-wasi[p1]/stdio.h)"
                    .to_owned(),
            ]
        );
    }

    #[test]
    fn clang_is_kept_from_running_wasm_opt_itself() {
        let version = |major| Version {
            major,
            minor: 1,
            patch: 0,
        };
        let guard = |major, flags: &[&str]| {
            let flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
            wasm_opt_guard(version(major), flags.iter())
        };
        assert_eq!(guard(14, &[]), WasmOptGuard::NotNeeded);
        assert_eq!(guard(14, &["-Wall", "-O0"]), WasmOptGuard::NotNeeded);
        assert_eq!(guard(14, &["-O0", "-Os"]), WasmOptGuard::Stub);
        assert_eq!(guard(19, &["-O2"]), WasmOptGuard::Stub);
        assert_eq!(guard(20, &["-O2"]), WasmOptGuard::Flag);
        assert_eq!(guard(20, &["-O2", "-O0"]), WasmOptGuard::NotNeeded);

        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join(STUB_DIR);
        write_stub(&dir).unwrap();
        write_stub(&dir).unwrap();
        // Run by the integration tests (here another test's fork could hold it open: ETXTBSY).
        let stub = dir.join("wasm-opt");
        assert_eq!(std::fs::read_to_string(&stub).unwrap(), STUB);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&stub).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o755);
        }
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn emulation_libraries_bring_their_macro() {
        let strings = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            emulation_defines(
                &strings(&["m", "wasi-emulated-signal", "-lwasi-emulated-mman"]),
                &strings(&["NDEBUG"])
            ),
            vec!["_WASI_EMULATED_SIGNAL", "_WASI_EMULATED_MMAN"]
        );
        // Already defined by the user: not twice.
        assert_eq!(
            emulation_defines(
                &strings(&["wasi-emulated-getpid"]),
                &strings(&["_WASI_EMULATED_GETPID=1"])
            ),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn sources_are_sorted_unique_and_inside_the_context() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::create_dir(temp.path().join("ctx")).unwrap();
        let context = temp.path().join("ctx").canonicalize().unwrap();
        for file in [
            "src/b.c",
            "src/a.c",
            "src/util/x.c",
            "src/.hidden.c",
            "src/notes.txt",
        ] {
            let path = context.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        std::fs::write(temp.path().join("outside.c"), "").unwrap();
        let patterns = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            expand_sources(&context, &patterns(&["src/**/*.c", "src/a.c"])).unwrap(),
            vec![
                PathBuf::from("src/a.c"),
                PathBuf::from("src/b.c"),
                PathBuf::from("src/util/x.c")
            ]
        );
        // `*` stays in its folder.
        assert_eq!(
            expand_sources(&context, &patterns(&["src/*.c"])).unwrap(),
            vec![PathBuf::from("src/a.c"), PathBuf::from("src/b.c")]
        );
        let error = expand_sources(&context, &patterns(&["src/*.c", "lib/*.c"])).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "the `sources` pattern \"lib/*.c\" matches no file in {}",
                context.display()
            )
        );
        let error = expand_sources(&context, &patterns(&["../*.c"])).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "the `sources` pattern \"../*.c\" matches {}, outside the build context {}",
                temp.path()
                    .canonicalize()
                    .unwrap()
                    .join("outside.c")
                    .display(),
                context.display()
            )
        );
        let error = expand_sources(&context, &patterns(&["src/[.c"])).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("the `sources` pattern \"src/[.c\" is not a valid glob: "),
            "{error}"
        );
    }

    #[test]
    fn known_failures_get_a_hint() {
        assert!(
            hint_for(
                "clang: error: unable to execute command: Executable \"wasm-ld-14\" doesn't exist!"
            )
            .unwrap()
            .contains("apt-get install lld")
        );
        assert!(
            hint_for("wasm-ld: error: cannot open /usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi/libclang_rt.builtins-wasm32.a: No such file or directory")
                .unwrap()
                .contains("libclang-rt-14-dev-wasm32")
        );
        assert_eq!(
            hint_for(
                "/usr/include/wasm32-wasi/signal.h:2:2: error: \"wasm lacks signal support; to enable minimal signal \
                 emulation, compile with -D_WASI_EMULATED_SIGNAL and link with -lwasi-emulated-signal\""
            )
            .as_deref(),
            Some(
                "add \"wasi-emulated-signal\" to `libs` in [build]: wasi-libc emulates this, and wasmbuild then \
                 defines the macro its headers ask for"
            )
        );
        assert_eq!(hint_for("src/main.c:3:1: error: expected ';'"), None);
        assert_eq!(
            hint_for(
                "clang: error: -lwasi-emulated-signal: 'linker' input unused [-Werror,-Wunused-command-line-argument]"
            ),
            None
        );
    }
}
