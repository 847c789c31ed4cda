//! Pushing manifests once every blob landed: children by digest first, then tags; a PUT the
//! registry refuses for a blob it should see (MANIFEST_BLOB_UNKNOWN) is repaired and repeated.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use futures::StreamExt;

use super::graph::{ImageGraph, StoredManifest, Walk};
use super::visitor::LoadVisitor;
use super::{Counters, LoadError, Placement, RepoSet};
use crate::digest::Digest;
use crate::registry::retry::{self, Outcome};
use crate::registry::{Client, RegistryError};

impl LoadVisitor {
    /// Pushes manifests by digest (children first), then tags, for every image not already
    /// complete. Runs only after every blob upload succeeded.
    ///
    /// A PUT refused with MANIFEST_BLOB_UNKNOWN is repaired and repeated (see
    /// `ManifestPusher::put`). Returns false when blobs the registry lost must come from
    /// the bundle again: they are queued for another pass, after which this is called again
    /// with `may_repair` false.
    pub async fn push_manifests(&mut self, may_repair: bool) -> Result<bool, LoadError> {
        if self.landed.len() != self.placements.len() {
            self.landed = self.complete.clone();
        }
        let jobs: Vec<(usize, Placement, Walk)> = self
            .placements
            .iter()
            .zip(self.walks.iter())
            .enumerate()
            .filter(|(i, _)| !self.landed[*i])
            .filter_map(|(i, (p, w))| w.clone().map(|w| (i, p.clone(), w)))
            .collect();
        let mut holders: RepoSet = HashMap::new();
        for (p, w) in self.placements.iter().zip(&self.walks) {
            for b in w.iter().flat_map(|w| &w.blobs) {
                let repos = holders.entry(b.clone()).or_default();
                if !repos.iter().any(|r| r == p.repo()) {
                    repos.push(p.repo().to_string());
                }
            }
        }
        let pusher = ManifestPusher {
            client: &self.client,
            graph: &self.graph,
            counters: &self.counters,
            holders,
            base_repos: self.base_repos(),
        };
        let pusher = &pusher;
        let pushed = &self.pushed;
        let progress = &self.progress;
        // Images first, then their referrers: a referrer lands after its subject.
        let images = self.images;
        let (first, then): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|(i, _, _)| *i < images);
        let mut results = Vec::new();
        for phase in [first, then] {
            if results.iter().any(|r: &Result<_, _>| r.is_err()) {
                break;
            }
            let done = futures::stream::iter(phase.into_iter().map(|(i, p, walk)| async move {
                let image = p.target.to_string();
                for d in &walk.manifests {
                    // A tagged top manifest is stored by the tag PUT below; pushing it by
                    // digest first would only repeat the request.
                    if d == &p.digest && p.target.tag().is_some() {
                        continue;
                    }
                    let key = (p.repo().to_string(), d.clone());
                    if pushed.lock().expect("pushed lock").contains(&key) {
                        continue;
                    }
                    let m = pusher
                        .graph
                        .get(d)
                        .expect("walked manifests are in the graph");
                    match pusher.put(&image, p.repo(), d.as_str(), m).await? {
                        Put::Landed => {}
                        lost => return Ok((i, p, Some(lost))),
                    }
                    pusher.counters.manifests.fetch_add(1, Ordering::Relaxed);
                    pushed.lock().expect("pushed lock").insert(key);
                }
                if let Some(tag) = p.target.tag() {
                    let m = pusher
                        .graph
                        .get(&p.digest)
                        .expect("top manifest is in the graph");
                    match pusher.put(&image, p.repo(), tag, m).await? {
                        // The tag PUT is what stores a tagged top manifest (see above): count it
                        // once per repository, however many tags or placements it has.
                        Put::Landed => {
                            let key = (p.repo().to_string(), p.digest.clone());
                            if pushed.lock().expect("pushed lock").insert(key) {
                                pusher.counters.manifests.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        lost => return Ok((i, p, Some(lost))),
                    }
                }
                progress.item(&format!(
                    "pushed {} -> {} ({})",
                    p.source,
                    p.target,
                    p.digest.short()
                ));
                Ok::<_, LoadError>((i, p, None))
            }))
            .buffer_unordered(self.opts.concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
            results.extend(done);
        }
        let results = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        let mut queued: RepoSet = HashMap::new();
        for (i, p, lost) in results {
            let Some(Put::Lost(digests, source)) = lost else {
                self.landed[i] = true;
                continue;
            };
            let image = p.target.to_string();
            let refused = |reason: &str| LoadError::Refused {
                image: image.clone(),
                reason: reason.to_string(),
                source: Box::new(source),
            };
            if !may_repair {
                return Err(refused(
                    "still missing after the bundle was read again for blobs the registry lost",
                ));
            }
            if digests.iter().any(|d| !self.records.contains_key(d)) {
                return Err(refused(
                    "they are not in this bundle and no repository of the target has them to mount",
                ));
            }
            for d in digests {
                let repos = queued.entry(d).or_default();
                if !repos.iter().any(|r| r == p.repo()) {
                    repos.push(p.repo().to_string());
                }
            }
        }
        if queued.is_empty() {
            return Ok(true);
        }
        let bytes: u64 = queued
            .keys()
            .map(|d| self.records.get(d).map(|r| r.size).unwrap_or(0))
            .sum();
        self.progress.stage(&format!(
            "{} blob(s) went missing from the target after they were pushed; reading the bundle again for them",
            queued.len()
        ));
        self.progress.start_bytes("load", bytes);
        let mut pending = self.pending.lock().expect("pending lock");
        for (d, repos) in queued {
            let have = pending.entry(d).or_default();
            for r in repos {
                if !have.contains(&r) {
                    have.push(r);
                }
            }
        }
        Ok(false)
    }
}

/// Attempts at a manifest PUT refused with MANIFEST_BLOB_UNKNOWN for blobs that are there:
/// distribution 2.8 (filesystem storage) rewrites a repository's blob link in place on each
/// upload or mount, so a PUT racing another client's link of the same blob reads it empty.
const MANIFEST_ATTEMPTS: u32 = 6;

/// What became of one manifest PUT.
enum Put {
    Landed,
    /// The registry lacks these blobs and none could be mounted: only the bundle has them.
    Lost(Vec<Digest>, RegistryError),
}

/// Pushes manifests, putting back what the registry says a manifest lacks.
struct ManifestPusher<'a> {
    client: &'a Client,
    graph: &'a ImageGraph,
    counters: &'a Counters,
    /// The repositories of this load that hold each blob (to mount from).
    holders: RepoSet,
    base_repos: Vec<String>,
}

impl ManifestPusher<'_> {
    /// PUTs `m` as `repo:reference`. On MANIFEST_BLOB_UNKNOWN it makes sure each named
    /// digest is in `repo` (HEAD, else a mount from another repository, or a PUT of a child
    /// manifest) and tries again after a backoff, a bounded number of times; a digest that
    /// is neither there nor mountable ends the attempts with [`Put::Lost`].
    fn put<'s>(
        &'s self,
        image: &'s str,
        repo: &'s str,
        reference: &'s str,
        m: &'s StoredManifest,
    ) -> futures::future::BoxFuture<'s, Result<Put, LoadError>> {
        Box::pin(async move {
            let refused = |attempts: u32, e: RegistryError| LoadError::Refused {
                image: image.to_string(),
                reason: format!(
                    "{attempts} attempts, checking the named blobs in {repo} before each retry"
                ),
                source: Box::new(e),
            };
            let (result, _) = retry::run(MANIFEST_ATTEMPTS - 1, move |attempt| async move {
                let e = match self
                    .client
                    .put_manifest(repo, reference, &m.media_type, &m.bytes)
                    .await
                {
                    Ok(()) => return Outcome::Done(Ok(Put::Landed)),
                    Err(e) => e,
                };
                let RegistryError::ManifestBlobUnknown { missing, .. } = &e else {
                    return Outcome::Done(Err(LoadError::Push {
                        image: image.to_string(),
                        source: Box::new(e),
                    }));
                };
                // Put back what the registry named before trying again (not after the last).
                if !attempt.last {
                    let mut lost = Vec::new();
                    for d in missing {
                        match self.restore(image, repo, d).await {
                            Ok(l) => lost.extend(l),
                            Err(e) => return Outcome::Done(Err(e)),
                        }
                    }
                    if !lost.is_empty() {
                        return Outcome::Done(Ok(Put::Lost(lost, e)));
                    }
                }
                Outcome::Retry(Err(refused(attempt.number, e)), None)
            })
            .await;
            result
        })
    }

    /// Makes sure `d` is in `repo`; returns the blobs that could not be put back.
    async fn restore(&self, image: &str, repo: &str, d: &Digest) -> Result<Vec<Digest>, LoadError> {
        if let Some(child) = self.graph.get(d) {
            return Ok(match self.put(image, repo, d.as_str(), child).await? {
                Put::Landed => Vec::new(),
                Put::Lost(lost, _) => lost,
            });
        }
        let err = |source| LoadError::Restore {
            image: image.to_string(),
            digest: d.clone(),
            repository: repo.to_string(),
            source: Box::new(source),
        };
        match self.client.blob_exists(repo, d).await {
            Ok(true) => return Ok(Vec::new()),
            Ok(false) => {}
            // 2.8 answers 500 to a HEAD that reads the same half-written link: the bounded
            // PUT attempts decide, not this check.
            Err(e) if e.is_transient() => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        }
        let sources = self.holders.get(d).into_iter().flatten();
        for from in sources.chain(&self.base_repos).filter(|f| *f != repo) {
            if self.client.mount_blob(repo, d, from).await.map_err(err)? {
                self.counters.mounted.fetch_add(1, Ordering::Relaxed);
                return Ok(Vec::new());
            }
        }
        Ok(vec![d.clone()])
    }
}
