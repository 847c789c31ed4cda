//! Manifests: GET (verified against the digest asked for or served), HEAD, PUT.

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header;
use reqwest::StatusCode;

use std::sync::atomic::Ordering;

use super::client::{
    failure_head, pull_scope, push_scope, Client, HEAD_TRUSTED, HEAD_UNKNOWN, HEAD_UNTRUSTED,
};
use super::error::{body_message, unknown_blobs, RegistryError};
use crate::digest::Digest;
use crate::manifest::{ACCEPT, MAX_MANIFEST_SIZE};

/// A manifest exactly as served.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

impl Client {
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

    /// HEAD on a manifest: the digest `reference` (tag or digest) points at, if any.
    /// Registries whose HEAD differs from their GET are asked again with GET: a tag's HEAD
    /// without `Docker-Content-Digest` each time; a HEAD answering 404 (or refusing HEAD)
    /// until a GET has once confirmed a 404, and always once a GET found what a HEAD did not.
    pub async fn manifest_digest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        if self.inner.head_404.load(Ordering::Relaxed) == HEAD_UNTRUSTED {
            return self.manifest_digest_by_get(repo, reference).await;
        }
        let scopes = [push_scope(repo)];
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send(&scopes, repo, |h| {
                h.head(&url).header(header::ACCEPT, ACCEPT)
            })
            .await?;
        match resp.status() {
            s if s.is_success() => {
                let named = resp
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| Digest::parse(s.trim()).ok())
                    .or_else(|| Digest::parse(reference).ok());
                match named {
                    Some(d) => Ok(Some(d)),
                    None => self.manifest_digest_by_get(repo, reference).await,
                }
            }
            StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::NOT_IMPLEMENTED => {
                if self.inner.head_404.load(Ordering::Relaxed) == HEAD_TRUSTED
                    && resp.status() == StatusCode::NOT_FOUND
                {
                    return Ok(None);
                }
                let got = self.manifest_digest_by_get(repo, reference).await?;
                if got.is_some() {
                    self.inner.head_404.store(HEAD_UNTRUSTED, Ordering::Relaxed);
                } else {
                    // Only the first verdict counts: an untrusted HEAD stays untrusted.
                    let _ = self.inner.head_404.compare_exchange(
                        HEAD_UNKNOWN,
                        HEAD_TRUSTED,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                Ok(got)
            }
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

    /// The digest of the manifest `reference` names, read whole with GET (and verified);
    /// `None` on 404.
    async fn manifest_digest_by_get(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        match self.get_manifest(repo, reference).await {
            Ok(m) => Ok(Some(m.digest)),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
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
}
