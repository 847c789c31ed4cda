//! `inspect` (reads only the head) and `verify` (reads everything, offline).

use std::collections::{HashMap, HashSet};
use std::io::Read;

use super::reader::{read_bundle, BlobContent, Flow, Head, Visitor};
use super::{
    BlobKind, BlobRecord, BundleError, Metadata, INDEX_NAME, LAYOUT_NAME, OCI_LAYOUT_CONTENT,
    REF_NAME_ANNOTATION,
};
use crate::digest::Digest;
use crate::manifest::{Descriptor, ManifestView};

#[derive(Debug, Clone)]
pub struct Inspection {
    pub metadata: Metadata,
    /// The bundle's identity (sha256 of its `airgap.json`).
    pub id: Digest,
    /// `airgap.json` as stored, e.g. to keep as the base of a later delta.
    pub metadata_raw: Vec<u8>,
    pub k8s_files: Vec<String>,
}

/// The head with the Kubernetes files' contents.
#[derive(Debug, Clone)]
pub struct InspectionWithFiles {
    pub metadata: Metadata,
    pub k8s: Vec<(String, Vec<u8>)>,
}

/// Reads a bundle up to its first blob.
fn read_head(input: impl Read) -> Result<Head, BundleError> {
    struct V(Option<Head>);
    impl Visitor for V {
        fn head(&mut self, head: &Head) -> Result<Flow, BundleError> {
            self.0 = Some(head.clone());
            Ok(Flow::Stop)
        }
        fn blob(&mut self, _: &BlobRecord, _: &mut BlobContent<'_>) -> Result<Flow, BundleError> {
            Ok(Flow::Stop)
        }
    }
    let mut v = V(None);
    read_bundle(input, &mut v)?;
    v.0.ok_or_else(|| BundleError::Missing {
        what: "the bundle head".into(),
    })
}

/// Reads the head of a bundle, keeping the Kubernetes files (for rewriting).
pub fn inspect_with_files(input: impl Read) -> Result<InspectionWithFiles, BundleError> {
    let head = read_head(input)?;
    Ok(InspectionWithFiles {
        metadata: head.metadata,
        k8s: head.k8s,
    })
}

/// Reads just the head of a bundle: cheap even for a huge bundle.
pub fn inspect(input: impl Read) -> Result<Inspection, BundleError> {
    let head = read_head(input)?;
    Ok(Inspection {
        id: head.id(),
        k8s_files: head.k8s.iter().map(|(p, _)| p.clone()).collect(),
        metadata: head.metadata,
        metadata_raw: head.metadata_raw,
    })
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Set for a delta bundle: the base it needs.
    pub base: Option<super::BaseRef>,
    /// The bundle's identity (see [`Head::id`]); `None` only before the head was read.
    pub id: Option<Digest>,
    /// The images the verified content holds, as its `airgap.json` lists them.
    pub image_records: Vec<super::ImageRecord>,
    pub images: usize,
    pub blobs: usize,
    pub bytes: u64,
    pub k8s_files: usize,
    /// Every entry where the stream put it (compared with the seek table).
    pub entries: Vec<super::seek::EntryLoc>,
    /// The bundle has a seek table, and it matches the stream (see [`verify_path`]).
    pub seekable: bool,
}

/// Parses `index.json` and checks it against the metadata: one entry per image, each with
/// its reference annotation and digest.
pub fn parse_index(head: &Head) -> Result<Vec<Descriptor>, BundleError> {
    let invalid = |reason: String| BundleError::Invalid {
        entry: INDEX_NAME.into(),
        reason,
    };
    let view: ManifestView =
        serde_json::from_slice(&head.index).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    for img in &head.metadata.images {
        let found = view.manifests.iter().any(|d| {
            d.digest == img.digest
                && d.annotations
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME_ANNOTATION))
                    .and_then(|v| v.as_str())
                    == Some(&img.reference.to_string())
        });
        if !found {
            return Err(invalid(format!(
                "no entry for image {} ({})",
                img.reference, img.digest
            )));
        }
    }
    Ok(view.manifests)
}

/// Reads the whole bundle and checks every blob's digest and size, that every manifest's
/// children are present, and that no entry is unexpected.
pub fn verify(input: impl Read) -> Result<VerifyReport, BundleError> {
    verify_with(|v| read_bundle(input, v))
}

