//! The HTTP side of `serve`: routing, distribution-spec error bodies, ranges, and blob bodies
//! streamed from a blocking reader thread.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::ops::{Htpasswd, Metrics};
use super::{Blob, Catalog, Data, Frames, ServeError, ServeOptions};
use crate::digest::Digest;
use crate::progress::Progress;

type Body = BoxBody<Bytes, io::Error>;

/// A bound listener with its catalog: `local_addr` is known before `run`.
pub struct Server {
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    max_connections: u64,
    shutdown_timeout: std::time::Duration,
}

/// What every connection's requests read.
struct Shared {
    catalog: Arc<Catalog>,
    progress: Arc<dyn Progress>,
    access_log: bool,
    metrics: Arc<Metrics>,
    auth: Option<Htpasswd>,
    /// The buffer budget for blob readers, in MiB ([`READER_MEMORY`] or
    /// [`SHARED_READER_MEMORY`] each): the bound on buffer memory whatever the number of
    /// clients; the others wait (back-pressure).
    readers: Arc<tokio::sync::Semaphore>,
    /// Decoded frames shared by readers of seekable bundles (the rest of the budget).
    frames: Option<Arc<Frames>>,
}

const MIB: u64 = 1024 * 1024;

/// What one blob reader reading in place is counted as: its decoder's frame and window, the
/// chunks queued for the client and the connection's write buffer (measured: about 3.5 MiB;
/// counted with room).
pub const READER_MEMORY: u64 = 6 * MIB;

/// A reader through the shared frames: its queued chunks (about 1.75 MiB) and the one frame
/// it copies from (1 MiB, perhaps already evicted from the cache) or the compressed frame it
/// is decoding. Counted as a reader in place: at 4 MiB, 12 readers and the 16 MiB of frames
/// peaked at 64.9 MiB RSS with 256 clients (`bench.sh fleet-many`, images), over the target.
pub const SHARED_READER_MEMORY: u64 = 6 * MIB;

/// How `--memory` is split: (frame cache bytes, reader budget in MiB). `frame_cache` (by
/// default a quarter, at most half, whole MiB, none under 2 MiB) goes to decoded frames when
/// some bundle is seekable; at least two readers in place may always run.
pub fn split_memory(memory: u64, frame_cache: Option<u64>, seekable: bool) -> (u64, u64) {
    let want = frame_cache.unwrap_or(memory / 4).min(memory / 2) / MIB * MIB;
    let cache = if seekable && want >= 2 * MIB { want } else { 0 };
    let readers = (memory - cache).max(2 * READER_MEMORY) / MIB;
    (cache, readers)
}

/// Opens the bundle and binds the listener; [`Server::run`] then answers until cancelled.
pub async fn serve(opts: ServeOptions, progress: Arc<dyn Progress>) -> Result<Server, ServeError> {
    let p = progress.clone();
    let o = opts.clone();
    let catalog = tokio::task::spawn_blocking(move || {
        super::Catalog::open_all(
            &o.bundles,
            &o.expected_ids,
            o.path.as_deref(),
            o.mode,
            o.repository.as_deref(),
            p.as_ref(),
        )
    })
    .await
    .map_err(|e| ServeError::Listen {
        addr: opts.listen,
        source: io::Error::other(e.to_string()),
    })??;
    let tls = match &opts.tls {
        Some(files) => Some(tls_acceptor(files)?),
        None => None,
    };
    let auth = match &opts.htpasswd {
        Some(p) => Some(Htpasswd::read(p)?),
        None => None,
    };
    let seekable = catalog
        .bundles
        .iter()
        .any(|b| matches!(&b.data, Data::Bundle { index, .. } if index.seekable));
    let (cache_bytes, reader_mib) = split_memory(opts.memory, opts.frame_cache, seekable);
    let metrics = Arc::new(Metrics::default());
    let frames = (cache_bytes > 0).then(|| Arc::new(Frames::new(cache_bytes, metrics.clone())));
    if auth.is_none() && !opts.listen.ip().is_loopback() {
        progress.warn(&format!(
            "anyone who can reach {} can pull every image: no --htpasswd",
            opts.listen
        ));
    }
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: opts.listen,
            source,
        })?;
    Ok(Server {
        listener,
        tls,
        shared: Arc::new(Shared {
            catalog: Arc::new(catalog),
            progress,
            access_log: opts.access_log,
            metrics,
            auth,
            readers: Arc::new(tokio::sync::Semaphore::new(reader_mib as usize)),
            frames,
        }),
        max_connections: opts.max_connections.max(1) as u64,
        shutdown_timeout: opts.shutdown_timeout,
    })
}

