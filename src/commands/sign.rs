//! `airgap sign`, and the signature checks `verify`, `load` and `serve` make with `--key`
//! before anything else (src/sign: what is signed and where it lives).

use std::path::{Path, PathBuf};

use super::CommandError;
use crate::bundle::{self, BaseRef};
use crate::digest::Digest;
use crate::sign::{self, Checked, PublicKey, SigningKey, Status};

#[derive(Debug, Clone)]
pub struct SignCommand {
    pub bundle: PathBuf,
    /// Private keys; a cosign key's password comes from [`sign::PASSWORD_ENV`].
    pub keys: Vec<PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignReport {
    pub bundle: PathBuf,
    pub sidecar: PathBuf,
    pub id: Digest,
    /// The fingerprints of the keys that signed.
    pub keys: Vec<Digest>,
}

impl SignReport {
    pub fn render(&self) -> String {
        let mut out = vec![format!(
            "signed bundle {} ({}) into {}",
            self.bundle.display(),
            self.id,
            self.sidecar.display()
        )];
        out.extend(self.keys.iter().map(|k| format!("  key {k}")));
        out.join("\n")
    }
}

/// Reads every signing key first, so a wrong password stops before any work.
pub fn read_signing_keys(paths: &[PathBuf]) -> Result<Vec<SigningKey>, CommandError> {
    paths
        .iter()
        .map(|p| SigningKey::read(p, sign::PASSWORD_ENV).map_err(CommandError::from))
        .collect()
}

pub fn read_public_keys(paths: &[PathBuf]) -> Result<Vec<PublicKey>, CommandError> {
    paths
        .iter()
        .map(|p| PublicKey::read(p).map_err(CommandError::from))
        .collect()
}

/// Signs the bundle's `airgap.json` (read from its head; the bundle is not rewritten).
pub fn sign_with(bundle_path: &Path, keys: &[SigningKey]) -> Result<SignReport, CommandError> {
    let head = bundle::inspect(
        bundle::open_input(bundle_path).map_err(CommandError::bundle(bundle_path))?,
    )
    .map_err(CommandError::bundle(bundle_path))?;
    let (sidecar, fps) = sign::sign_metadata(bundle_path, &head.metadata_raw, keys)?;
    Ok(SignReport {
        bundle: bundle_path.to_path_buf(),
        sidecar,
        id: head.id,
        keys: fps,
    })
}

pub fn sign(cmd: &SignCommand) -> Result<SignReport, CommandError> {
    let keys = read_signing_keys(&cmd.keys)?;
    sign_with(&cmd.bundle, &keys)
}

/// What `--key` established about a bundle before it was used.
#[derive(Debug, Clone)]
pub struct Trust {
    pub status: Status,
    /// The identity of the checked `airgap.json`: what is then read must have it.
    pub checked: Option<Checked>,
}

/// With keys: the bundle's signature is checked (refused unless one key signed its exact
/// `airgap.json`). Without: its state is only reported.
pub fn establish(bundle_path: &Path, keys: &[PathBuf]) -> Result<Trust, CommandError> {
    if keys.is_empty() {
        return Ok(Trust {
            status: sign::status(bundle_path),
            checked: None,
        });
    }
    if crate::archive::is_foreign(bundle_path) {
        return Err(CommandError::invalid(format!(
            "{}: an OCI layout or archive from another tool carries no airgap signature; \
             --key accepts signed airgap bundles only (pack it with an `archive:` spec entry \
             and sign the bundle)",
            bundle_path.display()
        )));
    }
    let keys = read_public_keys(keys)?;
    let head = bundle::inspect(
        bundle::open_input(bundle_path).map_err(CommandError::bundle(bundle_path))?,
    )
    .map_err(CommandError::bundle(bundle_path))?;
    let checked = sign::check(bundle_path, &head.metadata_raw, &keys)?;
    Ok(Trust {
        status: Status::from(&checked),
        checked: Some(checked),
    })
}

/// A delta's base, as `--key` reports it: found beside the delta under the name it was made
/// with and with the identity the delta names, then its own signature checked.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum BaseTrust {
    /// The base is not beside the delta (or is another bundle of that name).
    #[serde(rename_all = "camelCase")]
    NotAtHand { id: Digest },
    #[serde(rename_all = "camelCase")]
    Verified { path: PathBuf, key: Digest },
    #[serde(rename_all = "camelCase")]
    Refused { path: PathBuf, reason: String },
}

impl BaseTrust {
    pub fn render(&self) -> String {
        match self {
            BaseTrust::NotAtHand { id } => {
                format!("base {id}: not beside this bundle, its signature not checked")
            }
            BaseTrust::Verified { path, key } => {
                format!("base {}: signature verified (key {key})", path.display())
            }
            BaseTrust::Refused { path, reason } => {
                format!("base {}: signature NOT verified: {reason}", path.display())
            }
        }
    }
}

pub fn base_trust(bundle_path: &Path, base: &BaseRef, keys: &[PathBuf]) -> Option<BaseTrust> {
    if keys.is_empty() {
        return None;
    }
    let not_at_hand = BaseTrust::NotAtHand {
        id: base.id.clone(),
    };
    let Some(name) = base.name.as_deref() else {
        return Some(not_at_hand);
    };
    let path = bundle_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(Path::new(name).file_name()?);
    let head = bundle::open_input(&path).and_then(bundle::inspect);
    match head {
        Ok(h) if h.id == base.id => Some(match establish(&path, keys) {
            Ok(Trust {
                checked: Some(c), ..
            }) => BaseTrust::Verified { path, key: c.key },
            Ok(_) => not_at_hand,
            Err(e) => BaseTrust::Refused {
                path,
                reason: e.to_string(),
            },
        }),
        _ => Some(not_at_hand),
    }
}
