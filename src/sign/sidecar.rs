//! The signature sidecar `<bundle>.sig.json`: where it is, reading, checking, adding to it.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{Algorithm, PublicKey, SignError, SigningKey};
use crate::bundle::volume;
use crate::digest::Digest;

/// `airgapSignatures` of the sidecar this airgap writes; a reader refuses a newer one.
pub const SIGNATURES_VERSION: u32 = 1;
pub const SIDECAR_SUFFIX: &str = ".sig.json";
/// A sidecar is a few signatures; refuse anything absurd before reading it.
const MAX_SIDECAR: u64 = 1024 * 1024;

/// The sidecar's content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Signatures {
    pub airgap_signatures: u32,
    /// The bundle's identity (sha256 of its `airgap.json`) when it was signed.
    pub bundle_id: Digest,
    pub signatures: Vec<SignatureEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SignatureEntry {
    /// sha256 of the signing key's SubjectPublicKeyInfo DER.
    pub key_fingerprint: Digest,
    pub algorithm: Algorithm,
    /// The signing key's public key, SPKI PEM: informative only (trust comes from `--key`),
    /// so a signature can be checked with other tools and a key recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Standard base64 of the signature bytes (what `cosign verify-blob --signature` reads).
    pub signature: String,
}

/// What a successful check found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Checked {
    pub key: Digest,
    pub algorithm: Algorithm,
    pub bundle_id: Digest,
    pub sidecar: PathBuf,
}

/// A bundle's signature state as reports say it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum Status {
    /// Checked with `--key`: signed by this key.
    #[serde(rename_all = "camelCase")]
    Verified {
        key: Digest,
        algorithm: Algorithm,
    },
    /// Signatures are attached but no `--key` was given.
    #[serde(rename_all = "camelCase")]
    NotChecked {
        signed_by: Vec<Digest>,
    },
    Unsigned,
    /// The sidecar is there but cannot be read.
    Unreadable {
        reason: String,
    },
}

impl Status {
    pub fn render(&self) -> String {
        match self {
            Status::Verified { key, algorithm } => {
                format!("signature verified: signed by key {key} ({algorithm})")
            }
            Status::NotChecked { signed_by } => format!(
                "signature not checked (no --key): signed by {}",
                super::list(signed_by)
            ),
            Status::Unsigned => "not signed (no signature checked)".into(),
            Status::Unreadable { reason } => {
                format!("signature not checked (no --key): {reason}")
            }
        }
    }
}

impl From<&Checked> for Status {
    fn from(c: &Checked) -> Status {
        Status::Verified {
            key: c.key.clone(),
            algorithm: c.algorithm,
        }
    }
}

/// Where a bundle's signatures are: `<file>.sig.json` beside a single file, `<base>.sig.json`
/// beside a split set's parts (whichever name the set was given by).
pub fn sidecar_path(bundle: &Path) -> PathBuf {
    let base = if volume::is_split(bundle) {
        volume::open_set(bundle)
            .map(|s| s.base_path())
            .unwrap_or_else(|_| bundle.to_path_buf())
    } else {
        bundle.to_path_buf()
    };
    let mut s = base.into_os_string();
    s.push(SIDECAR_SUFFIX);
    PathBuf::from(s)
}

