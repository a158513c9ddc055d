//! `cargo build --target wasm32-wasip1`, the module found from cargo's JSON messages.

use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::process::Command;

use cargo_metadata::{Message, TargetKind};
use wasmbuild_spec::{BuildPlan, CargoSettings};

use super::process;
use crate::{BuildError, Reporter};

pub const TARGET: &str = "wasm32-wasip1";

/// One binary cargo produced for the target.
struct Built {
    package: String,
    name: String,
    path: PathBuf,
}

pub fn build(
    plan: &BuildPlan,
    settings: &CargoSettings,
    reporter: &dyn Reporter,
) -> Result<(String, PathBuf), BuildError> {
    let mut installed_target = false;
    loop {
        let mut command = command(plan, settings);
        let line = process::display(&command);
        reporter.step("compile", &line);
        let (finished, built) = process::run(&mut command, reporter, read_messages)?;
        if !finished.success {
            if !installed_target && target_missing(&finished.stderr_tail) && has_rustup() {
                install_target(plan, reporter)?;
                installed_target = true;
                continue;
            }
            let hint = hint_for(&finished.stderr_tail);
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

fn command(plan: &BuildPlan, settings: &CargoSettings) -> Command {
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
                package: artifact.package_id.repr.clone(),
                name: artifact.target.name.clone(),
                path: path.into_std_path_buf(),
            });
        }
    }
    built
}

fn choose(
    mut built: Vec<Built>,
    settings: &CargoSettings,
    command: String,
) -> Result<(String, PathBuf), BuildError> {
    if let Some(bin) = &settings.bin {
        built.retain(|b| &b.name == bin);
    }
    match built.len() {
        1 => {
            let only = built.remove(0);
            Ok((only.name, only.path))
        }
        _ => Err(BuildError::NoArtifact {
            command,
            bin: settings.bin.clone(),
            found: built
                .iter()
                .map(|b| format!("{} ({})", b.name, b.package))
                .collect(),
        }),
    }
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

fn hint_for(stderr: &str) -> Option<String> {
    if target_missing(stderr) {
        Some(format!("install the target: `rustup target add {TARGET}`"))
    } else if stderr.contains("could not find `Cargo.toml`") {
        Some("the build context has no Cargo.toml; set `[build] context` or `toolchain`".to_owned())
    } else {
        None
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
            hint_for(NO_TARGET).as_deref(),
            Some("install the target: `rustup target add wasm32-wasip1`")
        );
        assert!(!target_missing("error[E0308]: mismatched types"));
        assert_eq!(hint_for("error[E0308]: mismatched types"), None);
    }

    fn built(name: &str) -> Built {
        Built {
            package: format!("path+file:///p#{name}@0.1.0"),
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
        let (name, path) =
            choose(vec![built("app")], &settings(None), "cargo build".into()).unwrap();
        assert_eq!((name.as_str(), path), ("app", PathBuf::from("/t/app.wasm")));
        let error = choose(
            vec![built("app"), built("tool")],
            &settings(None),
            "cargo build".into(),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "`cargo build` built no WebAssembly binary"
        );
        assert!(error.hint().unwrap().contains("set `[build] bin`"));
        let (name, _) = choose(
            vec![built("app"), built("tool")],
            &settings(Some("tool")),
            "c".into(),
        )
        .unwrap();
        assert_eq!(name, "tool");
    }
}
