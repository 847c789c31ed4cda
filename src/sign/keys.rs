//! Signing and public keys: PKCS#8 / SEC1 PEM as `openssl` writes them, SPKI public keys,
//! and cosign's encrypted private keys (see `cosign`).

use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use p256::ecdsa::signature::{Signer, Verifier};

use super::{cosign, SignError};
use crate::digest::Digest;

/// The signature schemes a bundle signature may use (`algorithm` in the sidecar).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Algorithm {
    /// ECDSA on P-256 over the SHA-256 of the message, signature DER-encoded.
    #[serde(rename = "ecdsa-p256-sha256")]
    EcdsaP256Sha256,
    /// Ed25519 over the message itself (RFC 8032), 64 bytes.
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Algorithm::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Algorithm::Ed25519 => "ed25519",
        })
    }
}

/// A private key that can sign a bundle's metadata.
pub enum SigningKey {
    P256(p256::ecdsa::SigningKey),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

/// A public key that can check a bundle signature.
#[derive(Debug, Clone)]
pub enum PublicKey {
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl SigningKey {
    /// Reads a private key file. An encrypted cosign key is decrypted with the password in the
    /// environment variable `password_env` (never an argument, so it is not in `ps`).
    pub fn read(path: &Path, password_env: &str) -> Result<SigningKey, SignError> {
        let text = read_text(path)?;
        let bad = |reason: String| SignError::BadKey {
            path: path.to_path_buf(),
            reason,
        };
        let (label, der) = pem_block(&text).map_err(bad)?;
        match label.as_str() {
            "PRIVATE KEY" => Self::from_pkcs8_der(&der).map_err(bad),
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&der)
                .map(|k| SigningKey::P256(k.into()))
                .map_err(|e| bad(format!("not a P-256 EC private key: {e}"))),
            cosign::COSIGN_LABEL | cosign::SIGSTORE_LABEL => {
                let password = std::env::var(password_env).map_err(|_| SignError::NoPassword {
                    path: path.to_path_buf(),
                    var: password_env.to_string(),
                })?;
                let der = cosign::decrypt(&der, password.as_bytes()).map_err(|reason| {
                    SignError::Decrypt {
                        path: path.to_path_buf(),
                        var: password_env.to_string(),
                        reason,
                    }
                })?;
                Self::from_pkcs8_der(&der)
                    .or_else(|_| {
                        p256::SecretKey::from_sec1_der(&der)
                            .map(|k| SigningKey::P256(k.into()))
                            .map_err(|e| e.to_string())
                    })
                    .map_err(bad)
            }
            "ENCRYPTED PRIVATE KEY" => Err(bad(
                "a password-protected PKCS#8 key; give it unencrypted (openssl pkcs8 -nocrypt) or as a cosign key".into(),
            )),
            "PUBLIC KEY" => Err(bad("a public key; signing needs the private key".into())),
            other => Err(bad(format!("a PEM block {other:?}, not a private key"))),
        }
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey, String> {
        if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
            return Ok(SigningKey::P256(k.into()));
        }
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_der(der) {
            return Ok(SigningKey::Ed25519(Box::new(k)));
        }
        Err(
            "a PKCS#8 key that is neither ECDSA P-256 nor Ed25519 (the two airgap signs with)"
                .into(),
        )
    }

    pub fn public(&self) -> PublicKey {
        match self {
            SigningKey::P256(k) => PublicKey::P256(*k.verifying_key()),
            SigningKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
        }
    }

    /// Signs `message`: ECDSA (deterministic, RFC 6979) DER over its SHA-256, or Ed25519.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(message);
                s.to_der().as_bytes().to_vec()
            }
            SigningKey::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
        }
    }
}

impl PublicKey {
    /// Reads an SPKI PEM public key (`openssl pkey -pubout`, `cosign.pub`).
    pub fn read(path: &Path) -> Result<PublicKey, SignError> {
        let text = read_text(path)?;
        let bad = |reason: String| SignError::BadKey {
            path: path.to_path_buf(),
            reason,
        };
        let (label, der) = pem_block(&text).map_err(bad)?;
        if label != "PUBLIC KEY" {
            return Err(bad(format!(
                "a PEM block {label:?}; --key takes the public key (openssl pkey -pubout)"
            )));
        }
        if let Ok(k) = p256::PublicKey::from_public_key_der(&der) {
            return Ok(PublicKey::P256(k.into()));
        }
        if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_der(&der) {
            return Ok(PublicKey::Ed25519(k));
        }
        Err(bad(
            "a public key that is neither ECDSA P-256 nor Ed25519".into()
        ))
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            PublicKey::P256(_) => Algorithm::EcdsaP256Sha256,
            PublicKey::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    /// The key's SubjectPublicKeyInfo, DER: what its fingerprint is taken over.
    pub fn spki_der(&self) -> Vec<u8> {
        let doc = match self {
            PublicKey::P256(k) => p256::PublicKey::from(k).to_public_key_der(),
            PublicKey::Ed25519(k) => k.to_public_key_der(),
        };
        doc.expect("encoding a valid public key")
            .as_bytes()
            .to_vec()
    }

    /// The SPKI PEM (`-----BEGIN PUBLIC KEY-----`), as `openssl pkey -pubout` writes it.
    pub fn to_pem(&self) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.spki_der());
        let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END PUBLIC KEY-----\n");
        out
    }

    /// `sha256:` of the SPKI DER (`openssl pkey -pubin -outform DER | sha256sum`).
    pub fn fingerprint(&self) -> Digest {
        Digest::of(&self.spki_der())
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::P256(k) => p256::ecdsa::Signature::from_der(signature)
                .map(|s| k.verify(message, &s).is_ok())
                .unwrap_or(false),
            PublicKey::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .map(|s| k.verify_strict(message, &s).is_ok())
                .unwrap_or(false),
        }
    }
}

fn read_text(path: &Path) -> Result<String, SignError> {
    let bytes = std::fs::read(path).map_err(crate::fsutil::FileError::with("reading key", path))?;
    String::from_utf8(bytes).map_err(|_| SignError::BadKey {
        path: path.to_path_buf(),
        reason: "not a PEM file (not text)".into(),
    })
}

/// The first PEM block: its label and decoded bytes. Text before it (openssl's `-----BEGIN EC
/// PARAMETERS-----` block from `ecparam -genkey`) is skipped when it is a parameters block.
fn pem_block(text: &str) -> Result<(String, Vec<u8>), String> {
    use base64::Engine;
    let mut rest = text;
    loop {
        let start = rest
            .find("-----BEGIN ")
            .ok_or_else(|| "no PEM block (-----BEGIN …-----) in it".to_string())?;
        let after = &rest[start + 11..];
        let end_label = after
            .find("-----")
            .ok_or_else(|| "a PEM header without its closing dashes".to_string())?;
        let label = after[..end_label].to_string();
        let body_start = &after[end_label + 5..];
        let footer = format!("-----END {label}-----");
        let body_end = body_start
            .find(&footer)
            .ok_or_else(|| format!("the PEM block {label:?} has no {footer}"))?;
        if label == "EC PARAMETERS" {
            rest = &body_start[body_end + footer.len()..];
            continue;
        }
        let b64: String = body_start[..body_end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("the PEM block {label:?} is not base64: {e}"))?;
        return Ok((label, der));
    }
}
