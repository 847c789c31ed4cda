//! A small fault-injecting HTTP/1.1 proxy put in front of a real registry: it resets
//! connections, answers chosen statuses (503 with `Retry-After`, 429, 502, 403 …) instead
//! of forwarding, or cuts a response in the middle of its body.
//!
//! Every request is forwarded on a connection of its own (`Connection: close` both ways),
//! so "the first N requests" is exact and needs no HTTP response parsing. Plain std threads;
//! the accept loop polls a stop flag and ends after [`MAX_LIFETIME`] or
//! [`MAX_CONNECTIONS`] at the latest, and every socket has read/write timeouts, so no
//! thread outlives a test by more than [`IO_TIMEOUT`].
//!
//! Shaped ([`FaultProxy::start_with`] and a [`Shape`]): while the fault is [`Fault::None`],
//! each connection is relayed as plain TCP (keep-alive kept, as on a real link) with the
//! shape's delay and bandwidth (`shaping.rs`); requests are then not parsed, so `seen()`
//! stays empty and only [`FaultProxy::connections`] and [`FaultProxy::link_bytes`] count.
//! Any other fault is applied unshaped, as without a shape.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::shaping::{relay, Link};
pub use super::shaping::{Dir, Shape};

/// The longest a proxy accepts connections.
pub const MAX_LIFETIME: Duration = Duration::from_secs(300);
/// Connections accepted at most; later ones are closed at once.
pub const MAX_CONNECTIONS: usize = 20_000;
/// Read and write timeout of every socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest one proxied request may take, body included.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(120);
const MAX_HEAD: usize = 64 * 1024;

/// What the proxy does to the traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything untouched.
    None,
    /// Reset (TCP RST) each of the first `n` connections as soon as its request arrives,
    /// without answering.
    ResetFirst(usize),
    /// Answer each of the first `n` requests with `status` (and `Retry-After: SECS` when
    /// given) instead of forwarding it; forward the rest.
    StatusFirst {
        n: usize,
        status: u16,
        retry_after: Option<u32>,
    },
    /// Answer every request with `status`.
    StatusAlways {
        status: u16,
        retry_after: Option<u32>,
    },
    /// Answer `status` to each of the first `n` requests with method `method` and a path
    /// containing `path_contains`; forward everything else.
    StatusFirstMatching {
        method: String,
        path_contains: String,
        n: usize,
        status: u16,
    },
    /// Answer `status` to every request whose method is one of `methods`; forward the rest.
    StatusForMethods { methods: Vec<String>, status: u16 },
    /// Forward, but for a `GET` whose path contains `path_contains` pass only the response
    /// head and `after` bytes of its body, then close the connection.
    CutResponse { path_contains: String, after: u64 },
    /// Answer every request whose method is `method` (any method when `None`) and whose path
    /// contains `path_contains` with a canned response: `status`, `Content-Type`, the extra
    /// `headers`, a matching `Content-Length` and `body` (not sent to `HEAD`); forward the rest.
    Canned {
        method: Option<String>,
        path_contains: String,
        status: u16,
        content_type: String,
        headers: Vec<(String, String)>,
        body: Arc<Vec<u8>>,
    },
    /// Like [`Fault::Canned`], for the first `n` matching requests only (counted like
    /// [`Fault::StatusFirstMatching`]).
    CannedFirst {
        n: usize,
        method: String,
        path_contains: String,
        status: u16,
        content_type: String,
        body: Arc<Vec<u8>>,
    },
    /// Like [`Fault::Canned`], for requests whose path (query included) is exactly `path`:
    /// `/v2/`, the API root, which every other path starts with.
    CannedAt {
        method: Option<String>,
        path: String,
        status: u16,
        headers: Vec<(String, String)>,
        body: Arc<Vec<u8>>,
    },
    /// For each request, the first of these `Canned`/`CannedFirst`/`CannedAt`/`Hold` faults
    /// that applies.
    Each(Vec<Fault>),
    /// Hold every request whose method is `method` (any method when `None`) and whose path
    /// contains `path_contains` for `hold` before forwarding it (its body unread meanwhile):
    /// a slow registry, so uploads are still in flight when something else happens.
    Hold {
        method: Option<String>,
        path_contains: String,
        hold: Duration,
    },
    /// Answer a request with `method` (any method when `None`), a path containing
    /// `path_contains` and a `Content-Length` above `above` at once, before reading its body
    /// (as a registry refusing monolithic uploads, or nginx over `client_max_body_size`
    /// does), with `status` and an OCI error body of `code` and `message`. With `linger`
    /// the body is then read and dropped (nginx's lingering close: the client gets the
    /// answer); without, the connection is closed with the body unread (the client may see
    /// only a broken pipe or a reset).
    EarlyAnswer {
        method: Option<String>,
        path_contains: String,
        above: u64,
        status: u16,
        code: String,
        message: String,
        linger: bool,
    },
    /// Forward, but reset the `PATCH` during which the request body bytes of all PATCHes
    /// together pass `after`, once: that PATCH is read up to that point and none of it is
    /// forwarded, so the registry's session keeps what earlier PATCHes brought (as behind a
    /// load balancer that buffers request bodies).
    ResetPatchAt { after: u64 },
    // ---- Added for tests/cache_resume.rs (resumable downloads) ----
    /// Forward, but cut each of the first `n` `GET`s whose path contains `path_contains`
    /// after the response head and `after` body bytes (holding the connection open for
    /// `stall` first, when given, as a link that hangs); forward later ones whole. With
    /// `ignore_range`, matching requests go upstream without their `Range` header: the
    /// registry answers 200 with the whole body, as one that ignores `Range` does.
    CutFirst {
        path_contains: String,
        after: u64,
        n: usize,
        stall: Option<Duration>,
        ignore_range: bool,
    },
}

