//! Blob uploads: the monolithic flow (`POST`, one `PUT` with the whole blob) and the chunked
//! one (`POST`, `PATCH`es with `Content-Range`, an empty `PUT ?digest=`), chosen per
//! registry: monolithic until the registry refuses it (or `--chunk-size` asks for chunks),
//! chunked from then on. Chunks are streamed from a [`Reread`] source, never buffered, so a
//! chunk lost to a reset is read again from the bundle and the upload resumes at the offset
//! the registry reports for the session.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::{header, Method, Response, StatusCode};

use super::blobs::{BlobBody, Pushed};
use super::client::{failure_head, location, push_scope, Client};
use super::error::{body_message, RegistryError};
use super::retry::{self, attempts_of, backoff, is_transient_status, retry_after, Outcome};
use crate::digest::Digest;

/// A blob that can be read again, any range of it, as often as needed.
pub trait Reread: Send + Sync {
    /// A body streaming bytes `[start, start + len)` of the blob, read afresh on each call.
    fn range(&self, start: u64, len: u64) -> reqwest::Body;
}

/// PATCH size once a registry has refused a monolithic upload and no `--chunk-size` was
/// given: few requests for big layers (160 for 10 GiB), under the body caps ingresses
/// commonly set (Harbor's nginx has none, cloud balancers allow ≥ 1 GiB), and a chunk lost
/// to a reset costs at most this much again. A 413 to a PATCH halves it (see `MIN_CHUNK`).
pub const DEFAULT_CHUNK: u64 = 64 << 20;
/// The smallest chunk a 413 halves down to: nginx's default `client_max_body_size` (1m).
pub const MIN_CHUNK: u64 = 1 << 20;

/// A body the upload can send again: in memory, or read again from its source.
enum Again {
    Memory(Bytes),
    Reread(Arc<dyn Reread>),
}

impl Again {
    fn range(&self, start: u64, len: u64) -> reqwest::Body {
        match self {
            Again::Memory(b) => {
                reqwest::Body::from(b.slice(start as usize..(start + len) as usize))
            }
            Again::Reread(r) => r.range(start, len),
        }
    }
}

/// An open upload session.
struct Session {
    /// Absolute URL of the session (the last `Location` the registry gave).
    url: String,
    /// `OCI-Chunk-Min-Length`: the registry's smallest acceptable PATCH (but the last).
    min_chunk: u64,
}

/// Why one upload attempt failed.
enum Failed {
    /// The monolithic PUT was refused the way registries refuse that flow.
    Monolithic(RegistryError),
    /// The session is gone (or never worked): a new one may succeed.
    Restart(RegistryError),
    Other(RegistryError),
}

impl Failed {
    fn into_inner(self) -> RegistryError {
        match self {
            Failed::Monolithic(e) | Failed::Restart(e) | Failed::Other(e) => e,
        }
    }
}

impl Client {
    /// Uploads a blob (monolithic, or chunked for a registry that wants that). The registry
    /// verifies the digest itself, so a corrupt body can never land under `digest`.
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

    /// Uploads `digest` to `repo`: by PUT, or in chunks when this registry wants that. A
    /// re-readable body (memory, [`Reread`]) gets a new session per transient failure and is
    /// re-sent in chunks after a refused PUT; a stream is sent once.
    async fn upload(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: BlobBody,
        probe: bool,
    ) -> Result<Pushed, RegistryError> {
        let again = match body {
            BlobBody::Stream(s) => {
                return self
                    .upload_stream(repo, digest, size, s, probe)
                    .await
                    .map_err(|f| self.refused(f, repo, digest));
            }
            BlobBody::Memory(b) => Again::Memory(b),
            BlobBody::Reread(r) => Again::Reread(r),
        };
        let again = &again;
        let mut round = 0;
        loop {
            round += 1;
            let (result, attempts) = retry::run(self.inner.retries, move |_| async move {
                match self.upload_once(repo, digest, size, again, probe).await {
                    Err(Failed::Restart(e)) => Outcome::Retry(Err(Failed::Restart(e)), None),
                    // A 500 to the PUT is how registries that implement only chunks refuse
                    // it: chunks at once (retrying the PUT cost 4x the time in the interop
                    // benchmark); a busy one (429, 502-504) is asked again the same way.
                    Err(Failed::Monolithic(e)) if e.is_transient() && !is_status(&e, 500) => {
                        Outcome::Retry(Err(Failed::Monolithic(e)), None)
                    }
                    Err(Failed::Other(e)) if e.is_transient() => {
                        Outcome::Retry(Err(Failed::Other(e)), None)
                    }
                    r => Outcome::Done(r),
                }
            })
            .await;
            match result {
                // Once: the next round is chunked.
                Err(Failed::Monolithic(e)) if round == 1 => self.fall_back(repo, digest, &e),
                // The POST inside each session is retried on its own; the error says the
                // larger count (sessions, or attempts of the request that failed).
                r => return r.map_err(|e| e.into_inner().with_attempts(attempts)),
            }
        }
    }

