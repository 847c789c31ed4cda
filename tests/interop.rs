//! The same workflow against a second, independent registry implementation
//! (ferro-oci-server, see tests/support/registry.rs `Kind::Ferro`): pack from it, load into it
//! and into distribution, re-load, and an interrupted load re-run, every digest checked with
//! skopeo. Where ferro lacks a feature the test relies on, the assertion says so.

mod support;

use std::time::{Duration, Instant};

use support::proxy::{Fault, FaultProxy};
use support::*;

/// Every fixture kind (no big layer) pushed to a ferro source, packed through the CLI.
fn ferro_bundle(dir: &std::path::Path) -> (std::path::PathBuf, Registry, AllFixtures) {
    let src = Registry::start(RegistryOpts::of(Kind::Ferro));
    let fx = AllFixtures::push(&src, false);
    let mut spec = Spec::new();
    for img in fx.all() {
        spec = spec.image(&fx.spec_ref(img, &src.host()));
    }
    let spec = spec.write(dir);
    let bundle = dir.join("bundle.tar.zst");
    pack_ok(
        &spec,
        &bundle,
        args![mirror_flags(&src, &["docker.io"]), "--concurrency", "4"],
    );
    (bundle, src, fx)
}

fn load(bundle: &std::path::Path, tgt: &Registry) -> std::process::Output {
    airgap(
        args!["load", bundle, "--registry", tgt.host(), tgt.target_flags()],
        &[],
    )
}

#[test]
fn ferro_as_source_and_as_target_keeps_every_digest_and_reloads_as_a_no_op() {
    let dir = tempdir();
    let (bundle, _src, fx) = ferro_bundle(dir.path());
    let out = airgap(args!["verify", &bundle], &[]);
    assert_success(&out);
    for kind in [Kind::Ferro, Kind::Distribution] {
        let tgt = Registry::start(RegistryOpts::of(kind));
        let out = load(&bundle, &tgt);
        assert_success(&out);
        for img in fx.all() {
            assert_skopeo_digest(&img.reference(&tgt.host()), &tgt, &img.digest);
        }
        // A second load changes nothing and uploads nothing.
        let again = load(&bundle, &tgt);
        assert_success(&again);
        let text = stdout_of(&again);
        let n = fx.all().len();
        assert!(
            text.contains(&format!("loaded {n} image(s)"))
                && text.contains(&format!("({n} already present)"))
                && text.contains(" 0 blob(s) uploaded"),
            "re-load into {kind:?} was not a no-op:\n{}",
            text_of(&again)
        );
    }
}

#[test]
fn an_interrupted_load_into_ferro_completes_when_run_again() {
    let src = Registry::start(RegistryOpts::of(Kind::Ferro));
    let img = Fixtures::new(&src).big_layer_image("big/layer", "1", 96 << 20, 402);
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, src.source_flags());

    let tgt = Registry::start(RegistryOpts::of(Kind::Ferro));
    // ferro keeps upload sessions in memory: the proxy in front shows when one has begun.
    let proxy = FaultProxy::start(&tgt.host(), Fault::None);
    let run = AirgapCmd::new(args![
        "load",
        &bundle,
        "--registry",
        proxy.host(),
        "--plain-http"
    ])
    .spawn();
    let start = Instant::now();
    while !proxy
        .seen()
        .iter()
        .any(|s| s.method == "PUT" && s.path.contains("/blobs/uploads/"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no upload began: {}",
            proxy.describe()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::process::Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status();
    let out = run.wait();
    assert_eq!(out.status.code(), Some(130), "{}", text_of(&out));
    assert!(
        tgt.client().tags("big/layer").is_empty(),
        "an interrupted load tagged the image"
    );
    let out = load(&bundle, &tgt);
    assert_success(&out);
    assert_skopeo_digest(&img.reference(&tgt.host()), &tgt, &img.digest);
}
