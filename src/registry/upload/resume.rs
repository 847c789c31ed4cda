//! Unfinished chunked uploads remembered across runs, so a load killed half-way through a
//! big layer (a dropped link, a reboot, Ctrl-C) continues on the next run from the offset
//! the registry reports for the session, instead of sending the layer again.
//!
//! One small JSON file per upload in the state directory (`--state-dir`), named after
//! registry, repository and digest, written after every PATCH that leaves more to send and
//! removed when the upload is finished or its session is gone. Only the session URL is
//! kept: no credential (a token is asked for again). The format is in
//! `bundle-spec/FORMAT.md` ("Upload state"). Failing to write it never fails a load: the
//! run goes on and warns once, it only loses the ability to resume.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Version of the record's format.
const VERSION: u32 = 1;

/// Where the records of one run live.
pub struct SessionStore {
    dir: PathBuf,
    warned: AtomicBool,
    warning: std::sync::Mutex<Option<String>>,
}

/// One unfinished upload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    pub version: u32,
    pub registry: String,
    pub repository: String,
    pub digest: String,
    pub size: u64,
    /// Absolute URL of the session, as the registry's last `Location` gave it.
    pub location: String,
    /// Bytes the registry had acknowledged when this was written (a hint: the session's
    /// own `Range` decides).
    pub offset: u64,
}

impl SessionStore {
    pub fn new(dir: PathBuf) -> SessionStore {
        SessionStore {
            dir,
            warned: AtomicBool::new(false),
            warning: std::sync::Mutex::new(None),
        }
    }

    fn path(&self, registry: &str, repo: &str, digest: &Digest) -> PathBuf {
        let key = Digest::of(format!("{registry}\n{repo}\n{digest}").as_bytes());
        self.dir.join(format!("upload-{}.json", &key.hex()[..32]))
    }

    /// The record of an unfinished upload of `digest` (of `size` bytes) to `repo`, if one
    /// was left by an earlier run and still describes this very blob.
    pub fn find(&self, registry: &str, repo: &str, digest: &Digest, size: u64) -> Option<Saved> {
        let bytes = std::fs::read(self.path(registry, repo, digest)).ok()?;
        let s: Saved = serde_json::from_slice(&bytes).ok()?;
        (s.version == VERSION
            && s.registry == registry
            && s.repository == repo
            && s.digest == digest.as_str()
            && s.size == size)
            .then_some(s)
    }

    pub fn save(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        location: &str,
        offset: u64,
    ) {
        let s = Saved {
            version: VERSION,
            registry: registry.to_string(),
            repository: repo.to_string(),
            digest: digest.to_string(),
            size,
            location: location.to_string(),
            offset,
        };
        let write = || -> Result<(), String> {
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
            let bytes = serde_json::to_vec_pretty(&s).map_err(|e| e.to_string())?;
            crate::fsutil::write_atomic(&self.path(registry, repo, digest), &bytes, 0o600)
                .map_err(|e| e.to_string())?;
            Ok(())
        };
        if let Err(e) = write() {
            if !self.warned.swap(true, Ordering::Relaxed) {
                *self.warning.lock().expect("warning lock") = Some(format!(
                    "cannot remember unfinished uploads ({e}); a re-run after an interruption will send big layers again (set --state-dir)"
                ));
            }
        }
    }

    pub fn remove(&self, registry: &str, repo: &str, digest: &Digest) {
        let _ = std::fs::remove_file(self.path(registry, repo, digest));
    }

    /// The warning of a failed write, once.
    pub fn take_warning(&self) -> Option<String> {
        self.warning.lock().expect("warning lock").take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_found_only_for_the_same_upload() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path().join("state"));
        let d = Digest::of(b"layer");
        let other = Digest::of(b"other");
        assert!(store.find("r:5000", "a/b", &d, 10).is_none());
        store.save(
            "r:5000",
            "a/b",
            &d,
            10,
            "http://r:5000/v2/a/b/blobs/uploads/x",
            4,
        );
        let s = store.find("r:5000", "a/b", &d, 10).expect("saved");
        assert_eq!(s.offset, 4);
        assert_eq!(s.location, "http://r:5000/v2/a/b/blobs/uploads/x");
        assert!(store.find("r:5000", "a/b", &d, 11).is_none(), "other size");
        assert!(store.find("r:5000", "a/c", &d, 10).is_none(), "other repo");
        assert!(
            store.find("q:5000", "a/b", &d, 10).is_none(),
            "other registry"
        );
        assert!(
            store.find("r:5000", "a/b", &other, 10).is_none(),
            "other blob"
        );
        store.remove("r:5000", "a/b", &d);
        assert!(store.find("r:5000", "a/b", &d, 10).is_none());
        assert!(store.take_warning().is_none());
    }

    #[test]
    fn a_garbled_record_is_ignored_and_an_unwritable_dir_warns_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path().to_path_buf());
        let d = Digest::of(b"layer");
        store.save("r", "a", &d, 10, "http://r/x", 1);
        let p = store.path("r", "a", &d);
        std::fs::write(&p, b"{not json").unwrap();
        assert!(store.find("r", "a", &d, 10).is_none());

        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let bad = SessionStore::new(file.join("below"));
        bad.save("r", "a", &d, 10, "http://r/x", 1);
        bad.save("r", "a", &d, 10, "http://r/x", 2);
        let w = bad.take_warning().expect("a warning");
        assert!(w.contains("a-file"), "{w}");
        assert!(bad.take_warning().is_none(), "once");
    }
}
