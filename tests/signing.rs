//! Signed bundles (issue 17): keys made by openssl (P-256, Ed25519) and a cosign key sign a
//! bundle's airgap.json; airgap and openssl both verify it; `verify --key`, `load --key` and
//! `serve --key` refuse an unsigned bundle, another key's signature, a flipped byte in the
//! metadata and a swapped signature before anything is pushed or served.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use support::*;

fn openssl(args: &[&str], dir: &Path) -> std::process::Output {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An ECDSA P-256 key as the brief's vendor makes it: `openssl ecparam -genkey | openssl
/// pkcs8 -topk8 -nocrypt`, and its public key.
fn p256_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let sec1 = format!("{name}.sec1.pem");
    openssl(
        &["ecparam", "-genkey", "-name", "prime256v1", "-out", &sec1],
        dir,
    );
    let key = format!("{name}.pem");
    openssl(
        &["pkcs8", "-topk8", "-nocrypt", "-in", &sec1, "-out", &key],
        dir,
    );
    let public = format!("{name}.pub");
    openssl(&["pkey", "-in", &key, "-pubout", "-out", &public], dir);
    (dir.join(key), dir.join(public))
}

fn ed25519_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = format!("{name}.pem");
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", &key], dir);
    let public = format!("{name}.pub");
    openssl(&["pkey", "-in", &key, "-pubout", "-out", &public], dir);
    (dir.join(key), dir.join(public))
}

/// `sha256:` of the key's DER SubjectPublicKeyInfo, by openssl.
fn fingerprint(public: &Path) -> String {
    let out = openssl(
        &[
            "pkey",
            "-pubin",
            "-in",
            public.to_str().unwrap(),
            "-outform",
            "DER",
        ],
        public.parent().unwrap(),
    );
    sha256_digest(&out.stdout)
}

fn sidecar(bundle: &Path) -> PathBuf {
    PathBuf::from(format!("{}.sig.json", bundle.display()))
}

