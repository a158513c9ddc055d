//! push and pull against a real CNCF distribution registry (Debian's `docker-registry`):
//! the two `scripts/test` starts, one open (WASMBUILD_TEST_REGISTRY) and one with htpasswd
//! auth (WASMBUILD_TEST_AUTH_REGISTRY and its user). skopeo, an independent client, reads
//! what was pushed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmbuild_packer::credentials::{Credential, Secret};
use wasmbuild_packer::image::media_type;
use wasmbuild_packer::registry::{
    self, BlobOutcome, Event, ReferrersVia, RegistryError, RegistryOptions,
};
use wasmbuild_packer::{
    Descriptor, ImageInput, PackedImage, PrecompiledInput, Reference, Store, pack, pack_precompiled,
};
use wasmbuild_spec::ImageConfig;

const MODULE: &[u8] = b"\0asm\x01\0\0\0 pretend this is a module";

/// The registry scripts/test started.
fn registry() -> String {
    std::env::var("WASMBUILD_TEST_REGISTRY").unwrap_or_else(|_| {
        panic!("WASMBUILD_TEST_REGISTRY is not set: run scripts/test, which starts it")
    })
}

/// A repository name no other test run uses, so runs against one registry never meet.
fn unique(name: &str) -> String {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "wasmbuild-test/{name}-{}-{nanos}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

fn r(s: &str) -> Reference {
    s.parse().unwrap()
}

fn image(label: &str, extra: &[u8]) -> PackedImage {
    let mut config = ImageConfig {
        workdir: "/".into(),
        ..ImageConfig::default()
    };
    config.labels.insert("which".into(), label.into());
    let mut module = MODULE.to_vec();
    module.extend_from_slice(extra);
    pack(&ImageInput {
        module_name: "hello",
        module: &module,
        config: &config,
        copies: &[],
        source_date_epoch: None,
    })
    .unwrap()
}

fn precompiled(image: &PackedImage, target: &str) -> PackedImage {
    pack_precompiled(
        &image.manifest_descriptor(),
        &PrecompiledInput {
            module_name: "hello",
            target,
            cwasm: format!("\x7fELF cwasm for {target} of {}", image.digest()).as_bytes(),
            wasmtime_version: "48.0.8",
            engine: "test-engine",
        },
    )
    .unwrap()
}

/// A store holding `image` as `local` with `referrers`; returns it and the image's entry.
fn store_with(dir: &Path, image: &PackedImage, referrers: &[PackedImage]) -> (Store, Descriptor) {
    let store = Store::open(&dir.join("source")).unwrap();
    let descriptor = store
        .put_with_referrers(
            image,
            &[r("localhost/app:local")],
            media_type::PRECOMPILED,
            referrers,
        )
        .unwrap();
    (store, descriptor)
}

fn options() -> RegistryOptions {
    RegistryOptions {
        retry: registry::RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
        },
        ..RegistryOptions::default()
    }
}

fn blob_bytes(images: &[&PackedImage]) -> u64 {
    let mut seen = std::collections::BTreeSet::new();
    images
        .iter()
        .flat_map(|i| std::iter::once(&i.config).chain(&i.layers))
        .filter(|b| seen.insert(b.digest))
        .map(|b| b.bytes.len() as u64)
        .sum()
}

