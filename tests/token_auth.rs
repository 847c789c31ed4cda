//! Bearer-token auth (the Docker Hub / Harbor / GitLab flow) against the real distribution
//! registry configured with `auth: token:` and a token server of the harness's own: pack
//! from and load into token-auth registries, wrong passwords, a user who may only pull.
//! No password and no token may ever appear in outputs, bundles or image maps.

mod support;

use std::path::Path;

use support::proxy::{Action, Fault, FaultProxy};
use support::token::{skopeo_digest_with_creds, Grant, TokenRegistry, TokenServer, User};
use support::*;

/// Shows what airgap printed (visible with `--nocapture`, and in a failing test's output).
fn show(what: &str, out: &std::process::Output) {
    eprintln!("---- {what}: {} ----\n{}", out.status, text_of(out));
}

const SRC_USER: &str = "vendor-reader";
const SRC_PASS: &str = "src-T0ken-Pa55word";
const TGT_USER: &str = "site-pusher";
const TGT_PASS: &str = "tgt-T0ken-Pa55word";
const RO_USER: &str = "site-reader";
const RO_PASS: &str = "ro-T0ken-Pa55word";
const WRONG_PASS: &str = "wrong-T0ken-Pa55word";

fn users() -> Vec<User> {
    vec![
        User::new(SRC_USER, SRC_PASS, Grant::All),
        User::new(TGT_USER, TGT_PASS, Grant::All),
        User::new(RO_USER, RO_PASS, Grant::PullOnly),
    ]
}

/// Password forms of every user plus every token issued so far.
fn secrets(tokens: &TokenServer) -> Vec<String> {
    let mut v = Vec::new();
    for (u, p) in [
        (SRC_USER, SRC_PASS),
        (TGT_USER, TGT_PASS),
        (RO_USER, RO_PASS),
        (SRC_USER, WRONG_PASS),
        (TGT_USER, WRONG_PASS),
    ] {
        v.extend(secret_forms(u, p));
    }
    let issued = tokens.issued_tokens();
    assert!(!issued.is_empty(), "the token server issued no token");
    for t in issued {
        // The whole JWT and its signature alone.
        let sig = t.rsplit('.').next().unwrap().to_string();
        v.push(t);
        v.push(sig);
    }
    v
}

/// A plain registry seeded with `vendor/app:1` (OCI) and `vendor/multi:2` (an OCI index),
/// then served with token auth over the same storage.
struct Source {
    _seed: Registry,
    reg: TokenRegistry,
    app: Image,
    multi: Image,
}

fn source(tokens: &TokenServer, seed: u64) -> Source {
    let plain = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&plain);
    let app = fx.image("vendor/app", Some("1"), &ImageOpts::oci(seed));
    let multi = fx.oci_index("vendor/multi", "2", seed + 1);
    plain.stop();
    let reg = TokenRegistry::start(&plain.storage_dir(), tokens);
    Source {
        _seed: plain,
        reg,
        app,
        multi,
    }
}

/// An empty token-auth target, plus the plain registry owning its storage (stopped; restart
/// it to look at the storage without auth).
fn target(tokens: &TokenServer) -> (Registry, TokenRegistry) {
    let plain = Registry::start(RegistryOpts::plain());
    plain.stop();
    let reg = TokenRegistry::start(&plain.storage_dir(), tokens);
    (plain, reg)
}

fn spec(src: &Source, dir: &Path) -> std::path::PathBuf {
    Spec::new()
        .source(
            "vendor",
            &format!("{}/vendor", src.reg.host()),
            Some(("SRC_USER", "SRC_PASS")),
        )
        .source_image("vendor", "app", "1")
        .source_image("vendor", "multi", "2")
        .write(dir)
}

fn pack_args(spec: &Path, bundle: &Path, src: &Source) -> Vec<String> {
    args![
        "pack",
        spec,
        "-o",
        bundle,
        "--mirror",
        format!("{}={}", src.reg.host(), src.reg.url())
    ]
}

fn load_args(bundle: &Path, tgt: &TokenRegistry, user: &str, map: &Path) -> Vec<String> {
    args![
        "load",
        bundle,
        "--registry",
        tgt.host(),
        "--plain-http",
        "--username",
        user,
        "--password-stdin",
        "--image-map",
        map
    ]
}