/// The signature a sidecar holds for `fp`, decoded.
fn signature_of(bundle: &Path, fp: &str) -> Vec<u8> {
    let s = read_json(&sidecar(bundle));
    let e = s["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["keyFingerprint"] == fp)
        .unwrap_or_else(|| panic!("no signature by {fp} in {s}"));
    base64::engine::general_purpose::STANDARD
        .decode(e["signature"].as_str().unwrap())
        .unwrap()
}

fn metadata_of(bundle: &Path, dir: &Path) -> PathBuf {
    let out = airgap(args!["inspect", bundle, "--metadata"], &[]);
    assert_success(&out);
    let p = dir.join("metadata.json");
    std::fs::write(&p, &out.stdout).unwrap();
    p
}

struct Setup {
    _src: Registry,
    dir: tempfile::TempDir,
    bundle: PathBuf,
    p256: (PathBuf, PathBuf),
    ed: (PathBuf, PathBuf),
    image: Image,
}

fn setup() -> Setup {
    let src = Registry::start(RegistryOpts::plain());
    let fx = Fixtures::new(&src);
    let image = fx.image(
        "app/web",
        Some("1"),
        &ImageOpts::oci(171).layers(2, 300 * 1024),
    );
    let dir = tempdir();
    let spec = Spec::new()
        .image(&format!("{}/app/web:1", src.host()))
        .write(dir.path());
    let p256 = p256_key(dir.path(), "vendor");
    let ed = ed25519_key(dir.path(), "site");
    let bundle = dir.path().join("bundle.tar.zst");
    let mut flags = src.source_flags();
    flags.extend(args!["--sign-key", &p256.0]);
    let out = pack_ok(&spec, &bundle, flags);
    assert!(
        stdout_of(&out).contains(&fingerprint(&p256.1)),
        "{}",
        text_of(&out)
    );
    Setup {
        _src: src,
        dir,
        bundle,
        p256,
        ed,
        image,
    }
}

/// A copy of the bundle (and, with `sig`, of its sidecar) under another name.
fn copy(s: &Setup, name: &str, sig: bool) -> PathBuf {
    let p = s.dir.path().join(name);
    std::fs::copy(&s.bundle, &p).unwrap();
    if sig {
        std::fs::copy(sidecar(&s.bundle), sidecar(&p)).unwrap();
    }
    p
}

/// The four bundles every `--key` check must refuse, with what the refusal must say.
fn refused_bundles(s: &Setup) -> Vec<(PathBuf, Vec<String>)> {
    let fp = fingerprint(&s.p256.1);
    let unsigned = copy(s, "unsigned.tar.zst", false);
    // Signed only by a key the site does not trust.
    let (other_key, other_pub) = p256_key(s.dir.path(), "stranger");
    let other = copy(s, "other.tar.zst", false);
    assert_success(&airgap(args!["sign", &other, "--key", &other_key], &[]));
    // One byte of airgap.json changed (still valid JSON), the vendor's sidecar beside it.
    let flipped = s.dir.path().join("flipped.tar.zst");
    rewrite_bundle(&s.bundle, &flipped, |entries| {
        let md = entries
            .iter_mut()
            .find(|e| e.path == "airgap.json")
            .unwrap();
        let t = String::from_utf8(md.data.clone()).unwrap();
        md.data = t
            .replacen("\"tool\": \"airgap ", "\"tool\": \"airgaq ", 1)
            .into_bytes();
        assert_ne!(md.data, t.as_bytes(), "no tool field to change in {t}");
    });
    std::fs::copy(sidecar(&s.bundle), sidecar(&flipped)).unwrap();
    // The vendor's key's signature of another bundle (the flipped one) put in this sidecar.
    let swapped = copy(s, "swapped.tar.zst", true);
    let donor = s.dir.path().join("donor.tar.zst");
    std::fs::copy(&flipped, &donor).unwrap();
    assert_success(&airgap(args!["sign", &donor, "--key", &s.p256.0], &[]));
    let mut sc = read_json(&sidecar(&swapped));
    sc["signatures"][0]["signature"] =
        read_json(&sidecar(&donor))["signatures"][0]["signature"].clone();
    std::fs::write(sidecar(&swapped), serde_json::to_vec_pretty(&sc).unwrap()).unwrap();
    vec![
        (
            unsigned.clone(),
            vec![
                "unsigned.tar.zst".into(),
                "is not signed".into(),
                fp.clone(),
            ],
        ),
        (
            other.clone(),
            vec![
                "other.tar.zst".into(),
                "signed only by".into(),
                fingerprint(&other_pub),
                fp.clone(),
            ],
        ),
        (
            flipped.clone(),
            vec![
                "flipped.tar.zst".into(),
                "does not match its airgap.json".into(),
                "hashes to".into(),
                fp.clone(),
            ],
        ),
        (
            swapped.clone(),
            vec![
                "swapped.tar.zst".into(),
                "does not match its airgap.json".into(),
                "not this key's signature".into(),
                fp,
            ],
        ),
    ]
}

#[test]
fn openssl_keys_sign_and_verify_with_airgap_and_openssl_and_refusals() {
    let s = setup();
    let d = s.dir.path();
    // A second signature, by the Ed25519 key, added without rewriting the bundle.
    let before = std::fs::read(&s.bundle).unwrap();
    let out = airgap(args!["sign", &s.bundle, "--key", &s.ed.0], &[]);
    assert_success(&out);
    assert_eq!(
        std::fs::read(&s.bundle).unwrap(),
        before,
        "sign rewrote the bundle"
    );

    // airgap: either key suffices; each alone verifies.
    for public in [&s.p256.1, &s.ed.1] {
        let out = airgap(args!["verify", &s.bundle, "--key", public], &[]);
        assert_success(&out);
        assert!(
            stdout_of(&out).contains(&format!(
                "signature verified: signed by key {}",
                fingerprint(public)
            )),
            "{}",
            text_of(&out)
        );
    }
    // Without --key: verified as today, and said not checked.
    let out = airgap(args!["verify", &s.bundle], &[]);
    assert_success(&out);
    assert!(
        stdout_of(&out).contains("signature not checked"),
        "{}",
        text_of(&out)
    );

    // openssl, on the exact bytes inspect --metadata prints.
    let md = metadata_of(&s.bundle, d);
    let bundle_md = Bundle::open(&s.bundle);
    assert_eq!(std::fs::read(&md).unwrap(), bundle_md.bytes("airgap.json"));
    std::fs::write(
        d.join("p256.sig"),
        signature_of(&s.bundle, &fingerprint(&s.p256.1)),
    )
    .unwrap();
    let out = openssl(
        &[
            "dgst",
            "-sha256",
            "-verify",
            "vendor.pub",
            "-signature",
            "p256.sig",
            "metadata.json",
        ],
        d,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Verified OK"));
    std::fs::write(
        d.join("ed.sig"),
        signature_of(&s.bundle, &fingerprint(&s.ed.1)),
    )
    .unwrap();
    let out = openssl(
        &[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "site.pub",
            "-rawin",
            "-in",
            "metadata.json",
            "-sigfile",
            "ed.sig",
        ],
        d,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully"));
    // And openssl refuses them over other bytes (the check can fail).
    std::fs::write(d.join("other.json"), b"{}").unwrap();
    let bad = Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-verify",
            "vendor.pub",
            "-signature",
            "p256.sig",
            "other.json",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(!bad.status.success());

    // Every refusal by verify --key, naming the bundle and the fingerprints.
    let refused = refused_bundles(&s);
    for (b, needles) in &refused {
        let out = airgap(args!["verify", b, "--key", &s.p256.1], &[]);
        let n: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_failure_contains(&out, &n);
    }

    // load --key: each refused with nothing pushed; serve --key: each refused to start.
    let tgt = Registry::start(RegistryOpts::plain());
    for (b, needles) in &refused {
        let n: Vec<&str> = needles.iter().map(String::as_str).collect();
        let out = airgap(
            args![
                "load",
                b,
                "--registry",
                tgt.host(),
                tgt.target_flags(),
                "--key",
                &s.p256.1
            ],
            &[],
        );
        assert_failure_contains(&out, &n);
        assert!(
            tgt.client().catalog().is_empty(),
            "{} pushed {:?}",
            b.display(),
            tgt.client().catalog()
        );
        let out = airgap(
            args!["serve", b, "--listen", "127.0.0.1:0", "--key", &s.p256.1],
            &[],
        );
        assert_failure_contains(&out, &n);
        assert!(
            !stdout_of(&out).contains("listening on"),
            "{}",
            text_of(&out)
        );
    }

    // Content that does not match the signed metadata: the signature holds, the blob's
    // digest does not; nothing is tagged.
    let layer = s.image.layers()[0].digest.clone();
    let bad_blob = s.dir.path().join("badblob.tar.zst");
    flip_byte_in_blob(&s.bundle, &bad_blob, &layer);
    std::fs::copy(sidecar(&s.bundle), sidecar(&bad_blob)).unwrap();
    let out = airgap(args!["verify", &bad_blob, "--key", &s.p256.1], &[]);
    assert_failure_contains(&out, &["badblob.tar.zst", &layer]);
    let out = airgap(
        args![
            "load",
            &bad_blob,
            "--registry",
            tgt.host(),
            tgt.target_flags(),
            "--key",
            &s.p256.1
        ],
        &[],
    );
    assert_failure_contains(&out, &[&layer]);
    assert!(
        tgt.client().tags("app/web").is_empty(),
        "tagged {:?}",
        tgt.client().tags("app/web")
    );
    assert!(tgt
        .client()
        .get_manifest("app/web", &s.image.digest)
        .is_none());

    // The signed bundle loads with --key, and skopeo finds the image by digest.
    let out = airgap(
        args![
            "load",
            &s.bundle,
            "--registry",
            tgt.host(),
            tgt.target_flags(),
            "--key",
            &s.ed.1,
            "--json"
        ],
        &[],
    );
    assert_success(&out);
    let report: serde_json::Value = serde_json::from_str(&stdout_of(&out)).unwrap();
    assert_eq!(report["signature"]["state"], "verified", "{report}");
    assert_eq!(report["signature"]["key"], fingerprint(&s.ed.1));
    assert_skopeo_digest(&format!("{}/app/web:1", tgt.host()), &tgt, &s.image.digest);

    // serve --key starts with a good signature.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut served = AirgapCmd::new(args![
        "serve",
        &s.bundle,
        "--listen",
        format!("127.0.0.1:{port}"),
        "--key",
        &s.p256.1
    ])
    .spawn();
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            served.child.try_wait().unwrap().is_none(),
            "serve --key exited"
        );
        if let Ok(r) = http.get(format!("http://127.0.0.1:{port}/v2/")).send() {
            assert!(r.status().is_success());
            break;
        }
        assert!(Instant::now() < deadline, "serve did not answer");
        std::thread::sleep(Duration::from_millis(100));
    }
    served.kill();
}

