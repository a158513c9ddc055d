//! `cargo build --target wasm32-wasip1`, the module found from cargo's JSON messages (so a
//! `CARGO_TARGET_DIR`, from the environment or `[build] env`, needs nothing here). Where the
//! workspace has a Cargo.lock, the build is held to it with `--locked`.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use cargo_metadata::{Message, TargetKind};
use wasmbuild_spec::{BuildPlan, CargoSettings};

use super::process;
use crate::{BuildError, Reporter};

pub const TARGET: &str = "wasm32-wasip1";

/// One binary cargo produced for the target.
struct Built {
    /// The package's name.
    package: String,
    name: String,
    path: PathBuf,
}

pub fn build(
    plan: &BuildPlan,
    settings: &CargoSettings,
    reporter: &dyn Reporter,
) -> Result<(String, PathBuf), BuildError> {
    let lock = lockfile(&plan.context);
    let mut installed_target = false;
    loop {
        let mut command = command(plan, settings, lock.is_some());
        let line = process::display(&command);
        reporter.step("compile", &line);
        let (finished, built) = process::run(&mut command, reporter, read_messages)?;
        if !finished.success {
            if !installed_target && target_missing(&finished.stderr_tail) && has_rustup() {
                install_target(plan, reporter)?;
                installed_target = true;
                continue;
            }
            let hint = hint_for(&finished.stderr_tail, lock.as_deref());
            return Err(BuildError::ToolchainFailed {
                command: line,
                status: finished.status,
                stderr: finished.stderr_tail,
                hint,
            });
        }
        return choose(built, settings, line);
    }
}

