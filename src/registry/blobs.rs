//! Blobs: downloads (verified as they stream), HEAD, cross-repository mounts and uploads.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::{header, Method, Response, StatusCode};

use super::client::{location, pull_scope, push_scope, Client};
use super::error::RegistryError;
use super::retry::{self, is_transient_status, Outcome};
use crate::digest::{Digest, Hasher};

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

impl Client {
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
            sink(chunk).await.map_err(|source| RegistryError::Sink {
                registry: self.registry().to_string(),
                what: what.clone(),
                source,
            })?;
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

    /// Uploads through [`Client::upload_once`]; an in-memory body gets a new upload session
    /// for each transient failure (through the retry loop), a stream is sent once.
    async fn upload(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: BlobBody,
        probe: bool,
    ) -> Result<Pushed, RegistryError> {
        let bytes = match body {
            BlobBody::Stream(s) => return self.upload_once(repo, digest, size, s, probe).await,
            BlobBody::Memory(b) => b,
        };
        let bytes = &bytes;
        let (result, attempts) = retry::run(self.inner.retries, move |_| async move {
            let body = reqwest::Body::from(bytes.clone());
            match self.upload_once(repo, digest, size, body, probe).await {
                Err(e) if e.is_transient() => Outcome::Retry(Err(e), None),
                r => Outcome::Done(r),
            }
        })
        .await;
        // The POST inside each session is retried on its own; the error says the larger
        // count (sessions, or attempts of the request that failed).
        result.map_err(|e| e.with_attempts(attempts))
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
                    if !is_transient_status(s.as_u16()) {
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
        // Not retried here (a streamed body can be sent only once; `upload` restarts
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
}
