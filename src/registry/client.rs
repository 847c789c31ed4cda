//! The [`Client`] for one registry endpoint: construction, sending a request with auth and
//! retries, and turning an answer the caller did not want into a [`RegistryError`]. What it
//! asks lives beside it, by subject: `blobs`, `manifests`, `catalog`; the token flow in `auth`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{header, RequestBuilder, Response, StatusCode};

use super::auth::AuthState;
use super::credentials::Credentials;
use super::error::{body_message, describe, is_tls, RegistryError};
use super::proxy::{masked, Proxies};
use super::rate::{limit_body, limit_response, RateLimit};
use super::retry::{self, attempts_of, is_transient_status, retry_after, Attempts, Outcome};
use super::{ConnectOptions, Endpoint};
use crate::fsutil::FileError;

/// A client for one registry endpoint. Cheap to clone; clones share the connection pool and
/// the auth state (so a token fetched by one task serves the others).
#[derive(Clone)]
pub struct Client {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) endpoint: Endpoint,
    pub(super) http: reqwest::Client,
    pub(super) credentials: Option<Credentials>,
    pub(super) retries: u32,
    pub(super) auth: Mutex<AuthState>,
    /// Held while a token is fetched, so tasks asking for the same scopes at once make one
    /// token request (see `auth::token_for`).
    pub(super) token_gate: tokio::sync::Mutex<()>,
    /// The registry answered a mount request from a repository into itself with an error
    /// other than a transient one: `upload_unless_present` asks plainly from then on.
    pub(super) no_probe: AtomicBool,
    /// Whether the registry stores a blob sent in the upload `POST` (`?digest=`): one of
    /// `upload::monolithic`'s `SINGLE_*` states, found out by the first upload that may.
    pub(super) single_post: AtomicU8,
    /// Uploads are chunked (asked for, or the registry refused a monolithic one).
    pub(super) chunked: AtomicBool,
    /// PATCH size in bytes; 0: `upload::DEFAULT_CHUNK`.
    pub(super) chunk_size: AtomicU64,
    /// Lines for the user (uploads fell back to chunks, an upload resumed), until taken.
    pub(super) notice: Mutex<std::collections::VecDeque<String>>,
    /// Where unfinished chunked uploads are remembered (`--state-dir`), if anywhere.
    pub(super) sessions: std::sync::OnceLock<super::upload::SessionStore>,
    /// What a manifest HEAD answering 404 is worth: `HEAD_UNKNOWN` until a GET asked after
    /// one said the same (`HEAD_TRUSTED`) or found the manifest (`HEAD_UNTRUSTED`: GET only).
    pub(super) head_404: AtomicU8,
    /// `--limit-rate`, shared with every other client of the run.
    pub(super) rate: Option<Arc<RateLimit>>,
    /// The proxies requests go through (see `proxy.rs`).
    pub(super) proxies: Proxies,
}

pub(super) const HEAD_UNKNOWN: u8 = 0;
pub(super) const HEAD_TRUSTED: u8 = 1;
pub(super) const HEAD_UNTRUSTED: u8 = 2;

pub(super) fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}
pub(super) fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

