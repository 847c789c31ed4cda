use std::path::Path;

use super::*;

/// Test keys from sigstore/cosign, pkg/cosign/keys_test.go (commit d6d86c22): an ECDSA P-256
/// key written by cosign (`pemsigstorekey`, password "hello"; its test loads it with that
/// password), and an Ed25519 PKCS#8 key (`ed25519key`).
const SIGSTORE_KEY: &str = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----
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
const ED25519_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIALEbo1EFnWFqBK/wC+hhypG/8hXEerwdNetAoFoFVdv
-----END PRIVATE KEY-----
";

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn cosign_key_opens_with_its_password_and_not_without() {
    let d = tempfile::tempdir().unwrap();
    let k = write(d.path(), "cosign.key", SIGSTORE_KEY);
    // Each test its own variable: tests run in parallel in one process.
    std::env::set_var("AIRGAP_TEST_PW_RIGHT", "hello");
    std::env::set_var("AIRGAP_TEST_PW_WRONG", "hullo");
    let key = SigningKey::read(&k, "AIRGAP_TEST_PW_RIGHT").unwrap();
    assert_eq!(key.public().algorithm(), Algorithm::EcdsaP256Sha256);
    let sig = key.sign(b"airgap.json bytes");
    assert!(key.public().verify(b"airgap.json bytes", &sig));
    assert!(!key.public().verify(b"airgap.json byteS", &sig));
    let e = SigningKey::read(&k, "AIRGAP_TEST_PW_WRONG").err().unwrap();
    assert!(matches!(e, SignError::Decrypt { .. }), "{e}");
    assert!(e.to_string().contains("wrong password"), "{e}");
    assert!(
        !e.to_string().contains("hullo"),
        "the password is never printed: {e}"
    );
    let e = SigningKey::read(&k, "AIRGAP_TEST_PW_UNSET").err().unwrap();
    assert!(matches!(e, SignError::NoPassword { .. }), "{e}");
}

#[test]
fn ed25519_signs_and_verifies_plainly() {
    let d = tempfile::tempdir().unwrap();
    let k = SigningKey::read(&write(d.path(), "ed.pem", ED25519_KEY), "UNUSED").unwrap();
    let sig = k.sign(b"m");
    assert_eq!(sig.len(), 64);
    assert!(k.public().verify(b"m", &sig));
    assert!(!k.public().verify(b"n", &sig));
}

#[test]
fn sidecar_refusals_are_typed() {
    std::env::set_var("AIRGAP_TEST_PW_SIDECAR", "hello");
    let d = tempfile::tempdir().unwrap();
    let p256 = SigningKey::read(
        &write(d.path(), "c.key", SIGSTORE_KEY),
        "AIRGAP_TEST_PW_SIDECAR",
    )
    .unwrap();
    let ed = SigningKey::read(&write(d.path(), "e.pem", ED25519_KEY), "X").unwrap();
    let bundle = d.path().join("b.tar.zst");
    std::fs::write(&bundle, b"not read here").unwrap();
    let md = br#"{"formatVersion":1}"#;
    let e = check(&bundle, md, &[p256.public()]).unwrap_err();
    assert!(matches!(e, SignError::Unsigned { .. }), "{e}");

    let (side, fps) = sign_metadata(&bundle, md, std::slice::from_ref(&ed)).unwrap();
    assert_eq!(side, d.path().join("b.tar.zst.sig.json"));
    assert_eq!(fps, vec![ed.public().fingerprint()]);
    let e = check(&bundle, md, &[p256.public()]).unwrap_err();
    assert!(matches!(e, SignError::OtherKey { .. }), "{e}");
    assert!(e
        .to_string()
        .contains(&ed.public().fingerprint().to_string()));
    // Either key suffices; both signatures are kept.
    sign_metadata(&bundle, md, std::slice::from_ref(&p256)).unwrap();
    let c = check(&bundle, md, &[ed.public(), p256.public()]).unwrap();
    assert_eq!(c.key, ed.public().fingerprint());
    assert!(check(&bundle, md, &[p256.public()]).is_ok());
    // A flipped byte in the metadata.
    let e = check(&bundle, br#"{"formatVersion":2}"#, &[p256.public()]).unwrap_err();
    assert!(matches!(e, SignError::BadSignature { .. }), "{e}");
    assert!(e.to_string().contains("hashes to"), "{e}");
}
