//! Pushing images to and pulling them from OCI distribution registries.
//!
//! The distribution protocol spoken directly over blocking HTTP (ureq with rustls and the
//! system's root certificates): HTTPS, or plain HTTP for loopback hosts and
//! `--insecure-registry` ones. A request is tried without credentials first; a 401's
//! `WWW-Authenticate` challenge says how to authenticate (Basic, or a Bearer token from
//! the registry's token service, fetched with the user's password or Docker's identity
//! token). Transient failures are retried with backoff and `Retry-After`. Blobs are
//! streamed from and to files, never held in memory whole.
//!
//! - `http`: the transport, retries, URLs;
//! - `auth`: challenges, Basic and Bearer, the token service;
//! - `push` and `pull`: the two operations.

mod auth;
mod http;
mod pull;
mod push;

pub use pull::{FetchedPrecompiled, choose_wasm};

use std::fmt;
use std::io;
use std::time::Duration;

use crate::credentials::Credential;
use crate::digest::Digest;
use crate::image::Descriptor;
use crate::precompiled::PrecompiledInfo;
use crate::reference::Reference;
use crate::store::StoreError;

/// The largest manifest or index a registry may send; larger ones are refused unread.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Hosts (`host` or `host:port`) that may be reached over plain HTTP
    /// (`--insecure-registry`). Loopback hosts (`localhost`, `127.0.0.0/8`, `[::1]`)
    /// always may.
    pub insecure: Vec<String>,
    pub retry: RetryPolicy,
    /// Blobs larger than this are uploaded in chunks of this size (GHCR refuses single
    /// requests over a few MB).
    pub chunk_size: u64,
    /// A request that makes no progress for this long fails (and is retried).
    pub timeout: Duration,
}

impl Default for RegistryOptions {
    /// No insecure hosts, the default [`RetryPolicy`], 4 MiB chunks, a 60 s timeout.
    fn default() -> RegistryOptions {
        RegistryOptions {
            insecure: Vec::new(),
            retry: RetryPolicy::default(),
            chunk_size: 4 << 20,
            timeout: Duration::from_secs(60),
        }
    }
}

/// Transient failures (connection refused or reset, timeouts, 408, 429, 5xx) are retried:
/// at most `attempts` tries per request, waiting `base_delay * 2^n` (capped at
/// `max_delay`) between them, or what a 429/503's `Retry-After` says (capped at
/// `max_delay`).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 250 ms doubling up to 10 s.
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// Where precompiled referrers were listed or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferrersVia {
    /// The OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`).
    Api,
    /// The `sha256-<hex>` tag holding an index of the referrers, for registries without the API.
    TagFallback,
}

/// What happened to one blob of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlobOutcome {
    /// Sent to the registry.
    Uploaded,
    /// The registry had it (HEAD); nothing sent.
    Existed,
    /// Mounted from another repository of the same registry; nothing sent.
    Mounted,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobReport {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub outcome: BlobOutcome,
}

/// Progress of a push or pull, for the CLI's reporter.
#[derive(Debug, Clone)]
pub enum Event {
    /// A blob is being sent or fetched: `done` of `size` bytes so far.
    Transfer {
        digest: Digest,
        done: u64,
        size: u64,
    },
    /// A blob is finished (uploaded, skipped, downloaded or already local).
    BlobDone {
        digest: Digest,
        size: u64,
        note: &'static str,
    },
    /// A request failed transiently and will be retried after `delay`.
    Retry {
        what: String,
        attempt: u32,
        delay: Duration,
    },
}

/// What `push` did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushReport {
    /// The reference pushed to, pinned to the manifest digest.
    pub reference: Reference,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Config and layers, then each referrer's blobs.
    pub blobs: Vec<BlobReport>,
    /// Blob bytes sent over the wire (zero when the registry had everything).
    pub uploaded_bytes: u64,
    /// Precompiled referrers pushed (their manifest digests), and how they are listed.
    pub referrers: Vec<Digest>,
    pub referrers_via: Option<ReferrersVia>,
}

