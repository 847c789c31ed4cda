//! Bundle signatures (bundle-spec/FORMAT.md, "Signatures"): a bundle's identity is its
//! `airgap.json`, which names every blob by digest, so a signature over those exact bytes
//! covers all content. Signatures travel in a sidecar `<bundle>.sig.json` beside the bundle
//! (or beside a split set's parts), so an existing bundle is signed without rewriting it.

mod cosign;
mod keys;
mod sidecar;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use keys::{Algorithm, PublicKey, SigningKey};
pub use sidecar::{
    check, sidecar_path, sign_metadata, status, Checked, SignatureEntry, Signatures, Status,
    SIDECAR_SUFFIX, SIGNATURES_VERSION,
};

use crate::digest::Digest;

/// The environment variable holding a cosign key's password, as cosign itself reads it.
pub const PASSWORD_ENV: &str = "COSIGN_PASSWORD";

fn list(fps: &[Digest]) -> String {
    if fps.is_empty() {
        return "none".into();
    }
    fps.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(transparent)]
    File(#[from] crate::fsutil::FileError),
    #[error("key {}: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("key {} is encrypted and ${var} is not set", path.display())]
    NoPassword { path: PathBuf, var: String },
    #[error("key {}: cannot decrypt it with the password in ${var}: {reason}", path.display())]
    Decrypt {
        path: PathBuf,
        var: String,
        reason: String,
    },
    #[error("bundle {} is not signed (no {}); required: a signature by {}", bundle.display(), sidecar.display(), list(keys))]
    Unsigned {
        bundle: PathBuf,
        sidecar: PathBuf,
        keys: Vec<Digest>,
    },
    #[error("bundle {} is signed only by key(s) {}, not by {}", bundle.display(), list(signed_by), list(keys))]
    OtherKey {
        bundle: PathBuf,
        signed_by: Vec<Digest>,
        keys: Vec<Digest>,
    },
    #[error("bundle {}: the signature by key {} does not match its airgap.json ({})", bundle.display(), list(keys), reason)]
    BadSignature {
        bundle: PathBuf,
        keys: Vec<Digest>,
        reason: String,
    },
    #[error("signatures {}: {reason}", path.display())]
    BadSidecar { path: PathBuf, reason: String },
    #[error(
        "signatures {} have version {found}, newer than this airgap understands ({SIGNATURES_VERSION})",
        path.display()
    )]
    FutureSidecar { path: PathBuf, found: u32 },
}

impl SignError {
    pub fn hint(&self) -> Option<String> {
        match self {
            SignError::NoPassword { var, .. } => Some(format!(
                "set {var} to the key's password in the environment (cosign's convention)"
            )),
            SignError::Unsigned { sidecar, .. } => Some(format!(
                "copy {} along with the bundle, or sign it: airgap sign BUNDLE --key PRIVATE-KEY",
                sidecar.display()
            )),
            SignError::OtherKey { .. } => Some(
                "a key's fingerprint is the sha256 of its DER public key: openssl pkey -pubin -in pub.pem -outform DER | sha256sum"
                    .into(),
            ),
            SignError::BadSignature { .. } => Some(
                "the bundle's airgap.json or its signature changed after signing: do not load it; get the bundle again from its vendor".into(),
            ),
            _ => None,
        }
    }
}
