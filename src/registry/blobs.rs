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

/// Resumes of one blob allowed per retry of the client (a link that breaks every few
/// megabytes still gets a large layer through; one that never ends does not loop forever).
pub const MAX_RESUMES_PER_RETRY: u32 = 16;

/// The first byte of a 206's `Content-Range: bytes START-END/TOTAL`, when END and TOTAL
/// agree with a blob of `size` bytes (TOTAL may be `*`).
fn content_range_start(resp: &Response, size: u64) -> Option<u64> {
    let v = resp.headers().get(header::CONTENT_RANGE)?.to_str().ok()?;
    parse_content_range(v, size)
}

fn parse_content_range(v: &str, size: u64) -> Option<u64> {
    let (range, total) = v.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    let total_ok = total.trim() == "*" || total.trim().parse::<u64>().ok() == Some(size);
    (start <= end && end < size && total_ok).then_some(start)
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
        self.get_blob_from(repo, digest, 0).await
    }

    /// A blob download from byte `offset` on (`Range: bytes=N-` when not 0). The answer may
    /// be 206 (check its `Content-Range`) or a 200 with the whole blob (a registry ignoring
    /// `Range`).
    async fn get_blob_from(
        &self,
        repo: &str,
        digest: &Digest,
        offset: u64,
    ) -> Result<Response, RegistryError> {
        let scopes = [pull_scope(repo)];
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self
            .send(&scopes, repo, |h| {
                let r = h.get(&url);
                if offset > 0 {
                    r.header(header::RANGE, format!("bytes={offset}-"))
                } else {
                    r
                }
            })
            .await?;
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
    /// chunk. A body cut short is resumed (see [`Client::stream_blob_resume`]).
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
        sink: F,
    ) -> Result<(), RegistryError>
    where
        F: FnMut(Bytes) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<()>>,
    {
        self.stream_blob_resume(repo, digest, size, Hasher::new(), sink)
            .await
    }

    /// Downloads the rest of a blob whose first `had.len()` bytes the caller has already
    /// (hashed into `had`, e.g. from a cache's partial file); `sink` gets only the bytes after
    /// them, each exactly once and in order.
    ///
    /// A body that breaks off (connection reset, timeout, short body) is continued with
    /// `Range: bytes=N-` from the last byte received, keeping the hash state: nothing is
    /// hashed or handed over twice. A 206 must say `bytes N-…/size` in `Content-Range`; a
    /// 200 (a registry ignoring `Range`) has its first N bytes skipped; a wrong
    /// `Content-Range` makes the next attempt a plain GET whose first N bytes are skipped.
    /// Attempts that bring nothing new are bounded by the client's retries (with backoff),
    /// all resumes of one blob by [`MAX_RESUMES_PER_RETRY`] per retry.
    pub async fn stream_blob_resume<F, Fut>(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        mut hasher: Hasher,
        mut sink: F,
    ) -> Result<(), RegistryError>
    where
        F: FnMut(Bytes) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<()>>,
    {
        let what = format!("blob {digest} of {repo}");
        let too_big = |actual: u64| RegistryError::SizeMismatch {
            registry: self.registry().to_string(),
            what: what.clone(),
            expected: size,
            actual,
        };
        if hasher.len() > size {
            return Err(too_big(hasher.len()));
        }
        let retries = self.inner.retries;
        let max_resumes = MAX_RESUMES_PER_RETRY.saturating_mul(retries.saturating_add(1));
        let (mut stalled, mut resumes) = (0u32, 0u32);
        let mut use_range = true;
        while hasher.len() < size {
            let offset = hasher.len();
            let ranged = offset > 0 && use_range;
            let resp = self
                .get_blob_from(repo, digest, if ranged { offset } else { 0 })
                .await?;
            let mut skip = offset;
            if ranged && resp.status() == StatusCode::PARTIAL_CONTENT {
                if content_range_start(&resp, size) == Some(offset) {
                    skip = 0;
                } else {
                    // Not the range asked for: ask for the whole blob and skip what we have.
                    use_range = false;
                    drop(resp);
                    stalled += 1;
                    if stalled > retries {
                        return Err(RegistryError::Protocol {
                            registry: self.registry().to_string(),
                            message: format!(
                                "{what}: the answer to Range: bytes={offset}- is not that range"
                            ),
                        });
                    }
                    continue;
                }
            }
            let mut stream = resp.bytes_stream();
            let mut cut: Option<RegistryError> = None;
            while let Some(chunk) = stream.next().await {
                let mut chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        cut = Some(self.connect_error(&e));
                        break;
                    }
                };
                if skip > 0 {
                    let n = skip.min(chunk.len() as u64);
                    bytes::Buf::advance(&mut chunk, n as usize);
                    skip -= n;
                    if chunk.is_empty() {
                        continue;
                    }
                }
                if hasher.len() + chunk.len() as u64 > size {
                    return Err(too_big(hasher.len() + chunk.len() as u64));
                }
                hasher.update(&chunk);
                sink(chunk).await.map_err(|source| RegistryError::Sink {
                    registry: self.registry().to_string(),
                    what: what.clone(),
                    source,
                })?;
            }
            if hasher.len() == size {
                break;
            }
            // Cut off: a network failure, or a body that ended early.
            let err = cut.unwrap_or_else(|| too_big(hasher.len()));
            if !err.is_transient() && !matches!(err, RegistryError::SizeMismatch { .. }) {
                return Err(err);
            }
            resumes += 1;
            if hasher.len() > offset {
                stalled = 0;
            } else {
                stalled += 1;
                if stalled > retries {
                    return Err(err.with_attempts(stalled));
                }
                tokio::time::sleep(super::retry::backoff(stalled, None)).await;
            }
            if resumes > max_resumes {
                return Err(err.with_attempts(resumes));
            }
        }
        let (actual, n) = hasher.finish();
        if n != size {
            return Err(too_big(n));
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

#[cfg(test)]
mod tests {
    use super::parse_content_range as p;

    #[test]
    fn content_range_must_fit_the_blob() {
        assert_eq!(p("bytes 10-99/100", 100), Some(10));
        assert_eq!(p("bytes 10-99/*", 100), Some(10));
        assert_eq!(p("bytes 10-49/100", 100), Some(10)); // shorter: the rest is asked again
        assert_eq!(p("bytes 10-99/200", 100), None); // another blob's size
        assert_eq!(p("bytes 10-100/101", 100), None);
        assert_eq!(p("bytes 50-10/100", 100), None);
        assert_eq!(p("items 10-99/100", 100), None);
        assert_eq!(p("bytes */100", 100), None);
    }
}
