//! Planning a load: which images the target has (its catalog, then a manifest HEAD per image
//! in a listed repository), which blobs each repository lacks (HEADs, or for a first load the
//! mount request that opens each small upload), what can be mounted from where, and for a
//! delta that the blobs it leaves out are at the target.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::Ordering;

use futures::StreamExt;

use super::visitor::{LoadVisitor, SMALL_BLOB};
use super::{LoadError, RepoSet};
use crate::digest::Digest;
use crate::registry::{Client, RegistryError};

impl LoadVisitor {
    /// When the stream ended before any config or layer (or was stopped at the head), plan
    /// now: anything still needed then cannot come from this bundle.
    pub async fn finish_plan_if_needed(&mut self) -> Result<(), LoadError> {
        if self.planned || self.complete.iter().all(|c| *c) {
            return Ok(());
        }
        self.plan_async().await?;
        if let Some((d, repos)) = self.needs.iter().next() {
            return Err(LoadError::Inconsistent {
                path: self.opts.bundle.clone(),
                reason: format!(
                    "blob {d} needed by {} is not in the bundle",
                    repos.join(", ")
                ),
            });
        }
        Ok(())
    }

    /// Whether the target may have `repo`: false only when its catalog answered without it.
    fn may_exist(&self, repo: &str) -> bool {
        self.listed.as_ref().is_none_or(|l| l.contains(repo))
    }

    /// Which images are already at the target with the right digest (a re-load skips them).
    /// The catalog is read first: on a first load it is one request where a HEAD per image
    /// would find nothing. It is given at most a page per two images (so at most half as many
    /// extra requests as there are images, when it saves nothing) and ten pages in all.
    pub(super) async fn check_complete(&mut self) -> Result<(), LoadError> {
        let client = self.client.clone();
        let pages = (self.placements.len() / 2).min(10);
        if pages > 0 {
            self.listed = client
                .list_repositories(pages)
                .await
                .map_err(|source| LoadError::Registry(Box::new(source)))?;
        }
        let checks = futures::stream::iter(self.placements.iter().map(|p| {
            let client = client.clone();
            let known_absent = !self.may_exist(p.repo());
            let reference = p
                .target
                .tag()
                .map(str::to_string)
                .unwrap_or_else(|| p.digest.to_string());
            let repo = p.repo().to_string();
            let want = p.digest.clone();
            let image = p.target.to_string();
            async move {
                if known_absent {
                    return Ok(false);
                }
                let have = client
                    .manifest_digest(&repo, &reference)
                    .await
                    .map_err(|source| LoadError::Push {
                        image,
                        source: Box::new(source),
                    })?;
                Ok::<bool, LoadError>(have.as_ref() == Some(&want))
            }
        }))
        .buffered(self.opts.concurrency.max(1) * 2)
        .collect::<Vec<_>>()
        .await;
        self.complete = checks.into_iter().collect::<Result<_, _>>()?;
        self.check_referrers_listed().await
    }

    /// HEADs every (blob, repository) pair of `set`: which repositories have each blob, and
    /// which lack it. A repository the catalog does not list lacks every blob, unasked.
    async fn head_blobs(&self, set: &RepoSet) -> Result<(RepoSet, RepoSet), LoadError> {
        let (ask, absent): (Vec<_>, Vec<_>) = set
            .iter()
            .flat_map(|(d, repos)| repos.iter().map(move |r| (d.clone(), r.clone(), ())))
            .partition(|(_, repo, _)| self.may_exist(repo));
        let width = self.opts.concurrency.max(1) * 4;
        let found = self
            .ask_pairs(ask, width, |client, d, repo, ()| async move {
                client.blob_exists(&repo, &d).await
            })
            .await?;
        let mut have: RepoSet = HashMap::new();
        let mut lack: RepoSet = HashMap::new();
        for (d, repo, ()) in absent {
            lack.entry(d).or_default().push(repo);
        }
        for (d, repo, has) in found {
            if has {
                have.entry(d).or_default().push(repo);
            } else {
                lack.entry(d).or_default().push(repo);
            }
        }
        Ok((have, lack))
    }

