//! The transport under the registry client: one ureq agent (statuses handled here, not
//! turned into errors), the choice of scheme, URLs, retries with backoff and
//! `Retry-After`, and the authentication round trip a 401 asks for.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ureq::http as h;

use super::auth::{Auth, parse_challenges};
use super::{ApiError, Event, MAX_MANIFEST_SIZE, RegistryError, RegistryOptions, RetryPolicy};
use crate::credentials::{Credential, Secret};
use crate::digest::Digest;
use crate::store::StoreError;

pub(crate) type Response = h::Response<ureq::Body>;

/// Error bodies are read up to this size for their `code` and `message`.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// A Transfer event at most every this many bytes (and at the end).
const PROGRESS_STEP: u64 = 256 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
}

impl Method {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

/// A request body that can be sent again: a retry or a re-send after a 401 reopens a
/// file rather than keeping its bytes.
pub(crate) enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of a blob file from `offset`; progress is reported against the whole
    /// blob (`digest`, `size`).
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
        digest: Digest,
        size: u64,
    },
}

/// One HTTP request, as often as it has to be sent.
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Body<'a>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, url: String) -> Call<'a> {
        Call {
            method,
            url,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Call<'a> {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn body(mut self, body: Body<'a>) -> Call<'a> {
        self.body = body;
        self
    }
}

/// A failed step: the error, and whether trying again may help.
pub(crate) struct Failure {
    pub(crate) error: Box<RegistryError>,
    pub(crate) transient: bool,
    /// What the registry's `Retry-After` asked for.
    pub(crate) retry_after: Option<Duration>,
}

impl From<RegistryError> for Failure {
    fn from(error: RegistryError) -> Failure {
        Failure {
            error: Box::new(error),
            transient: false,
            retry_after: None,
        }
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        RegistryError::Store(error).into()
    }
}

/// A connection to one registry for one operation: the agent, where the registry is, and
/// the credentials and tokens for the scopes the operation needs.
pub(crate) struct Client<'o> {
    agent: ureq::Agent,
    pub(crate) options: &'o RegistryOptions,
    /// The registry as a reference names it (`docker.io`, `localhost:5000`).
    pub(crate) registry: String,
    /// `https://registry-1.docker.io`, `http://localhost:5000`.
    pub(crate) base: String,
    pub(crate) auth: Auth,
}

impl<'o> Client<'o> {
    /// `scopes`: what every token is asked for (`repository:me/app:pull,push`).
    pub(crate) fn new(
        registry: &str,
        credential: &Credential,
        options: &'o RegistryOptions,
        scopes: Vec<String>,
    ) -> Client<'o> {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let timeout = Some(options.timeout);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .timeout_connect(timeout)
            .timeout_per_read(timeout)
            .timeout_per_write(timeout)
            .user_agent(format!("wasmbuild/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Client {
            agent,
            options,
            registry: registry.to_string(),
            base: base_url(registry, &options.insecure),
            auth: Auth::new(credential.clone(), scopes),
        }
    }

    /// `base` + `path` (`/v2/…`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `call` once, authenticating when the registry answers 401 (that re-send is
    /// not a retry). Transient statuses (408, 429, 5xx) and transport errors come back as
    /// transient failures; every other status is the caller's to judge.
    pub(crate) fn exchange(
        &mut self,
        call: &Call<'_>,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Response, Failure> {
        // After fresh credentials (a new token, or Basic sent for the first time), a
        // second 401 means they were refused.
        let mut fresh = false;
        loop {
            let authorization = self.auth.authorization();
            let response = self.send(call, authorization.as_ref(), on_event)?;
            let status = response.status().as_u16();
            if status == 401 && !fresh {
                let challenges: Vec<String> = response
                    .headers()
                    .get_all(h::header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_string))
                    .collect();
                let error = api_error(response);
                let challenges = parse_challenges(&challenges.join(", "));
                self.authenticate(&challenges, &call.url, error, on_event)?;
                fresh = true;
                continue;
            }
            if status == 401 || status == 403 {
                let error = api_error(response);
                return Err(self
                    .auth
                    .refused(&self.registry, &call.url, status, error)
                    .into());
            }
            if is_transient_status(status) {
                let retry_after = response
                    .headers()
                    .get(h::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                return Err(Failure {
                    error: Box::new(status_error(call.method, &call.url, response)),
                    transient: true,
                    retry_after,
                });
            }
            return Ok(response);
        }
    }

