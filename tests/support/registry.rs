//! Throw-away CNCF distribution registries (`docker-registry serve`, 2.8) on free loopback
//! ports, each with its own storage, optional htpasswd auth and optional TLS, plus a small
//! blocking HTTP client to push fixtures and look at what landed.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::blocking::{Body, Client, RequestBuilder, Response};
use reqwest::StatusCode;

use super::tls::{self, TlsFiles};

/// Every manifest media type: distribution 2.8 answers 404 to a GET/HEAD of an OCI
/// manifest or index whose type is not in `Accept`, and 400 to a Docker schema-2 manifest
/// GET without `Accept` (it tries a schema-1 conversion).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Which registry implementation to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    /// CNCF distribution 2.8 (Debian's `docker-registry`).
    #[default]
    Distribution,
    /// ferro-oci-server (crates.io; `scripts/install-deps.sh` installs it): a second, independent
    /// implementation. No auth, no TLS, no catalog limits; blobs are shared by every repository
    /// (a blob HEAD answers 200 in any repository) and mounts are answered 202 (never granted);
    /// it refuses any request body over 512 MiB with 413.
    Ferro,
}

/// The ferro-oci-server binary: `$AIRGAP_FERRO`, else where install-deps.sh puts it, else PATH.
pub fn ferro_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("AIRGAP_FERRO") {
        return PathBuf::from(p);
    }
    let tools = std::env::var_os("AIRGAP_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/airgap-tools")
        });
    let p = tools.join("bin/ferro-oci-server");
    if p.exists() {
        p
    } else {
        PathBuf::from("ferro-oci-server")
    }
}

#[derive(Debug, Clone, Default)]
pub struct RegistryOpts {
    /// The implementation (distribution unless said otherwise).
    pub kind: Kind,
    /// htpasswd user and password (bcrypt via `htpasswd -Bbn`); Basic auth is accepted.
    pub auth: Option<(String, String)>,
    /// Serve HTTPS with a fresh self-signed CA (see [`Registry::ca_file`]).
    pub tls: bool,
    /// Run as a pull-through cache of this registry URL (`proxy: remoteurl:`).
    pub proxy: Option<String>,
    /// Repositories per page of `/v2/_catalog` (`catalog: maxentries:`; distribution's
    /// default is 1000).
    pub catalog_page: Option<usize>,
}

impl RegistryOpts {
    pub fn plain() -> Self {
        Self::default()
    }
    pub fn auth(user: &str, pass: &str) -> Self {
        RegistryOpts {
            auth: Some((user.to_string(), pass.to_string())),
            ..Self::default()
        }
    }
    pub fn tls() -> Self {
        RegistryOpts {
            tls: true,
            ..Self::default()
        }
    }
    pub fn auth_tls(user: &str, pass: &str) -> Self {
        RegistryOpts {
            auth: Some((user.to_string(), pass.to_string())),
            tls: true,
            ..Self::default()
        }
    }
    /// A plain-HTTP registry of another implementation.
    pub fn of(kind: Kind) -> Self {
        RegistryOpts {
            kind,
            ..Self::default()
        }
    }
    /// A pull-through cache of `remote` (e.g. `http://127.0.0.1:5000`).
    pub fn pull_through(remote: &str) -> Self {
        RegistryOpts {
            proxy: Some(remote.to_string()),
            ..Self::default()
        }
    }
}

pub struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    opts: RegistryOpts,
    tls: Option<TlsFiles>,
    /// A value the registry sends in a response header, so the readiness probe knows it
    /// talks to this process and not to another test's registry that won a port race.
    token: String,
    child: Mutex<Option<Running>>,
}

/// The registry process and its watchdog: `sh -c 'read _; kill -9 PID'` reading a pipe from
/// this process. If the test process dies without dropping the registry (killed by a
/// timeout), the pipe closes and the watchdog kills the registry, so none is left behind.
struct Running {
    registry: Child,
    watchdog: Option<Child>,
}

impl Running {
    fn kill(mut self) {
        // The watchdog first, so it can never signal a PID that was reused.
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = self.registry.kill();
        let _ = self.registry.wait();
    }
}

