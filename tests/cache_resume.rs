//! Resumable blob downloads and the connected side's blob cache (`pack --cache DIR`),
//! against a real distribution registry behind the fault proxy: blobs cut at several
//! offsets resume with a Range request (the proxy counts the body bytes: about one blob,
//! not two), a registry ignoring Range, a pack SIGKILLed mid-blob and re-run, a flipped
//! byte in a cache entry, prune's LRU order and bound, a next release sharing layers.
//! Bundles are judged by `airgap verify` and by the digests skopeo reads at the source.

mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::proxy::{Action, Fault, FaultProxy};
use support::*;

const LAYER: u64 = 3 << 20;

struct Shared {
    src: Registry,
    /// Two big layers (about 3 MiB each) and a config.
    app: Image,
    /// `release/app:1` and `:2`: one shared base layer, one layer each of their own.
    r1: Image,
    r2: Image,
}

fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        let src = Registry::start(RegistryOpts::plain());
        let fx = Fixtures::new(&src);
        let app = fx.image(
            "cache/app",
            Some("1"),
            &ImageOpts::oci(301).layers(2, LAYER),
        );
        let base = TarLayer::new(302, 2 << 20);
        let r1 = fx.image(
            "release/app",
            Some("1"),
            &ImageOpts::oci(303).layers(1, 2 << 20).base(base.clone()),
        );
        let r2 = fx.image(
            "release/app",
            Some("2"),
            &ImageOpts::oci(304).layers(1, 2 << 20).base(base),
        );
        Shared { src, app, r1, r2 }
    })
}

fn show(what: &str, out: &std::process::Output) {
    eprintln!("---- {what}: {} ----\n{}", out.status, text_of(out));
}

/// `airgap pack` of `image` through `proxy`, with `extra` flags.
fn pack_via(
    proxy: &FaultProxy,
    image: &Image,
    dir: &Path,
    extra: &[String],
) -> (PathBuf, std::process::Output) {
    let s = shared();
    let spec = Spec::new()
        .image(&image.reference(&s.src.host()))
        .write(dir);
    let bundle = dir.join(format!("{}.tar.zst", image.tag.as_deref().unwrap_or("x")));
    let out = AirgapCmd::new(args![
        "pack",
        &spec,
        "-o",
        &bundle,
        "--mirror",
        format!("{}={}", s.src.host(), proxy.url()),
        extra
    ])
    .timeout(Duration::from_secs(90))
    .run();
    show("pack", &out);
    (bundle, out)
}

/// The bundle verifies, and holds exactly the blobs skopeo reads at the source.
fn assert_bundle_matches_source(bundle: &Path, image: &Image) {
    let s = shared();
    let out = airgap(args!["verify", bundle], &[]);
    show("verify", &out);
    assert_success(&out);
    let raw = try_skopeo_raw(&image.reference(&s.src.host()), &s.src).expect("skopeo inspect");
    assert_eq!(sha256_digest(&raw), image.digest);
    let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let mut want: Vec<String> = std::iter::once(&m["config"])
        .chain(m["layers"].as_array().unwrap().iter())
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect();
    want.push(image.digest.clone());
    want.sort();
    let b = Bundle::open(bundle);
    let got: Vec<String> = b.blob_digests().into_iter().collect();
    assert_eq!(got, want, "the bundle's blobs are not the source's");
    for d in &want {
        assert_eq!(&sha256_digest(b.blob_bytes(d)), d, "blob {d} in the bundle");
    }
}

fn cut_first(layer: &BlobRef, after: u64) -> Fault {
    Fault::CutFirst {
        path_contains: format!("/blobs/{}", layer.digest),
        after,
        n: 1,
        stall: None,
        ignore_range: false,
    }
}

fn cache_entry(cache: &Path, digest: &str) -> PathBuf {
    cache.join("blobs/sha256").join(digest_hex(digest))
}

