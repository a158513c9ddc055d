//! Push and pull against the real registries `scripts/test` starts (Debian's
//! docker-registry, one without auth and one with htpasswd), read back by skopeo.

use std::time::Duration;

use serde_json::Value;

use crate::proxy::{FOREVER, Fault, FaultProxy, Match};
use crate::support::{
    Home, digest_of, require_auth_registry, require_registry, sha256_digest, skopeo, stderr,
    stdout, unique_repo,
};

/// A repository no other test uses, on `registry`.
fn repository(registry: &str, name: &str) -> String {
    format!("{registry}/{}", unique_repo(name))
}

/// Runs `wasmbuild` with `args` and `stdin`, returning the output whatever the status.
fn with_stdin(home: &Home, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = home
        .cmd()
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn wasmbuild");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for wasmbuild")
}

#[test]
fn push_then_skopeo_reads_it_and_pull_into_an_empty_home_runs_it() {
    let registry = require_registry();
    let target = format!("{}:1.0", repository(&registry, "hello"));
    let home = Home::new();
    let built = home.build("hello", &["-t", &target]);
    let digest = digest_of(&built).to_owned();

    let pushed = home.ok(&["push", &target]);
    assert_eq!(pushed.trim(), format!("{target}@{digest}"));

    // skopeo, an independent client, finds the same bytes with the right media types.
    let source = format!("docker://{target}");
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &source]);
    assert_eq!(sha256_digest(raw.as_bytes()), digest);
    let manifest: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let config: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--config",
        "--raw",
        &source,
    ]))
    .unwrap();
    assert_eq!(config["os"], "wasi");
    assert_eq!(config["architecture"], "wasm");
    let copy = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:copied", copy.path().display());
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &source,
        &layout,
    ]);
    assert_eq!(skopeo(&["inspect", "--raw", &layout]), raw);

    // Pulled into an empty home, it runs with the same output.
    let local = home.ok(&["run", &target, "registry"]);
    let empty = Home::new();
    let pulled = empty.ok(&["pull", &target]);
    assert_eq!(pulled.trim(), format!("{target}@{digest}"));
    assert_eq!(empty.ok(&["run", &target, "registry"]), local);
    assert!(local.contains("Hello from wasmbuild, registry!"), "{local}");
}

#[test]
fn precompiled_artifacts_go_with_the_image_and_pull_fetches_the_hosts() {
    let registry = require_registry();
    let repo = repository(&registry, "precompiled");
    let target = format!("{repo}:1.0");
    let home = Home::new();
    let built = home.build("hello", &["-t", &target]);
    let digest = digest_of(&built).to_owned();
    let report: Value = serde_json::from_str(&home.ok(&["push", "--json", &target])).unwrap();
    let push = &report["pushes"][0];
    assert_eq!(push["digest"], digest.as_str());
    let referrers = push["referrers"].as_array().expect("referrers");
    assert!(!referrers.is_empty(), "{report}");
    // Distribution 2.8 has no referrers API: the tag fallback holds them.
    assert_eq!(push["referrersVia"], "tag-fallback");
    let fallback = format!(
        "docker://{repo}:sha256-{}",
        digest.trim_start_matches("sha256:")
    );
    let index: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &fallback,
    ]))
    .unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let listed: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    for referrer in referrers {
        assert!(listed.contains(&referrer.as_str().unwrap()), "{index}");
    }

    let empty = Home::new();
    let pulled: Value = serde_json::from_str(&empty.ok(&["pull", "--json", &target])).unwrap();
    assert_eq!(pulled["pull"]["referrers"].as_array().unwrap().len(), 1);
    let inspect = empty.ok(&["inspect", &target]);
    assert!(
        inspect.contains("x86_64") && inspect.contains("yes"),
        "{inspect}"
    );
    let output = empty
        .cmd()
        .env("WASMBUILD_LOG", "debug")
        .args(["run", &target])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("using precompiled"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_second_push_of_the_same_image_uploads_nothing() {
    let registry = require_registry();
    let target = format!("{}:1.0", repository(&registry, "again"));
    let home = Home::new();
    home.build("hello", &["-t", &target]);
    let first: Value = serde_json::from_str(&home.ok(&["push", "--json", &target])).unwrap();
    assert!(first["pushes"][0]["uploadedBytes"].as_u64().unwrap() > 0);
    let second: Value = serde_json::from_str(&home.ok(&["push", "--json", &target])).unwrap();
    assert_eq!(second["pushes"][0]["uploadedBytes"], 0, "{second}");
    for blob in second["pushes"][0]["blobs"].as_array().unwrap() {
        assert_eq!(blob["outcome"], "existed", "{second}");
    }
}

#[test]
fn build_push_writes_buildx_metadata() {
    let registry = require_registry();
    let target = format!("{}:ci", repository(&registry, "metadata"));
    let home = Home::new();
    let metadata = home.dir.path().join("metadata.json");
    let fixture = crate::support::fixture("hello");
    let out = home.ok(&[
        "build",
        fixture.to_str().unwrap(),
        "-t",
        &target,
        "--push",
        "--metadata-file",
        metadata.to_str().unwrap(),
    ]);
    let digest = digest_of(out.trim()).to_owned();
    let metadata: Value = serde_json::from_slice(&std::fs::read(&metadata).unwrap()).unwrap();
    assert_eq!(metadata["containerimage.digest"], digest.as_str());
    assert_eq!(metadata["image.name"], target.as_str());
    assert_eq!(
        metadata["containerimage.descriptor"]["platform"]["os"],
        "wasi"
    );
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{target}"),
    ]);
    assert_eq!(sha256_digest(raw.as_bytes()), digest);
}

