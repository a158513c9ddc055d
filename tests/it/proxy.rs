//! A fault-injecting, byte-counting HTTP/1.1 proxy to put between a registry client (our
//! push and pull, skopeo, curl) and the real registry that `scripts/test` starts.
//!
//! It forwards every request to the registry on a fresh upstream connection, keeps the
//! client's connection alive the way HTTP/1.1 does, counts what the client sent and
//! received, and fails chosen requests the way networks and registries fail: a connection
//! closed without an answer, a 5xx, a 429 with `Retry-After`, a stall.
//!
//! ```ignore
//! let proxy = FaultProxy::start(&require_registry());
//! proxy.inject(Fault::Status(500), Match::BlobUpload, 1);
//! // push to `{proxy.addr()}/repo:tag` ...
//! assert!(proxy.requests().iter().any(|e| e.status == Some(500)));
//! ```

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::support::{
    Home, require, require_auth_registry, require_registry, sha256_digest, stderr, stdout,
    unique_repo,
};

/// `times` for a fault that never stops.
pub const FOREVER: u32 = u32::MAX;

/// What happens to a request that a rule selects. The request (body included) is always
/// read first, so its bytes count and the client is never stopped mid-send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Close the client's connection without an answer (the client sees the connection end
    /// before a response: curl's "Empty reply from server", an unexpected EOF in Rust).
    Reset,
    /// Answer with this status and a distribution-style error body; nothing is forwarded.
    Status(u16),
    /// Answer 429 with `Retry-After: retry_after_secs`; nothing is forwarded.
    TooManyRequests { retry_after_secs: u64 },
    /// Send nothing for this long, then close the connection without an answer.
    Stall(Duration),
}

/// Which requests a rule selects.
#[derive(Clone, Debug)]
pub enum Match {
    Any,
    /// POST, PATCH or PUT under `/v2/<name>/blobs/uploads/`.
    BlobUpload,
    /// GET or HEAD of `/v2/<name>/blobs/<digest>`.
    BlobFetch,
    /// PUT of `/v2/<name>/manifests/<reference>`.
    ManifestPut,
    /// GET or HEAD of `/v2/<name>/manifests/<reference>`.
    ManifestFetch,
    /// This method (upper case), any path.
    Method(String),
    /// Any request whose target (path and query) contains this text.
    PathContains(String),
}

/// One request the proxy saw, in the order they finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub method: String,
    /// The request target as the client sent it, query included.
    pub path: String,
    /// The status the client received; `None` when it received no answer.
    pub status: Option<u16>,
    /// Body bytes the client sent (chunk framing not counted).
    pub request_body_bytes: u64,
    /// Body bytes the client received (chunk framing not counted).
    pub response_body_bytes: u64,
    /// The fault injected instead of forwarding, if any.
    pub fault: Option<Fault>,
}

impl Exchange {
    pub fn is_blob_upload(&self) -> bool {
        is_blob_upload(&self.method, &self.path)
    }
}

