//! Bearer-token auth for tests: a small token server of our own (std `TcpListener` and
//! threads, HTTP/1.1, one request per connection) answering
//! `GET /token?service=…&scope=…` with `{"token": …}` after checking Basic credentials, and a
//! distribution registry configured with `auth: token:` trusting it.
//!
//! Tokens are JWTs signed RS256 with the `openssl` CLI; the header carries the signing
//! certificate in `x5c` (base64 DER), and the registry's `rootcertbundle` is that same
//! self-signed certificate, which is how distribution 2.8 finds and trusts the key. The
//! `access` claim grants the requested actions that the user's [`Grant`] allows.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;

pub const SERVICE: &str = "airgap-test";
pub const ISSUER: &str = "airgap-test-issuer";
const MAX_LIFETIME: Duration = Duration::from_secs(300);
const MAX_CONNECTIONS: usize = 20_000;
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Every action asked for.
    All,
    /// `pull` only, whatever is asked.
    PullOnly,
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
    pub grant: Grant,
}

impl User {
    pub fn new(name: &str, password: &str, grant: Grant) -> User {
        User {
            name: name.into(),
            password: password.into(),
            grant,
        }
    }
}

/// One token request as the server saw it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The Basic user name, if any was sent.
    pub user: Option<String>,
    pub service: Option<String>,
    pub scopes: Vec<String>,
    /// 200 when a token was issued, else the status answered.
    pub status: u16,
    /// The `access` claim granted (`type:name:actions`), when a token was issued.
    pub granted: Vec<String>,
}

/// The signing key and its self-signed certificate.
struct Keys {
    key: PathBuf,
    cert: PathBuf,
    /// The certificate as base64 (standard) DER, for the `x5c` header.
    cert_b64_der: String,
}

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl Keys {
    fn generate(dir: &Path) -> Keys {
        std::fs::create_dir_all(dir).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "token.key",
                "-out",
                "token.crt",
                "-days",
                "2",
                "-subj",
                "/CN=airgap test token issuer",
            ],
        );
        let der = openssl(dir, &["x509", "-in", "token.crt", "-outform", "DER"]);
        Keys {
            key: dir.join("token.key"),
            cert: dir.join("token.crt"),
            cert_b64_der: base64::engine::general_purpose::STANDARD.encode(der),
        }
    }

    /// `openssl dgst -sha256 -sign KEY` of `data`: an RSASSA-PKCS1-v1_5 signature (RS256).
    fn sign(&self, data: &[u8]) -> Vec<u8> {
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run openssl dgst");
        child.stdin.take().unwrap().write_all(data).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "openssl dgst -sign failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct ServerState {
    keys: Keys,
    users: Vec<User>,
    issued: Mutex<Vec<String>>,
    requests: Mutex<Vec<TokenRequest>>,
    serial: AtomicU64,
}

