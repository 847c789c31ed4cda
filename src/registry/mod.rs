//! The only module that speaks HTTP: a small client for the parts of the OCI distribution
//! API that pack and load use, with mirrors, Basic and Bearer auth, TLS options and retries.
//!
//! `client` (the [`Client`], sending with auth and retries) · `auth` (challenges, tokens) ·
//! `credentials` (config.json, helpers) · `retry` (what is transient, backoff, the one loop) ·
//! `blobs`, `upload` (monolithic and chunked), `manifests`, `catalog`, `referrers` (the OCI 1.1
//! referrers API, pull-scoped manifest HEADs) (what is asked) · `error` ([`RegistryError`] and its hints) ·
//! `rate` (`--limit-rate`) · `proxy` (`HTTPS_PROXY` & co.).

mod auth;
mod blobs;
mod catalog;
pub mod chart_repo;
mod client;
pub mod credentials;
mod error;
mod manifests;
pub mod proxy;
pub mod rate;
mod referrers;
pub(crate) mod retry;
mod upload;

pub use blobs::{BlobBody, Pushed};
pub use client::Client;
pub use error::RegistryError;
pub use manifests::FetchedManifest;
pub use proxy::Proxies;
pub use rate::{parse_rate, RateLimit};
pub use referrers::ManifestHead;
pub use upload::{Reread, DEFAULT_CHUNK};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::reference::{DOCKER_HUB, DOCKER_HUB_API};

/// How to connect: TLS trust and retry policy, shared by every registry of one run.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Extra CA certificates (PEM) trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_tls_verify: bool,
    /// Attempts after the first for transient failures (connection errors, 429, 5xx).
    pub retries: u32,
    pub connect_timeout: Duration,
    /// `--limit-rate`: body bytes per second for the whole run, shared by every client built
    /// with these options (clone the `Arc`, not the limit).
    pub limit_rate: Option<Arc<RateLimit>>,
    /// The proxies to use; `None`: from the environment (`HTTPS_PROXY` …, see `proxy.rs`)
    /// when each client is built.
    pub proxies: Option<Proxies>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            ca_file: None,
            insecure_skip_tls_verify: false,
            retries: 3,
            connect_timeout: Duration::from_secs(15),
            limit_rate: None,
            proxies: None,
        }
    }
}

/// Where requests for a registry name actually go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The registry as images name it (`docker.io`, `quay.io`, `10.0.0.1:5000`).
    pub name: String,
    /// The base URL requests go to (`https://registry-1.docker.io`, a mirror, …).
    pub base: Url,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid mirror {spec:?}: {reason}")]
pub struct MirrorError {
    pub spec: String,
    pub reason: String,
}

/// Parses `HOST=URL` (`docker.io=http://127.0.0.1:5000`); the URL's scheme says http or https.
pub fn parse_mirror(spec: &str) -> Result<(String, Url), MirrorError> {
    let err = |reason: &str| MirrorError {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let (host, url) = spec
        .split_once('=')
        .ok_or_else(|| err("expected HOST=URL, e.g. docker.io=https://mirror.example"))?;
    let url = parse_mirror_url(url).map_err(|r| err(&r))?;
    crate::reference::validate_registry(host).map_err(|r| err(&r))?;
    Ok((normalise_host(host), url))
}

pub fn parse_mirror_url(url: &str) -> Result<Url, String> {
    let url = Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("{url} must start with http:// or https://"));
    }
    if url.host_str().is_none() {
        return Err(format!("{url} has no host"));
    }
    Ok(url)
}

fn normalise_host(host: &str) -> String {
    match host {
        "index.docker.io" | DOCKER_HUB_API => DOCKER_HUB.to_string(),
        h => h.to_string(),
    }
}

impl Endpoint {
    /// The endpoint for registry `name`: a mirror when one is configured, Docker Hub's API
    /// host for `docker.io`, else `https://name` (or `http://name` with `plain_http`).
    pub fn resolve(name: &str, mirrors: &BTreeMap<String, Url>, plain_http: bool) -> Endpoint {
        let name = normalise_host(name);
        let base = if let Some(m) = mirrors.get(&name) {
            m.clone()
        } else {
            let host = if name == DOCKER_HUB {
                DOCKER_HUB_API
            } else {
                &name
            };
            let scheme = if plain_http { "http" } else { "https" };
            Url::parse(&format!("{scheme}://{host}/"))
                .unwrap_or_else(|_| Url::parse("https://invalid.invalid/").expect("static URL"))
        };
        Endpoint { name, base }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let mut m = BTreeMap::new();
        let (h, u) = parse_mirror("docker.io=http://127.0.0.1:5000").unwrap();
        m.insert(h, u);
        assert_eq!(
            Endpoint::resolve("docker.io", &m, false).base.as_str(),
            "http://127.0.0.1:5000/"
        );
        assert_eq!(
            Endpoint::resolve("docker.io", &BTreeMap::new(), false)
                .base
                .as_str(),
            "https://registry-1.docker.io/"
        );
        assert_eq!(
            Endpoint::resolve("10.0.0.1:8000", &BTreeMap::new(), true)
                .base
                .as_str(),
            "http://10.0.0.1:8000/"
        );
        assert!(parse_mirror("docker.io").is_err());
        assert!(parse_mirror("docker.io=ftp://x").is_err());
        assert!(parse_mirror("Bad Host=http://x").is_err());
    }
}
