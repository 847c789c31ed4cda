//! Anonymous pulls (issue #13): a token registry handing out anonymous pull tokens (no
//! `Authorization` on the token request), and a registry answering `401` at `/v2/` while
//! serving manifests and blobs anonymously (distribution behind the fault proxy). Each beside
//! the refusal a person must be able to act on.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use support::proxy::{Fault, FaultProxy};
use support::token::{seeded_token_registry, Grant, TokenServer, User};
use support::*;

fn show(what: &str, out: &std::process::Output) {
    eprintln!("---- {what}: {} ----\n{}", out.status, text_of(out));
}

fn users() -> Vec<User> {
    vec![User::new(
        "site-reader",
        "anon-Te5t-Pa55word",
        Grant::PullOnly,
    )]
}

/// Packs `public/app:1` from a token registry with no credentials at all.
fn anonymous_pack(
    tokens: &TokenServer,
    seed: u64,
) -> (
    std::process::Output,
    Image,
    PathBuf,
    String,
    tempfile::TempDir,
) {
    let mut app = None;
    let (_seed, src) = seeded_token_registry(tokens, |fx| {
        app = Some(fx.image("public/app", Some("1"), &ImageOpts::oci(seed)));
    });
    let app = app.unwrap();
    let sh = src.host();
    let dir = tempdir();
    let spec = Spec::new().image(&app.reference(&sh)).write(dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let bundle = out_dir.join("bundle.tar.zst");
    let out = airgap(
        args![
            "pack",
            &spec,
            "-o",
            &bundle,
            "--mirror",
            format!("{sh}={}", src.url())
        ],
        &[],
    );
    show("pack", &out);
    (out, app, bundle, sh, dir)
}

#[test]
fn anonymous_pull_tokens_let_pack_run_without_credentials() {
    let tokens = TokenServer::start_with(users(), Some(Grant::PullOnly));
    let (out, app, bundle, sh, _dir) = anonymous_pack(&tokens, 307);
    assert_success(&out);
    assert_eq!(
        Bundle::open(&bundle).ref_digest(&app.reference(&sh)),
        app.digest
    );
    let reqs = tokens.requests();
    assert!(
        !reqs.is_empty()
            && reqs.iter().all(|r| r.method == "GET"
                && !r.authorization
                && r.user.is_none()
                && r.status == 200),
        "{reqs:#?}"
    );
    assert!(reqs
        .iter()
        .any(|r| r.granted.iter().any(|g| g == "repository:public/app:pull")));
}

#[test]
fn a_token_server_refusing_anonymous_tokens_says_so_and_leaves_no_bundle() {
    let tokens = TokenServer::start(users());
    let (out, _app, bundle, sh, _dir) = anonymous_pack(&tokens, 309);
    assert_failure_contains(
        &out,
        &[
            &sh,
            &tokens.realm(),
            "401",
            "anonymous",
            "no anonymous access",
        ],
    );
    assert_eq!(dir_names(bundle.parent().unwrap()), Vec::<String>::new());
    assert!(tokens
        .requests()
        .iter()
        .all(|r| !r.authorization && r.status == 401));
}

/// distribution without auth, behind a proxy answering `401` with a challenge at `/v2/`
/// only (as registries allowing anonymous pulls do to a client that checks the API root),
/// and `401` to `vendor/private` (a private project).
#[test]
fn a_registry_answering_401_at_the_api_root_still_serves_anonymous_pulls() {
    let reg = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&reg);
    let public = fx.image("vendor/app", Some("1"), &ImageOpts::oci(311));
    let private = fx.image("vendor/private", Some("1"), &ImageOpts::oci(312));
    let challenge = vec![(
        "WWW-Authenticate".to_string(),
        "Basic realm=\"airgap-test-private\"".to_string(),
    )];
    let unauthorized = Arc::new(
        br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_vec(),
    );
    let proxy = FaultProxy::start(
        &reg.host(),
        Fault::Each(vec![
            Fault::CannedAt {
                method: None,
                path: "/v2/".into(),
                status: 401,
                headers: challenge.clone(),
                body: unauthorized.clone(),
            },
            Fault::Canned {
                method: None,
                path_contains: "/v2/vendor/private/".into(),
                status: 401,
                content_type: "application/json".into(),
                headers: challenge,
                body: unauthorized,
            },
        ]),
    );
    let ph = proxy.host();
    // The emulation itself: the root refuses, the public manifest is served anonymously.
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    assert_eq!(
        http.get(format!("{}/v2/", proxy.url()))
            .send()
            .unwrap()
            .status(),
        401
    );
    let m = format!("{}/v2/vendor/app/manifests/1", proxy.url());
    let accept = "application/vnd.oci.image.manifest.v1+json";
    assert_eq!(
        http.get(m)
            .header("Accept", accept)
            .send()
            .unwrap()
            .status(),
        200
    );

    let dir = tempdir();
    let pack = |img: &Image, out: &Path| {
        let spec = Spec::new().image(&img.reference(&ph)).write(dir.path());
        airgap(
            args![
                "pack",
                &spec,
                "-o",
                out,
                "--mirror",
                format!("{ph}={}", proxy.url())
            ],
            &[],
        )
    };
    let bundle = dir.path().join("public.tar.zst");
    let ok = pack(&public, &bundle);
    show("public", &ok);
    assert_success(&ok);
    assert_eq!(
        Bundle::open(&bundle).ref_digest(&public.reference(&ph)),
        public.digest
    );

    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let refused = pack(&private, &out_dir.join("private.tar.zst"));
    show("private", &refused);
    assert_failure_contains(
        &refused,
        &[&ph, "vendor/private", "401", "authentication required"],
    );
    assert_eq!(dir_names(&out_dir), Vec::<String>::new());
}