    /// Sends `call` once as it is, with `authorization` if given.
    pub(crate) fn send(
        &self,
        call: &Call<'_>,
        authorization: Option<&Secret>,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Response, Failure> {
        let mut builder = h::Request::builder()
            .method(call.method.as_str())
            .uri(&call.url);
        for (name, value) in &call.headers {
            builder = builder.header(*name, value);
        }
        if let Some(authorization) = authorization {
            builder = builder.header(h::header::AUTHORIZATION, authorization.expose());
        }
        let invalid = |e: h::Error| {
            Failure::from(RegistryError::InvalidResponse {
                url: shown(&call.url),
                reason: format!("cannot make a request for it: {e}"),
            })
        };
        let result = match &call.body {
            Body::Empty if matches!(call.method, Method::Get | Method::Head) => self
                .agent
                .run(builder.body(ureq::SendBody::none()).map_err(invalid)?),
            Body::Empty => self.agent.run(builder.body(&[][..]).map_err(invalid)?),
            Body::Bytes(bytes) => self.agent.run(builder.body(*bytes).map_err(invalid)?),
            Body::File {
                path,
                offset,
                len,
                digest,
                size,
            } => {
                let read_err = |source| StoreError::Io {
                    action: "read",
                    path: path.to_path_buf(),
                    source,
                };
                let mut file = fs::File::open(path).map_err(read_err)?;
                file.seek(SeekFrom::Start(*offset)).map_err(read_err)?;
                let mut reader = Progress {
                    inner: io::BufReader::with_capacity(1 << 16, file).take(*len),
                    digest: *digest,
                    done: *offset,
                    reported: *offset,
                    size: *size,
                    on_event,
                };
                let builder = builder.header(h::header::CONTENT_LENGTH, len.to_string());
                let body = ureq::SendBody::from_reader(&mut reader);
                self.agent.run(builder.body(body).map_err(invalid)?)
            }
        };
        result.map_err(|e| transport_failure(&self.registry, call.method, &call.url, e))
    }

    /// Runs `attempt` until it succeeds, fails for good, or has been tried
    /// `retry.attempts` times; waits between tries as the policy (or `Retry-After`) says
    /// and reports each retry.
    pub(crate) fn retrying<T>(
        &mut self,
        on_event: &mut dyn FnMut(&Event),
        mut attempt: impl FnMut(&mut Self, &mut dyn FnMut(&Event)) -> Result<T, Failure>,
    ) -> Result<T, RegistryError> {
        let policy = self.options.retry.clone();
        let attempts = policy.attempts.max(1);
        let mut n = 1;
        loop {
            match attempt(self, on_event) {
                Ok(value) => return Ok(value),
                Err(failure) if failure.transient && n < attempts => {
                    let delay = retry_delay(&policy, n, failure.retry_after);
                    on_event(&Event::Retry {
                        what: failure.error.to_string(),
                        attempt: n,
                        delay,
                    });
                    std::thread::sleep(delay);
                    n += 1;
                }
                Err(failure) => return Err(failure.error.after_attempts(n)),
            }
        }
    }

    /// [`Client::exchange`], retried.
    pub(crate) fn request(
        &mut self,
        call: &Call<'_>,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Response, RegistryError> {
        self.retrying(on_event, |client, on_event| client.exchange(call, on_event))
    }
}

/// Reads the body (up to [`MAX_ERROR_BODY`]) for the registry's error and makes the
/// error for an unexpected status.
pub(crate) fn status_error(method: Method, url: &str, response: Response) -> RegistryError {
    let status = response.status().as_u16();
    RegistryError::Status {
        method: method.as_str(),
        url: shown(url),
        status,
        error: api_error(response),
        attempts: 1,
    }
}

/// The first error of a distribution error body (`{"errors":[{"code","message"}]}`).
pub(crate) fn api_error(mut response: Response) -> Option<ApiError> {
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let mut bytes = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut bytes)
        .ok()?;
    let parsed: Errors = serde_json::from_slice(&bytes).ok()?;
    let first = parsed.errors.into_iter().next()?;
    let clean = |s: String| -> String { s.chars().filter(|c| !c.is_control()).take(300).collect() };
    Some(ApiError {
        code: clean(first.code),
        message: clean(first.message),
    })
}