fn skopeo_raw(reference: &str, creds: Option<&str>) -> Vec<u8> {
    let mut command = Command::new("skopeo");
    command.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(creds) = creds {
        command.args(["--creds", creds]);
    }
    let output = command
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run skopeo ({e}): run scripts/test, which installs it"));
    assert!(
        output.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn push_then_pull_round_trips_the_image_and_its_precompiled_referrer() {
    let host = registry();
    let tmp = tempfile::tempdir().unwrap();
    let app = image("round-trip", b"");
    let cwasm = precompiled(&app, "x86_64-unknown-linux-gnu");
    let (source, descriptor) = store_with(tmp.path(), &app, std::slice::from_ref(&cwasm));
    let repo = unique("round-trip");
    let target = r(&format!("{host}/{repo}:1.0"));

    let mut events = Vec::new();
    let pushed = registry::push(
        &source,
        &descriptor,
        &target,
        &Credential::Anonymous,
        &options(),
        &mut |e| events.push(e.clone()),
    )
    .unwrap();
    assert_eq!(pushed.digest, *app.digest());
    assert_eq!(pushed.reference, target.with_digest(*app.digest()));
    assert_eq!(pushed.uploaded_bytes, blob_bytes(&[&app, &cwasm]));
    assert!(
        pushed
            .blobs
            .iter()
            .all(|b| b.outcome == BlobOutcome::Uploaded),
        "{:?}",
        pushed.blobs
    );
    assert_eq!(pushed.referrers, [*cwasm.digest()]);
    // distribution 2.8 has no referrers API.
    assert_eq!(pushed.referrers_via, Some(ReferrersVia::TagFallback));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::BlobDone {
            note: "uploaded",
            ..
        }
    )));

    // An independent client sees our exact manifest bytes, and the fallback index.
    assert_eq!(
        skopeo_raw(&target.to_string(), None),
        app.manifest.bytes,
        "the registry holds the manifest byte for byte"
    );
    let fallback: serde_json::Value = serde_json::from_slice(&skopeo_raw(
        &format!("{host}/{repo}:sha256-{}", app.digest().hex()),
        None,
    ))
    .unwrap();
    let listed = fallback["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["digest"], cwasm.digest().to_string());
    assert_eq!(listed[0]["artifactType"], media_type::PRECOMPILED);
    assert_eq!(
        listed[0]["annotations"]["dev.wasmbuild.target"],
        "x86_64-unknown-linux-gnu"
    );

    // Again: the registry has every blob, nothing is sent, the fallback index is as it was.
    let again = registry::push(
        &source,
        &descriptor,
        &target,
        &Credential::Anonymous,
        &options(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(again.uploaded_bytes, 0);
    assert!(
        again
            .blobs
            .iter()
            .all(|b| b.outcome == BlobOutcome::Existed)
    );
    assert_eq!(again.digest, pushed.digest);

    // Pull into an empty store: the same manifest, blobs and referrer.
    let dest = Store::open(&tmp.path().join("dest")).unwrap();
    let pulled = registry::pull(
        &dest,
        &target,
        &Credential::Anonymous,
        &options(),
        &|info| info.target == "x86_64-unknown-linux-gnu",
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(pulled.digest, *app.digest());
    assert_eq!(pulled.media_type, media_type::OCI_MANIFEST);
    assert_eq!(pulled.downloaded_bytes, blob_bytes(&[&app, &cwasm]));
    assert_eq!(pulled.referrers, [*cwasm.digest()]);
    let stored = dest.resolve(&target).unwrap();
    assert_eq!(stored.digest, *app.digest());
    for blob in app.blobs().chain(cwasm.blobs()) {
        assert_eq!(dest.read_blob(&blob.digest).unwrap(), blob.bytes);
    }
    let referrers = dest.referrers(app.digest()).unwrap();
    assert_eq!(referrers.len(), 1);
    assert_eq!(referrers[0].0.digest, *cwasm.digest());
    // The stores agree entry for entry (but for the reference name).
    assert_eq!(
        dest.referrers(app.digest()).unwrap(),
        source.referrers(app.digest()).unwrap()
    );

    // Pulling again fetches no blob; a digest-only pull keeps the image untagged.
    let again = registry::pull(
        &dest,
        &target,
        &Credential::Anonymous,
        &options(),
        &|_| true,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(again.downloaded_bytes, 0);
    let by_digest = Store::open(&tmp.path().join("by-digest")).unwrap();
    let pinned = r(&format!("{host}/{repo}@{}", app.digest()));
    let pulled = registry::pull(
        &by_digest,
        &pinned,
        &Credential::Anonymous,
        &options(),
        &|_| false,
        &mut |_| {},
    )
    .unwrap();
    assert!(pulled.referrers.is_empty(), "none was wanted");
    assert!(by_digest.list().unwrap().is_empty(), "kept untagged");
    assert_eq!(by_digest.resolve(&pinned).unwrap().digest, *app.digest());
    assert!(by_digest.referrers(app.digest()).unwrap().is_empty());

    // The artifact alone, for a node that has the image: its cwasm, checked, and the store
    // as it was.
    let node = Store::open(&tmp.path().join("node")).unwrap();
    let fetched = registry::fetch_precompiled(
        &node,
        &target,
        *app.digest(),
        &Credential::Anonymous,
        &options(),
        &|info| info.target == "x86_64-unknown-linux-gnu",
        &mut |_| {},
    )
    .unwrap()
    .expect("the artifact");
    assert_eq!(fetched.referrer, *cwasm.digest());
    assert_eq!(fetched.info.target, "x86_64-unknown-linux-gnu");
    let cwasm_layer = cwasm.layers[0].descriptor();
    assert_eq!(fetched.info.cwasm.digest, cwasm_layer.digest);
    let bytes = std::fs::read(&fetched.cwasm).unwrap();
    assert_eq!(bytes.len() as u64, cwasm_layer.size);
    assert_eq!(wasmbuild_packer::Digest::of(&bytes), cwasm_layer.digest);
    assert!(node.list().unwrap().is_empty());
    let none = registry::fetch_precompiled(
        &node,
        &target,
        *app.digest(),
        &Credential::Anonymous,
        &options(),
        &|info| info.target == "aarch64-unknown-linux-gnu",
        &mut |_| {},
    )
    .unwrap();
    assert!(none.is_none(), "no artifact for another target");
}

#[test]
fn a_large_blob_goes_up_in_chunks_and_comes_back_whole() {
    let host = registry();
    let tmp = tempfile::tempdir().unwrap();
    // Incompressible bytes, so the gzip'd layer stays large.
    let mut noise = Vec::with_capacity(300_000);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while noise.len() < 300_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    let app = image("chunks", &noise);
    let layer = app.layers[0].bytes.len() as u64;
    let chunk = 64 << 10;
    assert!(layer > 4 * chunk, "the layer spans several chunks");
    let (source, descriptor) = store_with(tmp.path(), &app, &[]);
    let target = r(&format!("{host}/{}:big", unique("chunks")));
    let options = RegistryOptions {
        chunk_size: chunk,
        ..options()
    };
    let mut progress = Vec::new();
    let pushed = registry::push(
        &source,
        &descriptor,
        &target,
        &Credential::Anonymous,
        &options,
        &mut |e| {
            if let Event::Transfer { digest, done, size } = e
                && *digest == app.layers[0].digest
            {
                progress.push((*done, *size));
            }
        },
    )
    .unwrap();
    assert_eq!(pushed.uploaded_bytes, blob_bytes(&[&app]));
    assert_eq!(pushed.referrers_via, None);
    assert_eq!(progress.last(), Some(&(layer, layer)));
    assert!(progress.windows(2).all(|w| w[0].0 <= w[1].0));

    let dest = Store::open(&tmp.path().join("dest")).unwrap();
    let pulled = registry::pull(
        &dest,
        &target,
        &Credential::Anonymous,
        &options,
        &|_| true,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(pulled.digest, *app.digest());
    assert_eq!(
        dest.read_blob(&app.layers[0].digest).unwrap(),
        app.layers[0].bytes
    );
}

#[test]
fn pulling_a_missing_tag_names_the_url_and_the_404_and_changes_nothing() {
    let host = registry();
    let tmp = tempfile::tempdir().unwrap();
    let dest = Store::open(&tmp.path().join("dest")).unwrap();
    let before = snapshot(dest.root());
    let repo = unique("missing");
    let error = registry::pull(
        &dest,
        &r(&format!("{host}/{repo}:nope")),
        &Credential::Anonymous,
        &options(),
        &|_| true,
        &mut |_| {},
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, RegistryError::NotFound { .. }), "{error:?}");
    assert!(
        message.contains(&format!("http://{host}/v2/{repo}/manifests/nope")),
        "{message}"
    );
    assert!(message.contains("404 Not Found"), "{message}");
    assert!(error.hint().is_some());
    assert_eq!(snapshot(dest.root()), before, "the store is as it was");
}

/// Every file under `root` with its bytes.
fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The registry with htpasswd auth that scripts/test starts, and its user.
struct AuthRegistry {
    host: String,
    user: String,
    password: String,
}

impl AuthRegistry {
    fn from_env() -> AuthRegistry {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: run scripts/test, which starts the registry with auth")
            })
        };
        AuthRegistry {
            host: var("WASMBUILD_TEST_AUTH_REGISTRY"),
            user: var("WASMBUILD_TEST_AUTH_USER"),
            password: var("WASMBUILD_TEST_AUTH_PASSWORD"),
        }
    }
}

#[test]
fn basic_auth_pushes_with_the_password_and_refuses_a_wrong_one_without_showing_it() {
    let auth = AuthRegistry::from_env();
    let (user, password) = (auth.user.as_str(), auth.password.as_str());
    let tmp = tempfile::tempdir().unwrap();
    let app = image("auth", b"");
    let cwasm = precompiled(&app, "aarch64-unknown-linux-gnu");
    let (source, descriptor) = store_with(tmp.path(), &app, std::slice::from_ref(&cwasm));
    let target = r(&format!("{}/{}:1", auth.host, unique("auth")));
    let good = Credential::Basic {
        username: user.into(),
        password: Secret::new(password),
    };
    let wrong_password = "wrong-horse-battery";
    let wrong = Credential::Basic {
        username: user.into(),
        password: Secret::new(wrong_password),
    };

    registry::check_login(&auth.host, &good, &options()).unwrap();
    let error = registry::check_login(&auth.host, &wrong, &options()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the registry at http://{}/v2/ refused the user name or password (401 Unauthorized)",
            auth.host
        )
    );

    let pushed = registry::push(
        &source,
        &descriptor,
        &target,
        &good,
        &options(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(pushed.referrers_via, Some(ReferrersVia::TagFallback));
    assert_eq!(
        skopeo_raw(&target.to_string(), Some(&format!("{user}:{password}"))),
        app.manifest.bytes
    );

    let error = registry::push(
        &source,
        &descriptor,
        &target,
        &wrong,
        &options(),
        &mut |_| {},
    )
    .unwrap_err();
    let shown = format!("{error} {error:?} {}", error.hint().unwrap_or_default());
    assert!(
        matches!(error, RegistryError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    assert!(
        shown.contains("refused the user name or password"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("wasmbuild login {}", auth.host)),
        "{shown}"
    );
    assert!(!shown.contains(wrong_password), "{shown}");
    assert!(!shown.contains(password), "{shown}");

    let dest = Store::open(&tmp.path().join("dest")).unwrap();
    let error = registry::pull(
        &dest,
        &target,
        &Credential::Anonymous,
        &options(),
        &|_| true,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("needs credentials, and none were found"),
        "{error}"
    );
    let pulled = registry::pull(&dest, &target, &good, &options(), &|_| true, &mut |_| {}).unwrap();
    assert_eq!(pulled.digest, *app.digest());
    assert_eq!(pulled.referrers, [*cwasm.digest()]);
}

#[test]
fn an_unreachable_registry_is_retried_then_named_with_the_attempts() {
    // A port nothing listens on (bound, then released).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    let dest = Store::open(&tmp.path().join("dest")).unwrap();
    let mut retries = Vec::new();
    let error = registry::pull(
        &dest,
        &r(&format!("127.0.0.1:{port}/app:1")),
        &Credential::Anonymous,
        &options(),
        &|_| true,
        &mut |e| {
            if let Event::Retry { attempt, .. } = e {
                retries.push(*attempt);
            }
        },
    )
    .unwrap_err();
    assert_eq!(retries, [1, 2]);
    let message = error.to_string();
    assert!(
        message.contains(&format!("GET http://127.0.0.1:{port}/v2/app/manifests/1")),
        "{message}"
    );
    assert!(message.contains("gave up after 3 attempts"), "{message}");
    assert!(
        error
            .hint()
            .is_some_and(|h| h.contains("check that the registry is running")),
        "{:?}",
        error.hint()
    );
}