/// A token server on a free loopback port.
pub struct TokenServer {
    dir: tempfile::TempDir,
    port: u16,
    state: Arc<ServerState>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl TokenServer {
    pub fn start(users: Vec<User>) -> TokenServer {
        let dir = tempfile::Builder::new()
            .prefix("airgap-token-")
            .tempdir()
            .unwrap();
        let keys = Keys::generate(dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token server's port");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ServerState {
            keys,
            users,
            issued: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            serial: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + MAX_LIFETIME;
                let mut accepted = 0;
                while !stop.load(Ordering::SeqCst)
                    && Instant::now() < deadline
                    && accepted < MAX_CONNECTIONS
                {
                    match listener.accept() {
                        Ok((s, _)) => {
                            accepted += 1;
                            let state = state.clone();
                            std::thread::spawn(move || {
                                let _ = serve(s, &state);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        TokenServer {
            dir,
            port,
            state,
            stop,
            accept: Some(accept),
        }
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    /// `http://127.0.0.1:PORT/token`
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
    /// The certificate whose key signs the tokens (the registry's `rootcertbundle`).
    pub fn cert_file(&self) -> &Path {
        &self.state.keys.cert
    }
    /// Every token issued so far (secrets: they must never be printed or stored by airgap).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.issued.lock().unwrap().clone()
    }
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().unwrap().clone()
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn respond(s: &mut TcpStream, status: u16, extra: &str, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Error",
    };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes())?;
    s.flush()
}

fn serve(mut s: TcpStream, st: &ServerState) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 64 * 1024 {
            return Ok(());
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default().to_string();
    let mut auth = None;
    for l in lines {
        if let Some((n, v)) = l.split_once(':') {
            if n.trim().eq_ignore_ascii_case("authorization") {
                auth = Some(v.trim().to_string());
            }
        }
    }
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if method != "GET" || path != "/token" {
        return respond(&mut s, 404, "", "{\"errors\":[{\"code\":\"NOT_FOUND\"}]}");
    }
    let mut service = None;
    let mut scopes = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "service" => service = Some(v.into_owned()),
            // A scope parameter may hold several scopes separated by spaces.
            "scope" => scopes.extend(v.split(' ').filter(|x| !x.is_empty()).map(String::from)),
            _ => {}
        }
    }
    let user = auth
        .as_deref()
        .and_then(|a| {
            a.strip_prefix("Basic ")
                .or_else(|| a.strip_prefix("basic "))
        })
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|up| {
            up.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    let record = |status: u16, granted: Vec<String>| {
        st.requests.lock().unwrap().push(TokenRequest {
            user: user.as_ref().map(|(u, _)| u.clone()),
            service: service.clone(),
            scopes: scopes.clone(),
            status,
            granted,
        });
    };
    let known = user.as_ref().and_then(|(u, p)| {
        st.users
            .iter()
            .find(|x| &x.name == u && &x.password == p)
            .cloned()
    });
    let Some(known) = known else {
        record(401, vec![]);
        return respond(
            &mut s,
            401,
            "WWW-Authenticate: Basic realm=\"airgap-test-token\"\r\n",
            "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"invalid username or password\"}]}",
        );
    };
    if service.as_deref() != Some(SERVICE) {
        record(400, vec![]);
        return respond(
            &mut s,
            400,
            "",
            "{\"errors\":[{\"code\":\"UNSUPPORTED\",\"message\":\"unknown service\"}]}",
        );
    }
    let mut access = Vec::new();
    let mut granted = Vec::new();
    for scope in &scopes {
        // type:name:actions, where the name may itself hold ':' (a host with a port).
        let Some((kind, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let allowed: Vec<&str> = actions
            .split(',')
            .filter(|a| match known.grant {
                Grant::All => !a.is_empty(),
                Grant::PullOnly => *a == "pull",
            })
            .collect();
        granted.push(format!("{kind}:{name}:{}", allowed.join(",")));
        access.push(serde_json::json!({"type": kind, "name": name, "actions": allowed}));
    }
    let now = now_secs();
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "RS256",
        "x5c": [st.keys.cert_b64_der],
    });
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": known.name,
        "aud": SERVICE,
        "exp": now + 600,
        "nbf": now - 30,
        "iat": now,
        "jti": format!("airgap-test-{}-{}", now, st.serial.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = st.keys.sign(signing_input.as_bytes());
    let token = format!("{signing_input}.{}", b64url(&sig));
    st.issued.lock().unwrap().push(token.clone());
    record(200, granted);
    let body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": 600,
    })
    .to_string();
    respond(&mut s, 200, "", &body)
}

/// A distribution registry serving an existing storage directory with token auth.
pub struct TokenRegistry {
    dir: tempfile::TempDir,
    port: u16,
    child: Mutex<Option<(Child, Option<Child>)>>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

impl TokenRegistry {
    /// Starts `docker-registry` over `storage` (e.g. [`super::Registry::storage_dir`] of a
    /// stopped registry seeded with fixtures) trusting `tokens`.
    pub fn start(storage: &Path, tokens: &TokenServer) -> TokenRegistry {
        Self::start_with_realm(storage, tokens, &tokens.realm())
    }

    /// Like [`Self::start`], but clients are sent to `realm` for tokens (e.g. a
    /// [`super::proxy::FaultProxy`] in front of the token server).
    pub fn start_with_realm(storage: &Path, tokens: &TokenServer, realm: &str) -> TokenRegistry {
        let dir = tempfile::Builder::new()
            .prefix("airgap-token-registry-")
            .tempdir()
            .unwrap();
        let mut reg = TokenRegistry {
            dir,
            port: 0,
            child: Mutex::new(None),
        };
        for _ in 0..8 {
            reg.port = free_port();
            if reg.spawn_and_wait(storage, tokens, realm) {
                return reg;
            }
        }
        panic!(
            "could not start a token-auth registry on a free port after 8 tries:\n{}",
            reg.log()
        );
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn stop(&self) {
        if let Some((mut reg, watchdog)) = self.child.lock().unwrap().take() {
            if let Some(mut w) = watchdog {
                let _ = w.kill();
                let _ = w.wait();
            }
            let _ = reg.kill();
            let _ = reg.wait();
        }
    }

    /// Starts the process; false when the port was taken.
    fn spawn_and_wait(&self, storage: &Path, tokens: &TokenServer, realm: &str) -> bool {
        let d = self.dir.path();
        let cfg = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: airgap-test-secret\n\
             auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {cert}\n",
            storage = storage.display(),
            port = self.port,
            realm = realm,
            cert = tokens.cert_file().display(),
        );
        let config = d.join("config.yml");
        std::fs::write(&config, cfg).unwrap();
        let log_path = d.join("registry.log");
        let log_start = std::fs::metadata(&log_path)
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run docker-registry (scripts/test.sh installs it)");
        let watchdog = super::registry::watchdog(child.id());
        *self.child.lock().unwrap() = Some((child, watchdog));
        let probe = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = {
                let mut g = self.child.lock().unwrap();
                g.as_mut()
                    .and_then(|(c, _)| c.try_wait().ok().flatten())
                    .is_some()
            };
            if exited {
                self.stop();
                let log = self.log();
                let this_run = log.get(log_start..).unwrap_or(&log).to_string();
                if this_run.contains("address already in use") {
                    return false;
                }
                panic!("token-auth docker-registry exited while starting:\n{this_run}");
            }
            if let Ok(resp) = probe.get(format!("{}/v2/", self.url())).send() {
                let bearer = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains(realm));
                if resp.status() == reqwest::StatusCode::UNAUTHORIZED && bearer {
                    return true;
                }
            }
            if Instant::now() > deadline {
                self.stop();
                panic!(
                    "token-auth registry on port {} did not answer /v2/ within {READY_TIMEOUT:?}:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- last lines of the log of token registry {} ----\n{}\n----",
                self.host(),
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

/// `skopeo inspect --raw` of `reference` in a token-auth registry with `user:pass`, hashed;
/// or skopeo's error text.
pub fn skopeo_digest_with_creds(reference: &str, user: &str, pass: &str) -> Result<String, String> {
    let out = super::skopeo(&[
        "inspect".to_string(),
        "--raw".to_string(),
        "--tls-verify=false".to_string(),
        "--creds".to_string(),
        format!("{user}:{pass}"),
        format!("docker://{reference}"),
    ]);
    if out.status.success() {
        Ok(super::sha256_digest(&out.stdout))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
