//! The connected side's content-addressed blob cache (`pack --cache DIR`), laid out as
//! bundle-spec/CACHE.md says: `blobs/sha256/<hex>` holds only verified blobs (written under
//! `tmp/`, synced, renamed), `partial/<hex>` the first bytes of a download that was cut off,
//! so a re-run continues it with a Range request. An entry is hashed again whenever it is
//! reused; its modification time is its last use (the LRU stamp `prune` goes by).

mod prune;

pub use prune::{CacheInfo, PruneReport};

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::digest::{Digest, Hasher};
use crate::fsutil::FileError;

/// The layout version this build reads and writes (in `DIR/airgap-cache.json`).
pub const CACHE_LAYOUT: u32 = 1;
const MARKER: &str = "airgap-cache.json";
/// Temporary files older than this in `tmp/` are left-overs of a killed run.
const STALE_TMP: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("blob cache {}", path.display())]
    Unusable {
        path: PathBuf,
        #[source]
        source: FileError,
    },
    #[error("blob cache {} has layout version {found}; this airgap reads version {CACHE_LAYOUT}", path.display())]
    NewerLayout { path: PathBuf, found: u32 },
    #[error(transparent)]
    File(#[from] FileError),
}

impl CacheError {
    pub fn hint(&self) -> Option<String> {
        match self {
            CacheError::Unusable { .. } => Some(
                "give --cache (or AIRGAP_CACHE) a directory this user can create and write".into(),
            ),
            CacheError::NewerLayout { .. } => {
                Some("use a newer airgap, or another --cache directory".into())
            }
            CacheError::File(_) => None,
        }
    }
}

/// What a look-up found.
pub enum Lookup {
    /// A verified entry (its LRU stamp updated).
    Hit(PathBuf),
    Miss,
    /// An entry whose content no longer matches its name: removed; the reason, for a warning.
    Corrupt(String),
}

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// Opens (creating when needed) the cache at `root`, checking that it can be written.
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        let unusable = |source: FileError| CacheError::Unusable {
            path: root.to_path_buf(),
            source,
        };
        let cache = Cache {
            root: root.to_path_buf(),
        };
        for d in [cache.blobs_dir(), cache.partial_dir(), cache.tmp_dir()] {
            std::fs::create_dir_all(&d).map_err(|e| unusable(FileError::new("creating", &d, e)))?;
        }
        let marker = root.join(MARKER);
        match std::fs::read(&marker) {
            Ok(bytes) => {
                let found = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("layout").and_then(|l| l.as_u64()))
                    .unwrap_or(0) as u32;
                if found > CACHE_LAYOUT {
                    return Err(CacheError::NewerLayout {
                        path: root.to_path_buf(),
                        found,
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let body = format!("{{\"layout\": {CACHE_LAYOUT}}}\n");
                cache
                    .write_atomic(&marker, body.as_bytes())
                    .map_err(unusable)?;
            }
            Err(e) => return Err(unusable(FileError::new("reading", &marker, e))),
        }
        // Writable? (The marker may be old; a directory may have turned read-only.)
        let probe = cache
            .tmp_dir()
            .join(format!("probe-{}", std::process::id()));
        File::create(&probe).map_err(|e| unusable(FileError::new("writing", &probe, e)))?;
        let _ = std::fs::remove_file(&probe);
        cache.remove_stale_tmp();
        Ok(cache)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }
    fn partial_dir(&self) -> PathBuf {
        self.root.join("partial")
    }
    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(d.hex())
    }
    fn partial_path(&self, d: &Digest) -> PathBuf {
        self.partial_dir().join(d.hex())
    }

    /// Finds `d` (of `size` bytes) and hashes it again; a mismatch removes the entry.
    pub fn lookup(&self, d: &Digest, size: u64) -> Result<Lookup, CacheError> {
        let path = self.blob_path(d);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lookup::Miss),
            Err(e) => return Err(FileError::new("reading", &path, e).into()),
        };
        let (actual, n) = hash_reader(&mut f).map_err(FileError::with("reading", &path))?;
        if n != size || &actual != d {
            std::fs::remove_file(&path).map_err(FileError::with("removing", &path))?;
            return Ok(Lookup::Corrupt(format!(
                "cached blob {} was corrupt ({n} bytes, {actual}); removed, downloading it again",
                path.display()
            )));
        }
        touch(&path);
        Ok(Lookup::Hit(path))
    }

    /// Like [`Cache::lookup`], with the content read into memory once (small blobs).
    pub fn lookup_bytes(&self, d: &Digest, size: u64) -> Result<Option<Vec<u8>>, String> {
        let path = self.blob_path(d);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(_) => return Ok(None),
        };
        if bytes.len() as u64 != size || &Digest::of(&bytes) != d {
            let _ = std::fs::remove_file(&path);
            return Err(format!(
                "cached blob {} was corrupt; removed, downloading it again",
                path.display()
            ));
        }
        touch(&path);
        Ok(Some(bytes))
    }

    /// Stores verified content under its digest (temp file, fsync, rename).
    pub fn put_bytes(&self, d: &Digest, bytes: &[u8]) -> Result<(), CacheError> {
        let path = self.blob_path(d);
        if path.exists() {
            touch(&path);
            return Ok(());
        }
        Ok(self.write_atomic(&path, bytes)?)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), FileError> {
        let tmp = self.tmp_dir().join(format!(
            "{}.{}.{}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id(),
            unique()
        ));
        let r = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(FileError::new("writing", &tmp, e));
        }
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            FileError::new("renaming into", path, e)
        })?;
        sync_dir(path.parent().unwrap_or(&self.root));
        Ok(())
    }

    /// The partial download of `d`, locked for this process; `None` when another process
    /// holds it (that download then goes without the cache).
    pub fn partial(&self, d: &Digest) -> Result<Option<Partial>, CacheError> {
        let path = self.partial_path(d);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(FileError::with("opening", &path))?;
        match try_lock(&file) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => return Err(FileError::new("locking", &path, e).into()),
        }
        let len = file
            .metadata()
            .map_err(FileError::with("reading", &path))?
            .len();
        Ok(Some(Partial {
            file,
            path,
            len,
            dest: self.blob_path(d),
        }))
    }

    fn remove_stale_tmp(&self) {
        let Ok(rd) = std::fs::read_dir(self.tmp_dir()) else {
            return;
        };
        for e in rd.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > STALE_TMP);
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The first bytes of a blob, received before a download broke off. Only a prefix of the
/// blob is ever appended, so a re-run hashes it, asks for the rest and checks the whole.
pub struct Partial {
    file: File,
    path: PathBuf,
    len: u64,
    dest: PathBuf,
}

