//! One pass over a bundle stream, verifying as it goes; nothing is extracted to disk.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};

use super::{
    BlobRecord, BundleError, Metadata, BLOBS_DIR, FORMAT_VERSION, INDEX_NAME, LAYOUT_NAME,
    MANIFESTS_DIR, MAX_INDEX_SIZE, MAX_K8S_FILE_SIZE, MAX_METADATA_SIZE, METADATA_NAME,
};
use crate::digest::{Digest, Hasher};
use crate::manifest::MAX_MANIFEST_SIZE;

/// Everything before the first blob: the plan.
#[derive(Debug, Clone)]
pub struct Head {
    pub metadata: Metadata,
    /// `airgap.json` exactly as stored: its digest identifies the bundle (see `id`).
    pub metadata_raw: Vec<u8>,
    pub index: Vec<u8>,
    pub layout: Vec<u8>,
    /// Kubernetes files: path below `manifests/`, content.
    pub k8s: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The bundle's identity: the digest of its `airgap.json` (what a delta names as base).
    pub fn id(&self) -> Digest {
        Digest::of(&self.metadata_raw)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The visitor has what it needs; stop reading (no end-of-stream checks are made).
    Stop,
}

pub trait Visitor {
    fn head(&mut self, head: &Head) -> Result<Flow, BundleError>;
    /// Called for every blob in stream order. The visitor may read `content` (verified as it
    /// passes) or not; what it leaves unread is drained and verified after it returns, unless
    /// it called `content.skip()`.
    fn blob(
        &mut self,
        record: &BlobRecord,
        content: &mut BlobContent<'_>,
    ) -> Result<Flow, BundleError>;
    /// Called for every entry before it is read: where its content lies in the tar (verify
    /// compares this with the seek table).
    fn entry(&mut self, _location: &super::seek::EntryLoc) {}
}

/// A blob's bytes as they come out of the stream. Reading past the end yields an
/// `InvalidData` error if the content did not match its record, so an upload fed from this
/// reader fails rather than completing with bad bytes.
pub struct BlobContent<'a> {
    inner: &'a mut dyn Read,
    record: &'a BlobRecord,
    hasher: Option<Hasher>,
    failure: Option<BundleError>,
    done: bool,
}

impl<'a> BlobContent<'a> {
    /// A blob read from a source other than a bundle stream (`crate::archive`), verified the
    /// same way.
    pub(crate) fn new(inner: &'a mut dyn Read, record: &'a BlobRecord) -> Self {
        BlobContent {
            inner,
            record,
            hasher: Some(Hasher::new()),
            failure: None,
            done: false,
        }
    }
    pub fn record(&self) -> &BlobRecord {
        self.record
    }
    /// Do not verify this blob: the visitor does not use it (e.g. the registry has it).
    pub fn skip(&mut self) {
        self.hasher = None;
    }
    fn check_end(&mut self) -> Result<(), BundleError> {
        if let Some(h) = self.hasher.take() {
            let (actual, n) = h.finish();
            if n != self.record.size {
                return Err(BundleError::SizeMismatch {
                    digest: self.record.digest.clone(),
                    expected: self.record.size,
                    actual: n,
                });
            }
            if actual != self.record.digest {
                return Err(BundleError::DigestMismatch {
                    digest: self.record.digest.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }
    /// Reads the rest (verifying) and returns the verdict.
    pub(crate) fn finish(mut self) -> Result<(), BundleError> {
        if let Some(f) = self.failure.take() {
            return Err(f);
        }
        // A skipped blob needs no draining: tar skips what is left of an entry by itself.
        if !self.done && self.hasher.is_some() {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match self.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        return Err(self.failure.take().unwrap_or(BundleError::Corrupt {
                            entry: super::blob_entry_name(&self.record.digest),
                            reason: e.to_string(),
                        }))
                    }
                }
            }
        }
        match self.failure.take() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }
}

impl Read for BlobContent<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.done = true;
            if let Err(e) = self.check_end() {
                let msg = e.to_string();
                self.failure = Some(e);
                return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
            }
            return Ok(0);
        }
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

