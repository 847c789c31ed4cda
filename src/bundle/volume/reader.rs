//! Reading a split set: finding it from any of its names, checking its parts, and reading
//! them back as one stream.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    list_parts, part_name, split_part_name, PartInfo, PartProblem, PartSet, VolumeError,
    MAX_SIDECAR_SIZE, MIN_PART_DIGITS, PARTS_FORMAT_VERSION, SIDECAR_SUFFIX,
};
use crate::digest::{Digest, Hasher};
use crate::fsutil::FileError;

impl PartSet {
    /// Checks part `index` (0-based) on its own: present, of its recorded size and, with a
    /// sidecar, of its recorded sha256. A part whose sha256 is another part's is reported
    /// [`PartProblem::OutOfOrder`], naming where it belongs. Reads the whole part.
    pub fn check_part(&self, index: usize) -> Result<(), PartProblem> {
        let info = &self.parts[index];
        let path = self.part_path(index);
        let unreadable = |e: io::Error| PartProblem::Unreadable {
            name: info.name.clone(),
            reason: e.to_string(),
        };
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(PartProblem::Missing {
                    name: info.name.clone(),
                })
            }
            Err(e) => return Err(unreadable(e)),
        };
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(unreadable(e)),
            };
            hasher.update(&buf[..n]);
        }
        let (actual, len) = hasher.finish();
        self.judge(index, len, &actual)
    }

    /// The verdict on part `index` whose content is `len` bytes hashing to `actual`.
    fn judge(&self, index: usize, len: u64, actual: &Digest) -> Result<(), PartProblem> {
        let info = &self.parts[index];
        match &info.sha256 {
            Some(expected) if expected == actual && len == info.size => Ok(()),
            Some(_) => {
                if let Some(other) = self
                    .parts
                    .iter()
                    .enumerate()
                    .find(|(j, p)| *j != index && p.sha256.as_ref() == Some(actual))
                {
                    Err(PartProblem::OutOfOrder {
                        name: info.name.clone(),
                        belongs_at: other.1.name.clone(),
                    })
                } else if len != info.size {
                    Err(PartProblem::WrongSize {
                        name: info.name.clone(),
                        expected: info.size,
                        actual: len,
                    })
                } else {
                    Err(PartProblem::Corrupt {
                        name: info.name.clone(),
                    })
                }
            }
            None if len != info.size => Err(PartProblem::WrongSize {
                name: info.name.clone(),
                expected: info.size,
                actual: len,
            }),
            None => Ok(()),
        }
    }
}

/// Checks every part of `set` independently (a bad part does not stop the others being
/// checked) and returns the problems in part order; empty means every part is sound.
/// See [`PartSet::check_part`] to check one part at a time (e.g. with progress).
pub fn check_parts(set: &PartSet) -> Vec<PartProblem> {
    (0..set.parts.len())
        .filter_map(|i| set.check_part(i).err())
        .collect()
}

/// Where `path` points: the set's directory and base name. `path` may be the sidecar, any
/// part, the base name (prefix), or a glob such as `bundle.tar.zst.*` (its text before the
/// first `*`, `?` or `[`, less a trailing `.`, is the base).
fn locate(path: &Path) -> Option<(PathBuf, String)> {
    let name = path.file_name()?.to_str()?;
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    if let Some(i) = name.find(['*', '?', '[']) {
        let base = name[..i].trim_end_matches('.');
        return (!base.is_empty()).then(|| (dir, base.to_string()));
    }
    if let Some(base) = name.strip_suffix(SIDECAR_SUFFIX) {
        if !base.is_empty() {
            return Some((dir, base.to_string()));
        }
    }
    // The base itself (checked first: a base may end in digits, like `bundle.2024`).
    let sidecar = dir.join(format!("{name}{SIDECAR_SUFFIX}"));
    if sidecar.is_file() || dir.join(part_name(name, 1, MIN_PART_DIGITS)).is_file() {
        return Some((dir, name.to_string()));
    }
    if let Some((base, _, _)) = split_part_name(name) {
        return Some((dir, base.to_string()));
    }
    Some((dir, name.to_string()))
}

