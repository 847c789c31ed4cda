//! Sending one request that carries blob bytes (a monolithic `PUT`, a `PATCH`, a single
//! `POST ?digest=`), and stopping its body once the registry has answered.
//!
//! hyper hands the response to the caller as soon as its head arrives, but the connection
//! task keeps writing the request body until it is done (hyper 1.x `proto/h1/dispatch.rs`:
//! `recv_msg` completes the callback, `poll_write` goes on polling the body). An nginx that
//! answers `413` from the header and then reads and drops the rest (its lingering close)
//! therefore got every refused body whole: 100 + 64 + 32 MiB read from the bundle,
//! decompressed and sent for nothing in the interop benchmark. [`Stoppable`] ends the body
//! with an error once the answer is in; hyper then closes that connection (it could not be
//! reused anyway: the server did not read the body).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use reqwest::{header, Method, Response, StatusCode};

use super::super::client::{push_scope, Client};
use super::super::error::RegistryError;
use crate::digest::Digest;

/// A request body that fails (ending the request on the wire) once `stop` is set while
/// bytes are still to come.
struct Stoppable {
    inner: reqwest::Body,
    stop: Arc<AtomicBool>,
    /// Bytes not yet handed to hyper (the `Content-Length` minus what went out).
    left: u64,
}

impl Body for Stoppable {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.left > 0 && this.stop.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(
                "the registry answered before the request body was sent".into(),
            )));
        }
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(f)) = &frame {
            if let Some(d) = f.data_ref() {
                this.left = this.left.saturating_sub(d.len() as u64);
            }
        }
        Poll::Ready(frame.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request `send_body` makes: where, how, and which bytes.
pub(super) struct Carry<'a> {
    pub method: Method,
    pub url: &'a str,
    /// First byte of the blob in this body (a PATCH's `Content-Range` start).
    pub start: u64,
    pub len: u64,
}

impl Client {
    /// One request carrying `len` bytes of blob from `start` (PATCH: with `Content-Range`).
    /// Auth was settled before (the POST); a 401 is learned from for the next request. A
    /// connection that failed while the body was going out is [`RegistryError::BodyCut`].
    /// An answer other than success has its body read, and then the request body is stopped
    /// (see the module comment): the caller reports the registry's own words.
    pub(super) async fn send_body(
        &self,
        repo: &str,
        digest: &Digest,
        carry: Carry<'_>,
        body: reqwest::Body,
    ) -> Result<Response, RegistryError> {
        let Carry {
            method,
            url,
            start,
            len,
        } = carry;
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
        let stop = Arc::new(AtomicBool::new(false));
        let body = reqwest::Body::wrap(Stoppable {
            inner: self.paced(body),
            stop: stop.clone(),
            left: len,
        });
        let req = self.authorize(req.body(body), &scopes, repo).await?;
        match req.send().await {
            Ok(resp) if resp.status().is_success() => Ok(resp),
            Ok(resp) => {
                if resp.status() == StatusCode::UNAUTHORIZED {
                    self.learn_challenge(&resp, &scopes);
                }
                let resp = buffered(resp).await;
                stop.store(true, Ordering::Relaxed);
                Ok(resp)
            }
            Err(e) if body_cut(&e) => Err(RegistryError::BodyCut {
                registry: self.registry().to_string(),
                repository: repo.to_string(),
                digest: digest.clone(),
                request: format!("{method} of {len} bytes"),
                reason: super::super::error::describe(&e),
            }),
            Err(e) => Err(self.connect_error(&e)),
        }
    }
}

/// `resp` with its body read into memory (an error answer: small), so that stopping the
/// request, which closes the connection, cannot cut the answer.
async fn buffered(resp: Response) -> Response {
    use http_body_util::BodyExt;
    let resp: hyper::Response<reqwest::Body> = resp.into();
    let (parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    };
    Response::from(hyper::Response::from_parts(parts, bytes))
}

/// `url` with `digest=` added to its query.
pub(super) fn with_digest(url: &str, digest: &Digest) -> Result<String, String> {
    let mut u = url::Url::parse(url).map_err(|e| format!("bad upload Location {url:?}: {e}"))?;
    u.query_pairs_mut().append_pair("digest", digest.as_str());
    Ok(u.into())
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