pub struct FaultProxy {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 on a free port and forwards to `upstream` (`host:port`, plain HTTP).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy on 127.0.0.1");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            addr,
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Log::default()),
            uploaded: AtomicU64::new(0),
            downloaded: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            clients: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(0),
        });
        let accept = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("fault-proxy".into())
                .spawn(move || accept_loop(&listener, &shared))
                .expect("start the proxy thread")
        };
        FaultProxy {
            shared,
            accept: Some(accept),
        }
    }

    /// `127.0.0.1:PORT`, to use as the registry in a reference.
    pub fn addr(&self) -> String {
        self.shared.addr.to_string()
    }

    /// Applies `fault` to the next `times` requests that `matcher` selects ([`FOREVER`]: to
    /// all of them). Rules apply in the order they were added; a request gets one fault at most.
    pub fn inject(&self, fault: Fault, matcher: Match, times: u32) {
        if times > 0 {
            lock(&self.shared.rules).push(Rule {
                fault,
                matcher,
                remaining: times,
            });
        }
    }

    /// Drops every rule, used or not: the requests after this are forwarded.
    pub fn clear_faults(&self) {
        lock(&self.shared.rules).clear();
    }

    /// Every request since the start (or the last [`FaultProxy::reset_counters`]).
    pub fn requests(&self) -> Vec<Exchange> {
        lock(&self.shared.log).exchanges.clone()
    }

    /// Body bytes the client sent in POST, PATCH and PUT requests under
    /// `/v2/<name>/blobs/uploads/`, faulted ones included.
    pub fn uploaded_blob_bytes(&self) -> u64 {
        self.shared.uploaded.load(Ordering::SeqCst)
    }

    /// Body bytes the client received for GETs of `/v2/<name>/blobs/<digest>`.
    pub fn downloaded_blob_bytes(&self) -> u64 {
        self.shared.downloaded.load(Ordering::SeqCst)
    }

    /// Empties the request log and zeroes the byte counters (rules stay).
    pub fn reset_counters(&self) {
        let mut log = lock(&self.shared.log);
        log.exchanges.clear();
        log.generation += 1;
        self.shared.uploaded.store(0, Ordering::SeqCst);
        self.shared.downloaded.store(0, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop, then end the connections still open (idle keep-alives, stalls).
        let _ = TcpStream::connect(self.shared.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for client in lock(&self.shared.clients).values() {
            let _ = client.shutdown(Shutdown::Both);
        }
    }
}

struct Shared {
    upstream: String,
    addr: SocketAddr,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Log>,
    uploaded: AtomicU64,
    downloaded: AtomicU64,
    stopping: AtomicBool,
    clients: Mutex<HashMap<u64, TcpStream>>,
    next_client: AtomicU64,
}

/// The exchanges since the last reset; `generation` counts the resets.
#[derive(Default)]
struct Log {
    generation: u64,
    exchanges: Vec<Exchange>,
}

/// Where [`Shared::record`] put an exchange, to complete it once its body has gone through.
struct Recorded {
    generation: u64,
    index: usize,
}

struct Rule {
    fault: Fault,
    matcher: Match,
    remaining: u32,
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn take_fault(&self, head: &RequestHead) -> Option<Fault> {
        let mut rules = lock(&self.rules);
        let index = rules
            .iter()
            .position(|rule| rule.remaining > 0 && rule.matcher.selects(head))?;
        let rule = &mut rules[index];
        if rule.remaining != FOREVER {
            rule.remaining -= 1;
        }
        let fault = rule.fault.clone();
        if rule.remaining == 0 {
            rules.remove(index);
        }
        Some(fault)
    }

    /// Logs an exchange and counts its bytes. Called before the client gets the first byte
    /// of the answer (clients act on a status line before the body arrives), so a test that
    /// asserts right after its client returns never races the proxy.
    fn record(&self, exchange: Exchange) -> Recorded {
        if exchange.is_blob_upload() {
            self.uploaded
                .fetch_add(exchange.request_body_bytes, Ordering::SeqCst);
        }
        self.count_download(&exchange, exchange.response_body_bytes);
        let mut log = lock(&self.log);
        log.exchanges.push(exchange);
        Recorded {
            generation: log.generation,
            index: log.exchanges.len() - 1,
        }
    }

    /// Adds the size of a relayed answer body, before the client gets its last byte.
    fn complete(&self, recorded: &Recorded, response_body_bytes: u64) {
        let mut log = lock(&self.log);
        if log.generation != recorded.generation {
            return;
        }
        let exchange = &mut log.exchanges[recorded.index];
        exchange.response_body_bytes = response_body_bytes;
        let exchange = exchange.clone();
        drop(log);
        self.count_download(&exchange, response_body_bytes);
    }

    fn count_download(&self, exchange: &Exchange, bytes: u64) {
        if exchange.method == "GET" && is_blob_fetch(&exchange.method, &exchange.path) {
            self.downloaded.fetch_add(bytes, Ordering::SeqCst);
        }
    }

    /// Sleeps for `duration`, or less when the proxy stops.
    fn stall(&self, duration: Duration) {
        let end = Instant::now() + duration;
        while !self.stopping.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= end {
                break;
            }
            thread::sleep((end - now).min(Duration::from_millis(20)));
        }
    }
}

impl Match {
    fn selects(&self, head: &RequestHead) -> bool {
        let method = head.method.as_str();
        let path = head.path();
        match self {
            Match::Any => true,
            Match::BlobUpload => is_blob_upload(method, &head.target),
            Match::BlobFetch => is_blob_fetch(method, path),
            Match::ManifestPut => method == "PUT" && is_manifest(path),
            Match::ManifestFetch => matches!(method, "GET" | "HEAD") && is_manifest(path),
            Match::Method(wanted) => method == wanted,
            Match::PathContains(text) => head.target.contains(text.as_str()),
        }
    }
}

