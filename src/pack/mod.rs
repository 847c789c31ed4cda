//! `pack`: resolve every image to its digest, fetch every blob once (concurrently, verified
//! as it streams) and write the bundle to a temporary name that is renamed only on success.

pub mod chart;
mod direct;
mod fetch;
mod origin;
mod referrers;
mod resolve;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use url::Url;

use crate::bundle::{
    BlobKind, BlobRecord, BundleError, BundleWriter, FileRecord, ImageRecord, Metadata,
    FORMAT_VERSION, INDEX_NAME, LAYOUT_NAME, MANIFESTS_DIR, METADATA_NAME, OCI_LAYOUT_CONTENT,
    REF_NAME_ANNOTATION,
};
use crate::digest::Digest;
use crate::image_rules::ImageRules;
use crate::manifest::{is_index, ManifestError, OCI_INDEX};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::credentials::Credentials;
use crate::registry::{Client, ConnectOptions, Endpoint, RegistryError};

pub use origin::ArchiveRequest;
use origin::Origin;
pub use resolve::ResolvedImage;

/// One image to pack, with the credentials for its registry (if any).
#[derive(Debug, Clone)]
pub struct ImageRequest {
    pub reference: Reference,
    /// The spec source it came from (`public`, a source name, or `image`).
    pub source: String,
    pub credentials: Option<Credentials>,
    /// Set when the image comes from an OCI layout or archive instead of its registry.
    pub archive: Option<ArchiveRequest>,
    /// Set for a chart pack makes into the Helm OCI artifact (a chart repository's or a
    /// local package); an `oci:` chart is an ordinary image request.
    pub chart: Option<ChartRequest>,
}

/// Where a chart package comes from, and the name and version the spec expects of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChartRequest {
    Repo {
        url: Url,
        name: String,
        version: String,
    },
    Path {
        path: PathBuf,
        name: String,
        version: String,
    },
}