/// Reads the sidecar; `None` when there is none.
fn read(path: &Path) -> Result<Option<Signatures>, SignError> {
    let bad = |reason: String| SignError::BadSidecar {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(crate::fsutil::FileError::new("reading", path, e).into()),
        Ok(m) if m.len() > MAX_SIDECAR => {
            return Err(bad(format!("larger than {MAX_SIDECAR} bytes")))
        }
        Ok(_) => {}
    }
    let bytes = std::fs::read(path).map_err(crate::fsutil::FileError::with("reading", path))?;
    // The version first, so a newer sidecar is refused as newer, not as malformed.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Version {
        airgap_signatures: u32,
    }
    let v: Version = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if v.airgap_signatures > SIGNATURES_VERSION {
        return Err(SignError::FutureSidecar {
            path: path.to_path_buf(),
            found: v.airgap_signatures,
        });
    }
    if v.airgap_signatures == 0 {
        return Err(bad("airgapSignatures 0 is not a version".into()));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

fn decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// Checks that `metadata` (the bundle's `airgap.json`, exact bytes) is signed by one of
/// `keys` (any suffices). Refusals name the bundle and the fingerprints involved.
pub fn check(bundle: &Path, metadata: &[u8], keys: &[PublicKey]) -> Result<Checked, SignError> {
    let sidecar = sidecar_path(bundle);
    let wanted: Vec<Digest> = keys.iter().map(|k| k.fingerprint()).collect();
    let Some(sigs) = read(&sidecar)? else {
        return Err(SignError::Unsigned {
            bundle: bundle.to_path_buf(),
            sidecar,
            keys: wanted,
        });
    };
    let id = Digest::of(metadata);
    let mut failed = Vec::new();
    for (key, fp) in keys.iter().zip(&wanted) {
        let mine: Vec<_> = sigs
            .signatures
            .iter()
            .filter(|s| &s.key_fingerprint == fp)
            .collect();
        for s in &mine {
            let ok = s.algorithm == key.algorithm()
                && decode(&s.signature).is_some_and(|sig| key.verify(metadata, &sig));
            if ok {
                return Ok(Checked {
                    key: fp.clone(),
                    algorithm: s.algorithm,
                    bundle_id: id,
                    sidecar,
                });
            }
        }
        if !mine.is_empty() {
            failed.push(fp.clone());
        }
    }
    if failed.is_empty() {
        return Err(SignError::OtherKey {
            bundle: bundle.to_path_buf(),
            signed_by: sigs
                .signatures
                .iter()
                .map(|s| s.key_fingerprint.clone())
                .collect(),
            keys: wanted,
        });
    }
    let reason = if sigs.bundle_id != id {
        format!(
            "airgap.json hashes to {id}, but {} was signed",
            sigs.bundle_id
        )
    } else {
        "the signature in the sidecar is not this key's signature of it".into()
    };
    Err(SignError::BadSignature {
        bundle: bundle.to_path_buf(),
        keys: failed,
        reason,
    })
}

/// The signature state without a key to check it with.
pub fn status(bundle: &Path) -> Status {
    match read(&sidecar_path(bundle)) {
        Ok(None) => Status::Unsigned,
        Ok(Some(s)) => Status::NotChecked {
            signed_by: s
                .signatures
                .into_iter()
                .map(|s| s.key_fingerprint)
                .collect(),
        },
        Err(e) => Status::Unreadable {
            reason: e.to_string(),
        },
    }
}

/// Signs `metadata` with every key and writes the sidecar atomically, keeping the signatures
/// of other keys already there for the same bundle (a signature by a key signing again is
/// replaced; signatures of another bundle id are dropped: they cannot match). Returns the
/// sidecar's path and the fingerprints that signed.
pub fn sign_metadata(
    bundle: &Path,
    metadata: &[u8],
    keys: &[SigningKey],
) -> Result<(PathBuf, Vec<Digest>), SignError> {
    let sidecar = sidecar_path(bundle);
    let id = Digest::of(metadata);
    let mut sigs = match read(&sidecar)? {
        Some(s) if s.bundle_id == id => s,
        _ => Signatures {
            airgap_signatures: SIGNATURES_VERSION,
            bundle_id: id,
            signatures: Vec::new(),
        },
    };
    sigs.airgap_signatures = SIGNATURES_VERSION;
    let mut signed = Vec::new();
    for k in keys {
        let public = k.public();
        let fp = public.fingerprint();
        sigs.signatures.retain(|s| s.key_fingerprint != fp);
        sigs.signatures.push(SignatureEntry {
            key_fingerprint: fp.clone(),
            algorithm: public.algorithm(),
            public_key: Some(public.to_pem()),
            signature: base64::engine::general_purpose::STANDARD.encode(k.sign(metadata)),
        });
        signed.push(fp);
    }
    let mut json = serde_json::to_vec_pretty(&sigs).expect("serializing signatures");
    json.push(b'\n');
    crate::fsutil::write_atomic(&sidecar, &json, 0o644)?;
    Ok((sidecar, signed))
}
