//! Referrers at load: each one is a placement of its own after the images (its manifest and
//! blobs go through the same plan, uploads and manifest pushes, after its subject), under the
//! subject's target repository: a cosign attachment by its tag, an OCI 1.1 referrer by
//! digest. On a registry without the referrers API, the referrers tag schema's index
//! (`sha256-<hex>`) is written or merged so OCI 1.1 clients still find them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::visitor::LoadVisitor;
use super::{LoadError, Placement};
use crate::bundle::Metadata;
use crate::digest::Digest;
use crate::manifest::{is_index, OCI_INDEX};
use crate::referrers::{
    descriptor, descriptor_digest, facts, index_descriptors, merge, schema_tag,
};
use crate::registry::RegistryError;

/// What a referrer placement refers to.
#[derive(Debug, Clone)]
pub(crate) struct ReferrerOf {
    pub subject: Digest,
    /// An OCI 1.1 referrer (found through the API or the tag schema): listed in the target's
    /// tag-schema index when the target has no referrers API.
    pub indexed: bool,
}

/// The placements of every image's referrers, under the repository its image goes to.
pub(crate) fn placements(
    metadata: &Metadata,
    images: &[Placement],
) -> Vec<(Placement, ReferrerOf)> {
    let mut out: Vec<(Placement, ReferrerOf)> = Vec::new();
    for (rec, p) in metadata.images.iter().zip(images) {
        for r in &rec.referrers {
            let name = |base: &crate::reference::Reference| match &r.tag {
                Some(t) => base.with_digest(None).with_tag(Some(t)),
                None => base.with_tag(None).with_digest(Some(r.digest.clone())),
            };
            let target = name(&p.target);
            if out.iter().any(|(q, _)| q.target == target) {
                continue;
            }
            out.push((
                Placement {
                    source: name(&p.source),
                    target,
                    digest: r.digest.clone(),
                    source_digest: None,
                    media_type: r.media_type.clone(),
                    chart: None,
                },
                ReferrerOf {
                    subject: r.subject.clone(),
                    indexed: r.tag.is_none(),
                },
            ));
        }
    }
    out
}

impl LoadVisitor {
    /// The referrers of placement `i`, when it is one.
    fn referrer(&self, i: usize) -> Option<&ReferrerOf> {
        i.checked_sub(self.images)
            .and_then(|k| self.referrer_of.get(k))
    }

    /// (repository, subject) → the referrer placements a tag-schema index lists.
    fn index_groups(&self) -> BTreeMap<(String, Digest), Vec<usize>> {
        let mut groups: BTreeMap<(String, Digest), Vec<usize>> = BTreeMap::new();
        for i in self.images..self.placements.len() {
            let Some(r) = self.referrer(i) else { continue };
            let p = &self.placements[i];
            let has_subject = self
                .graph
                .get(&p.digest)
                .is_some_and(|m| facts(&m.bytes).subject.as_ref() == Some(&r.subject));
            if r.indexed || has_subject {
                groups
                    .entry((p.repo().to_string(), r.subject.clone()))
                    .or_default()
                    .push(i);
            }
        }
        groups
    }

    /// The descriptors the target's tag-schema index for `subject` lists, or `None` when the
    /// target has the referrers API (it keeps its own list).
    async fn schema_index(
        &self,
        repo: &str,
        subject: &Digest,
    ) -> Result<Option<Vec<serde_json::Value>>, LoadError> {
        let err = |source| LoadError::Push {
            image: format!("{}/{repo}:{}", self.opts.target.host, schema_tag(subject)),
            source: Box::new(source),
        };
        if self
            .client
            .referrers(repo, subject)
            .await
            .map_err(err)?
            .is_some()
        {
            return Ok(None);
        }
        match self.client.get_manifest(repo, &schema_tag(subject)).await {
            Ok(m) if is_index(&m.media_type) => Ok(Some(index_descriptors(&m.bytes))),
            Ok(m) => Err(LoadError::Inconsistent {
                path: self.opts.bundle.clone(),
                reason: format!(
                    "{repo}:{} at the target is a {}, not the referrers index of {subject}; \
                     it was left as it is",
                    schema_tag(subject),
                    m.media_type
                ),
            }),
            Err(RegistryError::NotFound { .. }) => Ok(Some(Vec::new())),
            Err(e) => Err(err(e)),
        }
    }

    /// After `check_complete`: an OCI 1.1 referrer at the target counts as complete only if
    /// OCI 1.1 clients find it (the API has it, or the tag-schema index lists it), so a load
    /// interrupted before the index was written writes it now.
    pub(super) async fn check_referrers_listed(&mut self) -> Result<(), LoadError> {
        for ((repo, subject), members) in self.index_groups() {
            if !members.iter().any(|i| self.complete[*i]) {
                continue;
            }
            let Some(listed) = self.schema_index(&repo, &subject).await? else {
                continue;
            };
            let listed: Vec<Digest> = listed.iter().filter_map(descriptor_digest).collect();
            for i in members {
                if !listed.contains(&self.placements[i].digest) {
                    self.complete[i] = false;
                }
            }
        }
        Ok(())
    }

    /// Writes or merges the tag-schema index of each subject whose OCI 1.1 referrers this
    /// load pushed, on a target without the referrers API. Existing entries are kept; the
    /// index is written only when it lacks one of ours.
    pub async fn write_referrer_indexes(&self) -> Result<(), LoadError> {
        for ((repo, subject), members) in self.index_groups() {
            let ours: Vec<serde_json::Value> = members
                .iter()
                .filter_map(|i| {
                    let d = &self.placements[*i].digest;
                    self.graph
                        .get(d)
                        .map(|m| descriptor(&m.media_type, d, &m.bytes))
                })
                .collect();
            if ours.is_empty() {
                continue;
            }
            let Some(existing) = self.schema_index(&repo, &subject).await? else {
                continue;
            };
            let Some(all) = merge(&existing, &ours) else {
                continue;
            };
            let tag = schema_tag(&subject);
            let bytes = bytes::Bytes::from(crate::referrers::index(all));
            self.client
                .put_manifest(&repo, &tag, OCI_INDEX, &bytes)
                .await
                .map_err(|source| LoadError::Push {
                    image: format!("{}/{repo}:{tag}", self.opts.target.host),
                    source: Box::new(source),
                })?;
            self.counters.manifests.fetch_add(1, Ordering::Relaxed);
            self.progress.item(&format!(
                "wrote the referrers index {repo}:{tag} ({} referrer(s); the registry has no referrers API)",
                members.len()
            ));
        }
        Ok(())
    }
}
