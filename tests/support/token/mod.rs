//! Bearer-token auth for tests: a small token server of our own (std `TcpListener` and
//! threads, HTTP/1.1, one request per connection; `serve.rs`) answering
//! `GET /token?service=…&scope=…` with `{"token": …}` after checking Basic credentials (or
//! none, for anonymous pulls when allowed), and `POST /token` OAuth2 `refresh_token` grants
//! (docker/distribution's token spec) with `{"access_token": …}`; and a distribution registry
//! configured with `auth: token:` trusting it (`registry.rs`).
//!
//! Tokens are JWTs signed RS256 with the `openssl` CLI; the header carries the signing
//! certificate in `x5c` (base64 DER), and the registry's `rootcertbundle` is that same
//! self-signed certificate, which is how distribution 2.8 finds and trusts the key. The
//! `access` claim grants the requested actions that the user's [`Grant`] allows.

mod registry;
mod serve;

#[allow(unused_imports)]
pub use registry::{seeded_token_registry, skopeo_digest_with_creds, TokenRegistry};

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    /// The OAuth2 refresh token (docker's `identitytoken`) this user may present instead.
    pub refresh_token: Option<String>,
}

impl User {
    pub fn new(name: &str, password: &str, grant: Grant) -> User {
        User {
            name: name.into(),
            password: password.into(),
            grant,
            refresh_token: None,
        }
    }

    pub fn with_refresh_token(mut self, token: &str) -> User {
        self.refresh_token = Some(token.into());
        self
    }
}

/// One token request as the server saw it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// `GET` (Basic or anonymous) or `POST` (an OAuth2 grant).
    pub method: String,
    /// Whether an `Authorization` header came with it.
    pub authorization: bool,
    /// The Basic user name, or the user whose refresh token was presented.
    pub user: Option<String>,
    /// The OAuth2 `grant_type` and `client_id` of a `POST`.
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
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
    /// What a `GET` without credentials gets; `None`: 401.
    anonymous: Option<Grant>,
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
        Self::start_with(users, None)
    }

    /// Like [`Self::start`]; token requests without credentials get `anonymous` (a public
    /// registry's anonymous pull tokens), or 401 when `None`.
    pub fn start_with(users: Vec<User>, anonymous: Option<Grant>) -> TokenServer {
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
            anonymous,
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
                                let _ = serve::serve(s, &state);
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
