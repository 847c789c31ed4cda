//! Resolving one image: its top manifest, platform filtering, child manifests and the blobs
//! they need. Manifests are kept as served; a filtered index is the only new JSON we write.

use bytes::Bytes;

use super::{ImageRequest, Origin, PackError};
use crate::bundle::ReferrerRecord;
use crate::digest::Digest;
use crate::manifest::{is_index, Descriptor, ManifestView};
use crate::platform::Platform;
use crate::registry::FetchedManifest;

#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub request: ImageRequest,
    /// The top manifest or index as it goes into the bundle.
    pub top: FetchedManifest,
    /// Set when platform filtering replaced the served index.
    pub source_digest: Option<Digest>,
    /// Child manifests (and nested indexes) as served.
    pub children: Vec<FetchedManifest>,
    /// Configs and layers of every manifest, as their descriptors say.
    pub blobs: Vec<Descriptor>,
    pub platforms: Vec<Platform>,
    /// Configs already downloaded (and verified) while resolving, so they are not fetched
    /// twice.
    pub fetched: Vec<(Digest, Bytes)>,
    /// What refers to the image or its children (`referrers::discover`); their manifests
    /// are in `children`, their blobs in `blobs`.
    pub referrers: Vec<ReferrerRecord>,
}

pub async fn resolve(
    client: &Origin,
    request: ImageRequest,
    filter: &[Platform],
) -> Result<ResolvedImage, PackError> {
    let r = &request.reference;
    let image = r.to_string();
    let repo = r.repository();
    let top = client.get_manifest(&image, repo, &r.selector()).await?;
    let (view, media_type) = ManifestView::parse(&top.bytes, &top.media_type, &top.digest)
        .map_err(|source| PackError::Manifest {
            image: image.clone(),
            source,
        })?;
    let top = FetchedManifest { media_type, ..top };
    let mut out = ResolvedImage {
        request: request.clone(),
        top: top.clone(),
        source_digest: None,
        children: Vec::new(),
        blobs: Vec::new(),
        platforms: Vec::new(),
        fetched: Vec::new(),
        referrers: Vec::new(),
    };
    if !is_index(&out.top.media_type) {
        out.blobs.extend(view.blobs().cloned());
        if let Some(cfg) = &view.config {
            if let Some((p, bytes)) = config_platform(client, &image, repo, cfg).await {
                out.platforms.push(p);
                out.fetched.push((cfg.digest.clone(), bytes));
            }
        }
        return Ok(out);
    }
    let all = view.manifests.clone();
    let selected: Vec<&Descriptor> = if filter.is_empty() {
        all.iter().collect()
    } else {
        all.iter()
            .filter(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| filter.iter().any(|f| f.selects(&p.platform())))
            })
            .collect()
    };
    if selected.is_empty() {
        let available: Vec<String> = all
            .iter()
            .filter_map(|d| d.platform.as_ref().map(|p| p.platform().to_string()))
            .collect();
        return Err(PackError::NoPlatform {
            image,
            wanted: filter.iter().map(|p| p.to_string()).collect(),
            available,
        });
    }
    if selected.len() != all.len() {
        let (bytes, digest) = filtered_index(&top.bytes, &selected, &image)?;
        out.source_digest = Some(top.digest.clone());
        out.top = FetchedManifest {
            bytes,
            digest,
            media_type: out.top.media_type.clone(),
        };
    }
    for d in selected {
        if let Some(p) = &d.platform {
            out.platforms.push(p.platform());
        }
        fetch_child(client, &image, repo, d, &mut out, 0).await?;
    }
    Ok(out)
}

/// The platform a single-platform image's config declares (best effort: a config we cannot
/// read here will still be fetched and verified with the other blobs).
async fn config_platform(
    client: &Origin,
    image: &str,
    repo: &str,
    cfg: &Descriptor,
) -> Option<(Platform, Bytes)> {
    #[derive(serde::Deserialize)]
    struct Cfg {
        os: Option<String>,
        architecture: Option<String>,
        variant: Option<String>,
    }
    if cfg.size > 1024 * 1024 {
        return None;
    }
    let mut buf = Vec::new();
    client
        .stream_blob(image, repo, &cfg.digest, cfg.size, |c| {
            buf.extend_from_slice(c);
            Ok(())
        })
        .await
        .ok()?;
    let c: Cfg = serde_json::from_slice(&buf).ok()?;
    let p = Platform {
        os: c.os?,
        architecture: c.architecture?,
        variant: c.variant,
    };
    Some((p, Bytes::from(buf)))
}

/// Fetches a child manifest by digest; nested indexes are walked whole.
pub(super) async fn fetch_child(
    client: &Origin,
    image: &str,
    repo: &str,
    d: &Descriptor,
    out: &mut ResolvedImage,
    depth: usize,
) -> Result<(), PackError> {
    if depth > 4 {
        return Err(PackError::Invalid {
            image: image.to_string(),
            reason: "indexes nested more than 4 deep".into(),
        });
    }
    if out.children.iter().any(|c| c.digest == d.digest) {
        return Ok(());
    }
    let m = client.get_manifest(image, repo, d.digest.as_str()).await?;
    if m.bytes.len() as u64 != d.size {
        return Err(PackError::Invalid {
            image: image.to_string(),
            reason: format!(
                "manifest {} is {} bytes but its index says {}",
                d.digest,
                m.bytes.len(),
                d.size
            ),
        });
    }
    let served = if d.media_type.is_empty() {
        m.media_type.clone()
    } else {
        d.media_type.clone()
    };
    add_fetched(client, image, repo, m, &served, out, depth).await
}

/// Adds a fetched manifest to `out.children` (its blobs to `out.blobs`); an index's children
/// are fetched and walked whole.
pub(super) async fn add_fetched(
    client: &Origin,
    image: &str,
    repo: &str,
    m: FetchedManifest,
    served: &str,
    out: &mut ResolvedImage,
    depth: usize,
) -> Result<(), PackError> {
    if out.children.iter().any(|c| c.digest == m.digest) {
        return Ok(());
    }
    let (view, media_type) =
        ManifestView::parse(&m.bytes, served, &m.digest).map_err(|source| PackError::Manifest {
            image: image.to_string(),
            source,
        })?;
    out.children.push(FetchedManifest {
        media_type: media_type.clone(),
        ..m
    });
    if is_index(&media_type) {
        for c in &view.manifests {
            Box::pin(fetch_child(client, image, repo, c, out, depth + 1)).await?;
        }
    } else {
        out.blobs.extend(view.blobs().cloned());
    }
    Ok(())
}

/// A copy of the served index with only the selected descriptors, each kept exactly as it
/// was (field order and unknown fields included); everything else in the index is kept too.
fn filtered_index(
    served: &[u8],
    selected: &[&Descriptor],
    image: &str,
) -> Result<(Bytes, Digest), PackError> {
    let mut v: serde_json::Value =
        serde_json::from_slice(served).map_err(|e| PackError::Invalid {
            image: image.to_string(),
            reason: format!("index is not valid JSON: {e}"),
        })?;
    let keep: Vec<&str> = selected.iter().map(|d| d.digest.as_str()).collect();
    if let Some(list) = v.get_mut("manifests").and_then(|m| m.as_array_mut()) {
        list.retain(|d| {
            d.get("digest")
                .and_then(|x| x.as_str())
                .is_some_and(|x| keep.contains(&x))
        });
    }
    let bytes = serde_json::to_vec(&v).map_err(|e| PackError::Invalid {
        image: image.to_string(),
        reason: e.to_string(),
    })?;
    let digest = Digest::of(&bytes);
    Ok((Bytes::from(bytes), digest))
}
