//! Writing a split set: the stream cut into parts under temporary names, renamed into
//! place with the sidecar written last.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{
    list_parts, part_name, read_dir_of, width_for, PartInfo, PartSet, VolumeError,
    PARTS_FORMAT_VERSION,
};
use crate::digest::{Digest, Hasher};
use crate::fsutil::{AtomicFile, FileError};

/// The part being written.
struct OpenPart {
    file: File,
    hasher: Hasher,
}

/// A `Write` that rotates to a new part file every `part_size` bytes, hashing each part (and
/// the whole stream) as it goes.
///
/// Parts are written under temporary names in a hidden directory beside the base
/// (`.<base>.split-XXXXXX/`), each synced to disk when full, and renamed to
/// `<base>.001` … only by [`SplitWriter::finish`], which chooses the number width (3 digits,
/// more if more than 999 parts), removes leftover parts of an earlier set of the same base,
/// and writes the sidecar last, atomically. Dropped without `finish` (an error, a panic),
/// every part written is removed: no partial set is left.
///
/// A new part is opened only when a byte must go into it, so a stream of exactly n ×
/// `part_size` bytes gives n parts, never an empty trailing one. Each `write` call goes to one
/// part at most (a short write at a part boundary; `write_all` continues); writes are not
/// buffered here: wrap it in a `BufWriter`.
///
/// `io::Error`s it returns carry a [`VolumeError`] naming the part by its final name (see
/// [`VolumeError::from_io`]); a filesystem's file-size limit (FAT32) is reported as
/// [`VolumeError::FileTooLarge`].
pub struct SplitWriter {
    // Declared before `tmp`: the open file is closed before the directory is removed.
    current: Option<OpenPart>,
    tmp: tempfile::TempDir,
    dir: PathBuf,
    base: String,
    part_size: u64,
    /// Finished parts: temporary path, size, digest.
    done: Vec<(PathBuf, u64, Digest)>,
    whole: Hasher,
    poisoned: bool,
}