/// Why a body could not be read whole.
pub(crate) enum ReadError {
    /// More than the limit (the size is known when Content-Length said so).
    TooLarge(Option<u64>),
    Io(io::Error),
}

/// The whole body, refused unread when Content-Length is over `limit` and cut off past it.
/// A manifest's body, as GET `url` answered it: refused past [`MAX_MANIFEST_SIZE`]
/// before it is read whole.
pub(crate) fn read_manifest(
    registry: &str,
    url: &str,
    response: Response,
) -> Result<Vec<u8>, Failure> {
    read_limited(response, MAX_MANIFEST_SIZE).map_err(|error| match error {
        ReadError::TooLarge(size) => RegistryError::ManifestTooLarge {
            url: shown(url),
            limit: MAX_MANIFEST_SIZE,
            size,
        }
        .into(),
        ReadError::Io(e) => body_failure(registry, Method::Get, url, e),
    })
}

pub(crate) fn read_limited(mut response: Response, limit: u64) -> Result<Vec<u8>, ReadError> {
    if let Some(length) = response.body().content_length()
        && length > limit
    {
        return Err(ReadError::TooLarge(Some(length)));
    }
    let mut bytes = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge(None));
    }
    Ok(bytes)
}

/// A header's value as text, if present and readable.
pub(crate) fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response.headers().get(name)?.to_str().ok()
}

/// A failure while reading a response body: transient unless the error says otherwise.
pub(crate) fn body_failure(registry: &str, method: Method, url: &str, error: io::Error) -> Failure {
    transport_failure(registry, method, url, ureq::Error::from(error))
}

fn transport_failure(registry: &str, method: Method, url: &str, error: ureq::Error) -> Failure {
    let io_failure = |source: io::Error, transient: bool| Failure {
        error: Box::new(RegistryError::Io {
            method: method.as_str(),
            url: shown(url),
            attempts: 1,
            source,
        }),
        transient,
        retry_after: None,
    };
    match error {
        // rustls reports through I/O errors: a certificate it does not trust, or a server
        // that answers the handshake in plain HTTP.
        ureq::Error::Io(e) if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => {
            RegistryError::Tls {
                registry: registry.to_string(),
                url: shown(url),
                source: e,
            }
            .into()
        }
        ureq::Error::Io(e) => {
            let transient = is_transient_io(e.kind());
            io_failure(e, transient)
        }
        ureq::Error::Timeout(t) => io_failure(
            io::Error::new(io::ErrorKind::TimedOut, format!("timed out ({t})")),
            true,
        ),
        ureq::Error::ConnectionFailed => io_failure(
            io::Error::new(io::ErrorKind::ConnectionRefused, "the connection failed"),
            true,
        ),
        // A malformed or cut-off answer: a proxy's or a stale connection's hiccup as often
        // as not.
        ureq::Error::Protocol(e) => io_failure(
            io::Error::new(io::ErrorKind::InvalidData, format!("bad HTTP answer: {e}")),
            true,
        ),
        ureq::Error::HostNotFound => io_failure(
            io::Error::new(io::ErrorKind::NotFound, "the host name does not resolve"),
            false,
        ),
        e @ (ureq::Error::Tls(_)
        | ureq::Error::Pem(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::TlsRequired) => RegistryError::Tls {
            registry: registry.to_string(),
            url: shown(url),
            source: io::Error::other(e.to_string()),
        }
        .into(),
        e => io_failure(io::Error::other(e.to_string()), false),
    }
}

fn is_transient_io(kind: io::ErrorKind) -> bool {
    use io::ErrorKind::*;
    matches!(
        kind,
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | BrokenPipe
            | TimedOut
            | UnexpectedEof
            | Interrupted
            | NotConnected
            | WouldBlock
    )
}

fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// How long to wait before try `n + 1` (after `n` failed): what the registry asked for,
/// else `base_delay * 2^(n-1)`; never more than `max_delay`.
pub(crate) fn retry_delay(policy: &RetryPolicy, n: u32, retry_after: Option<Duration>) -> Duration {
    let backoff = || {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        policy.base_delay.saturating_mul(factor)
    };
    retry_after.unwrap_or_else(backoff).min(policy.max_delay)
}

/// `Retry-After`: delay-seconds, or an HTTP date (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37
/// GMT`) as a delay from `now` (zero when it has passed).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = parse_http_date(value)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Seconds since the epoch of an IMF-fixdate.
fn parse_http_date(value: &str) -> Option<u64> {
    let parts: Vec<&str> = value.split_ascii_whitespace().collect();
    let [_weekday, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as i64 + 1;
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [hour, minute, second] = hms.as_slice() else {
        return None;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=month_days).contains(&day) || *hour > 23 || *minute > 59 || *second > 60 {
        return None;
    }
    let days = days_since_epoch(year, month, day);
    u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()
}

/// Days from 1970-01-01 to the proleptic Gregorian date (years counted from March, so
/// the leap day falls at the end of one).
fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Where a registry is reached: Docker Hub's API host for `docker.io`, HTTPS unless the
/// host is loopback or listed in `insecure`.
pub(crate) fn base_url(registry: &str, insecure: &[String]) -> String {
    let host = if registry == crate::reference::DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry
    };
    let scheme = if plain_http_allowed(registry, insecure) {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{host}")
}

fn plain_http_allowed(registry: &str, insecure: &[String]) -> bool {
    let host = host_of(registry);
    is_loopback(host)
        || insecure.iter().any(|entry| {
            let entry = entry.trim();
            entry.eq_ignore_ascii_case(registry)
                || (host_of(entry) == entry && entry.eq_ignore_ascii_case(host))
        })
}

/// `localhost:5000` → `localhost`, `[::1]:5000` → `::1`.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    match registry.split_once(':') {
        Some((host, _)) => host,
        None => registry,
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// The URL a `Location` header points to, from the request that got it: absolute,
/// scheme-relative, absolute-path or relative.
pub(crate) fn resolve_location(request_url: &str, location: &str) -> String {
    let location = location.trim();
    let lower = location.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return location.to_string();
    }
    let scheme = request_url.split_once("://").map_or("https", |(s, _)| s);
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{}{location}", origin(request_url));
    }
    let path_end = request_url.find(['?', '#']).unwrap_or(request_url.len());
    let without_query = &request_url[..path_end];
    let dir_end = without_query
        .rfind('/')
        .filter(|&i| i >= origin(request_url).len())
        .map_or(without_query.len(), |i| i + 1);
    let mut dir = without_query[..dir_end].to_string();
    if !dir.ends_with('/') {
        dir.push('/');
    }
    format!("{dir}{location}")
}