fn without_query(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

fn is_blob_upload(method: &str, target: &str) -> bool {
    let path = without_query(target);
    matches!(method, "POST" | "PATCH" | "PUT")
        && path.starts_with("/v2/")
        && path.contains("/blobs/uploads/")
}

fn is_blob_fetch(method: &str, target: &str) -> bool {
    let path = without_query(target);
    matches!(method, "GET" | "HEAD")
        && path.starts_with("/v2/")
        && path.contains("/blobs/")
        && !path.contains("/blobs/uploads/")
}

fn is_manifest(path: &str) -> bool {
    path.starts_with("/v2/") && path.contains("/manifests/")
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let id = shared.next_client.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.clients).insert(id, clone);
        }
        let shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name(format!("fault-proxy-{id}"))
            .spawn(move || {
                // An error here is the client or upstream going away: end the connection.
                let _ = serve(stream, &shared);
                lock(&shared.clients).remove(&id);
            });
        if spawned.is_err() {
            break;
        }
    }
}

/// Serves one client connection: request after request until either side closes.
fn serve(client: TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_nodelay(true)?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client;
    loop {
        let Some(head) = RequestHead::read(&mut reader)? else {
            return Ok(());
        };
        if head
            .header("expect")
            .is_some_and(|value| value.eq_ignore_ascii_case("100-continue"))
        {
            // The proxy answers the expectation itself and never forwards `Expect`.
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let request_body = Framing::of_request(&head)?;
        let keep_alive = head.keep_alive();
        let Some(fault) = shared.take_fault(&head) else {
            if !forward(
                &head,
                request_body,
                keep_alive,
                &mut reader,
                &mut writer,
                shared,
            )? {
                return Ok(());
            }
            continue;
        };
        let sent = request_body.copy(&mut reader, &mut io::sink())?;
        let mut exchange = Exchange {
            method: head.method.clone(),
            path: head.target.clone(),
            status: None,
            request_body_bytes: sent,
            response_body_bytes: 0,
            fault: Some(fault.clone()),
        };
        match fault {
            Fault::Reset => {
                let _ = shared.record(exchange);
                let _ = writer.shutdown(Shutdown::Both);
                return Ok(());
            }
            Fault::Stall(duration) => {
                let _ = shared.record(exchange);
                shared.stall(duration);
                let _ = writer.shutdown(Shutdown::Both);
                return Ok(());
            }
            Fault::Status(code) => {
                let body = registry_error(code);
                exchange.status = Some(code);
                exchange.response_body_bytes = body.len() as u64;
                let answer = error_response(code, &[], &body, keep_alive);
                record_then_answer(&mut writer, &answer, shared, exchange)?;
            }
            Fault::TooManyRequests { retry_after_secs } => {
                let body = registry_error(429);
                exchange.status = Some(429);
                exchange.response_body_bytes = body.len() as u64;
                let retry_after = retry_after_secs.to_string();
                let answer = error_response(
                    429,
                    &[("Retry-After", retry_after.as_str())],
                    &body,
                    keep_alive,
                );
                record_then_answer(&mut writer, &answer, shared, exchange)?;
            }
        }
        if !keep_alive {
            return Ok(());
        }
    }
}

/// Forwards one request on a new upstream connection and relays the answer; returns whether
/// the client connection can carry another request.
fn forward(
    head: &RequestHead,
    request_body: Framing,
    keep_alive: bool,
    client_reader: &mut BufReader<TcpStream>,
    client_writer: &mut TcpStream,
    shared: &Shared,
) -> io::Result<bool> {
    let mut exchange = Exchange {
        method: head.method.clone(),
        path: head.target.clone(),
        status: None,
        request_body_bytes: 0,
        response_body_bytes: 0,
        fault: None,
    };
    let upstream = match TcpStream::connect(&shared.upstream) {
        Ok(upstream) => upstream,
        Err(error) => {
            // Still read the body, so the client sees the 502 rather than a broken pipe.
            exchange.request_body_bytes = request_body.copy(client_reader, &mut io::sink())?;
            let body = format!("the proxy cannot reach {}: {error}\n", shared.upstream);
            exchange.status = Some(502);
            exchange.response_body_bytes = body.len() as u64;
            let answer = error_response(502, &[], body.as_bytes(), keep_alive);
            record_then_answer(client_writer, &answer, shared, exchange)?;
            return Ok(keep_alive);
        }
    };
    upstream.set_nodelay(true)?;
    // The registry may answer (a 401, say) and close before it has read a whole body: the
    // proxy still reads the client's body to its end, then relays that answer.
    let mut upstream_writer = UntilFailure {
        inner: io::BufWriter::with_capacity(64 * 1024, upstream.try_clone()?),
        failed: false,
    };
    upstream_writer.write_all(&head.upstream_bytes(&shared.upstream))?;
    exchange.request_body_bytes = request_body.copy(client_reader, &mut upstream_writer)?;
    upstream_writer.flush()?;
    drop(upstream_writer);

    let mut upstream_reader = BufReader::new(upstream);
    let response = loop {
        let response = ResponseHead::read(&mut upstream_reader)?;
        // Interim answers (the proxy strips `Expect`, so there should be none) are dropped.
        if !(100..200).contains(&response.status) {
            break response;
        }
    };
    exchange.status = Some(response.status);
    let response_body = Framing::of_response(&head.method, &response)?;
    let keep_alive = keep_alive && !matches!(response_body, Framing::UntilClose);
    let recorded = shared.record(exchange);
    let mut client = HoldLast::new(client_writer);
    client.write_all(&response.client_bytes(shared, keep_alive))?;
    let relayed = response_body.copy(&mut upstream_reader, &mut client)?;
    shared.complete(&recorded, relayed);
    client.finish()?;
    Ok(keep_alive)
}

fn registry_error(status: u16) -> Vec<u8> {
    let code = match status {
        429 => "TOOMANYREQUESTS",
        401 => "UNAUTHORIZED",
        403 => "DENIED",
        404 => "NAME_UNKNOWN",
        _ => "UNKNOWN",
    };
    format!(
        "{{\"errors\":[{{\"code\":\"{code}\",\"message\":\"fault injected by the test proxy\"}}]}}\n"
    )
    .into_bytes()
}

fn error_response(status: u16, extra: &[(&str, &str)], body: &[u8], keep_alive: bool) -> Vec<u8> {
    let mut bytes = format!("HTTP/1.1 {status} {}\r\n", reason(status)).into_bytes();
    for (name, value) in extra {
        bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    bytes.extend_from_slice(
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
            body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(body);
    bytes
}

fn record_then_answer(
    writer: &mut TcpStream,
    answer: &[u8],
    shared: &Shared,
    exchange: Exchange,
) -> io::Result<()> {
    shared.record(exchange);
    writer.write_all(answer)?;
    writer.flush()
}

/// A writer that turns into a sink at its first error.
struct UntilFailure<W> {
    inner: W,
    failed: bool,
}

impl<W: Write> Write for UntilFailure<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if !self.failed && self.inner.write_all(bytes).is_err() {
            self.failed = true;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.failed && self.inner.flush().is_err() {
            self.failed = true;
        }
        Ok(())
    }
}

/// Passes everything but the last byte on until `finish`, so the size of a relayed body is in
/// the log and the counters before its client can see the end of it.
struct HoldLast<'a> {
    inner: &'a mut TcpStream,
    held: Option<u8>,
    buffer: Vec<u8>,
}

impl<'a> HoldLast<'a> {
    fn new(inner: &'a mut TcpStream) -> HoldLast<'a> {
        HoldLast {
            inner,
            held: None,
            buffer: Vec::new(),
        }
    }

    fn finish(mut self) -> io::Result<()> {
        if let Some(last) = self.held.take() {
            self.inner.write_all(&[last])?;
        }
        self.inner.flush()
    }
}

impl Write for HoldLast<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let Some((&last, rest)) = bytes.split_last() else {
            return Ok(0);
        };
        self.buffer.clear();
        self.buffer.extend(self.held.take());
        self.buffer.extend_from_slice(rest);
        self.inner.write_all(&self.buffer)?;
        self.held = Some(last);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected Fault",
    }
}

