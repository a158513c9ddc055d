#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use super::auth::parse_challenges;
use super::http::{
    self, Call, Client, Method, base_url, parse_retry_after, resolve_location, retry_delay,
    with_query,
};
use super::pull::choose_wasm;
use super::push::{fallback_tag, merge_fallback_index};
use super::*;
use crate::credentials::Secret;
use crate::image::{
    Blob, ImageIndex, MAX_CONFIG_SIZE, Manifest, PackedImage, Platform, media_type,
};
use crate::store::Store;

const PASSWORD: &str = "pw-Hunter2-do-not-show";
const TOKEN: &str = "tok-Bearer-do-not-show";
const REFRESH: &str = "refresh-Identity-do-not-show";

fn basic() -> Credential {
    Credential::Basic {
        username: "me".into(),
        password: Secret::new(PASSWORD),
    }
}

fn fast() -> RegistryOptions {
    RegistryOptions {
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        timeout: Duration::from_secs(10),
        ..RegistryOptions::default()
    }
}

fn assert_no_secret(text: &str) {
    for secret in [PASSWORD, TOKEN, REFRESH] {
        assert!(!text.contains(secret), "{secret} shows in: {text}");
    }
}

/// Display, Debug and hint of an error, to check for secrets.
fn everything(error: &RegistryError) -> String {
    format!("{error} | {error:?} | {:?}", error.hint())
}

// --- WWW-Authenticate -----------------------------------------------------------------------