    /// Whether this registry gets chunked uploads.
    fn chunked(&self) -> bool {
        self.inner.chunked.load(Ordering::Relaxed)
    }

    fn chunk_size(&self) -> u64 {
        match self.inner.chunk_size.load(Ordering::Relaxed) {
            0 => DEFAULT_CHUNK,
            n => n,
        }
    }

    /// Uploads are chunked from the start, in PATCHes of at most `size` bytes
    /// (`--chunk-size`); `None` keeps the monolithic flow until a registry refuses it.
    pub fn set_chunk_size(&self, size: Option<u64>) {
        if let Some(n) = size {
            self.inner.chunk_size.store(n.max(1), Ordering::Relaxed);
            self.inner.chunked.store(true, Ordering::Relaxed);
        }
    }

    /// The line saying this registry refused a monolithic upload and gets chunks from now
    /// on: given once, to the first caller after it happened.
    pub fn take_notice(&self) -> Option<String> {
        self.inner.notice.lock().expect("notice lock").take()
    }

    fn fall_back(&self, repo: &str, digest: &Digest, e: &RegistryError) {
        if !self.inner.chunked.swap(true, Ordering::Relaxed) {
            *self.inner.notice.lock().expect("notice lock") = Some(format!(
                "registry {} refused a monolithic upload (blob {digest} to {repo}: {e}); uploading in chunks of {} from now on",
                self.registry(),
                crate::progress::human_bytes(self.chunk_size())
            ));
        }
    }

    /// A stream cannot be re-sent: a refused PUT still switches the registry to chunks (for
    /// the next blobs) and fails this one.
    fn refused(&self, f: Failed, repo: &str, digest: &Digest) -> RegistryError {
        if let Failed::Monolithic(e) = &f {
            self.fall_back(repo, digest, e);
        }
        f.into_inner()
    }

    async fn upload_once(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: &Again,
        probe: bool,
    ) -> Result<Pushed, Failed> {
        let chunked = self.chunked();
        let session = match self.open_session(repo, digest, probe).await {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(Pushed::Present),
            Err(e) => return Err(Failed::Other(e)),
        };
        if chunked {
            self.send_chunks(repo, digest, size, session, body).await?;
        } else {
            self.put_whole(repo, digest, size, &session, body.range(0, size))
                .await?;
        }
        Ok(Pushed::Uploaded)
    }

    async fn upload_stream(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: reqwest::Body,
        probe: bool,
    ) -> Result<Pushed, Failed> {
        let chunked = self.chunked();
        let Some(mut session) = self
            .open_session(repo, digest, probe)
            .await
            .map_err(Failed::Other)?
        else {
            return Ok(Pushed::Present);
        };
        if !chunked {
            self.put_whole(repo, digest, size, &session, body).await?;
            return Ok(Pushed::Uploaded);
        }
        // One PATCH: a stream cannot be split and re-read (bundles without a seek table).
        let resp = self
            .send_body(repo, digest, Method::PATCH, &session.url, 0, size, body)
            .await
            .map_err(Failed::Other)?;
        if !resp.status().is_success() {
            return Err(Failed::Other(self.upload_fail(resp, repo, digest).await));
        }
        if let Some(loc) = location(&resp) {
            session.url = self.resolve_location(&loc);
        }
        self.finish(repo, digest, &session.url)
            .await
            .map_err(Failed::Other)?;
        Ok(Pushed::Uploaded)
    }

