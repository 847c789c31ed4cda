use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::{header, Method, RequestBuilder, Response, StatusCode};

use super::auth::{basic_header, parse_challenge, Challenge, TokenResponse};
use super::credentials::Credentials;
use super::error::{body_message, describe, unknown_blobs, RegistryError};
use super::{ConnectOptions, Endpoint};
use crate::digest::{Digest, Hasher};
use crate::manifest::{ACCEPT, MAX_MANIFEST_SIZE};

/// A client for one registry endpoint. Cheap to clone; clones share the connection pool and
/// the auth state (so a token fetched by one task serves the others).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    retries: u32,
    auth: Mutex<AuthState>,
    /// The registry answered a mount request from a repository into itself with an error
    /// other than a transient one: `upload_unless_present` asks plainly from then on.
    no_probe: AtomicBool,
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    /// Bearer tokens by scope set.
    tokens: HashMap<String, String>,
}

/// A manifest exactly as served.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

/// What an upload sends: bytes in memory (kept, so a transient failure can be retried) or a
/// stream (sent once).
pub enum BlobBody {
    Memory(Bytes),
    Stream(reqwest::Body),
}

/// What [`Client::upload_unless_present`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Uploaded,
    /// The repository had the blob already; nothing was sent.
    Present,
}

fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}
fn push_scope(repo: &str) -> String {
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
            let pem = std::fs::read(ca).map_err(|e| {
                RegistryError::Setup(format!("cannot read CA file {}: {e}", ca.display()))
            })?;
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
                no_probe: AtomicBool::new(false),
            }),
        })
    }

    pub fn registry(&self) -> &str {
        &self.inner.endpoint.name
    }

    fn url(&self, path: &str) -> String {
        let base = self.inner.endpoint.base.as_str().trim_end_matches('/');
        format!("{base}{path}")
    }

    /// Sends a request built by `make` (called again for each attempt), handling the auth
    /// challenge once and retrying transient failures with backoff.
    async fn send(
        &self,
        scopes: &[String],
        repo: &str,
        make: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut attempt = 0u32;
        let mut reauthed = false;
        loop {
            let req = match self.authorize(make(&self.inner.http), scopes, repo).await {
                Ok(req) => req,
                // The token server hiccuped (connection, 429, 5xx): retry like the request.
                Err(e) if e.is_transient() && attempt < self.inner.retries => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt, None)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match req.send().await {
                Err(e) => {
                    let err = self.connect_error(&e);
                    if attempt < self.inner.retries && !is_tls_error(&e) {
                        attempt += 1;
                        tokio::time::sleep(backoff(attempt, None)).await;
                        continue;
                    }
                    return Err(err);
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !reauthed => {
                    reauthed = true;
                    self.learn_challenge(&resp, scopes);
                    continue;
                }
                Ok(resp) if is_transient_status(resp.status()) && attempt < self.inner.retries => {
                    attempt += 1;
                    let after = retry_after(&resp);
                    tokio::time::sleep(backoff(attempt, after)).await;
                    continue;
                }
                Ok(resp) => return Ok(resp),
            }
        }
    }

    fn connect_error(&self, e: &reqwest::Error) -> RegistryError {
        let mut reason = describe(e);
        if is_tls_error(e) {
            reason.push_str(
                " (TLS problem: pass --ca-file with the registry's CA, or --insecure-skip-tls-verify; for a plain-HTTP registry use --plain-http or an http:// mirror)",
            );
        }
        RegistryError::Connect {
            registry: self.registry().to_string(),
            url: self.inner.endpoint.base.to_string(),
            reason,
        }
    }

    fn learn_challenge(&self, resp: &Response, scopes: &[String]) {
        let challenge = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        let mut st = self.inner.auth.lock().expect("auth lock");
        st.tokens.remove(&scopes.join(" "));
        st.challenge = challenge;
    }

    async fn authorize(
        &self,
        req: RequestBuilder,
        scopes: &[String],
        repo: &str,
    ) -> Result<RequestBuilder, RegistryError> {
        let (challenge, cached) = {
            let st = self.inner.auth.lock().expect("auth lock");
            (
                st.challenge.clone(),
                st.tokens.get(&scopes.join(" ")).cloned(),
            )
        };
        match challenge {
            None => Ok(req),
            Some(Challenge::Basic) => Ok(match &self.inner.credentials {
                Some(c) => req.header(header::AUTHORIZATION, basic_header(c)),
                None => req,
            }),
            Some(Challenge::Bearer { realm, service }) => {
                let token = match cached {
                    Some(t) => t,
                    None => {
                        let t = self
                            .fetch_token(&realm, service.as_deref(), scopes, repo)
                            .await?;
                        self.inner
                            .auth
                            .lock()
                            .expect("auth lock")
                            .tokens
                            .insert(scopes.join(" "), t.clone());
                        t
                    }
                };
                Ok(req.bearer_auth(token))
            }
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        repo: &str,
    ) -> Result<String, RegistryError> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        for s in scopes {
            query.push(("scope", s));
        }
        let mut req = self.inner.http.get(realm).query(&query);
        if let Some(c) = &self.inner.credentials {
            req = req.header(header::AUTHORIZATION, basic_header(c));
        }
        let resp = req.send().await.map_err(|e| RegistryError::Connect {
            registry: self.registry().to_string(),
            url: realm_without_query(realm),
            reason: format!("token server: {}", describe(&e)),
        })?;
        let status = resp.status();
        if is_transient_status(status) {
            let body = resp.text().await.unwrap_or_default();
            return Err(RegistryError::Status {
                registry: self.registry().to_string(),
                repository: repo.to_string(),
                action: format!("a token request to {}", realm_without_query(realm)),
                status: status.as_u16(),
                message: body_message(&body),
            });
        }
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(RegistryError::Auth {
                registry: self.registry().to_string(),
                repository: repo.to_string(),
                status: status.as_u16(),
                message: format!(
                    "the token server at {} refused: {}",
                    realm_without_query(realm),
                    body_message(&body)
                ),
            });
        }
        let tr: TokenResponse = resp.json().await.map_err(|e| RegistryError::Protocol {
            registry: self.registry().to_string(),
            message: format!("token server answered something that is not a token: {e}"),
        })?;
        tr.into_token().ok_or_else(|| RegistryError::Protocol {
            registry: self.registry().to_string(),
            message: "token server answered without a token".into(),
        })
    }

    /// Turns a non-success answer into an error naming what was asked.
    async fn fail(&self, resp: Response, repo: &str, action: &str, what: &str) -> RegistryError {
        let (status, insufficient_scope) = failure_head(&resp);
        let body = resp.text().await.unwrap_or_default();
        self.fail_with_body(status, insufficient_scope, &body, repo, action, what)
    }

    fn fail_with_body(
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

    /// GETs a manifest by tag or digest, exactly as served, checking its digest and size.
    pub async fn get_manifest(
        &self,
        repo: &str,
        selector: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let scopes = [pull_scope(repo)];
        let url = self.url(&format!("/v2/{repo}/manifests/{selector}"));
        let resp = self
            .send(&scopes, repo, |h| {
                h.get(&url).header(header::ACCEPT, ACCEPT)
            })
            .await?;
        let what = format!("manifest {repo}:{selector}");
        if !resp.status().is_success() {
            return Err(self.fail(resp, repo, "GET manifest", &what).await);
        }
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let served_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| Digest::parse(s.trim()).ok());
        if resp.content_length().unwrap_or(0) > MAX_MANIFEST_SIZE {
            return Err(RegistryError::ManifestTooLarge {
                registry: self.registry().to_string(),
                what,
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.connect_error(&e))?;
            if body.len() as u64 + chunk.len() as u64 > MAX_MANIFEST_SIZE {
                return Err(RegistryError::ManifestTooLarge {
                    registry: self.registry().to_string(),
                    what,
                    limit: MAX_MANIFEST_SIZE,
                });
            }
            body.extend_from_slice(&chunk);
        }
        let digest = Digest::of(&body);
        let expected = Digest::parse(selector).ok().or(served_digest);
        if let Some(expected) = expected {
            if expected != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: self.registry().to_string(),
                    what,
                    expected,
                    actual: digest,
                });
            }
        }
        Ok(FetchedManifest {
            bytes: Bytes::from(body),
            media_type,
            digest,
        })
    }

    /// Starts a blob download; the caller streams the body and must verify it (see
    /// `stream_blob`).
    pub async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<Response, RegistryError> {
        let scopes = [pull_scope(repo)];
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self.send(&scopes, repo, |h| h.get(&url)).await?;
        if !resp.status().is_success() {
            return Err(self
                .fail(resp, repo, "GET blob", &format!("blob {digest}"))
                .await);
        }
        Ok(resp)
    }

    /// Downloads a blob, handing each chunk to `sink`; fails when the content does not match
    /// `digest` and `size` (the last chunk is handed over before the digest is known, so the
    /// caller must treat its output as unverified until this returns Ok). Memory use is one
    /// chunk.
    pub async fn stream_blob<F>(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        mut sink: F,
    ) -> Result<(), RegistryError>
    where
        F: FnMut(&[u8]) -> std::io::Result<()>,
    {
        self.stream_blob_async(repo, digest, size, |chunk| {
            let r = sink(&chunk);
            async move { r }
        })
        .await
    }

    /// Like `stream_blob`, with a sink that may wait (e.g. for room in a bounded channel).
    pub async fn stream_blob_async<F, Fut>(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        mut sink: F,
    ) -> Result<(), RegistryError>
    where
        F: FnMut(Bytes) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<()>>,
    {
        let resp = self.get_blob(repo, digest).await?;
        let mut hasher = Hasher::new();
        let mut stream = resp.bytes_stream();
        let what = format!("blob {digest} of {repo}");
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.connect_error(&e))?;
            if hasher.len() + chunk.len() as u64 > size {
                return Err(RegistryError::SizeMismatch {
                    registry: self.registry().to_string(),
                    what,
                    expected: size,
                    actual: hasher.len() + chunk.len() as u64,
                });
            }
            hasher.update(&chunk);
            sink(chunk).await?;
        }
        let (actual, n) = hasher.finish();
        if n != size {
            return Err(RegistryError::SizeMismatch {
                registry: self.registry().to_string(),
                what,
                expected: size,
                actual: n,
            });
        }
        if &actual != digest {
            return Err(RegistryError::DigestMismatch {
                registry: self.registry().to_string(),
                what,
                expected: digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// The repositories the registry's catalog lists, following its pages, or `None` when
    /// the catalog gives no answer to rely on: no catalog API, not allowed for these
    /// credentials, not JSON, or more than `max_pages` pages. Only a refused connection is
    /// an error. Callers use it to know a repository is absent without asking about each
    /// image in it; a repository the catalog leaves out is only asked about less, never lost.
    pub async fn list_repositories(
        &self,
        max_pages: usize,
    ) -> Result<Option<HashSet<String>>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Page {
            repositories: Option<Vec<String>>,
        }
        let scopes = ["registry:catalog:*".to_string()];
        // No `n`: distribution answers 400 to an `n` above its configured maximum; without
        // it, each page is that maximum and a Link header names the next.
        let mut url = self.url("/v2/_catalog");
        let mut repos = HashSet::new();
        for _ in 0..max_pages {
            let resp = match self.send(&scopes, "", |h| h.get(&url)).await {
                Ok(r) => r,
                Err(e @ RegistryError::Connect { .. }) => return Err(e),
                Err(_) => return Ok(None),
            };
            if !resp.status().is_success() {
                return Ok(None);
            }
            let next = resp
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let Ok(page) = resp.json::<Page>().await else {
                return Ok(None);
            };
            let Some(names) = page.repositories else {
                return Ok(None);
            };
            repos.extend(names);
            match next {
                None => return Ok(Some(repos)),
                // Credentials go only where they went for the first page.
                Some(n) if self.same_origin(&n) => url = self.resolve_location(&n),
                Some(_) => return Ok(None),
            }
        }
        Ok(None)
    }

    /// HEAD on a blob: does `repo` already have it?
    pub async fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let scopes = [push_scope(repo)];
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self.send(&scopes, repo, |h| h.head(&url)).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self
                .fail(resp, repo, "HEAD blob", &format!("blob {digest}"))
                .await),
        }
    }

    /// HEAD on a manifest: the digest `reference` (tag or digest) points at, if any.
    pub async fn manifest_digest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        let scopes = [push_scope(repo)];
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send(&scopes, repo, |h| {
                h.head(&url).header(header::ACCEPT, ACCEPT)
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|s| Digest::parse(s.trim()).ok())
                .or_else(|| Digest::parse(reference).ok())),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self
                .fail(
                    resp,
                    repo,
                    "HEAD manifest",
                    &format!("manifest {reference}"),
                )
                .await),
        }
    }

    /// Asks the registry to mount `digest` from repository `from` into `repo`. Returns false
    /// when the registry would rather have an upload (it may not have the source, or refuse
    /// mounts); the caller then uploads.
    pub async fn mount_blob(
        &self,
        repo: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<bool, RegistryError> {
        let scopes = [push_scope(repo), pull_scope(from)];
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self
            .send(&scopes, repo, |h| {
                h.post(&url)
                    .query(&[("mount", digest.as_str()), ("from", from)])
                    .header(header::CONTENT_LENGTH, 0)
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            // 202: an upload session was opened instead; abandon it (it expires).
            StatusCode::ACCEPTED => {
                if let Some(loc) = location(&resp) {
                    let url = self.resolve_location(&loc);
                    let _ = self.send(&scopes, repo, |h| h.delete(&url)).await;
                }
                Ok(false)
            }
            s if s.is_client_error()
                && s != StatusCode::UNAUTHORIZED
                && s != StatusCode::FORBIDDEN =>
            {
                let _ = resp.bytes().await;
                Ok(false)
            }
            _ => Err(self
                .fail(resp, repo, "mount blob", &format!("blob {digest}"))
                .await),
        }
    }

    /// Uploads a blob in one monolithic PUT whose body streams from `body`. The registry
    /// verifies the digest itself, so a corrupt stream can never land under `digest`.
    ///
    /// A transient failure (connection, 429, 5xx) of an in-memory body is retried with a new
    /// upload session; a streamed body can be sent only once, so its failure is final.
    pub async fn upload_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: BlobBody,
    ) -> Result<(), RegistryError> {
        self.upload(repo, digest, size, body, false)
            .await
            .map(|_| ())
    }

    /// Like [`Client::upload_blob`], but the POST that opens the upload session also asks
    /// the registry to mount `digest` from `repo` into `repo`: a registry that has the blob
    /// there answers 201, nothing is sent, and the result is [`Pushed::Present`]. This
    /// replaces a HEAD before the upload. A registry that answers the mount request with an
    /// error is asked plainly, then (and from then on, unless the error was transient).
    pub async fn upload_unless_present(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: BlobBody,
    ) -> Result<Pushed, RegistryError> {
        self.upload(repo, digest, size, body, true).await
    }

    async fn upload(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: BlobBody,
        probe: bool,
    ) -> Result<Pushed, RegistryError> {
        let (replay, mut stream) = match body {
            BlobBody::Memory(b) => (Some(b), None),
            BlobBody::Stream(s) => (None, Some(s)),
        };
        let mut attempt = 0u32;
        loop {
            let this = match (stream.take(), &replay) {
                (Some(s), _) => s,
                (None, Some(bytes)) => reqwest::Body::from(bytes.clone()),
                (None, None) => unreachable!("a streamed body is never retried"),
            };
            match self.upload_once(repo, digest, size, this, probe).await {
                Err(e) if e.is_transient() && replay.is_some() && attempt < self.inner.retries => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt, None)).await;
                }
                r => return r,
            }
        }
    }

    async fn upload_once(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: reqwest::Body,
        probe: bool,
    ) -> Result<Pushed, RegistryError> {
        let scopes = [push_scope(repo)];
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let plain = |h: &reqwest::Client| h.post(&url).header(header::CONTENT_LENGTH, 0);
        let probe = probe && !self.inner.no_probe.load(Ordering::Relaxed);
        let mut resp = if probe {
            self.send(&scopes, repo, |h| {
                plain(h).query(&[("mount", digest.as_str()), ("from", repo)])
            })
            .await?
        } else {
            self.send(&scopes, repo, plain).await?
        };
        if probe {
            match resp.status() {
                StatusCode::CREATED => return Ok(Pushed::Present),
                StatusCode::ACCEPTED => {}
                s => {
                    // A registry that does not take this request is asked plainly from now
                    // on; one that is only busy (429, 5xx left after the retries) just this
                    // once.
                    if !is_transient_status(s) {
                        self.inner.no_probe.store(true, Ordering::Relaxed);
                    }
                    // Read to the end so the connection can be reused.
                    let _ = resp.bytes().await;
                    resp = self.send(&scopes, repo, plain).await?;
                }
            }
        }
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self
                .fail(resp, repo, "start upload", &format!("blob {digest}"))
                .await);
        }
        let loc = location(&resp).ok_or_else(|| RegistryError::Protocol {
            registry: self.registry().to_string(),
            message: format!("upload of {digest} to {repo}: no Location header"),
        })?;
        let mut put_url =
            url::Url::parse(&self.resolve_location(&loc)).map_err(|e| RegistryError::Protocol {
                registry: self.registry().to_string(),
                message: format!("upload of {digest} to {repo}: bad Location: {e}"),
            })?;
        put_url
            .query_pairs_mut()
            .append_pair("digest", digest.as_str());
        // Not retried here (a streamed body can be sent only once; `upload_blob` restarts
        // in-memory ones); auth was settled by the POST above.
        let req = self
            .authorize(
                self.inner
                    .http
                    .request(Method::PUT, put_url)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, size)
                    .body(body),
                &scopes,
                repo,
            )
            .await?;
        let resp = req.send().await.map_err(|e| self.connect_error(&e))?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(self
                .fail(resp, repo, "upload blob", &format!("blob {digest}"))
                .await);
        }
        Ok(Pushed::Uploaded)
    }

    /// PUTs manifest bytes unchanged under `reference` (a tag or its digest).
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &Bytes,
    ) -> Result<(), RegistryError> {
        let scopes = [push_scope(repo)];
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send(&scopes, repo, |h| {
                h.put(&url)
                    .header(header::CONTENT_TYPE, media_type)
                    .body(bytes.clone())
            })
            .await?;
        if !resp.status().is_success() {
            let (status, insufficient_scope) = failure_head(&resp);
            let body = resp.text().await.unwrap_or_default();
            let missing = unknown_blobs(&body);
            if !missing.is_empty() {
                return Err(RegistryError::ManifestBlobUnknown {
                    registry: self.registry().to_string(),
                    repository: repo.to_string(),
                    reference: reference.to_string(),
                    missing,
                    status: status.as_u16(),
                    message: body_message(&body),
                });
            }
            return Err(self.fail_with_body(
                status,
                insufficient_scope,
                &body,
                repo,
                "push manifest",
                &format!("manifest {reference}"),
            ));
        }
        if let Some(d) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| Digest::parse(s.trim()).ok())
        {
            let ours = Digest::of(bytes);
            if d != ours {
                return Err(RegistryError::DigestMismatch {
                    registry: self.registry().to_string(),
                    what: format!("manifest {repo}:{reference} as stored"),
                    expected: ours,
                    actual: d,
                });
            }
        }
        Ok(())
    }

    /// Whether `loc` (a path, or an absolute URL) is on this registry's scheme, host and port.
    fn same_origin(&self, loc: &str) -> bool {
        let base = &self.inner.endpoint.base;
        match url::Url::parse(loc) {
            Ok(u) => u.origin() == base.origin(),
            Err(_) => loc.starts_with('/'),
        }
    }

    fn resolve_location(&self, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            self.url(loc)
        }
    }
}

