//! The bundle visitor that drives a load: it runs on a blocking thread (the tar stream is
//! synchronous) and hands uploads to the async runtime, bounded by a semaphore.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::graph::{ImageGraph, Walk};
use super::reread::{corrupt, tokio_stream_from, BundleRange};
use super::{Counters, LoadError, LoadOptions, Placement, RepoSet};
use crate::bundle::seek::{ReadAt, SeekIndex};
use crate::bundle::{parse_index, BlobContent, BlobRecord, BundleError, Flow, Head, Visitor};
use crate::digest::Digest;
use crate::progress::Progress;
use crate::registry::{BlobBody, Client, Pushed, RegistryError, Reread};

/// Blobs up to this size are read into memory and uploaded concurrently; bigger ones stream.
pub(super) const SMALL_BLOB: u64 = 4 * 1024 * 1024;
pub(super) const CHUNK: usize = 256 * 1024;

pub struct LoadVisitor {
    pub(super) opts: LoadOptions,
    pub(super) client: Client,
    pub(super) rt: Handle,
    pub(super) progress: Arc<dyn Progress>,
    pub(super) counters: Arc<Counters>,
    /// The images' placements, then their referrers' (`referrers`).
    pub(super) placements: Vec<Placement>,
    /// How many of `placements` are images.
    pub(super) images: usize,
    /// What each referrer placement (`placements[images..]`) refers to.
    pub(super) referrer_of: Vec<super::referrers::ReferrerOf>,
    pub(super) complete: Vec<bool>,
    pub(super) walks: Vec<Option<Walk>>,
    pub(super) graph: ImageGraph,
    pub(super) records: HashMap<Digest, BlobRecord>,
    /// For a delta: what the base carries instead of this bundle.
    pub(super) base: Option<crate::bundle::BaseRef>,
    pub(super) planned: bool,
    pub(super) needs: RepoSet,
    /// Small blobs the plan did not HEAD: their uploads start with a mount request that
    /// tells whether the registry has them. Empty after the first pass: later passes carry
    /// only blobs known to be missing.
    pub(super) unchecked: HashSet<Digest>,
    pub(super) pending: Arc<Mutex<RepoSet>>,
    pub(super) pass: u32,
    pub(super) tasks: Vec<JoinHandle<Result<(), LoadError>>>,
    pub(super) sem: Arc<Semaphore>,
    pub(super) failed: Arc<AtomicBool>,
    /// Cancelled by an upload the registry refused for a repository that does not exist:
    /// every other upload in flight stops at once (nothing more is sent, nothing tagged).
    pub(super) stop: CancellationToken,
    pub(super) failure: Option<LoadError>,
    /// Images whose manifests and tag are in (kept across `push_manifests` rounds).
    pub(super) landed: Vec<bool>,
    /// (repository, manifest digest) pushed by digest so far.
    pub(super) pushed: Mutex<HashSet<(String, Digest)>>,
    /// A seekable bundle: big blobs are read through the seek table, several at once,
    /// instead of one after another from the stream.
    pub(super) random: Option<(Arc<dyn ReadAt>, Arc<SeekIndex>)>,
    /// The source is a foreign archive (`crate::archive`), read through its own reader.
    pub(super) foreign: Option<Arc<crate::archive::Foreign>>,
    /// Damage found by those reads (the upload they fed fails less clearly).
    pub(super) damage: Arc<Mutex<Option<BundleError>>>,
    /// This pass's big blobs were started through the seek table.
    pub(super) big_dispatched: bool,
    /// The repositories the target's catalog lists, when it answered: one in none of them
    /// holds no image and no blob, so nothing is asked about it.
    pub(super) listed: Option<HashSet<String>>,
}

impl LoadVisitor {
    pub fn new(
        opts: LoadOptions,
        client: Client,
        rt: Handle,
        progress: Arc<dyn Progress>,
        counters: Arc<Counters>,
    ) -> Self {
        let permits = opts.concurrency.max(1);
        LoadVisitor {
            opts,
            client,
            rt,
            progress,
            counters,
            placements: Vec::new(),
            images: 0,
            referrer_of: Vec::new(),
            complete: Vec::new(),
            walks: Vec::new(),
            graph: ImageGraph::default(),
            records: HashMap::new(),
            base: None,
            planned: false,
            needs: HashMap::new(),
            unchecked: HashSet::new(),
            pending: Arc::new(Mutex::new(HashMap::new())),
            pass: 0,
            tasks: Vec::new(),
            sem: Arc::new(Semaphore::new(permits)),
            failed: Arc::new(AtomicBool::new(false)),
            stop: CancellationToken::new(),
            failure: None,
            landed: Vec::new(),
            pushed: Mutex::default(),
            random: None,
            foreign: None,
            damage: Arc::default(),
            big_dispatched: false,
            listed: None,
        }
    }