    /// The POST opening a session, asking first for a mount from `repo` itself with
    /// `probe`: `None` when the registry has the blob there already.
    async fn open_session(
        &self,
        repo: &str,
        digest: &Digest,
        probe: bool,
    ) -> Result<Option<Session>, RegistryError> {
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
                StatusCode::CREATED => return Ok(None),
                StatusCode::ACCEPTED => {}
                s => {
                    // Read to the end (the connection can be reused). The repository is
                    // missing: asking again plainly would say the same.
                    let body = resp.text().await.unwrap_or_default();
                    if super::error::repository_missing(s.as_u16(), &body, false) {
                        return Err(self.missing(repo, s, &body));
                    }
                    // A registry that does not take this request is asked plainly from now
                    // on; one that is only busy (429, 5xx left after the retries) just this
                    // once.
                    if !is_transient_status(s.as_u16()) {
                        self.inner.no_probe.store(true, Ordering::Relaxed);
                    }
                    resp = self.send(&scopes, repo, plain).await?;
                }
            }
        }
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.start_fail(resp, repo, digest).await);
        }
        let loc = location(&resp).ok_or_else(|| RegistryError::Protocol {
            registry: self.registry().to_string(),
            message: format!("upload of {digest} to {repo}: no Location header"),
        })?;
        let min_chunk = resp
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Ok(Some(Session {
            url: self.resolve_location(&loc),
            min_chunk,
        }))
    }

    /// A refused POST: a repository (Harbor project, ECR repository, GitLab group) that must
    /// be created first is told apart from other refusals.
    async fn start_fail(&self, resp: Response, repo: &str, digest: &Digest) -> RegistryError {
        let (status, scope) = failure_head(&resp);
        let attempts = attempts_of(&resp);
        let body = resp.text().await.unwrap_or_default();
        if super::error::repository_missing(status.as_u16(), &body, true) {
            return self.missing(repo, status, &body);
        }
        let what = format!("blob {digest}");
        self.fail_with_body(status, scope, &body, repo, "start upload", &what)
            .with_attempts(attempts)
    }

    fn missing(&self, repo: &str, status: StatusCode, body: &str) -> RegistryError {
        RegistryError::RepositoryMissing {
            registry: self.registry().to_string(),
            repository: repo.to_string(),
            status: status.as_u16(),
            message: body_message(body),
        }
    }

    async fn upload_fail(&self, resp: Response, repo: &str, digest: &Digest) -> RegistryError {
        self.fail(resp, repo, "upload blob", &format!("blob {digest}"))
            .await
    }

    /// The monolithic PUT. Not retried here (`upload` opens a new session for that).
    async fn put_whole(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        session: &Session,
        body: reqwest::Body,
    ) -> Result<(), Failed> {
        let url = with_digest(&session.url, digest).map_err(|m| Failed::Other(self.protocol(m)))?;
        let resp = match self
            .send_body(repo, digest, Method::PUT, &url, 0, size, body)
            .await
        {
            Ok(r) => r,
            Err(e @ RegistryError::BodyCut { .. }) => return Err(Failed::Monolithic(e)),
            Err(e) => return Err(Failed::Other(e)),
        };
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status().as_u16();
        let (st, scope) = failure_head(&resp);
        let text = resp.text().await.unwrap_or_default();
        let e = self.fail_with_body(
            st,
            scope,
            &text,
            repo,
            "upload blob",
            &format!("blob {digest}"),
        );
        Err(if refuses_monolithic(status, &text) {
            Failed::Monolithic(e)
        } else {
            Failed::Other(e)
        })
    }

    /// PATCHes from the offset the registry has, re-reading what was lost; then the PUT.
    async fn send_chunks(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        mut session: Session,
        body: &Again,
    ) -> Result<(), Failed> {
        let mut offset = 0u64;
        let mut failures = 0u32;
        while offset < size {
            let chunk = self.chunk_size().max(session.min_chunk).max(1);
            let len = chunk.min(size - offset);
            let sent = self
                .send_body(
                    repo,
                    digest,
                    Method::PATCH,
                    &session.url,
                    offset,
                    len,
                    body.range(offset, len),
                )
                .await;
            let lost = match sent {
                Ok(resp) if resp.status().is_success() => {
                    if let Some(loc) = location(&resp) {
                        session.url = self.resolve_location(&loc);
                    }
                    offset = match range_end(&resp) {
                        Some(end) if end <= size => end,
                        Some(end) => {
                            return Err(Failed::Other(self.protocol(format!(
                                "upload of {digest} to {repo}: the registry says it has {end} bytes of {size}"
                            ))))
                        }
                        None => offset + len,
                    };
                    continue;
                }
                Ok(resp) if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && chunk > MIN_CHUNK => {
                    // A body cap below the chunk size: halve it for every later chunk.
                    let _ = resp.bytes().await;
                    let half = (chunk / 2).max(MIN_CHUNK);
                    let _ = self.inner.chunk_size.fetch_update(
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                        |c| (c == 0 || c > half).then_some(half),
                    );
                    None
                }
                Ok(resp)
                    if is_transient_status(resp.status().as_u16())
                        || resp.status() == StatusCode::RANGE_NOT_SATISFIABLE
                        || resp.status() == StatusCode::UNAUTHORIZED =>
                {
                    let after = retry_after(&resp);
                    let e = self.upload_fail(resp, repo, digest).await;
                    Some((e, after))
                }
                Ok(resp) => return Err(Failed::Other(self.upload_fail(resp, repo, digest).await)),
                Err(e) if e.is_transient() || matches!(e, RegistryError::BodyCut { .. }) => {
                    Some((e, None))
                }
                Err(e) => return Err(Failed::Other(e)),
            };
            if let Some((e, after)) = lost {
                failures += 1;
                if failures > self.inner.retries {
                    return Err(Failed::Other(e.with_attempts(failures)));
                }
                tokio::time::sleep(backoff(failures, after)).await;
            }
            // Where is the session? Resume there, or start a new one.
            match self.session_status(repo, &session.url).await {
                Ok((url, have)) if have <= size => {
                    session.url = url;
                    offset = have;
                }
                Ok(_) | Err(_) => {
                    return Err(Failed::Restart(RegistryError::Protocol {
                        registry: self.registry().to_string(),
                        message: format!(
                            "upload of {digest} to {repo}: the upload session was lost at {offset} of {size} bytes"
                        ),
                    }))
                }
            }
        }
        self.finish(repo, digest, &session.url)
            .await
            .map_err(Failed::Other)
    }

    /// `GET` on the session: its URL (a new `Location`, if given) and the bytes it holds.
    async fn session_status(&self, repo: &str, url: &str) -> Result<(String, u64), RegistryError> {
        let scopes = [push_scope(repo)];
        let resp = self.send(&scopes, repo, |h| h.get(url)).await?;
        if !resp.status().is_success() {
            return Err(self
                .fail(resp, repo, "check upload", "upload session")
                .await);
        }
        let have = range_end(&resp).unwrap_or(0);
        let url = location(&resp)
            .map(|l| self.resolve_location(&l))
            .unwrap_or_else(|| url.to_string());
        Ok((url, have))
    }

    /// The final, empty `PUT ?digest=` of a chunked upload (retried: it has no body).
    async fn finish(&self, repo: &str, digest: &Digest, url: &str) -> Result<(), RegistryError> {
        let scopes = [push_scope(repo)];
        let url = with_digest(url, digest).map_err(|m| self.protocol(m))?;
        let resp = self
            .send(&scopes, repo, |h| {
                h.put(&url).header(header::CONTENT_LENGTH, 0)
            })
            .await?;
        if !resp.status().is_success() {
            return Err(self.upload_fail(resp, repo, digest).await);
        }
        Ok(())
    }

    /// One PUT or PATCH carrying `len` bytes from `start` (PATCH: with `Content-Range`).
    /// Auth was settled by the POST; a token that expired meanwhile is renewed once. A
    /// connection that failed while the body was going out is [`RegistryError::BodyCut`].
    #[allow(clippy::too_many_arguments)]
    async fn send_body(
        &self,
        repo: &str,
        digest: &Digest,
        method: Method,
        url: &str,
        start: u64,
        len: u64,
        body: reqwest::Body,
    ) -> Result<Response, RegistryError> {
        let scopes = [push_scope(repo)];
        let mut req = self
            .inner
            .http
            .request(method.clone(), url)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, len);
        if method == Method::PATCH {
            let end = (start + len).saturating_sub(1);
            req = req.header(header::CONTENT_RANGE, format!("{start}-{end}"));
        }
        let req = self
            .authorize(req.body(self.paced(body)), &scopes, repo)
            .await?;
        match req.send().await {
            Ok(resp) => {
                if resp.status() == StatusCode::UNAUTHORIZED {
                    self.learn_challenge(&resp, &scopes);
                }
                Ok(resp)
            }
            Err(e) if body_cut(&e) => Err(RegistryError::BodyCut {
                registry: self.registry().to_string(),
                repository: repo.to_string(),
                digest: digest.clone(),
                request: format!("{method} of {len} bytes"),
                reason: super::error::describe(&e),
            }),
            Err(e) => Err(self.connect_error(&e)),
        }
    }

    fn protocol(&self, message: String) -> RegistryError {
        RegistryError::Protocol {
            registry: self.registry().to_string(),
            message,
        }
    }
}