/// The status of a failed answer, and whether it is a valid token refused for lack of scope
/// (the credentials work, the permission is missing).
fn failure_head(resp: &Response) -> (StatusCode, bool) {
    let status = resp.status();
    let insufficient_scope = status == StatusCode::UNAUTHORIZED
        && resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("insufficient_scope"));
    (status, insufficient_scope)
}

fn location(resp: &Response) -> Option<String> {
    resp.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The target of the `rel="next"` entry of a Link header (RFC 8288), as the catalog and tag
/// list pages name their successor: `</v2/_catalog?last=b&n=2>; rel="next"`.
fn next_link(v: &str) -> Option<String> {
    v.split(',').find_map(|entry| {
        let (target, params) = entry.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params.split(';').any(|p| {
            p.trim()
                .split_once('=')
                .is_some_and(|(k, v)| k.trim() == "rel" && v.trim().trim_matches('"') == "next")
        });
        is_next.then(|| target.to_string())
    })
}

fn realm_without_query(realm: &str) -> String {
    realm.split('?').next().unwrap_or(realm).to_string()
}

fn is_transient_status(s: StatusCode) -> bool {
    matches!(s.as_u16(), 429 | 500 | 502 | 503 | 504)
}

fn is_tls_error(e: &reqwest::Error) -> bool {
    let text = describe(e).to_ascii_lowercase();
    text.contains("certificate") || text.contains("tls") || text.contains("handshake")
}

fn retry_after(resp: &Response) -> Option<Duration> {
    resp.headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(60)))
}

