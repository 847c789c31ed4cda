//! The monolithic flows: the whole blob in one `PUT` on an open session, or (a blob in
//! memory, where the registry takes it) in the `POST` itself (`?digest=`, the OCI
//! distribution spec's single POST: one request instead of two). Whether a registry takes
//! the single POST is found out once, by the first upload that may use it.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use reqwest::{header, Method, StatusCode};

use super::super::client::{failure_head, location, push_scope, Client};
use super::super::error::repository_missing;
use super::super::error::RegistryError;
use super::super::retry::is_transient_status;
use super::body::{with_digest, Carry};
use super::{Failed, Session};
use crate::digest::Digest;

/// `Inner::single_post`: not known yet; one upload is finding out; taken (201); not taken.
pub(in crate::registry) const SINGLE_UNKNOWN: u8 = 0;
const SINGLE_TRYING: u8 = 1;
const SINGLE_YES: u8 = 2;
const SINGLE_NO: u8 = 3;

/// What a single `POST ?digest=` came to.
pub(super) enum Posted {
    /// 201: the blob is stored.
    Created,
    /// 202: the registry opened a session and ignored the body; the upload goes on there.
    Session(Session),
    /// Refused otherwise: a plain POST opens the session.
    Refused,
}

impl Client {
    /// Whether this upload sends its blob in the POST: the registry took it before, or
    /// nobody has tried yet (this upload does; the others meanwhile go the usual way).
    pub(super) fn try_single_post(&self) -> bool {
        let state = &self.inner.single_post;
        match state.load(Ordering::Relaxed) {
            SINGLE_YES => true,
            SINGLE_UNKNOWN => state
                .compare_exchange(
                    SINGLE_UNKNOWN,
                    SINGLE_TRYING,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok(),
            _ => false,
        }
    }

    /// The single POST. A 202 (distribution opens a session and ignores the body) or a
    /// refusal switches the registry to the POST + PUT flow for good, a transient failure
    /// only for this upload; a missing repository is reported as such.
    pub(super) async fn post_whole(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        bytes: &Bytes,
    ) -> Result<Posted, RegistryError> {
        let scopes = [push_scope(repo)];
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self
            .send(&scopes, repo, |h| {
                h.post(&url)
                    .query(&[("digest", digest.as_str())])
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, size)
                    .body(self.paced(reqwest::Body::from(bytes.clone())))
            })
            .await;
        let learn = |taken: Option<bool>| {
            let v = match taken {
                Some(true) => SINGLE_YES,
                Some(false) => SINGLE_NO,
                None => SINGLE_UNKNOWN,
            };
            // Only the upload finding out (or a registry that changed its mind) decides.
            let _ =
                self.inner
                    .single_post
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                        (s == SINGLE_TRYING || (s == SINGLE_YES && v == SINGLE_NO)).then_some(v)
                    });
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                learn(None);
                return Err(e);
            }
        };
        let status = resp.status();
        match status {
            StatusCode::CREATED => {
                learn(Some(true));
                let _ = resp.bytes().await;
                Ok(Posted::Created)
            }
            StatusCode::ACCEPTED => {
                learn(Some(false));
                match self.session_of(&resp, repo, digest) {
                    Ok(s) => {
                        let _ = resp.bytes().await;
                        Ok(Posted::Session(s))
                    }
                    Err(_) => Ok(Posted::Refused),
                }
            }
            s => {
                let text = resp.text().await.unwrap_or_default();
                if repository_missing(s.as_u16(), &text, false) {
                    learn(None);
                    return Err(self.missing(repo, s, &text));
                }
                // A blob the registry finds wrong says nothing about the flow; a busy
                // registry (429, 502-504) neither. A 500 is how some refuse the flow.
                let about_blob = text.contains("DIGEST_INVALID") || text.contains("SIZE_INVALID");
                let busy =
                    is_transient_status(s.as_u16()) && s != StatusCode::INTERNAL_SERVER_ERROR;
                learn((!about_blob && !busy).then_some(false));
                Ok(Posted::Refused)
            }
        }
    }

    /// The monolithic PUT. Not retried here (`upload` opens a new session for that).
    pub(super) async fn put_whole(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        session: &Session,
        body: reqwest::Body,
    ) -> Result<(), Failed> {
        let url = with_digest(&session.url, digest).map_err(|m| Failed::Other(self.protocol(m)))?;
        let carry = Carry {
            method: Method::PUT,
            url: &url,
            start: 0,
            len: size,
        };
        let resp = match self.send_body(repo, digest, carry, body).await {
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

    /// The session a 202 opened: its `Location` and `OCI-Chunk-Min-Length`.
    pub(super) fn session_of(
        &self,
        resp: &reqwest::Response,
        repo: &str,
        digest: &Digest,
    ) -> Result<Session, RegistryError> {
        let loc = location(resp).ok_or_else(|| {
            self.protocol(format!("upload of {digest} to {repo}: no Location header"))
        })?;
        let min_chunk = resp
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Ok(Session {
            url: self.resolve_location(&loc),
            min_chunk,
        })
    }
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
}
