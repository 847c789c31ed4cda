//! Signing fixtures the way cosign does (Debian's skopeo has sigstore compiled out): a
//! simple-signing payload as the layer, its ECDSA P-256 signature (openssl) base64 in the
//! layer's `dev.cosignproject.cosign/signature` annotation, under tag `sha256-<hex>.sig`; an
//! attestation (`.att`), an SBOM (`.sbom`) and an OCI 1.1 referrer (`subject` + `artifactType`)
//! pushed by hand over the API. Used by tests/referrers.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::{json, Value};

use super::{digest_hex, sha256_digest, Kind, Registry, RegistryClient, OCI_INDEX, OCI_MANIFEST};

pub const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIG_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const SBOM_TYPE: &str = "application/vnd.example.sbom.v1+json";
pub const EMPTY: &str = "application/vnd.oci.empty.v1+json";

pub fn tag_of(digest: &str, suffix: &str) -> String {
    format!("sha256-{}.{suffix}", digest_hex(digest))
}

pub fn schema_tag(digest: &str) -> String {
    format!("sha256-{}", digest_hex(digest))
}

/// An ECDSA P-256 key pair made by openssl.
pub struct Key {
    pub private: PathBuf,
    pub public: PathBuf,
}

pub fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl")
}

pub fn keypair(dir: &Path) -> Key {
    let private = dir.join("cosign.key.pem");
    let public = dir.join("cosign.pub");
    let p = private.to_str().unwrap();
    let o = openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        p,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = openssl(&["ec", "-in", p, "-pubout", "-out", public.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Key { private, public }
}

/// The DER ECDSA signature of `payload` (what cosign stores, base64, in the annotation).
pub fn sign(key: &Key, payload: &[u8], dir: &Path) -> Vec<u8> {
    let file = write_bytes(dir, "payload.json", payload);
    let sig = dir.join("payload.sig");
    let o = openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        key.private.to_str().unwrap(),
        "-out",
        sig.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(sig).unwrap()
}

/// `openssl dgst -sha256 -verify PUB -signature SIG PAYLOAD` succeeds.
pub fn verifies(key: &Key, payload: &[u8], sig: &[u8], dir: &Path) -> bool {
    let p = write_bytes(dir, "check.json", payload);
    let s = write_bytes(dir, "check.sig", sig);
    openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        key.public.to_str().unwrap(),
        "-signature",
        s.to_str().unwrap(),
        p.to_str().unwrap(),
    ])
    .status
    .success()
}

pub fn write_bytes(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A one-layer OCI manifest pushed to `repo` under `reference`; returns its digest.
#[allow(clippy::too_many_arguments)]
pub fn push_artifact(
    c: &RegistryClient,
    repo: &str,
    reference: Option<&str>,
    config: (&str, &[u8]),
    layer: (&str, &[u8]),
    layer_annotations: Value,
    extra: Value,
) -> (String, Vec<u8>) {
    let cfg = c.push_blob(repo, config.1);
    let lay = c.push_blob(repo, layer.1);
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config.0, "digest": cfg, "size": config.1.len()},
        "layers": [{"mediaType": layer.0, "digest": lay, "size": layer.1.len(),
                    "annotations": layer_annotations}],
    });
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    let bytes = serde_json::to_vec(&m).unwrap();
    let digest = sha256_digest(&bytes);
    c.push_manifest(repo, reference.unwrap_or(&digest), OCI_MANIFEST, &bytes);
    (digest, bytes)
}

/// What was attached to one subject at the source.
pub struct Attached {
    pub sig: String,
    pub att: String,
    pub sbom: String,
    /// The OCI 1.1 referrer (a manifest whose `subject` is the image), by digest.
    pub referrer: String,
}

/// Signs `subject` (in `repo` of `src`) as cosign would, adds an attestation and an SBOM
/// under cosign's tags, and an OCI 1.1 referrer; where the source has no referrers API, the
/// referrer is also listed in the tag-schema index, as OCI 1.1 clients (oras) write it.
pub fn attach(
    src: &Registry,
    repo: &str,
    subject: &str,
    subject_size: u64,
    key: &Key,
    dir: &Path,
    seed: u64,
) -> Attached {
    let c = src.client();
    let payload = json!({
        "critical": {
            "identity": {"docker-reference": format!("{}/{repo}", src.host())},
            "image": {"docker-manifest-digest": subject},
            "type": "cosign container image signature"
        },
        "optional": null
    });
    let payload = serde_json::to_vec(&payload).unwrap();
    let sig = sign(key, &payload, dir);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&sig);
    let config = format!(
        r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{}"]}},"config":{{}}}}"#,
        sha256_digest(&payload)
    );
    let cfg = (
        "application/vnd.oci.image.config.v1+json",
        config.as_bytes(),
    );
    let (sig_d, _) = push_artifact(
        &c,
        repo,
        Some(&tag_of(subject, "sig")),
        cfg,
        (SIMPLESIGNING, &payload),
        json!({ SIG_ANNOTATION: b64 }),
        json!({}),
    );
    let dsse = json!({"payloadType": "application/vnd.in-toto+json", "payload":
        base64::engine::general_purpose::STANDARD.encode(format!("{{\"subject\":\"{subject}\",\"seed\":{seed}}}")),
        "signatures": [{"sig": b64}]});
    let (att_d, _) = push_artifact(
        &c,
        repo,
        Some(&tag_of(subject, "att")),
        cfg,
        (
            "application/vnd.dsse.envelope.v1+json",
            &serde_json::to_vec(&dsse).unwrap(),
        ),
        json!({"predicateType": "https://slsa.dev/provenance/v0.2"}),
        json!({}),
    );
    let spdx = format!(r#"{{"spdxVersion":"SPDX-2.3","name":"{repo}","seed":{seed}}}"#);
    let (sbom_d, _) = push_artifact(
        &c,
        repo,
        Some(&tag_of(subject, "sbom")),
        cfg,
        ("text/spdx+json", spdx.as_bytes()),
        json!({}),
        json!({}),
    );
    let (ref_d, ref_bytes) = push_artifact(
        &c,
        repo,
        None,
        (EMPTY, b"{}"),
        (SBOM_TYPE, format!("{{\"sbom\":{seed}}}").as_bytes()),
        json!({}),
        json!({
            "artifactType": SBOM_TYPE,
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size},
            "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}
        }),
    );
    if src.opts().kind == Kind::Distribution {
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": ref_d, "size": ref_bytes.len(),
            "artifactType": SBOM_TYPE}]});
        c.push_manifest(
            repo,
            &schema_tag(subject),
            OCI_INDEX,
            &serde_json::to_vec(&index).unwrap(),
        );
    }
    Attached {
        sig: sig_d,
        att: att_d,
        sbom: sbom_d,
        referrer: ref_d,
    }
}
