//! The image map: for every image of a bundle, the name it had and the name it gets in the
//! target registry. `load --image-map` writes it; `rewrite --image-map` reads it.

use std::path::Path;

use crate::digest::Digest;
use crate::reference::Reference;

pub const IMAGE_MAP_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageMapEntry {
    /// The normalised source reference as recorded in the bundle (tag and/or digest).
    pub source: Reference,
    /// Where the image lives in the target registry (tag kept; digest-only images have none).
    pub target: Reference,
    /// The digest of what was pushed (a platform-filtered index has a new digest).
    pub digest: Digest,
    /// The digest the source registry served, when it differs from `digest` (platform filtering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<Digest>,
    /// For a Helm chart: its name and version (`helm install oci://TARGET-REPO --version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<crate::bundle::ChartRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageMap {
    pub version: u32,
    pub images: Vec<ImageMapEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageMapError {
    #[error("cannot read image map {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("image map {path} is not valid: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error(
        "image map {path} has version {found}; this airgap understands version {IMAGE_MAP_VERSION}"
    )]
    Version { path: String, found: u32 },
}

impl ImageMap {
    pub fn new(images: Vec<ImageMapEntry>) -> Self {
        ImageMap {
            version: IMAGE_MAP_VERSION,
            images,
        }
    }

    pub fn read(path: &Path) -> Result<Self, ImageMapError> {
        let p = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| ImageMapError::Io {
            path: p.clone(),
            source,
        })?;
        let map: ImageMap =
            serde_json::from_slice(&text).map_err(|source| ImageMapError::Parse {
                path: p.clone(),
                source,
            })?;
        if map.version != IMAGE_MAP_VERSION {
            return Err(ImageMapError::Version {
                path: p,
                found: map.version,
            });
        }
        Ok(map)
    }

    /// Finds the entry a manifest's image reference means, after normalisation:
    /// same repository, and the same tag (implied `latest` when there is neither tag nor
    /// digest) and/or the same digest (pushed or source digest).
    pub fn lookup(&self, reference: &Reference) -> Option<&ImageMapEntry> {
        let want = reference.with_default_tag();
        self.images.iter().find(|e| {
            if e.source.name() != want.name() {
                return false;
            }
            match (want.digest(), want.tag()) {
                (Some(d), _) => {
                    &e.digest == d
                        || e.source_digest.as_ref() == Some(d)
                        || e.source.digest() == Some(d)
                }
                (None, Some(t)) => e.source.tag() == Some(t),
                (None, None) => false,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(src: &str, tgt: &str, d: char) -> ImageMapEntry {
        ImageMapEntry {
            source: Reference::parse(src).unwrap(),
            target: Reference::parse(tgt).unwrap(),
            digest: Digest::parse(&format!("sha256:{}", d.to_string().repeat(64))).unwrap(),
            source_digest: None,
            chart: None,
        }
    }

    #[test]
    fn lookup_normalises() {
        let m = ImageMap::new(vec![
            entry("docker.io/library/redis:7", "reg:5000/library/redis:7", 'a'),
            entry(
                "docker.io/library/nginx:latest",
                "reg:5000/library/nginx:latest",
                'b',
            ),
        ]);
        let r = |s: &str| Reference::parse(s).unwrap();
        assert!(m.lookup(&r("redis:7")).is_some());
        assert!(m.lookup(&r("redis:6")).is_none());
        assert!(m.lookup(&r("nginx")).is_some());
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(m.lookup(&r(&format!("redis@{d}"))).is_some());
        assert!(m.lookup(&r(&format!("redis:whatever@{d}"))).is_some());
        assert!(m.lookup(&r(&format!("nginx@{d}"))).is_none());
    }
}
