//! Slow and flaky links: the harness proxy shaped as a WAN link (latency is latency, the
//! bandwidth is shared), `--limit-rate` for pack and load held to within 10% of the rate,
//! and HTTP(S) proxies from the environment (a real forward proxy counts what went through
//! it, `NO_PROXY` bypasses it, a refusing or absent proxy is named with its password masked).

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use support::forward_proxy::{ForwardMode, ForwardProxy};
use support::proxy::{Fault, FaultProxy, ProxyOptions, Shape};
use support::*;

fn show(what: &str, out: &std::process::Output) {
    eprintln!("---- {what}: {} ----\n{}", out.status, text_of(out));
}

/// `--limit-rate` must hold the rate to within this fraction.
const TOLERANCE: f64 = 0.10;

fn within(what: &str, bytes: u64, elapsed: Duration, rate: f64) {
    let got = bytes as f64 / elapsed.as_secs_f64();
    let off = got / rate - 1.0;
    eprintln!(
        "{what}: {bytes} bytes in {:.2} s = {:.0} B/s, rate {rate:.0} B/s ({:+.1}%)",
        elapsed.as_secs_f64(),
        got,
        off * 100.0
    );
    assert!(
        off.abs() <= TOLERANCE,
        "{what}: {got:.0} B/s is {:+.1}% off the {rate:.0} B/s limit (allowed ±{}%)",
        off * 100.0,
        TOLERANCE * 100.0
    );
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

#[test]
fn shaped_link_delays_each_round_trip_pipelines_bytes_and_shares_its_bandwidth() {
    let reg = Registry::start(RegistryOpts::plain());
    let rate = 4u64 << 20;
    let img = Fixtures::new(&reg).big_layer_image("wan/shape", "1", 2 << 20, 7);
    let big = img.blobs.iter().max_by_key(|b| b.size).unwrap().clone();
    let rtt = Duration::from_millis(100);
    let shape = Shape {
        up_delay: rtt / 2,
        down_delay: rtt / 2,
        up_rate: Some(rate),
        down_rate: Some(rate),
    };
    let proxy = FaultProxy::start_with(
        &reg.host(),
        Fault::None,
        ProxyOptions {
            shape: Some(shape),
            ..ProxyOptions::default()
        },
    );
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let get = |path: &str| {
        let r = http.get(format!("{}{path}", proxy.url())).send().unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.bytes().unwrap().len() as u64
    };
    // A new connection: the handshake's round trip, then the request's.
    let (_, first) = timed(|| get("/v2/"));
    assert!(
        first >= 2 * rtt - Duration::from_millis(10)
            && first < 2 * rtt + Duration::from_millis(800),
        "first request on a new connection took {first:?}, expected about {:?}",
        2 * rtt
    );
    // The same connection again (kept alive through the relay): one round trip.
    let (_, again) = timed(|| get("/v2/"));
    assert!(
        again >= rtt - Duration::from_millis(10) && again < rtt + Duration::from_millis(600),
        "a request on a kept-alive connection took {again:?}, expected about {rtt:?}"
    );
    assert_eq!(
        proxy.connections(),
        1,
        "the relay kept the connection alive"
    );
    // 2 MiB at 4 MiB/s: half a second plus one round trip. Were the delay paid per chunk
    // (no pipelining), 32 chunks of 64 KiB would take over 3 s.
    let path = format!("/v2/{}/blobs/{}", img.repo, big.digest);
    let (n, one) = timed(|| get(&path));
    assert_eq!(n, big.size);
    let ideal = Duration::from_secs_f64(big.size as f64 / rate as f64) + rtt;
    assert!(
        one >= ideal - Duration::from_millis(60) && one < ideal + Duration::from_secs(1),
        "one 2 MiB download took {one:?}, expected about {ideal:?}"
    );
    // Two at once on two connections share the link: twice as long, not the same.
    let (_, two) = timed(|| {
        std::thread::scope(|s| {
            let a = s.spawn(|| {
                reqwest::blocking::Client::builder()
                    .no_proxy()
                    .build()
                    .unwrap()
                    .get(format!("{}{path}", proxy.url()))
                    .send()
                    .unwrap()
                    .bytes()
                    .unwrap()
                    .len()
            });
            let b = get(&path);
            assert_eq!(a.join().unwrap() as u64, b);
        })
    });
    let shared = Duration::from_secs_f64(2.0 * big.size as f64 / rate as f64);
    eprintln!(
        "new connection {first:?}, kept alive {again:?}, one 2 MiB {one:?}, two at once {two:?}"
    );
    assert!(
        two >= shared && two < shared + Duration::from_millis(1500),
        "two parallel 2 MiB downloads took {two:?}: the link's {rate} B/s must be shared (about {shared:?} + a round trip)"
    );
    assert!(proxy.link_bytes(support::proxy::Dir::Down) >= 3 * big.size);
}

#[test]
fn pack_limit_rate_holds_within_ten_percent_over_twenty_seconds() {
    let src = Registry::start(RegistryOpts::plain());
    let rate = 1u64 << 20; // --limit-rate 1M
    let img = Fixtures::new(&src).big_layer_image("wan/rate", "1", 20 << 20, 11);
    let bytes: u64 = img.blobs.iter().map(|b| b.size).sum::<u64>() + img.manifest_size();
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    let (out, elapsed) = timed(|| {
        pack_ok(
            &spec,
            &bundle,
            args![src.source_flags(), "--limit-rate", "1M", "-q"],
        )
    });
    show("pack --limit-rate 1M", &out);
    within("pack --limit-rate 1M", bytes, elapsed, rate as f64);
    let b = Bundle::open(&bundle);
    assert_eq!(b.ref_digest(&img.reference(&src.host())), img.digest);
}

#[test]
fn load_limit_rate_holds_within_ten_percent() {
    let src = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&src).big_layer_image("wan/load-rate", "1", 8 << 20, 12);
    let bytes: u64 = img.blobs.iter().map(|b| b.size).sum::<u64>() + img.manifest_size();
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, args![src.source_flags(), "-q"]);
    let tgt = Registry::start(RegistryOpts::plain());
    let th = tgt.host();
    let (out, elapsed) = timed(|| {
        airgap(
            args![
                "load",
                &bundle,
                "--registry",
                &th,
                tgt.target_flags(),
                "--limit-rate",
                "1M"
            ],
            &[],
        )
    });
    show("load --limit-rate 1M", &out);
    assert_success(&out);
    within("load --limit-rate 1M", bytes, elapsed, (1u64 << 20) as f64);
    assert_skopeo_digest(&format!("{th}/{}:1", img.repo), &tgt, &img.digest);
}