    /// Asks the registry a yes-or-no question (`ask`: a HEAD, a mount from the repository in
    /// `T`) about each (blob, repository) pair, `width` at a time; an error names its blob
    /// and repository.
    async fn ask_pairs<T, F, Fut>(
        &self,
        pairs: Vec<(Digest, String, T)>,
        width: usize,
        ask: F,
    ) -> Result<Vec<(Digest, String, bool)>, LoadError>
    where
        F: Fn(Client, Digest, String, T) -> Fut,
        Fut: Future<Output = Result<bool, RegistryError>>,
    {
        let answers = futures::stream::iter(pairs.into_iter().map(|(d, repo, extra)| {
            let asked = ask(self.client.clone(), d.clone(), repo.clone(), extra);
            async move {
                match asked.await {
                    Ok(yes) => Ok((d, repo, yes)),
                    Err(source) => Err(LoadError::Blob {
                        digest: d,
                        repository: repo,
                        source: Box::new(source),
                    }),
                }
            }
        }))
        .buffer_unordered(width)
        .collect::<Vec<_>>()
        .await;
        answers.into_iter().collect()
    }

    /// Works out which blob each repository still lacks: HEADs, then mounts from a repository
    /// of the target that already has the blob.
    pub(super) async fn plan_async(&mut self) -> Result<(), LoadError> {
        self.planned = true;
        let mut wanted: RepoSet = HashMap::new();
        self.walks = vec![None; self.placements.len()];
        for (i, p) in self.placements.iter().enumerate() {
            if self.complete[i] {
                continue;
            }
            let walk = self
                .graph
                .walk(&p.digest)
                .map_err(|d| LoadError::Inconsistent {
                    path: self.opts.bundle.clone(),
                    reason: format!("manifest {d} needed by {} is not in the bundle", p.source),
                })?;
            for b in &walk.blobs {
                let repos = wanted.entry(b.clone()).or_default();
                if !repos.iter().any(|r| r == p.repo()) {
                    repos.push(p.repo().to_string());
                }
            }
            self.walks[i] = Some(walk);
        }
        // On a first load (none of the bundle's images at the target, none of its big blobs
        // either), small blobs are not HEADed: their upload session is opened with a request
        // to mount them from the same repository, which the registry grants when it has them
        // (see `push_to_repos`). That saves a request per blob and repository, each costing
        // the registry about as much as the POST it precedes. Where some of the bundle is
        // there already (a re-run after a failure, a new version of an application), they
        // are HEADed like big ones: skipping by HEAD needs no writes and lets the stream stop
        // early once nothing more is needed.
        let (mut unchecked, checked): (RepoSet, RepoSet) = wanted
            .iter()
            .map(|(d, repos)| (d.clone(), repos.clone()))
            .partition(|(d, _)| self.records.get(d).is_some_and(|r| r.size <= SMALL_BLOB));
        let (mut have, mut lack) = self.head_blobs(&checked).await?;
        let fresh = !self.complete.iter().any(|c| *c) && have.is_empty();
        let mut headed = checked.len();
        if !fresh && !unchecked.is_empty() {
            let (h, l) = self.head_blobs(&unchecked).await?;
            for (d, repos) in h {
                have.entry(d).or_default().extend(repos);
            }
            for (d, repos) in l {
                lack.entry(d).or_default().extend(repos);
            }
            headed += unchecked.len();
            unchecked.clear();
        }
        // Blobs every repository that wants them has already (mounted ones count as mounted).
        let skipped = headed - lack.len();
        // Repositories of the images already complete at the target hold every blob of
        // those images (the registry accepted their manifests): mount sources that need no
        // HEAD, e.g. a shared base layer for a repository new in this version.
        let mut held: HashMap<Digest, String> = HashMap::new();
        for (i, p) in self.placements.iter().enumerate() {
            if !self.complete[i] {
                continue;
            }
            if let Ok(walk) = self.graph.walk(&p.digest) {
                for b in walk.blobs {
                    held.entry(b).or_insert_with(|| p.repo().to_string());
                }
            }
        }
        // Mount what some repository of the target already holds.
        let mounts: Vec<(Digest, String, String)> = lack
            .iter()
            .filter_map(|(d, repos)| {
                let from = have.get(d).and_then(|h| h.first()).or_else(|| held.get(d));
                from.map(|from| {
                    repos
                        .iter()
                        .filter(|r| *r != from)
                        .map(|r| (d.clone(), r.clone(), from.clone()))
                        .collect::<Vec<_>>()
                })
            })
            .flatten()
            .collect();
        let width = self.opts.concurrency.max(1) * 2;
        let results = self
            .ask_pairs(mounts, width, |client, d, repo, from| async move {
                client.mount_blob(&repo, &d, &from).await
            })
            .await?;
        for (d, repo, ok) in results {
            if ok {
                self.counters.mounted.fetch_add(1, Ordering::Relaxed);
                if let Some(v) = lack.get_mut(&d) {
                    v.retain(|x| x != &repo);
                }
            }
        }
        lack.retain(|_, v| !v.is_empty());
        self.check_base_blobs(&mut lack).await?;
        self.counters
            .skipped
            .fetch_add(skipped as u64, Ordering::Relaxed);
        let small = unchecked.len();
        self.unchecked = unchecked.keys().cloned().collect();
        lack.extend(unchecked);
        let bytes: u64 = lack
            .keys()
            .map(|d| self.records.get(d).map(|r| r.size).unwrap_or(0))
            .sum();
        self.progress.stage(&format!(
            "{} blob(s) to push ({}), {} already at the target{}",
            lack.len(),
            crate::progress::human_bytes(bytes),
            skipped,
            if small > 0 {
                format!("; {small} small one(s) unchecked: those the registry has are skipped as they come")
            } else {
                String::new()
            }
        ));
        self.progress.start_bytes("load", bytes);
        self.needs = lack;
        Ok(())
    }