#[test]
fn challenges_are_parsed_with_quoted_commas_escapes_and_several_schemes() {
    let parsed = parse_challenges(
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/hello:pull,push""#,
    );
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].scheme, "bearer");
    assert_eq!(
        parsed[0].param("realm"),
        Some("https://auth.docker.io/token")
    );
    assert_eq!(parsed[0].param("service"), Some("registry.docker.io"));
    assert_eq!(
        parsed[0].param("scope"),
        Some("repository:library/hello:pull,push")
    );

    let parsed = parse_challenges(
        r#"Basic realm="a \"quoted\", realm", BEARER Realm=https://x/token , service = plain"#,
    );
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[0].scheme, "basic");
    assert_eq!(parsed[0].param("realm"), Some(r#"a "quoted", realm"#));
    assert_eq!(parsed[1].scheme, "bearer");
    assert_eq!(parsed[1].param("REALM"), Some("https://x/token"));
    assert_eq!(parsed[1].param("service"), Some("plain"));

    let parsed = parse_challenges("Negotiate abc==, Basic realm=\"r\"");
    assert_eq!(
        parsed.iter().map(|c| c.scheme.as_str()).collect::<Vec<_>>(),
        ["negotiate", "basic"]
    );
    assert_eq!(parsed[1].param("realm"), Some("r"));
    assert!(parse_challenges("").is_empty());
    assert_eq!(parse_challenges("Basic")[0].params, []);
}

// --- Retry-After and backoff ----------------------------------------------------------------

#[test]
fn retry_after_is_read_as_seconds_or_an_http_date() {
    // 1994-11-06T08:49:37Z
    let then = UNIX_EPOCH + Duration::from_secs(784_111_777);
    assert_eq!(
        parse_retry_after("120", then),
        Some(Duration::from_secs(120))
    );
    assert_eq!(parse_retry_after(" 0 ", then), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after(
            "Sun, 06 Nov 1994 08:49:37 GMT",
            then - Duration::from_secs(30)
        ),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        parse_retry_after(
            "Sun, 06 Nov 1994 08:49:37 GMT",
            then + Duration::from_secs(5)
        ),
        Some(Duration::ZERO),
        "a date in the past means now"
    );
    // A leap day, past 2038.
    let leap = UNIX_EPOCH + Duration::from_secs(4_107_542_400);
    assert_eq!(
        parse_retry_after("Wed, 29 Feb 2100 00:00:10 GMT", leap),
        None,
        "2100 is not a leap year"
    );
    assert_eq!(
        parse_retry_after(
            "Tue, 29 Feb 2028 00:00:10 GMT",
            UNIX_EPOCH + Duration::from_secs(1_835_395_200)
        ),
        Some(Duration::from_secs(10))
    );
    for bad in [
        "",
        "soon",
        "-1",
        "1.5",
        "Sun, 06 Nov 1994 08:49:37 PST",
        "Sun, 06 Foo 1994 08:49:37 GMT",
    ] {
        assert_eq!(parse_retry_after(bad, then), None, "{bad:?}");
    }
}

#[test]
fn backoff_doubles_and_every_wait_is_capped() {
    let policy = RetryPolicy {
        attempts: 10,
        base_delay: Duration::from_millis(250),
        max_delay: Duration::from_secs(1),
    };
    let waits: Vec<u128> = (1..=5)
        .map(|n| retry_delay(&policy, n, None).as_millis())
        .collect();
    assert_eq!(waits, [250, 500, 1000, 1000, 1000]);
    assert_eq!(retry_delay(&policy, 40, None), Duration::from_secs(1));
    assert_eq!(
        retry_delay(&policy, 1, Some(Duration::from_secs(3600))),
        Duration::from_secs(1),
        "Retry-After is capped too"
    );
    assert_eq!(
        retry_delay(&policy, 3, Some(Duration::from_millis(10))),
        Duration::from_millis(10)
    );
}

#[test]
fn the_defaults_are_the_documented_ones() {
    let o = RegistryOptions::default();
    assert_eq!(o.retry.attempts, 5);
    assert_eq!(o.retry.base_delay, Duration::from_millis(250));
    assert_eq!(o.retry.max_delay, Duration::from_secs(10));
    assert_eq!(o.chunk_size, 4 << 20);
    assert_eq!(o.timeout, Duration::from_secs(60));
    assert!(o.insecure.is_empty());
}

// --- URLs -----------------------------------------------------------------------------------

#[test]
fn https_unless_loopback_or_insecure_and_docker_hub_has_its_own_host() {
    let none: Vec<String> = Vec::new();
    assert_eq!(base_url("docker.io", &none), "https://registry-1.docker.io");
    assert_eq!(base_url("ghcr.io", &none), "https://ghcr.io");
    assert_eq!(base_url("localhost", &none), "http://localhost");
    assert_eq!(base_url("localhost:5000", &none), "http://localhost:5000");
    assert_eq!(base_url("127.0.0.1:5000", &none), "http://127.0.0.1:5000");
    assert_eq!(base_url("127.8.9.10", &none), "http://127.8.9.10");
    assert_eq!(base_url("[::1]:5000", &none), "http://[::1]:5000");
    assert_eq!(base_url("128.0.0.1:5000", &none), "https://128.0.0.1:5000");
    assert_eq!(
        base_url("localhost.example.com", &none),
        "https://localhost.example.com"
    );
    let insecure = vec!["reg.lan:5000".to_string(), "other.lan".to_string()];
    assert_eq!(base_url("reg.lan:5000", &insecure), "http://reg.lan:5000");
    assert_eq!(base_url("reg.lan:6000", &insecure), "https://reg.lan:6000");
    assert_eq!(base_url("reg.lan", &insecure), "https://reg.lan");
    assert_eq!(base_url("other.lan:443", &insecure), "http://other.lan:443");
    assert_eq!(base_url("other.lan", &insecure), "http://other.lan");
}

#[test]
fn locations_resolve_against_the_request_and_keep_their_query() {
    let request = "http://reg:5000/v2/app/blobs/uploads/";
    assert_eq!(
        resolve_location(request, "/v2/app/blobs/uploads/u1?_state=abc"),
        "http://reg:5000/v2/app/blobs/uploads/u1?_state=abc"
    );
    assert_eq!(
        resolve_location(request, "https://storage.example/up/1?sig=x"),
        "https://storage.example/up/1?sig=x"
    );
    assert_eq!(
        resolve_location(request, "//other:1/up"),
        "http://other:1/up"
    );
    assert_eq!(
        resolve_location("http://reg/v2/app/blobs/uploads/u1?_state=a", "u2?_state=b"),
        "http://reg/v2/app/blobs/uploads/u2?_state=b"
    );
    assert_eq!(resolve_location("http://reg", "x"), "http://reg/x");

    assert_eq!(
        with_query("http://reg/up/u1", "digest", "sha256:ab"),
        "http://reg/up/u1?digest=sha256%3Aab"
    );
    assert_eq!(
        with_query("http://reg/up/u1?_state=a", "digest", "sha256:ab"),
        "http://reg/up/u1?_state=a&digest=sha256%3Aab"
    );
    assert_eq!(
        with_query("http://reg/x?", "k", "v w"),
        "http://reg/x?k=v%20w"
    );
    assert_eq!(
        http::shown("http://reg/up/u1?_state=secretish"),
        "http://reg/up/u1"
    );
}

// --- referrers ------------------------------------------------------------------------------

fn referrer(n: u8) -> Descriptor {
    let mut d = Descriptor::new(media_type::OCI_MANIFEST, Digest::of(&[n]), u64::from(n));
    d.artifact_type = Some(media_type::PRECOMPILED.to_string());
    d.annotations
        .insert("dev.wasmbuild.target".into(), format!("t{n}"));
    d
}

#[test]
fn the_fallback_index_keeps_what_is_there_and_adds_only_what_is_new() {
    let (index, changed) = merge_fallback_index(None, &[referrer(1)]);
    assert!(changed);
    assert_eq!(index.media_type.as_deref(), Some(media_type::OCI_INDEX));
    assert_eq!(index.manifests, [referrer(1)]);

    let mut foreign = Descriptor::new(media_type::OCI_MANIFEST, Digest::of(b"sbom"), 9);
    foreign.artifact_type = Some("application/spdx+json".into());
    let existing = ImageIndex::new(vec![foreign.clone(), referrer(1)]);
    let (index, changed) =
        merge_fallback_index(Some(existing.clone()), &[referrer(1), referrer(2)]);
    assert!(changed);
    assert_eq!(index.manifests, [foreign, referrer(1), referrer(2)]);
    let (same, changed) = merge_fallback_index(Some(existing.clone()), &[referrer(1)]);
    assert!(!changed);
    assert_eq!(same, existing);

    let d = Digest::of(b"x");
    assert_eq!(fallback_tag(&d), format!("sha256-{}", d.hex()));
}

#[test]
fn an_index_yields_its_wasm_entry_or_lists_what_it_offers() {
    let entry = |os: &str, arch: &str, variant: Option<&str>, n: u8| {
        let mut d = Descriptor::new(media_type::OCI_MANIFEST, Digest::of(&[n]), 1);
        d.platform = Some(Platform {
            architecture: arch.into(),
            os: os.into(),
            os_version: None,
            os_features: Vec::new(),
            variant: variant.map(str::to_string),
        });
        d
    };
    let index = ImageIndex::new(vec![
        entry("linux", "amd64", None, 1),
        entry("linux", "arm64", Some("v8"), 2),
        entry("wasip1", "wasm", None, 3),
    ]);
    assert_eq!(choose_wasm(&index).unwrap().digest, Digest::of(&[3]));
    let index = ImageIndex::new(vec![
        entry("linux", "amd64", None, 1),
        entry("linux", "arm64", Some("v8"), 2),
        Descriptor::new(media_type::OCI_MANIFEST, Digest::of(&[4]), 1),
    ]);
    let offered = choose_wasm(&index).unwrap_err();
    assert_eq!(offered[..2], ["linux/amd64", "linux/arm64/v8"]);
    assert!(offered[2].ends_with("(no platform)"));
    let error = RegistryError::NoWasmPlatform {
        url: "http://reg/v2/app/manifests/1".into(),
        offered,
    };
    assert!(
        error
            .to_string()
            .contains("it offers linux/amd64, linux/arm64/v8"),
        "{error}"
    );
}

// --- a scripted registry --------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn reply(status: u16) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: Vec::new(),
    }
}

