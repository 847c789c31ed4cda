//! A distribution registry with `auth: token:` trusting a [`super::TokenServer`].

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{TokenServer, ISSUER, READY_TIMEOUT, SERVICE};

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
    /// Starts `docker-registry` over `storage` (e.g. [`crate::support::Registry::storage_dir`] of a
    /// stopped registry seeded with fixtures) trusting `tokens`.
    pub fn start(storage: &Path, tokens: &TokenServer) -> TokenRegistry {
        Self::start_with_realm(storage, tokens, &tokens.realm())
    }

    /// Like [`Self::start`], but clients are sent to `realm` for tokens (e.g. a
    /// [`crate::support::proxy::FaultProxy`] in front of the token server).
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
        let watchdog = super::super::registry::watchdog(child.id());
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

/// A plain registry seeded by `seed`, stopped, and served over the same storage with token
/// auth trusting `tokens` (the plain one owns the storage: restart it to look without auth).
pub fn seeded_token_registry(
    tokens: &TokenServer,
    seed: impl FnOnce(&crate::support::Fixtures),
) -> (crate::support::Registry, TokenRegistry) {
    use crate::support::{Fixtures, Registry, RegistryOpts};
    let plain = Registry::start(RegistryOpts::plain());
    seed(&Fixtures::new(&plain));
    plain.stop();
    let reg = TokenRegistry::start(&plain.storage_dir(), tokens);
    (plain, reg)
}

/// `skopeo inspect --raw` of `reference` in a token-auth registry with `user:pass`, hashed;
/// or skopeo's error text.
pub fn skopeo_digest_with_creds(reference: &str, user: &str, pass: &str) -> Result<String, String> {
    let out = super::super::skopeo(&[
        "inspect".to_string(),
        "--raw".to_string(),
        "--tls-verify=false".to_string(),
        "--creds".to_string(),
        format!("{user}:{pass}"),
        format!("docker://{reference}"),
    ]);
    if out.status.success() {
        Ok(super::super::sha256_digest(&out.stdout))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