/// Headers that describe one connection, not the message: never relayed.
fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "expect",
    ]
    .iter()
    .any(|hop| name.eq_ignore_ascii_case(hop))
}

struct RequestHead {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl RequestHead {
    /// `None` when the client closed the connection between requests.
    fn read(reader: &mut impl BufRead) -> io::Result<Option<RequestHead>> {
        let Some(lines) = read_head_lines(reader)? else {
            return Ok(None);
        };
        let (start, headers) = lines;
        let mut parts = start.split_whitespace();
        let (Some(method), Some(target), Some(version)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(format!("not an HTTP request line: {start:?}")));
        };
        Ok(Some(RequestHead {
            method: method.to_owned(),
            target: target.to_owned(),
            version: version.to_owned(),
            headers,
        }))
    }

    fn path(&self) -> &str {
        without_query(&self.target)
    }

    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    fn keep_alive(&self) -> bool {
        let connection = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.version == "HTTP/1.0" {
            connection.contains("keep-alive")
        } else {
            !connection.contains("close")
        }
    }

    /// The request as the upstream gets it: its own `Host`, one request per connection.
    fn upstream_bytes(&self, upstream: &str) -> Vec<u8> {
        let mut bytes = format!(
            "{} {} HTTP/1.1\r\nHost: {upstream}\r\n",
            self.method, self.target
        )
        .into_bytes();
        for (name, value) in &self.headers {
            if !hop_by_hop(name) && !name.eq_ignore_ascii_case("host") {
                bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
        }
        bytes.extend_from_slice(b"Connection: close\r\n\r\n");
        bytes
    }
}

struct ResponseHead {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
}

impl ResponseHead {
    fn read(reader: &mut impl BufRead) -> io::Result<ResponseHead> {
        let (start, headers) = read_head_lines(reader)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the upstream closed without an answer",
            )
        })?;
        let mut parts = start.splitn(3, ' ');
        let _version = parts.next();
        let status = parts
            .next()
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid(format!("not an HTTP status line: {start:?}")))?;
        Ok(ResponseHead {
            status,
            reason: parts.next().unwrap_or_default().to_owned(),
            headers,
        })
    }

    /// The head as the client gets it: locations that name the upstream name the proxy.
    fn client_bytes(&self, shared: &Shared, keep_alive: bool) -> Vec<u8> {
        let mut bytes = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason).into_bytes();
        let upstream = format!("http://{}", shared.upstream);
        let proxy = format!("http://{}", shared.addr);
        for (name, value) in &self.headers {
            if hop_by_hop(name) {
                continue;
            }
            let value = if name.eq_ignore_ascii_case("location") {
                match value.strip_prefix(&upstream) {
                    Some(rest) => format!("{proxy}{rest}"),
                    None => value.clone(),
                }
            } else {
                value.clone()
            };
            bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        let connection = if keep_alive { "keep-alive" } else { "close" };
        bytes.extend_from_slice(format!("Connection: {connection}\r\n\r\n").as_bytes());
        bytes
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

type HeadLines = (String, Vec<(String, String)>);

/// Reads a start line and headers up to the blank line; `None` on a clean EOF before any byte.
fn read_head_lines(reader: &mut impl BufRead) -> io::Result<Option<HeadLines>> {
    const LIMIT: usize = 256 * 1024;
    let mut start = String::new();
    let mut headers = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let read = reader
            .by_ref()
            .take(LIMIT as u64)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            if start.is_empty() && headers.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection ended inside a message head",
            ));
        }
        total += read;
        if total > LIMIT {
            return Err(invalid("a message head over 256 KiB".into()));
        }
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        if start.is_empty() {
            // Tolerate blank lines before a request, as RFC 9112 asks.
            if !line.is_empty() {
                start = line.to_owned();
            }
            continue;
        }
        if line.is_empty() {
            return Ok(Some((start, headers)));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("not a header line: {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
}

/// How a message body ends.
#[derive(Clone, Copy, Debug)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

impl Framing {
    fn of_request(head: &RequestHead) -> io::Result<Framing> {
        if head
            .header("transfer-encoding")
            .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"))
        {
            return Ok(Framing::Chunked);
        }
        match head.header("content-length") {
            Some(length) => Ok(Framing::Length(parse_length(length)?)),
            None => Ok(Framing::Empty),
        }
    }

    fn of_response(method: &str, head: &ResponseHead) -> io::Result<Framing> {
        if method == "HEAD" || head.status == 204 || head.status == 304 {
            return Ok(Framing::Empty);
        }
        if header(&head.headers, "transfer-encoding")
            .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"))
        {
            return Ok(Framing::Chunked);
        }
        match header(&head.headers, "content-length") {
            Some(length) => Ok(Framing::Length(parse_length(length)?)),
            None => Ok(Framing::UntilClose),
        }
    }

    /// Copies the body as framed (chunk lines included) and returns its payload size.
    fn copy(self, reader: &mut impl BufRead, writer: &mut impl Write) -> io::Result<u64> {
        match self {
            Framing::Empty => Ok(0),
            Framing::Length(length) => copy_exact(reader, writer, length),
            Framing::UntilClose => io::copy(reader, writer),
            Framing::Chunked => {
                let mut payload = 0;
                loop {
                    let line = read_line(reader)?;
                    writer.write_all(&line)?;
                    let text = String::from_utf8_lossy(&line);
                    let size = text.split(';').next().unwrap_or_default().trim();
                    let size = u64::from_str_radix(size, 16)
                        .map_err(|_| invalid(format!("not a chunk size: {text:?}")))?;
                    if size == 0 {
                        // Trailers, up to and including the blank line.
                        loop {
                            let line = read_line(reader)?;
                            writer.write_all(&line)?;
                            if line == b"\r\n" || line == b"\n" {
                                return Ok(payload);
                            }
                        }
                    }
                    payload += copy_exact(reader, writer, size)?;
                    writer.write_all(&read_line(reader)?)?;
                }
            }
        }
    }
}

fn parse_length(text: &str) -> io::Result<u64> {
    text.trim()
        .parse()
        .map_err(|_| invalid(format!("not a Content-Length: {text:?}")))
}

fn read_line(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(64 * 1024)
        .read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection ended inside a chunked body",
        ));
    }
    Ok(line)
}

