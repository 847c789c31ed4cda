//! The chunked flow: `PATCH`es with `Content-Range` on an open session, the `Range` the
//! registry reports read back after each, the final empty `PUT ?digest=`. A re-readable
//! blob resumes at the offset the session reports after a loss; a stream (a bundle without
//! a seek table) is cut into chunk-size PATCHes as it is read and is sent once.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use bytes::Bytes;
use http_body::Body as _;
use reqwest::{header, Method, Response, StatusCode};

use super::super::blobs::Pushed;
use super::super::client::{location, push_scope, Client};
use super::super::error::RegistryError;
use super::super::retry::{backoff, is_transient_status, retry_after};
use super::body::{with_digest, Carry};
use super::{Again, Failed, Session, DEFAULT_CHUNK, MIN_CHUNK};
use crate::digest::Digest;
use crate::progress::human_bytes;

impl Client {
    /// PATCHes from `start` (0, or where a resumed session is), continuing from the offset
    /// the registry has after a loss and re-reading what was lost; then the PUT. While more
    /// is left to send, the session is remembered for a later run (`resume.rs`).
    pub(super) async fn send_chunks(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        mut session: Session,
        body: &Again,
        start: u64,
    ) -> Result<(), Failed> {
        let store = self.inner.sessions.get();
        let mut offset = start;
        let mut failures = 0u32;
        while offset < size {
            let chunk = self.chunk_size().max(session.min_chunk).max(1);
            let len = chunk.min(size - offset);
            let carry = Carry {
                method: Method::PATCH,
                url: &session.url,
                start: offset,
                len,
            };
            let sent = self
                .send_body(repo, digest, carry, body.range(offset, len))
                .await;
            let lost = match sent {
                Ok(resp) if resp.status().is_success() => {
                    self.follow(&mut session, &resp);
                    offset = match range_end(&resp) {
                        Some(end) if end <= size => end,
                        Some(end) => {
                            return Err(Failed::Other(self.protocol(format!(
                                "upload of {digest} to {repo}: the registry says it has {end} bytes of {size}"
                            ))))
                        }
                        None => offset + len,
                    };
                    if let Some(store) = store.filter(|_| offset < size) {
                        store.save(self.registry(), repo, digest, size, &session.url, offset);
                    }
                    continue;
                }
                Ok(resp) if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && len > MIN_CHUNK => {
                    self.shrink_chunks(len);
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
                    if let Some(store) = store {
                        store.remove(self.registry(), repo, digest);
                    }
                    return Err(Failed::Restart(self.protocol(format!(
                        "upload of {digest} to {repo}: the upload session was lost at {offset} of {size} bytes"
                    ))));
                }
            }
        }
        let done = self.finish(repo, digest, &session.url).await;
        if let Some(store) = store {
            // Finished, or refused at the end (a digest the registry does not accept): no
            // later run can continue this session either way.
            store.remove(self.registry(), repo, digest);
        }
        done.map_err(Failed::Other)
    }

    /// An upload an earlier run left unfinished (see `resume.rs`): asks its session where
    /// it is and goes on from there. `None`: nothing to resume (no record, or its session
    /// is gone, which drops the record), so the upload starts as usual.
    pub(super) async fn resume_saved(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: &Again,
    ) -> Option<Result<Pushed, Failed>> {
        let store = self.inner.sessions.get()?;
        let saved = store.find(self.registry(), repo, digest, size)?;
        match self.session_status(repo, &saved.location).await {
            Ok((url, have)) if have <= size => {
                self.notify(format!(
                    "resumed the upload of blob {digest} to {repo} at {} of {}, where an earlier run left it",
                    human_bytes(have),
                    human_bytes(size)
                ));
                let session = Session { url, min_chunk: 0 };
                let sent = self
                    .send_chunks(repo, digest, size, session, body, have)
                    .await;
                Some(sent.map(|()| Pushed::Uploaded))
            }
            _ => {
                store.remove(self.registry(), repo, digest);
                None
            }
        }
    }

