//! Peak memory of pack and load on a layer bigger than the memory limit: layers must be
//! streamed, never held whole in memory.

mod support;

use std::process::Output;

use support::*;

/// The limit from the requirements.
const MAX_RSS_KIB: u64 = 256 * 1024;

/// The big layer is larger than the limit, so holding it whole would fail the test
/// (`AIRGAP_TEST_MEMORY_LAYER_MIB` overrides; it must stay above 64).
fn layer_size() -> u64 {
    let mib: u64 = std::env::var("AIRGAP_TEST_MEMORY_LAYER_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    assert!(mib > 64, "AIRGAP_TEST_MEMORY_LAYER_MIB must be above 64");
    mib << 20
}

const TIME: &str = "/usr/bin/time";

/// "Maximum resident set size (kbytes): N" from GNU time -v.
fn max_rss_kib(out: &Output) -> u64 {
    let err = stderr_of(out);
    err.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes):")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no maximum RSS in the output of {TIME} -v:\n{err}"))
}

#[test]
fn pack_and_load_stream_a_layer_bigger_than_the_memory_limit() {
    assert!(
        std::path::Path::new(TIME).exists(),
        "{TIME} is missing: install the `time` package (scripts/test.sh does)"
    );
    let src = Registry::start(RegistryOpts::plain());
    let size = layer_size();
    let img = Fixtures::new(&src).big_layer_image("big/layer", "1", size, 81);
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");

    let pack = AirgapCmd::new(args!["pack", &spec, "-o", &bundle, src.source_flags()])
        .wrap(&[TIME, "-v"])
        .run();
    assert_success(&pack);
    let pack_rss = max_rss_kib(&pack);
    eprintln!(
        "pack of a {} MiB layer: max RSS {} MiB",
        size >> 20,
        pack_rss / 1024
    );
    assert!(
        std::fs::metadata(&bundle).unwrap().len() > size,
        "the bundle is smaller than the incompressible layer"
    );

    let tgt = Registry::start(RegistryOpts::plain());
    let load = AirgapCmd::new(args![
        "load",
        &bundle,
        "--registry",
        tgt.host(),
        tgt.target_flags()
    ])
    .wrap(&[TIME, "-v"])
    .run();
    assert_success(&load);
    let load_rss = max_rss_kib(&load);
    eprintln!(
        "load of a {} MiB layer: max RSS {} MiB",
        size >> 20,
        load_rss / 1024
    );
    assert_skopeo_digest(&img.reference(&tgt.host()), &tgt, &img.digest);
    let big = img.layers().into_iter().max_by_key(|l| l.size).unwrap();
    assert_eq!(
        tgt.client().blob_size(&img.repo, &big.digest),
        Some(big.size)
    );

    assert!(
        pack_rss < MAX_RSS_KIB,
        "pack peaked at {} MiB RSS (limit 256 MiB)",
        pack_rss / 1024
    );
    assert!(
        load_rss < MAX_RSS_KIB,
        "load peaked at {} MiB RSS (limit 256 MiB)",
        load_rss / 1024
    );
}
