//! The base of a delta bundle: an earlier bundle (only its head is read) or the `airgap.json`
//! saved from it with `airgap inspect --metadata`, so the old bundle need not be kept.

use std::io::Read;
use std::path::Path;

use super::{open_input, verify::inspect, BundleError, Metadata};
use crate::digest::Digest;

/// A delta's base: its identity (the sha256 of its `airgap.json`), name and metadata.
#[derive(Debug, Clone)]
pub struct BaseBundle {
    pub id: Digest,
    pub name: Option<String>,
    pub metadata: Metadata,
}

/// Reads a base given as a bundle (any part of a split set too) or as a saved `airgap.json`,
/// told apart by the first byte (`{`: JSON; a bundle starts with a zstd or tar header).
pub fn read_base(path: &Path) -> Result<BaseBundle, BundleError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let io = |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut first = [0u8; 1];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut first))
        .map_err(io)?;
    if n == 1 && first[0] == b'{' {
        let raw = std::fs::read(path).map_err(io)?;
        let metadata: Metadata =
            serde_json::from_slice(&raw).map_err(|e| BundleError::Invalid {
                entry: "airgap.json".into(),
                reason: format!("not an airgap.json: {e}"),
            })?;
        return Ok(BaseBundle {
            id: Digest::of(&raw),
            name,
            metadata,
        });
    }
    let i = inspect(open_input(path)?)?;
    Ok(BaseBundle {
        id: i.id,
        name,
        metadata: i.metadata,
    })
}
