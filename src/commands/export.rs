//! `airgap export`: a bundle as a plain OCI image layout (directory or `oci-archive:` tar).

use std::path::{Path, PathBuf};

use super::CommandError;
use crate::archive::export::{export_dir, export_tar, ExportError};
use crate::progress::human_bytes;

#[derive(Debug, Clone)]
pub enum ExportTo {
    Dir(PathBuf),
    Tar(PathBuf),
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportReport {
    pub path: PathBuf,
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
}

pub fn export(bundle: &Path, to: &ExportTo) -> Result<ExportReport, CommandError> {
    let (path, r) = match to {
        ExportTo::Dir(d) => (d, export_dir(bundle, d)),
        ExportTo::Tar(f) => (f, export_tar(bundle, f)),
    };
    let e = r.map_err(|e: ExportError| CommandError::from(e))?;
    Ok(ExportReport {
        path: path.clone(),
        images: e.images,
        blobs: e.blobs,
        bytes: e.bytes,
    })
}

impl ExportReport {
    pub fn render(&self) -> String {
        format!(
            "wrote OCI layout {}: {} image(s), {} blob(s), {}",
            self.path.display(),
            self.images,
            self.blobs,
            human_bytes(self.bytes)
        )
    }
}
