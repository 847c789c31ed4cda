//! `airgap serve`: the read-only distribution API answered straight from a bundle. Driven
//! over real HTTP by reqwest (the raw API), by skopeo (an independent client) and by a CNCF
//! registry used as a pull-through cache of it; every answer checked by digest against the
//! source registry the bundle was packed from.

mod support;

use std::collections::BTreeSet;
use std::io::BufRead;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use support::*;

/// How long `serve` may take to answer `/v2/` (an old-style bundle is indexed first).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A layer of more than 3 MiB: it spans several 1 MiB frames of a seekable bundle. An odd
/// size, so that no range lines up with a frame by chance.
const BIG: u64 = 3 * 1024 * 1024 + 512 * 1024 + 4321;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

fn http_client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("build the test's HTTP client")
}

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

// ---------------------------------------------------------------------------------------
// The server under test

/// A running `airgap serve` on a loopback port; killed when dropped.
struct Served {
    proc: Option<RunningAirgap>,
    port: u16,
    http: Client,
}

impl Served {
    /// `airgap serve BUNDLE --listen 127.0.0.1:PORT EXTRA...` on a free port, once `/v2/`
    /// answers. A port lost to another test between the probe and the bind is retried.
    fn start(bundle: &Path, extra: &[&str]) -> Served {
        let http = http_client();
        let mut last = String::new();
        'attempt: for _ in 0..8 {
            let port = free_port();
            let mut a = args!["serve", bundle, "--listen", format!("127.0.0.1:{port}")];
            a.extend(extra.iter().map(|s| s.to_string()));
            let mut proc = AirgapCmd::new(&a).spawn();
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if proc.child.try_wait().unwrap().is_some() {
                    let out = proc.wait();
                    last = text_of(&out);
                    let t = last.to_lowercase();
                    if t.contains("cannot listen") && t.contains("in use") {
                        continue 'attempt;
                    }
                    panic!(
                        "airgap serve exited while starting ({}):\n{last}",
                        out.status
                    );
                }
                let probe = http
                    .get(format!("http://127.0.0.1:{port}/v2/"))
                    .timeout(Duration::from_secs(5))
                    .send();
                if let Ok(r) = probe {
                    // Not a test registry that won the port (those send this header).
                    let foreign = r.headers().contains_key("x-airgap-test-registry");
                    if r.status() == StatusCode::OK
                        && !foreign
                        && proc.child.try_wait().unwrap().is_none()
                    {
                        return Served {
                            proc: Some(proc),
                            port,
                            http,
                        };
                    }
                }
                if Instant::now() > deadline {
                    proc.kill();
                    let out = proc.wait();
                    panic!(
                        "airgap serve did not answer /v2/ within {READY_TIMEOUT:?}:\n{}",
                        text_of(&out)
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("could not start airgap serve on a free port after 8 tries:\n{last}");
    }

    /// `127.0.0.1:PORT`
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") {
            path.to_string()
        } else {
            format!("http://127.0.0.1:{}{path}", self.port)
        }
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    fn send(&self, rb: RequestBuilder, what: &str) -> Response {
        rb.send()
            .unwrap_or_else(|e| panic!("{what}: no answer from airgap serve: {e}"))
    }

    fn get(&self, path: &str) -> Response {
        self.send(self.req(Method::GET, path), &format!("GET {path}"))
    }

    fn head(&self, path: &str) -> Response {
        self.send(self.req(Method::HEAD, path), &format!("HEAD {path}"))
    }

    /// GET with a `Range` header.
    fn get_range(&self, path: &str, range: &str) -> Response {
        self.send(
            self.req(Method::GET, path).header("range", range),
            &format!("GET {path} Range: {range}"),
        )
    }

    /// Asserts a distribution-spec error: `status`, a JSON body whose first error has `code`.
    #[track_caller]
    fn assert_error(&self, method: Method, path: &str, status: StatusCode, code: &str) {
        let what = format!("{method} {path}");
        let resp = self.send(self.req(method.clone(), path), &what);
        assert_error_response(resp, &what, status, code, method == Method::HEAD);
    }

    /// Kills the server and returns what it printed.
    fn stop(mut self) -> Output {
        let mut p = self.proc.take().expect("running");
        p.kill();
        p.wait()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // On a failure, what serve said (its request log and errors) helps most.
        if let Some(mut p) = self.proc.take() {
            p.kill();
            let out = p.wait();
            if std::thread::panicking() {
                let err = stderr_of(&out);
                let lines: Vec<&str> = err.lines().collect();
                eprintln!(
                    "---- airgap serve on port {}: stdout ----\n{}---- last lines of its stderr ----\n{}\n----",
                    self.port,
                    stdout_of(&out),
                    lines[lines.len().saturating_sub(40)..].join("\n")
                );
            }
        }
    }
}

#[track_caller]
fn assert_error_response(resp: Response, what: &str, status: StatusCode, code: &str, head: bool) {
    let got = resp.status();
    let api = header(&resp, "docker-distribution-api-version");
    let ct = header(&resp, "content-type").unwrap_or_default();
    let text = resp.text().unwrap_or_default();
    assert_eq!(got, status, "{what}: status (body {text})");
    // (serve leaves the header out of its 405 answers; registries send it on every one.)
    if status != StatusCode::METHOD_NOT_ALLOWED {
        assert_eq!(
            api.as_deref(),
            Some("registry/2.0"),
            "{what}: Docker-Distribution-API-Version"
        );
    }
    if head {
        assert!(text.is_empty(), "{what}: a HEAD answer has a body: {text}");
        return;
    }
    assert!(
        ct.starts_with("application/json"),
        "{what}: Content-Type {ct:?}"
    );
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {text}"));
    assert_eq!(v["errors"][0]["code"], code, "{what}: {v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: error without a message: {v}"
    );
}

/// Reads a whole response body, panicking with `what` on error.
fn body_of(resp: Response, what: &str) -> Vec<u8> {
    resp.bytes()
        .unwrap_or_else(|e| panic!("{what}: reading the body: {e}"))
        .to_vec()
}

/// The blob as the source registry serves it.
fn source_blob(src: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    let resp = src
        .client()
        .request(Method::GET, &format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .unwrap_or_else(|e| panic!("GET {digest} from the source: {e}"));
    assert_eq!(resp.status(), StatusCode::OK, "{digest} at the source");
    let bytes = resp.bytes().unwrap().to_vec();
    assert_eq!(sha256_digest(&bytes), digest, "the source's {digest}");
    bytes
}

/// The target of a `Link: <URL>; rel="next"` header.
fn next_link(resp: &Response) -> Option<String> {
    let l = header(resp, "link")?;
    assert!(l.contains("rel=\"next\""), "Link header {l:?}");
    let start = l.find('<')? + 1;
    let end = l.find('>')?;
    Some(l[start..end].to_string())
}

fn json_strings(v: &Value) -> Vec<String> {
    match v {
        Value::Null => vec![],
        Value::Array(a) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .unwrap_or_else(|| panic!("not a string: {s}"))
                    .to_string()
            })
            .collect(),
        other => panic!("not a list: {other}"),
    }
}

