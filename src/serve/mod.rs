//! `airgap serve`: the read-only OCI distribution API answered straight from a bundle, under
//! the names `load` would give, so a cluster can pull with no registry installed.
//!
//! Startup reads the head and the manifests (small) through the seek table and builds, per
//! repository, its tags and the digests it may serve; each blob request then decompresses
//! only from the frame holding the blob's first byte. A whole-blob read is hashed as it goes
//! and the connection is cut if the bundle's bytes do not match: a client never gets a
//! complete response with wrong content.

mod cache;
mod http;
pub mod ops;
mod shared;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::bundle::seek::{open_indexed, EntryLoc, ReadAt, SeekIndex};
use crate::bundle::{blob_entry_name, BlobRecord, BundleError, Metadata};
use crate::digest::Digest;
use crate::load::graph::ImageGraph;
use crate::manifest::MAX_MANIFEST_SIZE;
use crate::naming::{Mode, NamingError, Target};
use crate::progress::Progress;

pub use http::{serve, shutdown_signal, Server};
pub use shared::Frames;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("bundle {}", path.display())]
    Bundle { path: PathBuf, source: BundleError },
    #[error("cannot read bundle {}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Naming(#[from] NamingError),
    #[error("invalid --path {path:?}: {reason}")]
    BadPath { path: String, reason: String },
    #[error("bundle {}: manifest {digest}: {reason}", path.display())]
    Manifest {
        path: PathBuf,
        digest: Digest,
        reason: String,
    },
    #[error("TLS: {}: {reason}", path.display())]
    Tls { path: PathBuf, reason: String },
    #[error("--htpasswd")]
    Auth(#[from] ops::AuthFileError),
    #[error("{name} is {first_digest} in {} but {second_digest} in {}: serve one of them, or give them different --path", first.display(), second.display())]
    Conflict {
        name: String,
        first: PathBuf,
        first_digest: Digest,
        second: PathBuf,
        second_digest: Digest,
    },
    #[error("no bundle to serve")]
    NoBundle,
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// One namespace over all of them (a release and its deltas, say).
    pub bundles: Vec<PathBuf>,
    pub listen: SocketAddr,
    pub mode: Mode,
    /// Repository prefix, as the PATH of `load --registry HOST/PATH`.
    pub path: Option<String>,
    /// Log one line per request.
    pub access_log: bool,
    /// Serve HTTPS with this certificate chain and private key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Require these users (bcrypt htpasswd file) for the registry API.
    pub htpasswd: Option<PathBuf>,
    /// Connections beyond this many are answered 503 with `Retry-After`.
    pub max_connections: usize,
    /// On SIGTERM, how long responses in flight may take to finish.
    pub shutdown_timeout: std::time::Duration,
    /// Buffer memory for blob reads, in total: the shared frame cache and the readers
    /// (see [`http::split_memory`]).
    pub memory: u64,
    /// Of `memory`, the bytes for the shared frame cache (`None`: a quarter).
    pub frame_cache: Option<u64>,
    /// Per bundle (in the order of `bundles`; missing: none), the identity (sha256 of
    /// `airgap.json`) whose signature was checked: a bundle with another head is refused at
    /// startup.
    pub expected_ids: Vec<Option<Digest>>,
    /// Names the images of a foreign archive that names them only by a bare tag.
    pub repository: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A blob a bundle holds, and where.
#[derive(Debug, Clone)]
pub struct Blob {
    pub record: BlobRecord,
    pub loc: EntryLoc,
    /// Which of [`Catalog::bundles`] holds it.
    pub bundle: usize,
}

/// One bundle (or foreign archive) served.
pub struct Served {
    pub path: PathBuf,
    pub data: Data,
    pub metadata: Metadata,
}

/// Where a served bundle's blobs are read from.
pub enum Data {
    /// An airgap bundle, through its seek table.
    Bundle {
        src: Arc<dyn ReadAt>,
        index: SeekIndex,
    },
    /// An OCI layout from another tool (a directory or tar: `crate::archive`).
    Foreign(Arc<crate::archive::Foreign>),
}

#[derive(Debug, Default, Clone)]
pub struct Repo {
    pub tags: BTreeMap<String, Digest>,
    /// Manifests (by digest) and blobs this repository may serve.
    pub manifests: HashSet<Digest>,
    pub blobs: HashSet<Digest>,
    /// Subject → the manifests naming it as their `subject` (the referrers API's answer).
    pub referrers: BTreeMap<Digest, BTreeSet<Digest>>,
}

/// Everything `serve` answers from, built once at startup.
pub struct Catalog {
    /// The bundles, in the order given.
    pub bundles: Vec<Served>,
    pub blobs: HashMap<Digest, Blob>,
    /// Manifest bytes, held in memory (each at most 4 MiB; they are few and small).
    pub manifests: HashMap<Digest, (String, Bytes)>,
    pub repos: BTreeMap<String, Repo>,
    /// `repo:tag` or `repo@digest` of every image, for the startup listing.
    pub names: Vec<String>,
}

impl Catalog {
    /// Opens every bundle (a release and its deltas, or unrelated ones) into one namespace.
    /// A name two bundles serve with different digests is an error naming both.
    pub fn open_all(
        bundles: &[PathBuf],
        expected_ids: &[Option<Digest>],
        path: Option<&str>,
        mode: Mode,
        repository: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Catalog, ServeError> {
        let mut all: Option<Catalog> = None;
        for (i, b) in bundles.iter().enumerate() {
            let expected = expected_ids.get(i).and_then(|d| d.as_ref());
            let next = Catalog::open(b, path, mode, expected, repository, progress)?;
            all = Some(match all {
                None => next,
                Some(mut cat) => {
                    cat.merge(next)?;
                    cat
                }
            });
        }
        all.ok_or(ServeError::NoBundle)
    }

    /// Adds `other`'s bundle, repositories and blobs to this catalog.
    fn merge(&mut self, other: Catalog) -> Result<(), ServeError> {
        let shift = self.bundles.len();
        for (name, repo) in other.repos {
            let mine = self.repos.entry(name.clone()).or_default();
            for (tag, digest) in repo.tags {
                if let Some(d) = mine.tags.get(&tag) {
                    if *d != digest {
                        let first = self
                            .bundles
                            .iter()
                            .find(|b| b.metadata.blobs.iter().any(|r| r.digest == *d))
                            .map(|b| b.path.clone())
                            .unwrap_or_default();
                        return Err(ServeError::Conflict {
                            name: format!("{name}:{tag}"),
                            first,
                            first_digest: d.clone(),
                            second: other.bundles[0].path.clone(),
                            second_digest: digest,
                        });
                    }
                }
                mine.tags.insert(tag, digest);
            }
            mine.manifests.extend(repo.manifests);
            mine.blobs.extend(repo.blobs);
            for (subject, list) in repo.referrers {
                mine.referrers.entry(subject).or_default().extend(list);
            }
        }
        for (digest, mut blob) in other.blobs {
            blob.bundle += shift;
            self.blobs.entry(digest).or_insert(blob);
        }
        for (digest, m) in other.manifests {
            self.manifests.entry(digest).or_insert(m);
        }
        for n in other.names {
            if !self.names.contains(&n) {
                self.names.push(n);
            }
        }
        self.bundles.extend(other.bundles);
        Ok(())
    }

    /// The images of every bundle.
    pub fn image_count(&self) -> usize {
        self.bundles.iter().map(|b| b.metadata.images.len()).sum()
    }

    /// Opens `bundle` and names its images as `load --registry HOST[/path] --mode mode` would
    /// (the host is dropped: a client names it).
    pub fn open(
        bundle: &Path,
        path: Option<&str>,
        mode: Mode,
        expected_id: Option<&Digest>,
        repository: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Catalog, ServeError> {
        let bundle_err = bundle_error(bundle);
        let target = Target::parse(&match path {
            Some(p) => format!("serve.invalid/{}", p.trim_matches('/')),
            None => "serve.invalid".to_string(),
        })
        .map_err(|e| match e {
            NamingError::BadTarget { reason, .. } => ServeError::BadPath {
                path: path.unwrap_or_default().to_string(),
                reason,
            },
            other => other.into(),
        })?;
        let source = crate::archive::open(bundle, repository).map_err(bundle_err)?;
        let (metadata, data, blobs) = match source {
            crate::archive::Source::Bundle(_) => open_bundle(bundle, expected_id, progress)?,
            crate::archive::Source::Foreign(f) => open_foreign(bundle, f, expected_id, progress)?,
        };
        let mut graph = ImageGraph::default();
        let mut manifests = HashMap::new();
        for b in blobs.values().filter(|b| b.record.kind.is_manifest()) {
            let bytes = read_manifest(&data, b).map_err(|reason| ServeError::Manifest {
                path: bundle.to_path_buf(),
                digest: b.record.digest.clone(),
                reason,
            })?;
            graph
                .add(b.record.digest.clone(), &b.record.media_type, bytes.clone())
                .map_err(|e| ServeError::Manifest {
                    path: bundle.to_path_buf(),
                    digest: b.record.digest.clone(),
                    reason: e.to_string(),
                })?;
            let media_type = graph
                .get(&b.record.digest)
                .map(|m| m.media_type.clone())
                .unwrap_or_else(|| b.record.media_type.clone());
            manifests.insert(b.record.digest.clone(), (media_type, bytes));
        }
        let placements = crate::load::placements(&metadata, &target, mode)?;
        let mut repos: BTreeMap<String, Repo> = BTreeMap::new();
        let mut names = Vec::new();
        for p in &placements {
            let walk = graph.walk(&p.digest).map_err(|d| ServeError::Manifest {
                path: bundle.to_path_buf(),
                digest: d,
                reason: format!("needed by {} but not in the bundle", p.source),
            })?;
            let repo = repos.entry(p.repo().to_string()).or_default();
            repo.manifests.extend(walk.manifests);
            repo.blobs.extend(walk.blobs);
            match p.target.tag() {
                Some(tag) => {
                    repo.tags.insert(tag.to_string(), p.digest.clone());
                    names.push(format!("{}:{tag}", p.repo()));
                }
                None => names.push(format!("{}@{}", p.repo(), p.digest)),
            }
        }
        for (rec, p) in metadata.images.iter().zip(&placements) {
            let repo = repos.entry(p.repo().to_string()).or_default();
            for r in &rec.referrers {
                let walk = graph.walk(&r.digest).map_err(|d| ServeError::Manifest {
                    path: bundle.to_path_buf(),
                    digest: d,
                    reason: format!("needed by a referrer of {} but not in the bundle", p.source),
                })?;
                repo.manifests.extend(walk.manifests);
                repo.blobs.extend(walk.blobs);
                if let Some(tag) = &r.tag {
                    repo.tags.insert(tag.clone(), r.digest.clone());
                }
                let names_subject = graph.get(&r.digest).is_some_and(|m| {
                    crate::referrers::facts(&m.bytes).subject.as_ref() == Some(&r.subject)
                });
                if names_subject {
                    repo.referrers
                        .entry(r.subject.clone())
                        .or_default()
                        .insert(r.digest.clone());
                }
            }
        }
        if let Some(base) = &metadata.base {
            progress.warn(&format!(
                "this is a delta bundle: {} blob(s) are only in its base ({}) and will be \
                 answered 404",
                base.blobs.len(),
                base.name.as_deref().unwrap_or("an earlier bundle")
            ));
        }
        Ok(Catalog {
            bundles: vec![Served {
                path: bundle.to_path_buf(),
                data,
                metadata,
            }],
            blobs,
            manifests,
            repos,
            names,
        })
    }

    /// Resolves a manifest reference (tag or digest) in `repo`.
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<(&Digest, &str, &Bytes)> {
        let r = self.repos.get(repo)?;
        let digest = match Digest::parse(reference) {
            Ok(d) => r.manifests.get(&d)?,
            Err(_) => r.tags.get(reference)?,
        };
        let (mt, bytes) = self.manifests.get(digest)?;
        Some((digest, mt.as_str(), bytes))
    }

    /// The referrers index of `subject` in `repo` (OCI 1.1), only those of `artifact_type`
    /// when given; `None` when the repository is unknown.
    pub fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Option<Vec<u8>> {
        let r = self.repos.get(repo)?;
        let list = r
            .referrers
            .get(subject)
            .into_iter()
            .flatten()
            .filter_map(|d| {
                let (mt, bytes) = self.manifests.get(d)?;
                Some(crate::referrers::descriptor(mt, d, bytes))
            })
            .filter(|d| {
                artifact_type
                    .is_none_or(|t| d.get("artifactType").and_then(|a| a.as_str()) == Some(t))
            })
            .collect();
        Some(crate::referrers::index(list))
    }

    /// A blob `repo` may serve: `Ok(None)` when it belongs to the repository but only the
    /// base of this delta bundle holds it.
    pub fn blob(&self, repo: &str, digest: &Digest) -> Option<Option<&Blob>> {
        let r = self.repos.get(repo)?;
        if !r.blobs.contains(digest) && !r.manifests.contains(digest) {
            return None;
        }
        Some(self.blobs.get(digest))
    }
}

type Opened = (Metadata, Data, HashMap<Digest, Blob>);

fn bundle_error(bundle: &Path) -> impl Fn(BundleError) -> ServeError + '_ {
    move |source| match source {
        // It names the file already.
        BundleError::Io { path, source } => ServeError::Open { path, source },
        source => ServeError::Bundle {
            path: bundle.to_path_buf(),
            source,
        },
    }
}

/// An airgap bundle: its head, then every blob's place through the seek table.
fn open_bundle(
    bundle: &Path,
    expected_id: Option<&Digest>,
    progress: &dyn Progress,
) -> Result<Opened, ServeError> {
    let bundle_err = bundle_error(bundle);
    // The head first: a file that is no bundle at all is told so before any indexing.
    let head = crate::bundle::inspect(crate::bundle::open_input(bundle).map_err(&bundle_err)?)
        .map_err(&bundle_err)?;
    if let Some(want) = expected_id.filter(|w| **w != head.id) {
        return Err(bundle_err(BundleError::Invalid {
            entry: crate::bundle::METADATA_NAME.into(),
            reason: format!(
                "it is {}, not the {want} whose signature was checked",
                head.id
            ),
        }));
    }
    let (src, index) = open_indexed(bundle).map_err(&bundle_err)?;
    if !index.seekable {
        progress.warn(&format!(
            "{} has no seek table (packed by an older airgap, or recompressed): every read \
             decompresses from the start. Re-pack it with this airgap to serve it fast.",
            bundle.display()
        ));
    }
    let metadata = head.metadata;
    let mut blobs = HashMap::new();
    for record in &metadata.blobs {
        let name = blob_entry_name(&record.digest);
        let loc = index.entry(&name).cloned().ok_or_else(|| {
            bundle_err(BundleError::MissingBlob {
                digest: record.digest.clone(),
            })
        })?;
        if loc.size != record.size {
            return Err(bundle_err(BundleError::SizeMismatch {
                digest: record.digest.clone(),
                expected: record.size,
                actual: loc.size,
            }));
        }
        blobs.insert(
            record.digest.clone(),
            Blob {
                record: record.clone(),
                loc,
                bundle: 0,
            },
        );
    }
    Ok((metadata, Data::Bundle { src, index }, blobs))
}

/// An OCI layout from another tool, after its first pass (which checked every blob is there
/// with its size). It carries no signature, so `--key` refuses it.
fn open_foreign(
    bundle: &Path,
    f: Arc<crate::archive::Foreign>,
    expected_id: Option<&Digest>,
    progress: &dyn Progress,
) -> Result<Opened, ServeError> {
    if expected_id.is_some() {
        return Err(bundle_error(bundle)(BundleError::Invalid {
            entry: "index.json".into(),
            reason: format!(
                "it is a {}, which carries no airgap signature; --key serves signed bundles only",
                f.describe()
            ),
        }));
    }
    if !f.random_access() {
        progress.warn(&format!(
            "{} is a compressed {}: every blob read decompresses the archive up to the blob. \
             Decompress it (zstd -d, gunzip) to serve it fast.",
            bundle.display(),
            f.describe()
        ));
    }
    let metadata = f.head.metadata.clone();
    let blobs = metadata
        .blobs
        .iter()
        .map(|r| {
            let blob = Blob {
                record: r.clone(),
                loc: EntryLoc {
                    name: blob_entry_name(&r.digest),
                    offset: 0,
                    size: r.size,
                },
                bundle: 0,
            };
            (r.digest.clone(), blob)
        })
        .collect();
    Ok((metadata, Data::Foreign(f), blobs))
}

/// Reads `len` bytes of `blob` from `start` in chunks, as `send_chunks` does for a bundle
/// (verified when whole, the last chunk held back until it is). With `frames`, a seekable
/// bundle's frames are decoded once for every reader of them (`shared`).
#[allow(clippy::too_many_arguments)]
pub fn send_blob(
    data: &Data,
    blob: &Blob,
    start: u64,
    len: u64,
    verify: bool,
    chunk: usize,
    frames: Option<&Frames>,
    mut send: impl FnMut(Bytes) -> bool,
) -> Result<(), BundleError> {
    let digest = &blob.record.digest;
    match data {
        Data::Bundle { src, index }
            if frames.is_some_and(|f| f.serves(index, blob.loc.offset + start, len)) =>
        {
            frames.expect("checked").send(
                blob.bundle,
                src.as_ref(),
                index,
                blob.loc.offset,
                start,
                len,
                digest,
                verify,
                chunk,
                send,
            )
        }
        Data::Bundle { src, index } => crate::bundle::seek::send_chunks(
            src.clone(),
            index,
            blob.loc.offset + start,
            len,
            digest,
            verify,
            chunk,
            send,
        ),
        Data::Foreign(f) => f.with_range(digest, start, &mut |r| {
            crate::bundle::seek::send_from(r, len, digest, verify, chunk, &mut send)
        }),
    }
}

fn read_manifest(data: &Data, b: &Blob) -> Result<Bytes, String> {
    if b.loc.size > MAX_MANIFEST_SIZE {
        return Err(format!("larger than {MAX_MANIFEST_SIZE} bytes"));
    }
    let mut bytes = Vec::with_capacity(b.loc.size as usize);
    send_blob(data, b, 0, b.loc.size, false, 1 << 20, None, |c| {
        bytes.extend_from_slice(&c);
        true
    })
    .map_err(|e| e.to_string())?;
    let actual = Digest::of(&bytes);
    if actual != b.record.digest || bytes.len() as u64 != b.loc.size {
        return Err(format!("the bundle's bytes hash to {actual}"));
    }
    Ok(Bytes::from(bytes))
}