fn copy_exact(reader: &mut impl Read, writer: &mut impl Write, length: u64) -> io::Result<u64> {
    let copied = io::copy(&mut reader.by_ref().take(length), writer)?;
    if copied < length {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the body ended after {copied} of {length} bytes"),
        ));
    }
    Ok(copied)
}

// --- self-tests: the proxy really forwards, counts and injects ------------------------------

/// Runs curl with `args`; returns the output whatever the status.
fn curl(args: &[&str]) -> std::process::Output {
    Command::new(require("curl"))
        .args(["--silent", "--show-error", "--max-time", "60"])
        .args(args)
        .output()
        .expect("run curl")
}

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new(require("skopeo"))
        .args(args)
        .output()
        .expect("run skopeo")
}

fn statuses(proxy: &FaultProxy) -> Vec<Option<u16>> {
    proxy.requests().iter().map(|e| e.status).collect()
}

#[test]
fn curl_reaches_the_registry_through_the_proxy_on_one_kept_alive_connection() {
    let proxy = FaultProxy::start(&require_registry());
    let url = format!("http://{}/v2/", proxy.addr());
    // Two requests in one curl run: the second reuses the connection (0 new connects).
    let output = curl(&[
        "--output",
        "/dev/null",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code} %{num_connects}\n",
        &url,
        &url,
    ]);
    assert!(output.status.success(), "curl: {}", stderr(&output));
    assert_eq!(stdout(&output), "200 1\n200 0\n");
    let log = proxy.requests();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log.iter()
            .all(|e| e.method == "GET" && e.path == "/v2/" && e.status == Some(200))
    );
}

