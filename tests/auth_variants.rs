//! Auth variants real registries use (issue #13), against distribution with `auth: token:`
//! and the harness's token server (tests/support/token): docker `identitytoken` entries and
//! credential helpers answering `<token>`, exchanged in OAuth2 `refresh_token` grants; and
//! one token for a cross-repository mount (pull on the source, push on the target).
//! Anonymous pulls are in tests/anonymous_pulls.rs. skopeo judges what landed.

mod support;

use std::path::Path;

use base64::Engine as _;
use support::proxy::{Fault, FaultProxy};
use support::token::{
    seeded_token_registry, skopeo_digest_with_creds, Grant, TokenRequest, TokenServer, User,
};
use support::*;

fn show(what: &str, out: &std::process::Output) {
    eprintln!("---- {what}: {} ----\n{}", out.status, text_of(out));
}

const SRC_USER: &str = "vendor-reader";
const SRC_PASS: &str = "src-Id3ntity-Pa55word";
const SRC_REFRESH: &str = "src-refresh-9f2c71d0a4";
const TGT_USER: &str = "site-pusher";
const TGT_PASS: &str = "tgt-Id3ntity-Pa55word";
const TGT_REFRESH: &str = "tgt-refresh-5be80c33e1";
const WRONG_REFRESH: &str = "wrong-refresh-00d1e7a9";

fn users() -> Vec<User> {
    vec![
        User::new(SRC_USER, SRC_PASS, Grant::All).with_refresh_token(SRC_REFRESH),
        User::new(TGT_USER, TGT_PASS, Grant::All).with_refresh_token(TGT_REFRESH),
    ]
}

/// Every password, refresh token and issued token: none may appear in outputs or files.
fn secrets(tokens: &TokenServer) -> Vec<String> {
    let mut v: Vec<String> = [SRC_REFRESH, TGT_REFRESH, WRONG_REFRESH]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(secret_forms(SRC_USER, SRC_PASS));
    v.extend(secret_forms(TGT_USER, TGT_PASS));
    for t in tokens.issued_tokens() {
        v.push(t.rsplit('.').next().unwrap().to_string());
        v.push(t);
    }
    v
}

/// `DIR/config.json` with `auths` entries holding identity tokens, as `docker login` writes
/// them (`auth` of `user:` beside the token), and `credHelpers` answering `<token>` through
/// `DIR/bin/docker-credential-NAME`. Returns the `DOCKER_CONFIG` and `PATH` to run with.
fn docker_config(
    dir: &Path,
    inline: &[(&str, &str, &str)],
    helpers: &[(&str, &str, &str)],
) -> Vec<(String, String)> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut auths = serde_json::Map::new();
    for (host, user, token) in inline {
        auths.insert(
            host.to_string(),
            serde_json::json!({"auth": b64.encode(format!("{user}:")), "identitytoken": token}),
        );
    }
    let mut cred_helpers = serde_json::Map::new();
    for (host, name, token) in helpers {
        use std::os::unix::fs::PermissionsExt;
        let p = bin.join(format!("docker-credential-{name}"));
        std::fs::write(
            &p,
            format!("#!/bin/sh\ncat >/dev/null\nprintf '{{\"ServerURL\":\"{host}\",\"Username\":\"<token>\",\"Secret\":\"{token}\"}}'\n"),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        cred_helpers.insert(host.to_string(), serde_json::json!(name));
    }
    std::fs::write(
        dir.join("config.json"),
        serde_json::json!({"auths": auths, "credHelpers": cred_helpers}).to_string(),
    )
    .unwrap();
    vec![
        ("DOCKER_CONFIG".into(), dir.display().to_string()),
        (
            "PATH".into(),
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        ),
    ]
}

fn env_of(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, x)| (k.as_str(), x.as_str())).collect()
}

