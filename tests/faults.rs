//! Reliability under faults, against real registries: a target killed in the middle of a
//! load and restarted, a fault-injecting proxy (resets, 503 with Retry-After, 429, 502, a
//! registry that always answers 503, a source cutting a blob in the middle, a target that
//! refuses pushes). Every outcome is asserted exactly; what landed is checked by digest
//! with skopeo.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use support::proxy::{Action, Fault, FaultProxy};
use support::*;

/// Shows what airgap printed (visible with `--nocapture`, and in a failing test's output).
fn show(what: &str, out: &std::process::Output) {
    eprintln!("---- {what}: {} ----\n{}", out.status, text_of(out));
}

/// Bytes written so far into the registry's upload sessions of `repo` (the `data` files
/// under `_uploads/`): non-zero while a blob upload is in progress.
fn upload_bytes_in_progress(reg: &Registry, repo: &str) -> u64 {
    let uploads = reg
        .storage_dir()
        .join("docker/registry/v2/repositories")
        .join(repo)
        .join("_uploads");
    let Ok(sessions) = std::fs::read_dir(&uploads) else {
        return 0;
    };
    sessions
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::metadata(e.path().join("data")).ok())
        .map(|m| m.len())
        .sum()
}

/// The number in "N blob(s) uploaded" of load's summary line.
fn blobs_uploaded(out: &Output) -> u64 {
    let text = stdout_of(out);
    let i = text
        .find(" blob(s) uploaded")
        .unwrap_or_else(|| panic!("no \"N blob(s) uploaded\" in the summary:\n{text}"));
    let digits: String = text[..i]
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no count before \"blob(s) uploaded\":\n{text}"))
}

#[test]
fn target_killed_mid_load_fails_naming_it_and_a_rerun_pushes_only_what_is_missing() {
    let src = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&src).big_layer_image("big/killed", "1", 200 << 20, 91);
    let big = img.blobs.iter().max_by_key(|b| b.size).unwrap().clone();
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, args![src.source_flags(), "--quiet"]);
    drop(src);

    let tgt = Registry::start(RegistryOpts::plain());
    let th = tgt.host();
    let load_args = args!["load", &bundle, "--registry", &th, tgt.target_flags()];
    let mut running = AirgapCmd::new(&load_args)
        .timeout(Duration::from_secs(60))
        .spawn();
    // Kill the registry once the big layer is being received (16 MiB of 200 landed) and the
    // config, which the bundle holds before every layer, has landed: so the kill leaves
    // something done and something undone, whatever the scheduling.
    let config = &img.blobs[0];
    let probe = tgt.client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if upload_bytes_in_progress(&tgt, &img.repo) >= 16 << 20
            && probe.blob_exists(&img.repo, &config.digest)
        {
            break;
        }
        if running.child.try_wait().unwrap().is_some() {
            let out = running.wait();
            panic!(
                "the load ended before the big layer was seen in progress:\n{}",
                text_of(&out)
            );
        }
        assert!(
            Instant::now() < deadline,
            "no upload in progress at the target within 30 s:\n{}",
            tgt.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    tgt.stop();
    let killed_at = Instant::now();
    let first = running.wait();
    eprintln!(
        "the load ended {:?} after the registry was killed",
        killed_at.elapsed()
    );
    show("first", &first);
    assert_failure_contains(&first, &[&th, &img.repo]);
    assert!(
        killed_at.elapsed() < Duration::from_secs(20),
        "the load took {:?} to give up on a dead registry",
        killed_at.elapsed()
    );
    assert!(
        !stdout_of(&first).contains("blob(s) uploaded"),
        "a failed load printed a success summary:\n{}",
        stdout_of(&first)
    );

    tgt.restart();
    let c = tgt.client();
    assert!(c.tags(&img.repo).is_empty(), "{:?}", c.tags(&img.repo));
    assert!(c.get_manifest(&img.repo, &img.digest).is_none());
    assert_skopeo_absent(&img.reference(&th), &tgt);
    assert!(
        !c.blob_exists(&img.repo, &big.digest),
        "the interrupted layer exists at the target"
    );
    let missing = img
        .blobs
        .iter()
        .filter(|b| !c.blob_exists(&img.repo, &b.digest))
        .count() as u64;
    assert!(
        missing < img.blobs.len() as u64,
        "nothing of the first load stayed at the target"
    );

    let second = AirgapCmd::new(&load_args)
        .timeout(Duration::from_secs(60))
        .run();
    assert_success(&second);
    assert_eq!(
        blobs_uploaded(&second),
        missing,
        "the re-run must upload exactly the {missing} missing blob(s) of {}:\n{}",
        img.blobs.len(),
        stdout_of(&second)
    );
    assert_skopeo_digest(&img.reference(&th), &tgt, &img.digest);
    assert_eq!(c.tags(&img.repo), vec!["1".to_string()]);
    for b in &img.blobs {
        assert_eq!(
            c.blob_digest(&img.repo, &b.digest),
            (b.digest.clone(), b.size),
            "blob {} at the target",
            b.digest
        );
    }
}