#[test]
fn a_bad_limit_rate_is_refused_before_anything_is_written_or_pushed() {
    let src = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&src).image("wan/bad-rate", Some("1"), &ImageOpts::oci(13));
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    for (rate, says) in [
        ("100Mbit", "bytes per second, not bits"),
        ("0", "at least 1 byte per second"),
        ("fast", "\"fast\""),
        ("10Q", "unknown unit"),
    ] {
        let out = airgap(
            args![
                "pack",
                &spec,
                "-o",
                &bundle,
                src.source_flags(),
                "--limit-rate",
                rate
            ],
            &[],
        );
        assert_failure(&out);
        let err = stderr_of(&out);
        assert!(
            err.contains("--limit-rate") && err.contains(says),
            "pack --limit-rate {rate}: {err}"
        );
        assert!(
            !bundle.exists(),
            "a refused pack wrote {}",
            bundle.display()
        );
    }
    pack_ok(&spec, &bundle, args![src.source_flags(), "-q"]);
    let tgt = Registry::start(RegistryOpts::plain());
    let th = tgt.host();
    let out = airgap(
        args![
            "load",
            &bundle,
            "--registry",
            &th,
            "--plain-http",
            "--limit-rate",
            "1.5Gbit"
        ],
        &[],
    );
    assert_failure(&out);
    assert!(stderr_of(&out).contains("not bits"), "{}", text_of(&out));
    assert_skopeo_absent(&format!("{th}/{}:1", img.repo), &tgt);
}

/// Environment that sends every request through `proxy` (the harness sets NO_PROXY for
/// loopback by default; cleared here).
fn via<'a>(var: &'a str, proxy: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![(var, proxy), ("NO_PROXY", ""), ("no_proxy", "")]
}

#[test]
fn pack_goes_through_http_proxy_and_no_proxy_bypasses_it() {
    let src = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&src).image(
        "wan/proxied",
        Some("1"),
        &ImageOpts::oci(21).layers(2, 4096),
    );
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    let proxy = ForwardProxy::start(ForwardMode::Open);
    let purl = proxy.url();
    let flags = args!["pack", &spec, "-o", &bundle, src.source_flags(), "-q"];
    let out = airgap(&flags, &via("HTTP_PROXY", &purl));
    show("pack via HTTP_PROXY", &out);
    assert_success(&out);
    assert_eq!(
        Bundle::open(&bundle).ref_digest(&img.reference(&src.host())),
        img.digest
    );
    // Every blob GET went through the proxy, as an absolute URI to the registry.
    let blob_gets = proxy
        .seen()
        .iter()
        .filter(|r| r.method == "GET" && r.target.contains("/blobs/"))
        .filter(|r| r.target.starts_with(&format!("http://{}/", src.host())))
        .count();
    assert_eq!(blob_gets, img.blobs.len(), "{}", proxy.describe());
    let through = proxy.count(None);

    // Lowercase works the same.
    std::fs::remove_file(&bundle).unwrap();
    let out = airgap(&flags, &via("http_proxy", &purl));
    assert_success(&out);
    assert!(
        proxy.count(None) > through,
        "http_proxy: {}",
        proxy.describe()
    );
    let through = proxy.count(None);

    // NO_PROXY naming the registry's address: nothing goes through the proxy.
    std::fs::remove_file(&bundle).unwrap();
    let out = airgap(&flags, &[("HTTP_PROXY", &purl), ("NO_PROXY", "127.0.0.1")]);
    assert_success(&out);
    assert_eq!(
        proxy.count(None),
        through,
        "NO_PROXY=127.0.0.1 was not bypassed: {}",
        proxy.describe()
    );
    assert_eq!(
        Bundle::open(&bundle).ref_digest(&img.reference(&src.host())),
        img.digest
    );
}