/// A split set is signed in place (one sidecar beside its parts) and checked by any name.
#[test]
fn split_set_signed_without_rewriting_its_parts() {
    let s = setup();
    let split = s.dir.path().join("split.tar.zst");
    let spec = s.dir.path().join("airgap.yaml");
    let mut flags = s._src.source_flags();
    flags.extend(args!["--split", "200K"]);
    let mut a = args!["pack", &spec, "-o", &split];
    a.extend(flags);
    assert_success(&airgap(&a, &[]));
    let part1 = s.dir.path().join("split.tar.zst.001");
    let before = std::fs::read(&part1).unwrap();
    assert_success(&airgap(args!["sign", &part1, "--key", &s.ed.0], &[]));
    assert_eq!(std::fs::read(&part1).unwrap(), before);
    assert!(
        sidecar(&split).is_file(),
        "no {}",
        sidecar(&split).display()
    );
    for name in [
        &part1,
        &split,
        &s.dir.path().join("split.tar.zst.parts.json"),
    ] {
        let out = airgap(args!["verify", name, "--key", &s.ed.1], &[]);
        assert_success(&out);
        assert!(
            stdout_of(&out).contains("signature verified"),
            "{}",
            text_of(&out)
        );
    }
    let out = airgap(args!["verify", &part1, "--key", &s.p256.1], &[]);
    assert_failure_contains(&out, &["signed only by", &fingerprint(&s.ed.1)]);
}