/// Whether `path` designates a split set rather than a single-file bundle: the sidecar, a
/// part of a set that has a first part or a sidecar, or a base name that is not itself a file
/// but has a sidecar or a first part beside it. An existing file that is not named like a part
/// or a sidecar is a single-file bundle (false), even if a set of the same base exists.
pub fn is_split(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if path.is_file() && split_part_name(name).is_none() && !name.ends_with(SIDECAR_SUFFIX) {
        return false;
    }
    let Some((dir, base)) = locate(path) else {
        return false;
    };
    if dir.join(format!("{base}{SIDECAR_SUFFIX}")).is_file() {
        return true;
    }
    matches!(list_parts(&dir, &base), Ok(parts) if parts.first().is_some_and(|p| p.0 == 1))
}

/// Finds a set from any of: the first part, any part, the sidecar, the base name (the path the
/// single-file bundle would have), or a glob such as `bundle.tar.zst.*` taken literally.
///
/// With a sidecar beside the parts, the set is what the sidecar says (checked for consistency;
/// the parts themselves are not read: see [`check_parts`] and [`MultiPartReader`]). Without
/// one, the parts are found by name and must be numbered 1..=n with no gap (a gap is
/// [`PartProblem::Missing`]); the part size is the most common size among all but the last
/// part, so a truncated middle part shows as [`PartProblem::WrongSize`] later; no checksums.
pub fn open_set(path: &Path) -> Result<PartSet, VolumeError> {
    let (dir, base) = locate(path).ok_or_else(|| VolumeError::NotFound {
        path: path.to_path_buf(),
        sidecar: PathBuf::from(format!("{}{SIDECAR_SUFFIX}", path.display())),
        first_part: PathBuf::from(format!("{}.001", path.display())),
    })?;
    let sidecar = dir.join(format!("{base}{SIDECAR_SUFFIX}"));
    match File::open(&sidecar) {
        Ok(f) => return read_sidecar(f, &sidecar, dir, base),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(FileError::new("opening", &sidecar, e).into()),
    }
    discover(path, dir, base, sidecar)
}

fn read_sidecar(f: File, path: &Path, dir: PathBuf, base: String) -> Result<PartSet, VolumeError> {
    let bad = |reason: String| VolumeError::Sidecar {
        path: path.to_path_buf(),
        reason,
    };
    let mut bytes = Vec::new();
    f.take(MAX_SIDECAR_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(FileError::with("reading", path))?;
    if bytes.len() as u64 > MAX_SIDECAR_SIZE {
        return Err(bad(format!("larger than {MAX_SIDECAR_SIZE} bytes")));
    }
    // The version first, so a newer sidecar is refused as such rather than as malformed.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Version {
        format_version: u32,
    }
    let v: Version = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if v.format_version > PARTS_FORMAT_VERSION {
        return Err(VolumeError::FutureSidecar {
            path: path.to_path_buf(),
            found: v.format_version,
        });
    }
    if v.format_version == 0 {
        return Err(bad("formatVersion 0 is not a version".into()));
    }
    let mut set: PartSet = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if set.parts.is_empty() {
        return Err(bad("it lists no part".into()));
    }
    if set.part_count != set.parts.len() {
        return Err(bad(format!(
            "partCount is {} but {} parts are listed",
            set.part_count,
            set.parts.len()
        )));
    }
    if set.part_size == 0 {
        return Err(bad("partSize is 0".into()));
    }
    if set.sha256.is_none() {
        return Err(bad("the sha256 of the whole stream is missing".into()));
    }
    // Names must be `<recorded base>.<number>` in order, one width: nothing else (no path
    // separator, no `..`) can be opened through a sidecar.
    let width = split_part_name(&set.parts[0].name)
        .map(|(_, _, w)| w)
        .ok_or_else(|| bad(format!("{:?} is not a part name", set.parts[0].name)))?;
    let mut total = 0u64;
    let last = set.parts.len() - 1;
    for (i, p) in set.parts.iter_mut().enumerate() {
        if p.name != part_name(&set.base, i + 1, width) {
            return Err(bad(format!(
                "part {} is named {:?}; expected {:?}",
                i + 1,
                p.name,
                part_name(&set.base, i + 1, width)
            )));
        }
        if p.sha256.is_none() {
            return Err(bad(format!("{} has no sha256", p.name)));
        }
        let size_ok = if i < last {
            p.size == set.part_size
        } else {
            p.size >= 1 && p.size <= set.part_size
        };
        if !size_ok {
            return Err(bad(format!(
                "{} is listed as {} bytes with a part size of {}",
                p.name, p.size, set.part_size
            )));
        }
        total = total
            .checked_add(p.size)
            .ok_or_else(|| bad("sizes overflow".into()))?;
        // Re-derived from the sidecar's own name: a set renamed as a whole still opens.
        p.name = part_name(&base, i + 1, width);
    }
    if total != set.total_size {
        return Err(bad(format!(
            "totalSize is {} but the parts add up to {total}",
            set.total_size
        )));
    }
    set.base = base;
    set.dir = dir;
    set.sidecar = Some(path.to_path_buf());
    Ok(set)
}