impl Server {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.shared.catalog
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Answers until SIGTERM or Ctrl-C, then stops accepting and lets the responses in
    /// flight finish for at most the shutdown timeout.
    pub async fn run(self) -> Result<(), ServeError> {
        self.run_until(shutdown_signal()).await
    }

    /// Answers until `stop` completes, then shuts down as [`Server::run`] does.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::pin!(stop);
        let metrics = self.shared.metrics.clone();
        loop {
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = &mut stop => break,
            };
            let (stream, _) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    self.shared
                        .progress
                        .warn(&format!("accepting a connection: {e}"));
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Without it, Nagle holds each response's last segment for the client's delayed
            // ACK: 14 ms per small blob on a kept-alive connection instead of under 4.
            let _ = stream.set_nodelay(true);
            if metrics.open_connections.load(Ordering::Relaxed) >= self.max_connections {
                Metrics::add(&metrics.refused_connections, 1);
                tokio::spawn(refuse(stream));
                continue;
            }
            let guard = Open::new(metrics.clone());
            let shared = self.shared.clone();
            let tls = self.tls.clone();
            let rx = rx.clone();
            tokio::spawn(async move {
                let _guard = guard;
                match tls {
                    None => connection(stream, shared, rx).await,
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(
                            std::time::Duration::from_secs(30),
                            acceptor.accept(stream),
                        );
                        // A failed handshake is the client's (wrong CA, plain HTTP).
                        if let Ok(Ok(s)) = handshake.await {
                            connection(s, shared, rx).await;
                        }
                    }
                }
            });
        }
        drop(self.listener);
        let _ = tx.send(true);
        let open = || metrics.open_connections.load(Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        while open() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let left = open();
        if left > 0 {
            self.shared.progress.warn(&format!(
                "shutting down with {left} connection(s) still open after {:?}",
                self.shutdown_timeout
            ));
        } else {
            self.shared
                .progress
                .item("shut down: every response finished");
        }
        Ok(())
    }
}

/// SIGTERM (systemd, Kubernetes) or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Counts an open connection for as long as it lives.
struct Open(Arc<Metrics>);

impl Open {
    fn new(m: Arc<Metrics>) -> Open {
        Metrics::add(&m.open_connections, 1);
        Open(m)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Beyond `--max-connections`: a 503 with `Retry-After`, then close.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"airgap serve is at --max-connections; retry"}]}"#;
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        use tokio::io::AsyncReadExt;
        // Read the request head first: a client that is answered before it has sent its
        // request takes the answer for a protocol error, not for a 503.
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = stream.write_all(resp.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Answers the requests of one connection (plain TCP or TLS) until it closes, or, once
/// `stop` says so, until the response in flight is done.
async fn connection<S>(stream: S, shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let shared = shared.clone();
        async move {
            let started = std::time::Instant::now();
            let resp = handle_request(&shared, &req);
            let status = resp.status().as_u16();
            shared.metrics.request(status);
            let len = resp
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            if shared.access_log {
                shared.progress.item(&format!(
                    "{} {} -> {status} ({len} bytes, {:.1} ms)",
                    req.method(),
                    req.uri(),
                    started.elapsed().as_secs_f64() * 1000.0
                ));
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    // A client that goes away mid-response is not our error to report.
    tokio::select! {
        _ = conn.as_mut() => {}
        // The guard `wait_for` returns must not live across the awaits below.
        _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.as_mut().await;
        }
    }
}

/// `/healthz` and `/metrics` (never behind `--htpasswd`: probes and scrapers), then the
/// registry API, behind `--htpasswd` when given.
fn handle_request(shared: &Shared, req: &Request<hyper::body::Incoming>) -> Response<Body> {
    let plain = |text: String, ctype: &'static str| {
        Response::builder()
            .header(CONTENT_TYPE, ctype)
            .header(CONTENT_LENGTH, text.len())
            .body(full(text))
            .expect("valid headers")
    };
    match req.uri().path() {
        "/healthz" => return plain("ok\n".into(), "text/plain"),
        "/metrics" => {
            return plain(
                shared.metrics.render(),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        }
        _ => {}
    }
    if let Some(auth) = &shared.auth {
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if auth.check(header).is_none() {
            Metrics::add(&shared.metrics.auth_failures, 1);
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
            );
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"airgap serve\""),
            );
            return r;
        }
    }
    let resp = handle(shared, req);
    if req.method() == Method::GET && resp.headers().get("Accept-Ranges").is_none() {
        // Small bodies sent whole; blob bodies count themselves as they go.
        let len = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        Metrics::add(&shared.metrics.bytes_sent, len);
    }
    resp
}

