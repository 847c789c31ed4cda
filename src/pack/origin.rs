//! Where an image's manifests and blobs come from: a registry, or an OCI layout or archive
//! named by the spec's `archive:` (an image built in CI that was never pushed). Resolving and
//! fetching ask an [`Origin`] and do not care which; both verify every byte by digest.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::chart::{ChartArtifact, OCI_MANIFEST};
use super::{ChartRequest, ImageRequest, PackError};
use crate::archive::{Foreign, Source};
use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::{Client, FetchedManifest};

/// The spec's `archive:` of an image: the layout or archive, and which of its images.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArchiveRequest {
    pub path: PathBuf,
    /// The image's name in the archive or a bare tag; None when it holds one image.
    pub select: Option<String>,
}

/// One image of an archive: the archive (read once however many images come from it) and the
/// manifest the image's name stands for.
#[derive(Debug)]
pub struct ArchiveImage {
    pub foreign: Arc<Foreign>,
    pub top: Digest,
}

#[derive(Clone)]
pub enum Origin {
    Registry(Client),
    Archive(Arc<ArchiveImage>),
    /// A chart package made into the Helm OCI artifact, held in memory (see `chart.rs`).
    Chart(Arc<ChartArtifact>),
}

impl Origin {
    /// A manifest by tag or digest. In an archive any tag means the selected image: its name
    /// in the bundle is the spec's, not the archive's.
    pub async fn get_manifest(
        &self,
        image: &str,
        repo: &str,
        selector: &str,
    ) -> Result<FetchedManifest, PackError> {
        match self {
            Origin::Registry(c) => {
                c.get_manifest(repo, selector)
                    .await
                    .map_err(|source| PackError::Registry {
                        image: image.to_string(),
                        source: Box::new(source),
                    })
            }
            Origin::Chart(c) => match Digest::parse(selector) {
                Ok(d) if d != c.manifest_digest => Err(PackError::Chart {
                    image: image.to_string(),
                    reason: format!("it has no manifest {d}"),
                }),
                _ => Ok(FetchedManifest {
                    bytes: c.manifest.clone(),
                    media_type: OCI_MANIFEST.to_string(),
                    digest: c.manifest_digest.clone(),
                }),
            },
            Origin::Archive(a) => {
                let digest = match Digest::parse(selector) {
                    Ok(d) => d,
                    Err(_) => a.top.clone(),
                };
                let bytes = a
                    .foreign
                    .early_blob(&digest)
                    .ok_or_else(|| PackError::Archive {
                        image: image.to_string(),
                        path: a.foreign.path().to_path_buf(),
                        reason: format!("it holds no manifest {digest}"),
                    })?;
                let media_type = a
                    .foreign
                    .head
                    .metadata
                    .blobs
                    .iter()
                    .find(|r| r.digest == digest)
                    .map(|r| r.media_type.clone())
                    .unwrap_or_default();
                Ok(FetchedManifest {
                    bytes: Bytes::copy_from_slice(bytes),
                    media_type,
                    digest,
                })
            }
        }
    }

    /// Streams a blob to `sink`, verified (see `Client::stream_blob_async`).
    pub async fn stream_blob_async<F, Fut>(
        &self,
        image: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        mut sink: F,
    ) -> Result<(), PackError>
    where
        F: FnMut(Bytes) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<()>>,
    {
        match self {
            Origin::Registry(c) => {
                c.stream_blob_async(repo, digest, size, sink)
                    .await
                    .map_err(|source| PackError::Blob {
                        digest: digest.clone(),
                        image: image.to_string(),
                        source: Box::new(source),
                    })
            }
            Origin::Chart(c) => {
                let blob = c.blob(digest).ok_or_else(|| PackError::Chart {
                    image: image.to_string(),
                    reason: format!("it has no blob {digest}"),
                })?;
                if blob.len() as u64 != size {
                    return Err(PackError::Chart {
                        image: image.to_string(),
                        reason: format!("blob {digest} is {} bytes, not {size}", blob.len()),
                    });
                }
                sink(blob.clone()).await.map_err(|e| PackError::Chart {
                    image: image.to_string(),
                    reason: format!("blob {digest}: {e}"),
                })
            }
            Origin::Archive(a) => {
                // The archive is read on a blocking thread; pieces come over a small bounded
                // channel, so memory stays a few pieces whatever the blob's size.
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
                let foreign = a.foreign.clone();
                let d = digest.clone();
                let reader = tokio::task::spawn_blocking(move || {
                    foreign.read_blob(&d, &mut |piece| {
                        tx.blocking_send(Bytes::copy_from_slice(piece))
                            .map_err(|_| std::io::Error::other("the bundle writer stopped"))
                    })
                });
                let mut sunk = Ok(());
                while let Some(piece) = rx.recv().await {
                    if let Err(e) = sink(piece).await {
                        sunk = Err(e);
                        break;
                    }
                }
                drop(rx);
                let read = reader.await.map_err(|e| PackError::Task(e.to_string()))?;
                let path = a.foreign.path().to_path_buf();
                sunk.map_err(|e| PackError::Archive {
                    image: image.to_string(),
                    path: path.clone(),
                    reason: format!("blob {digest}: {e}"),
                })?;
                read.map_err(|source| PackError::ArchiveBlob {
                    image: image.to_string(),
                    path,
                    source: Box::new(source),
                })
            }
        }
    }