fn discover(
    path: &Path,
    dir: PathBuf,
    base: String,
    sidecar: PathBuf,
) -> Result<PartSet, VolumeError> {
    let found = list_parts(&dir, &base)?;
    let first_part = dir.join(part_name(&base, 1, MIN_PART_DIGITS));
    if found.is_empty() {
        return Err(VolumeError::NotFound {
            path: path.to_path_buf(),
            sidecar,
            first_part,
        });
    }
    let width = found[0].1;
    if let Some(other) = found.iter().find(|p| p.1 != width) {
        return Err(VolumeError::Ambiguous {
            path: dir.join(&base),
            reason: format!(
                "parts numbered with {width} and with {} digits ({} and {}): two sets are mixed",
                other.1, found[0].2, other.2
            ),
        });
    }
    for (i, p) in found.iter().enumerate() {
        if p.0 != i + 1 {
            return Err(VolumeError::Part(PartProblem::Missing {
                name: part_name(&base, i + 1, width),
            }));
        }
    }
    let mut sizes = Vec::with_capacity(found.len());
    for p in &found {
        let pp = dir.join(&p.2);
        sizes.push(
            fs::metadata(&pp)
                .map_err(FileError::with("reading the size of", &pp))?
                .len(),
        );
    }
    let last = sizes.len() - 1;
    let part_size = if last == 0 {
        sizes[0]
    } else {
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for &s in &sizes[..last] {
            *counts.entry(s).or_default() += 1;
        }
        // Most common; ties to the larger (truncation is the usual damage).
        counts
            .into_iter()
            .max_by_key(|&(size, n)| (n, size))
            .map(|(size, _)| size)
            .unwrap_or(sizes[0])
    };
    let parts: Vec<PartInfo> = found
        .into_iter()
        .zip(&sizes)
        .enumerate()
        .map(|(i, ((_, _, name), &actual))| PartInfo {
            name,
            size: if i < last { part_size } else { actual },
            sha256: None,
        })
        .collect();
    Ok(PartSet {
        format_version: PARTS_FORMAT_VERSION,
        dir,
        sidecar: None,
        base,
        part_size,
        part_count: parts.len(),
        total_size: parts.iter().map(|p| p.size).sum(),
        sha256: None,
        parts,
    })
}

/// How [`MultiPartReader`] fails inside an `io::Error`: the error (see
/// [`VolumeError::from_io`]) with, as its message, the error and its causes. The bundle
/// reader keeps an I/O error's text rather than the error, which would drop the OS error
/// (`Input/output error` from a failing stick), so the causes are spelled out here, once,
/// and there is no `source` to print them again.
#[derive(Debug)]
pub(super) struct ReadFailure {
    pub(super) error: VolumeError,
    text: String,
}

impl std::fmt::Display for ReadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for ReadFailure {}

/// `e` and its causes, joined with ": ".
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Reads the parts of a set in order as one stream, without joining them on disk.
///
/// Each part is checked as its end is reached, before its last bytes are handed out: its size
/// (short: [`PartProblem::WrongSize`], as is a part with bytes beyond its recorded size) and,
/// with a sidecar, its sha256 ([`PartProblem::Corrupt`], or [`PartProblem::OutOfOrder`] when
/// it is another part's content). A part that is not there is [`PartProblem::Missing`] when
/// the stream reaches it. Such a failure is an `io::Error` whose message names the part file
/// (and gives the OS error, if any) and which carries the [`VolumeError`] (see
/// [`VolumeError::from_io`]); every later
/// read fails too. Bytes of a corrupt part before its last read are handed out unverified
/// (the bundle inside has its own digests); run [`check_parts`] first to refuse a damaged set
/// before reading any of it.
///
/// The whole-stream sha256 is not recomputed: matching part digests imply it. Reads go
/// straight to the part files: wrap it in a `BufReader`.
pub struct MultiPartReader {
    set: PartSet,
    /// Index of the current part.
    index: usize,
    file: Option<File>,
    /// Bytes of the current part read.
    in_part: u64,
    hasher: Hasher,
    position: u64,
    failed: Option<(io::ErrorKind, String)>,
}