#[test]
fn pack_from_and_load_into_token_auth_registries_without_leaking_secrets() {
    let tokens = TokenServer::start(users());
    let src = source(&tokens, 201);
    let sh = src.reg.host();
    let dir = tempdir();
    let spec = spec(&src, dir.path());
    let bundle = dir.path().join("bundle.tar.zst");

    let pack = airgap(
        pack_args(&spec, &bundle, &src),
        &[("SRC_USER", SRC_USER), ("SRC_PASS", SRC_PASS)],
    );
    assert_success(&pack);
    let b = Bundle::open(&bundle);
    b.assert_well_formed();
    assert_eq!(b.ref_digest(&format!("{sh}/vendor/app:1")), src.app.digest);
    assert_eq!(
        b.ref_digest(&format!("{sh}/vendor/multi:2")),
        src.multi.digest
    );
    let reqs = tokens.requests();
    assert!(
        reqs.iter().any(|r| r.user.as_deref() == Some(SRC_USER)
            && r.status == 200
            && r.granted.iter().any(|g| g == "repository:vendor/app:pull")),
        "pack never got a pull token for vendor/app: {reqs:#?}"
    );

    let (_tgt_storage, tgt) = target(&tokens);
    let th = tgt.host();
    let map = dir.path().join("map.json");
    let load = airgap_stdin(
        load_args(&bundle, &tgt, TGT_USER, &map),
        &[],
        &format!("{TGT_PASS}\n"),
    );
    assert_success(&load);
    let reqs = tokens.requests();
    assert!(
        reqs.iter().any(|r| r.user.as_deref() == Some(TGT_USER)
            && r.status == 200
            && r.granted
                .iter()
                .any(|g| g == "repository:vendor/app:pull,push")),
        "load never got a push token for vendor/app: {reqs:#?}"
    );

    // skopeo, with its own bearer flow, reads what landed by digest.
    let check = |reference: &str, digest: &str| {
        let got = skopeo_digest_with_creds(reference, TGT_USER, TGT_PASS)
            .unwrap_or_else(|e| panic!("skopeo inspect {reference}: {e}"));
        assert_eq!(got, digest, "{reference}");
    };
    check(&src.app.reference(&th), &src.app.digest);
    check(&src.multi.reference(&th), &src.multi.digest);
    for c in &src.multi.children {
        check(&c.by_digest(&th), &c.digest);
    }
    let m = read_json(&map);
    let targets: Vec<&str> = m["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert!(targets.contains(&src.app.reference(&th).as_str()), "{m:#}");

    // A second load with the cached flow changes nothing and still succeeds.
    let again = airgap_stdin(
        load_args(&bundle, &tgt, TGT_USER, &dir.path().join("map2.json")),
        &[],
        &format!("{TGT_PASS}\n"),
    );
    assert_success(&again);

    grep_secrets(&[dir.path()], &[&pack, &load, &again], &secrets(&tokens));
}

#[test]
fn wrong_password_at_the_token_server_says_authentication_and_names_the_registry() {
    let tokens = TokenServer::start(users());
    let src = source(&tokens, 203);
    let sh = src.reg.host();
    let dir = tempdir();
    let spec = spec(&src, dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let bundle = out_dir.join("bundle.tar.zst");

    let pack = airgap(
        pack_args(&spec, &bundle, &src),
        &[("SRC_USER", SRC_USER), ("SRC_PASS", WRONG_PASS)],
    );
    show("pack", &pack);
    assert_failure_contains(&pack, &["authentication", &sh]);
    assert_eq!(dir_names(&out_dir), Vec::<String>::new());
    assert!(
        tokens
            .requests()
            .iter()
            .any(|r| r.user.as_deref() == Some(SRC_USER) && r.status == 401),
        "{:#?}",
        tokens.requests()
    );

    // A good bundle, loaded with a wrong password: nothing is pushed.
    let good = dir.path().join("good.tar.zst");
    let ok = airgap(
        pack_args(&spec, &good, &src),
        &[("SRC_USER", SRC_USER), ("SRC_PASS", SRC_PASS)],
    );
    assert_success(&ok);
    let (tgt_storage, tgt) = target(&tokens);
    let th = tgt.host();
    let map = dir.path().join("map.json");
    let load = airgap_stdin(
        load_args(&good, &tgt, TGT_USER, &map),
        &[],
        &format!("{WRONG_PASS}\n"),
    );
    show("load", &load);
    assert_failure_contains(&load, &["authentication", &th]);
    assert_no_file(&map);
    tgt.stop();
    tgt_storage.restart();
    assert!(
        tgt_storage.client().catalog().is_empty(),
        "{:?}",
        tgt_storage.client().catalog()
    );

    grep_secrets(&[dir.path()], &[&pack, &ok, &load], &secrets(&tokens));
}

#[test]
fn a_pull_only_token_fails_the_load_naming_the_repository_and_tags_nothing() {
    let tokens = TokenServer::start(users());
    let src = source(&tokens, 205);
    let dir = tempdir();
    let spec = spec(&src, dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    let pack = airgap(
        pack_args(&spec, &bundle, &src),
        &[("SRC_USER", SRC_USER), ("SRC_PASS", SRC_PASS)],
    );
    assert_success(&pack);

    let (tgt_storage, tgt) = target(&tokens);
    let th = tgt.host();
    let map = dir.path().join("map.json");
    let load = airgap_stdin(
        load_args(&bundle, &tgt, RO_USER, &map),
        &[],
        &format!("{RO_PASS}\n"),
    );
    show("load", &load);
    assert_failure_contains(&load, &[&th, "vendor/", "permission", "insufficient_scope"]);
    assert_no_file(&map);
    let reqs = tokens.requests();
    assert!(
        reqs.iter().any(|r| r.user.as_deref() == Some(RO_USER)
            && r.scopes.iter().any(|s| s.ends_with(":pull,push"))),
        "load never asked for push: {reqs:#?}"
    );
    assert!(
        reqs.iter()
            .filter(|r| r.user.as_deref() == Some(RO_USER))
            .all(|r| r.granted.iter().all(|g| !g.contains("push"))),
        "{reqs:#?}"
    );
    tgt.stop();
    tgt_storage.restart();
    let c = tgt_storage.client();
    assert!(c.tags(&src.app.repo).is_empty());
    assert!(c.tags(&src.multi.repo).is_empty());
    assert!(c.catalog().is_empty(), "{:?}", c.catalog());

    grep_secrets(&[dir.path()], &[&pack, &load], &secrets(&tokens));
}

#[test]
fn a_token_server_answering_503_is_retried_and_not_called_an_authentication_failure() {
    let tokens = TokenServer::start(users());
    let token_proxy = FaultProxy::start(&tokens.host(), Fault::None);
    let plain = Registry::start(RegistryOpts::plain());
    let app = Fixtures::new(&plain).image("vendor/app", Some("1"), &ImageOpts::oci(207));
    plain.stop();
    let realm = format!("{}/token", token_proxy.url());
    let reg = TokenRegistry::start_with_realm(&plain.storage_dir(), &tokens, &realm);
    let sh = reg.host();
    let dir = tempdir();
    let spec = Spec::new()
        .source(
            "vendor",
            &format!("{sh}/vendor"),
            Some(("SRC_USER", "SRC_PASS")),
        )
        .source_image("vendor", "app", "1")
        .write(dir.path());
    let creds = [("SRC_USER", SRC_USER), ("SRC_PASS", SRC_PASS)];
    let pack = |out: &Path, extra: &[&str]| {
        let mut a = args![
            "pack",
            &spec,
            "-o",
            out,
            "--mirror",
            format!("{sh}={}", reg.url())
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        airgap(a, &creds)
    };

    // Two 503s from the token server: retried, the pack succeeds.
    token_proxy.set_fault(Fault::StatusFirst {
        n: 2,
        status: 503,
        retry_after: None,
    });
    let bundle = dir.path().join("bundle.tar.zst");
    let ok = pack(&bundle, &[]);
    show("ok", &ok);
    assert_success(&ok);
    assert_eq!(
        token_proxy.count(&Action::Answered(503)),
        2,
        "{}",
        token_proxy.describe()
    );
    assert_eq!(
        Bundle::open(&bundle).ref_digest(&format!("{sh}/vendor/app:1")),
        app.digest
    );

    // A token server that stays down: bounded retries, then an error that names the
    // registry and the status and does not blame the credentials.
    token_proxy.reset_counts();
    token_proxy.set_fault(Fault::StatusAlways {
        status: 503,
        retry_after: None,
    });
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let down = pack(&out_dir.join("bundle.tar.zst"), &["--retries", "1"]);
    show("down", &down);
    assert_failure_contains(&down, &[&sh, "503", "token"]);
    assert!(
        !text_of(&down).contains("authentication failed"),
        "a token server outage is reported as bad credentials:\n{}",
        text_of(&down)
    );
    assert_eq!(
        token_proxy.count(&Action::Answered(503)),
        2,
        "{}",
        token_proxy.describe()
    );
    assert_eq!(dir_names(&out_dir), Vec::<String>::new());

    grep_secrets(&[dir.path()], &[&ok, &down], &secrets(&tokens));
}
