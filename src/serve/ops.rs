//! What an operator needs of `serve` besides the registry API: pull access control
//! (`--htpasswd`, bcrypt entries as `htpasswd -B` writes them, the format distribution uses),
//! Prometheus metrics, and the counters behind them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use base64::Engine;
use sha2::{Digest as _, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {reason}", path.display())]
    Entry {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{}: no user in it", path.display())]
    Empty { path: PathBuf },
}

/// Users and their bcrypt hashes, from an htpasswd file.
pub struct Htpasswd {
    users: HashMap<String, String>,
    /// sha256 of `user:password` pairs already verified: bcrypt costs tens of milliseconds by
    /// design, and a pull makes dozens of requests.
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Htpasswd {
    pub fn read(path: &Path) -> Result<Htpasswd, AuthFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Htpasswd, AuthFileError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let entry = |reason: String| AuthFileError::Entry {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| entry("expected USER:HASH".into()))?;
            if !["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
                // The password hash itself is never printed.
                return Err(entry(format!(
                    "the entry for {user:?} is not a bcrypt hash; only bcrypt is accepted \
                     (write it with htpasswd -B)"
                )));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        if users.is_empty() {
            return Err(AuthFileError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// The user, when `authorization` is `Basic` credentials of a listed user.
    pub fn check(&self, authorization: Option<&str>) -> Option<String> {
        let encoded = authorization?.strip_prefix("Basic ")?.trim();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let pair = String::from_utf8(decoded).ok()?;
        let (user, password) = pair.split_once(':')?;
        let hash = self.users.get(user)?;
        let key: [u8; 32] = Sha256::digest(pair.as_bytes()).into();
        if self.verified.lock().ok()?.contains(&key) {
            return Some(user.to_string());
        }
        if bcrypt::verify(password, hash).ok()? {
            self.verified.lock().ok()?.insert(key);
            return Some(user.to_string());
        }
        None
    }
}

/// Counters since start, for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<u16, u64>>,
    pub bytes_sent: AtomicU64,
    pub blobs_served: AtomicU64,
    pub verification_failures: AtomicU64,
    pub open_connections: AtomicU64,
    pub refused_connections: AtomicU64,
    pub auth_failures: AtomicU64,
    /// Shared frame decompression (`serve::cache`).
    pub frames_decoded: AtomicU64,
    pub frames_shared: AtomicU64,
    pub frame_cache_evictions: AtomicU64,
    pub frame_cache_bytes: AtomicU64,
}

impl Metrics {
    pub fn request(&self, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry(status).or_default() += 1;
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP airgap_serve_requests_total HTTP requests answered, by status.\n");
        out.push_str("# TYPE airgap_serve_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for (status, n) in m.iter() {
                out.push_str(&format!(
                    "airgap_serve_requests_total{{status=\"{status}\"}} {n}\n"
                ));
            }
        }
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (name, kind, help, value) in [
            (
                "bytes_sent_total",
                "counter",
                "Response body bytes sent.",
                get(&self.bytes_sent),
            ),
            (
                "blobs_served_total",
                "counter",
                "Whole or ranged blob responses started.",
                get(&self.blobs_served),
            ),
            (
                "verification_failures_total",
                "counter",
                "Blob reads whose bytes did not match their digest (the response was cut).",
                get(&self.verification_failures),
            ),
            (
                "open_connections",
                "gauge",
                "Client connections open now.",
                get(&self.open_connections),
            ),
            (
                "refused_connections_total",
                "counter",
                "Connections refused with 503 beyond --max-connections.",
                get(&self.refused_connections),
            ),
            (
                "auth_failures_total",
                "counter",
                "Requests refused with 401.",
                get(&self.auth_failures),
            ),
            (
                "frames_decoded_total",
                "counter",
                "zstd frames decompressed for blob reads through the shared frame cache.",
                get(&self.frames_decoded),
            ),
            (
                "frames_shared_total",
                "counter",
                "Frame reads answered by a frame another read decompressed (from the cache).",
                get(&self.frames_shared),
            ),
            (
                "frame_cache_evictions_total",
                "counter",
                "Decoded frames dropped from the cache to make room (least recently used).",
                get(&self.frame_cache_evictions),
            ),
            (
                "frame_cache_bytes",
                "gauge",
                "Decoded frame bytes the cache holds now (within --memory).",
                get(&self.frame_cache_bytes),
            ),
        ] {
            out.push_str(&format!(
                "# HELP airgap_serve_{name} {help}\n# TYPE airgap_serve_{name} {kind}\nairgap_serve_{name} {value}\n"
            ));
        }
        out
    }
}

/// Makes glibc's malloc give memory back for a long-running server. By default it gives busy
/// threads arenas of their own (up to 8 per core) and, once a big buffer is freed, raises its
/// mmap and trim thresholds, so the heap keeps what the read chunks (256 KiB each) freed: 256
/// clients left peak RSS at ~74 MiB. Two arenas, the mmap threshold fixed at 512 KiB (chunks
/// stay on the heap: mmapping each cost a third of the throughput) and the trim threshold at
/// 128 KiB (freed heap tops go back) keep it under 60 MiB (bench-fleet.sh, 256 clients).
/// glibc's own variables (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`,
/// `MALLOC_TRIM_THRESHOLD_`) win when an operator sets them. Call before the runtime starts
/// its threads.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (var, param, value) in [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2),
        ("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 512 * 1024),
        ("MALLOC_TRIM_THRESHOLD_", libc::M_TRIM_THRESHOLD, 128 * 1024),
    ] {
        if std::env::var_os(var).is_none() {
            // SAFETY: mallopt only sets an allocator parameter; no memory is touched.
            unsafe {
                libc::mallopt(param, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn bcrypt_entries_only() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let file = format!("# site users\nalice:{hash}\n\n");
        let h = Htpasswd::parse(&file, Path::new("users")).unwrap();
        assert_eq!(
            h.check(Some(&basic("alice", "s3cret"))).as_deref(),
            Some("alice")
        );
        // Cached, still right.
        assert_eq!(
            h.check(Some(&basic("alice", "s3cret"))).as_deref(),
            Some("alice")
        );
        assert_eq!(h.check(Some(&basic("alice", "wrong"))), None);
        assert_eq!(h.check(Some(&basic("bob", "s3cret"))), None);
        assert_eq!(h.check(Some("Bearer x")), None);
        assert_eq!(h.check(None), None);

        let e = Htpasswd::parse("bob:$apr1$abc$def\n", Path::new("users"))
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "users:1: the entry for \"bob\" is not a bcrypt hash; only bcrypt is accepted (write it with htpasswd -B)"
        );
        let e = Htpasswd::parse("nocolon\n", Path::new("users"))
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "users:1: expected USER:HASH");
        let e = Htpasswd::parse("# none\n", Path::new("users"))
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "users: no user in it");
    }

    #[test]
    fn metrics_text() {
        let m = Metrics::default();
        m.request(200);
        m.request(200);
        m.request(404);
        Metrics::add(&m.bytes_sent, 1234);
        let t = m.render();
        assert!(
            t.contains("airgap_serve_requests_total{status=\"200\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("airgap_serve_requests_total{status=\"404\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("# TYPE airgap_serve_open_connections gauge\n"),
            "{t}"
        );
        assert!(t.contains("airgap_serve_bytes_sent_total 1234\n"), "{t}");
    }
}