fn file_sha256(p: &Path) -> String {
    sha256_digest(&std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())))
}

// ---------------------------------------------------------------------------------------
// skopeo against a plain-HTTP server that is not a harness `Registry`

fn skopeo_raw(reference: &str) -> Result<Vec<u8>, String> {
    let out = skopeo(&args![
        "inspect",
        "--raw",
        "--tls-verify=false",
        format!("docker://{reference}")
    ]);
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Asserts that skopeo reads a manifest of exactly `digest` at `reference`.
#[track_caller]
fn assert_served_digest(reference: &str, digest: &str) {
    let raw = skopeo_raw(reference)
        .unwrap_or_else(|e| panic!("skopeo inspect --raw {reference} failed: {e}"));
    assert_eq!(
        sha256_digest(&raw),
        digest,
        "{reference}: skopeo reads a manifest of another digest"
    );
}

/// `skopeo copy --all docker://REF oci:DIR:TAG`; with `preserve`, also checks that the
/// layout's index names `digest`. skopeo verifies every blob's digest while copying.
fn copy_to_oci(reference: &str, dir: &Path, digest: &str, preserve: bool) {
    let mut flags = args!["--all", "--src-tls-verify=false"];
    if preserve {
        flags.push("--preserve-digests".into());
    }
    skopeo_copy(
        &flags,
        &format!("docker://{reference}"),
        &format!("oci:{}:copied", dir.display()),
    )
    .unwrap_or_else(|e| panic!("copy {reference} to an OCI layout: {e}"));
    if preserve {
        let idx = read_json(&dir.join("index.json"));
        assert_eq!(
            idx["manifests"][0]["digest"], digest,
            "{reference}: the OCI layout skopeo wrote: {idx}"
        );
    }
}

/// `skopeo copy --all --preserve-digests docker://FROM docker://TO` (both plain HTTP).
fn copy_between(from: &str, to: &str) {
    skopeo_copy(
        &args![
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false"
        ],
        &format!("docker://{from}"),
        &format!("docker://{to}"),
    )
    .unwrap_or_else(|e| panic!("copy {from} -> {to}: {e}"));
}

// ---------------------------------------------------------------------------------------
// Bundles

/// A source registry with every fixture kind, a second tag on the single image and a
/// 3.5 MiB layer, packed into `bundle`.
struct Packed {
    src: Registry,
    fx: AllFixtures,
    /// `app/single:latest`, the same manifest as `fx.single`.
    latest: Image,
    /// `big/layer:1`: its last layer is [`BIG`] bytes of data.
    big: Image,
    _dir: tempfile::TempDir,
    bundle: PathBuf,
}

impl Packed {
    /// Every image of the bundle with the name replace mode gives it (`Image::repo`).
    fn images(&self) -> Vec<&Image> {
        let mut v = self.fx.all();
        v.push(&self.latest);
        v.push(&self.big);
        v
    }
    fn big_layer(&self) -> &BlobRef {
        self.big.blobs.last().unwrap()
    }
}

fn packed_fixtures() -> Packed {
    let src = Registry::start(RegistryOpts::plain());
    let fx = AllFixtures::push(&src, false);
    let f = Fixtures::new(&src);
    let latest = f.tag(&fx.single, "latest");
    let big = f.big_layer_image("big/layer", "1", BIG, 7);
    let dir = tempdir();
    let sh = src.host();
    let mut spec = Spec::new();
    for img in fx.all() {
        spec = spec.image(&fx.spec_ref(img, &sh));
    }
    spec = spec
        .image(&latest.reference(&sh))
        .image(&big.reference(&sh));
    let spec = spec.write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, mirror_flags(&src, &["docker.io"]));
    Packed {
        src,
        fx,
        latest,
        big,
        _dir: dir,
        bundle,
    }
}

/// A smaller set: `app/single:1.0` and `big/layer:1`. The single image's six 48 KiB layers
/// are small enough to share a frame: pack writes them right after the big layer, in the
/// frame where it ends, so that frame goes on for about 300 KiB after the layer's last byte.
struct Small {
    src: Registry,
    single: Image,
    big: Image,
    dir: tempfile::TempDir,
    spec: PathBuf,
}

impl Small {
    fn images(&self) -> Vec<&Image> {
        vec![&self.single, &self.big]
    }
    fn big_layer(&self) -> &BlobRef {
        self.big.blobs.last().unwrap()
    }
    fn pack(&self, name: &str, extra: &[&str]) -> PathBuf {
        let bundle = self.dir.path().join(name);
        let mut flags = self.src.source_flags();
        flags.extend(extra.iter().map(|s| s.to_string()));
        pack_ok(&self.spec, &bundle, flags);
        bundle
    }
}

fn small_fixtures() -> Small {
    let src = Registry::start(RegistryOpts::plain());
    let f = Fixtures::new(&src);
    let single = f.image(
        "app/single",
        Some("1.0"),
        &ImageOpts::oci(61).layers(6, 48 * 1024),
    );
    let big = f.big_layer_image("big/layer", "1", BIG, 62);
    let dir = tempdir();
    let sh = src.host();
    let spec = Spec::new()
        .image(&single.reference(&sh))
        .image(&big.reference(&sh))
        .write(dir.path());
    Small {
        src,
        single,
        big,
        dir,
        spec,
    }
}

/// Checks what every bundle served must give: each image by tag and digest through skopeo,
/// a copy to an OCI layout (every blob verified by skopeo), the big layer whole and a range
/// of it across frames, byte for byte the source's.
fn assert_serves_small(s: &Small, sv: &Served) {
    let sh = sv.host();
    let out = tempdir();
    for (i, img) in s.images().into_iter().enumerate() {
        assert_served_digest(&img.reference(&sh), &img.digest);
        assert_served_digest(&img.by_digest(&sh), &img.digest);
        copy_to_oci(
            &img.reference(&sh),
            &out.path().join(format!("oci-{i}")),
            &img.digest,
            true,
        );
    }
    let layer = s.big_layer();
    let want = source_blob(&s.src, &s.big.repo, &layer.digest);
    let path = format!("/v2/{}/blobs/{}", s.big.repo, layer.digest);
    let r = sv.get(&path);
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    let got = body_of(r, &path);
    assert_eq!(got.len(), want.len(), "GET {path}: length");
    assert!(got == want, "GET {path}: not the source's bytes");
    let (a, b) = (1_048_000u64, 2_600_123u64);
    let r = sv.get_range(&path, &format!("bytes={a}-{b}"));
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "GET {path} range");
    assert_eq!(
        header(&r, "content-range").as_deref(),
        Some(format!("bytes {a}-{b}/{}", layer.size).as_str())
    );
    let got = body_of(r, &path);
    assert!(
        got == want[a as usize..=b as usize],
        "GET {path} bytes={a}-{b}: {} bytes, not the source's",
        got.len()
    );
}

