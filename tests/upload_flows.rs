//! Upload flows other registries need (issue 13): monolithic PUTs refused (a small OCI
//! registry answering 500 before reading the body), a body cap (nginx's 413, answered early),
//! an early error answer, a missing repository (NAME_UNKNOWN, Harbor's `project … not
//! found`), a PATCH reset half-way, and the chunked path against a second implementation.
//! Everything is emulated by the fault proxy in front of a real distribution registry; what
//! landed is checked with skopeo, and nothing may be tagged after a failure.

mod support;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use support::proxy::{Action, Fault, FaultProxy};
use support::*;

const MIB: u64 = 1 << 20;

fn show(what: &str, out: &Output) {
    eprintln!("---- {what}: {} ----\n{}", out.status, text_of(out));
}

/// A bundle of `big/app:1` (a layer of `size` bytes, a small one, a config) packed from a
/// throw-away source registry.
struct Packed {
    img: Image,
    bundle: PathBuf,
    _dir: tempfile::TempDir,
}

fn packed(repo: &str, size: u64, seed: u64) -> Packed {
    let src = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&src).big_layer_image(repo, "1", size, seed);
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, args![src.source_flags(), "--quiet"]);
    Packed {
        img,
        bundle,
        _dir: dir,
    }
}

fn load(bundle: &std::path::Path, host: &str, extra: &[&str]) -> Output {
    let mut a = args!["load", bundle, "--registry", host, "--plain-http"];
    a.extend(extra.iter().map(|s| s.to_string()));
    let out = AirgapCmd::new(a).timeout(Duration::from_secs(120)).run();
    show("load", &out);
    out
}

fn total_size(img: &Image) -> u64 {
    img.blobs.iter().map(|b| b.size).sum()
}

fn fallback_lines(out: &Output) -> usize {
    stderr_of(out)
        .lines()
        .filter(|l| l.contains("refused a monolithic upload"))
        .count()
}

/// The small registry of the issue: every monolithic PUT gets 500 before its body is read,
/// and the connection is closed under the client. Load falls back to chunks once (one
/// line), every blob lands once (the PATCHes carry each blob's bytes exactly once, none
/// lost, none doubled), skopeo sees the digest.
#[test]
fn a_registry_refusing_monolithic_puts_gets_every_blob_in_chunks_with_one_warning() {
    let p = packed("mono/refused", 6 * MIB, 131);
    let tgt = Registry::start(RegistryOpts::plain());
    let proxy = FaultProxy::start(
        &tgt.host(),
        Fault::EarlyAnswer {
            method: Some("PUT".into()),
            path_contains: "/blobs/uploads/".into(),
            above: 0,
            status: 500,
            code: "UNSUPPORTED".into(),
            message: "monolithic uploads are not supported".into(),
            linger: false,
        },
    );
    let out = load(&p.bundle, &proxy.host(), &["--retries", "1"]);
    assert_success(&out);
    assert_eq!(fallback_lines(&out), 1, "{}", text_of(&out));
    assert_skopeo_digest(&p.img.reference(&tgt.host()), &tgt, &p.img.digest);
    assert_eq!(
        proxy.body_bytes("PATCH"),
        total_size(&p.img),
        "PATCHes must carry every blob once:\n{}",
        proxy.describe()
    );
}

/// nginx with `client_max_body_size 1.5m`: 413 to any bigger body, answered before the body
/// is read. With `--chunk-size 1M` no request is ever refused and no PATCH exceeds 1 MiB;
/// without it, the 6 MiB PUT is refused, load falls back to chunks and halves them on each
/// 413 until they fit.
#[test]
fn a_body_cap_is_never_exceeded_with_chunk_size_and_fallen_back_to_without() {
    let p = packed("cap/app", 6 * MIB, 132);
    let cap = Fault::EarlyAnswer {
        method: None,
        path_contains: "/blobs/uploads/".into(),
        above: 3 * MIB / 2,
        status: 413,
        code: "SIZE_INVALID".into(),
        message: "request entity too large".into(),
        linger: true,
    };
    let tgt = Registry::start(RegistryOpts::plain());
    let proxy = FaultProxy::start(&tgt.host(), cap.clone());
    let out = load(&p.bundle, &proxy.host(), &["--chunk-size", "1M"]);
    assert_success(&out);
    assert_eq!(
        proxy.count(&Action::Answered(413)),
        0,
        "{}",
        proxy.describe()
    );
    assert!(
        proxy.max_body("PATCH") <= MIB,
        "{}",
        proxy.max_body("PATCH")
    );
    // Manifests only: no blob is PUT whole with --chunk-size.
    assert!(proxy.max_body("PUT") < 4096, "{}", proxy.max_body("PUT"));
    assert_eq!(fallback_lines(&out), 0);
    assert_skopeo_digest(&p.img.reference(&tgt.host()), &tgt, &p.img.digest);

    let tgt2 = Registry::start(RegistryOpts::plain());
    let proxy2 = FaultProxy::start(&tgt2.host(), cap);
    let out = load(&p.bundle, &proxy2.host(), &[]);
    assert_success(&out);
    assert_eq!(fallback_lines(&out), 1, "{}", text_of(&out));
    assert!(proxy2.count(&Action::Answered(413)) >= 1);
    assert_skopeo_digest(&p.img.reference(&tgt2.host()), &tgt2, &p.img.digest);
}