/// What `pull` did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullReport {
    /// The reference pulled, pinned to the manifest digest.
    pub reference: Reference,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Blob bytes fetched over the wire (zero when the store had every blob).
    pub downloaded_bytes: u64,
    /// Precompiled referrers fetched (those `want_precompiled` accepted).
    pub referrers: Vec<Digest>,
}

/// Pushes the image `source` (a manifest in `store`, with its precompiled referrers) to
/// `target` and tags it there. Blobs first (HEAD, then upload what is missing), the
/// manifest last, then the referrers.
pub fn push(
    store: &crate::store::Store,
    source: &Descriptor,
    target: &Reference,
    credential: &Credential,
    options: &RegistryOptions,
    on_event: &mut dyn FnMut(&Event),
) -> Result<PushReport, RegistryError> {
    push::push(
        store,
        source,
        target,
        credential,
        options,
        &|_| Vec::new(),
        on_event,
    )
}

/// [`push`], offering the registry to mount each blob it lacks from the repositories (of
/// the same registry, as `me/app`) that `mount_sources` names for the blob's digest, the
/// way `docker push` does: a mounted blob is not sent ([`BlobOutcome::Mounted`]). The
/// token asked for then covers pulling from the source repository too; where the registry
/// or its token service refuses that, or declines the mount, the blob is uploaded.
pub fn push_with_mounts(
    store: &crate::store::Store,
    source: &Descriptor,
    target: &Reference,
    credential: &Credential,
    options: &RegistryOptions,
    mount_sources: &dyn Fn(&Digest) -> Vec<String>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<PushReport, RegistryError> {
    push::push(
        store,
        source,
        target,
        credential,
        options,
        mount_sources,
        on_event,
    )
}

/// Pulls `source` into `store` under `source` (without its digest), fetching each
/// precompiled referrer that `want_precompiled` accepts. Every blob is checked against its
/// descriptor's digest and size before the store sees it; the store changes only once
/// everything has arrived.
pub fn pull(
    store: &crate::store::Store,
    source: &Reference,
    credential: &Credential,
    options: &RegistryOptions,
    want_precompiled: &dyn Fn(&PrecompiledInfo) -> bool,
    on_event: &mut dyn FnMut(&Event),
) -> Result<PullReport, RegistryError> {
    pull::pull(
        store,
        source,
        credential,
        options,
        want_precompiled,
        on_event,
    )
}

/// Fetches, without the image, the precompiled artifact of the image `subject` in
/// `source`'s repository that `want` accepts: its cwasm lands in a partial file of `store`,
/// checked against its digest and size, and the store's index does not change. `None` when
/// the image has no such artifact. For a node that has the image already (the containerd
/// shim).
pub fn fetch_precompiled(
    store: &crate::store::Store,
    source: &Reference,
    subject: Digest,
    credential: &Credential,
    options: &RegistryOptions,
    want: &dyn Fn(&PrecompiledInfo) -> bool,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Option<FetchedPrecompiled>, RegistryError> {
    pull::fetch_precompiled(store, source, subject, credential, options, want, on_event)
}

/// Checks that `credential` is accepted by `registry` (a host, as in a [`Reference`]), the
/// way `docker login` does: `GET /v2/`, then the token service if it asks for one.
pub fn check_login(
    registry: &str,
    credential: &Credential,
    options: &RegistryOptions,
) -> Result<(), RegistryError> {
    let mut client = http::Client::new(registry, credential, options, Vec::new());
    let url = format!("{}/v2/", client.base);
    let call = http::Call::new(http::Method::Get, url.clone());
    client.retrying(&mut |_| {}, |client, on_event| {
        let response = client.exchange(&call, on_event)?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            _ => Err(http::status_error(http::Method::Get, &url, response).into()),
        }
    })
}

/// The error a registry put in its JSON body (`{"errors":[{"code":…,"message":…}]}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// `MANIFEST_BLOB_UNKNOWN`, `DENIED`, `NAME_UNKNOWN`, …
    pub code: String,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code.is_empty(), self.message.is_empty()) {
            (false, false) => write!(f, "{}: {}", self.code, self.message),
            (false, true) => f.write_str(&self.code),
            _ => f.write_str(&self.message),
        }
    }
}

