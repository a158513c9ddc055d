//! The GitHub Actions step: `scripts/action.sh` run as the runner runs action.yml's step
//! (inputs as `INPUT_*` variables, `GITHUB_OUTPUT` and `GITHUB_STEP_SUMMARY` files), against
//! the registry with htpasswd auth that `scripts/test` starts; errors as workflow commands;
//! and the sample workflow against the inputs action.yml declares.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{
    Home, repo, require, require_auth_registry, sha256_digest, skopeo, stderr, stdout, unique_repo,
};

/// What the runner gives one step: its files and the job's temp folder.
struct Runner {
    dir: TempDir,
}

impl Runner {
    fn new() -> Runner {
        let dir = tempfile::Builder::new()
            .prefix("wasmbuild-runner-")
            .tempdir()
            .unwrap();
        for folder in ["temp", "home", "docker", "tool-cache"] {
            std::fs::create_dir(dir.path().join(folder)).unwrap();
        }
        for file in ["output", "summary", "path"] {
            std::fs::write(dir.path().join(file), "").unwrap();
        }
        Runner { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// `scripts/action.sh` with `inputs` (names as action.yml spells them) in the
    /// workspace (this repository), as the step runs it; `WASMBUILD_BIN` is the test
    /// binary, so nothing is compiled again.
    fn step(&self, inputs: &[(&str, &str)], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new("bash");
        command
            .arg(repo().join("scripts/action.sh"))
            .current_dir(repo())
            .env("GITHUB_ACTIONS", "true")
            .env("CI", "true")
            .env("GITHUB_ACTOR", "octocat")
            .env("GITHUB_TOKEN", GITHUB_TOKEN)
            .env("GITHUB_WORKSPACE", repo())
            .env("GITHUB_ACTION_PATH", repo())
            .env("GITHUB_OUTPUT", self.path("output"))
            .env("GITHUB_STEP_SUMMARY", self.path("summary"))
            .env("GITHUB_PATH", self.path("path"))
            .env("RUNNER_TEMP", self.path("temp"))
            .env("RUNNER_TOOL_CACHE", self.path("tool-cache"))
            .env("WASMBUILD_BIN", assert_cmd::cargo::cargo_bin("wasmbuild"))
            .env("WASMBUILD_HOME", self.path("home"))
            .env("DOCKER_CONFIG", self.path("docker"))
            .env_remove("WASMBUILD_REPO")
            .env_remove("WASMBUILD_PROGRESS")
            .env_remove("WASMBUILD_USERNAME")
            .env_remove("WASMBUILD_PASSWORD")
            .env_remove("SOURCE_DATE_EPOCH");
        for (name, value) in inputs {
            // The runner's naming: upper case, hyphens kept (`INPUT_BUILD-ARGS`).
            command.env(format!("INPUT_{}", name.to_uppercase()), value);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().expect("run scripts/action.sh")
    }

    /// The step's outputs, as the runner reads `GITHUB_OUTPUT`: `NAME=VALUE` lines and
    /// `NAME<<DELIMITER` blocks.
    fn outputs(&self) -> BTreeMap<String, String> {
        parse_outputs(&self.read("output"))
    }
}

/// A token the step must neither use for another registry nor show anywhere.
const GITHUB_TOKEN: &str = "ghs_notarealtokenforthetests0123456789";

fn parse_outputs(text: &str) -> BTreeMap<String, String> {
    let mut outputs = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delimiter)) = line.split_once("<<") {
            let mut value = Vec::new();
            for line in lines.by_ref() {
                if line == delimiter {
                    break;
                }
                value.push(line);
            }
            outputs.insert(name.to_owned(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            outputs.insert(name.to_owned(), value.to_owned());
        }
    }
    outputs
}

fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "the step failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

#[test]
fn the_step_builds_pushes_and_reports_what_it_pushed() {
    let registry = require_auth_registry();
    let repository = format!("{}/{}", registry.host, unique_repo("action"));
    // As `ghcr.io/${{ github.repository }}` may be: an upper-case letter in the name.
    let named = repository.replacen("/action-", "/Action-", 1);
    assert_ne!(named, repository);
    let runner = Runner::new();
    let output = runner.step(
        &[
            ("context", "fixtures/hello"),
            (
                "tags",
                &format!("{named}:1.0, {repository}:extra\n\n  {repository}:latest\n"),
            ),
            ("push", "true"),
            ("registry", &registry.host),
            ("username", &registry.user),
            ("password", &registry.password),
        ],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    assert_ok(&output);

    let outputs = runner.outputs();
    let digest = outputs.get("digest").expect("a digest output").clone();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{outputs:?}"
    );
    let refs: Vec<String> = [":1.0", ":extra", ":latest"]
        .iter()
        .map(|tag| format!("{repository}{tag}"))
        .collect();
    assert_eq!(outputs["refs"], refs.join("\n"));
    let image = &outputs["image"];
    // The repository of the first reference, pinned to the digest (skopeo, like other
    // clients, refuses a tag and a digest together).
    assert_eq!(image, &format!("{repository}@{digest}"));
    assert!(
        stdout(&output).contains(&format!(
            "::notice::image names are lower case: {named}:1.0"
        )),
        "{}",
        stdout(&output)
    );

    // skopeo, with the registry's credentials, finds each reference with that digest.
    let creds = format!("{}:{}", registry.user, registry.password);
    for reference in refs.iter().chain([image]) {
        let raw = skopeo(&[
            "inspect",
            "--creds",
            &creds,
            "--tls-verify=false",
            "--raw",
            &format!("docker://{reference}"),
        ]);
        assert_eq!(sha256_digest(raw.as_bytes()), digest, "{reference}");
    }

    let summary = runner.read("summary");
    assert!(
        summary.contains("| reference | digest | size | platform |"),
        "{summary}"
    );
    for reference in &refs {
        let row = format!("| `{reference}` | `{digest}` | ");
        assert!(summary.contains(&row), "{summary}");
    }
    assert!(summary.contains("kB | wasi/wasm |"), "{summary}");

    // Later steps find wasmbuild on PATH.
    let bin = assert_cmd::cargo::cargo_bin("wasmbuild");
    assert_eq!(
        runner.read("path").trim(),
        bin.parent().unwrap().to_str().unwrap()
    );

    // No secret anywhere a person could read, and no login left in the user's Docker config.
    let everything = [
        stdout(&output),
        stderr(&output),
        runner.read("output"),
        summary,
    ]
    .concat();
    assert!(!everything.contains(&registry.password));
    assert!(!everything.contains(GITHUB_TOKEN));
    assert_eq!(
        std::fs::read_dir(runner.path("docker")).unwrap().count(),
        0,
        "the login went into the user's DOCKER_CONFIG"
    );

    // SOURCE_DATE_EPOCH reached the build: the same build outside the action, with it, has
    // the same digest.
    let home = Home::new();
    let direct = home
        .cmd()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "fixtures/hello", "-t", "localhost/action:sde"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(direct.status.success(), "{}", stderr(&direct));
    assert_eq!(
        stdout(&direct).trim(),
        format!("localhost/action:sde@{digest}")
    );

    // Pulled into an empty home with the credentials from the environment, it runs.
    let empty = Home::new();
    let with_credentials = |args: &[&str]| {
        let output = empty
            .cmd()
            .env("WASMBUILD_USERNAME", &registry.user)
            .env("WASMBUILD_PASSWORD", &registry.password)
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        stdout(&output)
    };
    assert_eq!(
        with_credentials(&["pull", &refs[0]]).trim(),
        format!("{}@{digest}", refs[0])
    );
    let ran = with_credentials(&["run", &refs[0], "action"]);
    assert!(ran.contains("Hello from wasmbuild, action!"), "{ran}");
    // The `image` output is what a later step pulls by.
    let pulled = with_credentials(&["pull", image]);
    assert!(pulled.trim().ends_with(&format!("@{digest}")), "{pulled}");
}

#[test]
fn without_push_the_step_builds_with_its_build_args_and_logs_in_nowhere() {
    let runner = Runner::new();
    let output = runner.step(
        &[
            ("context", "fixtures/copy"),
            ("build-args", "VERSION=9.9.9\n\n"),
            ("push", "false"),
            ("registry", "127.0.0.1:9"),
            ("username", "nobody"),
            ("password", "unused"),
        ],
        &[],
    );
    assert_ok(&output);
    let outputs = runner.outputs();
    let digest = &outputs["digest"];
    assert_eq!(
        outputs["refs"],
        "localhost/site:9.9.9\nlocalhost/site:latest"
    );
    assert_eq!(outputs["image"], format!("localhost/site@{digest}"));
    let summary = runner.read("summary");
    assert!(summary.contains("built (not pushed)"), "{summary}");
    assert!(!runner.path("temp/wasmbuild-docker-config").exists());
}

#[test]
fn a_bad_push_input_stops_the_step_with_an_annotation() {
    let runner = Runner::new();
    let output = runner.step(&[("context", "fixtures/hello"), ("push", "maybe")], &[]);
    assert!(!output.status.success());
    assert_eq!(
        stdout(&output).trim(),
        "::error::input `push` must be true or false"
    );
    assert_eq!(runner.read("output"), "");
}

#[test]
fn a_wasmfile_error_is_an_annotation_on_its_line() {
    let home = Home::new();
    let output = home
        .cmd()
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_WORKSPACE", repo())
        .current_dir(repo())
        .args(["build", "fixtures/broken/misspelt-key"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        "::error file=fixtures/broken/misspelt-key/Wasmfile,line=6,col=1::unknown key `tagz` in \
         [image], expected one of `name`, `tags`, `format`, `os`, `entrypoint`, `cmd`, `env`, \
         `workdir`, `labels`, `annotations`%0Ahint: did you mean `tags`?\n"
    );
    // The terminal's rendering is unchanged.
    assert!(
        stderr(&output).starts_with(
            "error: fixtures/broken/misspelt-key/Wasmfile:6:1: unknown key `tagz` in [image]"
        ),
        "{}",
        stderr(&output)
    );

    // Outside GitHub Actions, stdout stays empty.
    let plain = home
        .cmd()
        .current_dir(repo())
        .args(["build", "fixtures/broken/misspelt-key"])
        .output()
        .unwrap();
    assert_eq!(stdout(&plain), "");
    assert_eq!(stderr(&plain), stderr(&output));
}

#[test]
fn the_step_passes_on_the_annotation_of_a_wasmfile_error() {
    let runner = Runner::new();
    let output = runner.step(&[("context", "fixtures/broken/misspelt-key")], &[]);
    assert!(!output.status.success());
    assert!(
        stdout(&output).contains(
            "::error file=fixtures/broken/misspelt-key/Wasmfile,line=6,col=1::unknown key `tagz`"
        ),
        "{}",
        stdout(&output)
    );
    assert_eq!(runner.read("output"), "");
}

#[test]
fn the_install_key_names_a_folder_in_the_tool_cache_and_stays_the_same() {
    let runner = Runner::new();
    let key = |runner: &Runner| {
        std::fs::write(runner.path("output"), "").unwrap();
        let output = Command::new("bash")
            .arg(repo().join("scripts/action.sh"))
            .arg("install-key")
            .env("GITHUB_ACTION_PATH", repo())
            .env("GITHUB_OUTPUT", runner.path("output"))
            .env("RUNNER_TOOL_CACHE", runner.path("tool-cache"))
            .output()
            .unwrap();
        assert_ok(&output);
        runner.outputs()
    };
    let first = key(&runner);
    let hash = first["key"]
        .strip_prefix("wasmbuild-")
        .expect("key=wasmbuild-…");
    assert_eq!(hash.len(), 32, "{first:?}");
    assert_eq!(
        Path::new(&first["dir"]),
        runner.path("tool-cache").join("wasmbuild").join(hash)
    );
    assert_eq!(key(&runner), first);
}

/// A YAML file as JSON, read by PyYAML (which `scripts/test` installs).
fn yaml(path: &Path) -> Value {
    let output = Command::new(require("python3"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cannot read {} as YAML (is PyYAML installed? `scripts/test` installs it):\n{}",
        path.display(),
        stderr(&output)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn action_yml_passes_every_input_to_the_script_as_the_runner_names_it() {
    let action = yaml(&repo().join("action.yml"));
    assert_eq!(action["runs"]["using"], "composite");
    let inputs: Vec<&String> = action["inputs"].as_object().unwrap().keys().collect();
    assert_eq!(
        inputs,
        [
            "build-args",
            "context",
            "password",
            "push",
            "registry",
            "tags",
            "username",
            "wasmfile"
        ]
    );
    let steps = action["runs"]["steps"].as_array().unwrap();
    let build = steps
        .iter()
        .find(|step| step["id"] == "build")
        .expect("a step with id `build`");
    assert_eq!(
        build["run"],
        "bash \"$GITHUB_ACTION_PATH/scripts/action.sh\""
    );
    let env = build["env"].as_object().unwrap();
    for input in &inputs {
        assert_eq!(
            env[&format!("INPUT_{}", input.to_uppercase())],
            format!("${{{{ inputs.{input} }}}}"),
            "{input}"
        );
    }
    for output in ["digest", "image", "refs"] {
        assert_eq!(
            action["outputs"][output]["value"],
            format!("${{{{ steps.build.outputs.{output} }}}}")
        );
    }
}

#[test]
fn the_sample_workflow_uses_only_inputs_the_action_declares_and_is_the_readmes() {
    let action = yaml(&repo().join("action.yml"));
    let template = repo().join("templates/github-workflow.yml");
    let workflow = yaml(&template);
    assert_eq!(workflow["permissions"]["packages"], "write");
    let uses: Vec<&Value> = workflow["jobs"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|job| job["steps"].as_array().unwrap())
        .filter(|step| {
            step["uses"]
                .as_str()
                .is_some_and(|uses| uses == "./" || uses.starts_with("wasmbuild/wasmbuild@"))
        })
        .collect();
    assert_eq!(uses.len(), 1, "{workflow}");
    let with = uses[0]["with"].as_object().unwrap();
    assert!(with.contains_key("tags") && with.contains_key("push"));
    for key in with.keys() {
        assert!(
            action["inputs"].get(key).is_some(),
            "`{key}` is not an input of action.yml"
        );
    }

    // The README's copy-paste workflow is this file, as it is.
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let text = std::fs::read_to_string(&template).unwrap();
    let section = readme
        .split_once("## Use it in GitHub Actions\n")
        .expect("README.md has the section")
        .1;
    assert!(
        section.contains(&format!("```yaml\n{text}```\n")),
        "README.md's workflow differs from templates/github-workflow.yml"
    );
}
