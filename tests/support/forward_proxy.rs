//! A forward HTTP proxy, as `HTTPS_PROXY`/`HTTP_PROXY` point at: `CONNECT host:port` opens a
//! tunnel (https:// registries), an absolute-URI request (`GET http://host:port/path`) is
//! forwarded in origin form (http:// ones). It may demand Basic credentials or refuse
//! everything with a status, and logs each request so a test can count what went through.
//! Only loopback destinations are reached. One request per client connection (the
//! forwarded request carries `Connection: close`); plain std threads with socket timeouts.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const IO_TIMEOUT: Duration = Duration::from_secs(30);
const LIFETIME: Duration = Duration::from_secs(300);

/// How the proxy answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardMode {
    /// Forward everything.
    Open,
    /// Forward only requests with `Proxy-Authorization: Basic` of these; answer 407 otherwise.
    RequireAuth { user: String, pass: String },
    /// Answer every request with this status (407 with a `Proxy-Authenticate` challenge).
    Refuse { status: u16 },
}

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRequest {
    /// `CONNECT`, `GET`, …
    pub method: String,
    /// `host:port` for CONNECT, the absolute URI otherwise.
    pub target: String,
    /// What the proxy answered itself (200 for an opened tunnel, 407, …), or 0 when it
    /// forwarded the request.
    pub answered: u16,
}

struct State {
    mode: ForwardMode,
    log: Mutex<Vec<ProxyRequest>>,
}

pub struct ForwardProxy {
    port: u16,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl ForwardProxy {
    pub fn start(mode: ForwardMode) -> ForwardProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the forward proxy");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            mode,
            log: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + LIFETIME;
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((s, _)) => {
                            let state = state.clone();
                            std::thread::spawn(move || handle(s, &state));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        ForwardProxy {
            port,
            state,
            stop,
            accept: Some(accept),
        }
    }
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }
    /// `http://USER:PASS@127.0.0.1:PORT`
    pub fn url_with(&self, user: &str, pass: &str) -> String {
        format!("http://{user}:{pass}@{}", self.host())
    }
    pub fn seen(&self) -> Vec<ProxyRequest> {
        self.state.log.lock().unwrap().clone()
    }
    /// Requests with `method` (any when `None`) seen so far.
    pub fn count(&self, method: Option<&str>) -> usize {
        self.seen()
            .iter()
            .filter(|r| method.is_none_or(|m| r.method == m))
            .count()
    }
    pub fn describe(&self) -> String {
        self.seen()
            .iter()
            .map(|r| format!("{} {} -> {}", r.method, r.target, r.answered))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

fn read_head(s: &mut TcpStream) -> Option<(Head, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Some((
        Head {
            method,
            target,
            headers,
        },
        buf[end..].to_vec(),
    ))
}

fn respond(s: &mut TcpStream, status: u16, extra: &str) {
    let reason = match status {
        200 => "Connection established",
        407 => "Proxy Authentication Required",
        403 => "Forbidden",
        502 => "Bad Gateway",
        _ => "Refused",
    };
    let body = format!("the test proxy answers {status}\n");
    let body = if status == 200 { String::new() } else { body };
    let head = if status == 200 {
        "HTTP/1.1 200 Connection established\r\n\r\n".to_string()
    } else {
        format!(
            "HTTP/1.1 {status} {reason}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let _ = s.write_all(head.as_bytes());
    let _ = s.flush();
}

fn loopback(hostport: &str) -> Option<SocketAddr> {
    hostport
        .to_socket_addrs()
        .ok()?
        .find(|a| a.ip().is_loopback())
}

/// Copies both ways until each side has ended.
fn tunnel(a: TcpStream, b: TcpStream) {
    let (mut a2, mut b2) = match (a.try_clone(), b.try_clone()) {
        (Ok(x), Ok(y)) => (x, y),
        _ => return,
    };
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut b2, &mut a2);
        let _ = a2.shutdown(Shutdown::Write);
    });
    let (mut a, mut b) = (a, b);
    let _ = std::io::copy(&mut a, &mut b);
    let _ = b.shutdown(Shutdown::Write);
    let _ = t.join();
}

fn handle(mut client: TcpStream, state: &State) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(IO_TIMEOUT));
    let _ = client.set_write_timeout(Some(IO_TIMEOUT));
    let Some((head, rest)) = read_head(&mut client) else {
        return;
    };
    let log = |answered: u16| {
        state.log.lock().unwrap().push(ProxyRequest {
            method: head.method.clone(),
            target: head.target.clone(),
            answered,
        })
    };
    let refuse = match &state.mode {
        ForwardMode::Open => None,
        ForwardMode::Refuse { status } => Some(*status),
        ForwardMode::RequireAuth { user, pass } => {
            use base64::Engine as _;
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            );
            let given = head
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("proxy-authorization"))
                .map(|(_, v)| v.as_str());
            (given != Some(want.as_str())).then_some(407)
        }
    };
    if let Some(status) = refuse {
        log(status);
        let extra = if status == 407 {
            "Proxy-Authenticate: Basic realm=\"test proxy\"\r\n"
        } else {
            ""
        };
        respond(&mut client, status, extra);
        let _ = client.shutdown(Shutdown::Write);
        return;
    }
    if head.method == "CONNECT" {
        let Some(addr) = loopback(&head.target) else {
            log(502);
            return respond(&mut client, 502, "");
        };
        let Ok(upstream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
            log(502);
            return respond(&mut client, 502, "");
        };
        log(200);
        respond(&mut client, 200, "");
        let mut up = upstream;
        if !rest.is_empty() && up.write_all(&rest).is_err() {
            return;
        }
        return tunnel(client, up);
    }
    // Absolute URI: http://host:port/path
    let Some(after) = head.target.strip_prefix("http://") else {
        log(400);
        return respond(&mut client, 400, "");
    };
    let (hostport, path) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    let Some(addr) = loopback(hostport) else {
        log(502);
        return respond(&mut client, 502, "");
    };
    let Ok(mut upstream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        log(502);
        return respond(&mut client, 502, "");
    };
    log(0);
    let mut out = format!("{} {path} HTTP/1.1\r\n", head.method);
    for (n, v) in &head.headers {
        let l = n.to_ascii_lowercase();
        if l.starts_with("proxy-") || l == "connection" || l == "keep-alive" {
            continue;
        }
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    if upstream.write_all(out.as_bytes()).is_err() || upstream.write_all(&rest).is_err() {
        return;
    }
    tunnel(client, upstream);
}