/// The TLS side: a certificate chain and key from PEM files, TLS 1.2 and 1.3.
fn tls_acceptor(files: &super::TlsFiles) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let err = |path: &std::path::Path, reason: String| ServeError::Tls {
        path: path.to_path_buf(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect())
        .map_err(|e| {
            err(
                &files.cert,
                format!("cannot read a PEM certificate chain: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(err(&files.cert, "no certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| err(&files.key, format!("cannot read a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err(&files.key, format!("does not fit the certificate: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// `GET /v2/<name>/referrers/<digest>[?artifactType=…]`: an OCI index of the manifests
/// whose `subject` is the digest (empty when none), filtered when asked.
fn referrers(cat: &super::Catalog, name: &str, digest: &str, query: &str) -> Response<Body> {
    let Ok(subject) = Digest::parse(digest) else {
        return error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            &format!("{digest:?} is not a sha256 digest"),
        );
    };
    let filter: Option<String> = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "artifactType")
        .map(|(_, v)| v.into_owned());
    let Some(bytes) = cat.referrers(name, &subject, filter.as_deref()) else {
        return name_unknown(name);
    };
    let mut b = Response::builder()
        .header(CONTENT_TYPE, crate::manifest::OCI_INDEX)
        .header(CONTENT_LENGTH, bytes.len());
    if filter.is_some() {
        b = b.header("OCI-Filters-Applied", "artifactType");
    }
    b.body(full(Bytes::from(bytes))).expect("valid headers")
}

/// A distribution-spec error response.
fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, bytes.len())
        .body(full(bytes))
        .expect("static headers are valid")
}

fn json(value: serde_json::Value, link: Option<String>) -> Response<Body> {
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    let mut b = Response::builder()
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, bytes.len());
    if let Some(l) = link {
        b = b.header("Link", l);
    }
    b.body(full(bytes)).expect("valid headers")
}

fn handle(shared: &Shared, req: &Request<hyper::body::Incoming>) -> Response<Body> {
    let head = req.method() == Method::HEAD;
    let mut resp = if req.method() != Method::GET && !head {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "airgap serve is read-only: load the bundle into a registry to push",
        )
    } else {
        route(shared, req, head)
    };
    resp.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    if head {
        // Same headers as GET (Content-Length included), no body.
        *resp.body_mut() = full(Bytes::new());
    }
    resp
}

fn route(shared: &Shared, req: &Request<hyper::body::Incoming>, head: bool) -> Response<Body> {
    let cat = &shared.catalog;
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let Some(rest) = path.strip_prefix("/v2/") else {
        if path == "/v2" {
            return json(serde_json::json!({}), None);
        }
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "not a /v2/ path");
    };
    if rest.is_empty() {
        return json(serde_json::json!({}), None);
    }
    if rest == "_catalog" {
        let names: Vec<&String> = cat.repos.keys().collect();
        let (page, link) = paginate(&names, query, "/v2/_catalog");
        return json(serde_json::json!({ "repositories": page }), link);
    }
    // Split from the right: tags and digests never hold a '/', repository names may hold
    // "manifests" or "blobs" as a component.
    let parts = rest
        .rsplit_once('/')
        .and_then(|(head, last)| head.rsplit_once('/').map(|(name, kind)| (name, kind, last)));
    if let Some(name) = rest.strip_suffix("/tags/list") {
        let Some(repo) = cat.repos.get(name) else {
            return name_unknown(name);
        };
        let tags: Vec<&String> = repo.tags.keys().collect();
        let (page, link) = paginate(&tags, query, &format!("/v2/{name}/tags/list"));
        return json(serde_json::json!({ "name": name, "tags": page }), link);
    }
    if let Some((name, "manifests", reference)) = parts {
        if !cat.repos.contains_key(name) {
            return name_unknown(name);
        }
        let Some((digest, media_type, bytes)) = cat.manifest(name, reference) else {
            return error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                &format!("{name}:{reference} is not in this bundle"),
            );
        };
        return Response::builder()
            .header(CONTENT_TYPE, media_type)
            .header(CONTENT_LENGTH, bytes.len())
            .header("Docker-Content-Digest", digest.to_string())
            .header("ETag", format!("\"{digest}\""))
            .body(full(bytes.clone()))
            .expect("valid headers");
    }
    if let Some((name, "referrers", digest)) = parts {
        return referrers(cat, name, digest, query);
    }
    if let Some((name, "blobs", digest)) = parts {
        if !cat.repos.contains_key(name) {
            return name_unknown(name);
        }
        let Ok(digest) = Digest::parse(digest) else {
            return error(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                &format!("{digest:?} is not a sha256 digest"),
            );
        };
        return match cat.blob(name, &digest) {
            None => error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                &format!("blob {digest} is not part of {name} in this bundle"),
            ),
            Some(None) => error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                &format!(
                    "blob {digest} is only in the base of this delta bundle; serve the base, or load both into a registry"
                ),
            ),
            Some(Some(blob)) => {
                blob_response(shared, blob, req.headers().get("Range"), head)
            }
        };
    }
    error(StatusCode::NOT_FOUND, "NOT_FOUND", "unknown endpoint")
}