impl Client {
    pub fn new(
        endpoint: Endpoint,
        credentials: Option<Credentials>,
        opts: &ConnectOptions,
    ) -> Result<Client, RegistryError> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(32)
            .user_agent(concat!("airgap/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &opts.ca_file {
            let pem = std::fs::read(ca).map_err(FileError::with("reading the CA file", ca))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                RegistryError::Setup(format!("CA file {} is not PEM: {e}", ca.display()))
            })?;
            if certs.is_empty() {
                return Err(RegistryError::Setup(format!(
                    "CA file {} holds no certificate",
                    ca.display()
                )));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if opts.insecure_skip_tls_verify {
            b = b.danger_accept_invalid_certs(true);
        }
        let proxies = match &opts.proxies {
            Some(p) => p.clone(),
            None => Proxies::from_env()?,
        };
        let b = proxies.apply(b)?;
        let http = b
            .build()
            .map_err(|e| RegistryError::Setup(format!("cannot build HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                endpoint,
                http,
                credentials,
                retries: opts.retries,
                auth: Mutex::new(AuthState::default()),
                token_gate: tokio::sync::Mutex::new(()),
                no_probe: AtomicBool::new(false),
                head_404: AtomicU8::new(HEAD_UNKNOWN),
                chunked: AtomicBool::new(false),
                single_post: AtomicU8::new(super::upload::SINGLE_UNKNOWN),
                chunk_size: AtomicU64::new(0),
                notice: Mutex::new(Default::default()),
                sessions: Default::default(),
                rate: opts.limit_rate.clone(),
                proxies,
            }),
        })
    }

    pub fn registry(&self) -> &str {
        &self.inner.endpoint.name
    }

    pub(super) fn url(&self, path: &str) -> String {
        let base = self.inner.endpoint.base.as_str().trim_end_matches('/');
        format!("{base}{path}")
    }

    /// Sends a request built by `make` (called again for each attempt) through the retry
    /// loop: an auth challenge is learned once (not counted as an attempt), transient
    /// failures are retried. A response records the attempts it took, for [`Client::fail`].
    pub(super) async fn send(
        &self,
        scopes: &[String],
        repo: &str,
        make: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let reauthed = AtomicBool::new(false);
        let (result, attempts) = retry::run(self.inner.retries, |_| {
            self.send_once(scopes, repo, &make, &reauthed)
        })
        .await;
        match result {
            Ok(mut resp) => {
                resp.extensions_mut().insert(Attempts(attempts));
                Ok(resp)
            }
            Err(e) => Err(e.with_attempts(attempts)),
        }
    }

    /// One attempt of [`Client::send`]: the request, and once per `send` the request again
    /// with the credentials a 401's challenge asked for.
    async fn send_once(
        &self,
        scopes: &[String],
        repo: &str,
        make: &impl Fn(&reqwest::Client) -> RequestBuilder,
        reauthed: &AtomicBool,
    ) -> Outcome<Result<Response, RegistryError>> {
        loop {
            let req = match self.authorize(make(&self.inner.http), scopes, repo).await {
                Ok(req) => req,
                // The token server hiccuped (connection, 429, 5xx): retry like the request.
                Err(e) if e.is_transient() => return Outcome::Retry(Err(e), None),
                Err(e) => return Outcome::Done(Err(e)),
            };
            let resp = match self.execute(req).await {
                Ok(resp) => resp,
                Err(e) => {
                    let err = self.connect_error(&e);
                    return if err.is_transient() {
                        Outcome::Retry(Err(err), None)
                    } else {
                        Outcome::Done(Err(err))
                    };
                }
            };
            if resp.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
                return Outcome::Done(Err(self.proxy_refused(resp).await));
            }
            if resp.status() == StatusCode::UNAUTHORIZED && !reauthed.swap(true, Ordering::Relaxed)
            {
                self.learn_challenge(&resp, scopes);
                continue;
            }
            if is_transient_status(resp.status().as_u16()) {
                let after = retry_after(&resp);
                return Outcome::Retry(Ok(resp), after);
            }
            return Outcome::Done(Ok(resp));
        }
    }

    /// Sends `req`, its body and its answer's paced by `--limit-rate` when one is set.
    pub(super) async fn execute(&self, req: RequestBuilder) -> reqwest::Result<Response> {
        let Some(limit) = &self.inner.rate else {
            return req.send().await;
        };
        let (http, req) = req.build_split();
        let mut req = req?;
        if let Some(body) = req.body_mut().take() {
            *req.body_mut() = Some(limit_body(body, limit));
        }
        Ok(limit_response(http.execute(req).await?, limit))
    }

    /// `body` paced by `--limit-rate` when one is set.
    pub(super) fn paced(&self, body: reqwest::Body) -> reqwest::Body {
        match &self.inner.rate {
            Some(limit) => limit_body(body, limit),
            None => body,
        }
    }

    /// The proxy (password masked) requests to `url` go through, if any.
    pub(super) fn proxy_for(&self, url: &str) -> Option<String> {
        let url = url::Url::parse(url).ok()?;
        self.inner.proxies.for_url(&url).map(masked)
    }

    /// A proxy answered 407 instead of forwarding (plain-HTTP registries: the proxy's own
    /// answer; https ones fail in the tunnel, see `network_error`).
    async fn proxy_refused(&self, resp: Response) -> RegistryError {
        let base = self.inner.endpoint.base.to_string();
        let proxy = self.proxy_for(&base).unwrap_or_else(|| "(unknown)".into());
        let body = resp.text().await.unwrap_or_default();
        RegistryError::ProxyRefused {
            registry: self.registry().to_string(),
            proxy,
            status: 407,
            message: format!("Proxy Authentication Required: {}", body_message(&body)),
        }
    }

    /// A request to the registry that got no answer.
    pub(super) fn connect_error(&self, e: &reqwest::Error) -> RegistryError {
        self.network_error(self.inner.endpoint.base.to_string(), describe(e), e)
    }

    /// A request to `url` (the registry, or its token server) that got no answer: a TLS
    /// failure when one is among the causes, else a connection failure.
    pub(super) fn network_error(
        &self,
        url: String,
        reason: String,
        e: &reqwest::Error,
    ) -> RegistryError {
        let registry = self.registry().to_string();
        let proxy = self.proxy_for(&url);
        if let Some(proxy) = &proxy {
            if reason.contains("proxy authorization required") {
                return RegistryError::ProxyRefused {
                    registry,
                    proxy: proxy.clone(),
                    status: 407,
                    message: reason,
                };
            }
        }
        let url = match proxy {
            Some(p) => format!("{url} through proxy {p}"),
            None => url,
        };
        if is_tls(e) {
            RegistryError::Tls {
                registry,
                url,
                reason,
            }
        } else {
            RegistryError::Connect {
                registry,
                url,
                reason,
                attempts: 1,
            }
        }
    }

    /// Turns a non-success answer into an error naming what was asked (and, when it came
    /// after retries, how many attempts were made).
    pub(super) async fn fail(
        &self,
        resp: Response,
        repo: &str,
        action: &str,
        what: &str,
    ) -> RegistryError {
        let (status, insufficient_scope) = failure_head(&resp);
        let attempts = attempts_of(&resp);
        let body = resp.text().await.unwrap_or_default();
        self.fail_with_body(status, insufficient_scope, &body, repo, action, what)
            .with_attempts(attempts)
    }

    pub(super) fn fail_with_body(
        &self,
        status: StatusCode,
        insufficient_scope: bool,
        body: &str,
        repo: &str,
        action: &str,
        what: &str,
    ) -> RegistryError {
        let message = body_message(body);
        let registry = self.registry().to_string();
        let repository = repo.to_string();
        match status {
            StatusCode::UNAUTHORIZED if insufficient_scope => RegistryError::Denied {
                registry,
                action: action.to_string(),
                status: 401,
                message: format!(
                    "{message} (insufficient_scope: the token issued for these credentials does not allow {action} on {repository})"
                ),
                repository,
            },
            StatusCode::UNAUTHORIZED => RegistryError::Auth {
                registry,
                repository,
                status: 401,
                message,
            },
            StatusCode::FORBIDDEN => RegistryError::Denied {
                registry,
                repository,
                action: action.to_string(),
                status: 403,
                message,
            },
            StatusCode::NOT_FOUND => RegistryError::NotFound {
                registry,
                repository,
                what: what.to_string(),
                message,
            },
            s => RegistryError::Status {
                registry,
                repository,
                action: action.to_string(),
                status: s.as_u16(),
                message,
                attempts: 1,
            },
        }
    }

    /// Checks the registry answers the API at all (and that credentials work, when given).
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let resp = self.send(&[], "", |h| h.get(self.url("/v2/"))).await?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(self.fail(resp, "", "GET /v2/", "the API root").await)
    }

    /// Whether `loc` (a path, or an absolute URL) is on this registry's scheme, host and port.
    pub(super) fn same_origin(&self, loc: &str) -> bool {
        let base = &self.inner.endpoint.base;
        match url::Url::parse(loc) {
            Ok(u) => u.origin() == base.origin(),
            Err(_) => loc.starts_with('/'),
        }
    }

    pub(super) fn resolve_location(&self, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            self.url(loc)
        }
    }
}

/// The status of a failed answer, and whether it is a valid token refused for lack of scope
/// (the credentials work, the permission is missing).
pub(super) fn failure_head(resp: &Response) -> (StatusCode, bool) {
    let status = resp.status();
    let insufficient_scope = status == StatusCode::UNAUTHORIZED
        && resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("insufficient_scope"));
    (status, insufficient_scope)
}

pub(super) fn location(resp: &Response) -> Option<String> {
    resp.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