/// Exponential backoff with jitter: 200 ms, 400 ms, 800 ms … capped at 10 s, or the
/// server's `Retry-After`.
pub(crate) fn backoff(attempt: u32, server: Option<Duration>) -> Duration {
    if let Some(d) = server {
        return d;
    }
    let base = 200u64.saturating_mul(1 << attempt.min(6)).min(10_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    Duration::from_millis(base / 2 + nanos % (base / 2 + 1))
}

#[cfg(test)]
mod tests {
    use super::next_link;

    #[test]
    fn the_next_page_is_read_from_the_link_header() {
        let next = |v| next_link(v).as_deref().map(str::to_string);
        assert_eq!(
            next(r#"</v2/_catalog?last=b%2Fy&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b%2Fy&n=2")
        );
        assert_eq!(
            next(r#"<https://r.example/v2/_catalog?last=x>; rel=next"#).as_deref(),
            Some("https://r.example/v2/_catalog?last=x")
        );
        // Other relations, and several entries in one header.
        assert_eq!(next(r#"</a>; rel="prev""#), None);
        assert_eq!(
            next(r#"</a>; rel="prev", </b>; title="x"; rel="next""#).as_deref(),
            Some("/b")
        );
        assert_eq!(next("garbage"), None);
        assert_eq!(next(""), None);
    }
}
