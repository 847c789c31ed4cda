//! Everything derived from where the images went (the placements): the image map, the
//! bundle's manifests rewritten to the target names, the pull-secret Secret and the runtime
//! mirror configuration (`mirror`). All of it is
//! computed in memory first ([`plan`]), from one value, so a manifest that would fail in the
//! cluster stops a load before anything is pushed and no two outputs can disagree; [`Planned::write`]
//! then writes each file whole or not at all.

pub mod calico;
pub mod mirror;
mod pull_secret;

use std::path::{Component, Path, PathBuf};

use crate::fsutil::{write_atomic, FileError};
use crate::image_map::{ImageMap, ImageMapEntry};
use crate::load::Placement;
use crate::naming::{Mode, Target};
use crate::registry::credentials::Credentials;
use crate::rewrite::{rewrite_all, K8sError, K8sOptions, MissingImage, NamedFile, RewrittenSet};
use mirror::{MirrorConfig, MirrorError};

pub use pull_secret::pull_secret_manifest;

/// Which outputs to produce, and where.
#[derive(Debug, Clone, Default)]
pub struct OutputOptions {
    /// The JSON image map (`load --image-map`).
    pub image_map: Option<PathBuf>,
    /// The bundle's manifests, rewritten (`load --manifests-out`).
    pub manifests_out: Option<PathBuf>,
    pub rewrite: K8sOptions,
    /// Runtime mirror configuration (`--mirror-config`).
    pub mirror: Option<MirrorOptions>,
}

#[derive(Debug, Clone, Default)]
pub struct MirrorOptions {
    pub dir: PathBuf,
    /// Write the target credentials into the files that can hold them (0600).
    pub include_credentials: bool,
    /// Where the target's CA certificate is on the nodes (else it is copied into `dir`).
    pub ca_node_path: Option<String>,
}

/// How the target is reached, as the outputs describe it to the cluster.
#[derive(Debug, Clone, Default)]
pub struct TargetAccess {
    pub target: Option<Target>,
    pub mode: Mode,
    pub plain_http: bool,
    pub insecure_skip_tls_verify: bool,
    pub ca_file: Option<PathBuf>,
    pub credentials: Option<Credentials>,
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
    #[error(transparent)]
    Manifests(#[from] K8sError),
    #[error("runtime mirror configuration")]
    Mirror(#[from] MirrorError),
}

impl OutputError {
    pub fn hint(&self) -> Option<String> {
        match self {
            OutputError::Manifests(e) => e.hint(),
            OutputError::Mirror(e) => e.hint(),
            _ => None,
        }
    }
}

/// The outputs of one set of placements, computed and not yet written.
#[derive(Debug, Clone)]
pub struct Planned {
    pub image_map: ImageMap,
    image_map_path: Option<PathBuf>,
    manifests: Option<(PathBuf, RewrittenSet)>,
    secret: Option<OutputFile>,
    /// The Tigera operator's ImageSets, beside the manifests.
    image_sets: Vec<OutputFile>,
    mirror: Option<(PathBuf, MirrorConfig)>,
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
    /// The runtime mirror files, when asked for.
    pub mirror_files: Vec<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror_dir: Option<PathBuf>,
    /// What the mirror formats could not express, per file and registry.
    pub mirror_notes: Vec<String>,
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
                chart: p.chart.clone(),
            })
            .collect(),
    )
}

/// Computes every requested output of `placements` in memory. `k8s` are the bundle's
/// manifest files; `access` says how the cluster reaches the target (the pull secret, made
/// only with `--pull-secret` and credentials, and the mirror files use it). Fails on a
/// manifest that cannot be rewritten (bad YAML, an image the bundle lacks unless allowed) and
/// on mirror files that could not agree with the placements.
pub fn plan(
    placements: &[Placement],
    k8s: &[NamedFile],
    access: &TargetAccess,
    opts: &OutputOptions,
) -> Result<Planned, OutputError> {
    plan_from_map(image_map(placements), k8s, access, opts)
}

/// [`plan`] from an image map (itself made from placements, perhaps by an earlier load).
pub fn plan_from_map(
    map: ImageMap,
    k8s: &[NamedFile],
    access: &TargetAccess,
    opts: &OutputOptions,
) -> Result<Planned, OutputError> {
    let manifests = match &opts.manifests_out {
        Some(dir) => Some((dir.clone(), rewrite_all(k8s, &map, &opts.rewrite)?)),
        None => None,
    };
    let secret = match (
        &opts.rewrite.rewrite.pull_secret,
        &access.credentials,
        &access.target,
        &manifests,
    ) {
        (Some(name), Some(creds), Some(target), Some((_, set))) => Some(OutputFile {
            name: format!("{name}-pull-secret.yaml"),
            // The Tigera operator copies pull secrets from its own namespace only.
            text: pull_secret_manifest(
                name,
                &target.host,
                creds,
                has_installation(set).then_some(TIGERA_OPERATOR_NAMESPACE),
            ),
            secret: true,
        }),
        _ => None,
    };
    let image_sets = match &manifests {
        Some(_) => calico::image_sets(&map),
        None => Vec::new(),
    };
    let mirror = match &opts.mirror {
        Some(m) => Some((m.dir.clone(), mirror_config(&map, access, m)?)),
        None => None,
    };
    Ok(Planned {
        image_map: map,
        image_map_path: opts.image_map.clone(),
        manifests,
        secret,
        image_sets,
        mirror,
    })
}

/// Where the Tigera operator runs and looks for the pull secrets an Installation names.
pub const TIGERA_OPERATOR_NAMESPACE: &str = "tigera-operator";

fn has_installation(set: &RewrittenSet) -> bool {
    set.files.iter().any(|(_, r)| !r.installations.is_empty())
}

fn mirror_config(
    map: &ImageMap,
    access: &TargetAccess,
    m: &MirrorOptions,
) -> Result<MirrorConfig, OutputError> {
    let pairs = mirror::pairs_of_image_map(&map.images);
    let (target, mode) = match &access.target {
        Some(t) => (t.clone(), access.mode),
        // An image map records neither; the names say them.
        None => mirror::infer_target(&pairs)?,
    };
    let ca_pem = match &access.ca_file {
        Some(p) => Some(std::fs::read(p).map_err(FileError::with("reading the CA file", p))?),
        None => None,
    };
    let conn = mirror::Connection {
        plain_http: access.plain_http,
        insecure_skip_tls_verify: access.insecure_skip_tls_verify,
        ca_node_path: m.ca_node_path.clone(),
        ca_pem,
        credentials: if m.include_credentials {
            access.credentials.clone()
        } else {
            None
        },
    };
    Ok(mirror::generate(&target, mode, &pairs, &conn)?)
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

    /// What the rewriter deliberately left alone, as `FILE:LINE: why` (e.g. a Tigera
    /// `Installation` whose registry is not the Calico images' source).
    pub fn notes(&self) -> Vec<String> {
        self.manifests
            .iter()
            .flat_map(|(_, set)| {
                set.files.iter().flat_map(|(name, r)| {
                    r.notes
                        .iter()
                        .map(move |n| format!("{name}:{}: {}", n.line, n.text))
                })
            })
            .collect()
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
            files.extend(self.image_sets.iter().cloned());
            written.manifests = write_files(dir, &files)?;
            written.manifests_dir = Some(dir.clone());
        }
        if let Some((dir, config)) = &self.mirror {
            written.mirror_files = config.write(dir)?;
            written.mirror_dir = Some(dir.clone());
            written.mirror_notes = config
                .notes
                .iter()
                .map(|n| format!("{} ({}): {}", n.file, n.registry, n.text))
                .collect();
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
