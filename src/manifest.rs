//! Just enough of the OCI and Docker manifest formats to walk an image graph.
//!
//! Manifests are always kept as the exact bytes the registry served (their digest is the
//! digest of those bytes); these types are only a read-only view used to find children.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::platform::Platform;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What we ask registries for, in order of preference.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Registries and the bundle refuse manifests larger than this (distribution uses 4 MiB too).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<DescriptorPlatform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DescriptorPlatform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

impl DescriptorPlatform {
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }
}

/// The parts of a manifest or index we walk. Unknown fields are ignored: the bytes are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestView {
    #[serde(default)]
    pub schema_version: Option<u32>,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub subject: Option<Descriptor>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {digest} is not valid JSON: {source}")]
    Json {
        digest: Digest,
        source: serde_json::Error,
    },
    #[error("manifest {digest} has unsupported media type {media_type:?} (schema 1 and other formats cannot be carried)")]
    MediaType { digest: Digest, media_type: String },
}

impl ManifestView {
    /// Parses `bytes`. `served_type` is the Content-Type or descriptor media type, used when
    /// the JSON itself carries none (allowed for OCI manifests).
    pub fn parse(
        bytes: &[u8],
        served_type: &str,
        digest: &Digest,
    ) -> Result<(Self, String), ManifestError> {
        let view: ManifestView =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
                digest: digest.clone(),
                source,
            })?;
        let media_type = match view.media_type.as_deref() {
            Some(t) if !t.is_empty() => t.to_string(),
            _ if is_index(served_type) || is_manifest(served_type) => served_type.to_string(),
            _ if !view.manifests.is_empty() => OCI_INDEX.to_string(),
            _ if view.config.is_some() => OCI_MANIFEST.to_string(),
            _ => served_type.to_string(),
        };
        if !is_index(&media_type) && !is_manifest(&media_type) {
            return Err(ManifestError::MediaType {
                digest: digest.clone(),
                media_type,
            });
        }
        Ok((view, media_type))
    }

    /// Blobs this image manifest needs: the config, then the layers. Layers with `urls`
    /// (non-distributable "foreign" layers) are still fetched when the registry has them.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(self.layers.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_index_without_media_type() {
        let d = Digest::of(b"x");
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}}]}}"#
        );
        let (v, t) = ManifestView::parse(json.as_bytes(), "application/json", &d).unwrap();
        assert_eq!(t, OCI_INDEX);
        let p = v.manifests[0].platform.as_ref().unwrap().platform();
        assert_eq!(p.to_string(), "linux/arm/v7");
    }

    #[test]
    fn rejects_schema1() {
        let d = Digest::of(b"x");
        let json = br#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#;
        let e = ManifestView::parse(json, "", &d).unwrap_err();
        assert!(e.to_string().contains("schema 1"), "{e}");
    }
}