fn corrupt(entry: &str) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |e| BundleError::Corrupt {
        entry: entry.to_string(),
        reason: e.to_string(),
    }
}

fn read_small(
    r: &mut impl Read,
    entry: &str,
    size: u64,
    limit: u64,
) -> Result<Vec<u8>, BundleError> {
    if size > limit {
        return Err(BundleError::TooLarge {
            entry: entry.to_string(),
            limit,
        });
    }
    let mut buf = Vec::with_capacity(size as usize);
    r.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(corrupt(entry))?;
    if buf.len() as u64 != size {
        return Err(BundleError::Corrupt {
            entry: entry.to_string(),
            reason: format!("{} bytes read, {} declared", buf.len(), size),
        });
    }
    Ok(buf)
}

/// Checks a k8s manifest path: relative, no `..`, no empty or `.` components.
fn valid_k8s_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Reads a bundle (a zstd-compressed tar stream) once, verifying every entry, calling the
/// visitor with the head and then each blob.
pub fn read_bundle(input: impl Read, visitor: &mut dyn Visitor) -> Result<(), BundleError> {
    // Tell "not a bundle at all" from "a bundle cut short" by the zstd magic number.
    let mut input = std::io::BufReader::new(input);
    let start =
        std::io::BufRead::fill_buf(&mut input).map_err(corrupt("the start of the bundle"))?;
    if start.is_empty() {
        return Err(BundleError::NotABundle("the file is empty".into()));
    }
    let n = start.len().min(ZSTD_MAGIC.len());
    if start[..n] != ZSTD_MAGIC[..n] || n < ZSTD_MAGIC.len() {
        return Err(BundleError::NotABundle(format!(
            "not zstd-compressed (it starts with {:02x?}; an airgap bundle is a .tar.zst)",
            &start[..n]
        )));
    }
    let decoder = zstd::stream::Decoder::with_buffer(input)
        .map_err(|e| BundleError::NotABundle(format!("cannot start zstd decompression: {e}")))?;
    let mut archive = tar::Archive::new(decoder);
    let entries = archive
        .entries()
        .map_err(|e| map_start_error(e, "the first entry"))?;
    if visit_entries(entries, visitor)? == Flow::Stop {
        return Ok(());
    }
    check_tail(archive.into_inner())
}

/// [`read_bundle`] for a bundle with a seek table: what the visitor skips is jumped over,
/// neither read from disk nor decompressed.
pub fn read_bundle_indexed(
    src: std::sync::Arc<dyn super::seek::ReadAt>,
    index: std::sync::Arc<super::seek::SeekIndex>,
    visitor: &mut dyn Visitor,
) -> Result<(), BundleError> {
    let mut archive = tar::Archive::new(super::skipping::SkippingStream::new(src, index));
    let entries = archive
        .entries_with_seek()
        .map_err(|e| map_start_error(e, "the first entry"))?;
    if visit_entries(entries, visitor)? == Flow::Stop {
        return Ok(());
    }
    check_tail(archive.into_inner())
}