/// A Kubernetes YAML file to carry under `manifests/`.
#[derive(Debug, Clone)]
pub struct K8sFile {
    /// Relative path with `/` separators.
    pub path: String,
    pub content: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct PackOptions {
    pub output: PathBuf,
    pub platforms: Vec<Platform>,
    pub mirrors: BTreeMap<String, Url>,
    pub connect: ConnectOptions,
    pub concurrency: usize,
    pub level: i32,
    pub threads: u32,
    pub spec_name: Option<String>,
    /// Let the carried manifests use images the bundle lacks (warn instead of failing).
    pub allow_missing_images: bool,
    /// Make a delta: leave out every config and layer this earlier bundle carries.
    pub base: Option<BaseBundle>,
    /// Write the bundle as parts of at most this many bytes (`BUNDLE.001`, …, and a sidecar).
    pub split: Option<u64>,
    /// Where the manifests hold images besides pod specs; recorded in the bundle.
    pub rules: ImageRules,
    /// Carry what refers to each image (cosign signatures, attestations, SBOMs, OCI 1.1
    /// referrers); false with `--no-referrers`.
    pub referrers: bool,
    /// `--cache`: blobs are taken from it when there (verified again) and kept in it.
    pub cache: Option<crate::cache::Cache>,
}

pub use crate::bundle::BaseBundle;

#[derive(Debug, Clone)]
pub struct PackSummary {
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub compressed: u64,
    /// The bundle's identity (`inspect`'s id): the sha256 of its `airgap.json`.
    pub id: Digest,
    pub metadata: Metadata,
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("image {image}")]
    Registry {
        image: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("image {image}")]
    Manifest {
        image: String,
        #[source]
        source: ManifestError,
    },
    #[error("image {image} has no manifest for platform(s) {}; it has: {}", wanted.join(", "), if available.is_empty() { "none listed".to_string() } else { available.join(", ") })]
    NoPlatform {
        image: String,
        wanted: Vec<String>,
        available: Vec<String>,
    },
    #[error("image {image}: finding its signatures and other referrers")]
    Referrers {
        image: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("image {image}: {reason}")]
    Invalid { image: String, reason: String },
    #[error("blob {digest} (needed by {image})")]
    Blob {
        digest: Digest,
        image: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("image {image} from {}: {reason}", path.display())]
    Archive {
        image: String,
        path: PathBuf,
        reason: String,
    },
    #[error("image {image} from {}", path.display())]
    ArchiveBlob {
        image: String,
        path: PathBuf,
        #[source]
        source: Box<BundleError>,
    },
    #[error("chart {image}: {reason}")]
    Chart { image: String, reason: String },
    #[error("chart {image}")]
    ChartRepo {
        image: String,
        #[source]
        source: Box<crate::registry::chart_repo::ChartRepoError>,
    },
    #[error("writing bundle {}", path.display())]
    Bundle {
        path: PathBuf,
        #[source]
        source: BundleError,
    },
    #[error(transparent)]
    File(#[from] crate::fsutil::FileError),
    #[error("an internal task failed: {0}")]
    Task(String),
    #[error("no images to pack")]
    Empty,
    #[error(transparent)]
    Manifests(#[from] crate::rewrite::K8sError),
    #[error(transparent)]
    Volume(#[from] crate::bundle::volume::VolumeError),
    #[error("pack stopped before the bundle was complete")]
    Aborted,
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
}

impl PackError {
    /// The image the error is about, when it is about one.
    pub fn image(&self) -> Option<&str> {
        match self {
            PackError::Registry { image, .. }
            | PackError::Manifest { image, .. }
            | PackError::NoPlatform { image, .. }
            | PackError::Invalid { image, .. }
            | PackError::Referrers { image, .. }
            | PackError::Blob { image, .. }
            | PackError::Archive { image, .. }
            | PackError::Chart { image, .. }
            | PackError::ChartRepo { image, .. }
            | PackError::ArchiveBlob { image, .. } => Some(image),
            _ => None,
        }
    }

    /// Advice from the error this wraps, where it passes one through unchanged.
    pub fn hint(&self) -> Option<String> {
        match self {
            PackError::Manifests(e) => e.hint(),
            PackError::Volume(e) => e.hint(),
            PackError::Bundle { source, .. } => source.hint(),
            // The chain walk in `error::hint` sees a `Box<RegistryError>`, not the error.
            PackError::Registry { source, .. } | PackError::Blob { source, .. } => source.hint(),
            PackError::ArchiveBlob { source, .. } => source.hint(),
            PackError::Referrers { source, .. } => source.hint().or_else(|| {
                Some("pack with --no-referrers to leave signatures and other referrers out".into())
            }),
            PackError::Cache(e) => e.hint(),
            _ => None,
        }
    }
}

/// Builds one client per (registry, credentials) pair.
fn clients(
    images: &[ImageRequest],
    opts: &PackOptions,
) -> Result<HashMap<(String, Option<Credentials>), Client>, PackError> {
    let mut out = HashMap::new();
    for img in images
        .iter()
        .filter(|i| i.archive.is_none() && i.chart.is_none())
    {
        let key = (
            img.reference.registry().to_string(),
            img.credentials.clone(),
        );
        if out.contains_key(&key) {
            continue;
        }
        let ep = Endpoint::resolve(img.reference.registry(), &opts.mirrors, false);
        let c = Client::new(ep, img.credentials.clone(), &opts.connect).map_err(|source| {
            PackError::Registry {
                image: img.reference.to_string(),
                source: Box::new(source),
            }
        })?;
        out.insert(key, c);
    }
    Ok(out)
}

/// Where a layer or config can be fetched from.
struct BlobSource {
    record: BlobRecord,
    /// The content, when resolving already fetched it (a config).
    cached: Option<bytes::Bytes>,
    origin: Origin,
    repo: String,
    image: String,
}

pub async fn pack(
    images: Vec<ImageRequest>,
    k8s: Vec<K8sFile>,
    opts: &PackOptions,
    progress: Arc<dyn Progress>,
) -> Result<PackSummary, PackError> {
    if images.is_empty() {
        return Err(PackError::Empty);
    }
    // The same image listed twice is packed once.
    let mut seen = std::collections::HashSet::new();
    let images: Vec<ImageRequest> = images
        .into_iter()
        .filter(|i| seen.insert(i.reference.clone()))
        .collect();
    let clients = clients(&images, opts)?;
    let archives = origin::open_archives(&images).await?;
    let charts = origin::open_charts(&images, &opts.connect).await?;
    let origin_of = |req: &ImageRequest| match (&req.archive, &req.chart) {
        (Some(a), _) => Origin::Archive(archives[a].clone()),
        (None, Some(c)) => Origin::Chart(charts[c].clone()),
        (None, None) => Origin::Registry(
            clients[&(
                req.reference.registry().to_string(),
                req.credentials.clone(),
            )]
                .clone(),
        ),
    };
    progress.stage(&format!("resolving {} image(s)", images.len()));
    // Resolving is round trips for small manifests and configs, not bandwidth: over a WAN
    // link (50 ms) 240 images at 8 at once cost 3 s of waiting; more at once hide it.
    let concurrency = opts.concurrency.max(1) * RESOLVE_PER_DOWNLOAD;
    // Shared by every image: what one tag list per repository and one referrers probe per
    // registry told.
    let discovery = std::sync::Arc::new(referrers::Discovery::new(
        images
            .iter()
            .map(|i| (i.reference.registry(), i.reference.repository())),
    ));
    let resolved: Vec<ResolvedImage> = futures::stream::iter(images.into_iter().map(|req| {
        let client = origin_of(&req);
        let filter = opts.platforms.clone();
        let with_referrers = opts.referrers;
        let discovery = discovery.clone();
        let progress = progress.clone();
        async move {
            let mut r = resolve::resolve(&client, req, &filter).await?;
            // An archive's image has no registry to ask; its referrers are not carried.
            if let (true, Origin::Registry(c)) = (with_referrers, &client) {
                referrers::discover(c, &discovery, &mut r, progress.as_ref()).await?;
            }
            progress.item(&format!(
                "resolved {} -> {}",
                r.request.reference, r.top.digest
            ));
            Ok::<_, PackError>((r, client))
        }
    }))
    .buffered(concurrency)
    .map_ok(|(r, _)| r)
    .try_collect()
    .await?;

    check_manifests(&resolved, &k8s, opts, progress.as_ref())?;
    let plan = plan(&resolved, &origin_of, opts.base.as_ref())?;
    let metadata = metadata(&resolved, &plan, &k8s, opts)?;
    write_bundle(&resolved, plan, metadata, &k8s, opts, progress).await
}

/// A bundle must not ship manifests that would fail in the cluster: every image they use has
/// to be one of the bundle's.
fn check_manifests(
    resolved: &[ResolvedImage],
    k8s: &[K8sFile],
    opts: &PackOptions,
    progress: &dyn Progress,
) -> Result<(), PackError> {
    if k8s.is_empty() {
        return Ok(());
    }
    let map = crate::image_map::ImageMap::new(
        resolved
            .iter()
            .map(|r| crate::image_map::ImageMapEntry {
                source: r.request.reference.clone(),
                target: r.request.reference.clone(),
                digest: r.top.digest.clone(),
                source_digest: r.source_digest.clone(),
                chart: None,
            })
            .collect(),
    );
    let files: Vec<(String, Vec<u8>)> = k8s
        .iter()
        .map(|f| (f.path.clone(), f.content.clone()))
        .collect();
    let missing = crate::rewrite::missing_images(&files, &map, &opts.rules)?;
    if missing.is_empty() {
        return Ok(());
    }
    if opts.allow_missing_images {
        for m in &missing {
            progress.warn(&format!("{m}: image is not in the bundle"));
        }
        return Ok(());
    }
    Err(crate::rewrite::K8sError::Missing { missing }.into())
}

struct Plan {
    /// Index and manifest blobs, held in memory (each at most 4 MiB).
    manifests: Vec<(BlobRecord, bytes::Bytes)>,
    /// Configs then layers, each once.
    blobs: Vec<BlobSource>,
    /// Configs and layers left out because the base bundle carries them (deltas only).
    omitted: Vec<BlobRecord>,
}

fn plan(
    resolved: &[ResolvedImage],
    origin_of: &dyn Fn(&ImageRequest) -> Origin,
    base: Option<&BaseBundle>,
) -> Result<Plan, PackError> {
    // What the base carries, itself or through its own base.
    let in_base: HashMap<&Digest, &BlobRecord> = base
        .map(|b| {
            b.metadata
                .blobs
                .iter()
                .chain(b.metadata.base.iter().flat_map(|bb| bb.blobs.iter()))
                .filter(|r| !r.kind.is_manifest())
                .map(|r| (&r.digest, r))
                .collect()
        })
        .unwrap_or_default();
    let mut omitted: Vec<BlobRecord> = Vec::new();
    let mut manifests: Vec<(BlobRecord, bytes::Bytes)> = Vec::new();
    let mut seen: HashMap<Digest, u64> = HashMap::new();
    let mut blobs: Vec<BlobSource> = Vec::new();
    for img in resolved {
        let image = img.request.reference.to_string();
        for m in std::iter::once(&img.top).chain(img.children.iter()) {
            if seen
                .insert(m.digest.clone(), m.bytes.len() as u64)
                .is_none()
            {
                let kind = if is_index(&m.media_type) {
                    BlobKind::Index
                } else {
                    BlobKind::Manifest
                };
                manifests.push((
                    BlobRecord {
                        digest: m.digest.clone(),
                        size: m.bytes.len() as u64,
                        kind,
                        media_type: m.media_type.clone(),
                    },
                    m.bytes.clone(),
                ));
            }
        }
        let origin = origin_of(&img.request);
        for d in &img.blobs {
            if let Some(&size) = seen.get(&d.digest) {
                if size != d.size {
                    return Err(PackError::Invalid {
                        image,
                        reason: format!(
                            "blob {} is described with size {} here and {size} elsewhere",
                            d.digest, d.size
                        ),
                    });
                }
                continue;
            }
            seen.insert(d.digest.clone(), d.size);
            if let Some(r) = in_base.get(&d.digest) {
                if r.size == d.size {
                    omitted.push((*r).clone());
                    continue;
                }
            }
            let kind = if is_config_type(&d.media_type) {
                BlobKind::Config
            } else {
                BlobKind::Layer
            };
            let cached = img
                .fetched
                .iter()
                .find(|(fd, _)| fd == &d.digest)
                .map(|(_, b)| b.clone());
            blobs.push(BlobSource {
                cached,
                record: BlobRecord {
                    digest: d.digest.clone(),
                    size: d.size,
                    kind,
                    media_type: d.media_type.clone(),
                },
                origin: origin.clone(),
                repo: img.request.reference.repository().to_string(),
                image: image.clone(),
            });
        }
    }
    // Indexes first so a reader meets parents before children; configs before layers; big
    // layers first so the longest downloads start early.
    manifests.sort_by_key(|(r, _)| r.kind);
    blobs.sort_by(|a, b| {
        a.record
            .kind
            .cmp(&b.record.kind)
            .then(b.record.size.cmp(&a.record.size))
    });
    Ok(Plan {
        manifests,
        blobs,
        omitted,
    })
}

/// An artifact's type: `artifactType`, else a config media type that is not an image's.
fn artifact_type(manifest: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    if let Some(t) = v.get("artifactType").and_then(|t| t.as_str()) {
        return Some(t.to_string());
    }
    let cfg = v.get("config")?.get("mediaType")?.as_str()?;
    let image = [
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    ];
    (!image.contains(&cfg)).then(|| cfg.to_string())
}

/// A Helm chart's name and version, from the annotations `helm push` writes.
fn chart_record(manifest: &[u8]) -> Option<crate::bundle::ChartRecord> {
    let v: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    if v.get("config")?.get("mediaType")?.as_str()? != chart::CONFIG_MEDIA_TYPE {
        return None;
    }
    let a = v.get("annotations")?;
    let get = |k: &str| {
        a.get(format!("org.opencontainers.image.{k}"))
            .and_then(|x| x.as_str())
            .map(str::to_string)
    };
    Some(crate::bundle::ChartRecord {
        name: get("title")?,
        version: get("version")?,
    })
}

fn is_config_type(media_type: &str) -> bool {
    media_type.contains("config") || media_type == "application/vnd.oci.empty.v1+json"
}

fn metadata(
    resolved: &[ResolvedImage],
    plan: &Plan,
    k8s: &[K8sFile],
    opts: &PackOptions,
) -> Result<Metadata, PackError> {
    let sizes: HashMap<&Digest, u64> = plan
        .manifests
        .iter()
        .map(|(r, _)| (&r.digest, r.size))
        .chain(plan.blobs.iter().map(|b| (&b.record.digest, b.record.size)))
        .chain(plan.omitted.iter().map(|r| (&r.digest, r.size)))
        .collect();
    let mut images = Vec::new();
    for img in resolved {
        let mut digests: Vec<&Digest> = std::iter::once(&img.top.digest)
            .chain(img.children.iter().map(|c| &c.digest))
            .chain(img.blobs.iter().map(|b| &b.digest))
            .collect();
        digests.sort();
        digests.dedup();
        let total_size = digests
            .iter()
            .map(|d| sizes.get(d).copied().unwrap_or(0))
            .sum();
        let mut platforms = img.platforms.clone();
        platforms.dedup();
        images.push(ImageRecord {
            reference: img.request.reference.clone(),
            source: img.request.source.clone(),
            digest: img.top.digest.clone(),
            source_digest: img.source_digest.clone(),
            media_type: img.top.media_type.clone(),
            size: img.top.bytes.len() as u64,
            platforms,
            total_size,
            referrers: img.referrers.clone(),
            artifact_type: artifact_type(&img.top.bytes),
            chart: chart_record(&img.top.bytes),
        });
    }
    let blobs: Vec<BlobRecord> = plan
        .manifests
        .iter()
        .map(|(r, _)| r.clone())
        .chain(plan.blobs.iter().map(|b| b.record.clone()))
        .collect();
    let total_size = blobs.iter().map(|b| b.size).sum();
    Ok(Metadata {
        format_version: FORMAT_VERSION,
        tool: format!("airgap {}", env!("CARGO_PKG_VERSION")),
        spec: opts.spec_name.clone(),
        platforms: opts.platforms.clone(),
        images,
        blobs,
        manifests: k8s
            .iter()
            .map(|f| FileRecord {
                path: f.path.clone(),
                size: f.content.len() as u64,
                digest: Digest::of(&f.content),
            })
            .collect(),
        total_size,
        image_rules: opts.rules.clone(),
        base: opts.base.as_ref().map(|b| crate::bundle::BaseRef {
            id: b.id.clone(),
            name: b.name.clone(),
            images: b
                .metadata
                .images
                .iter()
                .map(|i| i.reference.clone())
                .collect(),
            blobs: plan.omitted.clone(),
        }),
    })
}

fn index_json(resolved: &[ResolvedImage]) -> Vec<u8> {
    let mut manifests: Vec<serde_json::Value> = resolved
        .iter()
        .map(|img| {
            serde_json::json!({
                "mediaType": img.top.media_type,
                "digest": img.top.digest,
                "size": img.top.bytes.len(),
                "annotations": { REF_NAME_ANNOTATION: img.request.reference.to_string() },
            })
        })
        .collect();
    // Referrers after the images (FORMAT.md): roots of the layout like them, so every reader
    // finds each blob referred to; a cosign attachment named by its tag.
    for img in resolved {
        for r in &img.referrers {
            let mut d = serde_json::json!({
                "mediaType": r.media_type,
                "digest": r.digest,
                "size": r.size,
            });
            if let Some(t) = &r.artifact_type {
                d["artifactType"] = t.clone().into();
            }
            if let Some(tag) = &r.tag {
                let name = img.request.reference.with_digest(None).with_tag(Some(tag));
                d["annotations"] = serde_json::json!({ REF_NAME_ANNOTATION: name.to_string() });
            }
            if !manifests.contains(&d) {
                manifests.push(d);
            }
        }
    }
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    serde_json::to_vec_pretty(&v).expect("index.json serialises")
}

/// Blobs up to this size are downloaded into memory, many at once; bigger ones stream into
/// the bundle as they download.
const IN_MEMORY_BLOB: u64 = 1 << 20;

/// Images resolved at once per blob download allowed by `--concurrency` (8 × 4 = 32).
const RESOLVE_PER_DOWNLOAD: usize = 4;
/// Big blobs downloading at once: the one being written and the next.
const STREAMS_IN_FLIGHT: usize = 2;
/// Pieces a big blob's download may run ahead of the writer, each at most STREAM_PIECE
/// bytes: 16 MiB per stream, so memory stays bounded whatever size chunks the network hands
/// over.
const STREAM_CHUNKS: usize = 64;
const STREAM_PIECE: usize = 256 * 1024;

/// Adds a downloaded blob (already verified as it arrived), at a fast level when the blob is
/// a compressed layer: zstd finds nothing to gain there.
fn add_blob<W: Write>(
    w: &mut BundleWriter<W>,
    record: &BlobRecord,
    content: impl Read,
) -> Result<(), BundleError> {
    let mt = &record.media_type;
    if record.kind == BlobKind::Layer && (mt.contains("gzip") || mt.contains("zstd")) {
        w.add_compressed_blob(&record.digest, record.size, content, false)?;
    } else {
        w.add_blob(&record.digest, record.size, content, false)?;
    }
    Ok(())
}

/// What a failed download hands the writer, so the writer's error is known not to be its own.
#[derive(Debug, thiserror::Error)]
#[error("the download of this blob failed")]
struct DownloadFailed;

fn fed_by_download(e: &PackError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.get_ref().is_some_and(|i| i.is::<DownloadFailed>()) {
                return true;
            }
        }
        cur = c.source();
    }
    false
}

/// Reads a streamed blob's chunks on the writer thread.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    current: bytes::Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

/// What the fetch side hands the bundle writer thread, in stream order.
enum ToWriter {
    /// A big blob arriving in chunks while it downloads; a chunk may be the download's error.
    Stream {
        record: BlobRecord,
        rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    },
    Memory {
        record: BlobRecord,
        bytes: bytes::Bytes,
    },
    /// Every blob was sent: the writer may finish. Without it the writer abandons its output,
    /// so a failed fetch can never publish a short bundle.
    Done,
}

/// Where the compressed stream goes: one file (buffered by `DirectFile` itself), or rotating
/// parts.
enum Sink {
    File(direct::DirectFile),
    Split(BufWriter<Box<crate::bundle::volume::SplitWriter>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File(f) => f.write(buf),
            Sink::Split(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Split(s) => s.flush(),
        }
    }
}

async fn write_bundle(
    resolved: &[ResolvedImage],
    plan: Plan,
    metadata: Metadata,
    k8s: &[K8sFile],
    opts: &PackOptions,
    progress: Arc<dyn Progress>,
) -> Result<PackSummary, PackError> {
    // Written under a temporary name beside the output, renamed only when complete: a failed
    // or interrupted pack never leaves a partial bundle at the output path.
    let tmp = crate::fsutil::AtomicFile::create(&opts.output)?;

    let total = metadata.total_size;
    progress.stage(&format!(
        "packing {} image(s), {} blob(s), {}",
        metadata.images.len(),
        metadata.blobs.len(),
        crate::progress::human_bytes(total)
    ));
    progress.start_bytes("pack", total);

    let (tx, rx) = std::sync::mpsc::sync_channel::<ToWriter>(opts.concurrency.max(1) * 2);
    let sink = match opts.split {
        Some(size) => Sink::Split(BufWriter::with_capacity(
            1 << 20,
            Box::new(crate::bundle::volume::SplitWriter::create(
                &opts.output,
                size,
            )?),
        )),
        None => Sink::File(
            direct::DirectFile::open(tmp.temp_path())
                .map_err(|e| crate::fsutil::FileError::new("writing", &opts.output, e))?,
        ),
    };
    let head_files = head_entries(resolved, &metadata, k8s);
    let id = Digest::of(&head_files[0].1);
    let manifests = plan.manifests;
    let level = opts.level;
    let threads = opts.threads;
    let wprogress = progress.clone();
    let output = opts.output.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<u64, PackError> {
        let bw = |source| PackError::Bundle {
            path: output.clone(),
            source,
        };
        let mut w = BundleWriter::new(sink, level, threads).map_err(bw)?;
        let mut done = false;
        for (name, bytes) in &head_files {
            w.add_file(name, bytes).map_err(bw)?;
        }
        for (rec, bytes) in &manifests {
            w.add_blob(&rec.digest, rec.size, &bytes[..], true)
                .map_err(bw)?;
            wprogress.add_bytes(rec.size);
        }
        for msg in rx {
            match msg {
                ToWriter::Stream { record, rx } => {
                    // Verified as it downloads; the writer counts the bytes.
                    let reader = ChannelReader {
                        rx,
                        current: bytes::Bytes::new(),
                    };
                    add_blob(&mut w, &record, reader).map_err(bw)?;
                }
                ToWriter::Memory { record, bytes } => {
                    add_blob(&mut w, &record, &bytes[..]).map_err(bw)?;
                }
                ToWriter::Done => {
                    done = true;
                    break;
                }
            }
        }
        if !done {
            return Err(PackError::Aborted);
        }
        let out_err = |source| crate::fsutil::FileError::new("writing", &output, source);
        match w.finish().map_err(bw)? {
            Sink::File(f) => Ok(f.finish().map_err(out_err)?),
            Sink::Split(s) => {
                let s = s.into_inner().map_err(|e| out_err(e.into_error()))?;
                Ok(s.finish()?.total_size)
            }
        }
    });

