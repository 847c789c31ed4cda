//! `load`: stream a bundle once into a registry. Blobs are verified as they pass and
//! uploaded (or mounted, or skipped when present); manifests are pushed by digest only after
//! every blob landed, and tags last, so an image whose content failed is never tagged.

pub(crate) mod graph;
mod manifests;
mod plan;
mod referrers;
mod reread;
mod visitor;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bundle::seek::{ReadAt, SeekIndex};
use crate::bundle::{read_bundle, read_bundle_indexed, BundleError};
use crate::digest::Digest;
use crate::naming::{Mode, NamingError, Target};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::credentials::Credentials;
use crate::registry::{Client, ConnectOptions, Endpoint, RegistryError};

pub use graph::ImageGraph;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub bundle: PathBuf,
    pub target: Target,
    pub mode: Mode,
    pub plain_http: bool,
    pub connect: ConnectOptions,
    pub credentials: Option<Credentials>,
    pub concurrency: usize,
    /// Chunked uploads from the start, in PATCHes of at most this many bytes (a proxy's body
    /// cap); `None`: monolithic, falling back to chunks for a registry that refuses it.
    pub chunk_size: Option<u64>,
    /// Where unfinished chunked uploads are remembered, so a re-run continues them
    /// (`--state-dir`); `None`: not remembered.
    pub state_dir: Option<PathBuf>,
    /// The identity (sha256 of `airgap.json`) whose signature was checked: a stream with
    /// another head is refused before anything is pushed.
    pub expected_id: Option<Digest>,
    /// For a foreign archive (`crate::archive`): the repository its bare tags belong to.
    pub repository: Option<String>,
    /// `bundle` already opened (so a foreign archive's first pass is not made twice).
    pub source: Option<crate::archive::Source>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("bundle {}", path.display())]
    Bundle {
        path: PathBuf,
        #[source]
        source: BundleError,
    },
    #[error(transparent)]
    Naming(#[from] NamingError),
    #[error("pushing {image}")]
    Push {
        image: String,
        #[source]
        source: Box<RegistryError>,
    },
    /// A manifest PUT the registry kept refusing for blobs it said it lacked.
    #[error("pushing {image} ({reason})")]
    Refused {
        image: String,
        reason: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("pushing {image}: checking blob {digest} in {repository}, which the registry said it lacked")]
    Restore {
        image: String,
        digest: Digest,
        repository: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("pushing blob {digest} to {repository}")]
    Blob {
        digest: Digest,
        repository: String,
        #[source]
        source: Box<RegistryError>,
    },
    // The registry error names the registry.
    #[error(transparent)]
    Registry(Box<RegistryError>),
    #[error("bundle {}: {reason}", path.display())]
    Inconsistent { path: PathBuf, reason: String },
    #[error("{} is a delta of {base}: blobs it leaves out are not in registry {registry}, so nothing was pushed. Missing: {}", path.display(), missing.join(", "))]
    BaseMissing {
        path: PathBuf,
        base: String,
        registry: String,
        missing: Vec<String>,
    },
}

impl LoadError {
    pub fn hint(&self) -> Option<String> {
        match self {
            LoadError::BaseMissing { base, registry, .. } => {
                Some(format!("load {base} into {registry} first"))
            }
            LoadError::Registry(e) => e.hint(),
            // The boxed cause is not found by a walk of the chain (a `Box` downcasts as
            // itself), so its hint is asked here.
            LoadError::Blob { source, .. }
            | LoadError::Push { source, .. }
            | LoadError::Refused { source, .. }
            | LoadError::Restore { source, .. } => source.hint(),
            LoadError::Naming(e) => e.hint(),
            _ => None,
        }
    }
}

/// What one load did.
#[derive(Debug, Clone, Default)]
pub struct LoadSummary {
    pub images: usize,
    pub images_unchanged: usize,
    pub blobs_uploaded: u64,
    pub blobs_mounted: u64,
    pub blobs_skipped: u64,
    pub bytes_uploaded: u64,
    pub manifests_pushed: u64,
    pub elapsed: Duration,
    /// Where every image went: what the outputs (image map, manifests, …) are made from.
    pub placements: Vec<Placement>,
    /// Per placement (same order): whether the target already had it, manifest and tag, so
    /// nothing was pushed for it.
    pub unchanged: Vec<bool>,
}

/// Counters shared by the upload tasks.
#[derive(Default)]
pub(crate) struct Counters {
    pub uploaded: AtomicU64,
    pub mounted: AtomicU64,
    pub skipped: AtomicU64,
    pub bytes: AtomicU64,
    pub manifests: AtomicU64,
}

/// One image of the bundle and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub source: Reference,
    pub target: Reference,
    pub digest: Digest,
    pub source_digest: Option<Digest>,
    pub media_type: String,
    /// For a Helm chart: its name and version (listed in the image map).
    pub chart: Option<crate::bundle::ChartRecord>,
}

impl Placement {
    pub fn repo(&self) -> &str {
        self.target.repository()
    }
}