impl Partial {
    /// Bytes held.
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hashes the bytes held, to continue the download after them.
    pub fn hasher(&mut self) -> Result<Hasher, FileError> {
        let mut f = File::open(&self.path).map_err(FileError::with("reading", &self.path))?;
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = self.len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = f
                .read(&mut buf[..want])
                .map_err(FileError::with("reading", &self.path))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(h)
    }

    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| std::io::Error::other(FileError::new("writing", self.path.clone(), e)))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Empties it (its bytes were wrong), to start the blob over.
    pub fn truncate(&mut self) -> Result<(), FileError> {
        self.file
            .set_len(0)
            .map_err(FileError::with("truncating", &self.path))?;
        self.len = 0;
        Ok(())
    }

    /// The download is complete and verified: sync it and make it the blob's entry.
    pub fn commit(self) -> Result<PathBuf, FileError> {
        self.file
            .sync_all()
            .map_err(FileError::with("syncing", &self.path))?;
        std::fs::rename(&self.path, &self.dest)
            .map_err(FileError::with("renaming into", &self.dest))?;
        if let Some(dir) = self.dest.parent() {
            sync_dir(dir);
        }
        Ok(self.dest)
    }

    /// Drops the bytes (they did not make the blob).
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn hash_reader(r: &mut impl Read) -> std::io::Result<(Digest, u64)> {
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

/// Marks an entry used now (its modification time is the LRU stamp).
fn touch(path: &Path) {
    if let Ok(f) = File::options().append(true).open(path) {
        let now = SystemTime::now();
        let _ = f.set_times(
            std::fs::FileTimes::new()
                .set_modified(now)
                .set_accessed(now),
        );
    }
}

/// An exclusive advisory lock on `f`, held until it is closed (or the process dies);
/// false when another process holds it. (`File::try_lock` is newer than our MSRV.)
#[cfg(unix)]
fn try_lock(f: &File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor we own, no memory involved.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

#[cfg(not(unix))]
fn try_lock(_: &File) -> std::io::Result<bool> {
    Ok(true)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests;