/// `scheme://authority` of a URL.
pub(crate) fn origin(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].find(['/', '?', '#']) {
        Some(i) => &url[..start + i],
        None => url,
    }
}

/// `url` with `key=value` added to its query (which it may already have).
pub(crate) fn with_query(url: &str, key: &str, value: &str) -> String {
    let separator = match url.find('?') {
        None => "?",
        Some(i) if i + 1 == url.len() || url.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{url}{separator}{key}={}", percent_encode(value))
}

/// Percent-encodes all but RFC 3986's unreserved characters.
pub(crate) fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A URL as errors show it: without its query (upload locations carry opaque state).
pub(crate) fn shown(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_string()
}

/// Reads through to `inner`, reporting progress against the whole blob.
struct Progress<'e, R> {
    inner: R,
    digest: Digest,
    done: u64,
    reported: u64,
    size: u64,
    on_event: &'e mut dyn FnMut(&Event),
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done - self.reported >= PROGRESS_STEP || (n > 0 && self.done == self.size) {
            self.reported = self.done;
            (self.on_event)(&Event::Transfer {
                digest: self.digest,
                done: self.done,
                size: self.size,
            });
        }
        Ok(n)
    }
}

/// Copies a download to `out`, reporting progress; read failures and write failures
/// come back apart, so a network hiccup can be retried and a full disk not.
pub(crate) fn copy_with_progress(
    reader: &mut dyn Read,
    out: &mut dyn io::Write,
    digest: Digest,
    size: u64,
    on_event: &mut dyn FnMut(&Event),
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 256 << 10];
    let mut done = 0u64;
    let mut reported = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(done),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
        done += n as u64;
        if done - reported >= PROGRESS_STEP || done == size {
            reported = done;
            on_event(&Event::Transfer { digest, done, size });
        }
    }
}

pub(crate) enum CopyError {
    Read(io::Error),
    Write(io::Error),
}