/// A registry that answers 500 with an OCI error body before the body is sent, to every
/// request with a body: the error names the registry, repository, digest, status, code and
/// message (never only the socket error); nothing is tagged. Without lingering (the
/// connection closed under the body) the answer is reported when it arrived, else that the
/// connection was closed while the blob was being sent, naming the same.
#[test]
fn an_early_error_answer_is_reported_with_its_status_code_and_message() {
    let p = packed("early/app", 4 * MIB, 133);
    for linger in [true, false] {
        let tgt = Registry::start(RegistryOpts::plain());
        let proxy = FaultProxy::start(
            &tgt.host(),
            Fault::EarlyAnswer {
                method: None,
                path_contains: "/blobs/uploads/".into(),
                above: 2 * MIB,
                status: 500,
                code: "BLOB_UPLOAD_INVALID".into(),
                message: "storage quota exceeded".into(),
                linger,
            },
        );
        let out = load(&p.bundle, &proxy.host(), &["--retries", "0"]);
        assert_failure(&out);
        let text = text_of(&out);
        let big = p.img.blobs.iter().max_by_key(|b| b.size).unwrap();
        for needle in [proxy.host().as_str(), p.img.repo.as_str(), &big.digest] {
            assert!(text.contains(needle), "no {needle:?} in:\n{text}");
        }
        let answered = text.contains("HTTP 500")
            && text.contains("BLOB_UPLOAD_INVALID")
            && text.contains("storage quota exceeded");
        if linger {
            assert!(answered, "the registry's answer is not reported:\n{text}");
        } else {
            assert!(
                answered || text.contains("closed the connection while blob"),
                "{text}"
            );
        }
        assert_eq!(tgt.client().tags(&p.img.repo), Vec::<String>::new());
    }
}

/// A missing repository: distribution/ECR/GitLab's `NAME_UNKNOWN`, and Harbor's 404
/// `project … not found`, to the POST opening an upload. The load stops, names the
/// repository, the registry and the registry's words, gives a hint saying what to create,
/// and pushes no manifest and no tag.
#[test]
fn a_missing_repository_or_project_stops_the_load_naming_what_to_create() {
    let p = packed("missing/app", 5 * MIB, 134);
    let bodies = [
        (
            404,
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"missing/app"}}]}"#,
            "NAME_UNKNOWN repository name not known to registry",
        ),
        (
            404,
            r#"{"errors":[{"code":"NOT_FOUND","message":"project missing not found: project missing not found"}]}"#,
            "project missing not found",
        ),
    ];
    for (status, body, words) in bodies {
        let tgt = Registry::start(RegistryOpts::plain());
        let proxy = FaultProxy::start(
            &tgt.host(),
            Fault::Canned {
                method: Some("POST".into()),
                path_contains: "/v2/missing/".into(),
                status,
                content_type: "application/json".into(),
                headers: vec![],
                body: std::sync::Arc::new(body.as_bytes().to_vec()),
            },
        );
        let out = load(&p.bundle, &proxy.host(), &[]);
        assert_failure_contains(
            &out,
            &[&proxy.host(), "missing/app", words, "hint: ", "\"missing\""],
        );
        let text = text_of(&out);
        assert!(text.contains("has no repository missing/app"), "{text}");
        assert!(
            !proxy
                .seen()
                .iter()
                .any(|s| s.path.contains("/manifests/") && s.method == "PUT"),
            "a manifest was pushed:\n{}",
            proxy.describe()
        );
        assert_eq!(tgt.client().tags(&p.img.repo), Vec::<String>::new());
    }
}