/// One forwarded request and the response body bytes the client got (see
/// [`FaultProxy::transfers`]).
#[derive(Debug, Clone)]
pub struct Transfer {
    pub method: String,
    pub path: String,
    /// The `Range` header the client sent.
    pub range: Option<String>,
    pub body_bytes: u64,
}

/// What happened to one request (or connection, for resets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Forwarded,
    Reset,
    Answered(u16),
    Cut,
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub action: Action,
}

/// How a proxy runs besides its fault.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Delay and bandwidth of forwarded traffic (while the fault is [`Fault::None`]).
    pub shape: Option<Shape>,
    /// How long the proxy accepts connections ([`MAX_LIFETIME`] by default; a benchmark
    /// needs longer).
    pub lifetime: Duration,
    /// How long a shaped connection may sit idle before it is closed.
    pub idle: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            shape: None,
            lifetime: MAX_LIFETIME,
            idle: IO_TIMEOUT,
        }
    }
}

struct State {
    fault: Mutex<Fault>,
    link: Option<Arc<Link>>,
    idle: Duration,
    upstream: SocketAddr,
    connections: AtomicUsize,
    requests: AtomicUsize,
    /// Requests matched by [`Fault::StatusFirstMatching`].
    matched: AtomicUsize,
    log: Mutex<Vec<Seen>>,
    /// Request body bytes received from clients, per method (forwarded or not).
    body_bytes: Mutex<std::collections::HashMap<String, u64>>,
    /// The largest `Content-Length` seen, per method.
    max_body: Mutex<std::collections::HashMap<String, u64>>,
    /// PATCH body bytes received so far, and whether `ResetPatchAt` fired.
    patched: Mutex<(u64, bool)>,
    /// Every forwarded request with the response body bytes sent back.
    transfers: Mutex<Vec<Transfer>>,
    /// `EarlyAnswer`: the `Content-Length`s of the requests answered early, and how many of
    /// their body bytes arrived anyway (read and dropped with `linger`).
    early: Mutex<(u64, u64)>,
}