/// cosign's encrypted key format, with a key cosign made: sigstore/cosign
/// pkg/cosign/keys_test.go (`pemsigstorekey`, commit d6d86c22), whose test opens it with the
/// password "hello".
const COSIGN_KEY: &str = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----
eyJrZGYiOnsibmFtZSI6InNjcnlwdCIsInBhcmFtcyI6eyJOIjozMjc2OCwiciI6
OCwicCI6MX0sInNhbHQiOiI3T3VGd2VsbWZZNXVId2NoaURSc210anNwZ2ZlZjFG
Mk5lOGFDTjVLYVpZPSJ9LCJjaXBoZXIiOnsibmFtZSI6Im5hY2wvc2VjcmV0Ym94
Iiwibm9uY2UiOiJQNHk4OGhCb3ZTa09MbXN0bFVBaGJwdDJ0K2xTNUxQSCJ9LCJj
aXBoZXJ0ZXh0IjoiMnB1QzdyZldJOWh3bnJlQ2s4aUZDRlVwQlRrSzRJNlIvbFBF
cnBDekpXUGpJWXl4eGVIL1A2VW52cFJHdVhla1NNb3JMdGhLamdoQ1JlNy82NDVH
QWtoVm1LRC92eEF0S2EvbE1abENSQ3FlekJGUFd1dzNpeFRtZ2xhb2J1ZFVSbUVs
bmNGOGlZbzBTMVl6Y1ZOMVFwY2J2c0dNcUlYRzVlbmdteGp5dCtBcXlyZTF0Q0Y0
V01tU1BlaEljNlBqd2h1Q2xHaVpJUWRvTGc9PSJ9
-----END ENCRYPTED SIGSTORE PRIVATE KEY-----
";

#[test]
fn cosign_key_with_its_password_from_the_environment() {
    let s = setup();
    let d = s.dir.path();
    let key = write_file(d, "cosign.key", COSIGN_KEY);
    let out = airgap(args!["sign", &s.bundle, "--key", &key], &[]);
    assert_failure_contains(&out, &["cosign.key", "COSIGN_PASSWORD"]);
    let out = airgap(
        args!["sign", &s.bundle, "--key", &key],
        &[("COSIGN_PASSWORD", "hullo-9931")],
    );
    assert_failure_contains(&out, &["cosign.key", "wrong password"]);
    assert!(
        !text_of(&out).contains("hullo-9931"),
        "the password was printed"
    );
    let out = airgap(
        args!["sign", &s.bundle, "--key", &key],
        &[("COSIGN_PASSWORD", "hello")],
    );
    assert_success(&out);
    // The public key the sidecar records, checked by openssl: its fingerprint, and the
    // signature over inspect --metadata's bytes.
    let sc = read_json(&sidecar(&s.bundle));
    let entry = sc["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["algorithm"] == "ecdsa-p256-sha256" && e["keyFingerprint"] != fingerprint(&s.p256.1)
        })
        .expect("the cosign key's signature")
        .clone();
    let public = write_file(d, "cosign.pub", entry["publicKey"].as_str().unwrap());
    assert_eq!(entry["keyFingerprint"], fingerprint(&public));
    metadata_of(&s.bundle, d);
    std::fs::write(
        d.join("cosign.sig"),
        signature_of(&s.bundle, &fingerprint(&public)),
    )
    .unwrap();
    openssl(
        &[
            "dgst",
            "-sha256",
            "-verify",
            "cosign.pub",
            "-signature",
            "cosign.sig",
            "metadata.json",
        ],
        d,
    );
    let out = airgap(args!["verify", &s.bundle, "--key", &public], &[]);
    assert_success(&out);
    // The vendor's pack-time signature is still there beside it.
    assert_success(&airgap(args!["verify", &s.bundle, "--key", &s.p256.1], &[]));
}
