//! Any command (make, just, a script) that leaves a module at `output`.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmbuild_spec::BuildPlan;

use super::process;
use crate::{BuildError, Reporter};

pub fn build(
    plan: &BuildPlan,
    argv: &[String],
    output: &Path,
    reporter: &dyn Reporter,
) -> Result<(String, PathBuf), BuildError> {
    let Some((program, args)) = argv.split_first() else {
        // The spec refuses an empty command; this is the same error in case it is bypassed.
        return Err(BuildError::Unsupported {
            toolchain: "an empty command".to_owned(),
        });
    };
    let mut command = Command::new(program);
    command
        .current_dir(&plan.context)
        .envs(&plan.env)
        .args(args);
    let line = process::display(&command);
    reporter.step("compile", &line);
    let finished = process::run_streaming(&mut command, reporter)?;
    if !finished.success {
        return Err(BuildError::ToolchainFailed {
            command: line,
            status: finished.status,
            stderr: finished.stderr_tail,
            hint: None,
        });
    }
    if !output.is_file() {
        return Err(BuildError::MissingOutput {
            command: line,
            output: output.to_path_buf(),
        });
    }
    Ok((super::module_name(output), output.to_path_buf()))
}