// ---------------------------------------------------------------------------------------
// Tests

/// (1) Every fixture kind, pulled from serve by skopeo by tag and by digest, copied out to
/// an OCI layout and into a registry: every digest is the source's. The startup listing
/// names each image as `load` would, and each request is logged.
#[test]
fn skopeo_pulls_every_fixture_kind_from_serve_by_tag_and_digest() {
    let p = packed_fixtures();
    let sv = Served::start(&p.bundle, &[]);
    let sh = sv.host();
    let tgt = Registry::start(RegistryOpts::plain());
    let th = tgt.host();
    let copies = tempdir();
    for (i, img) in p.images().into_iter().enumerate() {
        // By tag (by digest for the digest-only image), then by digest, children too.
        assert_served_digest(&img.reference(&sh), &img.digest);
        assert_served_digest(&img.by_digest(&sh), &img.digest);
        for child in &img.children {
            assert_served_digest(&child.by_digest(&sh), &child.digest);
        }
        // An OCI layout keeps Docker media types only by converting them.
        let oci = img.media_type.starts_with("application/vnd.oci.");
        copy_to_oci(
            &img.reference(&sh),
            &copies.path().join(format!("oci-{i}")),
            &img.digest,
            oci,
        );
        let dst_tag = img.tag.clone().unwrap_or_else(|| "copied".into());
        copy_between(&img.reference(&sh), &format!("{th}/{}:{dst_tag}", img.repo));
        assert_skopeo_digest(&img.by_digest(&th), &tgt, &img.digest);
        assert_skopeo_digest(&format!("{th}/{}:{dst_tag}", img.repo), &tgt, &img.digest);
        let c = tgt.client();
        for b in img
            .blobs
            .iter()
            .chain(img.children.iter().flat_map(|c| &c.blobs))
        {
            assert_eq!(
                c.blob_size(&img.repo, &b.digest),
                Some(b.size),
                "blob {} of {} in the target",
                b.digest,
                img.repo
            );
        }
    }

    let out = sv.stop();
    let stdout = stdout_of(&out);
    let stderr = stderr_of(&out);
    assert_eq!(
        stdout.lines().next(),
        Some(format!("listening on {sh}").as_str()),
        "first line of stdout:\n{stdout}"
    );
    // Exactly one line per image: the hub image as `library/redis:7`, the others without
    // the source host.
    let listed: BTreeSet<&str> = stdout
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    let want: Vec<String> = p.images().iter().map(|i| i.reference(&sh)).collect();
    assert_eq!(
        listed,
        want.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        "the names listed at startup:\n{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "GET /v2/{}/manifests/{} -> 200",
            p.fx.single.repo, p.fx.single.digest
        )),
        "no request log line for the manifest GET:\n{stderr}"
    );
    assert!(
        !stderr.to_lowercase().contains("seek table"),
        "a freshly packed bundle was served without its seek table:\n{stderr}"
    );
}