fn is_oauth(r: &TokenRequest) -> bool {
    r.method == "POST"
        && r.grant_type.as_deref() == Some("refresh_token")
        && r.client_id.as_deref() == Some("airgap")
        && !r.authorization
}

#[test]
fn identity_tokens_from_docker_config_and_helpers_pack_and_load_through_refresh_grants() {
    let tokens = TokenServer::start(users());
    let mut app = None;
    let (_seed, src) = seeded_token_registry(&tokens, |fx| {
        app = Some(fx.image("vendor/app", Some("1"), &ImageOpts::oci(301)));
    });
    let app = app.unwrap();
    let (tgt_storage, tgt) = seeded_token_registry(&tokens, |_| {});
    let (sh, th) = (src.host(), tgt.host());
    let dir = tempdir();
    let cfg = tempdir(); // holds the refresh tokens: not among the files checked for secrets
    let env = docker_config(
        cfg.path(),
        &[(&sh, SRC_USER, SRC_REFRESH)],
        &[(&th, "airgaptest", TGT_REFRESH)],
    );
    // A manifest, so that load can be asked for a pull secret (which a token cannot fill).
    write_file(
        &dir.path().join("k8s"),
        "app.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\nspec:\n  containers:\n  - name: app\n    image: {}\n",
            app.reference(&sh)
        ),
    );
    let spec = write_file(
        dir.path(),
        "airgap.yaml",
        &format!(
            "{}manifests: [k8s/]\n",
            Spec::new().image(&app.reference(&sh)).to_yaml()
        ),
    );
    let bundle = dir.path().join("bundle.tar.zst");
    let pack = airgap(
        args![
            "pack",
            &spec,
            "-o",
            &bundle,
            "--mirror",
            format!("{sh}={}", src.url())
        ],
        &env_of(&env),
    );
    show("pack", &pack);
    assert_success(&pack);
    assert_eq!(
        Bundle::open(&bundle).ref_digest(&app.reference(&sh)),
        app.digest
    );
    let reqs = tokens.requests();
    assert!(!reqs.is_empty() && reqs.iter().all(is_oauth), "{reqs:#?}");
    assert!(
        reqs.iter().any(|r| r.status == 200
            && r.user.as_deref() == Some(SRC_USER)
            && r.granted.iter().any(|g| g == "repository:vendor/app:pull")),
        "{reqs:#?}"
    );
    let packed = reqs.len();

    let map = dir.path().join("map.json");
    let out_dir = dir.path().join("out");
    let load = airgap(
        args![
            "load",
            &bundle,
            "--registry",
            &th,
            "--plain-http",
            "--image-map",
            &map,
            "--manifests-out",
            &out_dir,
            "--pull-secret",
            "regcred"
        ],
        &env_of(&env),
    );
    show("load", &load);
    assert_success(&load);
    assert!(
        stderr_of(&load).contains("identity token") && stderr_of(&load).contains("none written"),
        "{}",
        stderr_of(&load)
    );
    assert_no_file(&out_dir.join("regcred-pull-secret.yaml"));
    let rewritten = std::fs::read_to_string(out_dir.join("k8s/app.yaml")).unwrap();
    assert!(rewritten.contains(&app.reference(&th)), "{rewritten}");
    let reqs = &tokens.requests()[packed..];
    assert!(!reqs.is_empty() && reqs.iter().all(is_oauth), "{reqs:#?}");
    assert!(
        reqs.iter().any(|r| r.status == 200
            && r.user.as_deref() == Some(TGT_USER)
            && r.granted
                .iter()
                .any(|g| g == "repository:vendor/app:pull,push")),
        "the helper's <token> never reached the token server: {reqs:#?}"
    );
    let got = skopeo_digest_with_creds(&app.reference(&th), TGT_USER, TGT_PASS)
        .unwrap_or_else(|e| panic!("skopeo: {e}"));
    assert_eq!(got, app.digest);
    tgt.stop();
    tgt_storage.restart();
    for b in &app.blobs {
        assert!(
            tgt_storage.client().blob_exists(&app.repo, &b.digest),
            "blob {} missing",
            b.digest
        );
    }
    grep_secrets(&[dir.path()], &[&pack, &load], &secrets(&tokens));
}

