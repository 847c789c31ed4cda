//! The OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`), followed page by page.

use reqwest::{header, StatusCode};

use super::catalog::next_link;
use super::client::{pull_scope, Client};
use super::error::RegistryError;
use crate::digest::Digest;
use crate::manifest::MAX_MANIFEST_SIZE;

/// Pages of a referrers answer followed at most (each lists many referrers).
const MAX_PAGES: usize = 16;

impl Client {
    /// The descriptors the referrers API lists for `subject` in `repo`, or `None` when the
    /// registry has no such API (distribution 2.8 answers 404 to the unknown route; others
    /// 400, 405 or 501): the caller then reads the referrers tag schema.
    pub async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
    ) -> Result<Option<Vec<serde_json::Value>>, RegistryError> {
        let scopes = [pull_scope(repo)];
        let mut url = self.url(&format!("/v2/{repo}/referrers/{subject}"));
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let resp = self
                .send(&scopes, repo, |h| {
                    h.get(&url)
                        .header(header::ACCEPT, crate::manifest::OCI_INDEX)
                })
                .await?;
            match resp.status() {
                s if s.is_success() => {}
                StatusCode::NOT_FOUND
                | StatusCode::BAD_REQUEST
                | StatusCode::METHOD_NOT_ALLOWED
                | StatusCode::NOT_IMPLEMENTED => return Ok(None),
                _ => {
                    let what = format!("the referrers of {subject}");
                    return Err(self.fail(resp, repo, "GET referrers", &what).await);
                }
            }
            let next = resp
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let body = resp.bytes().await.map_err(|e| self.connect_error(&e))?;
            if body.len() as u64 > MAX_MANIFEST_SIZE {
                return Err(RegistryError::ManifestTooLarge {
                    registry: self.registry().to_string(),
                    what: format!("the referrers index of {repo}@{subject}"),
                    limit: MAX_MANIFEST_SIZE,
                });
            }
            // An answer that is no index is no referrers API either (a proxy's HTML page).
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
                return Ok(None);
            };
            let Some(list) = v.get("manifests").and_then(|m| m.as_array()) else {
                return Ok(None);
            };
            out.extend(list.iter().cloned());
            match next {
                Some(n) if self.same_origin(&n) => url = self.resolve_location(&n),
                _ => return Ok(Some(out)),
            }
        }
        Ok(Some(out))
    }
}

/// What a manifest HEAD told: enough to GET the manifest by digest and check it.
#[derive(Debug, Clone)]
pub struct ManifestHead {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

impl Client {
    /// HEAD on a manifest by tag, with pull rights only (`manifest_digest` asks for push):
    /// `None` on 404. A HEAD does not count as a pull where registries meter pulls (Docker
    /// Hub counts manifest GETs), and most images have no signature tags to GET. Answers
    /// without digest or length, and registries whose HEAD is known to differ from their
    /// GET, are asked with GET instead (`Ok(None)` from the HEAD then means GET said 404).
    pub async fn head_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        let by_get = || async {
            match self.get_manifest(repo, reference).await {
                Ok(m) => Ok(Some(ManifestHead {
                    size: m.bytes.len() as u64,
                    digest: m.digest,
                    media_type: m.media_type,
                })),
                Err(RegistryError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        };
        if self
            .inner
            .head_404
            .load(std::sync::atomic::Ordering::Relaxed)
            == super::client::HEAD_UNTRUSTED
        {
            return by_get().await;
        }
        let scopes = [pull_scope(repo)];
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send(&scopes, repo, |h| {
                h.head(&url).header(header::ACCEPT, crate::manifest::ACCEPT)
            })
            .await?;
        match resp.status() {
            s if s.is_success() => {
                let h = |n: header::HeaderName| {
                    resp.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let digest = h(header::HeaderName::from_static("docker-content-digest"))
                    .and_then(|s| Digest::parse(s.trim()).ok());
                let size = h(header::CONTENT_LENGTH).and_then(|s| s.trim().parse().ok());
                let media_type = h(header::CONTENT_TYPE)
                    .map(|s| s.split(';').next().unwrap_or("").trim().to_string())
                    .unwrap_or_default();
                match (digest, size) {
                    (Some(digest), Some(size)) if size > 0 => Ok(Some(ManifestHead {
                        digest,
                        size,
                        media_type,
                    })),
                    _ => by_get().await,
                }
            }
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => by_get().await,
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
}