// ---------------------------------------------------------------------------------------
// Transient faults through the proxy

/// A source registry with `app/flaky:1` (OCI, two layers), a target registry, a proxy in
/// front of each, and a spec naming the image by the source registry's own host.
struct Setup {
    src: Registry,
    tgt: Registry,
    img: Image,
    src_proxy: FaultProxy,
    tgt_proxy: FaultProxy,
    dir: tempfile::TempDir,
    spec: std::path::PathBuf,
    bundle: std::path::PathBuf,
}

impl Setup {
    fn new(seed: u64) -> Setup {
        let src = Registry::start(RegistryOpts::plain());
        let img = Fixtures::new(&src).image("app/flaky", Some("1"), &ImageOpts::oci(seed));
        let tgt = Registry::start(RegistryOpts::plain());
        let src_proxy = FaultProxy::start(&src.host(), Fault::None);
        let tgt_proxy = FaultProxy::start(&tgt.host(), Fault::None);
        let dir = tempdir();
        let spec = Spec::new()
            .image(&img.reference(&src.host()))
            .write(dir.path());
        let bundle = dir.path().join("bundle.tar.zst");
        Setup {
            src,
            tgt,
            img,
            src_proxy,
            tgt_proxy,
            dir,
            spec,
            bundle,
        }
    }

