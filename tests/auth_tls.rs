//! Registries with htpasswd auth and self-signed TLS: credentials from the spec's
//! environment variables, from docker config.json, from `--password-stdin`; wrong
//! passwords say "authentication" and no password is ever written or printed.

mod support;

use std::path::Path;

use support::*;

const SRC_USER: &str = "alice";
const SRC_PASS: &str = "src-S3cret-Pa55word";
const TGT_USER: &str = "bob";
const TGT_PASS: &str = "tgt-An0ther-Pa55word";
const WRONG_PASS: &str = "wrong-Pa55word-xyz";

fn all_secret_forms() -> Vec<String> {
    let mut v = secret_forms(SRC_USER, SRC_PASS);
    v.extend(secret_forms(TGT_USER, TGT_PASS));
    v.extend(secret_forms(SRC_USER, WRONG_PASS));
    v.extend(secret_forms(TGT_USER, WRONG_PASS));
    v
}

/// A spec with a `mine` source (`HOST/vendor`, credentials from SRC_USER/SRC_PASS) and
/// the images `app:1` and `multi:2` of it.
fn vendor_spec(src: &Registry, dir: &Path) -> std::path::PathBuf {
    Spec::new()
        .source(
            "mine",
            &format!("{}/vendor", src.host()),
            Some(("SRC_USER", "SRC_PASS")),
        )
        .source_image("mine", "app", "1")
        .source_image("mine", "multi", "2")
        .write(dir)
}