#[test]
fn a_refused_refresh_token_names_registry_realm_status_and_message_and_leaves_nothing() {
    let tokens = TokenServer::start(users());
    let mut app = None;
    let (_seed, src) = seeded_token_registry(&tokens, |fx| {
        app = Some(fx.image("vendor/app", Some("1"), &ImageOpts::oci(303)));
    });
    let app = app.unwrap();
    let (tgt_storage, tgt) = seeded_token_registry(&tokens, |_| {});
    let (sh, th) = (src.host(), tgt.host());
    let dir = tempdir();
    let (good_cfg, bad_cfg) = (tempdir(), tempdir());
    let good = docker_config(good_cfg.path(), &[(&sh, SRC_USER, SRC_REFRESH)], &[]);
    let bad = docker_config(
        bad_cfg.path(),
        &[
            (&sh, SRC_USER, WRONG_REFRESH),
            (&th, TGT_USER, WRONG_REFRESH),
        ],
        &[],
    );
    let spec = Spec::new().image(&app.reference(&sh)).write(dir.path());
    let pack = |out: &Path, env: &[(String, String)]| {
        airgap(
            args![
                "pack",
                &spec,
                "-o",
                out,
                "--mirror",
                format!("{sh}={}", src.url())
            ],
            &env_of(env),
        )
    };
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let refused = pack(&out_dir.join("bundle.tar.zst"), &bad);
    show("refused pack", &refused);
    let realm = tokens.realm();
    assert_failure_contains(
        &refused,
        &[
            &sh,
            &realm,
            "400",
            "identity token",
            "invalid_grant",
            "refresh token <redacted> is unknown or expired",
        ],
    );
    assert_eq!(dir_names(&out_dir), Vec::<String>::new());
    assert!(
        tokens
            .requests()
            .iter()
            .any(|r| is_oauth(r) && r.status == 400),
        "{:#?}",
        tokens.requests()
    );

    // A good bundle, loaded with a refused refresh token: nothing is pushed.
    let bundle = dir.path().join("good.tar.zst");
    let ok = pack(&bundle, &good);
    assert_success(&ok);
    let map = dir.path().join("map.json");
    let load = airgap(
        args![
            "load",
            &bundle,
            "--registry",
            &th,
            "--plain-http",
            "--image-map",
            &map
        ],
        &env_of(&bad),
    );
    show("refused load", &load);
    assert_failure_contains(&load, &[&th, &realm, "400", "invalid_grant"]);
    assert_no_file(&map);
    tgt.stop();
    tgt_storage.restart();
    assert!(
        tgt_storage.client().catalog().is_empty(),
        "{:?}",
        tgt_storage.client().catalog()
    );
    grep_secrets(&[dir.path()], &[&refused, &ok, &load], &secrets(&tokens));
}