pub async fn load(
    opts: &LoadOptions,
    progress: Arc<dyn Progress>,
) -> Result<LoadSummary, LoadError> {
    let started = Instant::now();
    let endpoint = Endpoint::resolve(&opts.target.host, &BTreeMap::new(), opts.plain_http);
    let client = Client::new(endpoint, opts.credentials.clone(), &opts.connect)
        .map_err(|source| LoadError::Registry(Box::new(source)))?;
    client.set_chunk_size(opts.chunk_size);
    if let Some(dir) = &opts.state_dir {
        client.remember_uploads(dir.clone());
    }
    // Fail fast on an unreachable registry or bad credentials, before reading the bundle.
    client
        .ping()
        .await
        .map_err(|source| LoadError::Registry(Box::new(source)))?;
    let counters = Arc::new(Counters::default());
    let handle = tokio::runtime::Handle::current();
    let mut state = visitor::LoadVisitor::new(
        opts.clone(),
        client.clone(),
        handle,
        progress.clone(),
        counters.clone(),
    );
    let source =
        match &opts.source {
            Some(s) => s.clone(),
            None => crate::archive::open(&opts.bundle, opts.repository.as_deref()).map_err(
                |source| LoadError::Bundle {
                    path: opts.bundle.clone(),
                    source,
                },
            )?,
        };
    state.foreign = source.foreign_arc();
    // A seekable bundle lets big blobs be read several at once (older bundles stream).
    if let (None, Ok(src)) = (
        &state.foreign,
        crate::bundle::seek::open_read_at(&opts.bundle),
    ) {
        if let Ok(Some(index)) = crate::bundle::seek::read_trailer(src.as_ref()) {
            state.set_random_access(src, index);
        }
    }
    // Pass 1 streams the bundle; later passes re-read it only for big blobs a registry
    // refused to mount (a stream cannot be replayed, and buffering a layer is not an option).
    // Each such pass uploads every pending blob to one more repository, so there are at most
    // as many as the repositories a blob goes to.
    let mut pass = 1;
    loop {
        state = read_pass(opts, state, pass).await?;
        state.finish_plan_if_needed().await?;
        if !state.needs_another_pass() {
            break;
        }
        pass += 1;
        if pass as usize > state.placements().len() + 1 {
            return Err(LoadError::Inconsistent {
                path: opts.bundle.clone(),
                reason: format!(
                    "blobs still not in every repository after {} passes over the bundle",
                    pass - 1
                ),
            });
        }
    }
    progress.finish_bytes();
    if !state.push_manifests(true).await? {
        // The registry lost blobs after they were pushed: read the bundle once more for them.
        state = read_pass(opts, state, pass + 1).await?;
        progress.finish_bytes();
        state.push_manifests(false).await?;
    }
    state.write_referrer_indexes().await?;
    let placements = state.placements().to_vec();
    let unchanged = state.unchanged_images();
    let per_image = (0..placements.len())
        .map(|i| state.complete.get(i).copied().unwrap_or(false))
        .collect();
    Ok(LoadSummary {
        images: placements.len(),
        images_unchanged: unchanged,
        unchanged: per_image,
        blobs_uploaded: counters.uploaded.load(Ordering::Relaxed),
        blobs_mounted: counters.mounted.load(Ordering::Relaxed),
        blobs_skipped: counters.skipped.load(Ordering::Relaxed),
        bytes_uploaded: counters.bytes.load(Ordering::Relaxed),
        manifests_pushed: counters.manifests.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        placements,
    })
}

enum Input<F> {
    Stream(F),
    Indexed(Arc<dyn ReadAt>, Arc<SeekIndex>),
    Foreign(Arc<crate::archive::Foreign>),
}

/// Streams the bundle once through the visitor and waits for the uploads it started.
async fn read_pass(
    opts: &LoadOptions,
    mut state: visitor::LoadVisitor,
    pass: u32,
) -> Result<visitor::LoadVisitor, LoadError> {
    let bundle_err = |source| LoadError::Bundle {
        path: opts.bundle.clone(),
        source,
    };
    // With a seek table, what the visitor skips (big blobs it reads through the table, blobs
    // the target has) is jumped over instead of decompressed.
    let input = match (state.random.clone(), state.foreign.clone()) {
        (_, Some(f)) => Input::Foreign(f),
        (Some((src, index)), None) => Input::Indexed(src, index),
        (None, None) => Input::Stream(crate::bundle::open_input(&opts.bundle).map_err(bundle_err)?),
    };
    state.begin_pass(pass);
    let (mut state, read_result) = tokio::task::spawn_blocking(move || {
        let r = match input {
            Input::Stream(file) => read_bundle(file, &mut state),
            Input::Indexed(src, index) => read_bundle_indexed(src, index, &mut state),
            Input::Foreign(f) => f.read(&mut state),
        };
        (state, r)
    })
    .await
    .map_err(|e| LoadError::Inconsistent {
        path: opts.bundle.clone(),
        reason: format!("reader thread failed: {e}"),
    })?;
    // Upload errors are more precise than the reader's "stopped" error they cause.
    let uploads = state.join_uploads().await;
    if let Err(e) = read_result {
        // Damage in the bundle is the root cause of any upload it broke.
        if !matches!(e, BundleError::Visitor(_)) {
            return Err(bundle_err(e));
        }
        uploads?;
        return Err(match state.take_failure() {
            Some(f) => f,
            None => bundle_err(e),
        });
    }
    uploads?;
    Ok(state)
}

/// Target names for every image of a bundle without pushing anything (for `rewrite --bundle`).
pub fn placements(
    metadata: &crate::bundle::Metadata,
    target: &Target,
    mode: Mode,
) -> Result<Vec<Placement>, NamingError> {
    let pairs: Vec<(Reference, Digest)> = metadata
        .images
        .iter()
        .map(|i| (i.reference.clone(), i.digest.clone()))
        .collect();
    let names = crate::naming::plan(target, mode, &pairs)?;
    Ok(metadata
        .images
        .iter()
        .zip(names)
        .map(|(i, t)| Placement {
            source: i.reference.clone(),
            target: t,
            digest: i.digest.clone(),
            source_digest: i.source_digest.clone(),
            media_type: i.media_type.clone(),
            chart: i.chart.clone(),
        })
        .collect())
}

pub(crate) type RepoSet = HashMap<Digest, Vec<String>>;