/// Verifies each entry and hands it to the visitor; `Stop` when the visitor stopped.
fn visit_entries<R: Read>(
    entries: tar::Entries<'_, R>,
    visitor: &mut dyn Visitor,
) -> Result<Flow, BundleError> {
    let mut metadata: Option<Metadata> = None;
    let mut metadata_raw = Vec::new();
    let mut records: HashMap<Digest, BlobRecord> = HashMap::new();
    let mut head = None::<Head>;
    let mut index = None;
    let mut layout = None;
    let mut k8s = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut head_sent = false;
    let mut first = true;

    for entry in entries {
        let mut entry = entry.map_err(|e| {
            if first {
                map_start_error(e, "the first entry")
            } else {
                BundleError::Corrupt {
                    entry: "the entry after the last good one".into(),
                    reason: e.to_string(),
                }
            }
        })?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind != tar::EntryType::Regular && kind != tar::EntryType::Continuous {
            return Err(BundleError::UnexpectedEntry {
                entry: name,
                reason: format!(
                    "only regular files may appear, this is a {}",
                    entry_kind(kind)
                ),
            });
        }
        if !seen.insert(name.clone()) {
            return Err(BundleError::Duplicate { entry: name });
        }
        // The size tar will read: a PAX `size` record overrides the header's field, so the
        // header alone could agree with airgap.json while the entry holds something else.
        let size = entry.size();
        visitor.entry(&super::seek::EntryLoc {
            name: name.clone(),
            offset: entry.raw_file_position(),
            size,
        });
        if first {
            first = false;
            if name != METADATA_NAME {
                return Err(BundleError::NotABundle(format!(
                    "the first entry is {name:?}, not {METADATA_NAME} (was this made by airgap?)"
                )));
            }
            let bytes = read_small(&mut entry, &name, size, MAX_METADATA_SIZE)?;
            let md = parse_metadata(&bytes)?;
            metadata_raw = bytes;
            for b in &md.blobs {
                if records.insert(b.digest.clone(), b.clone()).is_some() {
                    return Err(BundleError::Invalid {
                        entry: METADATA_NAME.into(),
                        reason: format!("blob {} is listed twice", b.digest),
                    });
                }
            }
            metadata = Some(md);
            continue;
        }
        if let Some(hex) = name.strip_prefix(BLOBS_DIR) {
            let digest = Digest::parse(&format!("sha256:{hex}")).map_err(|e| {
                BundleError::UnexpectedEntry {
                    entry: name.clone(),
                    reason: e.to_string(),
                }
            })?;
            let record = records
                .get(&digest)
                .ok_or_else(|| BundleError::UnexpectedEntry {
                    entry: name.clone(),
                    reason: "this blob is not listed in airgap.json".into(),
                })?;
            if size != record.size {
                return Err(BundleError::SizeMismatch {
                    digest,
                    expected: record.size,
                    actual: size,
                });
            }
            if record.kind.is_manifest() && size > MAX_MANIFEST_SIZE {
                return Err(BundleError::TooLarge {
                    entry: name,
                    limit: MAX_MANIFEST_SIZE,
                });
            }
            if !head_sent {
                head_sent = true;
                let h = build_head(
                    &mut metadata_raw,
                    &mut metadata,
                    &mut index,
                    &mut layout,
                    &mut k8s,
                )?;
                if visitor.head(&h)? == Flow::Stop {
                    return Ok(Flow::Stop);
                }
                head = Some(h);
            }
            let mut content = BlobContent {
                inner: &mut entry,
                record,
                hasher: Some(Hasher::new()),
                failure: None,
                done: false,
            };
            let flow = visitor.blob(record, &mut content);
            // A verification failure explains a visitor error better than the visitor does.
            let verdict = content.finish();
            verdict?;
            if flow? == Flow::Stop {
                return Ok(Flow::Stop);
            }
            continue;
        }
        if head_sent {
            return Err(BundleError::UnexpectedEntry {
                entry: name,
                reason: "metadata entries must come before the first blob".into(),
            });
        }
        match name.as_str() {
            INDEX_NAME => index = Some(read_small(&mut entry, &name, size, MAX_INDEX_SIZE)?),
            LAYOUT_NAME => layout = Some(read_small(&mut entry, &name, size, 4096)?),
            n if n.starts_with(MANIFESTS_DIR) && valid_k8s_path(&n[MANIFESTS_DIR.len()..]) => {
                let bytes = read_small(&mut entry, &name, size, MAX_K8S_FILE_SIZE)?;
                k8s.push((n[MANIFESTS_DIR.len()..].to_string(), bytes));
            }
            _ => {
                return Err(BundleError::UnexpectedEntry {
                    entry: name,
                    reason: "bundles hold only airgap.json, oci-layout, index.json, manifests/… and blobs/sha256/<hex>".into(),
                })
            }
        }
    }
    if first {
        return Err(BundleError::NotABundle("the archive is empty".into()));
    }
    let head = match head {
        Some(h) => h,
        None => {
            let h = build_head(
                &mut metadata_raw,
                &mut metadata,
                &mut index,
                &mut layout,
                &mut k8s,
            )?;
            if visitor.head(&h)? == Flow::Stop {
                return Ok(Flow::Stop);
            }
            h
        }
    };
    for b in &head.metadata.blobs {
        if !seen.contains(&super::blob_entry_name(&b.digest)) {
            return Err(BundleError::MissingBlob {
                digest: b.digest.clone(),
            });
        }
    }
    Ok(Flow::Continue)
}