#[test]
fn load_into_a_tls_registry_tunnels_through_https_proxy_with_its_credentials() {
    let src = Registry::start(RegistryOpts::plain());
    let img =
        Fixtures::new(&src).image("wan/tunnel", Some("1"), &ImageOpts::oci(22).layers(2, 8192));
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, args![src.source_flags(), "-q"]);
    let tgt = Registry::start(RegistryOpts::tls());
    let th = tgt.host();
    let proxy = ForwardProxy::start(ForwardMode::RequireAuth {
        user: "bob".into(),
        pass: "hunter2".into(),
    });
    let purl = proxy.url_with("bob", "hunter2");
    let out = airgap(
        args!["load", &bundle, "--registry", &th, tgt.target_flags()],
        &via("HTTPS_PROXY", &purl),
    );
    show("load via HTTPS_PROXY", &out);
    assert_success(&out);
    let connects: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|r| r.method == "CONNECT")
        .collect();
    assert!(!connects.is_empty(), "no CONNECT: {}", proxy.describe());
    assert!(
        connects.iter().all(|r| r.target == th && r.answered == 200),
        "{}",
        proxy.describe()
    );
    assert_eq!(
        proxy.count(None),
        connects.len(),
        "only tunnels: {}",
        proxy.describe()
    );
    assert_skopeo_digest(&format!("{th}/{}:1", img.repo), &tgt, &img.digest);
}

/// The error names the proxy with its password masked, and never shows the password.
#[track_caller]
fn assert_names_proxy(out: &std::process::Output, proxy_host: &str, says: &[&str]) {
    assert_failure(out);
    let text = text_of(out);
    assert!(
        !text.contains("hunter2"),
        "the password was printed:\n{text}"
    );
    assert!(
        text.contains(&format!("http://bob:***@{proxy_host}")),
        "the proxy is not named:\n{text}"
    );
    for s in says {
        assert!(
            text.to_lowercase().contains(&s.to_lowercase()),
            "{s:?} missing:\n{text}"
        );
    }
}

#[test]
fn a_refusing_or_absent_proxy_is_named_with_its_password_masked() {
    let src = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&src).image("wan/refused", Some("1"), &ImageOpts::oci(23));
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    let flags = args![
        "pack",
        &spec,
        "-o",
        &bundle,
        src.source_flags(),
        "--retries",
        "0"
    ];

    // 407 to an absolute-URI request (a plain-HTTP registry).
    let refusing = ForwardProxy::start(ForwardMode::Refuse { status: 407 });
    let purl = refusing.url_with("bob", "hunter2");
    let out = airgap(&flags, &via("HTTP_PROXY", &purl));
    show("pack via a 407 proxy", &out);
    assert_names_proxy(
        &out,
        &refusing.host(),
        &["407", "Proxy Authentication Required", "refused"],
    );
    assert!(
        stderr_of(&out).contains("hint: give the proxy's credentials in the proxy URL"),
        "{}",
        text_of(&out)
    );
    assert!(refusing.count(None) >= 1);
    assert!(!bundle.exists());

    // 407 to CONNECT (a TLS registry): wrong credentials in the URL.
    let tls = Registry::start(RegistryOpts::tls());
    let timg = Fixtures::new(&tls).image("wan/refused-tls", Some("1"), &ImageOpts::oci(24));
    let tspec = Spec::new()
        .image(&timg.reference(&tls.host()))
        .write(&dir.path().join("t"));
    let auth = ForwardProxy::start(ForwardMode::RequireAuth {
        user: "bob".into(),
        pass: "right".into(),
    });
    let purl = auth.url_with("bob", "hunter2");
    let out = airgap(
        args![
            "pack",
            &tspec,
            "-o",
            &bundle,
            tls.source_flags(),
            "--retries",
            "0"
        ],
        &via("HTTPS_PROXY", &purl),
    );
    show("pack via CONNECT refused", &out);
    assert_names_proxy(&out, &auth.host(), &["407", "proxy authorization required"]);
    assert_eq!(auth.count(Some("CONNECT")), auth.count(None));
    assert!(!bundle.exists());

    // Nobody listening at the proxy's address.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let purl = format!("http://bob:hunter2@{closed}");
    let out = airgap(&flags, &via("HTTP_PROXY", &purl));
    show("pack via a closed port", &out);
    assert_names_proxy(&out, &closed, &["through proxy", "refused"]);
    assert!(!bundle.exists());

    // A proxy variable that is no proxy URL: named, password masked, nothing fetched.
    let out = airgap(
        &flags,
        &via("HTTPS_PROXY", "socks5://bob:hunter2@127.0.0.1:1080"),
    );
    assert_failure(&out);
    let text = text_of(&out);
    assert!(
        text.contains("HTTPS_PROXY") && text.contains("socks5"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!bundle.exists());
}
