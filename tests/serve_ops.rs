//! `airgap serve` as an operator runs it (issue 20): pulls behind an htpasswd file made by
//! Apache's `htpasswd -B` and judged by skopeo and a real containerd (`ctr`), `/healthz`, Prometheus `/metrics`,
//! `--max-connections` refusing with 503 and `Retry-After`, and SIGTERM letting the response
//! in flight finish (digest checked) before a clean exit.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::cli::{AirgapCmd, RunningAirgap};
use support::skopeo::skopeo;
use support::*;

const PASSWORD: &str = "s3cret-site-pw";

struct World {
    /// The source registry, kept running for the tests that pack more.
    src: Registry,
    _dir: tempfile::TempDir,
    bundle: PathBuf,
    image: Image,
    big: BlobRef,
}

/// One image with a 12 MiB layer, packed once for every test of this binary.
fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let src = Registry::start(RegistryOpts::plain());
        let fx = Fixtures::new(&src);
        let image = fx.big_layer_image("site/app", "1.0", 12 * 1024 * 1024, 71);
        let dir = tempdir();
        let spec = Spec::new()
            .image(&image.reference(&src.host()))
            .write(dir.path());
        let bundle = dir.path().join("b.tar.zst");
        pack_ok(&spec, &bundle, args![src.source_flags(), "-q"]);
        let big = image.layers().into_iter().max_by_key(|l| l.size).unwrap();
        World {
            src,
            _dir: dir,
            bundle,
            image,
            big,
        }
    })
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `airgap serve` on a free port, once `/healthz` answers.
fn serve(extra: &[String]) -> (RunningAirgap, u16) {
    let port = free_port();
    let mut a = args![
        "serve",
        &world().bundle,
        "--listen",
        format!("127.0.0.1:{port}")
    ];
    a.extend(extra.iter().cloned());
    let mut proc = AirgapCmd::new(&a).spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = proc.child.try_wait().unwrap() {
            panic!("serve exited ({s}):\n{}", text_of(&proc.wait()));
        }
        let ok = client()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .is_ok_and(|r| r.status() == 200);
        if ok {
            return (proc, port);
        }
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn htpasswd(dir: &Path, flag: &str) -> PathBuf {
    htpasswd_file(dir, flag, "site", PASSWORD)
}

/// Every sample of a Prometheus text exposition (format 0.0.4), checked as it is read: each
/// line a `# HELP`/`# TYPE` comment or `name{labels} value`, a sample only after its family's
/// `# TYPE` (counter or gauge), counters ending in `_total`, values numbers, no name twice.
fn prometheus(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut types = std::collections::BTreeMap::new();
    let mut samples = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?} in:\n{text}", i + 1);
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("{}", at()));
            assert!(matches!(kind, "counter" | "gauge"), "{}", at());
            assert!(kind != "counter" || name.ends_with("_total"), "{}", at());
            assert!(types.insert(name.to_string(), kind).is_none(), "{}", at());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(
                rest.split_once(' ').is_some_and(|(_, h)| !h.is_empty()),
                "{}",
                at()
            );
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{}", at());
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{}", at()));
        let family = series.split('{').next().unwrap();
        assert!(
            family
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{}",
            at()
        );
        if let Some(labels) = series.strip_prefix(family).filter(|l| !l.is_empty()) {
            let inner = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}'));
            let ok = inner.is_some_and(|l| {
                l.split(',').all(|kv| {
                    kv.split_once('=').is_some_and(|(k, v)| {
                        !k.is_empty() && v.len() >= 2 && v.starts_with('"') && v.ends_with('"')
                    })
                })
            });
            assert!(ok, "{}", at());
        }
        assert!(types.contains_key(family), "no # TYPE before {}", at());
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("{}", at()));
        assert!(samples.insert(series.to_string(), v).is_none(), "{}", at());
    }
    assert!(!samples.is_empty(), "no samples in:\n{text}");
    samples
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[test]
fn htpasswd_protects_pulls_and_metrics_count_them() {
    let w = world();
    let dir = tempdir();
    let users = htpasswd(dir.path(), "-B");
    let (proc, port) = serve(&args!["--htpasswd", &users]);
    let host = format!("127.0.0.1:{port}");
    let reference = format!("docker://{host}/site/app:1.0");

    // skopeo with the user's credentials gets the image, by digest.
    let out = skopeo(&args![
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        format!("site:{PASSWORD}"),
        &reference
    ]);
    assert!(out.status.success(), "{}", text_of(&out));
    assert_eq!(sha256_digest(&out.stdout), w.image.digest);
    // Without, or with a wrong password: refused.
    let out = skopeo(&args!["inspect", "--raw", "--tls-verify=false", &reference]);
    assert!(!out.status.success());
    let out = skopeo(&args![
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        "site:wrong",
        &reference
    ]);
    assert!(!out.status.success());
    let r = client().get(format!("http://{host}/v2/")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"].to_str().unwrap(),
        "Basic realm=\"airgap serve\""
    );
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");

    // The big layer, whole, with the credentials: the bytes count.
    let r = client()
        .get(format!("http://{host}/v2/site/app/blobs/{}", w.big.digest))
        .basic_auth("site", Some(PASSWORD))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sha256_digest(&r.bytes().unwrap()), w.big.digest);

    // Probes and scrapers need no credentials.
    let r = client()
        .get(format!("http://{host}/healthz"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .get(format!("http://{host}/metrics"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let m = r.text().unwrap();
    assert!(
        metric(&m, "airgap_serve_requests_total{status=\"401\"}") >= 3,
        "{m}"
    );
    assert!(
        metric(&m, "airgap_serve_requests_total{status=\"200\"}") >= 3,
        "{m}"
    );
    assert!(metric(&m, "airgap_serve_auth_failures_total") >= 3, "{m}");
    assert!(
        metric(&m, "airgap_serve_bytes_sent_total") >= w.big.size,
        "{m}"
    );
    assert!(metric(&m, "airgap_serve_blobs_served_total") >= 1, "{m}");
    assert_eq!(metric(&m, "airgap_serve_verification_failures_total"), 0);
    assert!(metric(&m, "airgap_serve_open_connections") >= 1, "{m}");

    // Exactly what this test does next shows in the counters: two refusals, one blob.
    let before = prometheus(&m);
    for _ in 0..2 {
        let r = client().get(format!("http://{host}/v2/")).send().unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = client()
        .get(format!("http://{host}/v2/site/app/blobs/{}", w.big.digest))
        .basic_auth("site", Some(PASSWORD))
        .send()
        .unwrap();
    assert_eq!(sha256_digest(&r.bytes().unwrap()), w.big.digest);
    let after = prometheus(
        &client()
            .get(format!("http://{host}/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
    );
    let delta = |name: &str| {
        after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
    };
    assert_eq!(delta("airgap_serve_requests_total{status=\"401\"}"), 2.0);
    // The blob, and the scrape before (counted once answered, after it rendered).
    assert_eq!(delta("airgap_serve_requests_total{status=\"200\"}"), 2.0);
    assert_eq!(delta("airgap_serve_auth_failures_total"), 2.0);
    assert_eq!(delta("airgap_serve_blobs_served_total"), 1.0);
    assert_eq!(delta("airgap_serve_bytes_sent_total"), w.big.size as f64);
    assert_eq!(after["airgap_serve_verification_failures_total"], 0.0);

    let mut proc = proc;
    proc.kill();
    let out = proc.wait();
    let text = text_of(&out);
    assert!(
        !text.contains(PASSWORD),
        "the password was printed:\n{text}"
    );
    assert!(text.contains("GET /v2/ -> 401"), "{text}");
    assert!(
        text.contains(" ms)"),
        "access log lines give the duration: {text}"
    );
}

#[test]
fn containerd_pulls_with_the_htpasswd_credentials_and_is_refused_without() {
    let w = world();
    let dir = tempdir();
    let users = htpasswd(dir.path(), "-B");
    let (proc, port) = serve(&args!["--htpasswd", &users]);
    let reference = format!("127.0.0.1:{port}/site/app:1.0");
    let ctrd = support::containerd::Containerd::shared();
    let ns = "serve-htpasswd";
    let fetch = |creds: Option<&str>| {
        let mut a = vec!["content", "fetch", "--plain-http", "--all-platforms"];
        if let Some(c) = creds {
            a.extend(["--user", c]);
        }
        a.push(&reference);
        ctrd.ctr(ns, &a)
    };
    let listed = || {
        let ls = ctrd.ctr(ns, &["images", "ls"]);
        String::from_utf8_lossy(&ls.stdout)
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&reference))
            .and_then(|cols| cols.get(2).cloned())
    };

    // Without credentials, and with a wrong password: refused, nothing recorded.
    for creds in [None, Some("site:wrong")] {
        let out = fetch(creds);
        let text = text_of(&out);
        assert!(!out.status.success(), "fetched with {creds:?}:\n{text}");
        assert!(
            text.contains("401 Unauthorized"),
            "containerd's error does not say it was refused ({creds:?}):\n{text}"
        );
        assert_eq!(listed(), None, "an image record after a refusal: {creds:?}");
    }

    // With them: the image, by the digest the source gave it, and its big layer's content.
    let creds = format!("site:{PASSWORD}");
    let out = fetch(Some(&creds));
    assert!(out.status.success(), "{}\n{}", text_of(&out), ctrd.log());
    assert_eq!(listed().as_deref(), Some(w.image.digest.as_str()));
    // Read with `output()`: the helper's bounded wait does not drain a 12 MiB stdout.
    let layer = Command::new("ctr")
        .arg("--address")
        .arg(ctrd.socket())
        .args(["--namespace", ns, "content", "get", &w.big.digest])
        .output()
        .unwrap();
    assert!(
        layer.status.success(),
        "{}",
        String::from_utf8_lossy(&layer.stderr)
    );
    assert_eq!(sha256_digest(&layer.stdout), w.big.digest);

    let mut proc = proc;
    proc.kill();
    let text = text_of(&proc.wait());
    assert!(
        !text.contains(PASSWORD),
        "the password was printed:\n{text}"
    );
    assert!(text.contains("-> 401"), "{text}");
}

#[test]
fn htpasswd_files_that_are_not_bcrypt_are_refused_at_startup() {
    let dir = tempdir();
    let md5 = htpasswd(dir.path(), "-m");
    let port = free_port();
    let out = airgap(
        args![
            "serve",
            &world().bundle,
            "--listen",
            format!("127.0.0.1:{port}"),
            "--htpasswd",
            &md5
        ],
        &[],
    );
    assert_failure_contains(
        &out,
        &[
            &format!("{}:1", md5.display()),
            "not a bcrypt hash",
            "htpasswd -B",
        ],
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens"
    );
    let missing = dir.path().join("nope");
    let out = airgap(args!["serve", &world().bundle, "--htpasswd", &missing], &[]);
    assert_failure_contains(&out, &[&missing.display().to_string(), "No such file"]);
}

#[test]
fn connections_beyond_the_limit_get_503_with_retry_after() {
    let (_proc, port) = serve(&args!["--max-connections", "1", "-q"]);
    std::thread::sleep(Duration::from_millis(200)); // the probe's connection closes
                                                    // One client holds the only slot with a request it has not finished sending.
    let mut held = TcpStream::connect(("127.0.0.1", port)).unwrap();
    held.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let r = client()
        .get(format!("http://127.0.0.1:{port}/v2/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.text().unwrap().contains("--max-connections"));
    // The held client finishes and is answered; then there is room again.
    held.write_all(b"Connection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    held.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = client()
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .unwrap();
        if r.status() == 200 {
            let m = r.text().unwrap();
            assert_eq!(
                metric(&m, "airgap_serve_refused_connections_total"),
                1,
                "{m}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never room again");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_finishes_the_response_in_flight_then_exits_cleanly() {
    let w = world();
    let (proc, port) = serve(&args!["--shutdown-timeout", "20"]);
    let mut resp = client()
        .get(format!(
            "http://127.0.0.1:{port}/v2/site/app/blobs/{}",
            w.big.digest
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = vec![0u8; 64 * 1024];
    resp.read_exact(&mut body).unwrap();
    let kill = Command::new("kill")
        .args(["-TERM", &proc.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    std::thread::sleep(Duration::from_millis(300));
    // No new connections once shutting down.
    assert!(
        client()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .is_err(),
        "still accepting after SIGTERM"
    );
    resp.read_to_end(&mut body).unwrap();
    assert_eq!(body.len() as u64, w.big.size);
    assert_eq!(sha256_digest(&body), w.big.digest);
    let out = proc.wait();
    assert!(out.status.success(), "{}", text_of(&out));
    assert!(
        text_of(&out).contains("shut down: every response finished"),
        "{}",
        text_of(&out)
    );
}

/// Peak resident memory of a process, from `/proc` (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:")?
                .trim()
                .strip_suffix(" kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap()
}

/// 256 clients pulling the 12 MiB layer at once: every body right, and the server's peak
/// memory within 64 MiB with `--memory 32M` (readers beyond the budget wait their turn;
/// without a bound this run peaks at about 725 MiB). `AIRGAP_TEST_SERVE_MEMORY` overrides the
/// budget for measuring.
#[test]
fn many_clients_at_once_stay_within_the_memory_budget() {
    let w = world();
    let memory = std::env::var("AIRGAP_TEST_SERVE_MEMORY").unwrap_or("32M".into());
    let (mut proc, port) = serve(&args!["-q", "--memory", memory]);
    let url = format!("http://127.0.0.1:{port}/v2/site/app/blobs/{}", w.big.digest);
    let started = Instant::now();
    let threads: Vec<_> = (0..256)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(300))
                    .build()
                    .unwrap();
                let body = c.get(&url).send().unwrap().bytes().unwrap();
                sha256_digest(&body)
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), w.big.digest);
    }
    let secs = started.elapsed().as_secs_f64();
    let rss = peak_rss_kib(proc.id());
    eprintln!(
        "256 clients x {} MiB: {:.1} s, {:.0} MiB/s in total, server peak RSS {} MiB",
        w.big.size >> 20,
        secs,
        (256 * w.big.size) as f64 / secs / 1048576.0,
        rss / 1024
    );
    proc.kill();
    if std::env::var("AIRGAP_TEST_SERVE_MEMORY").is_err() {
        assert!(rss < 64 * 1024, "server peak RSS {} MiB", rss / 1024);
    }
}

/// Clients pulling the same layer at the same moment share its decoded frames: 8 reqwest
/// clients and a skopeo copy of the image at once, every digest checked (skopeo checks each
/// blob it copies; the layer it wrote is hashed again here); `/metrics` counts fewer frame
/// decodes than clients x frames, and a range across frames is the layer's own bytes.
#[test]
fn clients_pulling_the_same_layer_at_once_share_its_frames() {
    let w = world();
    let (mut proc, port) = serve(&args!["-q"]);
    let host = format!("127.0.0.1:{port}");
    let url = format!("http://{host}/v2/site/app/blobs/{}", w.big.digest);
    let clients = 8u64;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(clients as usize + 1));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let c = client();
                barrier.wait();
                c.get(&url).send().unwrap().bytes().unwrap()
            })
        })
        .collect();
    let out = tempdir();
    let layout = out.path().join("oci");
    let skopeo_copy = {
        let (reference, dest, barrier) = (
            format!("docker://{host}/site/app:1.0"),
            format!("oci:{}:app", layout.display()),
            barrier.clone(),
        );
        std::thread::spawn(move || {
            barrier.wait();
            skopeo(&args![
                "copy",
                "--all",
                "--preserve-digests",
                "--src-tls-verify=false",
                reference,
                dest
            ])
        })
    };
    let bodies: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for b in &bodies {
        assert_eq!(sha256_digest(b), w.big.digest);
    }
    let copied = skopeo_copy.join().unwrap();
    assert!(copied.status.success(), "{}", text_of(&copied));
    let hex = w.big.digest.strip_prefix("sha256:").unwrap();
    let written = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(sha256_digest(&written), w.big.digest);

    // A range across two frames: the layer's own bytes.
    let (from, to) = ((1 << 20) - 1000, (1 << 20) + 5000);
    let r = client()
        .get(&url)
        .header("Range", format!("bytes={from}-{to}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert!(r.bytes().unwrap()[..] == bodies[0][from..=to]);

    let m = client()
        .get(format!("http://{host}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let frames = w.big.size.div_ceil(1 << 20);
    let decoded = metric(&m, "airgap_serve_frames_decoded_total");
    let shared = metric(&m, "airgap_serve_frames_shared_total");
    eprintln!(
        "{} clients x {frames} frames: {decoded} decoded, {shared} shared",
        clients + 1
    );
    assert!(decoded >= frames, "{m}");
    assert!(decoded < clients * frames, "no frame shared:\n{m}");
    assert!(shared > 0, "{m}");
    assert_eq!(metric(&m, "airgap_serve_verification_failures_total"), 0);
    assert!(
        metric(&m, "airgap_serve_frame_cache_bytes") <= 16 << 20,
        "{m}"
    );
    proc.kill();

    // `--frame-cache 0`: every read decodes its own frames, the same bytes.
    let (mut proc, port) = serve(&args!["-q", "--frame-cache", "0"]);
    let url = format!("http://127.0.0.1:{port}/v2/site/app/blobs/{}", w.big.digest);
    let body = client().get(&url).send().unwrap().bytes().unwrap();
    assert_eq!(sha256_digest(&body), w.big.digest);
    let m = client()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(metric(&m, "airgap_serve_frames_decoded_total"), 0, "{m}");
    assert_eq!(metric(&m, "airgap_serve_frame_cache_bytes"), 0, "{m}");
    proc.kill();
}

/// Two bundles in one namespace (given as a directory), and a third that gives an image the
/// first already serves another digest: refused at startup, naming both files and digests.
#[test]
fn several_bundles_serve_one_namespace_and_conflicts_are_refused() {
    let w = world();
    // Beside the world's image in its registry; the clash goes to another registry.
    let src = &w.src;
    let fx = Fixtures::new(src);
    let other = fx.image(
        "site/other",
        Some("2.0"),
        &ImageOpts::oci(72).layers(1, 4096),
    );
    let dir = tempdir();
    let pack = |name: &str, image: &Image| {
        let d = dir.path().join(format!("spec-{name}"));
        std::fs::create_dir_all(&d).unwrap();
        let spec = Spec::new().image(&image.reference(&src.host())).write(&d);
        let out = dir.path().join(name);
        pack_ok(&spec, &out, args![src.source_flags(), "-q"]);
        out
    };
    let shelf = dir.path().join("shelf");
    std::fs::create_dir(&shelf).unwrap();
    std::fs::copy(&w.bundle, shelf.join("a-release.tar.zst")).unwrap();
    let other_bundle = pack("b-other.tar.zst", &other);
    std::fs::copy(&other_bundle, shelf.join("b-other.tar.zst")).unwrap();

    // The world's bundle and a directory holding a copy of it (the same names and digests:
    // no conflict) and another bundle.
    let (proc, port) = serve(&args![&shelf, "-q"]);
    for (name, digest) in [
        ("site/app:1.0", &w.image.digest),
        ("site/other:2.0", &other.digest),
    ] {
        let out = skopeo(&args![
            "inspect",
            "--raw",
            "--tls-verify=false",
            format!("docker://127.0.0.1:{port}/{name}")
        ]);
        assert!(out.status.success(), "{name}: {}", text_of(&out));
        assert_eq!(&sha256_digest(&out.stdout), digest, "{name}");
    }
    drop(proc);

    // A delta against the world's bundle: its base-only layer is there once the base is
    // served beside it.
    let d = dir.path().join("spec-delta");
    std::fs::create_dir_all(&d).unwrap();
    let spec = Spec::new()
        .image(&format!("{}/site/app:1.0", src.host()))
        .image(&other.reference(&src.host()))
        .write(&d);
    let delta = dir.path().join("delta.tar.zst");
    pack_ok(
        &spec,
        &delta,
        args![src.source_flags(), "--base", &w.bundle, "-q"],
    );
    let blob = |extra: &[String]| {
        let (proc, port) = serve(extra);
        let status = client()
            .get(format!(
                "http://127.0.0.1:{port}/v2/site/app/blobs/{}",
                w.big.digest
            ))
            .send()
            .unwrap()
            .status();
        drop(proc);
        status
    };
    assert_eq!(
        blob(&args![&delta, "-q"]),
        200,
        "with the base (the world's bundle, first)"
    );
    let alone = {
        let port = free_port();
        let mut p = AirgapCmd::new(&args![
            "serve",
            &delta,
            "--listen",
            format!("127.0.0.1:{port}"),
            "-q"
        ])
        .spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Ok(r) = client()
                .get(format!(
                    "http://127.0.0.1:{port}/v2/site/app/blobs/{}",
                    w.big.digest
                ))
                .send()
            {
                break r.status();
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(50));
        };
        p.kill();
        status
    };
    assert_eq!(alone, 404, "the delta alone lacks its base's layer");

    let clash_src = Registry::start(RegistryOpts::plain());
    let clash = Fixtures::new(&clash_src).image(
        "site/app",
        Some("1.0"),
        &ImageOpts::oci(73).layers(1, 4096),
    );
    let d = dir.path().join("spec-clash");
    std::fs::create_dir_all(&d).unwrap();
    let spec = Spec::new()
        .image(&clash.reference(&clash_src.host()))
        .write(&d);
    let clash_bundle = dir.path().join("c-clash.tar.zst");
    pack_ok(&spec, &clash_bundle, args![clash_src.source_flags(), "-q"]);
    let out = airgap(
        args!["serve", &w.bundle, &clash_bundle, "--listen", "127.0.0.1:0"],
        &[],
    );
    assert_failure_contains(
        &out,
        &[
            "site/app:1.0",
            &w.image.digest,
            &clash.digest,
            &w.bundle.display().to_string(),
            &clash_bundle.display().to_string(),
        ],
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = airgap(args!["serve", &empty], &[]);
    assert_failure_contains(&out, &["no bundle in it"]);
}