impl SplitWriter {
    /// Prepares to write the parts of `base` (e.g. `out/bundle.tar.zst`, giving
    /// `out/bundle.tar.zst.001` …) of at most `part_size` bytes each. Creates only the hidden
    /// temporary directory; no part exists until the first byte is written.
    pub fn create(base: &Path, part_size: u64) -> Result<Self, VolumeError> {
        if part_size == 0 {
            return Err(VolumeError::ZeroPartSize {
                base: base.to_path_buf(),
            });
        }
        let name = base
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| VolumeError::InvalidBase {
                base: base.to_path_buf(),
            })?
            .to_string();
        let dir = base.parent().unwrap_or(Path::new("")).to_path_buf();
        let rd = read_dir_of(&dir);
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.split-"))
            .tempdir_in(rd)
            .map_err(FileError::with("creating a temporary directory in", rd))?;
        Ok(SplitWriter {
            current: None,
            tmp,
            dir,
            base: name,
            part_size,
            done: Vec::new(),
            whole: Hasher::new(),
            poisoned: false,
        })
    }

    /// Bytes written so far, over all parts.
    pub fn bytes_written(&self) -> u64 {
        self.whole.len()
    }

    /// The final path of part `number` (1-based) as named while writing (3 digits; error
    /// messages only: `finish` may widen the numbers).
    fn display_path(&self, number: usize) -> PathBuf {
        self.dir
            .join(part_name(&self.base, number, width_for(number)))
    }

    fn base_path(&self) -> PathBuf {
        self.dir.join(&self.base)
    }

    fn tmp_part(&self, number: usize) -> PathBuf {
        self.tmp.path().join(format!("{number:06}"))
    }

    /// Flushes, syncs and records the open part.
    fn close_current(&mut self) -> Result<(), VolumeError> {
        if let Some(part) = self.current.take() {
            let number = self.done.len() + 1;
            let display = self.display_path(number);
            part.file
                .sync_all()
                .map_err(FileError::with("writing", &display))?;
            let (digest, len) = part.hasher.finish();
            self.done.push((self.tmp_part(number), len, digest));
        }
        Ok(())
    }

    fn write_inner(&mut self, buf: &[u8]) -> Result<usize, VolumeError> {
        if self.poisoned {
            return Err(VolumeError::Poisoned {
                base: self.base_path(),
            });
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if self
            .current
            .as_ref()
            .is_some_and(|p| p.hasher.len() >= self.part_size)
        {
            self.close_current()?;
        }
        if self.current.is_none() {
            let number = self.done.len() + 1;
            let file = File::create(self.tmp_part(number))
                .map_err(FileError::with("creating", self.display_path(number)))?;
            self.current = Some(OpenPart {
                file,
                hasher: Hasher::new(),
            });
        }
        let number = self.done.len() + 1;
        let display = self.display_path(number);
        let part = self.current.as_mut().expect("a part is open");
        let room = self.part_size - part.hasher.len();
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = loop {
            match part.file.write(&buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
                    return Err(VolumeError::FileTooLarge {
                        path: display,
                        written: part.hasher.len(),
                        source: e,
                    })
                }
                Err(e) => return Err(FileError::new("writing", display, e).into()),
            }
        };
        part.hasher.update(&buf[..n]);
        self.whole.update(&buf[..n]);
        Ok(n)
    }

    /// Closes the last part, renames every part to its final name (`<base>.001` …), removes
    /// parts of an earlier set of the same base beyond this one (any `<base>.<3+ digits>` not
    /// in this set), then writes the sidecar `<base>.parts.json` atomically (temporary file
    /// renamed into place), and syncs the directory. An earlier sidecar is removed before the
    /// first rename, so a crash in between never pairs an old sidecar with new parts. On
    /// failure nothing of the new set is left. Writing nothing at all is an error
    /// ([`VolumeError::Empty`]).
    pub fn finish(mut self) -> Result<PartSet, VolumeError> {
        if self.poisoned {
            return Err(VolumeError::Poisoned {
                base: self.base_path(),
            });
        }
        self.close_current()?;
        if self.done.is_empty() {
            return Err(VolumeError::Empty {
                base: self.base_path(),
            });
        }
        let width = width_for(self.done.len());
        let parts: Vec<PartInfo> = self
            .done
            .iter()
            .enumerate()
            .map(|(i, (_, size, digest))| PartInfo {
                name: part_name(&self.base, i + 1, width),
                size: *size,
                sha256: Some(digest.clone()),
            })
            .collect();
        let whole = std::mem::take(&mut self.whole).finish().0;
        let mut set = PartSet {
            format_version: PARTS_FORMAT_VERSION,
            dir: self.dir.clone(),
            sidecar: None,
            base: self.base.clone(),
            part_size: self.part_size,
            part_count: parts.len(),
            total_size: parts.iter().map(|p| p.size).sum(),
            sha256: Some(whole),
            parts,
        };
        let sidecar = set.sidecar_path();
        match fs::remove_file(&sidecar) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(FileError::new("removing", &sidecar, e).into()),
        }
        let mut renamed: Vec<PathBuf> = Vec::new();
        let result = (|| {
            for (i, (tmp, _, _)) in self.done.iter().enumerate() {
                let dest = set.part_path(i);
                fs::rename(tmp, &dest).map_err(FileError::with("renaming into place", &dest))?;
                renamed.push(dest);
            }
            remove_leftovers(&set);
            write_sidecar(&set, &sidecar)
        })();
        if let Err(e) = result {
            for p in &renamed {
                let _ = fs::remove_file(p);
            }
            return Err(e);
        }
        set.sidecar = Some(sidecar);
        Ok(set)
    }
}

impl Write for SplitWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_inner(buf).map_err(|e| {
            self.poisoned = true;
            let kind = match &e {
                VolumeError::File(FileError { source, .. })
                | VolumeError::FileTooLarge { source, .. } => source.kind(),
                _ => io::ErrorKind::Other,
            };
            io::Error::new(kind, e)
        })
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some(p) => p.file.flush(),
            None => Ok(()),
        }
    }
}

/// Removes the parts of an earlier set of the same base that are not in `set` (best effort):
/// a reader without the sidecar would take them for part of this one. Only runs numbered
/// 1, 2, 3, … in one width count as an earlier set, so an unrelated `bundle.2024` stays.
fn remove_leftovers(set: &PartSet) {
    let Ok(existing) = list_parts(&set.dir, &set.base) else {
        return;
    };
    let ours: std::collections::HashSet<&str> = set.parts.iter().map(|p| p.name.as_str()).collect();
    let mut next_by_width: HashMap<usize, usize> = HashMap::new();
    // Sorted by number: each width's run from 1 is seen in order.
    for (number, width, name) in existing {
        let next = next_by_width.entry(width).or_insert(1);
        if number != *next {
            continue;
        }
        *next += 1;
        if !ours.contains(name.as_str()) {
            let _ = fs::remove_file(set.dir.join(name));
        }
    }
}

fn write_sidecar(set: &PartSet, path: &Path) -> Result<(), VolumeError> {
    let mut json = serde_json::to_vec_pretty(set).expect("a part set serialises");
    json.push(b'\n');
    let mut f = AtomicFile::create(path)?;
    f.write_all(&json)
        .map_err(FileError::with("writing", path))?;
    // Durable: synced, renamed, and the directory synced, which makes the parts' renames
    // before it durable too. 0644: the sidecar is no more secret than the parts.
    f.commit(0o644, true)?;
    Ok(())
}
