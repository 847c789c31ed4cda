//! Blob uploads, chosen per registry: monolithic (`monolithic.rs`: `POST` then one `PUT`
//! with the whole blob, or the blob in the `POST` itself where the registry takes that)
//! until the registry refuses it (or `--chunk-size` asks for chunks), chunked from then on
//! (`chunked.rs`: `PATCH`es with `Content-Range`, an empty `PUT ?digest=`). Chunks are
//! streamed from a [`Reread`] source, never buffered, so a chunk lost to a reset is read
//! again from the bundle and the upload resumes at the offset the registry reports for the
//! session. Every request carrying blob bytes goes through `body.rs`, which stops the body
//! once the registry has answered.

mod body;
mod chunked;
mod monolithic;
mod resume;

pub(super) use monolithic::SINGLE_UNKNOWN;
pub(super) use resume::SessionStore;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::{header, Response, StatusCode};

use super::blobs::{BlobBody, Pushed};
use super::client::{failure_head, push_scope, Client};
use super::error::{body_message, RegistryError};
use super::retry::{self, attempts_of, is_transient_status, Outcome};
use crate::digest::Digest;
use monolithic::Posted;

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
                Err(Failed::Monolithic(e)) if round == 1 => {
                    if is_status(&e, 413) {
                        self.shrink_chunks(size);
                    }
                    self.fall_back(repo, digest, &e)
                }
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

    /// The next line for the user: this registry refused a monolithic upload and gets
    /// chunks from now on, an upload resumed where an earlier run left it, unfinished
    /// uploads cannot be remembered. Each is given once.
    pub fn take_notice(&self) -> Option<String> {
        let next = self.inner.notice.lock().expect("notice lock").pop_front();
        next.or_else(|| self.inner.sessions.get().and_then(|s| s.take_warning()))
    }

    /// Remember unfinished chunked uploads in `dir` (see `resume.rs`), and resume the ones
    /// an earlier run left there. Set once, before the first upload.
    pub fn remember_uploads(&self, dir: std::path::PathBuf) {
        let _ = self.inner.sessions.set(SessionStore::new(dir));
    }

    fn notify(&self, line: String) {
        self.inner
            .notice
            .lock()
            .expect("notice lock")
            .push_back(line);
    }

    fn fall_back(&self, repo: &str, digest: &Digest, e: &RegistryError) {
        if !self.inner.chunked.swap(true, Ordering::Relaxed) {
            self.notify(format!(
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
        if let Some(r) = self.resume_saved(repo, digest, size, body).await {
            return r;
        }
        let chunked = self.chunked();
        let probe = probe && !self.inner.no_probe.load(Ordering::Relaxed);
        // A blob in memory, monolithic, not asked to be mounted: in the POST itself where
        // the registry takes that (a 202 leaves a session to PUT it on, as usual).
        let posted = match body {
            Again::Memory(b) if !chunked && !probe && self.try_single_post() => {
                match self.post_whole(repo, digest, size, b).await {
                    Ok(Posted::Created) => return Ok(Pushed::Uploaded),
                    Ok(Posted::Session(s)) => Some(s),
                    Ok(Posted::Refused) => None,
                    Err(e) => return Err(Failed::Other(e)),
                }
            }
            _ => None,
        };
        let session = match posted {
            Some(s) => s,
            None => match self.open_session(repo, digest, probe).await {
                Ok(Some(s)) => s,
                Ok(None) => return Ok(Pushed::Present),
                Err(e) => return Err(Failed::Other(e)),
            },
        };
        if chunked {
            self.send_chunks(repo, digest, size, session, body, 0)
                .await?;
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
        let probe = probe && !self.inner.no_probe.load(Ordering::Relaxed);
        let Some(session) = self
            .open_session(repo, digest, probe)
            .await
            .map_err(Failed::Other)?
        else {
            return Ok(Pushed::Present);
        };
        if chunked {
            self.send_stream_chunks(repo, digest, size, session, body)
                .await?;
        } else {
            self.put_whole(repo, digest, size, &session, body).await?;
        }
        Ok(Pushed::Uploaded)
    }

    /// The POST opening a session, asking first for a mount from `repo` itself with
    /// `probe` (the caller has checked `no_probe`): `None` when the registry has the blob
    /// there already.
    async fn open_session(
        &self,
        repo: &str,
        digest: &Digest,
        probe: bool,
    ) -> Result<Option<Session>, RegistryError> {
        let scopes = [push_scope(repo)];
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let plain = |h: &reqwest::Client| h.post(&url).header(header::CONTENT_LENGTH, 0);
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
        self.session_of(&resp, repo, digest).map(Some)
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

    fn protocol(&self, message: String) -> RegistryError {
        RegistryError::Protocol {
            registry: self.registry().to_string(),
            message,
        }
    }
}

fn is_status(e: &RegistryError, code: u16) -> bool {
    matches!(e, RegistryError::Status { status, .. } if *status == code)
}

#[cfg(test)]
mod tests {
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