/// `url` with `digest=` added to its query.
fn with_digest(url: &str, digest: &Digest) -> Result<String, String> {
    let mut u = url::Url::parse(url).map_err(|e| format!("bad upload Location {url:?}: {e}"))?;
    u.query_pairs_mut().append_pair("digest", digest.as_str());
    Ok(u.into())
}

/// How many bytes the session holds, from `Range: 0-N` (N inclusive; distribution says
/// `0-0` for an empty session too, read as 0 here: re-sending a byte is harmless, skipping
/// one is not).
fn range_end(resp: &Response) -> Option<u64> {
    let v = resp.headers().get(header::RANGE)?.to_str().ok()?;
    let v = v.trim().trim_start_matches("bytes=");
    let (_, end) = v.split_once('-')?;
    let end: u64 = end.trim().parse().ok()?;
    Some(if end == 0 { 0 } else { end + 1 })
}

/// Whether a refused PUT is the registry refusing the monolithic flow (or the body's size),
/// rather than the blob, the repository or the credentials: chunks may get through.
pub(super) fn refuses_monolithic(status: u16, body: &str) -> bool {
    match status {
        411 | 413 => true,
        401 | 403 | 404 | 429 => false,
        400 => ![
            "DIGEST_INVALID",
            "SIZE_INVALID",
            "NAME_UNKNOWN",
            "NAME_INVALID",
        ]
        .iter()
        .any(|c| body.contains(c)),
        s => (400..600).contains(&s),
    }
}