fn name_unknown(name: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        &format!("repository {name} is not in this bundle"),
    )
}

/// `n` and `last` as the distribution spec pages `_catalog` and tag lists.
fn paginate<'a>(all: &[&'a String], query: &str, path: &str) -> (Vec<&'a String>, Option<String>) {
    let mut n = None;
    let mut last = None;
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("n", v)) => n = v.parse::<usize>().ok(),
            Some(("last", v)) => last = Some(v.to_string()),
            _ => {}
        }
    }
    let start = match &last {
        Some(l) => all.partition_point(|s| s.as_str() <= l.as_str()),
        None => 0,
    };
    let rest = &all[start..];
    match n {
        Some(n) if n < rest.len() => {
            let page = rest[..n].to_vec();
            let link = page
                .last()
                .map(|l| format!("<{path}?last={l}&n={n}>; rel=\"next\""));
            (page, link)
        }
        _ => (rest.to_vec(), None),
    }
}

/// Parses a single `bytes=` range against `size`: `Err(())` when it cannot be satisfied.
fn parse_range(value: &str, size: u64) -> Result<(u64, u64), ()> {
    let spec = value.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || size == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        (start, end)
    };
    if size == 0 || start > end || start >= size {
        return Err(());
    }
    Ok((start, end))
}

fn blob_response(
    shared: &Shared,
    blob: &Blob,
    range: Option<&HeaderValue>,
    head: bool,
) -> Response<Body> {
    let size = blob.record.size;
    let digest = blob.record.digest.to_string();
    let builder = Response::builder()
        .header(CONTENT_TYPE, "application/octet-stream")
        .header("Docker-Content-Digest", &digest)
        .header("ETag", format!("\"{digest}\""))
        .header("Accept-Ranges", "bytes");
    let (status, start, len, builder) = match range.map(|v| v.to_str().unwrap_or("")) {
        None => (StatusCode::OK, 0, size, builder),
        Some(v) => match parse_range(v, size) {
            Ok((s, e)) => (
                StatusCode::PARTIAL_CONTENT,
                s,
                e - s + 1,
                builder.header("Content-Range", format!("bytes {s}-{e}/{size}")),
            ),
            Err(()) => {
                let mut r = error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "RANGE_INVALID",
                    &format!("range {v:?} does not fit blob {digest} of {size} bytes"),
                );
                if let Ok(h) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    r.headers_mut().insert("Content-Range", h);
                }
                return r;
            }
        },
    };
    let body = if head {
        full(Bytes::new())
    } else {
        Metrics::add(&shared.metrics.blobs_served, 1);
        stream_blob(
            shared.catalog.clone(),
            shared.metrics.clone(),
            shared.readers.clone(),
            shared.frames.clone(),
            blob.clone(),
            start,
            len,
            status == StatusCode::OK,
        )
    };
    builder
        .status(status)
        .header(CONTENT_LENGTH, len)
        .body(body)
        .expect("valid headers")
}

