//! The manifests of a bundle, held in memory (each at most 4 MiB) and walked per image.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use crate::digest::Digest;
use crate::manifest::{ManifestError, ManifestView};

#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub media_type: String,
    pub bytes: Bytes,
    /// Child manifests (for an index) and blobs (config and layers, for a manifest).
    pub children: Vec<Digest>,
    pub blobs: Vec<Digest>,
}

#[derive(Debug, Default, Clone)]
pub struct ImageGraph {
    manifests: HashMap<Digest, StoredManifest>,
}

/// Everything one image needs, in push order.
#[derive(Debug, Clone, Default)]
pub struct Walk {
    /// Manifests with children before parents; the top one last.
    pub manifests: Vec<Digest>,
    pub blobs: Vec<Digest>,
}

impl ImageGraph {
    pub fn add(
        &mut self,
        digest: Digest,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(), ManifestError> {
        let (view, media_type) = ManifestView::parse(&bytes, media_type, &digest)?;
        let children = view.manifests.iter().map(|d| d.digest.clone()).collect();
        let blobs = view.blobs().map(|d| d.digest.clone()).collect();
        self.manifests.insert(
            digest,
            StoredManifest {
                media_type,
                bytes,
                children,
                blobs,
            },
        );
        Ok(())
    }

    pub fn get(&self, d: &Digest) -> Option<&StoredManifest> {
        self.manifests.get(d)
    }

    /// Walks from `top`; fails with the first digest that is referenced but not present.
    pub fn walk(&self, top: &Digest) -> Result<Walk, Digest> {
        let mut walk = Walk::default();
        let mut seen_m = HashSet::new();
        let mut seen_b = HashSet::new();
        self.visit(top, &mut walk, &mut seen_m, &mut seen_b, 0)?;
        Ok(walk)
    }

    fn visit(
        &self,
        d: &Digest,
        walk: &mut Walk,
        seen_m: &mut HashSet<Digest>,
        seen_b: &mut HashSet<Digest>,
        depth: usize,
    ) -> Result<(), Digest> {
        if depth > 8 || !seen_m.insert(d.clone()) {
            return Ok(());
        }
        let m = self.manifests.get(d).ok_or_else(|| d.clone())?;
        for c in &m.children {
            self.visit(c, walk, seen_m, seen_b, depth + 1)?;
        }
        for b in &m.blobs {
            if seen_b.insert(b.clone()) {
                walk.blobs.push(b.clone());
            }
        }
        walk.manifests.push(d.clone());
        Ok(())
    }
}
