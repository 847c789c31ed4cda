//! `airgap cache info` and `airgap cache prune --max-size SIZE`: what the cache holds, and
//! removing its least recently used entries (oldest LRU stamp first) until it fits.

use std::path::PathBuf;
use std::time::SystemTime;

use super::{Cache, CacheError};
use crate::fsutil::FileError;

/// What the cache holds.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheInfo {
    pub path: PathBuf,
    pub layout: u32,
    /// Verified blobs, and their bytes.
    pub entries: u64,
    pub bytes: u64,
    /// Downloads cut off (kept to continue), and their bytes.
    pub partials: u64,
    pub partial_bytes: u64,
}

/// What `prune` removed and what is left.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub path: PathBuf,
    pub max_size: u64,
    pub removed: u64,
    pub freed: u64,
    pub kept: u64,
    pub kept_bytes: u64,
}

struct Entry {
    path: PathBuf,
    size: u64,
    used: SystemTime,
    partial: bool,
}

impl Cache {
    fn entries(&self) -> Result<Vec<Entry>, CacheError> {
        let mut out = Vec::new();
        for (dir, partial) in [(self.blobs_dir(), false), (self.partial_dir(), true)] {
            let rd = std::fs::read_dir(&dir).map_err(FileError::with("listing", &dir))?;
            for e in rd {
                let e = e.map_err(FileError::with("listing", &dir))?;
                let Ok(m) = e.metadata() else { continue };
                if !m.is_file() {
                    continue;
                }
                out.push(Entry {
                    path: e.path(),
                    size: m.len(),
                    used: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    partial,
                });
            }
        }
        Ok(out)
    }

    pub fn info(&self) -> Result<CacheInfo, CacheError> {
        let mut info = CacheInfo {
            path: self.root.clone(),
            layout: super::CACHE_LAYOUT,
            ..CacheInfo::default()
        };
        for e in self.entries()? {
            if e.partial {
                info.partials += 1;
                info.partial_bytes += e.size;
            } else {
                info.entries += 1;
                info.bytes += e.size;
            }
        }
        Ok(info)
    }

    /// Removes entries, least recently used first (partial downloads among them, by their
    /// last write), until what is left is at most `max_size` bytes.
    pub fn prune(&self, max_size: u64) -> Result<PruneReport, CacheError> {
        let mut entries = self.entries()?;
        entries.sort_by_key(|e| (e.used, e.path.clone()));
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        let mut report = PruneReport {
            path: self.root.clone(),
            max_size,
            ..PruneReport::default()
        };
        for e in entries {
            if total > max_size {
                std::fs::remove_file(&e.path).map_err(FileError::with("removing", &e.path))?;
                total -= e.size;
                report.removed += 1;
                report.freed += e.size;
            } else {
                report.kept += 1;
                report.kept_bytes += e.size;
            }
        }
        Ok(report)
    }
}