#[test]
fn the_wasm_artifact_format_pushes_and_pulls() {
    let registry = require_registry();
    let target = format!("{}:1.0", repository(&registry, "artifact"));
    let home = Home::new();
    let project = tempfile::tempdir().unwrap();
    let wasm = crate::support::fixture("prebuilt").join("hello.wasm");
    std::fs::copy(&wasm, project.path().join("hello.wasm")).unwrap();
    std::fs::write(
        project.path().join("Wasmfile"),
        "[build]\nmodule = \"hello.wasm\"\n\n[image]\nformat = \"artifact\"\n",
    )
    .unwrap();
    let built = home.ok(&["build", project.path().to_str().unwrap(), "-t", &target]);
    let digest = digest_of(built.trim()).to_owned();
    home.ok(&["push", &target]);
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{target}"),
    ]);
    let manifest: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");

    let empty = Home::new();
    let pulled = empty.ok(&["pull", &target]);
    assert_eq!(pulled.trim(), format!("{target}@{digest}"));
    // The same manifest and config; of the precompiled artifacts, only this host's came.
    let inspect = |home: &Home| -> Value {
        serde_json::from_str(&home.ok(&["inspect", "--json", &target])).unwrap()
    };
    let (pulled, local) = (inspect(&empty), inspect(&home));
    assert_eq!(pulled["manifest"], local["manifest"]);
    assert_eq!(pulled["config"], local["config"]);
    // The module is read from the artifact's application/wasm layer.
    assert_eq!(pulled["module"]["path"], "/hello.wasm", "{pulled}");
    assert_eq!(pulled["module"], local["module"]);
    let precompiled = pulled["precompiled"].as_array().unwrap();
    assert_eq!(precompiled.len(), 1, "{pulled}");
    assert_eq!(precompiled[0]["usable"], true);
    // It runs: the module is the application/wasm layer, with an empty root.
    let output = empty.ok(&["run", &target]);
    assert_eq!(output, "Hello from a prebuilt module\n");
    assert_eq!(home.ok(&["run", &target]), output);
}

#[test]
fn pulling_a_missing_tag_names_the_url_and_status() {
    let registry = require_registry();
    let target = format!("{}:nope", repository(&registry, "missing"));
    let home = Home::new();
    let output = home.run(&["pull", &target]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("404"), "{err}");
    assert!(err.contains("/manifests/nope"), "{err}");
    assert!(stdout(&output).is_empty());
    assert!(
        !home.store().join("index.json").exists()
            || std::fs::read_to_string(home.store().join("index.json"))
                .unwrap()
                .matches("\"digest\"")
                .count()
                == 0,
        "a failed pull leaves the store without an image"
    );
}

#[test]
fn run_pulls_an_image_that_is_not_local_unless_told_not_to() {
    let registry = require_registry();
    let target = format!("{}:1.0", repository(&registry, "runpull"));
    let home = Home::new();
    home.build("hello", &["-t", &target]);
    home.ok(&["push", &target]);
    let expected = home.ok(&["run", &target, "pull"]);

    let empty = Home::new();
    let never = empty.run(&["run", "--pull", "never", &target]);
    assert_eq!(never.status.code(), Some(1));
    assert!(
        stderr(&never).contains("not found in the local store"),
        "{}",
        stderr(&never)
    );
    assert_eq!(empty.ok(&["run", &target, "pull"]), expected);
    assert_eq!(
        empty.ok(&["run", "--pull", "always", &target, "pull"]),
        expected
    );
}

