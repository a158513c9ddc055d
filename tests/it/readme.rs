//! Every `console` example in README.md runs, in order, against a fresh store, and prints
//! what the README says (`…` stands for anything within a line, such as a digest).

use std::process::Command;

use crate::support::{Home, repo};

struct Step {
    command: String,
    expected: Vec<String>,
}

fn console_blocks(readme: &str) -> Vec<Vec<Step>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<Step>> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```console") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().expect("in a block")),
            (Some(steps), line) => match line.strip_prefix("$ ") {
                Some(command) => steps.push(Step {
                    command: command.to_owned(),
                    expected: Vec::new(),
                }),
                None => steps
                    .last_mut()
                    .expect("output follows a command")
                    .expected
                    .push(line.to_owned()),
            },
            (None, _) => {}
        }
    }
    blocks
}

/// `expected` with each `…` matching any run of characters.
fn matches(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split('…').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return expected == actual;
    };
    let Some(rest) = actual.strip_prefix(first) else {
        return false;
    };
    let Some(mut rest) = rest.strip_suffix(last) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[test]
fn readme_examples_print_what_the_readme_says() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks = console_blocks(&readme);
    assert!(blocks.len() >= 2, "README.md has its console examples");
    let bin_dir = assert_cmd::cargo::cargo_bin("wasmbuild")
        .parent()
        .unwrap()
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    // The README's registry is `localhost:5000`; here it is the one `scripts/test` started.
    let registry = std::env::var("WASMBUILD_TEST_REGISTRY")
        .expect("WASMBUILD_TEST_REGISTRY is not set: run `scripts/test`, which starts a registry");
    let registry = format!("{registry}/readme-{}", std::process::id());
    for block in blocks {
        let home = Home::new();
        for mut step in block {
            step.command = step.command.replace("localhost:5000", &registry);
            for line in &mut step.expected {
                *line = line.replace("localhost:5000", &registry);
            }
            let output = Command::new("sh")
                .args(["-c", &step.command])
                .current_dir(repo())
                .env("PATH", &path)
                .env("WASMBUILD_HOME", home.dir.path())
                .env("WASMBUILD_PROGRESS", "plain")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "`{}` failed:\n{}",
                step.command,
                String::from_utf8_lossy(&output.stderr)
            );
            let actual: Vec<&str> = stdout.lines().collect();
            assert_eq!(
                actual.len(),
                step.expected.len(),
                "`{}` printed:\n{stdout}",
                step.command
            );
            for (want, got) in step.expected.iter().zip(&actual) {
                assert!(
                    matches(want, got),
                    "`{}`: expected {want:?}, got {got:?}",
                    step.command
                );
            }
        }
    }
}

#[test]
fn the_ellipsis_matches_within_a_line() {
    assert!(matches("a@sha256:…", "a@sha256:0123"));
    assert!(matches("x … y", "x 1 2 y"));
    assert!(matches("plain", "plain"));
    assert!(!matches("plain", "plain!"));
    assert!(!matches("a@sha256:…", "b@sha256:0123"));
    assert!(!matches("x … y", "x 1 2 z"));
}