/// Streams `len` bytes of `blob` from `start`, read on a blocking thread. A whole-blob read
/// is verified; on a mismatch the body ends in an error, which cuts the connection before the
/// response completes.
#[allow(clippy::too_many_arguments)]
fn stream_blob(
    cat: Arc<Catalog>,
    metrics: Arc<Metrics>,
    readers: Arc<tokio::sync::Semaphore>,
    frames: Option<Arc<Frames>>,
    blob: Blob,
    start: u64,
    len: u64,
    verify: bool,
) -> Body {
    const CHUNK: usize = 256 * 1024;
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    let counted = metrics.clone();
    let through_cache = frames.as_ref().is_some_and(|f| {
        matches!(&cat.bundles[blob.bundle].data, Data::Bundle { index, .. }
            if f.serves(index, blob.loc.offset + start, len))
    });
    let cost = if through_cache {
        SHARED_READER_MEMORY
    } else {
        READER_MEMORY
    } / MIB;
    tokio::spawn(async move {
        // Wait for room in the budget; a client gone meanwhile frees its place unread.
        let Ok(permit) = readers.acquire_many_owned(cost as u32).await else {
            return;
        };
        if tx.is_closed() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let result = super::send_blob(
                &cat.bundles[blob.bundle].data,
                &blob,
                start,
                len,
                verify,
                CHUNK,
                frames.as_deref(),
                |b| send(&tx, Ok(b)),
            );
            if let Err(e) = result {
                use crate::bundle::BundleError::{DigestMismatch, FrameMismatch};
                if matches!(e, DigestMismatch { .. } | FrameMismatch { .. }) {
                    Metrics::add(&metrics.verification_failures, 1);
                }
                // The body ends in an error: the connection is cut before the response completes.
                send(
                    &tx,
                    Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
                );
            }
        })
        .await;
    });
    ChannelBody(rx, counted).boxed()
}

/// How long a client may leave a response unread before its reader thread gives up: a
/// stalled or vanished client must not hold a blocking thread for the TCP timeout.
const STALL: std::time::Duration = std::time::Duration::from_secs(120);

/// Sends from a blocking thread; false when the client is gone or stalled.
fn send(tx: &tokio::sync::mpsc::Sender<io::Result<Bytes>>, item: io::Result<Bytes>) -> bool {
    let handle = tokio::runtime::Handle::current();
    matches!(
        handle.block_on(tokio::time::timeout(STALL, tx.send(item))),
        Ok(Ok(()))
    )
}

struct ChannelBody(tokio::sync::mpsc::Receiver<io::Result<Bytes>>, Arc<Metrics>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let metrics = self.1.clone();
        self.0.poll_recv(cx).map(|o| {
            o.map(|r| {
                r.map(|b| {
                    Metrics::add(&metrics.bytes_sent, b.len() as u64);
                    Frame::data(b)
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Ok((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Ok((90, 99)));
        assert_eq!(parse_range("bytes=50-1000", 100), Ok((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=5-4", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Err(()));
        assert_eq!(parse_range("items=0-1", 100), Err(()));
        assert_eq!(parse_range("bytes=-0", 100), Err(()));
        assert_eq!(parse_range("bytes=0-0", 0), Err(()));
        assert_eq!(
            parse_range("bytes=-5", 0),
            Err(()),
            "an empty blob has no suffix"
        );
    }

    #[test]
    fn pages() {
        let names: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let refs: Vec<&String> = names.iter().collect();
        let (p, link) = paginate(&refs, "n=2", "/v2/_catalog");
        assert_eq!(p, vec!["a", "b"]);
        assert_eq!(link.unwrap(), "</v2/_catalog?last=b&n=2>; rel=\"next\"");
        let (p, link) = paginate(&refs, "n=2&last=b", "/v2/_catalog");
        assert_eq!(p, vec!["c", "d"]);
        assert!(link.is_none());
        let (p, _) = paginate(&refs, "", "/v2/_catalog");
        assert_eq!(p.len(), 4);
    }
}