#[test]
fn login_checks_the_password_and_push_uses_the_stored_credentials() {
    let auth = require_auth_registry();
    let (registry, user, password) = (auth.host, auth.user, auth.password);
    let target = format!("{}:1.0", repository(&registry, "auth"));
    let home = Home::new();
    home.build("hello", &["-t", &target]);

    // Anonymous: refused, with advice, and the tag is not there.
    let refused = home.run(&["push", &target]);
    assert_eq!(refused.status.code(), Some(1));
    let err = stderr(&refused);
    assert!(err.contains("401"), "{err}");
    assert!(
        err.contains(&format!("wasmbuild login {registry}")),
        "{err}"
    );

    // A wrong password: a clear error that does not echo it.
    let wrong = "not-the-password-5f2b";
    let output = with_stdin(
        &home,
        &["login", &registry, "-u", &user, "--password-stdin"],
        wrong,
    );
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("401") || err.contains("refused"), "{err}");
    assert!(
        !err.contains(wrong) && !stdout(&output).contains(wrong),
        "{err}"
    );
    assert!(!home.dir.path().join("docker/config.json").exists());

    // The right one is checked, then stored the way Docker stores it.
    let output = with_stdin(
        &home,
        &["login", &registry, "-u", &user, "--password-stdin"],
        &password,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains(&password));
    let config: Value =
        serde_json::from_slice(&std::fs::read(home.dir.path().join("docker/config.json")).unwrap())
            .unwrap();
    assert!(
        config["auths"][registry.as_str()]["auth"].is_string(),
        "{config}"
    );

    let pushed = home.ok(&["push", &target]);
    assert!(pushed.starts_with(&target), "{pushed}");
    let empty = Home::new();
    let config_dir = empty.dir.path().join("docker");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::copy(
        home.dir.path().join("docker/config.json"),
        config_dir.join("config.json"),
    )
    .unwrap();
    empty.ok(&["pull", &target]);

    home.ok(&["logout", &registry]);
    let config: Value =
        serde_json::from_slice(&std::fs::read(home.dir.path().join("docker/config.json")).unwrap())
            .unwrap();
    assert!(config["auths"].get(registry.as_str()).is_none(), "{config}");
}

#[test]
fn credentials_come_from_a_credential_helper_and_from_the_environment() {
    let auth = require_auth_registry();
    let (registry, user, password) = (auth.host, auth.user, auth.password);
    let target = format!("{}:1.0", repository(&registry, "helper"));
    let home = Home::new();
    home.build("hello", &["-t", &target]);

    // A credHelpers entry names docker-credential-test, a script on PATH.
    let bin = home.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-test");
    let log = home.dir.path().join("helper.log");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\necho \"$1 $server\" >> {log}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{password}\"}}' \"$server\"\n",
            log = log.display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let docker = home.dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!("{{\"credHelpers\": {{\"{registry}\": \"test\"}}}}"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = home
        .cmd()
        .env("PATH", &path)
        .args(["push", &target])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let asked = std::fs::read_to_string(&log).unwrap();
    assert!(asked.contains(&format!("get {registry}")), "{asked}");

    // WASMBUILD_USERNAME/WASMBUILD_PASSWORD, with no config at all.
    let empty = Home::new();
    let output = empty
        .cmd()
        .env("WASMBUILD_USERNAME", &user)
        .env("WASMBUILD_PASSWORD", &password)
        .args(["pull", &target])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains(&password));
}

#[test]
fn a_push_through_transient_faults_completes_and_a_repeat_sends_no_blob_bytes() {
    let registry = require_registry();
    let proxy = FaultProxy::start(&registry);
    let path = unique_repo("faults");
    let target = format!("{}/{path}:1.0", proxy.addr());
    let home = Home::new();
    let digest = digest_of(&home.build("hello", &["-t", &target])).to_owned();

    // A reset, a 500, a stalled HEAD and a 429 with Retry-After, each once.
    proxy.inject(Fault::Reset, Match::BlobUpload, 1);
    proxy.inject(Fault::Status(500), Match::BlobUpload, 1);
    proxy.inject(Fault::Stall(Duration::from_secs(5)), Match::BlobFetch, 1);
    proxy.inject(
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
        Match::ManifestPut,
        1,
    );
    let output = home
        .cmd()
        .env("WASMBUILD_REGISTRY_TIMEOUT", "1")
        .args(["push", &target])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), format!("{target}@{digest}"));
    assert!(stderr(&output).contains("retrying"), "{}", stderr(&output));
    let faults: Vec<Fault> = proxy
        .requests()
        .into_iter()
        .filter_map(|exchange| exchange.fault)
        .collect();
    assert_eq!(faults.len(), 4, "every fault was met: {faults:?}");

    // The registry itself, not through the proxy, has the image under the tag.
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{registry}/{path}:1.0"),
    ]);
    assert_eq!(sha256_digest(raw.as_bytes()), digest);

    // Counted on the wire: pushing it again sends no blob bytes at all.
    proxy.reset_counters();
    home.ok(&["push", &target]);
    assert_eq!(proxy.uploaded_blob_bytes(), 0, "{:?}", proxy.requests());
    assert!(
        proxy.requests().iter().any(|e| e.method == "HEAD"),
        "{:?}",
        proxy.requests()
    );

    // A pull through a reset connection completes too.
    proxy.inject(Fault::Reset, Match::BlobFetch, 1);
    let empty = Home::new();
    let pulled = empty.ok(&["pull", &target]);
    assert_eq!(pulled.trim(), format!("{target}@{digest}"));
    assert!(empty.ok(&["run", &target]).contains("Hello from wasmbuild"));
}