fn command(plan: &BuildPlan, settings: &CargoSettings, locked: bool) -> Command {
    // `cargo` from PATH, not `$CARGO`: through rustup's proxy a rust-toolchain file in the
    // project picks its toolchain.
    let mut command = Command::new("cargo");
    command
        .current_dir(&plan.context)
        .envs(&plan.env)
        .args([
            "build",
            "--target",
            TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .args(["--profile", &settings.profile]);
    if let Some(package) = &settings.package {
        command.args(["--package", package]);
    }
    if let Some(bin) = &settings.bin {
        command.args(["--bin", bin]);
    }
    if !settings.features.is_empty() {
        command.args(["--features", &settings.features.join(",")]);
    }
    if settings.no_default_features {
        command.arg("--no-default-features");
    }
    if locked {
        // The image is built from the versions the project committed, never from whatever
        // the registry offers today.
        command.arg("--locked");
    }
    command
}

fn read_messages(stdout: &mut dyn Read) -> Vec<Built> {
    let mut built = Vec::new();
    for message in Message::parse_stream(BufReader::new(stdout)) {
        let Ok(Message::CompilerArtifact(artifact)) = message else {
            continue;
        };
        if !artifact.target.kind.contains(&TargetKind::Bin) {
            continue;
        }
        if let Some(path) = artifact.executable {
            built.push(Built {
                package: package_name(&artifact.package_id.repr),
                name: artifact.target.name.clone(),
                path: path.into_std_path_buf(),
            });
        }
    }
    built
}

/// A package's name from its ID: `path+file:///w/crates/app#0.1.0`,
/// `path+file:///w#app@0.1.0`, `registry+https://…#choose@1.3.7`, or before cargo 1.77
/// `app 0.1.0 (path+file:///w/crates/app)`.
fn package_name(id: &str) -> String {
    if let Some((name, _)) = id.split_once(' ') {
        return name.to_owned();
    }
    let (url, fragment) = id.rsplit_once('#').unwrap_or((id, ""));
    if let Some((name, _)) = fragment.split_once('@') {
        return name.to_owned();
    }
    if !fragment.is_empty() && !fragment.starts_with(|c: char| c.is_ascii_digit()) {
        return fragment.to_owned();
    }
    // The URL's last segment is the name when the fragment is only a version.
    let path = url.split('?').next().unwrap_or(url).trim_end_matches('/');
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

fn choose(
    built: Vec<Built>,
    settings: &CargoSettings,
    command: String,
) -> Result<(String, PathBuf), BuildError> {
    let describe = |built: &[&Built]| {
        let mut names: Vec<String> = built
            .iter()
            .map(|b| format!("{} ({})", b.name, b.package))
            .collect();
        // Cargo reports binaries in the order they finish; the message should not vary.
        names.sort();
        names
    };
    let chosen: Vec<&Built> = built
        .iter()
        .filter(|b| settings.bin.as_ref().is_none_or(|bin| &b.name == bin))
        .collect();
    match chosen.as_slice() {
        [only] => Ok((only.name.clone(), only.path.clone())),
        [] => Err(BuildError::NoArtifact {
            command,
            bin: settings.bin.clone(),
            found: describe(&built.iter().collect::<Vec<_>>()),
        }),
        // Several, or one name in several packages of a workspace.
        several => Err(BuildError::Ambiguous {
            command,
            found: describe(several),
        }),
    }
}

/// The Cargo.lock a build in `context` uses, if there is one: the one at the workspace root.
/// Found by reading the few Cargo.toml files cargo itself reads, not by asking cargo:
/// `cargo locate-project --workspace` costs a process (about 20 ms) on every no-op rebuild.
fn lockfile(context: &Path) -> Option<PathBuf> {
    let lock = workspace_root(context)?.join("Cargo.lock");
    lock.is_file().then_some(lock)
}

/// Cargo's rule: the package is the nearest Cargo.toml at or above `context`. Its workspace
/// root is that manifest if it has a `[workspace]`, else the folder its `package.workspace`
/// names, else the nearest Cargo.toml above it with a `[workspace]` that does not exclude it,
/// else the package itself. A lock file anywhere else is not this build's: a project with
/// its own `[workspace]` and no lock, inside another project that has one, is not locked.
fn workspace_root(context: &Path) -> Option<PathBuf> {
    let (package_dir, manifest) = context
        .ancestors()
        .find_map(|dir| Some((dir, Manifest::read(dir)?)))?;
    if manifest.workspace.is_some() {
        return Some(package_dir.to_path_buf());
    }
    if let Some(root) = &manifest.package_workspace {
        return Some(package_dir.join(root));
    }
    let package_manifest = package_dir.join("Cargo.toml");
    for dir in package_dir.ancestors().skip(1) {
        // Cargo stops here too: `cargo package` verifies packages in target/package.
        if dir.ends_with("target/package") {
            break;
        }
        if let Some(Manifest {
            workspace: Some(workspace),
            ..
        }) = Manifest::read(dir)
            && !workspace.excludes(dir, &package_manifest)
        {
            return Some(dir.to_path_buf());
        }
    }
    Some(package_dir.to_path_buf())
}

/// What the workspace search needs from one Cargo.toml.
#[derive(Debug, Default, PartialEq, Eq)]
struct Manifest {
    /// A `[workspace]` table (in any spelling): this manifest is a workspace root.
    workspace: Option<WorkspaceTable>,
    /// `package.workspace`: the root this package names, relative to it.
    package_workspace: Option<String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct WorkspaceTable {
    members: Vec<String>,
    exclude: Vec<String>,
}

impl WorkspaceTable {
    /// Cargo's test: under an `exclude` path and not under a `members` one (as written:
    /// a glob there never matches, as in cargo).
    fn excludes(&self, root: &Path, manifest: &Path) -> bool {
        let under = |path: &String| manifest.starts_with(root.join(path));
        self.exclude.iter().any(under) && !self.members.iter().any(under)
    }
}

impl Manifest {
    fn read(dir: &Path) -> Option<Manifest> {
        let text = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
        Some(Manifest::scan(&text))
    }

    /// Reads the few keys the search needs by their lines: table headers and `key = value`,
    /// an array read on to its closing bracket. Not a TOML parser (this crate has none, and
    /// Cargo.toml files keep to these shapes); cargo itself reports a malformed one.
    fn scan(text: &str) -> Manifest {
        let mut manifest = Manifest::default();
        let mut table = String::new();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let line = without_comment(line).trim();
            if line.starts_with('[') {
                table = dotted_key(line.trim_matches(|c| c == '[' || c == ']'));
                if table == "workspace" || table.starts_with("workspace.") {
                    manifest.workspace.get_or_insert_default();
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let key = match (table.as_str(), dotted_key(key)) {
                ("", key) => key,
                (table, key) => format!("{table}.{key}"),
            };
            match key.as_str() {
                "package.workspace" => {
                    manifest.package_workspace = strings(value).into_iter().next();
                }
                "workspace.members" | "workspace.exclude" => {
                    let mut value = value.to_owned();
                    while brackets(&value) > 0 {
                        let Some(next) = lines.next() else { break };
                        value.push('\n');
                        value.push_str(without_comment(next));
                    }
                    let workspace = manifest.workspace.get_or_insert_default();
                    if key == "workspace.members" {
                        workspace.members = strings(&value);
                    } else {
                        workspace.exclude = strings(&value);
                    }
                }
                key if key == "workspace" || key.starts_with("workspace.") => {
                    manifest.workspace.get_or_insert_default();
                }
                _ => {}
            }
        }
        manifest
    }
}

/// `a . "b"` → `a.b`.
fn dotted_key(key: &str) -> String {
    key.split('.')
        .map(|part| part.trim().trim_matches(|c| c == '"' || c == '\''))
        .collect::<Vec<_>>()
        .join(".")
}

/// Walks a TOML fragment's characters, telling `visit` each one outside a string, with
/// strings (their contents, escapes resolved) handed to `string`; stops when `visit` says so.
fn walk(text: &str, mut visit: impl FnMut(usize, char) -> bool, mut string: impl FnMut(String)) {
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' | '\'' => {
                let mut value = String::new();
                while let Some((_, next)) = chars.next() {
                    match next {
                        '\\' if c == '"' => value.extend(chars.next().map(|(_, e)| e)),
                        _ if next == c => break,
                        _ => value.push(next),
                    }
                }
                string(value);
            }
            _ => {
                if !visit(at, c) {
                    return;
                }
            }
        }
    }
}

/// The line up to a `#` that is not inside a string.
fn without_comment(line: &str) -> &str {
    let mut end = line.len();
    walk(
        line,
        |at, c| {
            if c == '#' {
                end = at;
            }
            c != '#'
        },
        |_| {},
    );
    &line[..end]
}

/// How many `[` are still open at the end of `value`.
fn brackets(value: &str) -> i32 {
    let mut depth = 0;
    walk(
        value,
        |_, c| {
            depth += match c {
                '[' => 1,
                ']' => -1,
                _ => 0,
            };
            true
        },
        |_| {},
    );
    depth
}

/// The strings in a value: `["a", 'b']` → a, b.
fn strings(value: &str) -> Vec<String> {
    let mut found = Vec::new();
    walk(value, |_, _| true, |s| found.push(s));
    found
}

fn target_missing(stderr: &str) -> bool {
    stderr.contains("target may not be installed")
        || stderr.contains("can't find crate for `std`")
        || stderr.contains("can't find crate for `core`")
}

fn has_rustup() -> bool {
    Command::new("rustup")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn install_target(plan: &BuildPlan, reporter: &dyn Reporter) -> Result<(), BuildError> {
    let mut command = Command::new("rustup");
    // In the context, so a rust-toolchain file there picks the toolchain that gets the target.
    command
        .current_dir(&plan.context)
        .args(["target", "add", TARGET]);
    let line = process::display(&command);
    reporter.warn(&format!(
        "the {TARGET} target is not installed; running `{line}`"
    ));
    reporter.step("rustup", &line);
    let (finished, ()) = process::run(&mut command, reporter, |_| ())?;
    if finished.success {
        Ok(())
    } else {
        Err(BuildError::ToolchainFailed {
            command: line,
            status: finished.status,
            stderr: finished.stderr_tail,
            hint: Some(format!(
                "install the target by hand: `rustup target add {TARGET}`"
            )),
        })
    }
}

/// What to do about a failed `cargo build`, read from what cargo said. `lock` is the
/// Cargo.lock the build was held to, if any.
fn hint_for(stderr: &str, lock: Option<&Path>) -> Option<String> {
    // The first line of cargo's `help:` that follows an error, after `prefix`.
    let help = |prefix: &str| {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|s| s.trim().trim_matches('`').to_owned())
    };
    let did_you_mean = |prefix: &str| {
        help(prefix)
            .map(|similar| format!("; did you mean `{similar}`?"))
            .unwrap_or_default()
    };
    if target_missing(stderr) {
        Some(format!("install the target: `rustup target add {TARGET}`"))
    } else if stderr.contains("could not find `Cargo.toml`") {
        Some("the build context has no Cargo.toml; set `[build] context` or `toolchain`".to_owned())
    } else if let (true, Some(lock)) = (stderr.contains("--locked was passed"), lock) {
        let root = lock.parent().unwrap_or(lock);
        Some(format!(
            "{} does not match Cargo.toml any more: run `cargo update --workspace` in {} (it \
             changes only what Cargo.toml now asks for) and commit the updated Cargo.lock",
            lock.display(),
            root.display()
        ))
    } else if let Some(bin) = help("error: no bin target named `") {
        let bin = bin.split('`').next().unwrap_or_default();
        let available: Vec<&str> = stderr
            .lines()
            .skip_while(|l| !l.starts_with("help: available bin targets:"))
            .skip(1)
            .take_while(|l| l.starts_with(char::is_whitespace))
            .map(str::trim)
            .collect();
        Some(match help("help: a target with a similar name exists: ") {
            Some(similar) => {
                format!("the package has no binary `{bin}`: did you mean `bin = \"{similar}\"`?")
            }
            None if !available.is_empty() => format!(
                "the package has no binary `{bin}`: set `[build] bin` to one of {}",
                available.join(", ")
            ),
            None => format!("the package has no binary `{bin}`: set `[build] bin` to one it has"),
        })
    } else if stderr.contains("did not match any packages") {
        Some(format!(
            "`[build] package` must name a package of the workspace{}",
            did_you_mean("help: a package with a similar name exists: ")
        ))
    } else if stderr.contains("contains this feature")
        || stderr.contains("contain this feature")
        || stderr.contains("contain these features")
    {
        Some(format!(
            "`[build] features` names a feature the package does not declare in its [features]{}",
            did_you_mean("help: there is a similarly named feature: ")
        ))
    } else if stderr.contains("requires the features:") {
        Some("the binary has `required-features`: list them in `[build] features`".to_owned())
    } else {
        let profile = stderr.lines().find_map(|l| {
            l.strip_prefix("error: profile `")?
                .strip_suffix("` is not defined")
        })?;
        Some(format!(
            "define `[profile.{profile}]` (with `inherits = \"release\"`) in the workspace's \
             Cargo.toml, or set `[build] profile` to a profile it has"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What cargo printed here with the target removed (`rustup target remove wasm32-wasip1`).
    const NO_TARGET: &str = "error[E0463]: can't find crate for `core`\n  |\n  = note: the `wasm32-wasip1` target may not be installed\n  = help: consider downloading the target with `rustup target add wasm32-wasip1`";

    #[test]
    fn a_missing_target_is_recognised_and_hinted() {
        assert!(target_missing(NO_TARGET));
        assert_eq!(
            hint_for(NO_TARGET, None).as_deref(),
            Some("install the target: `rustup target add wasm32-wasip1`")
        );
        assert!(!target_missing("error[E0308]: mismatched types"));
        assert_eq!(hint_for("error[E0308]: mismatched types", None), None);
    }

    /// cargo 1.95's words, each from a failed build of fixtures/cargo-workspace.
    #[test]
    fn cargos_complaints_about_wasmfile_keys_name_the_key() {
        let hint = |stderr: &str| hint_for(stderr, None).unwrap();
        assert_eq!(
            hint(
                "error: no bin target named `whisper` in default-run packages\nhelp: available bin targets:\n    greet\n    shout"
            ),
            "the package has no binary `whisper`: set `[build] bin` to one of greet, shout"
        );
        assert_eq!(
            hint(
                "error: no bin target named `gret` in default-run packages\n\nhelp: a target with a similar name exists: `greet`"
            ),
            "the package has no binary `gret`: did you mean `bin = \"greet\"`?"
        );
        assert_eq!(
            hint(
                "error: package ID specification `ap` did not match any packages\n\nhelp: a package with a similar name exists: `app`"
            ),
            "`[build] package` must name a package of the workspace; did you mean `app`?"
        );
        assert_eq!(
            hint(
                "error: the package 'app' does not contain this feature: lod\nhelp: there is a similarly named feature: loud"
            ),
            "`[build] features` names a feature the package does not declare in its [features]; did you mean `loud`?"
        );
        assert_eq!(
            hint(
                "error: none of the selected packages contains this feature: x\nselected packages: greeting, app"
            ),
            "`[build] features` names a feature the package does not declare in its [features]"
        );
        assert_eq!(
            hint("error: profile `wasmm` is not defined"),
            "define `[profile.wasmm]` (with `inherits = \"release\"`) in the workspace's Cargo.toml, or set `[build] profile` to a profile it has"
        );
    }

    #[test]
    fn a_stale_lock_file_is_hinted_only_when_the_build_was_locked() {
        const STALE: &str = "error: cannot update the lock file /w/Cargo.lock because --locked was passed to prevent this\nhelp: to generate the lock file without accessing the network, remove the --locked flag and use --offline instead.";
        assert_eq!(
            hint_for(STALE, Some(Path::new("/w/Cargo.lock"))).as_deref(),
            Some(
                "/w/Cargo.lock does not match Cargo.toml any more: run `cargo update --workspace` in /w (it changes only what Cargo.toml now asks for) and commit the updated Cargo.lock"
            )
        );
        assert_eq!(hint_for(STALE, None), None);
    }

    #[test]
    fn package_names_come_from_every_shape_of_package_id() {
        for (id, name) in [
            ("path+file:///w/crates/app#0.1.0", "app"),
            ("path+file:///w#app@0.1.0", "app"),
            (
                "registry+https://github.com/rust-lang/crates.io-index#choose@1.3.7",
                "choose",
            ),
            ("git+https://github.com/o/tool?branch=main#0.2.0", "tool"),
            ("path+file:///w/x#my-app", "my-app"),
            ("app 0.1.0 (path+file:///w/crates/app)", "app"),
        ] {
            assert_eq!(package_name(id), name, "{id}");
        }
    }

    fn built(package: &str, name: &str) -> Built {
        Built {
            package: package.to_owned(),
            name: name.to_owned(),
            path: PathBuf::from(format!("/t/{name}.wasm")),
        }
    }

    fn settings(bin: Option<&str>) -> CargoSettings {
        CargoSettings {
            package: None,
            bin: bin.map(str::to_owned),
            profile: "release".to_owned(),
            features: vec![],
            no_default_features: false,
        }
    }

    #[test]
    fn one_binary_is_the_module_and_several_need_a_choice() {
        let (name, path) = choose(vec![built("app", "app")], &settings(None), "c".into()).unwrap();
        assert_eq!((name.as_str(), path), ("app", PathBuf::from("/t/app.wasm")));
        let two = || vec![built("app", "tool"), built("app", "app")];
        let error = choose(two(), &settings(None), "cargo build".into()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`cargo build` built 2 binaries, so which one is the module is not clear: app (app), tool (app)"
        );
        assert!(error.hint().unwrap().contains("set `[build] bin`"));
        let (name, _) = choose(two(), &settings(Some("tool")), "c".into()).unwrap();
        assert_eq!(name, "tool");
        // One name in two packages of a workspace.
        let error = choose(
            vec![built("a", "cli"), built("b", "cli")],
            &settings(Some("cli")),
            "c".into(),
        )
        .unwrap_err();
        assert!(matches!(error, BuildError::Ambiguous { .. }), "{error}");
        let error = choose(vec![], &settings(None), "c".into()).unwrap_err();
        assert_eq!(error.to_string(), "`c` built no WebAssembly binary");
    }

    #[test]
    fn manifests_are_scanned_for_what_the_workspace_search_needs() {
        let scan = Manifest::scan;
        assert_eq!(scan("[package]\nname = \"a\"\n"), Manifest::default());
        let root = |members: &[&str], exclude: &[&str]| Manifest {
            workspace: Some(WorkspaceTable {
                members: members.iter().map(|s| s.to_string()).collect(),
                exclude: exclude.iter().map(|s| s.to_string()).collect(),
            }),
            package_workspace: None,
        };
        assert_eq!(scan("[workspace]\n"), root(&[], &[]));
        assert_eq!(scan("[workspace] # the root\n"), root(&[], &[]));
        assert_eq!(
            scan("[ workspace . dependencies ]\nserde = \"1\""),
            root(&[], &[])
        );
        assert_eq!(scan("workspace.resolver = \"2\""), root(&[], &[]));
        assert_eq!(
            scan(
                "[workspace]\nmembers = [\n  \"crates/a\", # the app\n  'crates/b',\n]\nexclude = [\"old\"] # gone\nresolver = \"2\"\n[package]\nname = \"x\""
            ),
            root(&["crates/a", "crates/b"], &["old"])
        );
        assert_eq!(
            scan("[package]\nname = \"a\"\nworkspace = \"../..\"\n"),
            Manifest {
                workspace: None,
                package_workspace: Some("../..".to_owned())
            }
        );
        // Words in strings and comments are not tables.
        assert_eq!(
            scan("[package]\ndescription = \"see [workspace]\" # [workspace]\n#[workspace]\n"),
            Manifest::default()
        );
    }

    /// Writes `files` (path, contents) under a temp folder.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, contents) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
        dir
    }

    const PACKAGE: &str = "[package]\nname = \"p\"\nversion = \"0.1.0\"\n";

    #[test]
    fn the_lock_file_is_the_workspace_roots() {
        let dir = tree(&[
            (
                "ws/Cargo.toml",
                "[workspace]\nmembers = [\"crates/*\"]\nexclude = [\"crates/own\"]\n",
            ),
            ("ws/Cargo.lock", ""),
            ("ws/crates/app/Cargo.toml", PACKAGE),
            // A member's stray lock is not the one cargo uses.
            ("ws/crates/app/Cargo.lock", ""),
            ("ws/crates/app/src/main.rs", ""),
            ("ws/crates/own/Cargo.toml", PACKAGE),
            (
                "ws/crates/named/Cargo.toml",
                "[package]\nname = \"n\"\nworkspace = \"../..\"\n",
            ),
            // Its own workspace, inside a folder that has a lock: not locked.
            (
                "ws/examples/solo/Cargo.toml",
                &format!("{PACKAGE}[workspace]\n"),
            ),
        ]);
        let ws = dir.path().join("ws");
        let lock = |context: &str| lockfile(&ws.join(context));
        assert_eq!(lock(""), Some(ws.join("Cargo.lock")));
        assert_eq!(lock("crates/app"), Some(ws.join("Cargo.lock")));
        // A context below the package's folder: the package is the nearest Cargo.toml up.
        assert_eq!(lock("crates/app/src"), Some(ws.join("Cargo.lock")));
        assert_eq!(
            lock("crates/named"),
            Some(ws.join("crates/named/../../Cargo.lock"))
        );
        assert_eq!(lock("crates/own"), None);
        assert_eq!(lock("examples/solo"), None);
        assert_eq!(lockfile(&dir.path().join("nowhere")), None);
    }

    #[test]
    fn a_package_alone_is_its_own_root() {
        let dir = tree(&[("Cargo.toml", PACKAGE), ("Cargo.lock", "")]);
        assert_eq!(lockfile(dir.path()), Some(dir.path().join("Cargo.lock")));
        let dir = tree(&[("Cargo.toml", PACKAGE)]);
        assert_eq!(lockfile(dir.path()), None);
    }
}