/// After the tar's end, only zero padding may follow; garbage or a broken zstd frame here
/// means the file was damaged or appended to.
fn check_tail(mut rest: impl Read) -> Result<(), BundleError> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = rest.read(&mut buf).map_err(|e| BundleError::Corrupt {
            entry: "the end of the bundle".into(),
            reason: e.to_string(),
        })?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(BundleError::Corrupt {
                entry: "the end of the bundle".into(),
                reason: "unexpected data after the end of the archive".into(),
            });
        }
    }
    Ok(())
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The stream starts with the zstd magic, so a failure before the first entry is damage or
/// truncation, not a wrong file type.
fn map_start_error(e: io::Error, entry: &str) -> BundleError {
    BundleError::Corrupt {
        entry: entry.to_string(),
        reason: format!("truncated or damaged: {e}"),
    }
}

fn entry_kind(k: tar::EntryType) -> &'static str {
    match k {
        tar::EntryType::Symlink => "symbolic link",
        tar::EntryType::Link => "hard link",
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Directory => "directory",
        tar::EntryType::Fifo => "FIFO",
        _ => "special entry",
    }
}

fn parse_metadata(bytes: &[u8]) -> Result<Metadata, BundleError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct VersionOnly {
        format_version: u32,
    }
    let v: VersionOnly = serde_json::from_slice(bytes).map_err(|e| BundleError::Invalid {
        entry: METADATA_NAME.into(),
        reason: e.to_string(),
    })?;
    if v.format_version > FORMAT_VERSION {
        return Err(BundleError::FutureVersion {
            found: v.format_version,
        });
    }
    if v.format_version == 0 {
        return Err(BundleError::Invalid {
            entry: METADATA_NAME.into(),
            reason: "formatVersion 0 does not exist".into(),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| BundleError::Invalid {
        entry: METADATA_NAME.into(),
        reason: e.to_string(),
    })
}

fn build_head(
    metadata_raw: &mut Vec<u8>,
    metadata: &mut Option<Metadata>,
    index: &mut Option<Vec<u8>>,
    layout: &mut Option<Vec<u8>>,
    k8s: &mut Vec<(String, Vec<u8>)>,
) -> Result<Head, BundleError> {
    let metadata = metadata.take().ok_or_else(|| BundleError::Missing {
        what: METADATA_NAME.into(),
    })?;
    let index = index.take().ok_or_else(|| BundleError::Missing {
        what: INDEX_NAME.into(),
    })?;
    let layout = layout.take().ok_or_else(|| BundleError::Missing {
        what: LAYOUT_NAME.into(),
    })?;
    let listed: HashSet<&str> = metadata.manifests.iter().map(|f| f.path.as_str()).collect();
    for (p, bytes) in k8s.iter() {
        let rec = metadata.manifests.iter().find(|f| &f.path == p);
        match rec {
            None => {
                return Err(BundleError::UnexpectedEntry {
                    entry: format!("{MANIFESTS_DIR}{p}"),
                    reason: "not listed in airgap.json".into(),
                })
            }
            Some(r) if Digest::of(bytes) != r.digest => {
                return Err(BundleError::DigestMismatch {
                    digest: r.digest.clone(),
                    actual: Digest::of(bytes),
                })
            }
            _ => {}
        }
    }
    if listed.len() != k8s.len() {
        let have: HashSet<&str> = k8s.iter().map(|(p, _)| p.as_str()).collect();
        if let Some(m) = listed.iter().find(|p| !have.contains(**p)) {
            return Err(BundleError::Missing {
                what: format!("{MANIFESTS_DIR}{m}"),
            });
        }
    }
    Ok(Head {
        metadata,
        metadata_raw: std::mem::take(metadata_raw),
        index,
        layout,
        k8s: std::mem::take(k8s),
    })
}