    /// `airgap pack` with the source reached through its proxy.
    fn pack(&self, out: &Path, extra: &[&str]) -> Output {
        let mut a = args![
            "pack",
            &self.spec,
            "-o",
            out,
            "--mirror",
            format!("{}={}", self.src.host(), self.src_proxy.url()),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        AirgapCmd::new(a).timeout(Duration::from_secs(60)).run()
    }

    /// `airgap load` into the target through its proxy.
    fn load(&self, extra: &[&str]) -> Output {
        let mut a = args![
            "load",
            &self.bundle,
            "--registry",
            self.tgt_proxy.host(),
            "--plain-http"
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        AirgapCmd::new(a).timeout(Duration::from_secs(60)).run()
    }

    /// Where a load through the proxy lands, named by the real target registry.
    fn target_ref(&self) -> String {
        self.img.reference(&self.tgt.host())
    }
}

/// With `fault(2)` (the first two connections or requests fail) pack and load succeed by
/// retrying, and the proxy saw exactly the two faults; with `fault(1)` and `--retries 0`
/// both fail at once naming the registry and `words`, and leave nothing behind.
fn retried_then_refused(seed: u64, fault: impl Fn(usize) -> Fault, hit: Action, words: &[&str]) {
    let s = Setup::new(seed);

    s.src_proxy.set_fault(fault(2));
    let pack = s.pack(&s.bundle, &[]);
    assert_success(&pack);
    assert_eq!(
        s.src_proxy.count(&hit),
        2,
        "source proxy log:\n{}",
        s.src_proxy.describe()
    );
    assert_eq!(
        Bundle::open(&s.bundle).ref_digest(&s.img.reference(&s.src.host())),
        s.img.digest
    );

    s.tgt_proxy.set_fault(fault(2));
    let load = s.load(&[]);
    assert_success(&load);
    assert_eq!(
        s.tgt_proxy.count(&hit),
        2,
        "target proxy log:\n{}",
        s.tgt_proxy.describe()
    );
    assert_skopeo_digest(&s.target_ref(), &s.tgt, &s.img.digest);

    // No retries: the first fault is final.
    s.src_proxy.reset_counts();
    s.src_proxy.set_fault(fault(1));
    let out_dir = s.dir.path().join("no-retries");
    std::fs::create_dir_all(&out_dir).unwrap();
    let refused = out_dir.join("bundle.tar.zst");
    let started = Instant::now();
    let pack0 = s.pack(&refused, &["--retries", "0"]);
    let mut needles = vec![s.src.host()];
    needles.extend(words.iter().map(|w| w.to_string()));
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    show("pack0", &pack0);
    assert_failure_contains(&pack0, &needles);
    assert_eq!(s.src_proxy.count(&hit), 1, "{}", s.src_proxy.describe());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(dir_names(&out_dir), Vec::<String>::new());

    let fresh = Registry::start(RegistryOpts::plain());
    let fresh_proxy = FaultProxy::start(&fresh.host(), fault(1));
    let ph = fresh_proxy.host();
    let load0 = AirgapCmd::new(args![
        "load",
        &s.bundle,
        "--registry",
        &ph,
        "--plain-http",
        "--retries",
        "0"
    ])
    .timeout(Duration::from_secs(60))
    .run();
    let mut needles = vec![ph.clone()];
    needles.extend(words.iter().map(|w| w.to_string()));
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    show("load0", &load0);
    assert_failure_contains(&load0, &needles);
    assert_eq!(fresh_proxy.count(&hit), 1, "{}", fresh_proxy.describe());
    assert!(fresh.client().catalog().is_empty());
}

#[test]
fn connection_resets_are_retried_and_final_without_retries() {
    retried_then_refused(
        101,
        Fault::ResetFirst,
        Action::Reset,
        &["cannot reach registry"],
    );
}

#[test]
fn status_503_with_retry_after_is_retried_and_final_without_retries() {
    retried_then_refused(
        102,
        |n| Fault::StatusFirst {
            n,
            status: 503,
            retry_after: Some(1),
        },
        Action::Answered(503),
        &["503"],
    );
}

#[test]
fn status_429_is_retried_and_final_without_retries() {
    retried_then_refused(
        103,
        |n| Fault::StatusFirst {
            n,
            status: 429,
            retry_after: None,
        },
        Action::Answered(429),
        &["429"],
    );
}

#[test]
fn status_502_is_retried_and_final_without_retries() {
    retried_then_refused(
        104,
        |n| Fault::StatusFirst {
            n,
            status: 502,
            retry_after: None,
        },
        Action::Answered(502),
        &["502"],
    );
}

#[test]
fn a_registry_always_answering_503_fails_after_bounded_retries() {
    let s = Setup::new(105);
    let always = Fault::StatusAlways {
        status: 503,
        retry_after: Some(1),
    };

    // pack, default retries (3): four requests, Retry-After honoured, then a clear failure.
    s.src_proxy.set_fault(always.clone());
    let out_dir = s.dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let started = Instant::now();
    let pack = s.pack(&out_dir.join("bundle.tar.zst"), &[]);
    let took = started.elapsed();
    show("pack", &pack);
    assert_failure_contains(&pack, &[&s.src.host(), "503"]);
    assert_eq!(
        s.src_proxy.count(&Action::Answered(503)),
        4,
        "{}",
        s.src_proxy.describe()
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "pack gave up after {took:?}; expected three 1 s Retry-After waits"
    );
    assert_eq!(dir_names(&out_dir), Vec::<String>::new());

    // load, --retries 2: three requests, then a clear failure; nothing lands.
    s.src_proxy.set_fault(Fault::None);
    pack_ok(
        &s.spec,
        &s.bundle,
        args![
            "--mirror",
            format!("{}={}", s.src.host(), s.src_proxy.url())
        ],
    );
    s.tgt_proxy.set_fault(always);
    let started = Instant::now();
    let load = s.load(&["--retries", "2"]);
    let took = started.elapsed();
    show("load", &load);
    assert_failure_contains(&load, &[&s.tgt_proxy.host(), "503"]);
    assert_eq!(
        s.tgt_proxy.count(&Action::Answered(503)),
        3,
        "{}",
        s.tgt_proxy.describe()
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "load gave up after {took:?}; expected two 1 s Retry-After waits"
    );
    assert!(s.tgt.client().catalog().is_empty());
}

#[test]
fn a_blob_upload_answered_503_is_retried_and_counted_once() {
    let s = Setup::new(108);
    pack_ok(&s.spec, &s.bundle, s.src.source_flags());
    s.tgt_proxy.set_fault(Fault::StatusFirstMatching {
        method: "PUT".into(),
        path_contains: "/blobs/uploads/".into(),
        n: 2,
        status: 503,
    });
    let load = s.load(&[]);
    show("load", &load);
    assert_success(&load);
    assert_eq!(
        s.tgt_proxy.count(&Action::Answered(503)),
        2,
        "{}",
        s.tgt_proxy.describe()
    );
    assert_eq!(blobs_uploaded(&load), s.img.blobs.len() as u64);
    assert_skopeo_digest(&s.target_ref(), &s.tgt, &s.img.digest);
    let c = s.tgt.client();
    for b in &s.img.blobs {
        assert_eq!(
            c.blob_digest(&s.img.repo, &b.digest),
            (b.digest.clone(), b.size)
        );
    }
}

// ---------------------------------------------------------------------------------------
// A source failing mid-pack; a target refusing pushes

#[test]
fn source_cutting_every_download_of_a_blob_fails_pack_after_bounded_resumes_and_leaves_nothing() {
    let src = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&src).image(
        "app/cut",
        Some("1"),
        &ImageOpts::oci(106).layers(2, 4 << 20),
    );
    let layer = img.layers()[1].clone();
    let proxy = FaultProxy::start(
        &src.host(),
        // Every GET of the layer (the resumes too) ends after the head: a cut that keeps
        // bringing bytes would be resumed to the end (tests/cache_resume.rs).
        Fault::CutResponse {
            path_contains: format!("/blobs/{}", layer.digest),
            after: 0,
        },
    );
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let bundle = out_dir.join("bundle.tar.zst");
    let out = AirgapCmd::new(args![
        "pack",
        &spec,
        "-o",
        &bundle,
        "--mirror",
        format!("{}={}", src.host(), proxy.url())
    ])
    .timeout(Duration::from_secs(60))
    .run();
    show("out", &out);
    assert_failure_contains(
        &out,
        &[&layer.digest, &img.reference(&src.host()), &src.host()],
    );
    // The first attempt and --retries (3) resumes without progress, then it gives up.
    assert_eq!(proxy.count(&Action::Cut), 4, "{}", proxy.describe());
    assert_no_file(&bundle);
    assert_eq!(
        dir_names(&out_dir),
        Vec::<String>::new(),
        "a failed pack left files in the output directory"
    );
}

#[test]
fn load_without_push_permission_names_the_repository_and_tags_nothing() {
    let src = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&src).image("team/app", Some("2"), &ImageOpts::oci(107));
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, src.source_flags());

    let tgt = Registry::start(RegistryOpts::plain());
    let proxy = FaultProxy::start(
        &tgt.host(),
        Fault::StatusForMethods {
            methods: vec!["POST".into(), "PUT".into(), "PATCH".into(), "DELETE".into()],
            status: 403,
        },
    );
    let map = dir.path().join("map.json");
    let out = AirgapCmd::new(args![
        "load",
        &bundle,
        "--registry",
        proxy.host(),
        "--plain-http",
        "--image-map",
        &map
    ])
    .timeout(Duration::from_secs(60))
    .run();
    show("out", &out);
    assert_failure_contains(&out, &[&proxy.host(), &img.repo, "403"]);
    assert_output_mentions_any(&out, &["permission", "authentication"]);
    assert!(
        proxy.count(&Action::Answered(403)) >= 1,
        "{}",
        proxy.describe()
    );
    assert!(
        !proxy.seen().iter().any(|s| s.method == "PUT"
            && s.path.contains("/manifests/")
            && s.action == Action::Forwarded),
        "a manifest reached the registry:\n{}",
        proxy.describe()
    );
    assert!(tgt.client().tags(&img.repo).is_empty());
    assert!(tgt.client().catalog().is_empty());
    assert_skopeo_absent(&img.reference(&tgt.host()), &tgt);
    assert_no_file(&map);
}

