//! `airgap inspect`: what a bundle holds, from its head only.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::CommandError;
use crate::bundle::{self, BaseRef, ImageRecord, Metadata, ReferrerRecord};
use crate::digest::Digest;
use crate::progress::human_bytes;

/// `inspect --json`: the schema scripts read.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InspectReport {
    /// [`REPORT_VERSION`](super::REPORT_VERSION).
    pub report_version: u32,
    #[serde(skip)]
    pub bundle: PathBuf,
    pub format_version: u32,
    pub id: Digest,
    pub base: Option<BaseInfo>,
    pub tool: String,
    pub platforms: Vec<String>,
    pub images: Vec<ImageInfo>,
    pub manifests: Vec<String>,
    pub totals: Totals,
    /// What a foreign archive is (`crate::archive`); absent for a bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    /// `airgap.json` exactly as stored (`inspect --metadata`).
    #[serde(skip)]
    pub metadata_raw: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseInfo {
    pub id: Digest,
    pub name: Option<String>,
    pub blobs: usize,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    pub reference: String,
    pub digest: Digest,
    pub media_type: String,
    pub platforms: Vec<String>,
    pub size: u64,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<Digest>,
    /// Signatures, attestations, SBOMs and OCI 1.1 referrers carried with it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<ReferrerRecord>,
    /// An OCI artifact's type (a Helm chart, a WASM module…); absent for images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart: Option<crate::bundle::ChartRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub images: usize,
    pub blobs: usize,
    pub size: u64,
}

pub fn inspect(path: &Path) -> Result<InspectReport, CommandError> {
    inspect_archive(path, None)
}

/// [`inspect`] of a bundle or a foreign archive (`crate::archive`, read once through for
/// its plan); `repository` names the archive's bare tags.
pub fn inspect_archive(
    path: &Path,
    repository: Option<&str>,
) -> Result<InspectReport, CommandError> {
    let source = crate::archive::open(path, repository).map_err(CommandError::bundle(path))?;
    if let Some(f) = source.foreign() {
        let h = &f.head;
        let mut r = report(
            path,
            &h.metadata,
            h.id(),
            Vec::new(),
            h.metadata_raw.clone(),
        );
        r.archive = Some(f.describe());
        return Ok(r);
    }
    let input = bundle::open_input(path).map_err(CommandError::bundle(path))?;
    let i = bundle::inspect(input).map_err(CommandError::bundle(path))?;
    Ok(report(path, &i.metadata, i.id, i.k8s_files, i.metadata_raw))
}

fn report(
    path: &Path,
    md: &Metadata,
    id: Digest,
    manifests: Vec<String>,
    metadata_raw: Vec<u8>,
) -> InspectReport {
    let strings = |ps: &[crate::platform::Platform]| ps.iter().map(|p| p.to_string()).collect();
    InspectReport {
        report_version: super::REPORT_VERSION,
        bundle: path.to_path_buf(),
        format_version: md.format_version,
        id,
        base: md.base.as_ref().map(base_info),
        tool: md.tool.clone(),
        platforms: strings(&md.platforms),
        images: md.images.iter().map(image_info).collect(),
        manifests,
        totals: Totals {
            images: md.images.len(),
            blobs: md.blobs.len(),
            size: md.total_size,
        },
        archive: None,
        metadata_raw,
    }
}

/// A delta's base as `inspect` and `verify --json` describe it.
pub(super) fn base_info(b: &BaseRef) -> BaseInfo {
    BaseInfo {
        id: b.id.clone(),
        name: b.name.clone(),
        blobs: b.blobs.len(),
        size: b.blobs.iter().map(|r| r.size).sum(),
    }
}

/// One image as `inspect`, `pack --json` and `verify --json` describe it.
pub(super) fn image_info(img: &ImageRecord) -> ImageInfo {
    ImageInfo {
        reference: img.reference.to_string(),
        digest: img.digest.clone(),
        media_type: img.media_type.clone(),
        platforms: img.platforms.iter().map(|p| p.to_string()).collect(),
        size: img.total_size,
        source: img.source.clone(),
        source_digest: img.source_digest.clone(),
        referrers: img.referrers.clone(),
        artifact_type: img.artifact_type.clone(),
        chart: img.chart.clone(),
    }
}

impl InspectReport {
    pub fn render(&self) -> String {
        let mut out = vec![match &self.archive {
            Some(a) => format!(
                "{} is not an airgap bundle: {a}, read as one",
                self.bundle.display()
            ),
            None => format!(
                "bundle {} (format {}, {})",
                self.bundle.display(),
                self.format_version,
                self.tool
            ),
        }];
        if self.archive.is_none() {
            out.push(format!("  id {}", self.id));
        }
        if let Some(b) = &self.base {
            out.push(format!(
                "  delta of {} ({}): {} blob(s), {}, left out; load it into a registry that already has that bundle",
                b.name.as_deref().unwrap_or("an earlier bundle"),
                b.id,
                b.blobs,
                human_bytes(b.size)
            ));
        }
        for img in &self.images {
            let plats = if img.platforms.is_empty() {
                "-".to_string()
            } else {
                img.platforms.join(",")
            };
            out.push(format!("  {}", img.reference));
            out.push(format!("    digest    {}", img.digest));
            if let Some(sd) = &img.source_digest {
                out.push(format!(
                    "    source    {sd} (index filtered to the platforms above)"
                ));
            }
            out.push(format!("    type      {}", img.media_type));
            out.push(format!("    platforms {plats}"));
            out.push(format!("    size      {}", human_bytes(img.size)));
            match (&img.chart, &img.artifact_type) {
                (Some(c), _) => out.push(format!("    artifact  chart {} {}", c.name, c.version)),
                (None, Some(t)) => out.push(format!("    artifact  {t}")),
                _ => {}
            }
            for r in &img.referrers {
                let of = if r.subject == img.digest {
                    String::new()
                } else {
                    format!(" of {}", r.subject.short())
                };
                out.push(format!(
                    "    referrer  {} {}{of} ({})",
                    r.tag.as_deref().unwrap_or("by digest"),
                    r.digest,
                    r.artifact_type.as_deref().unwrap_or(&r.media_type)
                ));
            }
        }
        for f in &self.manifests {
            out.push(format!("  manifest {f}"));
        }
        out.push(format!(
            "total: {} image(s), {} blob(s), {}",
            self.totals.images,
            self.totals.blobs,
            human_bytes(self.totals.size)
        ));
        out.join("\n")
    }
}