    /// A stream (a blob of a bundle without a seek table) in chunk-size PATCHes, each a
    /// bounded part of the stream read as it goes out: nothing is buffered, and nothing can
    /// be read again, so any failure fails the blob (a 413 still halves the chunks of the
    /// blobs after it).
    pub(super) async fn send_stream_chunks(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        mut session: Session,
        body: reqwest::Body,
    ) -> Result<(), Failed> {
        let shared = Arc::new(Mutex::new(Shared { body, held: None }));
        let mut offset = 0u64;
        while offset < size {
            let chunk = self.chunk_size().max(session.min_chunk).max(1);
            let len = chunk.min(size - offset);
            let carry = Carry {
                method: Method::PATCH,
                url: &session.url,
                start: offset,
                len,
            };
            let resp = self
                .send_body(repo, digest, carry, take(&shared, len))
                .await
                .map_err(Failed::Other)?;
            if !resp.status().is_success() {
                if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    self.shrink_chunks(len);
                }
                return Err(Failed::Other(self.upload_fail(resp, repo, digest).await));
            }
            self.follow(&mut session, &resp);
            offset += len;
            if let Some(end) = range_end(&resp) {
                // (`0-0`: one byte, see `range_end`)
                if end != offset && !(end == 0 && offset == 1) {
                    return Err(Failed::Other(self.protocol(format!(
                        "upload of {digest} to {repo}: the registry says it has {end} bytes after {offset} were sent"
                    ))));
                }
            }
        }
        self.finish(repo, digest, &session.url)
            .await
            .map_err(Failed::Other)
    }

    /// A body cap below `refused` bytes: every later chunk (of every blob) is the largest
    /// power of two below that (half a power-of-two chunk), at least [`MIN_CHUNK`]. A
    /// refused PUT of 16 MiB goes on in 8 MiB chunks, not in 64 MiB ones clipped to 16.
    pub(super) fn shrink_chunks(&self, refused: u64) {
        let below = 1u64 << (63 - refused.saturating_sub(1).max(1).leading_zeros());
        let new = below.max(MIN_CHUNK);
        let _ = self
            .inner
            .chunk_size
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                let now = if c == 0 { DEFAULT_CHUNK } else { c };
                (new < now).then_some(new)
            });
    }

    /// The session moves where the registry's `Location` says.
    fn follow(&self, session: &mut Session, resp: &Response) {
        if let Some(loc) = location(resp) {
            session.url = self.resolve_location(&loc);
        }
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
}

/// A stream shared by the PATCHes that carry it, and the part of a frame the last one did
/// not take.
struct Shared {
    body: reqwest::Body,
    held: Option<Bytes>,
}

/// The next `len` bytes of `shared` as a body of their own (a frame crossing the end is
/// split, its rest kept for the next part). The stream ending early is an error.
fn take(shared: &Arc<Mutex<Shared>>, len: u64) -> reqwest::Body {
    let shared = shared.clone();
    let mut left = len;
    reqwest::Body::wrap_stream(futures::stream::poll_fn(move |cx| {
        if left == 0 {
            return Poll::Ready(None);
        }
        let mut s = shared.lock().expect("stream lock");
        let mut data = loop {
            if let Some(b) = s.held.take() {
                break b;
            }
            match std::task::ready!(Pin::new(&mut s.body).poll_frame(cx)) {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        break d;
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(std::io::Error::other(e)))),
                None => {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the blob's stream ended before its size",
                    ))))
                }
            }
        };
        if data.len() as u64 > left {
            s.held = Some(data.split_off(left as usize));
        }
        left -= data.len() as u64;
        Poll::Ready(Some(Ok(data)))
    }))
}

/// How many bytes the session holds, from `Range: 0-N` (N inclusive; distribution says
/// `0-0` for an empty session too, read as 0 here: re-sending a byte is harmless, skipping
/// one is not).
pub(super) fn range_end(resp: &Response) -> Option<u64> {
    let v = resp.headers().get(header::RANGE)?.to_str().ok()?;
    let v = v.trim().trim_start_matches("bytes=");
    let (_, end) = v.split_once('-')?;
    let end: u64 = end.trim().parse().ok()?;
    Some(if end == 0 { 0 } else { end + 1 })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_413_shrinks_chunks_below_the_refused_size() {
        use super::super::super::{ConnectOptions, Endpoint};
        use super::super::MIN_CHUNK;
        use super::DEFAULT_CHUNK;
        let ep = Endpoint::resolve("127.0.0.1:1", &Default::default(), true);
        let c = super::Client::new(ep, None, &ConnectOptions::default()).expect("client");
        let now = || c.chunk_size();
        c.shrink_chunks(100 << 20);
        assert_eq!(now(), DEFAULT_CHUNK); // 64 MiB is below 100 already
        c.shrink_chunks(64 << 20);
        assert_eq!(now(), 32 << 20);
        c.shrink_chunks((16 << 20) + 1);
        assert_eq!(now(), 16 << 20);
        c.shrink_chunks(3 << 20);
        assert_eq!(now(), 2 << 20);
        c.shrink_chunks(8 << 20); // never grows
        assert_eq!(now(), 2 << 20);
        c.shrink_chunks(1000);
        assert_eq!(now(), MIN_CHUNK);
    }
}
