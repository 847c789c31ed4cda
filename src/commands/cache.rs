//! `airgap cache info` and `airgap cache prune`: the connected side's blob cache.

use std::path::Path;

use super::CommandError;
use crate::cache::{Cache, CacheInfo, PruneReport};
use crate::progress::human_bytes;

pub fn info(dir: &Path) -> Result<CacheInfo, CommandError> {
    let c = Cache::open(dir).map_err(crate::pack::PackError::from)?;
    Ok(c.info().map_err(crate::pack::PackError::from)?)
}

pub fn prune(dir: &Path, max_size: u64) -> Result<PruneReport, CommandError> {
    let c = Cache::open(dir).map_err(crate::pack::PackError::from)?;
    Ok(c.prune(max_size).map_err(crate::pack::PackError::from)?)
}

pub fn render_info(i: &CacheInfo) -> String {
    format!(
        "cache {}: {} blob(s), {}; {} partial download(s), {}",
        i.path.display(),
        i.entries,
        human_bytes(i.bytes),
        i.partials,
        human_bytes(i.partial_bytes)
    )
}

pub fn render_prune(r: &PruneReport) -> String {
    format!(
        "pruned cache {} to at most {}: removed {} file(s), {}; kept {} file(s), {}",
        r.path.display(),
        human_bytes(r.max_size),
        r.removed,
        human_bytes(r.freed),
        r.kept,
        human_bytes(r.kept_bytes)
    )
}
