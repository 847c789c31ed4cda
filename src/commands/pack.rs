//! `airgap pack`: spec file in, bundle out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use url::Url;

use super::images::ImageListReport;
use super::inspect::{image_info, ImageInfo};
use super::{warn_connect, CommandError, CommandErrorKind};
use crate::digest::Digest;
use crate::pack::{ArchiveRequest, ChartRequest, ImageRequest, PackOptions};
use crate::platform::Platform;
use crate::progress::{human_bytes, Progress};
use crate::registry::ConnectOptions;
use crate::spec::{ChartWhere, Spec};

#[derive(Debug, Clone)]
pub struct PackCommand {
    pub spec: PathBuf,
    pub output: PathBuf,
    /// `--mirror HOST=URL`, over the spec's `registries:`.
    pub mirrors: Vec<(String, Url)>,
    /// Instead of the spec's `platforms:` when not empty.
    pub platforms: Vec<Platform>,
    pub connect: ConnectOptions,
    pub concurrency: usize,
    pub level: i32,
    /// Compression threads; `None`: one per CPU.
    pub threads: Option<u32>,
    pub allow_missing: bool,
    /// `--no-referrers`: leave out signatures, attestations, SBOMs and other referrers.
    pub no_referrers: bool,
    /// Part size for a split bundle.
    pub split: Option<u64>,
    /// A bundle or saved `airgap.json` to make a delta against.
    pub base: Option<PathBuf>,
    /// `--sign-key`: private keys that sign the bundle's `airgap.json` once it is written.
    pub sign_keys: Vec<PathBuf>,
    /// `--cache DIR`: the connected side's blob cache (bundle-spec/CACHE.md).
    pub cache: Option<PathBuf>,
}

/// What a pack wrote.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackReport {
    /// [`REPORT_VERSION`](super::REPORT_VERSION).
    pub report_version: u32,
    pub output: PathBuf,
    /// For a split bundle: the part size (the parts are `OUTPUT.001`, …).
    pub split: Option<u64>,
    /// The bundle's identity, as `inspect` shows it.
    pub id: Digest,
    /// What went in: each image with the digest it is stored under.
    pub image_list: Vec<ImageInfo>,
    pub images: usize,
    pub blobs: usize,
    /// Bytes of every blob.
    pub bytes: u64,
    /// Bytes of the bundle (all parts).
    pub compressed: u64,
    pub seconds: f64,
    /// With `--sign-key`: the signature sidecar and the fingerprints of the keys that signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<super::sign::SignReport>,
}

impl PackReport {
    pub fn render(&self) -> String {
        let referrers: usize = self.image_list.iter().map(|i| i.referrers.len()).sum();
        let packed = format!(
            "packed {} image(s){}, {} blob(s), {} into {} ({} compressed) in {:.1}s",
            self.images,
            match referrers {
                0 => String::new(),
                n => format!(" with {n} signature(s)/referrer(s)"),
            },
            self.blobs,
            human_bytes(self.bytes),
            self.output.display(),
            human_bytes(self.compressed),
            self.seconds
        );
        match &self.signature {
            Some(s) => format!("{packed}\n{}", s.render()),
            None => packed,
        }
    }
}

/// `pack --list-images`: what a pack of `spec` would take, and from where; nothing is
/// downloaded (registries are not asked).
pub fn list_images(spec: &std::path::Path) -> Result<ImageListReport, CommandError> {
    let spec = Spec::load(spec)?;
    let k8s = super::images::manifest_files(&spec)?;
    let list = super::images::image_list(&spec, &k8s, &|v| std::env::var(v).ok())?;
    let mut report = ImageListReport::from(&list);
    report.notes.splice(0..0, spec.warnings.iter().cloned());
    Ok(report)
}