    /// Lets big blobs be read concurrently through the bundle's seek table.
    pub fn set_random_access(&mut self, src: Arc<dyn ReadAt>, index: SeekIndex) {
        self.random = Some((src, Arc::new(index)));
    }

    pub fn begin_pass(&mut self, pass: u32) {
        self.pass = pass;
        self.big_dispatched = false;
        if pass > 1 {
            self.needs = std::mem::take(&mut *self.pending.lock().expect("pending lock"));
            self.unchecked.clear();
        }
    }

    /// The images' placements (their referrers' are not outputs).
    pub fn placements(&self) -> &[Placement] {
        &self.placements[..self.images]
    }

    pub fn unchanged_images(&self) -> usize {
        self.complete
            .iter()
            .take(self.images)
            .filter(|c| **c)
            .count()
    }

    pub fn take_failure(&mut self) -> Option<LoadError> {
        self.failure.take()
    }

    pub fn needs_another_pass(&self) -> bool {
        !self.pending.lock().expect("pending lock").is_empty()
    }

    fn fail(&mut self, e: LoadError) -> BundleError {
        let msg = e.to_string();
        self.failure = Some(e);
        BundleError::Visitor(msg)
    }

    /// Waits for every upload started in this pass; the first error wins.
    pub async fn join_uploads(&mut self) -> Result<(), LoadError> {
        let mut first = None;
        for t in self.tasks.drain(..) {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first.get_or_insert(e);
                }
                Err(e) => {
                    first.get_or_insert(LoadError::Inconsistent {
                        path: self.opts.bundle.clone(),
                        reason: format!("upload task failed: {e}"),
                    });
                }
            }
        }
        if let Some(e) = self.damage.lock().expect("damage lock").take() {
            return Err(LoadError::Bundle {
                path: self.opts.bundle.clone(),
                source: e,
            });
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Starts every big blob still needed through the seek table, largest first (the longest
    /// uploads begin at once, the rest fill in around them), so big uploads never wait for
    /// the stream to reach them; small blobs then come from the stream as before.
    fn dispatch_big(&mut self) -> Result<(), BundleError> {
        let Some((_, index)) = &self.random else {
            return Ok(());
        };
        let mut big: Vec<BlobRecord> = self
            .needs
            .keys()
            .filter_map(|d| self.records.get(d))
            .filter(|r| r.size > SMALL_BLOB)
            .filter(|r| {
                index
                    .entry(&crate::bundle::blob_entry_name(&r.digest))
                    .is_some_and(|l| l.size == r.size)
            })
            .cloned()
            .collect();
        big.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.digest.cmp(&b.digest)));
        for r in big {
            if self.failed.load(Ordering::Relaxed) {
                return Err(BundleError::Visitor("an upload failed".into()));
            }
            self.upload(&r, None)?;
            self.needs.remove(&r.digest);
        }
        Ok(())
    }

    /// Starts the upload of one blob to its first repository, then mounts it into the rest.
    /// Without `content`, the blob is read through the seek table (a big blob of a seekable
    /// bundle; see `dispatch_big`).
    fn upload(
        &mut self,
        record: &BlobRecord,
        mut content: Option<&mut BlobContent<'_>>,
    ) -> Result<(), BundleError> {
        let repos = self.needs.get(&record.digest).cloned().unwrap_or_default();
        let permit = self
            .rt
            .block_on(self.sem.clone().acquire_owned())
            .map_err(|e| BundleError::Visitor(e.to_string()))?;
        // An upload may have failed while this one waited for its turn: start nothing more.
        if self.failed.load(Ordering::Relaxed) {
            return Err(BundleError::Visitor("an upload failed".into()));
        }
        let client = self.client.clone();
        let stop = self.stop.clone();
        let counters = self.counters.clone();
        let pending = self.pending.clone();
        let failed = self.failed.clone();
        let digest = record.digest.clone();
        let size = record.size;
        let progress = self.progress.clone();
        let task_progress = self.progress.clone();
        let spawn = |source: Source| {
            self.rt.spawn(async move {
                let _permit = permit;
                let push = push_to_repos(
                    &client,
                    &digest,
                    size,
                    &repos,
                    source,
                    &counters,
                    &pending,
                    task_progress.as_ref(),
                );
                // Cancelled: dropping the upload closes its connection mid-request, so the
                // registry keeps nothing of it. The load's error is the stopping upload's
                // own (a task of this same pass), so this one reports nothing.
                let r = tokio::select! {
                    r = push => r,
                    () = stop.cancelled() => return Ok(()),
                };
                if let Err(e) = &r {
                    failed.store(true, Ordering::Relaxed);
                    if stops_the_load(e) {
                        stop.cancel();
                    }
                }
                r
            })
        };
        if size <= SMALL_BLOB {
            let content = content.ok_or_else(|| BundleError::MissingBlob {
                digest: record.digest.clone(),
            })?;
            let mut buf = Vec::with_capacity(size as usize);
            content
                .read_to_end(&mut buf)
                .map_err(|e| corrupt(record, e))?;
            progress.add_bytes(size);
            let probe = self.unchecked.contains(&record.digest);
            let task = spawn(Source::Memory(Bytes::from(buf), probe));
            self.tasks.push(task);
            return Ok(());
        }
        let name = crate::bundle::blob_entry_name(&record.digest);
        if let Some((src, index)) = &self.random {
            if let Some(loc) = index.entry(&name).filter(|l| l.size == record.size) {
                // The stream moves on (skipping this entry) while the upload reads the blob
                // through the seek table, so several big uploads run at once; any range of
                // it can be read again (a retry, a resumed or re-sent chunked upload).
                if let Some(c) = content.as_mut() {
                    c.skip();
                }
                let range = BundleRange {
                    src: src.clone(),
                    index: index.clone(),
                    offset: loc.offset,
                    record: record.clone(),
                    damage: self.damage.clone(),
                    progress: self.progress.clone(),
                    reported: Arc::new(AtomicU64::new(0)),
                };
                self.tasks.push(spawn(Source::Reread(Arc::new(range))));
                return Ok(());
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
        let task = spawn(Source::Stream(reqwest::Body::wrap_stream(
            tokio_stream_from(rx),
        )));
        let content = content.ok_or_else(|| BundleError::MissingBlob {
            digest: record.digest.clone(),
        })?;
        let mut buf = vec![0u8; CHUNK];
        let mut read_err = None;
        loop {
            match content.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    progress.add_bytes(n as u64);
                    if tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        break; // the upload ended early; its error is collected with the task
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::new(e.kind(), e.to_string())));
                    read_err = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        self.tasks.push(task);
        if let Some(e) = read_err {
            return Err(corrupt(record, e));
        }
        Ok(())
    }
}