#[test]
fn a_chunked_blob_upload_is_counted_and_locations_name_the_proxy() {
    let proxy = FaultProxy::start(&require_registry());
    let base = format!("http://{}", proxy.addr());
    let repo = unique_repo("proxy-chunked");
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let digest = sha256_digest(&blob);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &blob).unwrap();

    let location = |output: &std::process::Output| -> String {
        assert!(output.status.success(), "curl: {}", stderr(output));
        let headers = stdout(output);
        let status = headers.lines().next().unwrap_or_default().to_owned();
        assert!(status.contains(" 202"), "{headers}");
        let location = headers
            .lines()
            .find_map(|line| {
                line.split_once(':')
                    .filter(|(name, _)| name.eq_ignore_ascii_case("location"))
                    .map(|(_, value)| value.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no Location in\n{headers}"));
        assert!(
            location.starts_with(&format!("{base}/v2/{repo}/blobs/uploads/")),
            "the Location names the proxy: {location}"
        );
        location
    };
    let start = location(&curl(&[
        "--request",
        "POST",
        "--dump-header",
        "-",
        "--output",
        "/dev/null",
        &format!("{base}/v2/{repo}/blobs/uploads/"),
    ]));
    let file_arg = format!("@{}", file.path().display());
    let patched = location(&curl(&[
        "--request",
        "PATCH",
        "--header",
        "Transfer-Encoding: chunked",
        "--header",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &file_arg,
        "--dump-header",
        "-",
        "--output",
        "/dev/null",
        &start,
    ]));
    let separator = if patched.contains('?') { '&' } else { '?' };
    let done = curl(&[
        "--request",
        "PUT",
        "--write-out",
        "%{http_code}",
        "--output",
        "/dev/null",
        &format!("{patched}{separator}digest={digest}"),
    ]);
    assert_eq!(stdout(&done), "201", "{}", stderr(&done));
    assert_eq!(proxy.uploaded_blob_bytes(), blob.len() as u64);
    let patch = proxy
        .requests()
        .into_iter()
        .find(|e| e.method == "PATCH")
        .unwrap();
    assert_eq!(patch.request_body_bytes, blob.len() as u64);
    assert!(patch.is_blob_upload());

    // Back through the proxy: HEAD has the length and no body, GET has the bytes.
    proxy.reset_counters();
    let blob_url = format!("{base}/v2/{repo}/blobs/{digest}");
    let head = curl(&["--head", &blob_url]);
    assert!(
        stdout(&head)
            .to_ascii_lowercase()
            .contains(&format!("content-length: {}", blob.len())),
        "{}",
        stdout(&head)
    );
    let fetched = tempfile::NamedTempFile::new().unwrap();
    let get = curl(&[
        "--fail",
        "--output",
        fetched.path().to_str().unwrap(),
        &blob_url,
    ]);
    assert!(get.status.success(), "{}", stderr(&get));
    assert!(std::fs::read(fetched.path()).unwrap() == blob);
    assert_eq!(proxy.downloaded_blob_bytes(), blob.len() as u64);
    assert_eq!(proxy.uploaded_blob_bytes(), 0);
    assert_eq!(statuses(&proxy), [Some(200), Some(200)]);
}

#[test]
fn reset_stall_429_and_endless_faults_reach_the_client() {
    let proxy = FaultProxy::start(&require_registry());
    let url = format!("http://{}/v2/", proxy.addr());
    let code = |args: &[&str]| {
        let mut all = vec!["--output", "/dev/null", "--write-out", "%{http_code}"];
        all.extend_from_slice(args);
        all.push(&url);
        let output = curl(&all);
        (output.status.code(), stdout(&output))
    };

    proxy.inject(Fault::Reset, Match::Any, 1);
    // curl's exit code 52: "Empty reply from server".
    assert_eq!(code(&[]), (Some(52), "000".into()));
    assert_eq!(
        code(&[]),
        (Some(0), "200".into()),
        "one reset, then through"
    );

    proxy.inject(
        Fault::TooManyRequests {
            retry_after_secs: 7,
        },
        Match::PathContains("/v2/".into()),
        1,
    );
    let output = curl(&["--include", &url]);
    let answer = stdout(&output);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("Retry-After: 7\r\n"), "{answer}");
    assert!(answer.contains("TOOMANYREQUESTS"), "{answer}");

    proxy.inject(Fault::Stall(Duration::from_millis(400)), Match::Any, 1);
    let started = Instant::now();
    assert_eq!(code(&[]).0, Some(52));
    assert!(started.elapsed() >= Duration::from_millis(400));

    proxy.inject(Fault::Status(503), Match::Method("GET".into()), FOREVER);
    for _ in 0..3 {
        assert_eq!(code(&[]).1, "503");
    }
    proxy.clear_faults();
    assert_eq!(code(&[]).1, "200");

    assert_eq!(
        statuses(&proxy),
        [
            None,
            Some(200),
            Some(429),
            None,
            Some(503),
            Some(503),
            Some(503),
            Some(200)
        ]
    );
    let faults: Vec<_> = proxy.requests().into_iter().map(|e| e.fault).collect();
    assert_eq!(faults[0], Some(Fault::Reset));
    assert_eq!(faults[3], Some(Fault::Stall(Duration::from_millis(400))));
    assert_eq!(faults[7], None);
}

#[test]
fn basic_auth_passes_through_to_the_registry_with_auth() {
    let registry = require_auth_registry();
    let proxy = FaultProxy::start(&registry.host);
    let url = format!("http://{}/v2/", proxy.addr());
    let anonymous = curl(&["--include", &url]);
    let answer = stdout(&anonymous);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"wasmbuild-test\""),
        "{answer}"
    );
    let user = format!("{}:{}", registry.user, registry.password);
    let signed_in = curl(&[
        "--user",
        &user,
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code}",
        &url,
    ]);
    assert_eq!(stdout(&signed_in), "200");

    // An upload without credentials: the registry answers 401 without reading the 5 MB body
    // and closes; the client still gets that 401 (not a broken connection), and the bytes
    // it sent are counted.
    let body = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(body.path(), vec![7u8; 5 << 20]).unwrap();
    proxy.reset_counters();
    let refused = curl(&[
        "--request",
        "POST",
        "--header",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", body.path().display()),
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code}",
        &format!(
            "http://{}/v2/{}/blobs/uploads/",
            proxy.addr(),
            unique_repo("proxy-auth")
        ),
    ]);
    assert_eq!(stdout(&refused), "401", "{}", stderr(&refused));
    assert_eq!(proxy.uploaded_blob_bytes(), 5 << 20);
}