#[test]
fn a_cross_repository_mount_asks_one_token_for_pull_on_the_source_and_push_on_the_target() {
    let tokens = TokenServer::start(users());
    let src = Registry::start(RegistryOpts::plain());
    let base = TarLayer::new(0xA07, 3 << 20);
    let fx = Fixtures::new(&src);
    let one = fx.image(
        "vendor/one",
        Some("1"),
        &ImageOpts::oci(305).base(base.clone()),
    );
    let two = fx.image(
        "vendor/two",
        Some("1"),
        &ImageOpts::oci(306).base(base.clone()),
    );
    let dir = tempdir();
    let spec = Spec::new()
        .image(&one.reference(&src.host()))
        .image(&two.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, src.source_flags());

    let (tgt_storage, tgt) = seeded_token_registry(&tokens, |_| {});
    let proxy = FaultProxy::start(&tgt.host(), Fault::None);
    let load = airgap_stdin(
        args![
            "load",
            &bundle,
            "--registry",
            proxy.host(),
            "--plain-http",
            "--username",
            TGT_USER,
            "--password-stdin"
        ],
        &[],
        &format!("{TGT_PASS}\n"),
    );
    show("load", &load);
    assert_success(&load);

    // The shared layer went up once and was mounted into the other repository...
    let layer = base.digest();
    let mounts: Vec<String> = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "POST" && s.path.contains(&layer.replace(':', "%3A")))
        .map(|s| s.path.clone())
        .collect();
    // The mount into the repository uploaded second (a mount of the blob from the same
    // repository is the request that opens an upload).
    let cross: Vec<&String> = mounts
        .iter()
        .filter(|p| {
            (p.contains("/v2/vendor/two/") && p.contains("from=vendor%2Fone"))
                || (p.contains("/v2/vendor/one/") && p.contains("from=vendor%2Ftwo"))
        })
        .collect();
    assert_eq!(cross.len(), 1, "{}", proxy.describe());
    let (into, from) = if cross[0].contains("from=vendor%2Fone") {
        ("vendor/two", "vendor/one")
    } else {
        ("vendor/one", "vendor/two")
    };
    let sent = proxy.body_bytes("PUT") + proxy.body_bytes("PATCH") + proxy.body_bytes("POST");
    assert!(
        sent >= base.len() && sent < base.len() + (1 << 20),
        "{sent} bytes uploaded for a {}-byte shared layer: sent twice?\n{}",
        base.len(),
        proxy.describe()
    );
    // ...with one token carrying both scopes, asked once.
    let pull = format!("repository:{from}:pull");
    let push = format!("repository:{into}:pull,push");
    let both: Vec<TokenRequest> = tokens
        .requests()
        .into_iter()
        .filter(|r| r.scopes.contains(&pull) && r.scopes.contains(&push))
        .collect();
    assert_eq!(both.len(), 1, "{:#?}", tokens.requests());
    assert_eq!(both[0].status, 200);
    assert!(both[0].granted.contains(&pull) && both[0].granted.contains(&push));

    for img in [&one, &two] {
        let got = skopeo_digest_with_creds(&img.reference(&tgt.host()), TGT_USER, TGT_PASS)
            .unwrap_or_else(|e| panic!("skopeo: {e}"));
        assert_eq!(got, img.digest);
    }
    tgt.stop();
    tgt_storage.restart();
    for repo in ["vendor/one", "vendor/two"] {
        assert!(tgt_storage.client().blob_exists(repo, &layer), "{repo}");
    }
}

/// An identity token for a registry that asks for Basic credentials (htpasswd): it is not
/// sent as a password; the error says why, and nothing is written.
#[test]
fn an_identity_token_for_a_basic_auth_registry_is_not_sent_and_says_why() {
    let reg = Registry::start(RegistryOpts::auth(SRC_USER, SRC_PASS));
    let app = Fixtures::new(&reg).image("vendor/app", Some("1"), &ImageOpts::oci(313));
    let rh = reg.host();
    let (dir, cfg) = (tempdir(), tempdir());
    let env = docker_config(cfg.path(), &[(&rh, SRC_USER, SRC_REFRESH)], &[]);
    let spec = Spec::new().image(&app.reference(&rh)).write(dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = airgap(
        args![
            "pack",
            &spec,
            "-o",
            out_dir.join("bundle.tar.zst"),
            reg.source_flags()
        ],
        &env_of(&env),
    );
    show("pack", &out);
    assert_failure_contains(&out, &[&rh, "vendor/app", "basic", "identity token"]);
    assert_eq!(dir_names(&out_dir), Vec::<String>::new());
    grep_secrets(&[dir.path()], &[&out], &[SRC_REFRESH]);
}