/// (2) The raw API, request by request, against what the source registry holds.
#[test]
fn raw_api_answers_like_a_read_only_registry() {
    let p = packed_fixtures();
    let sv = Served::start(&p.bundle, &[]);

    // /v2/
    let r = sv.get("/v2/");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );

    // Manifests: HEAD and GET, by tag and by digest, children of indexes by digest.
    let mut manifests: Vec<(&Image, String, String)> = Vec::new();
    for img in p.images() {
        if let Some(t) = &img.tag {
            manifests.push((img, img.repo.clone(), t.clone()));
        }
        manifests.push((img, img.repo.clone(), img.digest.clone()));
        for c in &img.children {
            manifests.push((c, img.repo.clone(), c.digest.clone()));
        }
    }
    for (img, repo, reference) in &manifests {
        let path = format!("/v2/{repo}/manifests/{reference}");
        for method in [Method::HEAD, Method::GET] {
            let what = format!("{method} {path}");
            let r = sv.send(sv.req(method.clone(), &path), &what);
            assert_eq!(r.status(), StatusCode::OK, "{what}");
            assert_eq!(
                header(&r, "content-length"),
                Some(img.manifest.len().to_string()),
                "{what}: Content-Length"
            );
            assert_eq!(
                header(&r, "docker-content-digest").as_deref(),
                Some(img.digest.as_str()),
                "{what}: Docker-Content-Digest"
            );
            assert_eq!(
                header(&r, "content-type").as_deref(),
                Some(img.media_type.as_str()),
                "{what}: Content-Type"
            );
            let body = body_of(r, &what);
            if method == Method::HEAD {
                assert!(body.is_empty(), "{what}: {} bytes of body", body.len());
            } else {
                assert_eq!(
                    sha256_digest(&body),
                    img.digest,
                    "{what}: digest of the body"
                );
                assert!(body == img.manifest, "{what}: not the source's bytes");
            }
        }
    }

    // Blobs: every config and layer of the single image, whole, equal to the source's.
    let single = &p.fx.single;
    for b in &single.blobs {
        let path = format!("/v2/{}/blobs/{}", single.repo, b.digest);
        let r = sv.get(&path);
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        assert_eq!(
            header(&r, "docker-content-digest").as_deref(),
            Some(b.digest.as_str()),
            "GET {path}"
        );
        let got = body_of(r, &path);
        assert!(
            got == source_blob(&p.src, &single.repo, &b.digest),
            "GET {path}: not the source's bytes"
        );
    }
    // A manifest is a blob of its repository too.
    let path = format!("/v2/{}/blobs/{}", single.repo, single.digest);
    let r = sv.get(&path);
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    assert!(body_of(r, &path) == single.manifest, "GET {path}");

    // The big layer: HEAD, whole, and ranges across its frames.
    let layer = p.big_layer();
    let want = source_blob(&p.src, &p.big.repo, &layer.digest);
    assert_eq!(want.len() as u64, layer.size);
    let size = layer.size;
    let big_path = format!("/v2/{}/blobs/{}", p.big.repo, layer.digest);
    let path = big_path.clone();
    let r = sv.head(&path);
    assert_eq!(r.status(), StatusCode::OK, "HEAD {path}");
    assert_eq!(header(&r, "content-length"), Some(size.to_string()));
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(layer.digest.as_str())
    );
    assert!(body_of(r, &path).is_empty(), "HEAD {path} has a body");
    let r = sv.get(&path);
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    assert_eq!(header(&r, "content-length"), Some(size.to_string()));
    let got = body_of(r, &path);
    assert_eq!(sha256_digest(&got), layer.digest, "GET {path}");
    assert!(got == want, "GET {path}: not the source's bytes");

    let ranges: Vec<(String, u64, u64)> = vec![
        // The middle, across at least one frame boundary.
        ("bytes=1000003-2700001".into(), 1_000_003, 2_700_001),
        // Open-ended.
        ("bytes=3000000-".into(), 3_000_000, size - 1),
        // A suffix.
        ("bytes=-100".into(), size - 100, size - 1),
        // One byte, the last.
        (
            format!("bytes={}-{}", size - 1, size - 1),
            size - 1,
            size - 1,
        ),
        // The first bytes, an end past the blob clamped.
        (format!("bytes=0-{}", size + 1000), 0, size - 1),
    ];
    for (range, a, b) in ranges {
        let what = format!("GET {path} Range: {range}");
        let r = sv.get_range(&path, &range);
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{what}");
        assert_eq!(
            header(&r, "content-range"),
            Some(format!("bytes {a}-{b}/{size}")),
            "{what}: Content-Range"
        );
        assert_eq!(
            header(&r, "content-length"),
            Some((b - a + 1).to_string()),
            "{what}: Content-Length"
        );
        let got = body_of(r, &what);
        assert_eq!(got.len() as u64, b - a + 1, "{what}: length");
        assert!(
            got == want[a as usize..=b as usize],
            "{what}: not those bytes of the source's blob"
        );
    }
    for range in [format!("bytes={size}-"), "bytes=500-400".to_string()] {
        let what = format!("GET {path} Range: {range}");
        let r = sv.get_range(&path, &range);
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{what}");
        assert_eq!(
            header(&r, "content-range"),
            Some(format!("bytes */{size}")),
            "{what}"
        );
    }

    // _catalog: exactly the repositories of the bundle, in order, also page by page.
    let want_repos: Vec<String> = p
        .images()
        .iter()
        .map(|i| i.repo.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let r = sv.get("/v2/_catalog");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(next_link(&r).is_none(), "a complete catalog with a Link");
    let v: Value = r.json().unwrap();
    assert_eq!(json_strings(&v["repositories"]), want_repos, "{v}");
    for n in [1usize, 3] {
        let mut pages = Vec::new();
        let mut next = Some(format!("/v2/_catalog?n={n}"));
        while let Some(url) = next {
            assert!(
                pages.len() <= want_repos.len(),
                "pagination does not end: {pages:?}"
            );
            let r = sv.get(&url);
            assert_eq!(r.status(), StatusCode::OK, "GET {url}");
            next = next_link(&r);
            let v: Value = r.json().unwrap();
            let page = json_strings(&v["repositories"]);
            assert!(
                page.len() == n || (next.is_none() && !page.is_empty() && page.len() <= n),
                "GET {url}: {page:?} (n={n})"
            );
            pages.push(page);
        }
        let all: Vec<String> = pages.concat();
        assert_eq!(all, want_repos, "catalog walked with n={n}: {pages:?}");
    }

    // tags/list
    for img in p.images() {
        let path = format!("/v2/{}/tags/list", img.repo);
        let r = sv.get(&path);
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        let v: Value = r.json().unwrap();
        assert_eq!(v["name"], img.repo.as_str(), "GET {path}: {v}");
        let want: Vec<String> = match &img.tag {
            Some(_) if img.repo == single.repo => vec!["1.0".into(), "latest".into()],
            Some(t) => vec![t.clone()],
            None => vec![],
        };
        assert_eq!(json_strings(&v["tags"]), want, "GET {path}: {v}");
    }
    let path = format!("/v2/{}/tags/list?n=1", single.repo);
    let r = sv.get(&path);
    let link = next_link(&r).unwrap_or_else(|| panic!("GET {path}: no Link"));
    let v: Value = r.json().unwrap();
    assert_eq!(json_strings(&v["tags"]), vec!["1.0"], "GET {path}");
    let r = sv.get(&link);
    assert!(
        next_link(&r).is_none(),
        "GET {link}: a Link after the last tag"
    );
    let v: Value = r.json().unwrap();
    assert_eq!(json_strings(&v["tags"]), vec!["latest"], "GET {link}");

    // Errors.
    let zeros = format!("sha256:{}", "0".repeat(64));
    let redis = &p.fx.hub;
    let shared = &p.fx.shared;
    let nf = StatusCode::NOT_FOUND;
    let g = Method::GET;
    let cases: Vec<(Method, String, StatusCode, &str)> = vec![
        (
            g.clone(),
            "/v2/no/such/manifests/1".into(),
            nf,
            "NAME_UNKNOWN",
        ),
        (
            g.clone(),
            format!("/v2/no/such/blobs/{}", layer.digest),
            nf,
            "NAME_UNKNOWN",
        ),
        (
            g.clone(),
            "/v2/no/such/tags/list".into(),
            nf,
            "NAME_UNKNOWN",
        ),
        // A prefix of a repository's name is not that repository.
        (
            g.clone(),
            "/v2/app/manifests/1.0".into(),
            nf,
            "NAME_UNKNOWN",
        ),
        (
            g.clone(),
            "/v2/app/single/manifests/9.9".into(),
            nf,
            "MANIFEST_UNKNOWN",
        ),
        (
            Method::HEAD,
            "/v2/app/single/manifests/9.9".into(),
            nf,
            "MANIFEST_UNKNOWN",
        ),
        (
            g.clone(),
            format!("/v2/app/single/manifests/{zeros}"),
            nf,
            "MANIFEST_UNKNOWN",
        ),
        // Another repository's manifest, and its tag.
        (
            g.clone(),
            format!("/v2/app/single/manifests/{}", redis.digest),
            nf,
            "MANIFEST_UNKNOWN",
        ),
        (
            g.clone(),
            "/v2/app/single/manifests/7".into(),
            nf,
            "MANIFEST_UNKNOWN",
        ),
        (
            g.clone(),
            format!("/v2/app/single/blobs/{zeros}"),
            nf,
            "BLOB_UNKNOWN",
        ),
        // Blobs in the bundle, but of other repositories.
        (
            g.clone(),
            format!("/v2/app/single/blobs/{}", layer.digest),
            nf,
            "BLOB_UNKNOWN",
        ),
        (
            Method::HEAD,
            format!("/v2/app/single/blobs/{}", layer.digest),
            nf,
            "BLOB_UNKNOWN",
        ),
        (
            g.clone(),
            format!("/v2/{}/blobs/{}", redis.repo, single.blobs[1].digest),
            nf,
            "BLOB_UNKNOWN",
        ),
        (
            g.clone(),
            format!("/v2/{}/blobs/{}", redis.repo, single.digest),
            nf,
            "BLOB_UNKNOWN",
        ),
        (
            g.clone(),
            "/v2/app/single/blobs/sha256:xyz".into(),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            g.clone(),
            format!("/v2/app/single/blobs/sha256:{}", "a".repeat(63)),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            g.clone(),
            "/v2/app/single/blobs/notadigest".into(),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
    ];
    for (method, path, status, code) in cases {
        sv.assert_error(method, &path, status, code);
    }
    // The base layer the two shared images have in common is served by both.
    let base = &shared[0].blobs[1];
    assert_eq!(
        base, &shared[1].blobs[1],
        "the shared fixtures share no base"
    );
    for img in shared {
        let path = format!("/v2/{}/blobs/{}", img.repo, base.digest);
        let r = sv.get(&path);
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        assert_eq!(sha256_digest(&body_of(r, &path)), base.digest, "GET {path}");
    }

    // Writes are refused and change nothing.
    let bundle_before = file_sha256(&p.bundle);
    let writes: Vec<(Method, String, Vec<u8>)> = vec![
        (
            Method::PUT,
            format!("/v2/{}/manifests/1.0", single.repo),
            redis.manifest.clone(),
        ),
        (
            Method::PUT,
            "/v2/brand/new/manifests/1".into(),
            redis.manifest.clone(),
        ),
        (
            Method::DELETE,
            format!("/v2/{}/manifests/{}", single.repo, single.digest),
            vec![],
        ),
        (
            Method::POST,
            format!("/v2/{}/blobs/uploads/", single.repo),
            vec![],
        ),
        (
            Method::POST,
            format!(
                "/v2/{}/blobs/uploads/?mount={}&from={}",
                single.repo, layer.digest, p.big.repo
            ),
            vec![],
        ),
        (
            Method::PATCH,
            format!("/v2/{}/blobs/uploads/x", single.repo),
            b"data".to_vec(),
        ),
        (
            Method::DELETE,
            format!("/v2/{}/blobs/{}", single.repo, single.blobs[1].digest),
            vec![],
        ),
    ];
    for (method, path, body) in writes {
        let what = format!("{method} {path}");
        let mut rb = sv.req(method.clone(), &path).body(body);
        if path.contains("/manifests/") {
            rb = rb.header("content-type", &redis.media_type);
        }
        let r = sv.send(rb, &what);
        assert_error_response(
            r,
            &what,
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            false,
        );
    }
    let m = sv.get(&format!("/v2/{}/manifests/1.0", single.repo));
    assert_eq!(
        header(&m, "docker-content-digest").as_deref(),
        Some(single.digest.as_str()),
        "app/single:1.0 after a refused PUT"
    );
    assert!(body_of(m, "GET app/single:1.0") == single.manifest);
    let r = sv.head(&format!(
        "/v2/{}/blobs/{}",
        single.repo, single.blobs[1].digest
    ));
    assert_eq!(r.status(), StatusCode::OK, "a layer after a refused DELETE");
    sv.assert_error(Method::GET, "/v2/brand/new/manifests/1", nf, "NAME_UNKNOWN");
    let v: Value = sv.get("/v2/_catalog").json().unwrap();
    assert_eq!(
        json_strings(&v["repositories"]),
        want_repos,
        "catalog after the writes"
    );
    assert_eq!(
        file_sha256(&p.bundle),
        bundle_before,
        "the bundle file changed"
    );

    // Every request was logged, with its status.
    let out = sv.stop();
    let stderr = stderr_of(&out);
    for line in [
        format!("HEAD /v2/{}/manifests/1.0 -> 200", single.repo),
        "GET /v2/no/such/manifests/1 -> 404".to_string(),
        "GET /v2/app/single/blobs/sha256:xyz -> 400".to_string(),
        format!("PUT /v2/{}/manifests/1.0 -> 405", single.repo),
        format!("GET {big_path} -> 206"),
    ] {
        assert!(stderr.contains(&line), "no log line {line:?}:\n{stderr}");
    }
}

/// (3) `--mode prefix --path mirror` and `--mode flatten --path flat` serve the names
/// `load --registry HOST/PATH --mode M` gives (checked against load's image map), and not
/// the replace-mode names. `-q` prints only the address.
#[test]
fn naming_modes_and_path_rename_what_is_served() {
    let src = Registry::start(RegistryOpts::plain());
    let f = Fixtures::new(&src);
    let redis = f.image("library/redis", Some("7"), &ImageOpts::oci(71));
    let tool = f.image("acme/tool", Some("1"), &ImageOpts::docker(72));
    let dir = tempdir();
    let spec = Spec::new()
        .image("redis:7")
        .image(&tool.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, mirror_flags(&src, &["docker.io"]));
    let src_as_path = src.host().replace(':', "_");

    let tgt = Registry::start(RegistryOpts::plain());
    let cases: Vec<(&str, &str, [String; 2])> = vec![
        (
            "prefix",
            "mirror",
            [
                "mirror/docker.io/library/redis:7".to_string(),
                format!("mirror/{src_as_path}/acme/tool:1"),
            ],
        ),
        (
            "flatten",
            "flat",
            ["flat/redis:7".to_string(), "flat/tool:1".to_string()],
        ),
    ];
    for (mode, path, [redis_at, tool_at]) in cases {
        // What load names them.
        let map = dir.path().join(format!("map-{mode}.json"));
        assert_success(&airgap(
            args![
                "load",
                &bundle,
                "--registry",
                format!("{}/{path}", tgt.host()),
                "--mode",
                mode,
                tgt.target_flags(),
                "--image-map",
                &map
            ],
            &[],
        ));
        let mut loaded = BTreeSet::new();
        for e in read_json(&map)["images"].as_array().unwrap() {
            let t = e["target"].as_str().unwrap();
            let name = t
                .strip_prefix(&format!("{}/", tgt.host()))
                .unwrap_or_else(|| panic!("load's target {t} is not in the target registry"));
            loaded.insert(name.to_string());
        }
        assert_eq!(
            loaded,
            BTreeSet::from([redis_at.clone(), tool_at.clone()]),
            "load --mode {mode} named them"
        );

        let quiet = mode == "flatten";
        let mut flags = vec!["--mode", mode, "--path", path];
        if quiet {
            flags.push("-q");
        }
        let sv = Served::start(&bundle, &flags);
        let sh = sv.host();
        assert_served_digest(&format!("{sh}/{redis_at}"), &redis.digest);
        assert_served_digest(&format!("{sh}/{tool_at}"), &tool.digest);
        let redis_repo = redis_at.rsplit_once(':').unwrap().0;
        let tool_repo = tool_at.rsplit_once(':').unwrap().0;
        assert_served_digest(
            &format!("{sh}/{redis_repo}@{}", redis.digest),
            &redis.digest,
        );
        let v: Value = sv.get("/v2/_catalog").json().unwrap();
        let mut want = vec![redis_repo.to_string(), tool_repo.to_string()];
        want.sort();
        assert_eq!(
            json_strings(&v["repositories"]),
            want,
            "catalog, mode {mode}"
        );
        let path_l = format!("/v2/{tool_repo}/blobs/{}", tool.blobs[1].digest);
        let r = sv.get(&path_l);
        assert_eq!(r.status(), StatusCode::OK, "GET {path_l}");
        assert_eq!(sha256_digest(&body_of(r, &path_l)), tool.blobs[1].digest);
        let v: Value = sv
            .get(&format!("/v2/{tool_repo}/tags/list"))
            .json()
            .unwrap();
        assert_eq!(json_strings(&v["tags"]), vec!["1"], "mode {mode}: {v}");
        // The replace-mode names (and the names without the path) are not served.
        for old in [
            "library/redis".to_string(),
            "acme/tool".to_string(),
            redis_repo
                .strip_prefix(&format!("{path}/"))
                .unwrap()
                .to_string(),
        ] {
            sv.assert_error(
                Method::GET,
                &format!("/v2/{old}/manifests/{}", redis.digest),
                StatusCode::NOT_FOUND,
                "NAME_UNKNOWN",
            );
        }
        assert!(
            skopeo_raw(&format!("{sh}/library/redis:7")).is_err(),
            "mode {mode}: library/redis:7 is served"
        );

        let out = sv.stop();
        let stdout = stdout_of(&out);
        let stderr = stderr_of(&out);
        if quiet {
            assert_eq!(
                stdout,
                format!("listening on {sh}\n"),
                "-q prints only the address"
            );
            assert!(!stderr.contains("/v2/"), "-q logs requests:\n{stderr}");
        } else {
            assert_eq!(
                stdout.lines().next(),
                Some(format!("listening on {sh}").as_str())
            );
            for n in [&redis_at, &tool_at] {
                assert!(
                    stdout.contains(&format!("{sh}/{n}")),
                    "{n} not listed:\n{stdout}"
                );
            }
            assert!(stderr.contains("GET /v2/_catalog -> 200"), "{stderr}");
        }
    }
}

/// `--listen 127.0.0.1:0` picks a free port and the first line of stdout names it.
#[test]
fn listen_on_port_zero_prints_the_port_it_got() {
    let src = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&src).image("app/zero", Some("1"), &ImageOpts::oci(81));
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("b.tar.zst");
    pack_ok(&spec, &bundle, src.source_flags());

    let mut child = Command::new(AIRGAP)
        .args(args!["serve", &bundle, "--listen", "127.0.0.1:0", "-q"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start airgap");
    let watchdog = support::registry::watchdog(child.id());
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(READY_TIMEOUT);
    let result = (|| {
        let line = line.map_err(|_| "no line on stdout in time".to_string())?;
        let addr = line
            .trim_end()
            .strip_prefix("listening on ")
            .ok_or(format!("first line {line:?}"))?
            .to_string();
        let port: u16 = addr
            .strip_prefix("127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .ok_or(format!("address {addr:?}"))?;
        if port == 0 {
            return Err("printed port 0".to_string());
        }
        // It already answers: the address is printed once bound.
        let raw = skopeo_raw(&format!("{addr}/app/zero:1"))?;
        Ok(sha256_digest(&raw))
    })();
    if let Some(mut w) = watchdog {
        let _ = w.kill();
        let _ = w.wait();
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(result, Ok(img.digest.clone()));
}

/// (4) A CNCF registry as a pull-through cache of serve: images pulled through it keep
/// their digests, and serve's log shows the cache fetched them from it.
#[test]
fn distribution_registry_pulls_through_serve() {
    let src = Registry::start(RegistryOpts::plain());
    let f = Fixtures::new(&src);
    let redis = f.image(
        "library/redis",
        Some("7"),
        &ImageOpts::oci(91).layers(2, 300_000),
    );
    let list = f.docker_list("multi/docker-list", "v1", 92);
    let index = f.oci_index("multi/oci-index", "v1", 93);
    let dir = tempdir();
    let spec = Spec::new()
        .image("redis:7")
        .image(&list.reference(&src.host()))
        .image(&index.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, mirror_flags(&src, &["docker.io"]));
    let sv = Served::start(&bundle, &[]);
    let cache = Registry::start(RegistryOpts::pull_through(&format!("http://{}", sv.host())));
    let ch = cache.host();

    let tgt = Registry::start(RegistryOpts::plain());
    let out = tempdir();
    for (i, img) in [&redis, &list, &index].into_iter().enumerate() {
        let via = img.reference(&ch);
        assert_served_digest(&via, &img.digest);
        copy_between(&via, &img.reference(&tgt.host()));
        assert_skopeo_digest(&img.reference(&tgt.host()), &tgt, &img.digest);
        for c in &img.children {
            assert_skopeo_digest(&c.by_digest(&tgt.host()), &tgt, &c.digest);
            assert_served_digest(&c.by_digest(&ch), &c.digest);
        }
        if !img.is_index() {
            copy_to_oci(
                &img.by_digest(&ch),
                &out.path().join(format!("oci-{i}")),
                &img.digest,
                true,
            );
        }
    }
    let log = stderr_of(&sv.stop());
    for b in &redis.blobs {
        assert!(
            log.contains(&format!("GET /v2/library/redis/blobs/{} -> 200", b.digest)),
            "the cache did not fetch {} from serve:\n{log}\n--- cache log ---\n{}",
            b.digest,
            cache.log()
        );
    }
}

/// (5) A bundle recompressed by `zstd -d | zstd` has no seek table: it is still served,
/// with a warning naming it.
#[test]
fn old_style_bundle_without_seek_table_is_served_with_a_warning() {
    let s = small_fixtures();
    let bundle = s.pack("new.tar.zst", &[]);
    let tar = s.dir.path().join("plain.tar");
    zstd_decompress(&bundle, &tar);
    let old = s.dir.path().join("old-style.tar.zst");
    let out = Command::new("zstd")
        .args(["-q", "-f", "-3", "-o"])
        .arg(&old)
        .arg(&tar)
        .output()
        .expect("run zstd");
    assert!(
        out.status.success(),
        "zstd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(
        file_sha256(&old),
        file_sha256(&bundle),
        "recompression changed nothing"
    );

    let sv = Served::start(&old, &[]);
    assert_serves_small(&s, &sv);
    let out = sv.stop();
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("warning")
            && stderr.contains("seek table")
            && stderr.contains("old-style.tar.zst"),
        "no warning naming the bundle without a seek table:\n{stderr}"
    );

    // The bundle as packed gives no such warning.
    let sv = Served::start(&bundle, &[]);
    assert_served_digest(&s.single.reference(&sv.host()), &s.single.digest);
    let stderr = stderr_of(&sv.stop());
    assert!(!stderr.contains("seek table"), "{stderr}");
}

/// (6) A split bundle is served from its first part (and from any other), blobs read across
/// part boundaries.
#[test]
fn split_bundle_is_served_from_its_first_part() {
    let s = small_fixtures();
    let split_dir = s.dir.path().join("split");
    std::fs::create_dir(&split_dir).unwrap();
    let out = airgap(
        args![
            "pack",
            &s.spec,
            "-o",
            split_dir.join("b.tar.zst"),
            "--split",
            "1MiB",
            s.src.source_flags()
        ],
        &[],
    );
    assert_success(&out);
    let parts: Vec<String> = dir_names(&split_dir)
        .into_iter()
        .filter(|n| !n.ends_with(".json"))
        .collect();
    assert!(parts.len() >= 3, "expected several parts: {parts:?}");
    assert_eq!(parts[0], "b.tar.zst.001");

    let sv = Served::start(&split_dir.join("b.tar.zst.001"), &[]);
    assert_serves_small(&s, &sv);
    let tgt = Registry::start(RegistryOpts::plain());
    for img in s.images() {
        copy_between(&img.reference(&sv.host()), &img.reference(&tgt.host()));
        assert_skopeo_digest(&img.reference(&tgt.host()), &tgt, &img.digest);
    }
    drop(sv);

    let sv = Served::start(&split_dir.join("b.tar.zst.002"), &["-q"]);
    for img in s.images() {
        assert_served_digest(&img.reference(&sv.host()), &img.digest);
    }
}

/// Asserts that a whole-blob GET does not complete with a full, successful body.
fn assert_blob_get_cut(sv: &Served, repo: &str, blob: &BlobRef, case: &str) {
    let path = format!("/v2/{repo}/blobs/{}", blob.digest);
    match sv.req(Method::GET, &path).send() {
        Err(_) => {}
        Ok(r) => {
            let status = r.status();
            match r.bytes() {
                Err(_) => {}
                Ok(b) if !status.is_success() => {
                    // An error status is acceptable too, as long as it is not the blob.
                    assert_ne!(sha256_digest(&b), blob.digest);
                }
                Ok(b) => panic!(
                    "{case}: GET {path} of a damaged blob completed: HTTP {status}, {} of {} \
                     bytes, hashing to {} instead of {}",
                    b.len(),
                    blob.size,
                    sha256_digest(&b),
                    blob.digest
                ),
            }
        }
    }
}

/// Asserts the other blobs and manifests of a damaged bundle are still served, and the server
/// still answers after cutting a connection.
fn assert_rest_served(s: &Small, sv: &Served) {
    let r = sv.get("/v2/");
    assert_eq!(r.status(), StatusCode::OK, "serve no longer answers");
    for img in s.images() {
        assert_served_digest(&img.reference(&sv.host()), &img.digest);
    }
    let good: Vec<(&str, &BlobRef)> = s
        .single
        .blobs
        .iter()
        .map(|b| (s.single.repo.as_str(), b))
        .chain(s.big.blobs[..2].iter().map(|b| (s.big.repo.as_str(), b)))
        .collect();
    for (repo, b) in good {
        let path = format!("/v2/{repo}/blobs/{}", b.digest);
        let r = sv.get(&path);
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        assert_eq!(sha256_digest(&body_of(r, &path)), b.digest, "GET {path}");
    }
}

/// (7) A byte flipped inside a layer, in a bundle rewritten as one zstd stream (what
/// `flip_byte_in_blob` writes: no seek table any more): the layer's whole-blob GET never
/// completes successfully, and every other blob is still served.
#[test]
fn damaged_layer_in_a_rewritten_bundle_is_never_served_whole() {
    let s = small_fixtures();
    let bundle = s.pack("good.tar.zst", &[]);
    let layer = s.big_layer().clone();
    let bad = s.dir.path().join("flipped.tar.zst");
    flip_byte_in_blob(&bundle, &bad, &layer.digest);
    let sv = Served::start(&bad, &[]);
    assert_blob_get_cut(&sv, &s.big.repo, &layer, "rewritten bundle");
    assert_rest_served(&s, &sv);
}

/// (7) The same in the seekable bundle itself: one byte flipped where the layer's data is
/// stored (the layer is incompressible, so zstd keeps it verbatim and 64 bytes of it can be
/// found in the file); the seek table is left intact. Once in the middle of the layer (in a
/// frame the read goes through to its end, so zstd's frame checksum fails mid-body), once
/// near its end (in the frame where the layer ends and the small layers follow: the read
/// stops before that frame's checksum, and only serve's own hash of the blob can tell).
#[test]
fn damaged_layer_in_a_seekable_bundle_is_never_served_whole() {
    let s = small_fixtures();
    let bundle = s.pack("good.tar.zst", &[]);
    let layer = s.big_layer().clone();
    let want = source_blob(&s.src, &s.big.repo, &layer.digest);
    let packed = std::fs::read(&bundle).unwrap();
    for (name, at) in [("middle", want.len() / 2), ("end", want.len() - 2000)] {
        let needle = &want[at..at + 64];
        let pos = packed
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("the layer's data stored verbatim in the bundle");
        let mut bytes = packed.clone();
        bytes[pos + 10] ^= 0x01;
        let bad = s.dir.path().join(format!("flipped-{name}.tar.zst"));
        std::fs::write(&bad, &bytes).unwrap();
        let sv = Served::start(&bad, &[]);
        assert_blob_get_cut(
            &sv,
            &s.big.repo,
            &layer,
            &format!("byte flipped near the {name}"),
        );
        assert_rest_served(&s, &sv);
        let stderr = stderr_of(&sv.stop());
        assert!(
            !stderr.contains("seek table"),
            "the damaged seekable bundle lost its seek table:\n{stderr}"
        );
    }
}

/// (8) Bad input: each refused at once with a message naming the file, path or address.
#[test]
fn bad_input_is_refused_with_a_clear_message() {
    let src = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&src).image("app/bad", Some("1"), &ImageOpts::oci(101));
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("good.tar.zst");
    pack_ok(&spec, &bundle, src.source_flags());
    let run = |a: Vec<String>| AirgapCmd::new(a).timeout(Duration::from_secs(60)).run();
    let listen = |port: u16| format!("127.0.0.1:{port}");

    // A missing file.
    let missing = dir.path().join("missing-bundle.tar.zst");
    let out = run(args!["serve", &missing, "--listen", listen(0)]);
    assert_failure_contains(&out, &["missing-bundle.tar.zst"]);

    // Not a bundle: text, and a zstd stream of text.
    let text = write_file(
        dir.path(),
        "notes.tar.zst",
        &"not a bundle at all\n".repeat(200),
    );
    let out = run(args!["serve", &text, "--listen", listen(0)]);
    assert_failure_contains(&out, &["notes.tar.zst"]);
    let txt = write_file(dir.path(), "notes.txt", &"hello world\n".repeat(200));
    let zst = dir.path().join("text-only.tar.zst");
    let z = Command::new("zstd")
        .args(["-q", "-f", "-o"])
        .arg(&zst)
        .arg(&txt)
        .output()
        .expect("run zstd");
    assert!(z.status.success());
    let out = run(args!["serve", &zst, "--listen", listen(0)]);
    assert_failure_contains(&out, &["text-only.tar.zst"]);

    // An empty file and a truncated bundle.
    let empty = write_file(dir.path(), "empty.tar.zst", "");
    let out = run(args!["serve", &empty, "--listen", listen(0)]);
    assert_failure_contains(&out, &["empty.tar.zst"]);
    let cut = dir.path().join("cut.tar.zst");
    truncate_copy(&bundle, &cut, std::fs::metadata(&bundle).unwrap().len() / 2);
    let out = run(args!["serve", &cut, "--listen", listen(0)]);
    assert_failure_contains(&out, &["cut.tar.zst"]);

    // An invalid --path.
    for bad in ["UPPER/case", "a//b", "bad path"] {
        let out = run(args![
            "serve",
            &bundle,
            "--listen",
            listen(0),
            "--path",
            bad
        ]);
        assert_failure_contains(&out, &[bad]);
    }

    // A port already taken, and an address that is not one.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = run(args!["serve", &bundle, "--listen", listen(port)]);
    assert_failure_contains(&out, &[&listen(port)]);
    drop(taken);
    let out = run(args!["serve", &bundle, "--listen", "localhost-5000"]);
    assert_failure_contains(&out, &["--listen", "localhost-5000"]);
}

/// Repository names may hold `manifests` or `blobs` as a component: the route is split from
/// the right, so blobs and manifests under such a name are still found.
#[test]
fn names_holding_manifests_or_blobs_components_are_routed_right() {
    let s = small_fixtures();
    let bundle = s.pack("bundle.tar.zst", &[]);
    let sv = Served::start(&bundle, &["--path", "mirror/manifests/blobs"]);
    let repo = format!("mirror/manifests/blobs/{}", s.big.repo);
    let layer = s.big_layer();
    let path = format!("/v2/{repo}/blobs/{}", layer.digest);
    let r = sv.get(&path);
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    let got = body_of(r, &path);
    assert!(
        got == source_blob(&s.src, &s.big.repo, &layer.digest),
        "{path}"
    );
    let path = format!("/v2/{repo}/manifests/1");
    let r = sv.head(&path);
    assert_eq!(r.status(), StatusCode::OK, "HEAD {path}");
    assert_eq!(
        header(&r, "docker-content-digest").as_deref(),
        Some(s.big.digest.as_str())
    );
    assert_served_digest(&format!("{}/{repo}:1", sv.host()), &s.big.digest);
}

/// `--tls-cert/--tls-key`: HTTPS that a client trusting the CA pulls from (skopeo checks the
/// digests); a client without the CA, or speaking plain HTTP, gets nothing.
#[test]
fn serve_over_tls_is_pulled_by_a_client_that_trusts_its_ca() {
    let s = small_fixtures();
    let bundle = s.pack("bundle.tar.zst", &[]);
    let tls = support::tls::generate(&s.dir.path().join("tls"));
    let port = free_port();
    let mut proc = AirgapCmd::new(args![
        "serve",
        &bundle,
        "--listen",
        format!("127.0.0.1:{port}"),
        "--tls-cert",
        &tls.server_cert,
        "--tls-key",
        &tls.server_key
    ])
    .spawn();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&tls.ca_cert).unwrap()).unwrap();
    let https = Client::builder()
        .no_proxy()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(r) = https.get(format!("https://127.0.0.1:{port}/v2/")).send() {
            assert_eq!(r.status(), StatusCode::OK);
            break;
        }
        assert!(
            proc.child.try_wait().unwrap().is_none(),
            "serve --tls-cert exited"
        );
        assert!(Instant::now() < deadline, "serve over TLS never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let host = format!("127.0.0.1:{port}");
    for img in s.images() {
        let out = skopeo(&args![
            "inspect",
            "--raw",
            "--cert-dir",
            &tls.cert_dir,
            format!("docker://{}", img.reference(&host))
        ]);
        assert!(out.status.success(), "{}", text_of(&out));
        assert_eq!(sha256_digest(&out.stdout), img.digest, "{}", img.repo);
    }
    // The big layer whole over TLS, byte for byte.
    let layer = s.big_layer();
    let r = https
        .get(format!(
            "https://{host}/v2/{}/blobs/{}",
            s.big.repo, layer.digest
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().unwrap()[..] == source_blob(&s.src, &s.big.repo, &layer.digest)[..]);
    // Without the CA, skopeo refuses the certificate; plain HTTP gets no answer.
    let out = skopeo(&args![
        "inspect",
        "--raw",
        format!("docker://{}", s.single.reference(&host))
    ]);
    assert!(
        !out.status.success(),
        "an untrusted certificate was accepted"
    );
    assert!(http_client()
        .get(format!("http://{host}/v2/"))
        .timeout(Duration::from_secs(5))
        .send()
        .map(|r| r.status() != StatusCode::OK)
        .unwrap_or(true));
    proc.kill();
    let out = proc.wait();
    let text = text_of(&out);
    assert!(text.contains("HTTPS"), "{text}");
}

/// Bad TLS files are named before anything listens.
#[test]
fn serve_names_bad_tls_files() {
    let s = small_fixtures();
    let bundle = s.pack("bundle.tar.zst", &[]);
    let tls = support::tls::generate(&s.dir.path().join("tls"));
    let junk = s.dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    for (cert, key) in [
        (&junk, &tls.server_key),
        (&tls.server_cert, &junk),
        // A key that is not the certificate's.
        (&tls.server_cert, &s.dir.path().join("tls/ca.key")),
    ] {
        let out = airgap(
            args![
                "serve",
                &bundle,
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                cert,
                "--tls-key",
                key
            ],
            &[],
        );
        assert_failure_contains(&out, &["TLS"]);
        assert!(
            text_of(&out).contains(&*cert.file_name().unwrap().to_string_lossy())
                || text_of(&out).contains(&*key.file_name().unwrap().to_string_lossy()),
            "{}",
            text_of(&out)
        );
    }
    // --tls-cert without --tls-key is a usage error.
    let out = airgap(args!["serve", &bundle, "--tls-cert", &tls.server_cert], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text_of(&out));
}
