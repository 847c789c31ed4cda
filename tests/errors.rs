//! Failures: they exit non-zero, name the image/registry/digest at fault, leave no bundle
//! behind, and a damaged bundle is neither verified nor loaded.

mod support;

use std::path::{Path, PathBuf};

use support::*;

/// A bundle of one OCI image with two layers; returns (bundle, image, source registry).
fn small_bundle(dir: &Path, repo: &str, seed: u64) -> (PathBuf, Image, Registry) {
    let src = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&src).image(repo, Some("1"), &ImageOpts::oci(seed).layers(2, 200_000));
    let spec = Spec::new().image(&img.reference(&src.host())).write(dir);
    let bundle = dir.join("bundle.tar.zst");
    pack_ok(&spec, &bundle, src.source_flags());
    (bundle, img, src)
}

/// A port on which nothing listens.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn missing_tag_names_image_and_registry_and_leaves_no_file() {
    let src = Registry::start(RegistryOpts::plain());
    let sh = src.host();
    Fixtures::new(&src).image("app", Some("1"), &ImageOpts::oci(61));
    let dir = tempdir();
    let spec = Spec::new()
        .image(&format!("{sh}/app:1"))
        .image(&format!("{sh}/app:2"))
        .write(dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let bundle = out_dir.join("bundle.tar.zst");
    let out = airgap(args!["pack", &spec, "-o", &bundle, src.source_flags()], &[]);
    assert_failure_contains(&out, &["app:2", &sh]);
    assert_no_file(&bundle);
    assert_eq!(
        dir_names(&out_dir),
        Vec::<String>::new(),
        "a failed pack left files next to the output path"
    );
}

#[test]
fn connection_refused_names_the_registry() {
    let port = dead_port();
    let host = format!("127.0.0.1:{port}");
    let dir = tempdir();
    let spec = Spec::new()
        .image(&format!("{host}/app:1"))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    let out = airgap(
        args![
            "pack",
            &spec,
            "-o",
            &bundle,
            "--mirror",
            format!("{host}=http://{host}")
        ],
        &[],
    );
    assert_failure_contains(&out, &[&host]);
    assert_no_file(&bundle);

    // load to a registry that is not there.
    let (good, _img, _src) = small_bundle(dir.path(), "refused/app", 62);
    let out = airgap(
        args!["load", &good, "--registry", &host, "--plain-http"],
        &[],
    );
    assert_failure_contains(&out, &[&host]);
}

#[test]
fn tls_without_ca_file_fails_naming_the_registry() {
    let src = Registry::start(RegistryOpts::tls());
    let sh = src.host();
    let img = Fixtures::new(&src).image("secure/app", Some("1"), &ImageOpts::oci(63));
    let dir = tempdir();
    let spec = Spec::new().image(&img.reference(&sh)).write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    let out = airgap(args!["pack", &spec, "-o", &bundle], &[]);
    assert_failure_contains(&out, &[&sh]);
    assert_output_mentions_any(&out, &["certificate", "tls", "x509", "ssl"]);
    assert_no_file(&bundle);

    // load to a TLS registry without its CA.
    let (good, _img, _src) = small_bundle(dir.path(), "tls/app", 64);
    let tgt = Registry::start(RegistryOpts::tls());
    let out = airgap(args!["load", &good, "--registry", tgt.host()], &[]);
    assert_failure_contains(&out, &[&tgt.host()]);
    assert_output_mentions_any(&out, &["certificate", "tls", "x509", "ssl"]);
    assert!(tgt.client().catalog().is_empty());
}

#[test]
fn bad_spec_inputs_are_reported() {
    let dir = tempdir();
    let bundle = dir.path().join("bundle.tar.zst");

    let missing = dir.path().join("no-such-spec.yaml");
    let out = airgap(args!["pack", &missing, "-o", &bundle], &[]);
    assert_failure_contains(&out, &["no-such-spec.yaml"]);
    assert_no_file(&bundle);

    // No SPEC argument and no airgap.yaml in the current directory.
    let empty = tempdir();
    let out = AirgapCmd::new(args!["pack", "-o", &bundle])
        .current_dir(empty.path())
        .run();
    assert_failure_contains(&out, &["airgap.yaml"]);
    assert_no_file(&bundle);

    // An invalid image reference is named.
    let spec = Spec::new().image("Invalid/UPPER:1").write(dir.path());
    let out = airgap(args!["pack", &spec, "-o", &bundle], &[]);
    assert_failure_contains(&out, &["Invalid/UPPER"]);
    assert_no_file(&bundle);
}