pub struct FaultProxy {
    port: u16,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str, fault: Fault) -> FaultProxy {
        FaultProxy::start_with(upstream, fault, ProxyOptions::default())
    }

    /// Like [`FaultProxy::start`], with a shape and lifetime.
    pub fn start_with(upstream: &str, fault: Fault, opts: ProxyOptions) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .parse()
            .unwrap_or_else(|e| panic!("proxy upstream {upstream:?}: {e}"));
        assert!(
            upstream.ip().is_loopback(),
            "the proxy only forwards to loopback"
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy's port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            fault: Mutex::new(fault),
            link: opts.shape.map(Link::new),
            idle: opts.idle,
            upstream,
            connections: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            matched: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            body_bytes: Mutex::default(),
            max_body: Mutex::default(),
            patched: Mutex::new((0, false)),
            transfers: Mutex::default(),
            early: Mutex::new((0, 0)),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (state, stop) = (state.clone(), stop.clone());
            let lifetime = opts.lifetime;
            std::thread::spawn(move || accept_loop(listener, state, stop, lifetime))
        };
        FaultProxy {
            port,
            state,
            stop,
            accept: Some(accept),
        }
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }
    /// Changes the fault; counters keep counting from where they are (see [`Self::reset_counts`]).
    pub fn set_fault(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = fault;
    }
    /// Sets the connection and request counters (used by `…First` faults) and the log back to zero.
    pub fn reset_counts(&self) {
        self.state.connections.store(0, Ordering::SeqCst);
        self.state.requests.store(0, Ordering::SeqCst);
        self.state.matched.store(0, Ordering::SeqCst);
        self.state.log.lock().unwrap().clear();
        self.state.body_bytes.lock().unwrap().clear();
        self.state.max_body.lock().unwrap().clear();
        *self.state.patched.lock().unwrap() = (0, false);
        self.state.transfers.lock().unwrap().clear();
        *self.state.early.lock().unwrap() = (0, 0);
    }
    /// Every forwarded request so far, with its `Range` and the response body bytes sent.
    pub fn transfers(&self) -> Vec<Transfer> {
        self.state.transfers.lock().unwrap().clone()
    }
    /// Response body bytes sent for `GET`s whose path contains `path_contains`.
    pub fn get_bytes(&self, path_contains: &str) -> u64 {
        self.transfers()
            .iter()
            .filter(|t| t.method == "GET" && t.path.contains(path_contains))
            .map(|t| t.body_bytes)
            .sum()
    }
    /// Request body bytes received from clients with `method` (forwarded or not).
    pub fn body_bytes(&self, method: &str) -> u64 {
        let m = self.state.body_bytes.lock().unwrap();
        m.get(method).copied().unwrap_or(0)
    }
    /// For requests an [`Fault::EarlyAnswer`] answered: their `Content-Length`s, summed, and
    /// the body bytes the client sent after all (what it wasted on refused bodies).
    pub fn early_answered_bodies(&self) -> (u64, u64) {
        *self.state.early.lock().unwrap()
    }
    /// The largest `Content-Length` of a request with `method`.
    pub fn max_body(&self, method: &str) -> u64 {
        let m = self.state.max_body.lock().unwrap();
        m.get(method).copied().unwrap_or(0)
    }
    /// Connections accepted since the start (or [`Self::reset_counts`]).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
    /// Bytes a shaped proxy carried in direction `dir` (0 without a shape).
    pub fn link_bytes(&self, dir: Dir) -> u64 {
        self.state.link.as_ref().map_or(0, |l| l.bytes(dir))
    }
    /// Every request seen so far, in order of arrival.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.log.lock().unwrap().clone()
    }
    /// How many requests (or reset connections) got `action`.
    pub fn count(&self, action: &Action) -> usize {
        self.seen().iter().filter(|s| &s.action == action).count()
    }
    /// The log as text, for assertion messages.
    pub fn describe(&self) -> String {
        self.seen()
            .iter()
            .map(|s| format!("{} {} -> {:?}", s.method, s.path, s.action))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    lifetime: Duration,
) {
    let deadline = Instant::now() + lifetime;
    let mut accepted = 0usize;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline && accepted < MAX_CONNECTIONS {
        match listener.accept() {
            Ok((stream, _)) => {
                accepted += 1;
                let state = state.clone();
                std::thread::spawn(move || {
                    let _ = handle(stream, &state);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn log(state: &State, method: &str, path: &str, action: Action) {
    state.log.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: path.to_string(),
        action,
    });
}

fn set_timeouts(s: &TcpStream) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)
}

/// The request line and headers of one request.
struct Head {
    method: String,
    path: String,
    /// `(name, value)` as sent.
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

fn find_end_of_head(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Reads until the end of the head; returns the parsed head and any bytes read past it.
fn read_head(s: &mut TcpStream) -> std::io::Result<Option<(Head, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = find_end_of_head(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("request head too large"));
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Some((
        Head {
            method,
            path,
            headers,
        },
        buf[end..].to_vec(),
    )))
}

/// The head to send upstream: same request line and headers, one request per connection.
fn upstream_head(head: &Head) -> Vec<u8> {
    let mut out = format!("{} {} HTTP/1.1\r\n", head.method, head.path);
    for (n, v) in &head.headers {
        let lower = n.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "connection" | "keep-alive" | "proxy-connection"
        ) {
            continue;
        }
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn add_body_bytes(state: &State, method: &str, n: u64) {
    *state
        .body_bytes
        .lock()
        .unwrap()
        .entry(method.to_string())
        .or_default() += n;
}

fn reason(status: u16) -> &'static str {
    match status {
        411 => "Length Required",
        413 => "Payload Too Large",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected",
    }
}

/// Reads and discards the request body (Content-Length), so that answering and closing does
/// not reset the connection under the client. Chunked bodies are read until a short pause.
fn drain_body(s: &mut TcpStream, head: &Head, already: usize) {
    let mut buf = vec![0u8; 64 * 1024];
    if let Some(len) = head
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        let mut left = len.saturating_sub(already as u64);
        let deadline = Instant::now() + IO_TIMEOUT;
        while left > 0 && Instant::now() < deadline {
            let want = buf.len().min(left as usize);
            match s.read(&mut buf[..want]) {
                Ok(0) | Err(_) => return,
                Ok(n) => left -= n as u64,
            }
        }
    } else if head
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    }
}

fn answer(s: &mut TcpStream, head: &Head, status: u16, retry_after: Option<u32>) {
    let code = match status {
        401 => "UNAUTHORIZED",
        403 => "DENIED",
        429 => "TOOMANYREQUESTS",
        _ => "UNAVAILABLE",
    };
    let body = format!(
        "{{\"errors\":[{{\"code\":\"{code}\",\"message\":\"injected by the airgap test proxy\",\"detail\":null}}]}}\n"
    );
    let mut resp = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json; charset=utf-8\r\n\
         Docker-Distribution-Api-Version: registry/2.0\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    if let Some(secs) = retry_after {
        resp.push_str(&format!("Retry-After: {secs}\r\n"));
    }
    resp.push_str("\r\n");
    if head.method != "HEAD" {
        resp.push_str(&body);
    }
    let _ = s.write_all(resp.as_bytes());
    let _ = s.flush();
    let _ = s.shutdown(Shutdown::Write);
    // Let the client read the answer and close first (bounded by the read timeout).
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut sink = [0u8; 1024];
    for _ in 0..64 {
        match s.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

fn answer_canned(
    s: &mut TcpStream,
    head: &Head,
    status: u16,
    content_type: &str,
    headers: &[(String, String)],
    body: &[u8],
) {
    let mut resp = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        reason(status),
        body.len()
    );
    for (n, v) in headers {
        resp.push_str(&format!("{n}: {v}\r\n"));
    }
    resp.push_str("\r\n");
    let _ = s.write_all(resp.as_bytes());
    if head.method != "HEAD" {
        let _ = s.write_all(body);
    }
    let _ = s.flush();
    let _ = s.shutdown(Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut sink = [0u8; 1024];
    for _ in 0..64 {
        match s.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// The `Canned` answer (or `Hold`) `f` gives this request, if any (a `CannedFirst` counts
/// the match).
fn canned_for(f: &Fault, head: &Head, state: &State) -> Option<Fault> {
    let matches = |method: Option<&str>, path_contains: &str| {
        method.is_none_or(|m| m.eq_ignore_ascii_case(&head.method))
            && head.path.contains(path_contains)
    };
    match f {
        Fault::Canned {
            method,
            path_contains,
            ..
        } if matches(method.as_deref(), path_contains) => Some(f.clone()),
        Fault::CannedFirst {
            n,
            method,
            path_contains,
            status,
            content_type,
            body,
        } if matches(Some(method), path_contains)
            && state.matched.fetch_add(1, Ordering::SeqCst) < *n =>
        {
            Some(Fault::Canned {
                method: Some(method.clone()),
                path_contains: path_contains.clone(),
                status: *status,
                content_type: content_type.clone(),
                headers: Vec::new(),
                body: body.clone(),
            })
        }
        Fault::CannedAt {
            method,
            path,
            status,
            headers,
            body,
        } if matches(method.as_deref(), path) && head.path == *path => Some(Fault::Canned {
            method: method.clone(),
            path_contains: path.clone(),
            status: *status,
            content_type: "application/json".into(),
            headers: headers.clone(),
            body: body.clone(),
        }),
        Fault::Hold {
            method,
            path_contains,
            ..
        } if matches(method.as_deref(), path_contains) => Some(f.clone()),
        Fault::Canned { .. }
        | Fault::CannedFirst { .. }
        | Fault::CannedAt { .. }
        | Fault::Hold { .. } => None,
        Fault::Each(_) => {
            panic!("Fault::Each holds Canned, CannedFirst, CannedAt and Hold faults only")
        }
        _ => None,
    }
}

fn handle(mut client: TcpStream, state: &State) -> std::io::Result<()> {
    set_timeouts(&client)?;
    let conn = state.connections.fetch_add(1, Ordering::SeqCst);
    let fault = state.fault.lock().unwrap().clone();
    if let (Some(link), Fault::None) = (&state.link, &fault) {
        if let Ok(upstream) = TcpStream::connect_timeout(&state.upstream, Duration::from_secs(5)) {
            relay(client, upstream, link.clone(), state.idle);
        }
        return Ok(());
    }
    if let Fault::ResetFirst(n) = fault {
        if conn < n {
            // Wait for the request to arrive and close without reading it: the kernel
            // answers unread data with a RST, which the client sees as "connection reset".
            let mut one = [0u8; 1];
            let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = client.peek(&mut one);
            log(state, "?", "?", Action::Reset);
            drop(client);
            return Ok(());
        }
    }
    let Some((head, rest)) = read_head(&mut client)? else {
        return Ok(());
    };
    let req = state.requests.fetch_add(1, Ordering::SeqCst);
    let length = head
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    {
        let mut m = state.max_body.lock().unwrap();
        let e = m.entry(head.method.clone()).or_default();
        *e = (*e).max(length);
    }
    if let Fault::EarlyAnswer {
        method,
        path_contains,
        above,
        status,
        code,
        message,
        linger,
    } = &fault
    {
        if method
            .as_ref()
            .is_none_or(|m| m.eq_ignore_ascii_case(&head.method))
            && head.path.contains(path_contains.as_str())
            && length > *above
        {
            log(state, &head.method, &head.path, Action::Answered(*status));
            add_body_bytes(state, &head.method, rest.len() as u64);
            {
                let mut e = state.early.lock().unwrap();
                e.0 += length;
                e.1 += rest.len() as u64;
            }
            let body = format!(
                "{{\"errors\":[{{\"code\":\"{code}\",\"message\":\"{message}\",\"detail\":null}}]}}\n"
            );
            let resp = format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: application/json; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                reason(*status),
                body.len()
            );
            let _ = client.write_all(resp.as_bytes());
            let _ = client.flush();
            if *linger {
                let mut buf = vec![0u8; 64 * 1024];
                let mut left = length.saturating_sub(rest.len() as u64);
                while left > 0 {
                    match client.read(&mut buf[..(left.min(64 * 1024)) as usize]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            left -= n as u64;
                            add_body_bytes(state, &head.method, n as u64);
                            state.early.lock().unwrap().1 += n as u64;
                        }
                    }
                }
                let _ = client.shutdown(Shutdown::Write);
            }
            // Without linger: dropped with the body unread, which the kernel answers with
            // a reset.
            return Ok(());
        }
    }
    if let Fault::ResetPatchAt { after } = &fault {
        if head.method == "PATCH" {
            let mut p = state.patched.lock().unwrap();
            if !p.1 && p.0 + length > *after {
                p.1 = true;
                let want = after.saturating_sub(p.0);
                drop(p);
                log(state, &head.method, &head.path, Action::Reset);
                let mut got = rest.len() as u64;
                let mut buf = vec![0u8; 64 * 1024];
                while got < want {
                    match client.read(&mut buf[..((want - got).min(64 * 1024)) as usize]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n as u64,
                    }
                }
                add_body_bytes(state, "PATCH", got);
                state.patched.lock().unwrap().0 += got;
                return Ok(()); // dropped with the rest unread: a reset
            }
            p.0 += length;
        }
    }
    let fault = match fault {
        Fault::Each(list) => list
            .iter()
            .find_map(|f| canned_for(f, &head, state))
            .unwrap_or(Fault::None),
        f => canned_for(&f, &head, state).unwrap_or(f),
    };
    if let Fault::Hold {
        method,
        path_contains,
        hold,
    } = &fault
    {
        if method
            .as_ref()
            .is_none_or(|m| m.eq_ignore_ascii_case(&head.method))
            && head.path.contains(path_contains.as_str())
        {
            std::thread::sleep(*hold);
        }
    }
    let status = match &fault {
        Fault::StatusFirst {
            n,
            status,
            retry_after,
        } if req < *n => Some((*status, *retry_after)),
        Fault::StatusAlways {
            status,
            retry_after,
        } => Some((*status, *retry_after)),
        Fault::StatusFirstMatching {
            method,
            path_contains,
            n,
            status,
        } if head.method.eq_ignore_ascii_case(method)
            && head.path.contains(path_contains.as_str())
            && state.matched.fetch_add(1, Ordering::SeqCst) < *n =>
        {
            Some((*status, None))
        }
        Fault::StatusForMethods { methods, status }
            if methods.iter().any(|m| m.eq_ignore_ascii_case(&head.method)) =>
        {
            Some((*status, None))
        }
        _ => None,
    };
    if let Fault::Canned {
        method,
        path_contains,
        status,
        content_type,
        headers,
        body,
    } = &fault
    {
        if method
            .as_ref()
            .is_none_or(|m| m.eq_ignore_ascii_case(&head.method))
            && head.path.contains(path_contains.as_str())
        {
            log(state, &head.method, &head.path, Action::Answered(*status));
            drain_body(&mut client, &head, rest.len());
            answer_canned(&mut client, &head, *status, content_type, headers, body);
            return Ok(());
        }
    }
    if let Some((status, retry_after)) = status {
        log(state, &head.method, &head.path, Action::Answered(status));
        drain_body(&mut client, &head, rest.len());
        answer(&mut client, &head, status, retry_after);
        return Ok(());
    }
    let cut = match &fault {
        Fault::CutResponse {
            path_contains,
            after,
        } if head.method == "GET" && head.path.contains(path_contains.as_str()) => Some(*after),
        Fault::CutFirst {
            path_contains,
            after,
            n,
            ..
        } if head.method == "GET"
            && head.path.contains(path_contains.as_str())
            && state.matched.fetch_add(1, Ordering::SeqCst) < *n =>
        {
            Some(*after)
        }
        _ => None,
    };
    let (stall, head) = match &fault {
        Fault::CutFirst {
            path_contains,
            stall,
            ignore_range,
            ..
        } if head.method == "GET" && head.path.contains(path_contains.as_str()) => {
            let mut head = head;
            let range = head.header("range").map(str::to_string);
            if *ignore_range {
                head.headers
                    .retain(|(n, _)| !n.eq_ignore_ascii_case("range"));
            }
            (cut.and(*stall), (head, range))
        }
        _ => {
            let range = head.header("range").map(str::to_string);
            (None, (head, range))
        }
    };
    let (head, range) = head;
    log(
        state,
        &head.method,
        &head.path,
        if cut.is_some() {
            Action::Cut
        } else {
            Action::Forwarded
        },
    );
    let mut upstream = match TcpStream::connect_timeout(&state.upstream, Duration::from_secs(5)) {
        Ok(u) => u,
        Err(_) => {
            // The registry is down: behave like it (the client sees a reset connection).
            return Ok(());
        }
    };
    set_timeouts(&upstream)?;
    upstream.write_all(&upstream_head(&head))?;
    upstream.write_all(&rest)?;
    // Request body: client -> upstream, on its own thread, until the client is done.
    let received = Arc::new(AtomicUsize::new(rest.len()));
    let pump = {
        let mut from = client.try_clone()?;
        let mut to = upstream.try_clone()?;
        let received = received.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            let deadline = Instant::now() + REQUEST_DEADLINE;
            while Instant::now() < deadline {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        received.fetch_add(n, Ordering::SeqCst);
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        })
    };
    // Response: upstream -> client, whole or cut after the head plus `cut` body bytes.
    let mut buf = vec![0u8; 256 * 1024];
    let mut head_buf: Vec<u8> = Vec::new();
    let mut body_sent = 0u64;
    let mut counter = BodyCounter::default();
    let mut head_done = cut.is_none();
    let deadline = Instant::now() + REQUEST_DEADLINE;
    while Instant::now() < deadline {
        let n = match upstream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Some(limit) = cut else {
            if client.write_all(&buf[..n]).is_err() {
                break;
            }
            counter.add(&buf[..n]);
            continue;
        };
        let mut data: &[u8] = &buf[..n];
        let mut joined;
        if !head_done {
            head_buf.extend_from_slice(data);
            match find_end_of_head(&head_buf) {
                None => continue,
                Some(end) => {
                    client.write_all(&head_buf[..end])?;
                    joined = std::mem::take(&mut head_buf);
                    joined.drain(..end);
                    data = &joined;
                    head_done = true;
                }
            }
        }
        let room = limit.saturating_sub(body_sent) as usize;
        let take = room.min(data.len());
        client.write_all(&data[..take])?;
        body_sent += take as u64;
        counter.body += take as u64;
        if body_sent >= limit {
            break;
        }
    }
    if let Some(d) = stall {
        let _ = client.flush();
        std::thread::sleep(d.min(REQUEST_DEADLINE));
    }
    state.transfers.lock().unwrap().push(Transfer {
        method: head.method.clone(),
        path: head.path.clone(),
        range,
        body_bytes: counter.body,
    });
    let _ = client.flush();
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
    let _ = pump.join();
    add_body_bytes(state, &head.method, received.load(Ordering::SeqCst) as u64);
    Ok(())
}

/// Counts the body bytes of a response passing through whole (the head is not counted).
#[derive(Default)]
struct BodyCounter {
    head: Vec<u8>,
    head_done: bool,
    body: u64,
}

impl BodyCounter {
    fn add(&mut self, data: &[u8]) {
        if self.head_done {
            self.body += data.len() as u64;
            return;
        }
        self.head.extend_from_slice(data);
        if let Some(end) = find_end_of_head(&self.head) {
            self.body += (self.head.len() - end) as u64;
            self.head_done = true;
            self.head = Vec::new();
        }
    }
}