/// "Stop before pushing anything else": `ok/app` (a 6 MiB layer read through the seek table,
/// a small one, a config) exists; `missing/app`'s project does not (Harbor's 404). Every
/// request to `ok/` is held 3 s at the proxy, so its uploads are in flight when the refusal
/// comes. They are cancelled, not left to finish: no PUT or PATCH reaches the proxy at all
/// (no blob byte, no manifest, no tag), none of `ok/app`'s blobs is at the target, and the
/// error names the registry, the repository, the status and the registry's message.
#[test]
fn a_missing_project_cancels_the_uploads_in_flight_and_sends_nothing_more() {
    let src = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&src);
    let ok = fx.big_layer_image("ok/app", "1", 6 * MIB, 137);
    let missing = fx.image(
        "missing/app",
        Some("1"),
        &ImageOpts::oci(138).layers(1, 4096),
    );
    let dir = tempdir();
    let spec = Spec::new()
        .image(&ok.reference(&src.host()))
        .image(&missing.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, args![src.source_flags(), "--quiet"]);

    let tgt = Registry::start(RegistryOpts::plain());
    let hold = Duration::from_secs(3);
    let proxy = FaultProxy::start(
        &tgt.host(),
        Fault::Each(vec![
            Fault::Canned {
                method: Some("POST".into()),
                path_contains: "/v2/missing/".into(),
                status: 404,
                content_type: "application/json".into(),
                headers: vec![],
                body: std::sync::Arc::new(
                    br#"{"errors":[{"code":"NOT_FOUND","message":"project missing not found: project missing not found"}]}"#
                        .to_vec(),
                ),
            },
            Fault::Hold {
                method: None,
                path_contains: "/v2/ok/".into(),
                hold,
            },
        ]),
    );
    let started = std::time::Instant::now();
    let out = load(&bundle, &proxy.host(), &[]);
    let took = started.elapsed();
    assert_failure_contains(
        &out,
        &[
            &proxy.host(),
            "has no repository missing/app",
            "HTTP 404",
            "project missing not found",
            "hint: ",
        ],
    );
    // The load did not wait for the held uploads to finish.
    assert!(
        took < hold,
        "the load took {took:?}, waiting for the uploads in flight"
    );
    // Let the proxy forward what it held (the sessions' POSTs, whose client is gone).
    std::thread::sleep(hold + Duration::from_millis(500));
    let seen = proxy.seen();
    assert!(
        seen.iter()
            .any(|s| s.method == "POST" && s.path.contains("/v2/ok/")),
        "no upload to ok/app was in flight, the test proves nothing:\n{}",
        proxy.describe()
    );
    assert!(
        !seen
            .iter()
            .any(|s| s.method == "PUT" || s.method == "PATCH"),
        "something was sent after the refusal:\n{}",
        proxy.describe()
    );
    assert_eq!(proxy.body_bytes("PUT") + proxy.body_bytes("PATCH"), 0);
    for b in &ok.blobs {
        assert!(
            !tgt.client().blob_exists(&ok.repo, &b.digest),
            "blob {} landed in ok/app",
            b.digest
        );
    }
    assert_eq!(tgt.client().tags(&ok.repo), Vec::<String>::new());
    assert_eq!(tgt.client().tags(&missing.repo), Vec::<String>::new());
}

/// A chunked upload (1 MiB chunks) reset at ~60% of its layer: load asks the session where
/// it is (`GET` its Location), resumes there, and the PATCHes carry no more than the blobs'
/// bytes plus one chunk, counted at the proxy.
#[test]
fn a_chunked_upload_cut_at_60_percent_resumes_and_sends_only_the_rest_plus_a_chunk() {
    let p = packed("resume/app", 6 * MIB, 135);
    let tgt = Registry::start(RegistryOpts::plain());
    let total = total_size(&p.img);
    let proxy = FaultProxy::start(
        &tgt.host(),
        Fault::ResetPatchAt {
            after: total * 6 / 10,
        },
    );
    let out = load(&p.bundle, &proxy.host(), &["--chunk-size", "1M"]);
    assert_success(&out);
    assert_eq!(proxy.count(&Action::Reset), 1, "{}", proxy.describe());
    assert!(
        proxy
            .seen()
            .iter()
            .any(|s| s.method == "GET" && s.path.contains("/blobs/uploads/")),
        "the session was not asked where it is:\n{}",
        proxy.describe()
    );
    let sent = proxy.body_bytes("PATCH");
    assert!(
        sent > total && sent <= total + MIB,
        "PATCHes carried {sent} bytes for {total}:\n{}",
        proxy.describe()
    );
    assert_skopeo_digest(&p.img.reference(&tgt.host()), &tgt, &p.img.digest);
}