/// A refusal no other upload can get past: the repository (Harbor project, ECR repository,
/// GitLab group) must be created first. Uploads in flight are cancelled rather than left to
/// finish, so nothing more goes to the registry before the user has fixed it.
fn stops_the_load(e: &LoadError) -> bool {
    matches!(e, LoadError::Blob { source, .. } if matches!(**source, RegistryError::RepositoryMissing { .. }))
}

enum Source {
    /// A small blob, and whether the plan left it unchecked (not HEADed).
    Memory(Bytes, bool),
    /// A big blob read through the seek table.
    Reread(Arc<dyn Reread>),
    Stream(reqwest::Body),
}

#[allow(clippy::too_many_arguments)]
async fn push_to_repos(
    client: &Client,
    digest: &Digest,
    size: u64,
    repos: &[String],
    source: Source,
    counters: &Counters,
    pending: &Mutex<RepoSet>,
    progress: &dyn Progress,
) -> Result<(), LoadError> {
    let Some((first, rest)) = repos.split_first() else {
        return Ok(());
    };
    let blob_err = |repo: &str| {
        let repo = repo.to_string();
        let digest = digest.clone();
        move |source| LoadError::Blob {
            digest,
            repository: repo,
            source: Box::new(source),
        }
    };
    // What can be sent again, to the repositories that refuse a mount.
    let again = |body: &Option<Source>| match body {
        Some(Source::Memory(b, _)) => Some(BlobBody::Memory(b.clone())),
        Some(Source::Reread(r)) => Some(BlobBody::Reread(r.clone())),
        _ => None,
    };
    let (body, unchecked, kept) = match source {
        Source::Memory(b, unchecked) => (
            BlobBody::Memory(b.clone()),
            unchecked,
            Some(Source::Memory(b, unchecked)),
        ),
        Source::Reread(r) => (BlobBody::Reread(r.clone()), false, Some(Source::Reread(r))),
        Source::Stream(s) => (BlobBody::Stream(s), false, None),
    };
    // A small blob the plan did not HEAD (a first load): the POST opening its session asks
    // for a mount from this same repository, which the registry grants when it has the blob
    // (e.g. a load interrupted after it), so it is not sent again.
    let pushed = if unchecked {
        client
            .upload_unless_present(first, digest, size, body)
            .await
    } else {
        client
            .upload_blob(first, digest, size, body)
            .await
            .map(|()| Pushed::Uploaded)
    }
    .map_err(blob_err(first));
    while let Some(line) = client.take_notice() {
        progress.warn(&line);
    }
    let pushed = pushed?;
    match pushed {
        Pushed::Uploaded => {
            counters.uploaded.fetch_add(1, Ordering::Relaxed);
            counters.bytes.fetch_add(size, Ordering::Relaxed);
        }
        Pushed::Present => {
            counters.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }
    for repo in rest {
        if client
            .mount_blob(repo, digest, first)
            .await
            .map_err(blob_err(repo))?
        {
            counters.mounted.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match again(&kept) {
            Some(body) => {
                let r = client.upload_blob(repo, digest, size, body).await;
                while let Some(line) = client.take_notice() {
                    progress.warn(&line);
                }
                r.map_err(blob_err(repo))?;
                counters.uploaded.fetch_add(1, Ordering::Relaxed);
                counters.bytes.fetch_add(size, Ordering::Relaxed);
            }
            None => {
                pending
                    .lock()
                    .expect("pending lock")
                    .entry(digest.clone())
                    .or_default()
                    .push(repo.clone());
            }
        }
    }
    Ok(())
}

impl Visitor for LoadVisitor {
    fn head(&mut self, head: &Head) -> Result<Flow, BundleError> {
        if self.pass > 1 {
            return Ok(Flow::Continue);
        }
        parse_index(head)?;
        if let Some(want) = &self.opts.expected_id {
            if &head.id() != want {
                let e = LoadError::Inconsistent {
                    path: self.opts.bundle.clone(),
                    reason: format!(
                        "its airgap.json is {}, not the {want} whose signature was checked",
                        head.id()
                    ),
                };
                return Err(self.fail(e));
            }
        }
        self.records = head
            .metadata
            .blobs
            .iter()
            .map(|b| (b.digest.clone(), b.clone()))
            .collect();
        self.base = head.metadata.base.clone();
        self.placements = match super::placements(&head.metadata, &self.opts.target, self.opts.mode)
        {
            Ok(p) => p,
            Err(e) => return Err(self.fail(e.into())),
        };
        self.images = self.placements.len();
        let (refs, of): (Vec<_>, Vec<_>) =
            super::referrers::placements(&head.metadata, &self.placements)
                .into_iter()
                .unzip();
        self.placements.extend(refs);
        self.referrer_of = of;
        self.progress.stage(&format!(
            "loading {} image(s){} into {} ({} mode)",
            self.images,
            match self.referrer_of.len() {
                0 => String::new(),
                n => format!(" and {n} signature(s)/referrer(s)"),
            },
            self.opts.target.host,
            self.opts.mode
        ));
        let rt = self.rt.clone();
        if let Err(e) = rt.block_on(self.check_complete()) {
            return Err(self.fail(e));
        }
        if self.complete.iter().all(|c| *c) {
            self.progress
                .stage("every image is already at the target with the same digest");
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }

    fn blob(
        &mut self,
        record: &BlobRecord,
        content: &mut BlobContent<'_>,
    ) -> Result<Flow, BundleError> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(BundleError::Visitor("an upload failed".into()));
        }
        if record.kind.is_manifest() {
            if self.pass > 1 {
                content.skip();
                return Ok(Flow::Continue);
            }
            let mut buf = Vec::with_capacity(record.size as usize);
            content
                .read_to_end(&mut buf)
                .map_err(|e| corrupt(record, e))?;
            self.graph
                .add(record.digest.clone(), &record.media_type, Bytes::from(buf))
                .map_err(|e| BundleError::Invalid {
                    entry: crate::bundle::blob_entry_name(&record.digest),
                    reason: e.to_string(),
                })?;
            return Ok(Flow::Continue);
        }
        if !self.planned {
            let rt = self.rt.clone();
            if let Err(e) = rt.block_on(self.plan_async()) {
                return Err(self.fail(e));
            }
            if self.needs.is_empty() {
                return Ok(Flow::Stop);
            }
        }
        if self.random.is_some() && !self.big_dispatched {
            self.big_dispatched = true;
            self.dispatch_big()?;
            if self.needs.is_empty() {
                content.skip();
                return Ok(Flow::Stop);
            }
        }
        if !self.needs.contains_key(&record.digest) {
            content.skip();
            return Ok(Flow::Continue);
        }
        self.upload(record, Some(content))?;
        self.needs.remove(&record.digest);
        if self.needs.is_empty() {
            // Everything needed has been read; the rest of the stream holds nothing for us.
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }
}