impl MultiPartReader {
    pub fn new(set: PartSet) -> Self {
        MultiPartReader {
            set,
            index: 0,
            file: None,
            in_part: 0,
            hasher: Hasher::new(),
            position: 0,
            failed: None,
        }
    }

    /// [`open_set`] then [`MultiPartReader::new`].
    pub fn open(path: &Path) -> Result<Self, VolumeError> {
        Ok(Self::new(open_set(path)?))
    }

    pub fn set(&self) -> &PartSet {
        &self.set
    }

    /// Offset in the whole stream of the next byte to be read.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The file name of the part being read (the last one once the stream ended), e.g. to
    /// tell where a decoder error arose.
    pub fn current_part(&self) -> Option<&str> {
        let i = self.index.min(self.set.parts.len().checked_sub(1)?);
        Some(&self.set.parts[i].name)
    }

    fn fail(&mut self, e: VolumeError) -> io::Error {
        let kind = match &e {
            VolumeError::Part(p) => p.kind(),
            VolumeError::File(f) => f.source.kind(),
            _ => io::ErrorKind::Other,
        };
        let text = with_causes(&e);
        self.failed = Some((kind, text.clone()));
        io::Error::new(kind, ReadFailure { error: e, text })
    }

    /// Checks the current part once all its recorded bytes were read, and moves to the next.
    fn end_part(&mut self) -> Result<(), VolumeError> {
        let name = self.set.parts[self.index].name.clone();
        let path = self.set.part_path(self.index);
        let mut file = self.file.take().expect("the part is open");
        let mut probe = [0u8; 1];
        let extra = loop {
            match file.read(&mut probe) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(FileError::new("reading", &path, e).into()),
            }
        };
        if extra > 0 {
            let actual = file.metadata().map(|m| m.len()).unwrap_or(self.in_part + 1);
            return Err(VolumeError::Part(PartProblem::WrongSize {
                name,
                expected: self.set.parts[self.index].size,
                actual,
            }));
        }
        let (digest, len) = std::mem::take(&mut self.hasher).finish();
        self.set
            .judge(self.index, len, &digest)
            .map_err(VolumeError::Part)?;
        self.index += 1;
        self.in_part = 0;
        Ok(())
    }

    fn read_inner(&mut self, buf: &mut [u8]) -> Result<usize, VolumeError> {
        if buf.is_empty() || self.index >= self.set.parts.len() {
            return Ok(0);
        }
        if self.file.is_none() {
            let path = self.set.part_path(self.index);
            self.file = Some(match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(VolumeError::Part(PartProblem::Missing {
                        name: self.set.parts[self.index].name.clone(),
                    }))
                }
                Err(e) => return Err(FileError::new("opening", &path, e).into()),
            });
        }
        let expected = self.set.parts[self.index].size;
        let room = expected - self.in_part;
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let file = self.file.as_mut().expect("the part is open");
        let n = loop {
            match file.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(FileError::new("reading", self.set.part_path(self.index), e).into())
                }
            }
        };
        if n == 0 {
            return Err(VolumeError::Part(PartProblem::WrongSize {
                name: self.set.parts[self.index].name.clone(),
                expected,
                actual: self.in_part,
            }));
        }
        self.hasher.update(&buf[..n]);
        self.in_part += n as u64;
        if self.in_part == expected {
            // Verified before its last bytes are handed out.
            self.end_part()?;
        }
        self.position += n as u64;
        Ok(n)
    }
}

impl Read for MultiPartReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, msg)) = &self.failed {
            return Err(io::Error::new(*kind, msg.clone()));
        }
        self.read_inner(buf).map_err(|e| self.fail(e))
    }
}
