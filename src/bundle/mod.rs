//! The bundle format (bundle-spec/FORMAT.md): a zstd-compressed tar holding an OCI image
//! layout plus `airgap.json`, ordered so a reader learns the whole plan before any layer.
//!
//! Entry order: `airgap.json`, `oci-layout`, `index.json`, `manifests/…` (Kubernetes YAML),
//! then `blobs/sha256/<hex>`: indexes and manifests, configs, layers.

mod base;
pub mod chunks;
mod frames;
mod reader;
pub mod seek;
#[cfg(test)]
mod seek_tests;
mod skipping;
#[cfg(test)]
mod tests;
mod verify;
pub mod volume;
mod writer;

pub use base::{read_base, BaseBundle};
pub use reader::{read_bundle, read_bundle_indexed, BlobContent, Flow, Head, Visitor};
pub use verify::{
    inspect, inspect_with_files, parse_index, verify, verify_path, verify_with, Inspection,
    InspectionWithFiles, VerifyReport,
};
pub use writer::BundleWriter;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::image_rules::ImageRules;
use crate::platform::Platform;
use crate::reference::Reference;

/// The format version this airgap writes and reads. A reader refuses a newer one.
pub const FORMAT_VERSION: u32 = 1;
pub const METADATA_NAME: &str = "airgap.json";
pub const LAYOUT_NAME: &str = "oci-layout";
pub const INDEX_NAME: &str = "index.json";
pub const MANIFESTS_DIR: &str = "manifests/";
pub const BLOBS_DIR: &str = "blobs/sha256/";
pub const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Limits on entries read into memory, so a hostile header cannot make us allocate.
pub const MAX_METADATA_SIZE: u64 = 64 * 1024 * 1024;
pub const MAX_INDEX_SIZE: u64 = 64 * 1024 * 1024;
pub const MAX_K8S_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// `airgap.json`: everything a loader needs to plan before the first layer arrives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub format_version: u32,
    /// `airgap <version>` that wrote the bundle.
    pub tool: String,
    /// The spec file's name (not its path: paths can leak user names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    /// The platform filter in force (empty: every platform).
    #[serde(default)]
    pub platforms: Vec<Platform>,
    pub images: Vec<ImageRecord>,
    /// Every blob. Indexes and manifests come first in the stream, then configs, then layers
    /// (in any order).
    pub blobs: Vec<BlobRecord>,
    /// Kubernetes YAML carried under `manifests/`.
    #[serde(default)]
    pub manifests: Vec<FileRecord>,
    /// Sum of all blob sizes.
    pub total_size: u64,
    /// Set when this is a delta bundle: the blobs it leaves out because its base carries them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseRef>,
    /// Where the carried manifests hold images besides pod specs (the spec's `imageFields:`
    /// and `relatedImageEnv:`), for `load --manifests-out`. Left out when default.
    #[serde(default, skip_serializing_if = "ImageRules::is_default")]
    pub image_rules: ImageRules,
}

/// The bundle a delta was made against.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BaseRef {
    /// The base's identity: the sha256 of its `airgap.json`.
    pub id: Digest,
    /// The base bundle's file name when the delta was made (for messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The base's images, so a loader can mount left-out blobs from where the base put them.
    pub images: Vec<Reference>,
    /// Blobs the images of this bundle need that only the base carries.
    pub blobs: Vec<BlobRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    /// Normalised reference; also the `ref.name` annotation in `index.json`.
    pub reference: Reference,
    /// Where it came from: the spec's source name, or `image` for the plain form.
    pub source: String,
    /// Digest of the top manifest or index as stored in the bundle.
    pub digest: Digest,
    /// The digest the registry served, when platform filtering made a new index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<Digest>,
    pub media_type: String,
    /// Size of the top manifest.
    pub size: u64,
    pub platforms: Vec<Platform>,
    /// Bytes of every blob this image needs (manifests, configs, layers; each once), its
    /// referrers' included.
    pub total_size: u64,
    /// What refers to the image or one of its child manifests (signatures, attestations,
    /// SBOMs), carried like images. Absent in bundles before it existed, and when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<ReferrerRecord>,
    /// For an OCI artifact that is not an image (a Helm chart, a WASM module, a policy
    /// bundle): its `artifactType`, else its config's media type. Absent for images and in
    /// bundles before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// For a Helm chart: its name and version (the manifest's title and version annotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<ChartRecord>,
}

