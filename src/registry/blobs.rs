//! Blobs: downloads (verified as they stream), HEAD, cross-repository mounts and uploads.

use bytes::Bytes;
use futures::StreamExt;
use reqwest::{header, Response, StatusCode};

use super::client::{location, pull_scope, push_scope, Client};
use super::error::RegistryError;
use crate::digest::{Digest, Hasher};

/// What an upload sends: bytes in memory (kept, so a transient failure can be retried), a
/// source that reads any range again (a blob in the bundle: retried, resumed and re-sent in
/// chunks without being held in memory), or a stream (sent once).
pub enum BlobBody {
    Memory(Bytes),
    Reread(std::sync::Arc<dyn super::upload::Reread>),
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
}
