//! Everything derived from where the images went (the placements): the image map, the
//! bundle's manifests rewritten to the target names, and the pull-secret Secret. All of it is
//! computed in memory first ([`plan`]), from one value, so a manifest that would fail in the
//! cluster stops a load before anything is pushed and no two outputs can disagree; [`Planned::write`]
//! then writes each file whole or not at all.

mod pull_secret;

use std::path::{Component, Path, PathBuf};

use crate::fsutil::{write_atomic, FileError};
use crate::image_map::{ImageMap, ImageMapEntry};
use crate::load::Placement;
use crate::registry::credentials::Credentials;
use crate::rewrite::{rewrite_all, K8sError, K8sOptions, MissingImage, NamedFile, RewrittenSet};

pub use pull_secret::pull_secret_manifest;

/// Which outputs to produce, and where.
#[derive(Debug, Clone, Default)]
pub struct OutputOptions {
    /// The JSON image map (`load --image-map`).
    pub image_map: Option<PathBuf>,
    /// The bundle's manifests, rewritten (`load --manifests-out`).
    pub manifests_out: Option<PathBuf>,
    pub rewrite: K8sOptions,
}

/// A file to write below an output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Relative name, `/` separators.
    pub name: String,
    pub text: String,
    /// Holds a credential: written with mode 0600.
    pub secret: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{name}: refusing to write outside the output directory {}", dir.display())]
    Outside { name: String, dir: PathBuf },
}

/// The outputs of one set of placements, computed and not yet written.
#[derive(Debug, Clone)]
pub struct Planned {
    pub image_map: ImageMap,
    image_map_path: Option<PathBuf>,
    manifests: Option<(PathBuf, RewrittenSet)>,
    secret: Option<OutputFile>,
}

/// What [`Planned::write`] wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Written {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_map: Option<PathBuf>,
    /// The rewritten manifests and the pull secret, when asked for.
    pub manifests: Vec<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifests_dir: Option<PathBuf>,
}

/// The image map of a set of placements.
pub fn image_map(placements: &[Placement]) -> ImageMap {
    ImageMap::new(
        placements
            .iter()
            .map(|p| ImageMapEntry {
                source: p.source.clone(),
                target: p.target.clone(),
                digest: p.digest.clone(),
                source_digest: p.source_digest.clone(),
            })
            .collect(),
    )
}

/// Computes every requested output of `placements` in memory. `k8s` are the bundle's
/// manifest files; `registry` and `credentials` (the target's) feed the pull secret, which
/// is produced only with `--pull-secret` and credentials. Fails on a manifest that cannot be
/// rewritten (bad YAML, an image the bundle lacks unless allowed).
pub fn plan(
    placements: &[Placement],
    k8s: &[NamedFile],
    registry: &str,
    credentials: Option<&Credentials>,
    opts: &OutputOptions,
) -> Result<Planned, K8sError> {
    let map = image_map(placements);
    let manifests = match &opts.manifests_out {
        Some(dir) => Some((dir.clone(), rewrite_all(k8s, &map, &opts.rewrite)?)),
        None => None,
    };
    let secret = match (&opts.rewrite.rewrite.pull_secret, credentials, &manifests) {
        (Some(name), Some(creds), Some(_)) => Some(OutputFile {
            name: format!("{name}-pull-secret.yaml"),
            text: pull_secret_manifest(name, registry, creds),
            secret: true,
        }),
        _ => None,
    };
    Ok(Planned {
        image_map: map,
        image_map_path: opts.image_map.clone(),
        manifests,
        secret,
    })
}

impl Planned {
    /// Images the manifests use that the bundle lacks (only when allowed; otherwise [`plan`]
    /// failed).
    pub fn missing(&self) -> &[MissingImage] {
        self.manifests
            .as_ref()
            .map(|(_, s)| s.missing.as_slice())
            .unwrap_or_default()
    }

    /// Writes every output, each file atomically.
    pub fn write(&self) -> Result<Written, OutputError> {
        let mut written = Written::default();
        if let Some(path) = &self.image_map_path {
            let mut json =
                serde_json::to_vec_pretty(&self.image_map).expect("an image map serialises");
            json.push(b'\n');
            written.image_map = Some(write_atomic(path, &json, 0o644)?);
        }
        if let Some((dir, set)) = &self.manifests {
            let mut files: Vec<OutputFile> = set
                .files
                .iter()
                .map(|(name, r)| OutputFile {
                    name: name.clone(),
                    text: r.text.clone(),
                    secret: false,
                })
                .collect();
            files.extend(self.secret.clone());
            written.manifests = write_files(dir, &files)?;
            written.manifests_dir = Some(dir.clone());
        }
        Ok(written)
    }
}

/// Writes each file below `dir` under its relative name (directories created as needed),
/// each atomically; a name reaching outside `dir` is refused before anything is written.
pub fn write_files(dir: &Path, files: &[OutputFile]) -> Result<Vec<PathBuf>, OutputError> {
    for f in files {
        let rel = Path::new(&f.name);
        if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(OutputError::Outside {
                name: f.name.clone(),
                dir: dir.to_path_buf(),
            });
        }
    }
    let mut written = Vec::with_capacity(files.len());
    for f in files {
        let path = dir.join(&f.name);
        let parent = crate::fsutil::parent_dir(&path);
        std::fs::create_dir_all(parent).map_err(FileError::with("creating directory", parent))?;
        let mode = if f.secret { 0o600 } else { 0o644 };
        written.push(write_atomic(&path, f.text.as_bytes(), mode)?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests;