#[test]
fn verify_rejects_truncated_bundles() {
    let dir = tempdir();
    let (bundle, _img, _src) = small_bundle(dir.path(), "trunc/app", 65);
    assert_success(&airgap(args!["verify", &bundle], &[]));
    let len = std::fs::metadata(&bundle).unwrap().len();
    for cut in [len / 2, len - 16] {
        let t = dir.path().join(format!("truncated-{cut}.tar.zst"));
        truncate_copy(&bundle, &t, cut);
        let out = airgap(args!["verify", &t], &[]);
        assert_failure(&out);
    }
}

#[test]
fn verify_names_the_digest_of_a_damaged_layer() {
    let dir = tempdir();
    let (bundle, img, _src) = small_bundle(dir.path(), "flip/app", 66);
    let layer = img.layers()[1].digest.clone();
    let damaged = dir.path().join("damaged.tar.zst");
    flip_byte_in_blob(&bundle, &damaged, &layer);
    let out = airgap(args!["verify", &damaged], &[]);
    assert_failure_contains(&out, &[digest_hex(&layer)]);
}

#[test]
fn verify_names_a_missing_blob_and_an_unexpected_entry() {
    let dir = tempdir();
    let (bundle, img, _src) = small_bundle(dir.path(), "gaps/app", 67);
    let layer = img.layers()[0].digest.clone();
    let missing = dir.path().join("missing.tar.zst");
    remove_blob(&bundle, &missing, &layer);
    let out = airgap(args!["verify", &missing], &[]);
    assert_failure_contains(&out, &[digest_hex(&layer)]);

    let extra = dir.path().join("extra.tar.zst");
    add_entry(&bundle, &extra, "surprise.txt", b"not part of a bundle");
    let out = airgap(args!["verify", &extra], &[]);
    assert_failure_contains(&out, &["surprise.txt"]);
}

/// A seekable bundle whose big layer (read through the seek table, beside the stream) has
/// one wrong byte under valid zstd checksums: the load fails naming the layer, tags nothing.
#[test]
fn load_of_a_damaged_big_layer_read_by_range_tags_nothing() {
    let dir = tempdir();
    let src = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&src).big_layer_image("bigflip/app", "1", 9 << 20, 69);
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, src.source_flags());
    let layer = img
        .layers()
        .into_iter()
        .max_by_key(|l| l.size)
        .unwrap()
        .digest;
    let damaged = dir.path().join("damaged.tar.zst");
    let want = format!("blobs/sha256/{}", digest_hex(&layer));
    rewrite_bundle_seekable(&bundle, &damaged, |entries| {
        let e = entries.iter_mut().find(|e| e.path == want).unwrap();
        let i = e.data.len() * 2 / 3;
        e.data[i] ^= 0x01;
    });
    // Still seekable: the damage is in the content only.
    let out = airgap(args!["verify", &damaged], &[]);
    assert_failure_contains(&out, &[digest_hex(&layer)]);

    let tgt = Registry::start(RegistryOpts::plain());
    let out = airgap(
        args!["load", &damaged, "--registry", tgt.host(), "--plain-http"],
        &[],
    );
    assert_failure_contains(&out, &[digest_hex(&layer), "does not match"]);
    assert!(tgt.client().tags(&img.repo).is_empty());
    assert!(!tgt.client().blob_exists(&img.repo, &layer));
    assert_skopeo_absent(&img.reference(&tgt.host()), &tgt);

    // The undamaged bundle loads through the same path.
    let out = airgap(
        args!["load", &bundle, "--registry", tgt.host(), "--plain-http"],
        &[],
    );
    assert_success(&out);
    assert_skopeo_digest(&img.reference(&tgt.host()), &tgt, &img.digest);
}

#[test]
fn load_of_a_damaged_bundle_tags_nothing() {
    let dir = tempdir();
    let (bundle, img, src) = small_bundle(dir.path(), "broken/app", 68);
    let layer = img.layers()[1].digest.clone();
    let damaged = dir.path().join("damaged.tar.zst");
    flip_byte_in_blob(&bundle, &damaged, &layer);

    let tgt = Registry::start(RegistryOpts::plain());
    let out = airgap(
        args!["load", &damaged, "--registry", tgt.host(), "--plain-http"],
        &[],
    );
    assert_failure_contains(&out, &[digest_hex(&layer)]);
    assert_skopeo_absent(&img.reference(&tgt.host()), &tgt);
    assert!(tgt.client().tags(&img.repo).is_empty());
    assert!(!tgt.client().blob_exists(&img.repo, &layer));

    // A truncated bundle either.
    let len = std::fs::metadata(&bundle).unwrap().len();
    let t = dir.path().join("truncated.tar.zst");
    truncate_copy(&bundle, &t, len * 3 / 4);
    let out = airgap(
        args!["load", &t, "--registry", tgt.host(), "--plain-http"],
        &[],
    );
    assert_failure(&out);
    assert_skopeo_absent(&img.reference(&tgt.host()), &tgt);
    drop(src);
}