pub fn watchdog(pid: u32) -> Option<Child> {
    Command::new("sh")
        .args([
            "-c",
            "read _ ; kill -9 \"$0\" 2>/dev/null",
            &pid.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

enum StartError {
    AddrInUse,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

fn unique_token() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

impl Registry {
    /// Starts a registry and waits until `/v2/` answers; panics (with its log) if it cannot.
    pub fn start(opts: RegistryOpts) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("airgap-registry-")
            .tempdir()
            .expect("create the registry's temporary directory");
        std::fs::create_dir_all(dir.path().join("storage")).unwrap();
        if let Some((user, pass)) = &opts.auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("run htpasswd (package apache2-utils; scripts/test.sh installs it)");
            assert!(
                out.status.success(),
                "htpasswd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
        }
        let tls = opts.tls.then(|| tls::generate(&dir.path().join("tls")));
        let mut reg = Registry {
            dir,
            port: 0,
            opts,
            tls,
            token: unique_token(),
            child: Mutex::new(None),
        };
        for _attempt in 0..8 {
            reg.port = free_port();
            match reg.spawn_and_wait() {
                Ok(()) => return reg,
                Err(StartError::AddrInUse) => continue,
            }
        }
        panic!(
            "could not start a registry on a free port after 8 tries; last log:\n{}",
            reg.log()
        );
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!(
            "{}://127.0.0.1:{}",
            if self.is_tls() { "https" } else { "http" },
            self.port
        )
    }
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
    /// The CA certificate that signed the registry's certificate. Panics without TLS.
    pub fn ca_file(&self) -> &Path {
        &self
            .tls
            .as_ref()
            .expect("ca_file() of a registry started without tls")
            .ca_cert
    }
    /// A directory with only the CA certificate, for skopeo's `--cert-dir`. Panics without TLS.
    pub fn cert_dir(&self) -> &Path {
        &self
            .tls
            .as_ref()
            .expect("cert_dir() of a registry started without tls")
            .cert_dir
    }
    pub fn creds(&self) -> Option<(&str, &str)> {
        self.opts
            .auth
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }
    pub fn opts(&self) -> &RegistryOpts {
        &self.opts
    }
    /// The registry's storage root (survives `stop`/`restart`).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// `pack` flags that reach this registry as a source: a plain-HTTP mirror entry for its
    /// own host, or the CA file for TLS. Credentials are not included.
    pub fn source_flags(&self) -> Vec<String> {
        if self.is_tls() {
            vec!["--ca-file".into(), self.ca_file().display().to_string()]
        } else {
            vec!["--mirror".into(), format!("{}={}", self.host(), self.url())]
        }
    }
    /// `load` flags that reach this registry as a target: `--plain-http` or the CA file.
    /// Credentials are not included.
    pub fn target_flags(&self) -> Vec<String> {
        if self.is_tls() {
            vec!["--ca-file".into(), self.ca_file().display().to_string()]
        } else {
            vec!["--plain-http".into()]
        }
    }

    pub fn is_running(&self) -> bool {
        let mut g = self.child.lock().unwrap();
        match g.as_mut() {
            Some(c) => c.registry.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// Kills the registry; the storage is kept.
    pub fn stop(&self) {
        let mut g = self.child.lock().unwrap();
        if let Some(c) = g.take() {
            c.kill();
        }
    }

    /// Starts the registry again on the same port with the same storage.
    pub fn restart(&self) {
        self.stop();
        // The port was ours a moment ago; give a racing test a few chances to let go of it.
        for _ in 0..20 {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(StartError::AddrInUse) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
        panic!(
            "could not restart the registry on port {}: the port stays taken\n{}",
            self.port,
            self.log()
        );
    }

    fn write_config(&self) -> PathBuf {
        let d = self.dir.path();
        let mut cfg = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: airgap-test-secret\n\
             \x20 headers:\n    X-Airgap-Test-Registry: [\"{token}\"]\n",
            storage = d.join("storage").display(),
            port = self.port,
            token = self.token,
        );
        if let Some(t) = &self.tls {
            cfg.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                t.server_cert.display(),
                t.server_key.display()
            ));
        }
        if self.opts.auth.is_some() {
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: airgap-test\n    path: {}\n",
                d.join("htpasswd").display()
            ));
        }
        if let Some(remote) = &self.opts.proxy {
            cfg.push_str(&format!("proxy:\n  remoteurl: {remote}\n"));
        }
        if let Some(n) = self.opts.catalog_page {
            cfg.push_str(&format!("catalog:\n  maxentries: {n}\n"));
        }
        let p = d.join("config.yml");
        std::fs::write(&p, cfg).unwrap();
        p
    }

    fn spawn_and_wait(&self) -> Result<(), StartError> {
        if self.opts.kind == Kind::Ferro {
            return self.spawn_ferro();
        }
        let config = self.write_config();
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(&config);
        let token = self.token.clone();
        self.launch(cmd, "docker-registry", move |resp| {
            // The token header tells this process from another test's that won a port race.
            resp.headers()
                .get("x-airgap-test-registry")
                .and_then(|v| v.to_str().ok())
                == Some(token.as_str())
                && (resp.status() == StatusCode::OK || resp.status() == StatusCode::UNAUTHORIZED)
        })
    }

    /// Starts `cmd` with its output in the log, and waits until `ready` accepts an answer to
    /// `/v2/` (or the process exits: `AddrInUse` when the port was taken).
    fn launch(
        &self,
        mut cmd: Command,
        what: &str,
        ready: impl Fn(&Response) -> bool,
    ) -> Result<(), StartError> {
        let log_start = std::fs::metadata(self.log_file())
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("run {what} (scripts/install-deps.sh installs it): {e}"));
        let watchdog = watchdog(child.id());
        *self.child.lock().unwrap() = Some(Running {
            registry: child,
            watchdog,
        });
        let probe = self.client();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            {
                let mut g = self.child.lock().unwrap();
                let c = g.as_mut().unwrap();
                if let Some(status) = c.registry.try_wait().unwrap() {
                    g.take().unwrap().kill();
                    let log = self.log();
                    let this_run = log.get(log_start..).unwrap_or(&log);
                    if this_run.to_lowercase().contains("address already in use")
                        || this_run.contains("AddrInUse")
                    {
                        return Err(StartError::AddrInUse);
                    }
                    panic!("{what} exited ({status}) while starting:\n{this_run}");
                }
            }
            if let Ok(resp) = probe.request(reqwest::Method::GET, "/v2/").send() {
                if ready(&resp) && self.is_running() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                self.stop();
                panic!(
                    "{what} on port {} did not answer /v2/ within {:?}:\n{}",
                    self.port,
                    READY_TIMEOUT,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// ferro-oci-server, configured by environment variables only.
    fn spawn_ferro(&self) -> Result<(), StartError> {
        assert!(
            self.opts.auth.is_none()
                && !self.opts.tls
                && self.opts.proxy.is_none()
                && self.opts.catalog_page.is_none(),
            "ferro-oci-server has no auth, TLS, proxy or catalog settings"
        );
        let mut cmd = Command::new(ferro_bin());
        cmd.env("FERRO_OCI_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("FERRO_OCI_STORAGE_DIR", self.storage_dir());
        // No header to recognise it by: it is ours if it still runs after answering.
        self.launch(cmd, "ferro-oci-server", |resp| {
            resp.status() == StatusCode::OK
        })
    }

    /// An HTTP client for this registry, with its credentials (if any) and CA.
    pub fn client(&self) -> RegistryClient {
        RegistryClient::new(self, self.creds())
    }
    /// An HTTP client for this registry without credentials.
    pub fn anonymous_client(&self) -> RegistryClient {
        RegistryClient::new(self, None)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "---- last lines of the log of registry {} ----\n{}\n----",
                self.host(),
                tail.join("\n")
            );
        }
    }
}

/// A blocking HTTP client for one registry, speaking the distribution API directly.
pub struct RegistryClient {
    http: Client,
    base: String,
    auth: Option<(String, String)>,
}

/// What a registry answered to a manifest GET.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub content_type: String,
    pub digest_header: Option<String>,
    pub bytes: Vec<u8>,
}

impl RegistryClient {
    fn new(reg: &Registry, auth: Option<(&str, &str)>) -> Self {
        let mut b = Client::builder()
            .use_rustls_tls()
            .no_proxy()
            .timeout(Duration::from_secs(300))
            .connect_timeout(Duration::from_secs(5));
        if let Some(t) = &reg.tls {
            let pem = std::fs::read(&t.ca_cert).unwrap();
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        }
        RegistryClient {
            http: b.build().expect("build the harness HTTP client"),
            base: reg.url(),
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        }
    }

    /// A request to `path` (absolute `/v2/...`) or to a full URL.
    pub fn request(&self, method: reqwest::Method, path_or_url: &str) -> RequestBuilder {
        let url = if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{}", self.base, path_or_url)
        };
        let rb = self.http.request(method, url);
        match &self.auth {
            Some((u, p)) => rb.basic_auth(u, Some(p)),
            None => rb,
        }
    }

    fn check(resp: Response, what: &str) -> Response {
        if resp.status().is_success() {
            return resp;
        }
        let status = resp.status();
        let body = resp.text().unwrap_or_default();
        panic!("{what}: HTTP {status}: {body}");
    }

    /// Monolithic upload: `POST /v2/<repo>/blobs/uploads/` then `PUT <location>&digest=`.
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = super::sha256_digest(bytes);
        self.push_blob_body(repo, &digest, Body::from(bytes.to_vec()));
        digest
    }

    /// Streams `len` bytes from `reader` as the blob `digest` (nothing held in memory).
    pub fn push_blob_reader<R: Read + Send + 'static>(
        &self,
        repo: &str,
        digest: &str,
        len: u64,
        reader: R,
    ) {
        self.push_blob_body(repo, digest, Body::sized(reader, len));
    }

    fn push_blob_body(&self, repo: &str, digest: &str, body: Body) {
        let what = format!("push blob {digest} to {}/{repo}", self.base);
        let resp = self
            .request(reqwest::Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .unwrap_or_else(|e| panic!("{what}: POST: {e}"));
        let resp = Self::check(resp, &format!("{what}: POST"));
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "{what}: POST status");
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: POST answered no Location"))
            .to_string();
        let mut url = reqwest::Url::parse(&self.base)
            .unwrap()
            .join(&location)
            .unwrap();
        url.query_pairs_mut().append_pair("digest", digest);
        // Content-Type matters: without it reqwest sends none, but a client that sends
        // application/x-www-form-urlencoded gets its body eaten by Go's form parsing.
        let resp = self
            .request(reqwest::Method::PUT, url.as_str())
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .unwrap_or_else(|e| panic!("{what}: PUT: {e}"));
        let resp = Self::check(resp, &format!("{what}: PUT"));
        assert_eq!(resp.status(), StatusCode::CREATED, "{what}: PUT status");
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with `media_type` as Content-Type; checks that
    /// the registry's digest is the sha256 of exactly these bytes and returns it.
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let digest = super::sha256_digest(bytes);
        let what = format!("push manifest {digest} as {}/{repo}:{reference}", self.base);
        let resp = self
            .request(
                reqwest::Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
            )
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let resp = Self::check(resp, &what);
        let served = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        assert_eq!(served.as_deref(), Some(digest.as_str()), "{what}");
        digest
    }

    /// GET a manifest with every media type accepted; `None` on 404.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Option<FetchedManifest> {
        let what = format!("get manifest {}/{repo}:{reference}", self.base);
        let resp = self
            .request(
                reqwest::Method::GET,
                &format!("/v2/{repo}/manifests/{reference}"),
            )
            .header("accept", MANIFEST_ACCEPT)
            .send()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        if resp.status() == StatusCode::NOT_FOUND {
            return None;
        }
        let resp = Self::check(resp, &what);
        let h = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = h("content-type").unwrap_or_default();
        let digest_header = h("docker-content-digest");
        let bytes = resp.bytes().unwrap().to_vec();
        Some(FetchedManifest {
            content_type,
            digest_header,
            bytes,
        })
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`: the blob's size when present.
    pub fn blob_size(&self, repo: &str, digest: &str) -> Option<u64> {
        let resp = self
            .request(reqwest::Method::HEAD, &format!("/v2/{repo}/blobs/{digest}"))
            .send()
            .unwrap_or_else(|e| panic!("HEAD blob {digest} in {repo}: {e}"));
        if resp.status() == StatusCode::NOT_FOUND {
            return None;
        }
        let resp = Self::check(resp, &format!("HEAD blob {digest} in {repo}"));
        resp.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    pub fn blob_exists(&self, repo: &str, digest: &str) -> bool {
        self.blob_size(repo, digest).is_some()
    }

    /// Downloads a blob and returns the sha256 of what was served and its size.
    pub fn blob_digest(&self, repo: &str, digest: &str) -> (String, u64) {
        use sha2::{Digest as _, Sha256};
        let what = format!("GET blob {digest} in {repo}");
        let resp = self
            .request(reqwest::Method::GET, &format!("/v2/{repo}/blobs/{digest}"))
            .send()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut resp = Self::check(resp, &what);
        let mut h = Sha256::new();
        let mut n = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let k = resp.read(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k as u64;
        }
        (format!("sha256:{}", hex::encode(h.finalize())), n)
    }

    /// The repository's tags (empty when it has none or does not exist).
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let resp = self
            .request(reqwest::Method::GET, &format!("/v2/{repo}/tags/list"))
            .send()
            .unwrap_or_else(|e| panic!("list tags of {repo}: {e}"));
        if resp.status() == StatusCode::NOT_FOUND {
            return vec![];
        }
        let resp = Self::check(resp, &format!("list tags of {repo}"));
        let v: serde_json::Value = resp.json().unwrap();
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// Every repository of the registry (`GET /v2/_catalog`), sorted. (2.8 refuses n > 1000.)
    pub fn catalog(&self) -> Vec<String> {
        let resp = self
            .request(reqwest::Method::GET, "/v2/_catalog?n=1000")
            .send()
            .unwrap_or_else(|e| panic!("catalog: {e}"));
        let resp = Self::check(resp, "catalog");
        let v: serde_json::Value = resp.json().unwrap();
        let mut repos: Vec<String> = v["repositories"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        repos.sort();
        repos
    }

    /// The status of `GET /v2/`.
    pub fn ping(&self) -> Result<StatusCode, reqwest::Error> {
        self.request(reqwest::Method::GET, "/v2/")
            .send()
            .map(|r| r.status())
    }
}