#[test]
fn a_blob_cut_at_one_byte_the_middle_or_the_last_byte_resumes_with_a_range_request() {
    let s = shared();
    let layer = s.app.layers()[0].clone();
    let proxy = FaultProxy::start(&s.src.host(), Fault::None);
    for (i, after) in [1, layer.size / 2, layer.size - 1].into_iter().enumerate() {
        proxy.reset_counts();
        proxy.set_fault(cut_first(&layer, after));
        let dir = tempdir();
        // The middle cut also goes through the cache (teed into its partial file).
        let cache = dir.path().join("cache");
        let extra = if i == 1 {
            args!["--cache", &cache]
        } else {
            Vec::new()
        };
        let (bundle, out) = pack_via(&proxy, &s.app, dir.path(), &extra);
        assert_success(&out);
        assert_eq!(proxy.count(&Action::Cut), 1, "{}", proxy.describe());
        let gets: Vec<_> = proxy
            .transfers()
            .into_iter()
            .filter(|t| t.method == "GET" && t.path.contains(&layer.digest))
            .collect();
        assert_eq!(gets.len(), 2, "cut at {after}: {gets:?}");
        assert_eq!(gets[0].range, None);
        assert_eq!(gets[1].range.as_deref(), Some(&*format!("bytes={after}-")));
        assert_eq!(
            proxy.get_bytes(&layer.digest),
            layer.size,
            "cut at {after}: the body bytes of the layer's GETs are one blob"
        );
        assert_bundle_matches_source(&bundle, &s.app);
        if i == 1 {
            let entry = std::fs::read(cache_entry(&cache, &layer.digest)).unwrap();
            assert_eq!(sha256_digest(&entry), layer.digest);
            assert_eq!(dir_names(&cache.join("partial")), Vec::<String>::new());
        }
    }
}

#[test]
fn a_registry_ignoring_range_still_packs_correctly() {
    let s = shared();
    let layer = s.app.layers()[1].clone();
    let after = layer.size / 3;
    let proxy = FaultProxy::start(
        &s.src.host(),
        Fault::CutFirst {
            path_contains: format!("/blobs/{}", layer.digest),
            after,
            n: 1,
            stall: None,
            ignore_range: true,
        },
    );
    let dir = tempdir();
    let (bundle, out) = pack_via(&proxy, &s.app, dir.path(), &Vec::new());
    assert_success(&out);
    let gets: Vec<_> = proxy
        .transfers()
        .into_iter()
        .filter(|t| t.method == "GET" && t.path.contains(&layer.digest))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[1].range.as_deref(), Some(&*format!("bytes={after}-")));
    // The whole body came again (200), its first `after` bytes skipped.
    assert_eq!(gets[1].body_bytes, layer.size);
    assert_bundle_matches_source(&bundle, &s.app);

    // A cache's partial file continued from such a registry: the same.
    let real = Bundle::open(&bundle).blob_bytes(&layer.digest).to_vec();
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(cache.join("partial")).unwrap();
    std::fs::write(
        cache.join("partial").join(digest_hex(&layer.digest)),
        &real[..after as usize],
    )
    .unwrap();
    proxy.reset_counts();
    proxy.set_fault(Fault::CutFirst {
        path_contains: format!("/blobs/{}", layer.digest),
        after: 0,
        n: 0,
        stall: None,
        ignore_range: true,
    });
    let again = dir.path().join("again");
    std::fs::create_dir_all(&again).unwrap();
    let (bundle, out) = pack_via(&proxy, &s.app, &again, &args!["--cache", &cache]);
    assert_success(&out);
    let gets: Vec<_> = proxy
        .transfers()
        .into_iter()
        .filter(|t| t.path.contains(&layer.digest))
        .collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].range.as_deref(), Some(&*format!("bytes={after}-")));
    assert_eq!(gets[0].body_bytes, layer.size);
    assert_bundle_matches_source(&bundle, &s.app);
    assert_eq!(
        sha256_digest(&std::fs::read(cache_entry(&cache, &layer.digest)).unwrap()),
        layer.digest
    );
}

