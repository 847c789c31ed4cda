//! Reproducible packs (issue 17): the same spec against the same registry content gives the
//! same bundle byte for byte, whatever `--concurrency` and `--threads`, single file and split
//! set alike, so a release pipeline can rebuild a bundle and compare its sha256.

mod support;

use std::path::Path;

use support::*;

fn sha(path: &Path) -> String {
    sha256_digest(&std::fs::read(path).unwrap())
}

#[test]
fn same_spec_same_bytes_at_any_concurrency_and_thread_count() {
    let src = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&src);
    // Many small blobs of different sizes (downloaded many at once, finishing in any
    // order) and a few layers big enough to be streamed.
    let mut spec = Spec::new();
    for i in 0..8u64 {
        let size = 20 * 1024 + i * 37 * 1024;
        fx.image(
            &format!("app/s{i}"),
            Some("1"),
            &ImageOpts::oci(1700 + i).layers(3, size),
        );
        spec = spec.image(&format!("{}/app/s{i}:1", src.host()));
    }
    fx.image(
        "app/big",
        Some("1"),
        &ImageOpts::oci(1790).layers(2, 1536 * 1024),
    );
    spec = spec.image(&format!("{}/app/big:1", src.host()));
    let dir = tempdir();
    let spec = spec.write(dir.path());
    let runs = [("1", "1"), ("16", "2"), ("5", "3")];
    let mut singles = Vec::new();
    let mut sets = Vec::new();
    for (i, (conc, threads)) in runs.iter().enumerate() {
        let flags = |extra: &[&str]| {
            let mut f = src.source_flags();
            f.extend(args!["--concurrency", conc, "--threads", threads]);
            f.extend(extra.iter().map(|s| s.to_string()));
            f
        };
        let one = dir.path().join(format!("one-{i}.tar.zst"));
        pack_ok(&spec, &one, flags(&[]));
        singles.push(sha(&one));
        let sub = dir.path().join(format!("split-{i}"));
        std::fs::create_dir(&sub).unwrap();
        let base = sub.join("bundle.tar.zst");
        let mut a = args!["pack", &spec, "-o", &base];
        a.extend(flags(&["--split", "300K"]));
        assert_success(&airgap(&a, &[]));
        let mut names = dir_names(&sub);
        names.sort();
        assert!(names.len() > 3, "expected several parts: {names:?}");
        let parts: Vec<(String, String)> = names
            .iter()
            .map(|n| (n.clone(), sha(&sub.join(n))))
            .collect();
        sets.push(parts);
    }
    assert!(
        singles.windows(2).all(|w| w[0] == w[1]),
        "single-file bundles differ between --concurrency/--threads {runs:?}: {singles:?}"
    );
    assert!(
        sets.windows(2).all(|w| w[0] == w[1]),
        "split sets differ: {sets:#?}"
    );
}