impl Reply {
    fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }
}

/// A one-connection-at-a-time HTTP server on loopback that answers with `script` and
/// records every request. Each answer closes its connection.
struct Mock {
    host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Mock {
    fn start(mut script: impl FnMut(&Seen) -> Reply + Send + 'static) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                // A TLS handshake: answer as an HTTP server would.
                let mut first = [0u8; 1];
                if stream.peek(&mut first).is_ok_and(|n| n == 1) && first[0] == 0x16 {
                    let _ =
                        stream.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
                    continue;
                }
                let Some(request) = read_request(&mut stream) else {
                    continue;
                };
                log.lock().unwrap().push(request.clone());
                let answer = script(&request);
                let reason = reason_phrase(answer.status).unwrap_or("Whatever");
                let mut head = format!("HTTP/1.1 {} {reason}\r\n", answer.status);
                for (name, value) in &answer.headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str(&format!(
                    "Content-Length: {}\r\nConnection: close\r\n\r\n",
                    answer.body.len()
                ));
                let _ = stream.write_all(head.as_bytes());
                if request.method != "HEAD" {
                    let _ = stream.write_all(&answer.body);
                }
            }
        });
        Mock { host, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host)
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        target,
        headers,
        body,
    })
}

fn bearer_challenge(mock_host: &str) -> String {
    format!(r#"Bearer realm="http://{mock_host}/token",service="mock",scope="repository:app:pull""#)
}

#[test]
fn a_bearer_challenge_gets_a_token_with_the_password_and_the_token_is_cached() {
    let host = Arc::new(Mutex::new(String::new()));
    let host_for_script = Arc::clone(&host);
    let mock = Mock::start(move |req| {
        let host = host_for_script.lock().unwrap().clone();
        match (req.method.as_str(), req.target.as_str()) {
            ("GET", t) if t.starts_with("/token?") => {
                reply(200).body(format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#))
            }
            _ if req.header("authorization") == Some(&format!("Bearer {TOKEN}")) => {
                reply(200).body("{}")
            }
            _ => reply(401)
                .header("WWW-Authenticate", bearer_challenge(&host))
                .body(
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                ),
        }
    });
    *host.lock().unwrap() = mock.host.clone();
    let options = fast();
    let mut client = Client::new(
        &mock.host,
        &basic(),
        &options,
        vec!["repository:app:pull,push".into()],
    );
    for path in ["/v2/app/tags/list", "/v2/app/manifests/1"] {
        let response = client
            .request(&Call::new(Method::Get, mock.url(path)), &mut |_| {})
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
    let seen = mock.seen();
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(targets.len(), 4, "{targets:?}");
    assert_eq!(targets[0], "/v2/app/tags/list");
    assert_eq!(
        targets[1],
        "/token?service=mock&scope=repository%3Aapp%3Apull%2Cpush&scope=repository%3Aapp%3Apull&account=me",
        "our scopes, the challenge's, the account"
    );
    let expected_basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("me:{PASSWORD}")
        )
    );
    assert_eq!(
        seen[1].header("authorization"),
        Some(expected_basic.as_str())
    );
    assert_eq!(seen[0].header("authorization"), None, "tried bare first");
    assert_eq!(targets[2..], ["/v2/app/tags/list", "/v2/app/manifests/1"]);
    assert_no_secret(&format!("{:?}", client.auth));
}

#[test]
fn an_identity_token_is_exchanged_with_the_refresh_token_grant() {
    let host = Arc::new(Mutex::new(String::new()));
    let host_for_script = Arc::clone(&host);
    let mock = Mock::start(move |req| {
        let host = host_for_script.lock().unwrap().clone();
        match (req.method.as_str(), req.target.as_str()) {
            ("POST", "/token") => reply(200).body(format!(r#"{{"access_token":"{TOKEN}"}}"#)),
            _ if req.header("authorization") == Some(&format!("Bearer {TOKEN}")) => reply(200),
            _ => reply(401).header("WWW-Authenticate", bearer_challenge(&host)),
        }
    });
    *host.lock().unwrap() = mock.host.clone();
    let credential = Credential::IdentityToken {
        username: "<token>".into(),
        token: Secret::new(REFRESH),
    };
    check_login(&mock.host, &credential, &fast()).unwrap();
    let seen = mock.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].method, "POST");
    assert_eq!(
        seen[1].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        String::from_utf8(seen[1].body.clone()).unwrap(),
        format!(
            "grant_type=refresh_token&refresh_token={REFRESH}&client_id=wasmbuild&service=mock&scope=repository%3Aapp%3Apull"
        )
    );
    assert_eq!(seen[1].header("authorization"), None);
}

#[test]
fn refused_credentials_name_the_url_and_status_and_never_the_secrets() {
    // The token service refuses the password.
    let host = Arc::new(Mutex::new(String::new()));
    let host_for_script = Arc::clone(&host);
    let mock = Mock::start(move |req| {
        let host = host_for_script.lock().unwrap().clone();
        if req.target.starts_with("/token") {
            reply(401).body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad password"}]}"#)
        } else {
            reply(401).header("WWW-Authenticate", bearer_challenge(&host))
        }
    });
    *host.lock().unwrap() = mock.host.clone();
    let error = check_login(&mock.host, &basic(), &fast()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the registry at http://{}/token refused the user name or password (401 Unauthorized)",
            mock.host
        )
    );
    assert!(
        error
            .hint()
            .unwrap()
            .contains(&format!("wasmbuild login {}", mock.host))
    );
    assert_no_secret(&everything(&error));

    // A registry that takes Basic and refuses it, then 403s with a reason.
    let mock = Mock::start(|req| {
        match req.header("authorization") {
        None => reply(401).header("WWW-Authenticate", r#"Basic realm="r""#),
        Some(_) if req.target.contains("denied") => reply(403)
            .body(r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#),
        Some(_) => reply(401).header("WWW-Authenticate", r#"Basic realm="r""#),
    }
    });
    let options = fast();
    let mut client = Client::new(&mock.host, &basic(), &options, Vec::new());
    let error = client
        .request(&Call::new(Method::Get, mock.url("/v2/")), &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    assert_no_secret(&everything(&error));
    assert_no_secret(&format!("{:?}", client.auth));
    let error = client
        .request(&Call::new(Method::Get, mock.url("/v2/denied")), &mut |_| {})
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the registry at http://{}/v2/denied refused the user name or password (403 Forbidden: DENIED: requested access to the resource is denied)",
            mock.host
        )
    );
    assert!(error.hint().unwrap().contains("permissions"));
    assert_no_secret(&everything(&error));

    // Nothing to offer.
    let error = check_login(&mock.host, &Credential::Anonymous, &fast()).unwrap_err();
    assert!(error.to_string().contains("needs credentials"), "{error}");
    assert!(error.hint().unwrap().contains("WASMBUILD_USERNAME"));
}

#[test]
fn transient_statuses_are_retried_as_retry_after_says_and_then_given_up() {
    let count = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&count);
    let mock = Mock::start(move |_| {
        let mut n = counter.lock().unwrap();
        *n += 1;
        match *n {
            1 => reply(503).header("Retry-After", "0"),
            2 => reply(429).header("Retry-After", "Thu, 01 Jan 1970 00:00:00 GMT"),
            3 => reply(200),
            _ => reply(502).body(r#"{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}"#),
        }
    });
    let options = fast();
    let mut client = Client::new(&mock.host, &Credential::Anonymous, &options, Vec::new());
    let mut retries = Vec::new();
    let response = client
        .request(&Call::new(Method::Get, mock.url("/v2/")), &mut |e| {
            if let Event::Retry {
                what,
                attempt,
                delay,
            } = e
            {
                retries.push((what.clone(), *attempt, *delay));
            }
        })
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(retries.len(), 2);
    assert_eq!(retries[0].1, 1);
    assert_eq!(retries[0].2, Duration::ZERO, "Retry-After: 0");
    assert!(
        retries[0].0.contains("503 Service Unavailable"),
        "{:?}",
        retries[0]
    );
    assert!(
        retries[1].0.contains("429 Too Many Requests"),
        "{:?}",
        retries[1]
    );

    let error = client
        .request(&Call::new(Method::Get, mock.url("/v2/x")), &mut |_| {})
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "GET http://{}/v2/x answered 502 Bad Gateway (UNAVAILABLE: try later) (gave up after 3 attempts)",
            mock.host
        )
    );
    assert_eq!(*count.lock().unwrap(), 6);
}

