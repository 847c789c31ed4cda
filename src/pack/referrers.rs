//! Finding what refers to a resolved image and its child manifests (signatures, attestations,
//! SBOMs): cosign's tags `sha256-<hex>.sig`/`.att`/`.sbom`, and OCI 1.1 referrers from the
//! referrers API or, where the registry has none, the referrers tag schema (`sha256-<hex>`).
//! Their manifests and blobs join the image's, so they are stored (and deduplicated,
//! omitted by a delta's base) like any other.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use tokio::sync::OnceCell;

use super::resolve::{add_fetched, ResolvedImage};
use super::PackError;
use crate::bundle::ReferrerRecord;
use crate::digest::Digest;
use crate::manifest::{is_index, Descriptor};
use crate::progress::Progress;
use crate::referrers::{cosign_tag, facts, schema_tag, COSIGN_SUFFIXES};
use crate::registry::{Client, FetchedManifest, RegistryError};

/// Subjects asked about at once per image (each costs up to four requests, sent together).
const SUBJECTS_AT_ONCE: usize = 4;

/// One thing found referring to a subject.
struct Found {
    subject: Digest,
    tag: Option<String>,
    /// From a tag's HEAD or a referrers index; fetched by digest and checked against it.
    manifest: Descriptor,
}

/// Adds everything that refers to `img`'s manifests to it. A platform-filtered index is new,
/// so nothing refers to it: what referred to the served index is left out, with a warning.
pub async fn discover(
    client: &Client,
    discovery: &Discovery,
    img: &mut ResolvedImage,
    progress: &dyn Progress,
) -> Result<(), PackError> {
    let image = img.request.reference.to_string();
    let repo = img.request.reference.repository().to_string();
    let mut subjects: Vec<Digest> = Vec::new();
    if img.source_digest.is_none() {
        subjects.push(img.top.digest.clone());
    }
    subjects.extend(img.children.iter().map(|c| c.digest.clone()));
    let found: Vec<Vec<Found>> = futures::stream::iter(
        subjects
            .iter()
            .map(|s| find(client, discovery, &repo, s.clone(), &image)),
    )
    .buffered(SUBJECTS_AT_ONCE)
    .try_collect()
    .await?;
    if let Some(served) = &img.source_digest {
        let lost = find(client, discovery, &repo, served.clone(), &image).await?;
        if !lost.is_empty() {
            progress.warn(&format!(
                "{image}: --platform made a new index ({}); the {} signature(s)/referrer(s) of the \
                 served index {served} are left out, as they cannot match it; the kept \
                 platforms' manifests keep theirs",
                img.top.digest.short(),
                lost.len()
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    let found: Vec<Found> = found
        .into_iter()
        .flatten()
        .filter(|f| seen.insert((f.subject.clone(), f.manifest.digest.clone(), f.tag.clone())))
        .collect();
    // Every referrer manifest at once (an index's platforms may each have several).
    let fetched: Vec<FetchedManifest> = futures::stream::iter(found.iter().map(|f| async {
        client
            .get_manifest(&repo, f.manifest.digest.as_str())
            .await
            .map_err(|source| PackError::Referrers {
                image: image.clone(),
                source: Box::new(source),
            })
    }))
    .buffered(SUBJECTS_AT_ONCE * 4)
    .try_collect()
    .await?;
    for (f, m) in found.into_iter().zip(fetched) {
        let d = f.manifest;
        if m.bytes.len() as u64 != d.size {
            return Err(PackError::Invalid {
                image: image.clone(),
                reason: format!(
                    "referrer {} of {} is {} bytes but was described with {}",
                    d.digest,
                    f.subject,
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
        add_fetched(
            &super::Origin::Registry(client.clone()),
            &image,
            &repo,
            m,
            &served,
            img,
            0,
        )
        .await?;
        let (digest, size) = (d.digest, d.size);
        let stored = img
            .children
            .iter()
            .find(|c| c.digest == digest)
            .expect("the referrer was just added");
        // As stored in the bundle (and recorded in its blob list).
        let media_type = stored.media_type.clone();
        let artifact_type = facts(&stored.bytes).artifact_type;
        progress.item(&format!(
            "{image}: carrying {} {} of {}",
            f.tag.as_deref().unwrap_or("referrer"),
            digest.short(),
            f.subject.short()
        ));
        img.referrers.push(ReferrerRecord {
            subject: f.subject,
            digest,
            media_type,
            size,
            artifact_type,
            tag: f.tag,
        });
    }
    Ok(())
}

/// The referrers tag schema's index of `subject`: a HEAD (most subjects have none), then the
/// index by digest. Anything but an index under that tag lists nothing.
async fn schema_index(
    client: &Client,
    repo: &str,
    subject: &Digest,
) -> Result<Vec<serde_json::Value>, RegistryError> {
    let Some(h) = client.head_manifest(repo, &schema_tag(subject)).await? else {
        return Ok(Vec::new());
    };
    if !h.media_type.is_empty() && !is_index(&h.media_type) {
        return Ok(Vec::new());
    }
    match client.get_manifest(repo, h.digest.as_str()).await {
        Ok(m) if is_index(&m.media_type) => Ok(crate::referrers::index_descriptors(&m.bytes)),
        Ok(_) | Err(RegistryError::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Pages of one repository's tag list read at most: the per-subject requests it replaces
/// (four per image at least) bound it, so it never costs more than it saves.
const MAX_TAG_PAGES: usize = 16;

type Tags = Option<Arc<HashSet<String>>>;
/// (registry, repository) -> its tags, read by the first image that asks.
type TagLists = HashMap<(String, String), Arc<OnceCell<Tags>>>;

/// What discovery learns once and every image of the pack shares: per registry, whether it
/// has the referrers API (asked with the first subject's own request; the others wait for
/// that answer instead of each probing); per repository, its tags, from one tag list
/// (`tags/list`), so cosign tags and tag-schema indexes are asked about only where they
/// exist. Where the tag list is refused or too long, each subject's tags are asked about
/// one by one, as a registry without tag lists needs.
#[derive(Default)]
pub struct Discovery {
    api: Mutex<HashMap<String, Arc<OnceCell<bool>>>>,
    tags: Mutex<TagLists>,
    /// Images of this pack per (registry, repository).
    images: HashMap<(String, String), usize>,
}

impl Discovery {
    /// `images`: the (registry, repository) of every image the pack resolves.
    pub fn new<'a>(images: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut counts = HashMap::new();
        for (reg, repo) in images {
            *counts
                .entry((reg.to_string(), repo.to_string()))
                .or_default() += 1;
        }
        Discovery {
            images: counts,
            ..Default::default()
        }
    }

    /// `repo`'s tags, read once per pack; `None`: unknown (ask about each tag).
    async fn tags(&self, client: &Client, repo: &str) -> Result<Tags, RegistryError> {
        let key = (client.registry().to_string(), repo.to_string());
        let pages = (self.images.get(&key).copied().unwrap_or(1) * 4).min(MAX_TAG_PAGES);
        let cell = self
            .tags
            .lock()
            .expect("tags lock")
            .entry(key)
            .or_default()
            .clone();
        cell.get_or_try_init(|| async { Ok(client.list_tags(repo, pages).await?.map(Arc::new)) })
            .await
            .cloned()
    }

    /// What the referrers API lists for `subject`, or `None` where the registry has no such
    /// API: the first subject of a registry asks, the others wait for its answer.
    async fn referrers(
        &self,
        client: &Client,
        repo: &str,
        subject: &Digest,
    ) -> Result<Option<Vec<serde_json::Value>>, RegistryError> {
        let cell = self
            .api
            .lock()
            .expect("api lock")
            .entry(client.registry().to_string())
            .or_default()
            .clone();
        let mut first = None;
        let has = *cell
            .get_or_try_init(|| async {
                let r = client.referrers(repo, subject).await?;
                let has = r.is_some();
                first = Some(r);
                Ok::<_, RegistryError>(has)
            })
            .await?;
        match (first, has) {
            (Some(r), _) => Ok(r),
            (None, true) => client.referrers(repo, subject).await,
            (None, false) => Ok(None),
        }
    }
}

/// Asks, all at once, for `subject`'s cosign tags and its referrers (the API, else the tag
/// schema), each tag only if the repository's tag list names it (or no list is known). A
/// missing tag is a 404 (MANIFEST_UNKNOWN or NAME_UNKNOWN): nothing there.
async fn find(
    client: &Client,
    discovery: &Discovery,
    repo: &str,
    subject: Digest,
    image: &str,
) -> Result<Vec<Found>, PackError> {
    let err = |source: RegistryError| PackError::Referrers {
        image: image.to_string(),
        source: Box::new(source),
    };
    let tags = discovery.tags(client, repo).await.map_err(err)?;
    let listed = |t: &str| tags.as_ref().is_none_or(|all| all.contains(t));
    // HEADs: a HEAD is no metered pull.
    let tag = |suffix: &'static str| {
        let t = cosign_tag(&subject, suffix);
        let listed = listed(&t);
        async move {
            if !listed {
                return Ok(None);
            }
            client
                .head_manifest(repo, &t)
                .await
                .map(|h| h.map(|h| (t, h)))
        }
    };
    // The referrers API, or (on a registry without it) the tag schema, asked at once with
    // the tags.
    let schema_listed = listed(&schema_tag(&subject));
    let listing = async {
        match discovery.referrers(client, repo, &subject).await? {
            Some(list) => Ok(list),
            None if schema_listed => schema_index(client, repo, &subject).await,
            None => Ok(Vec::new()),
        }
    };
    let (sig, att, sbom, listed) = futures::join!(
        tag(COSIGN_SUFFIXES[0]),
        tag(COSIGN_SUFFIXES[1]),
        tag(COSIGN_SUFFIXES[2]),
        listing
    );
    let mut out = Vec::new();
    for t in [sig, att, sbom] {
        if let Some((t, h)) = t.map_err(err)? {
            // Fetched by digest (and checked against it and the size) like an index child.
            out.push(Found {
                subject: subject.clone(),
                tag: Some(t),
                manifest: Descriptor {
                    media_type: h.media_type,
                    digest: h.digest,
                    size: h.size,
                    platform: None,
                    annotations: None,
                    urls: None,
                },
            });
        }
    }
    for v in listed.map_err(err)? {
        let d: Descriptor = serde_json::from_value(v).map_err(|e| PackError::Invalid {
            image: image.to_string(),
            reason: format!("the referrers index of {subject} has a bad descriptor: {e}"),
        })?;
        if out.iter().any(|f| f.manifest.digest == d.digest) {
            continue;
        }
        out.push(Found {
            subject: subject.clone(),
            tag: None,
            manifest: d,
        });
    }
    Ok(out)
}