pub async fn pack(
    cmd: &PackCommand,
    progress: Arc<dyn Progress>,
) -> Result<PackReport, CommandError> {
    let started = Instant::now();
    warn_connect(&cmd.connect, progress.as_ref());
    // The keys first: a wrong password stops the pack before any download.
    let sign_keys = super::sign::read_signing_keys(&cmd.sign_keys)?;
    let spec = Spec::load(&cmd.spec)?;
    for w in &spec.warnings {
        progress.warn(w);
    }
    let mut mirrors: BTreeMap<String, Url> = spec.mirrors.clone();
    mirrors.extend(cmd.mirrors.iter().cloned());
    let platforms = if cmd.platforms.is_empty() {
        spec.platforms.clone()
    } else {
        cmd.platforms.clone()
    };
    let k8s = super::images::manifest_files(&spec)?;
    let list = super::images::image_list(&spec, &k8s, &|v| std::env::var(v).ok())?;
    for n in &list.notes {
        progress.warn(n);
    }
    let mut images = Vec::with_capacity(list.images.len());
    for (e, _) in &list.images {
        let credentials = e.credentials_or_docker_config().map_err(|source| {
            CommandErrorKind::SpecCredentials {
                image: e.reference.to_string(),
                spec: spec.path.clone(),
                line: e.line,
                source,
            }
        })?;
        images.push(ImageRequest {
            reference: e.reference.clone(),
            source: e.source.clone(),
            credentials,
            archive: e.archive.as_ref().map(|a| ArchiveRequest {
                path: spec.base_dir().join(&a.path),
                select: a.select.clone(),
            }),
            chart: e.chart.as_ref().and_then(|c| match &c.source {
                ChartWhere::Oci => None,
                ChartWhere::Repo { url, name, version } => Some(ChartRequest::Repo {
                    url: url.clone(),
                    name: name.clone(),
                    version: version.clone(),
                }),
                ChartWhere::Path {
                    path,
                    name,
                    version,
                } => Some(ChartRequest::Path {
                    path: spec.base_dir().join(path),
                    name: name.clone(),
                    version: version.clone(),
                }),
            }),
        });
    }
    let base = match &cmd.base {
        Some(p) => Some(
            crate::bundle::read_base(p).map_err(|source| CommandErrorKind::Base {
                path: p.clone(),
                source,
            })?,
        ),
        None => None,
    };
    // Opened before any download, so an unusable directory stops the pack at once.
    let cache = match &cmd.cache {
        Some(dir) => Some(crate::cache::Cache::open(dir).map_err(crate::pack::PackError::from)?),
        None => None,
    };
    let opts = PackOptions {
        cache,
        output: cmd.output.clone(),
        platforms,
        mirrors,
        connect: cmd.connect.clone(),
        concurrency: cmd.concurrency.max(1),
        level: cmd.level,
        threads: cmd.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(2)
        }),
        allow_missing_images: cmd.allow_missing,
        referrers: !cmd.no_referrers,
        rules: spec.rules.clone(),
        split: cmd.split,
        base,
        spec_name: cmd
            .spec
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
    };
    let s = match crate::pack::pack(images, k8s, &opts, progress).await {
        Ok(s) => s,
        Err(e) => {
            // Name where a found image came from: the manifest line is what the user edits.
            let found = e.image().and_then(|image| {
                list.images.iter().find_map(|(entry, origin)| {
                    (entry.reference.to_string() == image
                        && matches!(origin, super::images::Origin::Manifest { .. }))
                    .then(|| origin.to_string())
                })
            });
            let archive_at = e.image().and_then(|image| {
                list.images.iter().find_map(|(entry, _)| {
                    entry
                        .archive
                        .as_ref()
                        .map(|a| (a.at.clone(), false))
                        .or(entry.chart.as_ref().map(|c| (c.at.clone(), true)))
                        .filter(|_| entry.reference.to_string() == image)
                })
            });
            return Err(match (found, archive_at) {
                (Some(origin), _) => CommandErrorKind::FoundImage { origin, source: e }.into(),
                (None, Some((at, true))) => CommandErrorKind::ChartEntry { at, source: e }.into(),
                (None, Some((at, false))) => {
                    CommandErrorKind::ArchiveImage { at, source: e }.into()
                }
                (None, None) => e.into(),
            });
        }
    };
    let signature = if sign_keys.is_empty() {
        None
    } else {
        Some(super::sign::sign_with(&cmd.output, &sign_keys)?)
    };
    Ok(PackReport {
        report_version: super::REPORT_VERSION,
        output: cmd.output.clone(),
        split: cmd.split,
        id: s.id.clone(),
        image_list: s.metadata.images.iter().map(image_info).collect(),
        images: s.images,
        blobs: s.blobs,
        bytes: s.bytes,
        compressed: s.compressed,
        seconds: started.elapsed().as_secs_f64(),
        signature,
    })
}
