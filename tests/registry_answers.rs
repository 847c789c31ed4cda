//! The source registry answers wrongly: content that does not match its digest, a manifest
//! over the size limit, an HTML error page instead of an API answer, and 404 / 401 / 403,
//! which must each be reported as what they are. In every case `airgap pack` exits
//! non-zero, names the image, the registry (and the digest when there is one), and leaves
//! nothing at the output path.

mod support;

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use support::proxy::{Action, Fault, FaultProxy};
use support::storage::{flip_blob_byte, replace_in_blob};
use support::*;

fn show(what: &str, out: &Output) {
    eprintln!("---- {what}: {} ----\n{}", out.status, text_of(out));
}

/// A temporary directory with an empty `out/` where the bundle is to be written.
struct Out {
    dir: tempfile::TempDir,
    out_dir: PathBuf,
    bundle: PathBuf,
}

impl Out {
    fn new() -> Out {
        let dir = tempdir();
        let out_dir = dir.path().join("out");
        std::fs::create_dir_all(&out_dir).unwrap();
        let bundle = out_dir.join("bundle.tar.zst");
        Out {
            dir,
            out_dir,
            bundle,
        }
    }
    /// Nothing at the output path, and nothing (temporary files) next to it.
    #[track_caller]
    fn assert_empty(&self) {
        assert_no_file(&self.bundle);
        assert_eq!(
            dir_names(&self.out_dir),
            Vec::<String>::new(),
            "a failed pack left files in the output directory"
        );
    }
}

/// `airgap pack` of `reference` with `flags`, no retries, bounded in time.
fn pack(out: &Out, reference: &str, flags: Vec<String>, env: &[(&str, &str)]) -> Output {
    let spec = Spec::new().image(reference).write(out.dir.path());
    AirgapCmd::new(args![
        "pack",
        &spec,
        "-o",
        &out.bundle,
        "--retries",
        "0",
        flags
    ])
    .envs(env)
    .timeout(Duration::from_secs(60))
    .run()
}

/// `--mirror HOST=PROXY` so that the canonical name stays the registry's.
fn via(host: &str, proxy: &FaultProxy) -> Vec<String> {
    args!["--mirror", format!("{host}={}", proxy.url())]
}

#[track_caller]
fn assert_lacks(out: &Output, words: &[&str]) {
    let text = text_of(out).to_lowercase();
    for w in words {
        assert!(
            !text.contains(&w.to_lowercase()),
            "airgap's error mentions {w:?}, which is not what happened:\n{}",
            text_of(out)
        );
    }
}

#[test]
fn layer_whose_content_does_not_match_its_digest_is_refused() {
    let src = Registry::start(RegistryOpts::plain());
    let sh = src.host();
    let img = Fixtures::new(&src).image(
        "bad/layer",
        Some("1"),
        &ImageOpts::oci(301).layers(2, 100_000),
    );
    let layer = img.layers()[1].clone();
    flip_blob_byte(&src, &layer.digest, 5_000);
    // The registry serves the changed bytes as they are, under the old digest.
    let (served, size) = src.client().blob_digest(&img.repo, &layer.digest);
    assert_ne!(
        served, layer.digest,
        "the registry did not serve the tampered bytes"
    );
    assert_eq!(size, layer.size);

    let out = Out::new();
    let r = pack(&out, &img.reference(&sh), src.source_flags(), &[]);
    show("pack", &r);
    assert_failure_contains(
        &r,
        &[&layer.digest, "does not match", &img.reference(&sh), &sh],
    );
    out.assert_empty();
}

#[test]
fn manifest_whose_bytes_do_not_match_docker_content_digest_is_refused() {
    let src = Registry::start(RegistryOpts::plain());
    let sh = src.host();
    let img = Fixtures::new(&src).image("bad/manifest", Some("1"), &ImageOpts::oci(302));
    // Change one digit of the config's size: still valid JSON, same length, other bytes.
    let config = &img.blobs[0];
    let from = format!("\"size\":{}", config.size);
    let mut to = from.clone().into_bytes();
    let last = to.len() - 1;
    to[last] = if to[last] == b'9' { b'1' } else { to[last] + 1 };
    replace_in_blob(&src, &img.digest, from.as_bytes(), &to);
    let served = src
        .client()
        .get_manifest(&img.repo, "1")
        .expect("the tag is still there");
    assert_eq!(served.digest_header.as_deref(), Some(img.digest.as_str()));
    assert_ne!(sha256_digest(&served.bytes), img.digest);
    serde_json::from_slice::<serde_json::Value>(&served.bytes).expect("still JSON");

    let out = Out::new();
    let r = pack(&out, &img.reference(&sh), src.source_flags(), &[]);
    show("pack", &r);
    assert_failure_contains(
        &r,
        &[
            "manifest",
            &img.digest,
            "does not match",
            &img.reference(&sh),
            &sh,
        ],
    );
    out.assert_empty();
}