    /// Like `stream_blob_async` with a sink that does not wait.
    pub async fn stream_blob<F>(
        &self,
        image: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        mut sink: F,
    ) -> Result<(), PackError>
    where
        F: FnMut(&[u8]) -> std::io::Result<()>,
    {
        self.stream_blob_async(image, repo, digest, size, |chunk| {
            let r = sink(&chunk);
            async move { r }
        })
        .await
    }
}

/// Reads each archive the requests name (once per path: a tar's first pass) and picks each
/// request's image in it.
pub async fn open_archives(
    images: &[ImageRequest],
) -> Result<HashMap<ArchiveRequest, Arc<ArchiveImage>>, PackError> {
    let mut opened: HashMap<PathBuf, Arc<Foreign>> = HashMap::new();
    let mut out = HashMap::new();
    for img in images {
        let Some(req) = &img.archive else { continue };
        if out.contains_key(req) {
            continue;
        }
        let foreign = match opened.get(&req.path) {
            Some(f) => f.clone(),
            None => {
                let f = open_one(&img.reference, &req.path).await?;
                opened.insert(req.path.clone(), f.clone());
                f
            }
        };
        let top = select(&foreign, &img.reference, req)?;
        out.insert(req.clone(), Arc::new(ArchiveImage { foreign, top }));
    }
    Ok(out)
}