#[test]
fn tls_to_a_plain_http_server_says_so_and_hints_at_insecure_registries() {
    let mock = Mock::start(|_| reply(200));
    let options = fast();
    let mut client = Client::new(
        "registry.test",
        &Credential::Anonymous,
        &options,
        Vec::new(),
    );
    let url = format!("https://{}/v2/", mock.host);
    let error = client
        .request(&Call::new(Method::Get, url.clone()), &mut |_| {})
        .unwrap_err();
    assert!(matches!(error, RegistryError::Tls { .. }), "{error:?}");
    assert_eq!(error.to_string(), format!("TLS with {url} failed"));
    assert!(
        error
            .hint()
            .unwrap()
            .contains("--insecure-registry registry.test")
    );
}

/// A store with one image whose layer is `layer`.
fn store_with_layer(dir: &std::path::Path, layer: Vec<u8>) -> (Store, PackedImage) {
    let config = Blob::new(
        media_type::OCI_CONFIG,
        br#"{"architecture":"wasm","os":"wasi","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec(),
    );
    let layer = Blob::new(media_type::WASM_LAYER, layer);
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_string()),
        artifact_type: None,
        config: config.descriptor(),
        layers: vec![layer.descriptor()],
        subject: None,
        annotations: BTreeMap::new(),
    };
    let image = PackedImage {
        manifest: Blob::new(media_type::OCI_MANIFEST, crate::image::to_json(&manifest)),
        config,
        layers: vec![layer],
    };
    let store = Store::open(&dir.join("store")).unwrap();
    store
        .put(&image, &["localhost/app:1".parse().unwrap()])
        .unwrap();
    (store, image)
}

