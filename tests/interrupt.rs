//! Ctrl-C (SIGINT) in the middle of pack or load: exit code 130 and nothing partial left.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

fn sigint(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -INT {pid} failed");
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Waits (bounded) until `cond` holds.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn interrupted_pack_exits_130_and_leaves_no_partial_bundle() {
    let src = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&src);
    let img = fx.big_layer_image("big/layer", "1", 256 << 20, 301);
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let bundle = out_dir.join("bundle.tar.zst");

    let mut args = vec![
        "pack".to_string(),
        spec.display().to_string(),
        "-o".into(),
        bundle.display().to_string(),
        // One download at a time keeps the pack going long enough to be caught mid-way.
        "--concurrency".into(),
        "1".into(),
    ];
    args.extend(src.source_flags());
    let run = AirgapCmd::new(&args).spawn();
    // The temporary bundle appears once resolving is done and writing has begun.
    wait_for("pack to start writing", || !names_in(&out_dir).is_empty());
    sigint(run.id());
    let out = run.wait();
    assert_eq!(
        out.status.code(),
        Some(130),
        "exit status after SIGINT: {:?}\n{}",
        out.status,
        text_of(&out)
    );
    assert!(
        stderr_of(&out).contains("interrupted"),
        "{}",
        stderr_of(&out)
    );
    assert!(
        names_in(&out_dir).is_empty(),
        "left behind: {:?}",
        names_in(&out_dir)
    );
}

#[test]
fn interrupted_load_exits_130_and_tags_nothing() {
    let src = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&src);
    let img = fx.big_layer_image("big/layer", "1", 256 << 20, 302);
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, src.source_flags());

    let tgt = Registry::start(RegistryOpts::plain());
    let map = dir.path().join("map.json");
    let mut args = vec![
        "load".to_string(),
        bundle.display().to_string(),
        "--registry".into(),
        tgt.host(),
        "--image-map".into(),
        map.display().to_string(),
    ];
    args.extend(tgt.target_flags());
    let run = AirgapCmd::new(&args).spawn();
    // Interrupt once an upload has started at the target.
    wait_for("an upload to start", || {
        tgt.log().contains("blobs/uploads")
            || std::fs::read_dir(tgt.storage_dir()).is_ok_and(|mut d| d.next().is_some())
    });
    sigint(run.id());
    let out = run.wait();
    assert_eq!(
        out.status.code(),
        Some(130),
        "exit status after SIGINT: {:?}\n{}",
        out.status,
        text_of(&out)
    );
    assert!(!map.exists(), "an interrupted load wrote the image map");
    assert_skopeo_absent(&format!("{}/big/layer:1", tgt.host()), &tgt);
}