async fn open_one(image: &Reference, path: &std::path::Path) -> Result<Arc<Foreign>, PackError> {
    if !path.exists() {
        return Err(PackError::Archive {
            image: image.to_string(),
            path: path.to_path_buf(),
            reason: "no such file or directory".into(),
        });
    }
    // Bare tags in the archive are named under the image's own repository.
    let repository = image.name();
    let p = path.to_path_buf();
    let source = tokio::task::spawn_blocking(move || crate::archive::open(&p, Some(&repository)))
        .await
        .map_err(|e| PackError::Task(e.to_string()))?
        .map_err(|source| PackError::ArchiveBlob {
            image: image.to_string(),
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
    match source {
        Source::Foreign(f) => Ok(f),
        Source::Bundle(_) => Err(PackError::Archive {
            image: image.to_string(),
            path: path.to_path_buf(),
            reason: "it is an airgap bundle; pack from its images' registries, or use it as \
                     --base"
                .into(),
        }),
    }
}

/// The manifest digest of the image `req` picks in `f`.
fn select(f: &Foreign, image: &Reference, req: &ArchiveRequest) -> Result<Digest, PackError> {
    let images = &f.head.metadata.images;
    let names = || {
        images
            .iter()
            .map(|i| i.reference.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let err = |reason: String| PackError::Archive {
        image: image.to_string(),
        path: f.path().to_path_buf(),
        reason,
    };
    let Some(wanted) = &req.select else {
        return match images.as_slice() {
            [one] => Ok(one.digest.clone()),
            _ => Err(err(format!(
                "it holds {} images ({}); say which with `ref:`",
                images.len(),
                names()
            ))),
        };
    };
    let full = Reference::parse(wanted).ok();
    let hits: Vec<_> = images
        .iter()
        .filter(|i| {
            full.as_ref().is_some_and(|r| r == &i.reference)
                || i.reference.to_string() == *wanted
                || i.reference.tag() == Some(wanted.as_str())
        })
        .collect();
    match hits.as_slice() {
        [one] => Ok(one.digest.clone()),
        [] => Err(err(format!(
            "it holds no image named {wanted:?} (it holds: {})",
            names()
        ))),
        _ => Err(err(format!(
            "{wanted:?} names {} of its images ({}); write the full name",
            hits.len(),
            names()
        ))),
    }
}

/// Reads or downloads each chart package the requests name and makes it into the Helm OCI
/// artifact; its Chart.yaml must agree with the name and version the spec gives it.
pub async fn open_charts(
    images: &[ImageRequest],
    connect: &crate::registry::ConnectOptions,
) -> Result<HashMap<ChartRequest, Arc<ChartArtifact>>, PackError> {
    let mut out = HashMap::new();
    for img in images {
        let Some(req) = &img.chart else { continue };
        if out.contains_key(req) {
            continue;
        }
        let image = img.reference.to_string();
        let err = |reason: String| PackError::Chart {
            image: image.clone(),
            reason,
        };
        let (tgz, prov, created, what, name, version) = match req {
            ChartRequest::Repo { url, name, version } => {
                let got = crate::registry::chart_repo::fetch(
                    url,
                    name,
                    version,
                    connect,
                    super::chart::MAX_CHART,
                )
                .await
                .map_err(|source| PackError::ChartRepo {
                    image: image.clone(),
                    source: Box::new(source),
                })?;
                let created = got
                    .created
                    .as_deref()
                    .map(seconds_only)
                    .unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
                (
                    got.tgz,
                    got.prov,
                    created,
                    got.package_url.to_string(),
                    name,
                    version,
                )
            }
            ChartRequest::Path {
                path,
                name,
                version,
            } => {
                let read = |p: &std::path::Path| {
                    std::fs::read(p).map_err(|e| err(format!("reading {}: {e}", p.display())))
                };
                let meta = std::fs::metadata(path)
                    .map_err(|e| err(format!("reading {}: {e}", path.display())))?;
                if meta.len() > super::chart::MAX_CHART {
                    return Err(err(format!(
                        "{} is bigger than Helm's limit of {} bytes",
                        path.display(),
                        super::chart::MAX_CHART
                    )));
                }
                let tgz = Bytes::from(read(path)?);
                let mut prov_path = path.clone().into_os_string();
                prov_path.push(".prov");
                let prov_path = PathBuf::from(prov_path);
                let prov = if prov_path.exists() {
                    Some(Bytes::from(read(&prov_path)?))
                } else {
                    None
                };
                let created = meta
                    .modified()
                    .ok()
                    .map(rfc3339_utc)
                    .unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
                (
                    tgz,
                    prov,
                    created,
                    path.display().to_string(),
                    name,
                    version,
                )
            }
        };
        let artifact =
            super::chart::build(tgz, prov, &created).map_err(|r| err(format!("{what}: {r}")))?;
        if &artifact.name != name || &artifact.version != version {
            return Err(err(format!(
                "{what} holds chart {} {}, not {name} {version}",
                artifact.name, artifact.version
            )));
        }
        out.insert(req.clone(), Arc::new(artifact));
    }
    Ok(out)
}

/// `2024-01-02T03:04:05.123Z` → `2024-01-02T03:04:05Z`: Helm's annotation has seconds.
fn seconds_only(t: &str) -> String {
    match t.find('.') {
        Some(dot) if dot == 19 => {
            let rest = &t[dot..];
            let zone = rest
                .find(['Z', '+', '-'])
                .map(|i| &rest[i..])
                .unwrap_or("Z");
            format!("{}{zone}", &t[..dot])
        }
        _ => t.to_string(),
    }
}

/// A time as RFC 3339 in UTC, to the second (Go's `time.RFC3339` of a UTC time).
fn rfc3339_utc(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_helms_rfc3339() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_704_164_645);
        assert_eq!(super::rfc3339_utc(t), "2024-01-02T03:04:05Z");
        assert_eq!(
            super::seconds_only("2024-01-02T03:04:05.123456789Z"),
            "2024-01-02T03:04:05Z"
        );
        assert_eq!(
            super::seconds_only("2024-01-02T03:04:05Z"),
            "2024-01-02T03:04:05Z"
        );
    }
}