#[test]
fn chunked_uploads_follow_each_location_and_start_over_after_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let layer: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let (store, image) = store_with_layer(tmp.path(), layer.clone());
    let host = Arc::new(Mutex::new(String::new()));
    let host_for_script = Arc::clone(&host);
    let manifest_digest = *image.digest();
    let patches = Arc::new(Mutex::new(0));
    let mut uploads = 0;
    let mock = Mock::start(move |req| {
        let host = host_for_script.lock().unwrap().clone();
        let path = req.target.split('?').next().unwrap().to_string();
        match req.method.as_str() {
            "HEAD" => reply(404),
            "POST" => {
                uploads += 1;
                // Relative, with a query.
                reply(202).header(
                    "Location",
                    format!("/v2/app/blobs/uploads/u{uploads}?_state=0"),
                )
            }
            "PATCH" => {
                let mut n = patches.lock().unwrap();
                *n += 1;
                if *n == 3 {
                    return reply(500);
                }
                let state: u32 = req
                    .target
                    .rsplit("_state=")
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                // Absolute, with a query.
                reply(202).header(
                    "Location",
                    format!("http://{host}{path}?_state={}", state + 1),
                )
            }
            "PUT" if path.starts_with("/v2/app/manifests/") => {
                reply(201).header("Docker-Content-Digest", manifest_digest.to_string())
            }
            "PUT" => reply(201),
            _ => reply(400),
        }
    });
    *host.lock().unwrap() = mock.host.clone();
    let options = RegistryOptions {
        chunk_size: 4096,
        ..fast()
    };
    let source = store.resolve(&"localhost/app:1".parse().unwrap()).unwrap();
    let target: Reference = format!("{}/app:1", mock.host).parse().unwrap();
    let mut retries = 0;
    let report = push(
        &store,
        &source,
        &target,
        &Credential::Anonymous,
        &options,
        &mut |e| {
            retries += usize::from(matches!(e, Event::Retry { .. }));
        },
    )
    .unwrap();
    assert_eq!(retries, 1);
    assert_eq!(report.digest, manifest_digest);
    assert_eq!(report.referrers_via, None);

    let seen = mock.seen();
    // The layer's last upload: PATCHes of 4096, 4096, 1808 bytes, then the closing PUT.
    let last_post = seen.iter().rposition(|s| s.method == "POST").unwrap();
    let layer_upload: Vec<&Seen> = seen[last_post + 1..]
        .iter()
        .take_while(|s| s.method != "HEAD" && s.method != "POST")
        .collect();
    let (patch_requests, rest): (Vec<&Seen>, Vec<&Seen>) =
        layer_upload.iter().partition(|s| s.method == "PATCH");
    let ranges: Vec<&str> = patch_requests
        .iter()
        .map(|s| s.header("content-range").unwrap())
        .collect();
    assert_eq!(ranges, ["0-4095", "4096-8191", "8192-9999"]);
    let sent: Vec<u8> = patch_requests.iter().flat_map(|s| s.body.clone()).collect();
    assert_eq!(sent, layer);
    assert_eq!(
        patch_requests[0].target,
        "/v2/app/blobs/uploads/u3?_state=0"
    );
    assert_eq!(
        patch_requests[1].target, "/v2/app/blobs/uploads/u3?_state=1",
        "the absolute Location of the previous answer"
    );
    let put = rest[0];
    assert_eq!(
        put.target,
        format!(
            "/v2/app/blobs/uploads/u3?_state=3&digest={}",
            http::percent_encode(&image.layers[0].digest.to_string())
        )
    );
    assert!(put.body.is_empty());
    // The config went up whole, in the closing PUT.
    let config_put = seen
        .iter()
        .find(|s| s.target.starts_with("/v2/app/blobs/uploads/u1"))
        .unwrap();
    assert_eq!(config_put.method, "PUT");
    assert_eq!(config_put.body, image.config.bytes);
    // Bytes sent: the config, the two chunks of the failed try, then the whole layer.
    let config_len = image.config.bytes.len() as u64;
    assert_eq!(
        report.uploaded_bytes,
        config_len + 8192 + layer.len() as u64
    );
    let manifest_put = seen.last().unwrap();
    assert_eq!(manifest_put.method, "PUT");
    assert_eq!(manifest_put.target, "/v2/app/manifests/1");
    assert_eq!(
        manifest_put.body, image.manifest.bytes,
        "the exact stored bytes"
    );
    assert_eq!(
        manifest_put.header("content-type"),
        Some(media_type::OCI_MANIFEST)
    );
}

// --- cross-repository mounts ----------------------------------------------------------------

/// `POST /v2/app/blobs/uploads/?mount=<digest>&from=<from>`, as the mock sees it.
fn mount_target(digest: &Digest, from: &str) -> String {
    format!(
        "/v2/app/blobs/uploads/?mount={}&from={}",
        http::percent_encode(&digest.to_string()),
        http::percent_encode(from)
    )
}