#[test]
fn a_pack_killed_mid_blob_leaves_no_entry_and_the_rerun_transfers_only_what_was_missing() {
    let s = shared();
    let layers = s.app.layers();
    let (done, cut) = (layers[0].clone(), layers[1].clone());
    let half = cut.size / 2;
    // The cut layer's download hangs after half its body; the other completes.
    let proxy = FaultProxy::start(
        &s.src.host(),
        Fault::CutFirst {
            path_contains: format!("/blobs/{}", cut.digest),
            after: half,
            n: 1,
            stall: Some(Duration::from_secs(30)),
            ignore_range: false,
        },
    );
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let spec = Spec::new()
        .image(&s.app.reference(&s.src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    let pack_args = args![
        "pack",
        &spec,
        "-o",
        &bundle,
        "--mirror",
        format!("{}={}", s.src.host(), proxy.url())
    ];
    let mut running = AirgapCmd::new(&pack_args)
        .env("AIRGAP_CACHE", &cache)
        .timeout(Duration::from_secs(60))
        .spawn();
    let partial = cache.join("partial").join(digest_hex(&cut.digest));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(cache_entry(&cache, &done.digest).is_file()
        && std::fs::metadata(&partial).is_ok_and(|m| m.len() == half))
    {
        assert!(
            Instant::now() < deadline,
            "the pack never reached the stall:\n{}",
            proxy.describe()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    running.kill(); // SIGKILL
    let _ = running.wait();
    assert_no_file(&bundle);
    assert!(
        !cache_entry(&cache, &cut.digest).exists(),
        "an unfinished blob became an entry"
    );

    proxy.set_fault(Fault::None);
    proxy.reset_counts();
    let out = AirgapCmd::new(&pack_args)
        .env("AIRGAP_CACHE", &cache)
        .timeout(Duration::from_secs(60))
        .run();
    show("re-run", &out);
    assert_success(&out);
    assert_eq!(proxy.get_bytes(&done.digest), 0, "{:?}", proxy.transfers());
    let gets: Vec<_> = proxy
        .transfers()
        .into_iter()
        .filter(|t| t.path.contains(&cut.digest))
        .collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].range.as_deref(), Some(&*format!("bytes={half}-")));
    assert_eq!(gets[0].body_bytes, cut.size - half);
    assert_bundle_matches_source(&bundle, &s.app);
    assert_eq!(
        sha256_digest(&std::fs::read(cache_entry(&cache, &cut.digest)).unwrap()),
        cut.digest
    );
    assert_no_file(&partial);
}

#[test]
fn a_flipped_byte_in_a_cache_entry_is_detected_and_downloaded_again() {
    let s = shared();
    let layer = s.app.layers()[0].clone();
    let proxy = FaultProxy::start(&s.src.host(), Fault::None);
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let (_, out) = pack_via(&proxy, &s.app, dir.path(), &args!["--cache", &cache]);
    assert_success(&out);
    let entry = cache_entry(&cache, &layer.digest);
    let mut bytes = std::fs::read(&entry).unwrap();
    bytes[12345] ^= 0x01;
    std::fs::write(&entry, &bytes).unwrap();

    proxy.reset_counts();
    let again = dir.path().join("again");
    std::fs::create_dir_all(&again).unwrap();
    let (bundle, out) = pack_via(&proxy, &s.app, &again, &args!["--cache", &cache]);
    assert_success(&out);
    let stderr = stderr_of(&out);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("corrupt")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains(digest_hex(&layer.digest)),
        "{}",
        warnings[0]
    );
    assert_eq!(proxy.get_bytes(&layer.digest), layer.size);
    assert_eq!(proxy.get_bytes(&s.app.layers()[1].digest), 0);
    assert_bundle_matches_source(&bundle, &s.app);
    assert_eq!(sha256_digest(&std::fs::read(&entry).unwrap()), layer.digest);
}

#[test]
fn a_next_release_sharing_layers_downloads_only_the_new_blobs_and_prune_drops_the_least_recently_used(
) {
    let s = shared();
    let proxy = FaultProxy::start(&s.src.host(), Fault::None);
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let flags = args!["--cache", &cache];
    let (_, out) = pack_via(&proxy, &s.r1, dir.path(), &flags);
    assert_success(&out);
    proxy.reset_counts();
    let (b2, out) = pack_via(&proxy, &s.r2, dir.path(), &flags);
    assert_success(&out);
    let (base, new) = (s.r2.layers()[0].clone(), s.r2.layers()[1].clone());
    assert_eq!(
        s.r1.layers()[0].digest,
        base.digest,
        "the fixtures share a base"
    );
    assert_eq!(proxy.get_bytes(&base.digest), 0, "{:?}", proxy.transfers());
    assert_eq!(proxy.get_bytes(&new.digest), new.size);
    assert_bundle_matches_source(&b2, &s.r2);

    // Packing release 1 again makes its blobs the most recently used; release 2's own
    // config and layer are then the oldest and go first.
    proxy.reset_counts();
    let (_, out) = pack_via(&proxy, &s.r1, dir.path(), &flags);
    assert_success(&out);
    assert_eq!(proxy.get_bytes(&s.r1.layers()[1].digest), 0);
    let info = airgap(args!["cache", "info", "--json", "--cache", &cache], &[]);
    assert_success(&info);
    let before = serde_json::from_str::<serde_json::Value>(&stdout_of(&info)).unwrap();
    let total = before["bytes"].as_u64().unwrap();
    let max = total - new.size / 2;
    let out = airgap(
        args![
            "cache",
            "prune",
            "--max-size",
            max.to_string(),
            "--cache",
            &cache
        ],
        &[],
    );
    show("prune", &out);
    assert_success(&out);
    assert!(
        !cache_entry(&cache, &new.digest).exists(),
        "the least recently used stayed"
    );
    for b in s.r1.layers() {
        assert!(
            cache_entry(&cache, &b.digest).is_file(),
            "{} was pruned",
            b.digest
        );
    }
    let info = airgap(
        args!["cache", "info", "--json"],
        &[("AIRGAP_CACHE", cache.to_str().unwrap())],
    );
    let after = serde_json::from_str::<serde_json::Value>(&stdout_of(&info)).unwrap();
    assert!(after["bytes"].as_u64().unwrap() <= max, "{after}");
    // Release 2's config (written before its layer) went first, then its layer.
    let config = &s.r2.blobs[0];
    assert!(!cache_entry(&cache, &config.digest).exists());
    assert_eq!(
        after["bytes"].as_u64().unwrap(),
        total - new.size - config.size
    );
}

#[test]
fn an_unwritable_cache_directory_fails_naming_it_and_writes_no_bundle() {
    let s = shared();
    let proxy = FaultProxy::start(&s.src.host(), Fault::None);
    let dir = tempdir();
    let file = write_file(dir.path(), "not-a-dir", "x");
    let cache = file.join("cache");
    let (bundle, out) = pack_via(&proxy, &s.app, dir.path(), &args!["--cache", &cache]);
    assert_failure_contains(&out, &[&cache.display().to_string(), "blob cache"]);
    assert_no_file(&bundle);
    assert_eq!(
        proxy.get_bytes("/blobs/"),
        0,
        "it downloaded before failing"
    );
}

#[test]
fn a_bad_max_size_is_refused_and_nothing_is_removed() {
    let s = shared();
    let proxy = FaultProxy::start(&s.src.host(), Fault::None);
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let (_, out) = pack_via(&proxy, &s.app, dir.path(), &args!["--cache", &cache]);
    assert_success(&out);
    let before = dir_names(&cache.join("blobs/sha256"));
    let out = airgap(
        args!["cache", "prune", "--cache", &cache, "--max-size", "10Q"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text_of(&out));
    assert!(stderr_of(&out).contains("10Q"), "{}", stderr_of(&out));
    assert_eq!(dir_names(&cache.join("blobs/sha256")), before);
    assert!(!before.is_empty());
}

#[test]
fn a_partial_file_holding_wrong_bytes_is_dropped_with_a_warning_and_the_blob_downloaded_again() {
    let s = shared();
    let layer = s.app.layers()[1].clone();
    let proxy = FaultProxy::start(&s.src.host(), Fault::None);
    let dir = tempdir();
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(cache.join("partial")).unwrap();
    let half = (layer.size / 2) as usize;
    std::fs::write(
        cache.join("partial").join(digest_hex(&layer.digest)),
        vec![0x5a; half],
    )
    .unwrap();
    let (bundle, out) = pack_via(&proxy, &s.app, dir.path(), &args!["--cache", &cache]);
    assert_success(&out);
    let stderr = stderr_of(&out);
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("partial download"))
            .count(),
        1,
        "{stderr}"
    );
    let gets: Vec<_> = proxy
        .transfers()
        .into_iter()
        .filter(|t| t.path.contains(&layer.digest))
        .collect();
    // The rest after the wrong bytes, then the whole blob from the start.
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range.as_deref(), Some(&*format!("bytes={half}-")));
    assert_eq!(
        (gets[1].range.as_deref(), gets[1].body_bytes),
        (None, layer.size)
    );
    assert_bundle_matches_source(&bundle, &s.app);
    let entry = std::fs::read(cache_entry(&cache, &layer.digest)).unwrap();
    assert_eq!(sha256_digest(&entry), layer.digest);
}