#[test]
fn a_push_that_keeps_failing_leaves_the_tag_on_the_previous_image() {
    let registry = require_registry();
    let proxy = FaultProxy::start(&registry);
    let path = unique_repo("keeps-failing");
    let target = format!("{}/{path}:1.0", proxy.addr());
    let home = Home::new();
    let first = digest_of(&home.build("hello", &["-t", &target])).to_owned();
    home.ok(&["push", &target]);

    // Another image under the same tag, whose blobs the registry never accepts.
    let second = digest_of(&home.build("prebuilt", &["-t", &target])).to_owned();
    assert_ne!(first, second);
    proxy.reset_counters();
    proxy.inject(Fault::Status(503), Match::BlobUpload, FOREVER);
    let output = home
        .cmd()
        .env("WASMBUILD_REGISTRY_ATTEMPTS", "2")
        .args(["push", &target])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("503"), "{err}");
    assert!(err.contains("2 attempts"), "{err}");
    assert!(
        err.contains(&format!("http://{}/v2/{path}/blobs/uploads/", proxy.addr())),
        "{err}"
    );
    assert!(stdout(&output).is_empty());
    assert!(
        !proxy
            .requests()
            .iter()
            .any(|e| e.method == "PUT" && e.path.contains("/manifests/")),
        "no manifest was sent: {:?}",
        proxy.requests()
    );
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{registry}/{path}:1.0"),
    ]);
    assert_eq!(sha256_digest(raw.as_bytes()), first);
}

#[test]
fn a_push_mounts_the_blobs_another_repository_of_the_registry_has() {
    let registry = require_registry();
    let proxy = FaultProxy::start(&registry);
    let (path_a, path_b) = (unique_repo("mount-a"), unique_repo("mount-b"));
    let a = format!("{}/{path_a}:1.0", proxy.addr());
    let b = format!("{}/{path_b}:1.0", proxy.addr());
    let home = Home::new();
    let digest = digest_of(&home.build("hello", &["-t", &a])).to_owned();
    home.ok(&["tag", &a, &b]);

    let first: Value = serde_json::from_str(&home.ok(&["push", "--json", &a])).unwrap();
    assert!(first["pushes"][0]["uploadedBytes"].as_u64().unwrap() > 0);

    // B: every blob (the image's and its precompiled artifact's) is mounted from A.
    proxy.reset_counters();
    let output = home.run(&["push", "--json", &b]);
    assert!(output.status.success(), "{}", stderr(&output));
    let second: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let push = &second["pushes"][0];
    assert_eq!(push["digest"], digest.as_str());
    assert_eq!(push["uploadedBytes"], 0, "{second}");
    let blobs = push["blobs"].as_array().unwrap();
    assert!(
        blobs.len() >= 3,
        "config, layer and a precompiled blob: {second}"
    );
    for blob in blobs {
        assert_eq!(blob["outcome"], "mounted", "{second}");
    }
    assert!(stderr(&output).contains("mounted"), "{}", stderr(&output));
    assert_eq!(proxy.uploaded_blob_bytes(), 0, "{:?}", proxy.requests());
    let requests = proxy.requests();
    let uploads: Vec<_> = requests.iter().filter(|e| e.is_blob_upload()).collect();
    assert_eq!(uploads.len(), blobs.len(), "one POST per blob: {uploads:?}");
    let from = format!("&from={}", path_a.replace('/', "%2F"));
    for upload in uploads {
        assert_eq!(upload.method, "POST", "{upload:?}");
        assert!(
            upload
                .path
                .starts_with(&format!("/v2/{path_b}/blobs/uploads/?mount=sha256%3A")),
            "{upload:?}"
        );
        assert!(upload.path.ends_with(&from), "{upload:?}");
        assert_eq!(upload.status, Some(201), "{upload:?}");
    }

    // The registry itself has B, and it pulls into an empty home and runs.
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{registry}/{path_b}:1.0"),
    ]);
    assert_eq!(sha256_digest(raw.as_bytes()), digest);
    let empty = Home::new();
    let pulled = empty.ok(&["pull", &b]);
    assert_eq!(pulled.trim(), format!("{b}@{digest}"));
    let ran = empty.ok(&["run", &b, "mount"]);
    assert!(ran.contains("Hello from wasmbuild, mount!"), "{ran}");
}
