//! A chunked upload resumed across runs (issue 13): a load SIGKILLed at ~60% of a big
//! layer leaves its session in `--state-dir`; the next run asks the session where it is and
//! sends only the rest (counted at the fault proxy, in front of a real distribution
//! registry). A record whose session the registry no longer knows starts over; a state
//! directory that cannot be written only warns. Digests are judged by skopeo.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::proxy::{Fault, FaultProxy};
use support::*;

const MIB: u64 = 1 << 20;
const LAYER: u64 = 8 * MIB;

struct Packed {
    img: Image,
    bundle: PathBuf,
    dir: tempfile::TempDir,
}

fn packed(repo: &str, seed: u64) -> Packed {
    let src = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&src).big_layer_image(repo, "1", LAYER, seed);
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, args![src.source_flags(), "--quiet"]);
    Packed { img, bundle, dir }
}

fn load_args(bundle: &Path, host: &str, state: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = args![
        "load",
        bundle,
        "--registry",
        host,
        "--plain-http",
        "--chunk-size",
        "1M",
        "--state-dir",
        state
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn records(state: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(state) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => vec![],
    }
}

/// Starts a rate-limited load and SIGKILLs it once the proxy has seen 60% of the layer in
/// PATCHes; returns the PATCH bytes the registry was sent by then.
fn killed_at_60_percent(p: &Packed, proxy: &FaultProxy, state: &Path) -> u64 {
    let a = load_args(
        &p.bundle,
        &proxy.host(),
        state,
        &["--limit-rate", "2M", "--concurrency", "1"],
    );
    let mut run = AirgapCmd::new(a).timeout(Duration::from_secs(60)).spawn();
    let deadline = Instant::now() + Duration::from_secs(40);
    while proxy.body_bytes("PATCH") < LAYER * 6 / 10 {
        assert!(Instant::now() < deadline, "{}", proxy.describe());
        std::thread::sleep(Duration::from_millis(5));
    }
    run.kill();
    let out = run.wait();
    assert!(!out.status.success(), "the load was meant to be killed");
    // Let the registry see the cut connection before the next run asks it.
    std::thread::sleep(Duration::from_millis(200));
    proxy.body_bytes("PATCH")
}

#[test]
fn a_load_killed_at_60_percent_of_a_chunked_upload_sends_only_the_rest_on_the_next_run() {
    let p = packed("resume/app", 501);
    let tgt = Registry::start(RegistryOpts::plain());
    let proxy = FaultProxy::start(&tgt.host(), Fault::None);
    let state = p.dir.path().join("state");
    let first = killed_at_60_percent(&p, &proxy, &state);
    assert!(
        first < LAYER * 9 / 10,
        "the cut came too late: {first} of {LAYER}"
    );
    assert_eq!(records(&state).len(), 1, "{:?}", records(&state));
    let big = p.img.blobs.iter().max_by_key(|b| b.size).unwrap();
    let record = std::fs::read_to_string(&records(&state)[0]).unwrap();
    assert!(record.contains(big.digest.as_str()), "{record}");
    assert!(record.contains("resume/app"), "{record}");

    let out = AirgapCmd::new(load_args(&p.bundle, &proxy.host(), &state, &[])).run();
    assert_success(&out);
    let second = proxy.body_bytes("PATCH") - first;
    let remaining = big.size - first.min(big.size);
    assert!(
        second <= remaining + MIB,
        "the re-run sent {second} bytes in PATCHes; {remaining} were left (plus one chunk of {MIB} allowed):\n{}",
        proxy.describe()
    );
    assert!(
        stderr_of(&out).contains("resumed the upload of blob"),
        "{}",
        text_of(&out)
    );
    assert!(records(&state).is_empty(), "{:?}", records(&state));
    assert_skopeo_digest(&p.img.reference(&tgt.host()), &tgt, &p.img.digest);
}

#[test]
fn a_record_whose_session_is_gone_starts_over_and_an_unwritable_state_dir_only_warns() {
    let p = packed("stale/app", 502);
    let tgt = Registry::start(RegistryOpts::plain());
    let proxy = FaultProxy::start(&tgt.host(), Fault::None);
    let state = p.dir.path().join("state");
    killed_at_60_percent(&p, &proxy, &state);
    let rec = records(&state);
    assert_eq!(rec.len(), 1, "{rec:?}");
    // The registry forgot the session (a restart, a purge): point the record at an
    // upload id it never gave.
    let text = std::fs::read_to_string(&rec[0]).unwrap();
    let gone = regex_lite_replace_uuid(&text);
    assert_ne!(gone, text, "no upload id in {text}");
    std::fs::write(&rec[0], gone).unwrap();

    let before = proxy.body_bytes("PATCH");
    let out = AirgapCmd::new(load_args(&p.bundle, &proxy.host(), &state, &[])).run();
    assert_success(&out);
    let sent = proxy.body_bytes("PATCH") - before;
    assert!(
        sent >= LAYER,
        "started over, so the whole layer goes again: {sent}"
    );
    assert!(!stderr_of(&out).contains("resumed"), "{}", text_of(&out));
    assert!(records(&state).is_empty(), "{:?}", records(&state));
    assert_skopeo_digest(&p.img.reference(&tgt.host()), &tgt, &p.img.digest);

    // A state dir below a file: the load works and says once what it cannot do.
    let tgt2 = Registry::start(RegistryOpts::plain());
    let file = p.dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let out = AirgapCmd::new(load_args(&p.bundle, &tgt2.host(), &file.join("state"), &[])).run();
    assert_success(&out);
    let warnings = stderr_of(&out)
        .matches("cannot remember unfinished uploads")
        .count();
    assert_eq!(warnings, 1, "{}", text_of(&out));
    assert!(stderr_of(&out).contains("a-file"), "{}", text_of(&out));
    assert_skopeo_digest(&p.img.reference(&tgt2.host()), &tgt2, &p.img.digest);
}

/// Replaces the upload id (the path segment after `/blobs/uploads/`) with one the registry
/// never issued.
fn regex_lite_replace_uuid(text: &str) -> String {
    let marker = "/blobs/uploads/";
    let Some(at) = text.find(marker) else {
        return text.to_string();
    };
    let start = at + marker.len();
    let end = text[start..]
        .find(['?', '"'])
        .map(|i| start + i)
        .unwrap_or(text.len());
    format!(
        "{}00000000-0000-4000-8000-000000000000{}",
        &text[..start],
        &text[end..]
    )
}