#[test]
fn a_blob_another_repository_holds_is_mounted_and_nothing_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, image) = store_with_layer(tmp.path(), b"the module".to_vec());
    let manifest_digest = *image.digest();
    let mock = Mock::start(move |req| {
        let path = req.target.split('?').next().unwrap();
        match req.method.as_str() {
            "HEAD" => reply(404),
            "POST" if req.target.contains("mount=") => {
                let digest = req.target.split("mount=").nth(1).unwrap();
                let digest = digest.split('&').next().unwrap().replace("%3A", ":");
                reply(201)
                    .header("Location", format!("/v2/app/blobs/{digest}"))
                    .header("Docker-Content-Digest", digest)
            }
            "PUT" if path.starts_with("/v2/app/manifests/") => {
                reply(201).header("Docker-Content-Digest", manifest_digest.to_string())
            }
            _ => reply(400),
        }
    });
    let source = store.resolve(&"localhost/app:1".parse().unwrap()).unwrap();
    let target: Reference = format!("{}/app:1", mock.host).parse().unwrap();
    let mut notes = Vec::new();
    let report = push_with_mounts(
        &store,
        &source,
        &target,
        &Credential::Anonymous,
        &fast(),
        // The target's own repository is never a source.
        &|_| vec!["app".to_string(), "team/other".to_string()],
        &mut |e| {
            if let Event::BlobDone { note, .. } = e {
                notes.push(*note);
            }
        },
    )
    .unwrap();
    assert_eq!(notes, ["mounted", "mounted"]);
    let outcomes: Vec<(Digest, BlobOutcome)> =
        report.blobs.iter().map(|b| (b.digest, b.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            (image.config.digest, BlobOutcome::Mounted),
            (image.layers[0].digest, BlobOutcome::Mounted)
        ]
    );
    assert_eq!(report.uploaded_bytes, 0);

    let seen = mock.seen();
    let posts: Vec<&str> = seen
        .iter()
        .filter(|s| s.method == "POST")
        .map(|s| s.target.as_str())
        .collect();
    assert_eq!(
        posts,
        [
            mount_target(&image.config.digest, "team/other"),
            mount_target(&image.layers[0].digest, "team/other")
        ]
    );
    assert!(
        seen.iter().all(|s| s.method != "PATCH"),
        "no chunk was sent: {seen:?}"
    );
    let puts: Vec<&Seen> = seen.iter().filter(|s| s.method == "PUT").collect();
    assert_eq!(puts.len(), 1, "only the manifest: {puts:?}");
    assert_eq!(puts[0].target, "/v2/app/manifests/1");
    assert_eq!(puts[0].body, image.manifest.bytes);
}

#[test]
fn a_declined_mount_continues_on_the_upload_session_it_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let layer: Vec<u8> = (0..10_000u32).map(|i| (i % 241) as u8).collect();
    let (store, image) = store_with_layer(tmp.path(), layer.clone());
    let manifest_digest = *image.digest();
    let mut sessions = 0;
    let mock = Mock::start(move |req| {
        let path = req.target.split('?').next().unwrap().to_string();
        match req.method.as_str() {
            "HEAD" => reply(404),
            // Distribution's answer when the source lacks the blob: a fresh session.
            "POST" => {
                sessions += 1;
                reply(202).header(
                    "Location",
                    format!("/v2/app/blobs/uploads/declined{sessions}?_state=0"),
                )
            }
            "PATCH" => {
                let state: u32 = req
                    .target
                    .rsplit("_state=")
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                reply(202).header("Location", format!("{path}?_state={}", state + 1))
            }
            "PUT" if path.starts_with("/v2/app/manifests/") => {
                reply(201).header("Docker-Content-Digest", manifest_digest.to_string())
            }
            "PUT" => reply(201),
            _ => reply(400),
        }
    });
    let options = RegistryOptions {
        chunk_size: 4096,
        ..fast()
    };
    let source = store.resolve(&"localhost/app:1".parse().unwrap()).unwrap();
    let target: Reference = format!("{}/app:1", mock.host).parse().unwrap();
    let report = push_with_mounts(
        &store,
        &source,
        &target,
        &Credential::Anonymous,
        &options,
        &|_| vec!["never-pushed".to_string()],
        &mut |_| {},
    )
    .unwrap();
    assert!(
        report
            .blobs
            .iter()
            .all(|b| b.outcome == BlobOutcome::Uploaded),
        "{report:?}"
    );
    let config_len = image.config.bytes.len() as u64;
    assert_eq!(report.uploaded_bytes, config_len + layer.len() as u64);

    let seen = mock.seen();
    let posts: Vec<&str> = seen
        .iter()
        .filter(|s| s.method == "POST")
        .map(|s| s.target.as_str())
        .collect();
    assert_eq!(
        posts,
        [
            mount_target(&image.config.digest, "never-pushed"),
            mount_target(&image.layers[0].digest, "never-pushed")
        ],
        "one POST per blob: no second session was opened"
    );
    // The config, whole, in the PUT that closes the first session.
    let config_put = seen
        .iter()
        .find(|s| s.method == "PUT" && s.target.starts_with("/v2/app/blobs/uploads/declined1"))
        .unwrap();
    assert_eq!(
        config_put.target,
        format!(
            "/v2/app/blobs/uploads/declined1?_state=0&digest={}",
            http::percent_encode(&image.config.digest.to_string())
        )
    );
    assert_eq!(config_put.body, image.config.bytes);
    // The layer in chunks on the second session, from the Location the 202 gave.
    let patches: Vec<&Seen> = seen.iter().filter(|s| s.method == "PATCH").collect();
    let targets: Vec<&str> = patches.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/v2/app/blobs/uploads/declined2?_state=0",
            "/v2/app/blobs/uploads/declined2?_state=1",
            "/v2/app/blobs/uploads/declined2?_state=2"
        ]
    );
    let sent: Vec<u8> = patches.iter().flat_map(|s| s.body.clone()).collect();
    assert_eq!(sent, layer);
}

