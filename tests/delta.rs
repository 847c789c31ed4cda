//! Delta bundles: `pack --base` leaves out what the previous release carried; `load` of a
//! delta checks the target has it before pushing anything.

mod support;

use support::*;

struct Releases {
    src: Registry,
    dir: tempfile::TempDir,
    v1: std::path::PathBuf,
    v2_spec: std::path::PathBuf,
    /// The release 2 image of `app/api`, which differs from release 1 in one layer.
    api2: Image,
    web: Image,
}

/// Release 1: `app/web:1` and `app/api:1`. Release 2: `app/web:1` again and `app/api:2`,
/// which shares release 1's base layer and adds one new 2 MiB layer.
fn releases() -> Releases {
    let src = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&src);
    let base = TarLayer::new(9001, 3 * 1024 * 1024);
    let web = fx.image(
        "app/web",
        Some("1"),
        &ImageOpts::oci(91).layers(2, 1024 * 1024),
    );
    fx.image(
        "app/api",
        Some("1"),
        &ImageOpts::oci(92).layers(1, 1024 * 1024).base(base.clone()),
    );
    let api2 = fx.image(
        "app/api",
        Some("2"),
        &ImageOpts::oci(93).layers(1, 2 * 1024 * 1024).base(base),
    );
    let dir = tempdir();
    let sh = src.host();
    let flags = src.source_flags();
    let v1_spec = Spec::new()
        .image(&format!("{sh}/app/web:1"))
        .image(&format!("{sh}/app/api:1"))
        .to_yaml();
    let v1_spec = write_file(dir.path(), "v1.yaml", &v1_spec);
    let v2_spec = Spec::new()
        .image(&format!("{sh}/app/web:1"))
        .image(&format!("{sh}/app/api:2"))
        .to_yaml();
    let v2_spec = write_file(dir.path(), "v2.yaml", &v2_spec);
    let v1 = dir.path().join("v1.tar.zst");
    pack_ok(&v1_spec, &v1, flags);
    Releases {
        src,
        dir,
        v1,
        v2_spec,
        api2,
        web,
    }
}

fn inspect_json(bundle: &std::path::Path) -> serde_json::Value {
    let out = airgap(args!["inspect", bundle, "--json"], &[]);
    assert_success(&out);
    serde_json::from_str(&stdout_of(&out)).expect("inspect --json")
}

#[test]
fn delta_holds_only_what_changed_and_loads_after_its_base() {
    let r = releases();
    let v2 = r.dir.path().join("v2-delta.tar.zst");
    let mut flags = r.src.source_flags();
    flags.extend(["--base".to_string(), r.v1.display().to_string()]);
    pack_ok(&r.v2_spec, &v2, flags);

    // Only api:2's new layer and config, plus every manifest, are in the delta.
    let b = Bundle::open(&v2);
    let blobs = b.blob_digests();
    let mut expected: std::collections::BTreeSet<String> =
        [r.web.digest.clone(), r.api2.digest.clone()]
            .into_iter()
            .collect();
    let new_layer = r
        .api2
        .blobs
        .last()
        .expect("api:2 has layers")
        .digest
        .clone();
    expected.insert(r.api2.blobs[0].digest.clone()); // its config
    expected.insert(new_layer.clone());
    assert_eq!(blobs, expected, "delta content");
    let size = std::fs::metadata(&v2).unwrap().len();
    assert!(
        size < 3 * 1024 * 1024,
        "delta is {size} bytes: more than the new layer"
    );

    let info = inspect_json(&v2);
    let v1_id = inspect_json(&r.v1)["id"].clone();
    assert_eq!(info["base"]["id"], v1_id, "{info}");
    let out = airgap(args!["verify", &v2], &[]);
    assert_success(&out);
    assert!(stdout_of(&out).contains("delta of"), "{}", stdout_of(&out));

    // Into a registry without the base: refused before anything is pushed.
    let tgt = Registry::start(RegistryOpts::plain());
    let out = airgap(
        args!["load", &v2, "--registry", tgt.host(), tgt.target_flags()],
        &[],
    );
    assert_failure_contains(&out, &["delta", "v1.tar.zst", "load v1.tar.zst"]);
    assert!(
        tgt.client().catalog().is_empty(),
        "a refused delta pushed {:?}",
        tgt.client().catalog()
    );

    // After the base, the delta completes and every digest is the source's.
    for bundle in [&r.v1, &v2] {
        let out = airgap(
            args!["load", bundle, "--registry", tgt.host(), tgt.target_flags()],
            &[],
        );
        assert_success(&out);
    }
    assert_skopeo_digest(&format!("{}/app/api:2", tgt.host()), &tgt, &r.api2.digest);
    assert_skopeo_digest(&format!("{}/app/web:1", tgt.host()), &tgt, &r.web.digest);
}

#[test]
fn delta_against_saved_metadata_equals_delta_against_the_bundle() {
    let r = releases();
    let saved = r.dir.path().join("v1-airgap.json");
    let out = airgap(args!["inspect", &r.v1, "--metadata"], &[]);
    assert_success(&out);
    std::fs::write(&saved, &out.stdout).unwrap();

    let a = r.dir.path().join("a.tar.zst");
    let b = r.dir.path().join("b.tar.zst");
    for (out_path, base) in [(&a, &r.v1), (&b, &saved)] {
        let mut flags = r.src.source_flags();
        flags.extend(["--base".to_string(), base.display().to_string()]);
        pack_ok(&r.v2_spec, out_path, flags);
    }
    let (ia, ib) = (inspect_json(&a), inspect_json(&b));
    assert_eq!(ia["base"]["id"], ib["base"]["id"]);
    assert_eq!(ia["base"]["blobs"], ib["base"]["blobs"]);
    assert_eq!(
        Bundle::open(&a).blob_digests(),
        Bundle::open(&b).blob_digests()
    );
}
