//! Running a toolchain: stdout captured for the driver to read, stderr streamed to the
//! reporter as it arrives and kept (its tail) for the error.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use crate::{BuildError, Reporter};

/// How many trailing stderr lines a failure carries.
const STDERR_TAIL: usize = 60;

pub struct Finished {
    pub success: bool,
    pub status: String,
    pub stderr_tail: String,
}

/// The command line, for messages: program and arguments as a person would type them.
pub fn display(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command`, handing stdout to `on_stdout` on this thread while stderr lines go to
/// the reporter from a second one.
pub fn run<R: Send>(
    command: &mut Command,
    reporter: &dyn Reporter,
    on_stdout: impl FnOnce(&mut dyn Read) -> R,
) -> Result<(Finished, R), BuildError> {
    let line = display(command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| BuildError::Spawn {
            command: line.clone(),
            source,
        })?;
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        unreachable!("both streams were configured as piped");
    };
    let (stdout_result, tail) = std::thread::scope(|scope| {
        let errors = scope.spawn(move || {
            let mut tail = VecDeque::with_capacity(STDERR_TAIL);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                reporter.output(&line);
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            tail
        });
        let result = on_stdout(&mut stdout);
        // Drain whatever the handler left so the child never blocks on a full pipe.
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        (result, errors.join().unwrap_or_default())
    });
    let status = child.wait().map_err(|source| BuildError::Spawn {
        command: line,
        source,
    })?;
    let finished = Finished {
        success: status.success(),
        status: status.to_string(),
        stderr_tail: tail.into_iter().collect::<Vec<_>>().join("\n"),
    };
    Ok((finished, stdout_result))
}

/// Runs `command` with both its stdout and its stderr going to the reporter line by line:
/// a compiler's or build tool's own output is the user's to read.
pub fn run_streaming(
    command: &mut Command,
    reporter: &dyn Reporter,
) -> Result<Finished, BuildError> {
    let (finished, ()) = run(command, reporter, |stdout| {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            reporter.output(&line);
        }
    })?;
    Ok(finished)
}