/// A registry that refuses every cross-repository mount (as registries do when the token may
/// not pull from the other repository): a big layer shared by five images in five
/// repositories must still land in all of them, uploaded to each.
#[test]
fn a_registry_refusing_every_mount_still_gets_a_shared_big_layer_into_every_repository() {
    let src = Registry::start(RegistryOpts::plain());
    let base = TarLayer::new(0xB16, 5 << 20);
    let fx = Fixtures::new(&src);
    let imgs: Vec<Image> = (0..5)
        .map(|i| {
            fx.image(
                &format!("shared{i}/app"),
                Some("1"),
                &ImageOpts::oci(120 + i).base(base.clone()),
            )
        })
        .collect();
    let dir = tempdir();
    let mut spec = Spec::new();
    for img in &imgs {
        spec = spec.image(&img.reference(&src.host()));
    }
    let spec = spec.write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, src.source_flags());

    let tgt = Registry::start(RegistryOpts::plain());
    let proxy = FaultProxy::start(
        &tgt.host(),
        Fault::Canned {
            method: Some("POST".into()),
            path_contains: "mount=".into(),
            status: 404,
            content_type: "application/json".into(),
            headers: vec![],
            body: std::sync::Arc::new(
                br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"mount refused"}]}"#.to_vec(),
            ),
        },
    );
    let out = AirgapCmd::new(args![
        "load",
        &bundle,
        "--registry",
        proxy.host(),
        "--plain-http"
    ])
    .timeout(Duration::from_secs(120))
    .run();
    show("out", &out);
    assert_success(&out);
    assert!(
        proxy.count(&Action::Answered(404)) >= 4,
        "mounts were not refused:\n{}",
        proxy.describe()
    );
    let base_digest = base.digest();
    for img in &imgs {
        assert_skopeo_digest(&img.reference(&tgt.host()), &tgt, &img.digest);
        assert!(
            tgt.client().blob_exists(&img.repo, &base_digest),
            "{} lacks the shared layer",
            img.repo
        );
    }
}