    /// The target repositories the base of a delta was loaded into (none for a full bundle).
    pub(super) fn base_repos(&self) -> Vec<String> {
        let Some(base) = &self.base else {
            return Vec::new();
        };
        let mut v: Vec<String> = base
            .images
            .iter()
            .filter_map(|r| self.opts.target.name_for(r, self.opts.mode).ok())
            .map(|t| t.repository().to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// A delta leaves blobs out: each must already be in the target, in the repository that
    /// needs it or mountable from where the base's images were loaded. Fails, before anything
    /// is pushed, listing what is missing.
    async fn check_base_blobs(&mut self, lack: &mut RepoSet) -> Result<(), LoadError> {
        let Some(base) = self.base.clone() else {
            return Ok(());
        };
        let left_out: HashSet<&Digest> = base.blobs.iter().map(|b| &b.digest).collect();
        let candidates = self.base_repos();
        let mut missing = Vec::new();
        for (d, repos) in lack.iter_mut() {
            if !left_out.contains(d) {
                continue;
            }
            let mut from = None;
            for c in &candidates {
                if self
                    .client
                    .blob_exists(c, d)
                    .await
                    .map_err(|source| LoadError::Blob {
                        digest: d.clone(),
                        repository: c.clone(),
                        source: Box::new(source),
                    })?
                {
                    from = Some(c.clone());
                    break;
                }
            }
            let mut still = Vec::new();
            for repo in repos.drain(..) {
                // The repository has it after all (its HEAD just said so; the plan thought
                // otherwise only if the catalog left the repository out): nothing to do.
                if from.as_ref() == Some(&repo) {
                    continue;
                }
                let mounted = match &from {
                    Some(f) => self
                        .client
                        .mount_blob(&repo, d, f)
                        .await
                        .map_err(|source| LoadError::Blob {
                            digest: d.clone(),
                            repository: repo.clone(),
                            source: Box::new(source),
                        })?,
                    None => false,
                };
                if mounted {
                    self.counters.mounted.fetch_add(1, Ordering::Relaxed);
                } else {
                    missing.push(format!("{d} (for {repo})"));
                    still.push(repo);
                }
            }
            *repos = still;
        }
        lack.retain(|_, v| !v.is_empty());
        if !missing.is_empty() {
            missing.sort();
            if missing.len() > 10 {
                let more = missing.len() - 10;
                missing.truncate(10);
                missing.push(format!("and {more} more"));
            }
            return Err(LoadError::BaseMissing {
                path: self.opts.bundle.clone(),
                base: match &base.name {
                    Some(n) => format!("{n} ({})", base.id),
                    None => base.id.to_string(),
                },
                registry: self.opts.target.host.clone(),
                missing,
            });
        }
        Ok(())
    }
}