/// The chunked path against a second implementation (ferro-oci-server): 1 MiB PATCHes, the
/// final PUT, every digest as skopeo reads it; a second load changes nothing.
#[test]
fn chunked_uploads_into_ferro_keep_every_digest() {
    let p = packed("ferro/app", 3 * MIB, 136);
    let tgt = Registry::start(RegistryOpts::of(Kind::Ferro));
    let out = load(&p.bundle, &tgt.host(), &["--chunk-size", "1M"]);
    assert_success(&out);
    assert_skopeo_digest(&p.img.reference(&tgt.host()), &tgt, &p.img.digest);
    let again = load(&p.bundle, &tgt.host(), &["--chunk-size", "1M"]);
    assert_success(&again);
    assert!(
        stdout_of(&again).contains("0 blob(s) uploaded"),
        "{}",
        text_of(&again)
    );
}

/// nginx's 413 over `client_max_body_size`, answered from the header while the body is read
/// and dropped: once the answer is in, load stops sending the refused body (hyper alone
/// sends it whole: the interop benchmark's 1.95x). Counted at the proxy, only what was in
/// flight of the refused bodies arrives, and the fallback line still carries the 413's code
/// and message.
#[test]
fn a_refused_body_stops_once_the_answer_has_come() {
    let p = packed("stop/app", 16 * MIB, 137);
    let tgt = Registry::start(RegistryOpts::plain());
    let proxy = FaultProxy::start(
        &tgt.host(),
        Fault::EarlyAnswer {
            method: None,
            path_contains: "/blobs/uploads/".into(),
            above: 3 * MIB / 2,
            status: 413,
            code: "SIZE_INVALID".into(),
            message: "request entity too large".into(),
            linger: true,
        },
    );
    let out = load(&p.bundle, &proxy.host(), &[]);
    assert_success(&out);
    let stderr = stderr_of(&out);
    let line = stderr
        .lines()
        .find(|l| l.contains("refused a monolithic upload"))
        .unwrap_or_default();
    assert!(
        line.contains("413") && line.contains("request entity too large"),
        "the fallback line lost the registry's answer:\n{stderr}"
    );
    assert_skopeo_digest(&p.img.reference(&tgt.host()), &tgt, &p.img.digest);
    // Let the proxy read what is still on its way.
    std::thread::sleep(Duration::from_millis(300));
    let (refused, arrived) = proxy.early_answered_bodies();
    eprintln!("refused bodies: {arrived} of {refused} bytes arrived");
    // The PUT of the layer (16 MiB and its tar headers), then PATCHes of 16, 8, 4 and 2 MiB
    // (the largest power of two below the refused size each time): 46 MiB refused.
    assert!(refused >= 46 * MIB, "{refused}:\n{}", proxy.describe());
    // Without the stop every refused byte arrives; with it about a tenth does on a quiet
    // machine (more when the client is slow to see the answer: half is the bound here).
    assert!(
        arrived * 2 < refused,
        "{arrived} bytes of {refused} refused ones were sent anyway:\n{}",
        proxy.describe()
    );
}