fn docker_auth(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

#[test]
fn auth_and_tls_on_both_sides_round_trip_without_leaking_passwords() {
    let src = Registry::start(RegistryOpts::auth_tls(SRC_USER, SRC_PASS));
    let sh = src.host();
    let fx = Fixtures::new(&src);
    let app = fx.image("vendor/app", Some("1"), &ImageOpts::oci(71));
    let multi = fx.oci_index("vendor/multi", "2", 72);
    let dir = tempdir();
    let spec = vendor_spec(&src, dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    let pack = airgap(
        args!["pack", &spec, "-o", &bundle, "--ca-file", src.ca_file()],
        &[("SRC_USER", SRC_USER), ("SRC_PASS", SRC_PASS)],
    );
    assert_success(&pack);
    let b = Bundle::open(&bundle);
    assert_eq!(b.ref_digest(&format!("{sh}/vendor/app:1")), app.digest);
    assert_eq!(b.ref_digest(&format!("{sh}/vendor/multi:2")), multi.digest);

    let tgt = Registry::start(RegistryOpts::auth_tls(TGT_USER, TGT_PASS));
    let th = tgt.host();
    let map = dir.path().join("map.json");
    let load = airgap_stdin(
        args![
            "load",
            &bundle,
            "--registry",
            &th,
            "--username",
            TGT_USER,
            "--password-stdin",
            "--ca-file",
            tgt.ca_file(),
            "--image-map",
            &map
        ],
        &[],
        &format!("{TGT_PASS}\n"),
    );
    assert_success(&load);
    assert_skopeo_digest(&app.reference(&th), &tgt, &app.digest);
    assert_skopeo_digest(&multi.reference(&th), &tgt, &multi.digest);
    for c in &multi.children {
        assert_skopeo_digest(&c.by_digest(&th), &tgt, &c.digest);
    }

    grep_secrets(&[dir.path()], &[&pack, &load], &all_secret_forms());
}

#[test]
fn wrong_source_password_says_authentication_and_names_the_registry() {
    let src = Registry::start(RegistryOpts::auth_tls(SRC_USER, SRC_PASS));
    let sh = src.host();
    let fx = Fixtures::new(&src);
    fx.image("vendor/app", Some("1"), &ImageOpts::oci(73));
    fx.oci_index("vendor/multi", "2", 74);
    let dir = tempdir();
    let spec = vendor_spec(&src, dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    let ca = src.ca_file().display().to_string();

    let wrong = airgap(
        args!["pack", &spec, "-o", &bundle, "--ca-file", &ca],
        &[("SRC_USER", SRC_USER), ("SRC_PASS", WRONG_PASS)],
    );
    assert_failure_contains(&wrong, &["authentication", &sh]);
    assert_no_file(&bundle);

    // No credentials at all against a registry that needs them.
    let anon_spec = Spec::new()
        .image(&format!("{sh}/vendor/app:1"))
        .write(&dir.path().join("anon"));
    let anon = airgap(
        args!["pack", &anon_spec, "-o", &bundle, "--ca-file", &ca],
        &[],
    );
    assert_failure_contains(&anon, &["authentication", &sh]);
    assert_no_file(&bundle);

    grep_secrets(&[dir.path()], &[&wrong, &anon], &all_secret_forms());
}

#[test]
fn wrong_target_password_says_authentication_and_pushes_nothing() {
    let src = Registry::start(RegistryOpts::plain());
    let img = Fixtures::new(&src).image("plain/app", Some("1"), &ImageOpts::oci(75));
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    pack_ok(&spec, &bundle, src.source_flags());

    let tgt = Registry::start(RegistryOpts::auth_tls(TGT_USER, TGT_PASS));
    let th = tgt.host();
    let map = dir.path().join("map.json");
    let out = airgap_stdin(
        args![
            "load",
            &bundle,
            "--registry",
            &th,
            "--username",
            TGT_USER,
            "--password-stdin",
            "--ca-file",
            tgt.ca_file(),
            "--image-map",
            &map
        ],
        &[],
        &format!("{WRONG_PASS}\n"),
    );
    assert_failure_contains(&out, &["authentication", &th]);
    assert!(
        tgt.client().catalog().is_empty(),
        "{:?}",
        tgt.client().catalog()
    );
    assert_no_file(&map);

    // No credentials at all.
    let anon = airgap(
        args![
            "load",
            &bundle,
            "--registry",
            &th,
            "--ca-file",
            tgt.ca_file()
        ],
        &[],
    );
    assert_failure_contains(&anon, &["authentication", &th]);

    grep_secrets(&[dir.path()], &[&out, &anon], &all_secret_forms());
}

#[test]
fn docker_config_json_credentials_are_used() {
    let src = Registry::start(RegistryOpts::auth_tls(SRC_USER, SRC_PASS));
    let sh = src.host();
    let img = Fixtures::new(&src).image("cfg/app", Some("1"), &ImageOpts::oci(76));
    let dir = tempdir();
    let spec = Spec::new().image(&img.reference(&sh)).write(dir.path());
    let config = format!(
        r#"{{"auths":{{"{sh}":{{"auth":"{}"}}}}}}"#,
        docker_auth(SRC_USER, SRC_PASS)
    );

    // DOCKER_CONFIG=DIR with DIR/config.json
    let docker_dir = dir.path().join("docker");
    write_file(&docker_dir, "config.json", &config);
    let bundle = dir.path().join("a.tar.zst");
    let a = airgap(
        args!["pack", &spec, "-o", &bundle, "--ca-file", src.ca_file()],
        &[("DOCKER_CONFIG", &docker_dir.display().to_string())],
    );
    assert_success(&a);
    assert_eq!(
        Bundle::open(&bundle).ref_digest(&img.reference(&sh)),
        img.digest
    );

    // REGISTRY_AUTH_FILE=FILE (podman/skopeo style)
    let auth_file = write_file(dir.path(), "auth.json", &config);
    let bundle2 = dir.path().join("b.tar.zst");
    let b = airgap(
        args!["pack", &spec, "-o", &bundle2, "--ca-file", src.ca_file()],
        &[("REGISTRY_AUTH_FILE", &auth_file.display().to_string())],
    );
    assert_success(&b);
    assert_eq!(
        Bundle::open(&bundle2).ref_digest(&img.reference(&sh)),
        img.digest
    );

    // A wrong password in config.json is an authentication error.
    let bad_dir = dir.path().join("bad");
    write_file(
        &bad_dir,
        "config.json",
        &format!(
            r#"{{"auths":{{"{sh}":{{"auth":"{}"}}}}}}"#,
            docker_auth(SRC_USER, WRONG_PASS)
        ),
    );
    let bundle3 = dir.path().join("c.tar.zst");
    let c = airgap(
        args!["pack", &spec, "-o", &bundle3, "--ca-file", src.ca_file()],
        &[("DOCKER_CONFIG", &bad_dir.display().to_string())],
    );
    assert_failure_contains(&c, &["authentication", &sh]);
    assert_no_file(&bundle3);

    // The bundles and the outputs never carry the password (the config files do, so
    // only the bundles are searched).
    grep_secrets(&[&bundle, &bundle2], &[&a, &b, &c], &all_secret_forms());
}

#[test]
fn insecure_skip_tls_verify_reaches_self_signed_registries() {
    let src = Registry::start(RegistryOpts::tls());
    let img = Fixtures::new(&src).docker_list("skip/verify", "1", 77);
    let dir = tempdir();
    let spec = Spec::new()
        .image(&img.reference(&src.host()))
        .write(dir.path());
    let bundle = dir.path().join("bundle.tar.zst");
    let out = airgap(
        args!["pack", &spec, "-o", &bundle, "--insecure-skip-tls-verify"],
        &[],
    );
    assert_success(&out);

    let tgt = Registry::start(RegistryOpts::tls());
    let out = airgap(
        args![
            "load",
            &bundle,
            "--registry",
            tgt.host(),
            "--insecure-skip-tls-verify"
        ],
        &[],
    );
    assert_success(&out);
    assert_skopeo_digest(&img.reference(&tgt.host()), &tgt, &img.digest);
}