    // Hands a message to the writer thread; false when the writer has stopped (its error is
    // reported below). The channel is bounded, so downloads never outrun the writer by much.
    let send = |s: ToWriter| {
        let tx = tx.clone();
        async move {
            tokio::task::spawn_blocking(move || tx.send(s))
                .await
                .ok()
                .and_then(|r| r.ok())
                .is_some()
        }
    };
    let (small, large): (Vec<BlobSource>, Vec<BlobSource>) = plan
        .blobs
        .into_iter()
        .partition(|b| b.cached.is_some() || b.record.size <= IN_MEMORY_BLOB);
    let mut fetch_result = Ok(());
    let mut writer_gone = false;

    // Small blobs (and configs fetched while resolving): many at once, into memory.
    let cache = opts.cache.as_ref();
    let smalls = futures::stream::iter(small.into_iter().map(|b| {
        let progress = progress.clone();
        async move {
            let bytes = fetch::small(&b, cache, progress.as_ref()).await?;
            Ok::<_, PackError>(ToWriter::Memory {
                record: b.record,
                bytes,
            })
        }
    }))
    // In plan order, not completion order, so the bundle does not depend on the network or
    // on --concurrency: a finished download waits for those before it, in memory (at most
    // `concurrency` blobs of at most IN_MEMORY_BLOB each); the next starts meanwhile.
    .buffered(opts.concurrency.max(1));
    futures::pin_mut!(smalls);
    while let Some(item) = smalls.next().await {
        match item {
            Ok(s) => {
                if !send(s).await {
                    writer_gone = true;
                    break;
                }
            }
            Err(e) => {
                fetch_result = Err(e);
                break;
            }
        }
    }