fn is_status(e: &RegistryError, code: u16) -> bool {
    matches!(e, RegistryError::Status { status, .. } if *status == code)
}

/// The connection failed while the request body was being written (the server closed or
/// reset it): told by the I/O error's kind among the causes.
fn body_cut(e: &reqwest::Error) -> bool {
    use std::error::Error as _;
    use std::io::ErrorKind;
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
            ) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_refusals_fall_back_to_chunks() {
        for s in [411, 413, 500, 502, 405, 416] {
            assert!(refuses_monolithic(s, ""), "{s}");
        }
        for s in [401, 403, 404, 429] {
            assert!(!refuses_monolithic(s, ""), "{s}");
        }
        assert!(refuses_monolithic(
            400,
            r#"{"errors":[{"code":"BLOB_UPLOAD_INVALID"}]}"#
        ));
        assert!(!refuses_monolithic(
            400,
            r#"{"errors":[{"code":"DIGEST_INVALID"}]}"#
        ));
    }

    #[test]
    fn which_refusals_say_the_repository_is_missing() {
        use super::super::error::repository_missing;
        let name_unknown = r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#;
        let harbor = r#"{"errors":[{"code":"NOT_FOUND","message":"project library2 not found"}]}"#;
        let blob = r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"mount refused"}]}"#;
        assert!(repository_missing(404, name_unknown, false));
        assert!(repository_missing(403, harbor, false));
        assert!(repository_missing(404, "", true));
        assert!(!repository_missing(404, "", false));
        assert!(!repository_missing(404, blob, true));
        assert!(!repository_missing(
            403,
            r#"{"errors":[{"code":"DENIED"}]}"#,
            true
        ));
        assert!(!repository_missing(500, name_unknown, true));
    }
}