/// The blobs (config and layers) of the manifest at `source`, and their total size.
fn blob_bytes(source: &str) -> u64 {
    let raw = skopeo(&["inspect", "--raw", source]);
    assert!(raw.status.success(), "{}", stderr(&raw));
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let layers = manifest["layers"].as_array().unwrap().iter();
    std::iter::once(&manifest["config"])
        .chain(layers)
        .map(|descriptor| descriptor["size"].as_u64().unwrap())
        .sum()
}

#[test]
fn skopeo_pushes_through_the_proxy_and_every_blob_byte_is_counted_once() {
    let proxy = FaultProxy::start(&require_registry());
    let home = Home::new();
    home.build("hello", &[]);
    let source = format!(
        "oci:{}:docker.io/library/hello:latest",
        home.store().display()
    );
    let target = format!("docker://{}/{}", proxy.addr(), unique_repo("proxy-skopeo"));
    let copy = |tag: &str| {
        skopeo(&[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--preserve-digests",
            &source,
            &format!("{target}:{tag}"),
        ])
    };

    let first = copy("one");
    assert!(first.status.success(), "skopeo: {}", stderr(&first));
    assert_eq!(proxy.uploaded_blob_bytes(), blob_bytes(&source));
    let log = proxy.requests();
    assert!(
        log.iter().any(|e| e.method == "PUT"
            && e.path.contains("/manifests/one")
            && e.status == Some(201)),
        "{log:#?}"
    );

    // The registry has every blob now: a second tag sends none of them again.
    proxy.reset_counters();
    let second = copy("two");
    assert!(second.status.success(), "skopeo: {}", stderr(&second));
    assert_eq!(proxy.uploaded_blob_bytes(), 0, "{:#?}", proxy.requests());

    let theirs = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("{target}:two"),
    ]);
    let ours = skopeo(&["inspect", "--raw", &source]);
    assert_eq!(stdout(&theirs), stdout(&ours));
}