#[test]
fn a_mount_asks_for_a_token_that_may_pull_the_source_and_uploads_when_it_is_refused() {
    const WIDE: &str = "tok-Wide-do-not-show";
    let host = Arc::new(Mutex::new(String::new()));
    let host_for_script = Arc::clone(&host);
    let tmp = tempfile::tempdir().unwrap();
    let (store, image) = store_with_layer(tmp.path(), b"the module".to_vec());
    let manifest_digest = *image.digest();
    let mock = Mock::start(move |req| {
        let host = host_for_script.lock().unwrap().clone();
        let path = req.target.split('?').next().unwrap();
        let challenge = || {
            reply(401)
                .header("WWW-Authenticate", bearer_challenge(&host))
                .body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#)
        };
        if path == "/token" {
            return if req
                .target
                .contains("scope=repository%3Asecret%2Fapp%3Apull")
            {
                // The account may not read that repository: no token at all.
                reply(403).body(r#"{"errors":[{"code":"DENIED","message":"no"}]}"#)
            } else if req
                .target
                .contains("scope=repository%3Ateam%2Fother%3Apull")
            {
                reply(200).body(format!(r#"{{"token":"{WIDE}"}}"#))
            } else {
                reply(200).body(format!(r#"{{"token":"{TOKEN}"}}"#))
            };
        }
        let token = req.header("authorization").unwrap_or_default();
        let wide = token == format!("Bearer {WIDE}");
        if !wide && token != format!("Bearer {TOKEN}") {
            return challenge();
        }
        match req.method.as_str() {
            "HEAD" => reply(404),
            "POST" if req.target.contains("mount=") && !wide => challenge(),
            "POST" if req.target.contains("mount=") => reply(201),
            "POST" => reply(202).header("Location", "/v2/app/blobs/uploads/u?_state=0"),
            "PUT" if path.starts_with("/v2/app/manifests/") => {
                reply(201).header("Docker-Content-Digest", manifest_digest.to_string())
            }
            "PUT" => reply(201),
            _ => reply(400),
        }
    });
    *host.lock().unwrap() = mock.host.clone();
    let source = store.resolve(&"localhost/app:1".parse().unwrap()).unwrap();
    let target: Reference = format!("{}/app:1", mock.host).parse().unwrap();
    let options = fast();
    let push_from = |from: &str| {
        let from = from.to_string();
        push_with_mounts(
            &store,
            &source,
            &target,
            &basic(),
            &options,
            &move |_| vec![from.clone()],
            &mut |_| {},
        )
        .unwrap()
    };

    // The token service refuses the source's scope: plain uploads, with the first token.
    let report = push_from("secret/app");
    assert!(
        report
            .blobs
            .iter()
            .all(|b| b.outcome == BlobOutcome::Uploaded),
        "{report:?}"
    );
    let seen = mock.seen();
    let refused: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.target.contains("secret%2Fapp"))
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "not asked again for the next blob: {refused:?}"
    );
    assert!(refused[0].target.starts_with("/token?"));
    let uploads: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.method == "POST" || (s.method == "PUT" && s.target.contains("/blobs/")))
        .collect();
    assert_eq!(uploads.len(), 4, "{uploads:?}");
    for upload in uploads {
        assert!(!upload.target.contains("mount="), "{upload:?}");
        assert_eq!(
            upload.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }

    // It grants it: the token asked for before the mount covers both repositories.
    let before = mock.seen().len();
    let report = push_from("team/other");
    assert!(
        report
            .blobs
            .iter()
            .all(|b| b.outcome == BlobOutcome::Mounted),
        "{report:?}"
    );
    assert_eq!(report.uploaded_bytes, 0);
    let seen = mock.seen()[before..].to_vec();
    let token_requests: Vec<&str> = seen
        .iter()
        .filter(|s| s.target.starts_with("/token?"))
        .map(|s| s.target.as_str())
        .collect();
    assert_eq!(
        token_requests,
        [
            "/token?service=mock&scope=repository%3Aapp%3Apull%2Cpush&scope=repository%3Aapp%3Apull&account=me",
            "/token?service=mock&scope=repository%3Aapp%3Apull%2Cpush&scope=repository%3Aapp%3Apull&scope=repository%3Ateam%2Fother%3Apull&account=me",
        ],
        "the second token is fetched once and kept for the next blob"
    );
    let mounts: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.target.contains("mount="))
        .collect();
    assert_eq!(mounts.len(), 2);
    for mount in mounts {
        assert_eq!(
            mount.header("authorization"),
            Some(format!("Bearer {WIDE}").as_str())
        );
    }
    // The manifest goes with the push token again.
    assert_eq!(
        seen.last().unwrap().header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

#[test]
fn pulls_refuse_what_does_not_match_and_leave_the_store_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, image) = store_with_layer(tmp.path(), b"the module".to_vec());
    let manifest = image.manifest.bytes.clone();
    let manifest_digest = *image.digest();
    let config = image.config.bytes.clone();
    let layer_digest = image.layers[0].digest;
    let config_digest = image.config.digest;
    // Which lie the registry tells, per repository.
    let mock = Mock::start(move |req| {
        let repo = req.target.split('/').nth(2).unwrap_or_default().to_string();
        let is_manifest = req.target.contains("/manifests/");
        match repo.as_str() {
            "big" if is_manifest => reply(200).body(vec![b' '; (MAX_MANIFEST_SIZE + 1) as usize]),
            "header" if is_manifest => reply(200)
                .header("Content-Type", media_type::OCI_MANIFEST)
                .header("Docker-Content-Digest", Digest::of(b"other").to_string())
                .body(manifest.clone()),
            _ if is_manifest => reply(200)
                .header("Content-Type", media_type::OCI_MANIFEST)
                .body(manifest.clone()),
            _ if req.target.ends_with(&config_digest.to_string()) => {
                reply(200).body(config.clone())
            }
            "long" if req.target.ends_with(&layer_digest.to_string()) => {
                reply(200).body(b"the module, and more".to_vec())
            }
            "corrupt" if req.target.ends_with(&layer_digest.to_string()) => {
                reply(200).body(b"THE MODULE".to_vec())
            }
            _ => reply(404),
        }
    });
    let dest = Store::open(&tmp.path().join("dest")).unwrap();
    let before = std::fs::read(dest.root().join("index.json")).unwrap();
    let pull_repo = |repo: &str| {
        let source: Reference = format!("{}/{repo}:1", mock.host).parse().unwrap();
        pull(
            &dest,
            &source,
            &Credential::Anonymous,
            &fast(),
            &|_| true,
            &mut |_| {},
        )
        .unwrap_err()
    };

    let error = pull_repo("big");
    assert!(
        matches!(error, RegistryError::ManifestTooLarge { .. }),
        "{error:?}"
    );
    let error = pull_repo("header");
    assert!(
        matches!(error, RegistryError::DigestMismatch { actual, .. } if actual == manifest_digest),
        "{error:?}"
    );
    let error = pull_repo("long");
    assert!(
        matches!(
            error,
            RegistryError::SizeMismatch {
                expected: 10,
                actual: 20,
                ..
            }
        ),
        "{error:?}"
    );
    let error = pull_repo("corrupt");
    assert!(
        error.to_string().starts_with(&format!(
            "blob from http://{}/v2/corrupt/blobs/{layer_digest} hashes to",
            mock.host
        )),
        "{error}"
    );
    let pinned: Reference = format!("{}/fine@{}", mock.host, Digest::of(b"other"))
        .parse()
        .unwrap();
    let error = pull(
        &dest,
        &pinned,
        &Credential::Anonymous,
        &fast(),
        &|_| true,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(error, RegistryError::DigestMismatch { expected, actual, .. } if expected == Digest::of(b"other") && actual == manifest_digest),
        "{error:?}"
    );

    // Nothing of it reached the store: no blob, no partial file, the same index.
    let blobs: Vec<_> = std::fs::read_dir(dest.root().join("blobs/sha256"))
        .unwrap()
        .collect();
    assert!(blobs.is_empty(), "{blobs:?}");
    assert_eq!(
        std::fs::read(dest.root().join("index.json")).unwrap(),
        before
    );
}

#[test]
fn a_config_over_the_limit_is_refused_before_it_is_asked_for() {
    let huge = MAX_CONFIG_SIZE + 1;
    let config = Descriptor::new(media_type::OCI_CONFIG, Digest::of(b"a huge config"), huge);
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_string()),
        artifact_type: None,
        config: config.clone(),
        layers: Vec::new(),
        subject: None,
        annotations: BTreeMap::new(),
    };
    let bytes = crate::image::to_json(&manifest);
    let mock = Mock::start(move |req| {
        if req.target.contains("/manifests/") {
            reply(200)
                .header("Content-Type", media_type::OCI_MANIFEST)
                .body(bytes.clone())
        } else {
            reply(404)
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let source: Reference = format!("{}/big-config:1", mock.host).parse().unwrap();
    let error = pull(
        &store,
        &source,
        &Credential::Anonymous,
        &fast(),
        &|_| true,
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the manifest at http://{}/v2/big-config/manifests/1 names a config of {huge} bytes ({}), more than the 4194304 bytes an image config may have",
            mock.host, config.digest
        )
    );
    assert!(
        mock.seen()
            .iter()
            .all(|seen| !seen.target.contains("/blobs/")),
        "{:?}",
        mock.seen()
    );
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn debug_of_the_client_state_and_errors_shows_no_secret() {
    let options = fast();
    let client = Client::new(
        "reg.example",
        &basic(),
        &options,
        vec!["repository:a:pull".into()],
    );
    assert_no_secret(&format!("{:?}", client.auth));
    let errors = [
        RegistryError::Unauthorized {
            registry: "reg.example".into(),
            url: "https://reg.example/v2/".into(),
            status: 401,
            credential: Some(CredentialKind::Password),
            error: None,
        },
        RegistryError::Io {
            method: "GET",
            url: "https://reg.example/v2/".into(),
            attempts: 5,
            source: std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"),
        },
    ];
    for error in &errors {
        assert_no_secret(&everything(error));
    }
    assert_eq!(
        errors[1].to_string(),
        "GET https://reg.example/v2/ failed (gave up after 5 attempts)"
    );
}
