//! `airgap verify`: every byte of a bundle checked offline (each part of a split set first).

use std::path::{Path, PathBuf};

use super::inspect::{base_info, image_info, BaseInfo, ImageInfo};
use super::sign::{base_trust, establish, BaseTrust};
use super::{CommandError, CommandErrorKind};
use crate::bundle::volume;
use crate::bundle::{self, BaseRef};
use crate::digest::Digest;
use crate::progress::human_bytes;
use crate::sign::Status;

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// [`REPORT_VERSION`](super::REPORT_VERSION).
    pub report_version: u32,
    pub bundle: PathBuf,
    /// For a split set: how many parts, and whether a sidecar gave their checksums.
    pub parts: Option<PartsChecked>,
    #[serde(skip)]
    pub base: Option<BaseRef>,
    /// For a delta bundle: its base, and what of it must already be at the target.
    pub delta: Option<BaseInfo>,
    /// The bundle's identity, as `inspect` shows it.
    pub id: Option<Digest>,
    /// Each image whose content was verified, with its digest.
    pub image_list: Vec<ImageInfo>,
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub manifest_files: usize,
    pub seekable: bool,
    /// The signature: verified with `--key`, else what is attached, not checked.
    pub signature: Status,
    /// With `--key`, for a delta: its base's signature, when the base is beside it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_signature: Option<BaseTrust>,
    /// What a foreign archive is (`crate::archive`); absent for a bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartsChecked {
    pub count: usize,
    pub checksums: bool,
}

/// `keys`: public keys (`--key`), any of which must have signed the bundle; checked first.
pub fn verify(path: &Path, keys: &[PathBuf]) -> Result<VerifyReport, CommandError> {
    verify_archive(path, keys, None)
}

/// [`verify`] of a bundle or a foreign archive (`crate::archive`); `repository` names the
/// archive's bare tags.
pub fn verify_archive(
    path: &Path,
    keys: &[PathBuf],
    repository: Option<&str>,
) -> Result<VerifyReport, CommandError> {
    let trust = establish(path, keys)?;
    let verr = |source| CommandErrorKind::Verify {
        path: path.to_path_buf(),
        source,
    };
    let source = crate::archive::open(path, repository).map_err(verr)?;
    let mut parts = None;
    if volume::is_split(path) {
        // Each part on its own first, so a bad part is named even when the stream breaks.
        let set = volume::open_set(path).map_err(|e| CommandErrorKind::Bundle {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        let problems = volume::check_parts(&set);
        if !problems.is_empty() {
            return Err(CommandErrorKind::Parts {
                path: path.to_path_buf(),
                problems: problems.iter().map(|p| p.to_string()).collect(),
            }
            .into());
        }
        parts = Some(PartsChecked {
            count: set.parts.len(),
            checksums: set.parts.iter().all(|p| p.sha256.is_some()),
        });
    }
    let r = match source.foreign() {
        Some(f) => bundle::verify_with(|v| f.read(v)).map_err(verr)?,
        None => bundle::verify_path(path).map_err(verr)?,
    };
    let archive = source.foreign().map(|f| f.describe());
    if let (Some(c), Some(id)) = (&trust.checked, &r.id) {
        if &c.bundle_id != id {
            return Err(CommandErrorKind::Verify {
                path: path.to_path_buf(),
                source: bundle::BundleError::Invalid {
                    entry: bundle::METADATA_NAME.into(),
                    reason: format!(
                        "changed while being verified: {id} is not the signed {}",
                        c.bundle_id
                    ),
                },
            }
            .into());
        }
    }
    let base_signature = r.base.as_ref().and_then(|b| base_trust(path, b, keys));
    Ok(VerifyReport {
        report_version: super::REPORT_VERSION,
        bundle: path.to_path_buf(),
        parts,
        delta: r.base.as_ref().map(base_info),
        id: r.id,
        image_list: r.image_records.iter().map(image_info).collect(),
        base: r.base,
        images: r.images,
        blobs: r.blobs,
        bytes: r.bytes,
        manifest_files: r.k8s_files,
        seekable: r.seekable,
        signature: trust.status,
        base_signature,
        archive,
    })
}

impl VerifyReport {
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Some(p) = &self.parts {
            let checked = if p.checksums {
                "each checked against its sidecar checksum"
            } else {
                "no sidecar: part checksums unknown, content still verified below"
            };
            out.push(format!("{} part(s), {checked}", p.count));
        }
        if let Some(b) = &self.base {
            out.push(format!(
                "delta of {} ({}): {} blob(s) it leaves out must already be at the target",
                b.name.as_deref().unwrap_or("an earlier bundle"),
                b.id,
                b.blobs.len()
            ));
        }
        let what = match &self.archive {
            Some(a) => format!("{a}, not an airgap bundle,"),
            None => "bundle".into(),
        };
        out.push(format!(
            "{what} {} is intact: {} image(s), {} blob(s), {} verified, {} manifest file(s)",
            self.bundle.display(),
            self.images,
            self.blobs,
            human_bytes(self.bytes),
            self.manifest_files
        ));
        out.push(self.signature.render());
        if let Some(b) = &self.base_signature {
            out.push(b.render());
        }
        if !self.seekable && self.archive.is_none() {
            out.push("no seek table (packed by an older airgap or recompressed): `serve` must decompress from the start for each read".into());
        }
        out.join("\n")
    }
}