    // Big blobs stream straight into the writer, in order, never touching the disk; the
    // next one downloads into its bounded channel while the writer compresses the current.
    let mut inflight: std::collections::VecDeque<tokio::task::JoinHandle<Result<(), PackError>>> =
        std::collections::VecDeque::new();
    let join = |r: Result<Result<(), PackError>, tokio::task::JoinError>| match r {
        Ok(r) => r,
        Err(e) => Err(PackError::Task(e.to_string())),
    };
    if fetch_result.is_ok() && !writer_gone {
        for b in large {
            if inflight.len() >= STREAMS_IN_FLIGHT {
                let t = inflight.pop_front().expect("in flight");
                if let Err(e) = join(t.await) {
                    fetch_result = Err(e);
                    break;
                }
            }
            let (ctx, crx) = tokio::sync::mpsc::channel(STREAM_CHUNKS);
            if !send(ToWriter::Stream {
                record: b.record.clone(),
                rx: crx,
            })
            .await
            {
                break;
            }
            let progress = progress.clone();
            let cache = opts.cache.clone();
            inflight.push_back(tokio::spawn(async move {
                let result = fetch::large(&b, cache.as_ref(), progress, &ctx).await;
                if result.is_err() {
                    // Make the writer fail this entry rather than wait for more bytes.
                    let _ = ctx.send(Err(std::io::Error::other(DownloadFailed))).await;
                }
                result
            }));
        }
    }
    while let Some(t) = inflight.pop_front() {
        if fetch_result.is_err() {
            t.abort();
            continue;
        }
        if let Err(e) = join(t.await) {
            fetch_result = Err(e);
        }
    }
    if fetch_result.is_ok() {
        let tx = tx.clone();
        let _ = tokio::task::spawn_blocking(move || tx.send(ToWriter::Done)).await;
    }
    drop(tx);
    let written = writer.await.map_err(|e| PackError::Task(e.to_string()));
    progress.finish_bytes();
    let compressed = match (fetch_result, written?) {
        // The writer's own failure (a full disk, say) is the root cause of the downloads it
        // stopped; `Aborted`, or a failure fed to it by a download, means a download failed.
        (_, Err(e)) if !matches!(e, PackError::Aborted) && !fed_by_download(&e) => return Err(e),
        (Err(e), _) => return Err(e),
        (Ok(()), w) => w?,
    };
    if opts.split.is_none() {
        // A bundle is not secret (credentials never enter it). DirectFile synced it already.
        tmp.commit(0o644, true)?;
    }
    Ok(PackSummary {
        images: metadata.images.len(),
        blobs: metadata.blobs.len(),
        bytes: total,
        compressed,
        id,
        metadata,
    })
}

/// `airgap.json`, `oci-layout`, `index.json` and the Kubernetes files, in stream order.
fn head_entries(
    resolved: &[ResolvedImage],
    metadata: &Metadata,
    k8s: &[K8sFile],
) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        (
            METADATA_NAME.to_string(),
            serde_json::to_vec_pretty(metadata).expect("metadata serialises"),
        ),
        (LAYOUT_NAME.to_string(), OCI_LAYOUT_CONTENT.to_vec()),
        (INDEX_NAME.to_string(), index_json(resolved)),
    ];
    for f in k8s {
        out.push((format!("{MANIFESTS_DIR}{}", f.path), f.content.clone()));
    }
    out
}