/// A registry operation that failed; each names the URL and status involved, never a
/// secret. URLs are shown without their query (upload locations carry opaque state).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry answered with a status that means failure.
    #[error("{method} {url} answered {}{}{}", status_text(*status), api_suffix(error), attempts_suffix(*attempts))]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        error: Option<ApiError>,
        /// How many times the request was tried.
        attempts: u32,
    },
    /// The image (manifest) is not in the registry.
    #[error(
        "{reference} is not in the registry: GET {url} answered 404 Not Found{}",
        api_suffix(error)
    )]
    NotFound {
        reference: String,
        url: String,
        error: Option<ApiError>,
    },
    /// The registry or its token service refused the credentials, or wants some.
    #[error("{}", unauthorized_text(url, *status, *credential, error))]
    Unauthorized {
        /// The registry host (`ghcr.io`), as `wasmbuild login` takes it.
        registry: String,
        url: String,
        status: u16,
        /// What was offered: `None` when no credentials were found.
        credential: Option<CredentialKind>,
        error: Option<ApiError>,
    },
    /// The request got no answer: connection refused or reset, a timeout, …
    #[error("{method} {url} failed{}", attempts_suffix(*attempts))]
    Io {
        method: &'static str,
        url: String,
        attempts: u32,
        #[source]
        source: io::Error,
    },
    /// The TLS handshake failed (a certificate the system does not trust, or a host that
    /// speaks plain HTTP).
    #[error("TLS with {url} failed")]
    Tls {
        registry: String,
        url: String,
        #[source]
        source: io::Error,
    },
    #[error("the manifest at {url} is larger than {limit} bytes{}", size.map(|s| format!(" ({s} bytes)")).unwrap_or_default())]
    ManifestTooLarge {
        url: String,
        limit: u64,
        size: Option<u64>,
    },
    /// A manifest names a config larger than [`MAX_CONFIG_SIZE`](crate::image::MAX_CONFIG_SIZE);
    /// it is not fetched.
    #[error(
        "the manifest at {url} names a config of {size} bytes ({digest}), more than the {limit} bytes an image config may have"
    )]
    ConfigTooLarge {
        url: String,
        digest: Digest,
        size: u64,
        limit: u64,
    },
    #[error("{what} from {url} hashes to {actual}, not {expected}")]
    DigestMismatch {
        /// `manifest`, `blob`, `the Docker-Content-Digest header`, …
        what: &'static str,
        url: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("blob {digest} from {url}: {} arrived, but its descriptor says {expected}", if *more { format!("more than {actual} bytes") } else { format!("{actual} bytes") })]
    SizeMismatch {
        url: String,
        digest: Digest,
        expected: u64,
        actual: u64,
        /// At least `actual` bytes arrived (the download was cut off there).
        more: bool,
    },
    #[error("the image index at {url} has no wasi/wasm image; it offers {}", if offered.is_empty() { "none".to_string() } else { offered.join(", ") })]
    NoWasmPlatform { url: String, offered: Vec<String> },
    #[error("{url} answered something unusable: {reason}")]
    InvalidResponse { url: String, reason: String },
    #[error("cannot push {target}: {reason}")]
    InvalidTarget { target: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The kind of credential a registry refused (never the credential itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A user name and password (or token used as one).
    Password,
    /// Docker's `identitytoken`.
    IdentityToken,
}

impl CredentialKind {
    fn of(credential: &Credential) -> Option<CredentialKind> {
        match credential {
            Credential::Anonymous => None,
            Credential::Basic { .. } => Some(CredentialKind::Password),
            Credential::IdentityToken { .. } => Some(CredentialKind::IdentityToken),
        }
    }
}

impl RegistryError {
    /// What to try next, where something more than the message helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            RegistryError::Unauthorized {
                registry,
                credential: None,
                ..
            } => Some(format!(
                "log in with `wasmbuild login {registry}`, or set WASMBUILD_USERNAME and WASMBUILD_PASSWORD"
            )),
            RegistryError::Unauthorized {
                registry,
                status: 403,
                ..
            } => Some(format!(
                "the account may not have access to this repository; check its permissions, or log in as another user with `wasmbuild login {registry}`"
            )),
            RegistryError::Unauthorized { registry, .. } => Some(format!(
                "run `wasmbuild login {registry}` again, or check WASMBUILD_USERNAME and WASMBUILD_PASSWORD"
            )),
            RegistryError::Tls { registry, .. } => Some(format!(
                "if {registry} serves plain HTTP, pass `--insecure-registry {registry}`; if it uses a private certificate authority, add it to the system's trusted certificates"
            )),
            RegistryError::Io { source, url, .. } => match source.kind() {
                io::ErrorKind::ConnectionRefused => Some(format!(
                    "nothing answers at {}: check that the registry is running and the host and port are right",
                    http::origin(url)
                )),
                io::ErrorKind::TimedOut => {
                    Some("the registry is slow or unreachable; try again later".to_string())
                }
                _ => None,
            },
            RegistryError::NotFound { .. } => Some(
                "check the repository and tag; `wasmbuild push` it there first if it was never pushed"
                    .to_string(),
            ),
            RegistryError::NoWasmPlatform { .. } => Some(
                "that image was not built for WebAssembly; wasmbuild runs wasi/wasm images".to_string(),
            ),
            RegistryError::Status { status, .. } if *status >= 500 => Some(
                "the registry failed on its side; try again later".to_string(),
            ),
            RegistryError::Status {
                error: Some(e), ..
            } if e.code == "DENIED" || e.code == "UNAUTHORIZED" => Some(
                "check that the account may push to this repository (`wasmbuild login HOST`)"
                    .to_string(),
            ),
            RegistryError::DigestMismatch { .. } | RegistryError::SizeMismatch { .. } => Some(
                "the registry sent different content than it announced; nothing was stored".to_string(),
            ),
            RegistryError::Store(e) => e.hint(),
            _ => None,
        }
    }

    /// The same error, saying how many times the request was tried.
    pub(crate) fn after_attempts(mut self, n: u32) -> RegistryError {
        match &mut self {
            RegistryError::Status { attempts, .. } | RegistryError::Io { attempts, .. } => {
                *attempts = n
            }
            _ => {}
        }
        self
    }
}

fn status_text(status: u16) -> String {
    match reason_phrase(status) {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

pub(crate) fn reason_phrase(status: u16) -> Option<&'static str> {
    ::ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
}

fn api_suffix(error: &Option<ApiError>) -> String {
    match error {
        Some(e) => format!(" ({e})"),
        None => String::new(),
    }
}

fn attempts_suffix(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (gave up after {attempts} attempts)")
    } else {
        String::new()
    }
}

fn unauthorized_text(
    url: &str,
    status: u16,
    credential: Option<CredentialKind>,
    error: &Option<ApiError>,
) -> String {
    // A 401's error body only says that authentication is required; a 403's says why.
    let status = match error {
        Some(e) if status != 401 => format!("{}: {e}", status_text(status)),
        _ => status_text(status),
    };
    match credential {
        Some(CredentialKind::Password) => {
            format!("the registry at {url} refused the user name or password ({status})")
        }
        Some(CredentialKind::IdentityToken) => {
            format!("the registry at {url} refused the identity token ({status})")
        }
        None => format!("the registry at {url} needs credentials, and none were found ({status})"),
    }
}

#[cfg(test)]
mod tests;
