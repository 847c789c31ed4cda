//! Where an image's manifests and blobs come from: a registry, or an OCI layout or archive
//! named by the spec's `archive:` (an image built in CI that was never pushed). Resolving and
//! fetching ask an [`Origin`] and do not care which; both verify every byte by digest.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::{ImageRequest, PackError};
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