/// The OCI distribution spec's single `POST ?digest=` for blobs small enough to be held:
/// ferro-oci-server stores the blob (201), one request per blob; distribution opens a
/// session and ignores the body (202): that blob is PUT on the session, and every later one
/// goes POST + PUT (found out once: one try). Not a first load (an image of the bundle is
/// there), so small blobs are HEADed and uploaded without the mount probe.
#[test]
fn small_blobs_go_in_one_post_where_the_registry_takes_it_and_once_where_it_does_not() {
    let src = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&src);
    let base = fx.image(
        "single/base",
        Some("1"),
        &ImageOpts::oci(140).layers(1, 1024),
    );
    let app = fx.image(
        "single/app",
        Some("1"),
        &ImageOpts::oci(141).layers(5, 4096),
    );
    let dir = tempdir();
    let pack = |name: &str, imgs: &[&Image]| {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let mut spec = Spec::new();
        for img in imgs {
            spec = spec.image(&img.reference(&src.host()));
        }
        let spec = spec.write(&sub);
        let bundle = sub.join("bundle.tar.zst");
        pack_ok(&spec, &bundle, args![src.source_flags(), "--quiet"]);
        bundle
    };
    let first = pack("base", &[&base]);
    let both = pack("both", &[&base, &app]);
    let base_blobs: Vec<&str> = base.blobs.iter().map(|b| b.digest.as_str()).collect();
    let new: Vec<_> = app
        .blobs
        .iter()
        .filter(|b| !base_blobs.contains(&b.digest.as_str()))
        .collect();
    assert!(new.len() >= 5, "{new:?}");
    for kind in [Kind::Ferro, Kind::Distribution] {
        let tgt = Registry::start(RegistryOpts::of(kind));
        assert_success(&load(&first, &tgt.host(), &[]));
        let proxy = FaultProxy::start(&tgt.host(), Fault::None);
        let out = load(&both, &proxy.host(), &["--concurrency", "1"]);
        assert_success(&out);
        assert_skopeo_digest(&app.reference(&tgt.host()), &tgt, &app.digest);
        let seen = proxy.seen();
        let uploads = |method: &str, query: Option<&str>| {
            seen.iter()
                .filter(|s| s.method == method && s.path.contains("/single/app/blobs/uploads/"))
                .filter(|s| query.is_none_or(|q| s.path.contains(q)))
                .count()
        };
        let single = uploads("POST", Some("digest="));
        let posts = uploads("POST", None) - uploads("POST", Some("mount="));
        let puts = uploads("PUT", None);
        let log = proxy.describe();
        match kind {
            Kind::Ferro => {
                assert_eq!(single, new.len(), "{log}");
                assert_eq!((posts, puts), (new.len(), 0), "{log}");
            }
            _ => {
                // One try: the first blob's POST carried it, the 202's session got the PUT.
                assert_eq!(single, 1, "{log}");
                assert_eq!((posts, puts), (new.len(), new.len()), "{log}");
                assert!(
                    new.iter().any(|b| b.size == proxy.body_bytes("POST")),
                    "the one try sent {} bytes:\n{log}",
                    proxy.body_bytes("POST")
                );
            }
        }
    }
}

/// `bundle` recompressed by `zstd -d | zstd -3`: a bundle without a seek table (as older
/// versions wrote), whose big blobs load can only stream.
fn without_seek_table(bundle: &std::path::Path) -> PathBuf {
    let tar = bundle.with_extension("plain");
    zstd_decompress(bundle, &tar);
    let old = bundle.with_file_name("old-style.tar.zst");
    let out = std::process::Command::new("zstd")
        .args(["-q", "-f", "-3", "-o"])
        .arg(&old)
        .arg(&tar)
        .output()
        .expect("run zstd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&tar).unwrap();
    old
}

/// A big blob of a bundle without a seek table, chunked: chunk-size PATCHes cut from the
/// stream as it is read, through a 1.5 MiB body cap that none exceeds. A chunk above the
/// cap cannot be read again from a stream: the load fails with the 413, naming the blob,
/// and tags nothing.
#[test]
fn a_streamed_blob_goes_in_chunk_size_patches_and_a_refused_one_fails_cleanly() {
    let p = packed("stream/app", 6 * MIB, 138);
    let old = without_seek_table(&p.bundle);
    let cap = Fault::EarlyAnswer {
        method: None,
        path_contains: "/blobs/uploads/".into(),
        above: 3 * MIB / 2,
        status: 413,
        code: "SIZE_INVALID".into(),
        message: "request entity too large".into(),
        linger: true,
    };
    let tgt = Registry::start(RegistryOpts::plain());
    let proxy = FaultProxy::start(&tgt.host(), cap.clone());
    let out = load(&old, &proxy.host(), &["--chunk-size", "1M"]);
    assert_success(&out);
    let log = proxy.describe();
    assert_eq!(proxy.count(&Action::Answered(413)), 0, "{log}");
    assert!(proxy.max_body("PATCH") <= MIB, "{log}");
    let big = p.img.blobs.iter().max_by_key(|b| b.size).unwrap();
    let patches = proxy.seen().iter().filter(|s| s.method == "PATCH").count() as u64;
    assert!(
        patches >= big.size.div_ceil(MIB),
        "{patches} PATCHes:\n{log}"
    );
    assert_eq!(proxy.body_bytes("PATCH"), total_size(&p.img), "{log}");
    assert_skopeo_digest(&p.img.reference(&tgt.host()), &tgt, &p.img.digest);

    let tgt = Registry::start(RegistryOpts::plain());
    let proxy = FaultProxy::start(&tgt.host(), cap);
    let out = load(
        &old,
        &proxy.host(),
        &["--chunk-size", "2M", "--retries", "0"],
    );
    assert_failure_contains(
        &out,
        &[
            &proxy.host(),
            p.img.repo.as_str(),
            big.digest.as_str(),
            "413",
            "request entity too large",
        ],
    );
    assert_eq!(tgt.client().tags(&p.img.repo), Vec::<String>::new());
}