/// A Helm chart's name and version, as `helm push` annotates its manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChartRecord {
    pub name: String,
    pub version: String,
}

/// A manifest that refers to an image: a cosign tag-scheme attachment (`tag` set) or an
/// OCI 1.1 referrer (a manifest whose `subject` is the image; pushed by digest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReferrerRecord {
    /// The manifest referred to: the image's top manifest or one of its children.
    pub subject: Digest,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// `artifactType`, else the config's media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The cosign tag it was found under (`sha256-<hex>.sig`, `.att`, `.sbom`), kept at the
    /// target; absent for an OCI 1.1 referrer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    /// An image index or manifest list.
    Index,
    /// An image manifest.
    Manifest,
    Config,
    Layer,
}

impl BlobKind {
    pub fn is_manifest(self) -> bool {
        matches!(self, BlobKind::Index | BlobKind::Manifest)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BlobRecord {
    pub digest: Digest,
    pub size: u64,
    pub kind: BlobKind,
    pub media_type: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FileRecord {
    /// Path below `manifests/`, with `/` separators.
    pub path: String,
    pub size: u64,
    pub digest: Digest,
}

pub fn blob_entry_name(d: &Digest) -> String {
    format!("{BLOBS_DIR}{}", d.hex())
}

/// Errors reading or writing a bundle. Each names the entry, digest or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("reading {}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing entry {entry}")]
    Write {
        entry: String,
        source: std::io::Error,
    },
    #[error("bundle is truncated or unreadable at {entry}: {reason}")]
    Corrupt { entry: String, reason: String },
    #[error("this is not an airgap bundle: {0}")]
    NotABundle(String),
    #[error(
        "bundle format version {found} is newer than this airgap understands ({FORMAT_VERSION})"
    )]
    FutureVersion { found: u32 },
    #[error("blob {digest} does not match its digest (content hashes to {actual})")]
    DigestMismatch { digest: Digest, actual: Digest },
    /// `serve`'s shared frames: a frame decoded again hashes differently from the same
    /// frame in an earlier read whose blob matched its digest.
    #[error(
        "blob {digest}: its bytes in frame {frame} (tar offset {offset}) differ from those \
         an earlier read of it verified: the bundle file changed while it was served"
    )]
    FrameMismatch {
        digest: Digest,
        frame: usize,
        offset: u64,
    },
    #[error("blob {digest} is {actual} bytes, but {expected} were declared")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("unexpected entry {entry:?} in bundle: {reason}")]
    UnexpectedEntry { entry: String, reason: String },
    #[error("entry {entry} appears twice in the bundle")]
    Duplicate { entry: String },
    #[error("blob {digest} is listed in airgap.json but missing from the bundle")]
    MissingBlob { digest: Digest },
    #[error("{what} is missing from the bundle")]
    Missing { what: String },
    #[error("{entry} is larger than the {limit}-byte limit for it")]
    TooLarge { entry: String, limit: u64 },
    #[error("invalid {entry}: {reason}")]
    Invalid { entry: String, reason: String },
    /// An image in a foreign archive (`crate::archive`) whose annotations give no full
    /// reference.
    #[error("{manifest} in {entry} has no full reference ({annotation}: {value})")]
    Unnamed {
        entry: String,
        manifest: Digest,
        annotation: String,
        value: String,
    },
    #[error("stopped: {0}")]
    Visitor(String),
    #[error(transparent)]
    Volume(#[from] volume::VolumeError),
}

impl BundleError {
    pub fn hint(&self) -> Option<String> {
        match self {
            BundleError::FutureVersion { .. } => Some("upgrade airgap to read this bundle".into()),
            BundleError::Volume(e) => e.hint(),
            BundleError::Unnamed { .. } => {
                Some("pass --repository NAME to load bare tags as NAME:TAG".into())
            }
            _ => None,
        }
    }
}

/// Opens a bundle for one streaming pass: a single file, or a split set named by any of
/// its parts, its sidecar or its base name (read as one stream, never joined on disk).
pub fn open_input(path: &std::path::Path) -> Result<Box<dyn std::io::Read + Send>, BundleError> {
    if crate::bundle::volume::is_split(path) {
        let r = crate::bundle::volume::MultiPartReader::open(path)?;
        return Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, r)));
    }
    let f = std::fs::File::open(path).map_err(|source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
}