#[test]
fn an_injected_500_on_a_blob_upload_reaches_skopeo() {
    let proxy = FaultProxy::start(&require_registry());
    let home = Home::new();
    home.build("hello", &[]);
    let source = format!(
        "oci:{}:docker.io/library/hello:latest",
        home.store().display()
    );
    let target = format!(
        "docker://{}/{}:faulted",
        proxy.addr(),
        unique_repo("proxy-500")
    );
    proxy.inject(Fault::Status(500), Match::BlobUpload, 1);
    let output = skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &source,
        &target,
    ]);
    let log = proxy.requests();
    let faulted: Vec<_> = log.iter().filter(|e| e.fault.is_some()).collect();
    assert_eq!(faulted.len(), 1, "{log:#?}");
    // The first upload request is the POST that opens the upload session.
    assert_eq!(faulted[0].method, "POST", "{log:#?}");
    assert!(faulted[0].is_blob_upload() && faulted[0].status == Some(500));
    // skopeo 1.9 gives up on a 5xx at once (even with --retry-times, which only covers 429
    // and broken connections): the copy fails, names the 500, and pushes no manifest.
    assert!(!output.status.success(), "{log:#?}");
    assert!(stderr(&output).contains("500"), "{}", stderr(&output));
    assert!(
        !log.iter()
            .any(|e| e.method == "PUT" && e.path.contains("/manifests/")),
        "{log:#?}"
    );
}

#[test]
fn rules_select_the_requests_they_name() {
    let head = |method: &str, target: &str| RequestHead {
        method: method.into(),
        target: target.into(),
        version: "HTTP/1.1".into(),
        headers: Vec::new(),
    };
    let requests = [
        head("GET", "/v2/"),
        head("POST", "/v2/me/app/blobs/uploads/"),
        head("PATCH", "/v2/me/app/blobs/uploads/0c1d?_state=x"),
        head(
            "PUT",
            "/v2/me/app/blobs/uploads/0c1d?_state=x&digest=sha256:ab",
        ),
        head("HEAD", "/v2/me/app/blobs/sha256:ab"),
        head("GET", "/v2/me/app/blobs/sha256:ab"),
        head("PUT", "/v2/me/app/manifests/1.0"),
        head("GET", "/v2/me/app/manifests/sha256:cd"),
    ];
    let selected = |matcher: Match| -> Vec<usize> {
        (0..requests.len())
            .filter(|&i| matcher.selects(&requests[i]))
            .collect()
    };
    assert_eq!(selected(Match::Any), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(selected(Match::BlobUpload), [1, 2, 3]);
    assert_eq!(selected(Match::BlobFetch), [4, 5]);
    assert_eq!(selected(Match::ManifestPut), [6]);
    assert_eq!(selected(Match::ManifestFetch), [7]);
    assert_eq!(selected(Match::Method("PUT".into())), [3, 6]);
    assert_eq!(selected(Match::PathContains("digest=".into())), [3]);
}