/// [`verify`] of any source that drives a visitor as the bundle reader does (a foreign
/// archive, `crate::archive`).
pub fn verify_with(
    read: impl FnOnce(&mut dyn Visitor) -> Result<(), BundleError>,
) -> Result<VerifyReport, BundleError> {
    struct V {
        report: VerifyReport,
        records: HashMap<Digest, (BlobKind, u64)>,
        tops: Vec<Descriptor>,
        children: Vec<(Digest, Descriptor)>,
    }
    impl Visitor for V {
        fn head(&mut self, head: &Head) -> Result<Flow, BundleError> {
            if head.layout != OCI_LAYOUT_CONTENT {
                let v: serde_json::Value =
                    serde_json::from_slice(&head.layout).map_err(|e| BundleError::Invalid {
                        entry: LAYOUT_NAME.into(),
                        reason: e.to_string(),
                    })?;
                if v.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
                    return Err(BundleError::Invalid {
                        entry: LAYOUT_NAME.into(),
                        reason: "imageLayoutVersion is not 1.0.0".into(),
                    });
                }
            }
            self.tops = parse_index(head)?;
            // A delta's children may be in its base: present for the graph check, but
            // never in this stream (the reader refuses them as unlisted).
            self.records = head
                .metadata
                .blobs
                .iter()
                .chain(head.metadata.base.iter().flat_map(|b| b.blobs.iter()))
                .map(|b| (b.digest.clone(), (b.kind, b.size)))
                .collect();
            self.report.base = head.metadata.base.clone();
            self.report.images = head.metadata.images.len();
            self.report.id = Some(head.id());
            self.report.image_records = head.metadata.images.clone();
            self.report.k8s_files = head.k8s.len();
            Ok(Flow::Continue)
        }
        fn blob(
            &mut self,
            record: &BlobRecord,
            content: &mut BlobContent<'_>,
        ) -> Result<Flow, BundleError> {
            self.report.blobs += 1;
            self.report.bytes += record.size;
            if record.kind.is_manifest() {
                let mut bytes = Vec::with_capacity(record.size as usize);
                content
                    .read_to_end(&mut bytes)
                    .map_err(|e| BundleError::Corrupt {
                        entry: super::blob_entry_name(&record.digest),
                        reason: e.to_string(),
                    })?;
                let (view, _) = ManifestView::parse(&bytes, &record.media_type, &record.digest)
                    .map_err(|e| BundleError::Invalid {
                        entry: super::blob_entry_name(&record.digest),
                        reason: e.to_string(),
                    })?;
                for d in view.manifests.iter().chain(view.blobs()) {
                    self.children.push((record.digest.clone(), d.clone()));
                }
            }
            Ok(Flow::Continue)
        }
        fn entry(&mut self, location: &super::seek::EntryLoc) {
            self.report.entries.push(location.clone());
        }
    }
    let mut v = V {
        report: VerifyReport::default(),
        records: HashMap::new(),
        tops: Vec::new(),
        children: Vec::new(),
    };
    read(&mut v)?;
    // The stream was complete, so every listed blob is present; check the graph's edges.
    let mut referenced = HashSet::new();
    for top in &v.tops {
        let Some((_, size)) = v.records.get(&top.digest).filter(|(k, _)| k.is_manifest()) else {
            return Err(BundleError::Missing {
                what: format!("manifest {} named by index.json", top.digest),
            });
        };
        // index.json has no digest of its own: its sizes must agree with the records.
        if *size != top.size {
            return Err(BundleError::SizeMismatch {
                digest: top.digest.clone(),
                expected: top.size,
                actual: *size,
            });
        }
        referenced.insert(top.digest.clone());
    }
    for (parent, child) in &v.children {
        match v.records.get(&child.digest) {
            None => {
                return Err(BundleError::Missing {
                    what: format!("blob {} referenced by manifest {parent}", child.digest),
                })
            }
            Some((_, size)) if *size != child.size => {
                return Err(BundleError::SizeMismatch {
                    digest: child.digest.clone(),
                    expected: child.size,
                    actual: *size,
                })
            }
            _ => {}
        }
        referenced.insert(child.digest.clone());
    }
    if let Some(orphan) = v.records.keys().find(|d| !referenced.contains(*d)) {
        return Err(BundleError::UnexpectedEntry {
            entry: super::blob_entry_name(orphan),
            reason: "no manifest refers to this blob".into(),
        });
    }
    Ok(v.report)
}

/// [`verify`] of a bundle file or split set, plus its seek table when it has one: the table
/// must list exactly the entries the stream holds, and its frames must be where it says.
pub fn verify_path(path: &std::path::Path) -> Result<VerifyReport, BundleError> {
    let mut report = verify(super::open_input(path)?)?;
    let src = super::seek::open_read_at(path)?;
    if let Some(index) = super::seek::read_trailer(src.as_ref())? {
        super::seek::check_frames(src.as_ref(), &index)?;
        if index.entries != report.entries {
            let first = index
                .entries
                .iter()
                .zip(&report.entries)
                .find(|(a, b)| a != b)
                .map(|(a, _)| a.name.clone())
                .unwrap_or_else(|| "the entry count".into());
            return Err(BundleError::Corrupt {
                entry: "the seek table".into(),
                reason: format!("its entry index disagrees with the archive at {first}"),
            });
        }
        report.seekable = true;
    }
    Ok(report)
}
