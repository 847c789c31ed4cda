//! Registries whose manifest `HEAD` differs from their `GET` (issue 13): a `HEAD` without
//! `Docker-Content-Digest`, and a `HEAD` answering 404 for manifests a `GET` serves (as for a
//! Docker media type some registries only find when `Accept` says it). Emulated by the fault
//! proxy's canned answers to every manifest `HEAD` in front of a real distribution registry
//! that already holds the bundle: a re-load through it must still see every image present
//! (asking with `GET`), push no manifest and upload nothing.

mod support;

use std::sync::Arc;

use support::proxy::{Fault, FaultProxy};
use support::*;

/// Every fixture kind (an OCI index, a Docker manifest list, Docker and OCI manifests, a
/// digest-only image) packed, and loaded once straight into `tgt`.
fn loaded(dir: &std::path::Path, tgt: &Registry) -> (std::path::PathBuf, AllFixtures) {
    let src = Registry::start(RegistryOpts::plain());
    let fx = AllFixtures::push(&src, false);
    let mut spec = Spec::new();
    for img in fx.all() {
        spec = spec.image(&fx.spec_ref(img, &src.host()));
    }
    let spec = spec.write(dir);
    let bundle = dir.join("bundle.tar.zst");
    pack_ok(&spec, &bundle, mirror_flags(&src, &["docker.io"]));
    let out = airgap(
        args!["load", &bundle, "--registry", tgt.host(), "--plain-http"],
        &[],
    );
    assert_success(&out);
    (bundle, fx)
}

fn reload_through(fault: Fault) {
    let dir = tempdir();
    let tgt = Registry::start(RegistryOpts::plain());
    let (bundle, fx) = loaded(dir.path(), &tgt);
    let proxy = FaultProxy::start(&tgt.host(), fault);
    let out = airgap(
        args!["load", &bundle, "--registry", proxy.host(), "--plain-http"],
        &[],
    );
    assert_success(&out);
    let n = fx.all().len();
    let text = stdout_of(&out);
    assert!(
        text.contains(&format!("({n} already present)")) && text.contains(" 0 blob(s) uploaded"),
        "the re-load was not a no-op:\n{}\n{}",
        text_of(&out),
        proxy.describe()
    );
    let seen = proxy.seen();
    assert!(
        !seen
            .iter()
            .any(|s| s.method == "PUT" && s.path.contains("/manifests/")),
        "a manifest was pushed again:\n{}",
        proxy.describe()
    );
    assert!(
        seen.iter()
            .any(|s| s.method == "GET" && s.path.contains("/manifests/")),
        "no manifest was asked for with GET:\n{}",
        proxy.describe()
    );
    for img in fx.all() {
        assert_skopeo_digest(&img.reference(&tgt.host()), &tgt, &img.digest);
    }
}

#[test]
fn a_manifest_head_without_docker_content_digest_is_asked_again_with_get() {
    reload_through(Fault::Canned {
        method: Some("HEAD".into()),
        path_contains: "/manifests/".into(),
        status: 200,
        content_type: "application/vnd.oci.image.manifest.v1+json".into(),
        headers: vec![],
        body: Arc::new(vec![b' '; 512]),
    });
}

#[test]
fn a_manifest_head_answering_404_for_what_get_serves_is_asked_again_with_get() {
    reload_through(Fault::Canned {
        method: Some("HEAD".into()),
        path_contains: "/manifests/".into(),
        status: 404,
        content_type: "application/json".into(),
        headers: vec![],
        body: Arc::new(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#.to_vec(),
        ),
    });
}