#[test]
fn manifest_larger_than_the_limit_is_refused() {
    // distribution itself refuses to store a manifest over 4 MiB, so a proxy answers the
    // manifest requests with a 5 MiB OCI manifest (matching Content-Length and digest).
    let src = Registry::start(RegistryOpts::plain());
    let sh = src.host();
    let img = Fixtures::new(&src).image("big/manifest", Some("1"), &ImageOpts::oci(303));
    let mut manifest: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    manifest["annotations"] = serde_json::json!({"padding": "x".repeat(5 << 20)});
    let body = serde_json::to_vec(&manifest).unwrap();
    assert!(body.len() > 5 << 20);
    let digest = sha256_digest(&body);
    let proxy = FaultProxy::start(
        &sh,
        Fault::Canned {
            method: None,
            path_contains: "/manifests/".into(),
            status: 200,
            content_type: OCI_MANIFEST.into(),
            headers: vec![
                ("Docker-Content-Digest".into(), digest.clone()),
                (
                    "Docker-Distribution-Api-Version".into(),
                    "registry/2.0".into(),
                ),
            ],
            body: Arc::new(body),
        },
    );

    let out = Out::new();
    let r = pack(&out, &img.reference(&sh), via(&sh, &proxy), &[]);
    show("pack", &r);
    assert_failure_contains(&r, &["larger than", "limit", &img.reference(&sh), &sh]);
    assert!(
        proxy.count(&Action::Answered(200)) >= 1,
        "{}",
        proxy.describe()
    );
    out.assert_empty();
}

const HTML: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n\
</body>\r\n</html>\r\n";

#[test]
fn html_error_page_is_reported_as_not_a_registry_answer() {
    let src = Registry::start(RegistryOpts::plain());
    let sh = src.host();
    let img = Fixtures::new(&src).image("html/app", Some("1"), &ImageOpts::oci(304));
    for status in [502u16, 500] {
        let proxy = FaultProxy::start(
            &sh,
            Fault::Canned {
                method: None,
                path_contains: String::new(),
                status,
                content_type: "text/html".into(),
                headers: vec![],
                body: Arc::new(HTML.as_bytes().to_vec()),
            },
        );
        let out = Out::new();
        let r = pack(&out, &img.reference(&sh), via(&sh, &proxy), &[]);
        show(&format!("pack behind an HTML {status}"), &r);
        assert_failure_contains(
            &r,
            &[
                "HTML page",
                "not a registry API answer",
                &img.reference(&sh),
                &sh,
            ],
        );
        // The page itself is not dumped on the user.
        assert_lacks(&r, &["<center>", "nginx/1.24.0"]);
        assert!(
            proxy.count(&Action::Answered(status)) >= 1,
            "{}",
            proxy.describe()
        );
        out.assert_empty();
    }
}

#[test]
fn missing_tag_is_not_found_and_nothing_else() {
    let src = Registry::start(RegistryOpts::plain());
    let sh = src.host();
    Fixtures::new(&src).image("nf/app", Some("1"), &ImageOpts::oci(305));
    let out = Out::new();
    let reference = format!("{sh}/nf/app:2");
    let r = pack(&out, &reference, src.source_flags(), &[]);
    show("pack", &r);
    assert_failure_contains(&r, &["not found", &reference, &sh]);
    assert_lacks(&r, &["authentication", "permission"]);
    out.assert_empty();
}

#[test]
fn wrong_password_is_authentication_and_nothing_else() {
    let src = Registry::start(RegistryOpts::auth("packer", "right-Pa55-9172"));
    let sh = src.host();
    let img = Fixtures::new(&src).image("auth/app", Some("1"), &ImageOpts::oci(306));
    let out = Out::new();
    let spec = Spec::new()
        .source("src", &sh, Some(("SRC_USER", "SRC_PASS")))
        .source_image("src", &img.repo, "1")
        .write(out.dir.path());
    let r = AirgapCmd::new(args![
        "pack",
        &spec,
        "-o",
        &out.bundle,
        "--retries",
        "0",
        src.source_flags()
    ])
    .envs(&[("SRC_USER", "packer"), ("SRC_PASS", "wrong-Pa55-0000")])
    .timeout(Duration::from_secs(60))
    .run();
    show("pack", &r);
    assert_failure_contains(&r, &["authentication", &img.repo, &sh]);
    assert_lacks(&r, &["not found", "permission", "wrong-Pa55-0000"]);
    out.assert_empty();
}

/// The 403 of a registry that knows who you are but does not let you pull.
fn pack_behind_403() -> (Registry, Image, Output) {
    let src = Registry::start(RegistryOpts::plain());
    let sh = src.host();
    let img = Fixtures::new(&src).image("deny/app", Some("1"), &ImageOpts::oci(307));
    let proxy = FaultProxy::start(
        &sh,
        Fault::StatusAlways {
            status: 403,
            retry_after: None,
        },
    );
    let out = Out::new();
    let r = pack(&out, &img.reference(&sh), via(&sh, &proxy), &[]);
    show("pack", &r);
    assert!(
        proxy.count(&Action::Answered(403)) >= 1,
        "{}",
        proxy.describe()
    );
    out.assert_empty();
    (src, img, r)
}

#[test]
fn forbidden_is_permission_not_not_found() {
    let (src, img, r) = pack_behind_403();
    assert_failure_contains(
        &r,
        &["permission", &img.reference(&src.host()), &src.host()],
    );
    assert_lacks(&r, &["not found", "authentication failed"]);
}

#[test]
fn forbidden_does_not_say_authentication() {
    let (_src, _img, r) = pack_behind_403();
    assert_failure_contains(&r, &["permission"]);
    assert_lacks(&r, &["authentication"]);
}
