//! Split volumes: one bundle stream written as numbered part files, and read back as one
//! stream, so a bundle fits on media with a per-file limit (FAT32: 4 GiB - 1 byte).
//!
//! Pure I/O, independent of the bundle format: [`SplitWriter`] is a `Write` and
//! [`MultiPartReader`] a `Read`; the bundle writer and reader sit on top unchanged.
//!
//! # Files
//!
//! A set with base `bundle.tar.zst` is, in one directory:
//!
//! - `bundle.tar.zst.001`, `bundle.tar.zst.002`, …: the stream cut every `part_size` bytes.
//!   Every part but the last is exactly `part_size` bytes; the last is 1..=`part_size` bytes
//!   (never empty). Numbers start at 1 and have 3 digits, or as many as the part count needs
//!   (1000 parts: `.0001` … `.1000`), the same width for every part of a set, so a plain sort
//!   is the stream order and `cat bundle.tar.zst.[0-9]* > bundle.tar.zst` rebuilds the whole file.
//! - `bundle.tar.zst.parts.json`, the sidecar, written last and atomically:
//!
//! ```json
//! {
//!   "formatVersion": 1,
//!   "base": "bundle.tar.zst",
//!   "partSize": 4294967295,
//!   "partCount": 2,
//!   "totalSize": 5000000000,
//!   "sha256": "sha256:…",
//!   "parts": [
//!     {"name": "bundle.tar.zst.001", "size": 4294967295, "sha256": "sha256:…"},
//!     {"name": "bundle.tar.zst.002", "size": 705032705, "sha256": "sha256:…"}
//!   ]
//! }
//! ```
//!
//! `sha256` at the top is the digest of the whole concatenated stream (what `sha256sum` of the
//! single-file bundle would give); each part's `sha256` lets a part be checked on its own.
//! Readers ignore fields they do not know and refuse a newer `formatVersion`. Part names are
//! resolved beside the sidecar; a set renamed as a whole (every part and the sidecar to a new
//! base) still opens, since names are re-derived from the sidecar's own file name.
//!
//! # Without a sidecar
//!
//! A set whose sidecar was not copied still opens ([`open_set`] finds the parts by name): the
//! parts must be numbered contiguously from 1, and the part size is taken from the parts
//! themselves, so a missing or truncated middle part is still caught, but there are no
//! checksums ([`PartSet::sidecar`] and every `sha256` are `None`). The bundle inside carries
//! its own digests, so its content is verified regardless.
//!
//! # Sizes
//!
//! [`parse_size`]: `4G`, `4Gi` and `4GiB` are binary (4 × 1024³), as in `split`, `dd`,
//! `truncate` and most CLI tools; `4GB` is decimal (4 × 1000³); `fat32` is 4 GiB - 1 byte.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};

/// The sidecar's version; a reader refuses a newer one.
pub const PARTS_FORMAT_VERSION: u32 = 1;
/// Appended to the base name to form the sidecar's name.
pub const SIDECAR_SUFFIX: &str = ".parts.json";
/// The largest file FAT32 holds: 4 GiB - 1 byte (what `--split fat32` means).
pub const FAT32_MAX_FILE: u64 = (4 << 30) - 1;
/// The fewest digits in a part number.
pub const MIN_PART_DIGITS: usize = 3;
/// Sidecars larger than this are refused before being read (about 100,000 parts).
const MAX_SIDECAR_SIZE: u64 = 16 * 1024 * 1024;

/// Errors of this module. Each names the file, part or input at fault.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("invalid size {input:?}: {reason}")]
    InvalidSize { input: String, reason: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// A part went past what the filesystem accepts in one file (FAT32: 4 GiB - 1).
    #[error("{}: the filesystem refused to grow the file past {written} bytes ({source}); FAT32 holds at most 4 GiB - 1 byte per file: split with `fat32` or smaller", path.display())]
    FileTooLarge {
        path: PathBuf,
        written: u64,
        source: io::Error,
    },
    #[error("no split bundle at {}: found neither the sidecar {} nor a first part {}", path.display(), sidecar.display(), first_part.display())]
    NotFound {
        path: PathBuf,
        sidecar: PathBuf,
        first_part: PathBuf,
    },
    #[error("invalid sidecar {}: {reason}", path.display())]
    Sidecar { path: PathBuf, reason: String },
    #[error("sidecar {} has format version {found}, newer than this airgap understands ({PARTS_FORMAT_VERSION}); upgrade airgap", path.display())]
    FutureSidecar { path: PathBuf, found: u32 },
    /// Parts of different number widths share a base (e.g. `.001` and `.0001`): two sets mixed.
    #[error("{}: {reason}", path.display())]
    Ambiguous { path: PathBuf, reason: String },
    /// A part is missing, of the wrong size, corrupt or out of order.
    #[error(transparent)]
    Part(PartProblem),
    #[error("invalid part size for {}: must be at least 1 byte", base.display())]
    ZeroPartSize { base: PathBuf },
    #[error("nothing was written to the split bundle {}: no part to finish", base.display())]
    Empty { base: PathBuf },
    #[error("an earlier write to the split bundle {} failed; the set is incomplete", base.display())]
    Poisoned { base: PathBuf },
}

impl VolumeError {
    /// The `VolumeError` carried by an `io::Error` from [`SplitWriter`] or
    /// [`MultiPartReader`], if it is one of theirs (also works after it passed, unwrapped,
    /// through layers such as zstd or tar that return the source's error as is).
    pub fn from_io(e: &io::Error) -> Option<&VolumeError> {
        e.get_ref()?.downcast_ref::<VolumeError>()
    }
}

/// What is wrong with one part, named by its file name (the set's directory is
/// [`PartSet::dir`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartProblem {
    #[error("part {name} is missing")]
    Missing { name: String },
    #[error("part {name} is {actual} bytes, but {expected} were expected ({})",
        if actual < expected { "truncated" } else { "too long" })]
    WrongSize {
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error("part {name} is corrupt: its sha256 does not match the sidecar")]
    Corrupt { name: String },
    /// The part holds another part's content (its sha256 is that part's): renamed or swapped.
    #[error("part {name} is out of order: it holds the content of {belongs_at} (parts renamed or swapped?)")]
    OutOfOrder { name: String, belongs_at: String },
    #[error("part {name} cannot be read: {reason}")]
    Unreadable { name: String, reason: String },
}

impl PartProblem {
    /// The file name of the part at fault.
    pub fn name(&self) -> &str {
        match self {
            PartProblem::Missing { name }
            | PartProblem::WrongSize { name, .. }
            | PartProblem::Corrupt { name }
            | PartProblem::OutOfOrder { name, .. }
            | PartProblem::Unreadable { name, .. } => name,
        }
    }

    fn kind(&self) -> io::ErrorKind {
        match self {
            PartProblem::Missing { .. } => io::ErrorKind::NotFound,
            PartProblem::WrongSize {
                expected, actual, ..
            } if actual < expected => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        }
    }
}

/// One part of a set, as recorded in the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartInfo {
    /// File name (no directory), e.g. `bundle.tar.zst.002`.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// `None` only for a set found without its sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Digest>,
}

/// A split set: its serialised form is the sidecar (`<base>.parts.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartSet {
    pub format_version: u32,
    /// The directory holding the parts and the sidecar, as given (possibly empty: the current
    /// directory). Not serialised: a set is carried from machine to machine.
    #[serde(skip)]
    pub dir: PathBuf,
    /// The sidecar this set was read from or written to; `None` when the set was found by the
    /// part names alone (then no part has a `sha256`). Not serialised.
    #[serde(skip)]
    pub sidecar: Option<PathBuf>,
    /// The base file name, e.g. `bundle.tar.zst` (no directory; see [`PartSet::base_path`]).
    pub base: String,
    /// The size every part but the last has.
    pub part_size: u64,
    pub part_count: usize,
    /// The size of the whole stream: the sum of the part sizes.
    pub total_size: u64,
    /// The sha256 of the whole concatenated stream (`None` without a sidecar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Digest>,
    pub parts: Vec<PartInfo>,
}

impl PartSet {
    /// `dir/base`: the path the single-file bundle would have.
    pub fn base_path(&self) -> PathBuf {
        self.dir.join(&self.base)
    }
    /// The path of part `index` (0-based into `parts`).
    pub fn part_path(&self, index: usize) -> PathBuf {
        self.dir.join(&self.parts[index].name)
    }
    /// Where this set's sidecar is (or would be).
    pub fn sidecar_path(&self) -> PathBuf {
        self.dir.join(format!("{}{SIDECAR_SUFFIX}", self.base))
    }

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

/// Parses a part size.
///
/// - A whole number of bytes, optionally with a unit (case-insensitive, spaces allowed
///   between): `B`; binary `K`/`Ki`/`KiB`, `M`/`Mi`/`MiB`, `G`/`Gi`/`GiB`, `T`/`Ti`/`TiB`
///   (powers of 1024); decimal `KB`, `MB`, `GB`, `TB` (powers of 1000). A bare `4G` is
///   binary, as in most CLI tools.
/// - A decimal fraction is accepted when the result is a whole number of bytes (`1.5G`,
///   `0.5K`; not `0.1K`).
/// - `fat32`: 4 GiB - 1 byte, the largest file FAT32 holds.
///
/// Zero, negative numbers, unknown units and overflows are errors naming the input.
pub fn parse_size(s: &str) -> Result<u64, VolumeError> {
    let err = |reason: String| VolumeError::InvalidSize {
        input: s.to_string(),
        reason,
    };
    let t = s.trim();
    if t.eq_ignore_ascii_case("fat32") {
        return Ok(FAT32_MAX_FILE);
    }
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(end);
    let unit = unit.trim_start();
    if num.is_empty() {
        return Err(err(
            "expected a number with an optional unit (e.g. 4G, 4GiB, 500MB) or fat32".into(),
        ));
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if frac.contains('.') || (int.is_empty() && frac.is_empty()) || num.ends_with('.') {
        return Err(err(format!("{num:?} is not a number")));
    }
    let mult: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(err(format!(
                "unknown unit {unit:?} (use B; K, M, G, T or KiB, MiB, GiB, TiB for powers of \
                 1024; KB, MB, GB, TB for powers of 1000; or fat32)"
            )))
        }
    };
    let too_large = || err("too large".into());
    // At most 20 digits fit a u64; more is too large (leading zeros aside).
    let int = int.trim_start_matches('0');
    if int.len() > 20 || frac.len() > 20 {
        return Err(if int.len() > 20 {
            too_large()
        } else {
            err("too many decimals".into())
        });
    }
    let int_v: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| too_large())?
    };
    let frac_v: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| err("not a number".into()))?
    };
    let scale = 10u128.pow(frac.len() as u32);
    let frac_bytes = frac_v * mult;
    if frac_bytes % scale != 0 {
        return Err(err("not a whole number of bytes".into()));
    }
    let total = int_v
        .checked_mul(mult)
        .and_then(|v| v.checked_add(frac_bytes / scale))
        .ok_or_else(too_large)?;
    let total = u64::try_from(total).map_err(|_| too_large())?;
    if total == 0 {
        return Err(err("a part size must be greater than zero".into()));
    }
    Ok(total)
}

/// The name of part `number` (1-based) of `base` with `width` digits.
fn part_name(base: &str, number: usize, width: usize) -> String {
    format!("{base}.{number:0width$}")
}

/// The digit width a set of `count` parts uses.
fn width_for(count: usize) -> usize {
    count.to_string().len().max(MIN_PART_DIGITS)
}

/// `("bundle.tar.zst", 3, 3)` for `bundle.tar.zst.003`: a suffix of at least 3 digits, the
/// number at least 1.
fn split_part_name(name: &str) -> Option<(&str, usize, usize)> {
    let (base, digits) = name.rsplit_once('.')?;
    if base.is_empty()
        || digits.len() < MIN_PART_DIGITS
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let number: usize = digits.parse().ok().filter(|&n| n > 0)?;
    Some((base, number, digits.len()))
}

fn read_dir_of(dir: &Path) -> &Path {
    if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Every file in `dir` named `<base>.<digits>`: (number, width, name), sorted by number.
fn list_parts(dir: &Path, base: &str) -> Result<Vec<(usize, usize, String)>, VolumeError> {
    let rd = read_dir_of(dir);
    let mut found = Vec::new();
    for entry in fs::read_dir(rd).map_err(io_error(rd))? {
        let entry = entry.map_err(io_error(rd))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if let Some((b, number, width)) = split_part_name(&name) {
            if b == base {
                found.push((number, width, name));
            }
        }
    }
    found.sort();
    Ok(found)
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
        Err(e) => return Err(io_error(&sidecar)(e)),
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
        .map_err(io_error(path))?;
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
                "parts numbered with {width} and with {} digits ({} and {}): two sets are mixed; \
                 keep one",
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
        sizes.push(fs::metadata(&pp).map_err(io_error(&pp))?.len());
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
            .ok_or_else(|| VolumeError::Io {
                path: base.to_path_buf(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a split bundle needs a UTF-8 file name",
                ),
            })?
            .to_string();
        let dir = base.parent().unwrap_or(Path::new("")).to_path_buf();
        let rd = read_dir_of(&dir);
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.split-"))
            .tempdir_in(rd)
            .map_err(io_error(rd))?;
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
            part.file.sync_all().map_err(io_error(&display))?;
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
                .map_err(io_error(&self.display_path(number)))?;
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
                Err(e) => return Err(io_error(&display)(e)),
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
            Err(e) => return Err(io_error(&sidecar)(e)),
        }
        let mut renamed: Vec<PathBuf> = Vec::new();
        let result = (|| {
            for (i, (tmp, _, _)) in self.done.iter().enumerate() {
                let dest = set.part_path(i);
                fs::rename(tmp, &dest).map_err(io_error(&dest))?;
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
        sync_dir(read_dir_of(&self.dir));
        set.sidecar = Some(sidecar);
        Ok(set)
    }
}

impl Write for SplitWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_inner(buf).map_err(|e| {
            self.poisoned = true;
            let kind = match &e {
                VolumeError::Io { source, .. } | VolumeError::FileTooLarge { source, .. } => {
                    source.kind()
                }
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
    let dir = read_dir_of(path.parent().unwrap_or(Path::new("")));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempfile_in(dir)
        .map_err(io_error(dir))?;
    let mut json = serde_json::to_vec_pretty(set).expect("a part set serialises");
    json.push(b'\n');
    tmp.write_all(&json).map_err(io_error(path))?;
    tmp.as_file().sync_all().map_err(io_error(path))?;
    // tempfile creates 0600; the sidecar is no more secret than the parts.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path).map_err(|e| VolumeError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Makes renames durable (best effort; a no-op where directories cannot be opened).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Reads the parts of a set in order as one stream, without joining them on disk.
///
/// Each part is checked as its end is reached, before its last bytes are handed out: its size
/// (short: [`PartProblem::WrongSize`], as is a part with bytes beyond its recorded size) and,
/// with a sidecar, its sha256 ([`PartProblem::Corrupt`], or [`PartProblem::OutOfOrder`] when
/// it is another part's content). A part that is not there is [`PartProblem::Missing`] when
/// the stream reaches it. Such a failure is an `io::Error` whose message names the part file
/// and whose inner error is the [`VolumeError`] (see [`VolumeError::from_io`]); every later
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
            VolumeError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        self.failed = Some((kind, e.to_string()));
        io::Error::new(kind, e)
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
                Err(e) => return Err(io_error(&path)(e)),
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
                Err(e) => return Err(io_error(&path)(e)),
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
                Err(e) => return Err(io_error(&self.set.part_path(self.index))(e)),
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

#[cfg(test)]
mod tests {
    use super::*;

    const PART: u64 = 1000;

    /// Deterministic, non-repeating bytes (so any two parts differ).
    fn data(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Writes `bytes` in uneven chunks that straddle part boundaries.
    fn write_set(base: &Path, part_size: u64, bytes: &[u8]) -> PartSet {
        let mut w = SplitWriter::create(base, part_size).unwrap();
        let sizes = [7usize, 333, 1000, 2500, 1, 999];
        let mut off = 0;
        let mut i = 0;
        while off < bytes.len() {
            let n = sizes[i % sizes.len()].min(bytes.len() - off);
            w.write_all(&bytes[off..off + n]).unwrap();
            off += n;
            i += 1;
        }
        w.finish().unwrap()
    }

    /// Reads through small, odd-sized buffers.
    fn read_all(r: &mut MultiPartReader) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 77];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn part(i: usize) -> String {
        format!("b.tar.zst.{i:03}")
    }

    /// A set of 11 parts (10 full, the last 500 bytes) in a fresh directory.
    fn fixture() -> (tempfile::TempDir, PathBuf, Vec<u8>, PartSet) {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("b.tar.zst");
        let bytes = data(10_500);
        let set = write_set(&base, PART, &bytes);
        (d, base, bytes, set)
    }

    /// Reads the set through `MultiPartReader`; returns the bytes read before the error, and
    /// the error.
    fn read_failure(set: PartSet) -> (usize, io::Error) {
        let mut r = MultiPartReader::new(set);
        let mut got = 0;
        let mut buf = [0u8; 77];
        loop {
            match r.read(&mut buf) {
                Ok(0) => panic!("read the whole set without an error"),
                Ok(n) => got += n,
                Err(e) => return (got, e),
            }
        }
    }

    fn problem_of(e: &io::Error) -> &PartProblem {
        match VolumeError::from_io(e) {
            Some(VolumeError::Part(p)) => p,
            other => panic!("not a part problem: {other:?} ({e})"),
        }
    }

    #[test]
    fn round_trip_across_part_boundaries() {
        let (d, base, bytes, set) = fixture();
        let names: Vec<String> = (1..=11).map(part).collect();
        let mut expected_files = names.clone();
        expected_files.push("b.tar.zst.parts.json".into());
        assert_eq!(names_in(d.path()), expected_files);
        assert_eq!(set.parts.len(), 11);
        assert_eq!(set.part_count, 11);
        assert_eq!(set.total_size, 10_500);
        assert_eq!(set.part_size, PART);
        assert_eq!(set.sha256, Some(Digest::of(&bytes)));
        for (i, p) in set.parts.iter().enumerate() {
            let chunk = &bytes[i * 1000..((i + 1) * 1000).min(bytes.len())];
            assert_eq!(p.name, names[i]);
            assert_eq!(p.size, chunk.len() as u64);
            assert_eq!(p.sha256, Some(Digest::of(chunk)));
            assert_eq!(fs::read(set.part_path(i)).unwrap(), chunk);
        }
        assert_eq!(set.base_path(), base);
        let mut r = MultiPartReader::new(set.clone());
        assert_eq!(read_all(&mut r).unwrap(), bytes);
        assert_eq!(r.position(), 10_500);
        assert!(check_parts(&set).is_empty());
    }

    #[test]
    fn sidecar_is_the_documented_json() {
        let (_d, base, bytes, set) = fixture();
        let text = fs::read_to_string(format!("{}.parts.json", base.display())).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["formatVersion"], 1);
        assert_eq!(v["base"], "b.tar.zst");
        assert_eq!(v["partSize"], 1000);
        assert_eq!(v["partCount"], 11);
        assert_eq!(v["totalSize"], 10_500);
        assert_eq!(v["sha256"], Digest::of(&bytes).as_str());
        assert_eq!(v["parts"][1]["name"], "b.tar.zst.002");
        assert_eq!(v["parts"][1]["size"], 1000);
        assert_eq!(
            v["parts"][1]["sha256"],
            Digest::of(&bytes[1000..2000]).as_str()
        );
        assert_eq!(v["parts"][10]["size"], 500);
        // No directory leaks into it.
        assert!(!text.contains(&*base.parent().unwrap().to_string_lossy()));
        assert_eq!(open_set(&base).unwrap(), set);
    }

    #[test]
    fn exact_multiple_has_no_empty_trailing_part() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("b.tar.zst");
        let bytes = data(10_000);
        let set = write_set(&base, PART, &bytes);
        assert_eq!(set.parts.len(), 10);
        assert!(set.parts.iter().all(|p| p.size == PART));
        assert!(!d.path().join(part(11)).exists());
        assert_eq!(names_in(d.path()).len(), 11); // 10 parts and the sidecar
        let mut r = MultiPartReader::new(open_set(&base).unwrap());
        assert_eq!(read_all(&mut r).unwrap(), bytes);
    }

    #[test]
    fn parts_are_hidden_until_finish_and_removed_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("b.tar.zst");
        let mut w = SplitWriter::create(&base, PART).unwrap();
        w.write_all(&data(2500)).unwrap();
        w.flush().unwrap();
        assert_eq!(w.bytes_written(), 2500);
        // Written as it goes (three part files exist), but under temporary names only.
        let names = names_in(d.path());
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with(".b.tar.zst.split-"), "{names:?}");
        assert_eq!(names_in(&d.path().join(&names[0])).len(), 3);
        drop(w);
        assert!(names_in(d.path()).is_empty());
    }

    #[test]
    fn finishing_an_empty_stream_is_an_error_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("b.tar.zst");
        let w = SplitWriter::create(&base, PART).unwrap();
        let e = w.finish().unwrap_err();
        assert!(matches!(e, VolumeError::Empty { .. }), "{e}");
        assert!(e.to_string().contains("b.tar.zst"), "{e}");
        assert!(names_in(d.path()).is_empty());
        assert!(matches!(
            SplitWriter::create(&base, 0),
            Err(VolumeError::ZeroPartSize { .. })
        ));
    }

    #[test]
    fn more_than_999_parts_widen_every_number() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("b");
        let bytes = data(1001);
        let set = write_set(&base, 1, &bytes);
        assert_eq!(set.parts.len(), 1001);
        assert_eq!(set.parts[0].name, "b.0001");
        assert_eq!(set.parts[1000].name, "b.1001");
        assert!(!d.path().join("b.001").exists());
        let again = open_set(&d.path().join("b.0500")).unwrap();
        assert_eq!(again, set);
        let mut r = MultiPartReader::new(again);
        assert_eq!(read_all(&mut r).unwrap(), bytes);
    }

    #[test]
    fn finish_removes_leftover_parts_of_an_earlier_set() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("b.tar.zst");
        write_set(&base, PART, &data(4500));
        assert!(d.path().join(part(5)).exists());
        let bytes = data(2100);
        let set = write_set(&base, PART, &bytes);
        assert_eq!(set.parts.len(), 3);
        assert!(!d.path().join(part(4)).exists());
        assert!(!d.path().join(part(5)).exists());
        // Not the continuation of a run from 1: not an earlier set's part, kept.
        fs::write(d.path().join("b.tar.zst.2024"), b"mine").unwrap();
        write_set(&base, PART, &bytes);
        assert!(d.path().join("b.tar.zst.2024").exists());
        fs::remove_file(d.path().join("b.tar.zst.2024")).unwrap();
        fs::remove_file(set.sidecar_path()).unwrap();
        // Found by name alone: exactly the new three.
        let found = open_set(&base).unwrap();
        assert_eq!(found.parts.len(), 3);
        assert_eq!(read_all(&mut MultiPartReader::new(found)).unwrap(), bytes);
    }

    #[test]
    fn missing_part() {
        let (_d, _base, _bytes, set) = fixture();
        fs::remove_file(set.part_path(3)).unwrap();
        assert_eq!(
            check_parts(&set),
            vec![PartProblem::Missing { name: part(4) }]
        );
        let (got, e) = read_failure(set);
        assert_eq!(got, 3000);
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains(&part(4)), "{e}");
        assert_eq!(problem_of(&e), &PartProblem::Missing { name: part(4) });
    }

    #[test]
    fn truncated_part() {
        let (_d, _base, _bytes, set) = fixture();
        let f = fs::OpenOptions::new()
            .write(true)
            .open(set.part_path(4))
            .unwrap();
        f.set_len(600).unwrap();
        drop(f);
        let want = PartProblem::WrongSize {
            name: part(5),
            expected: 1000,
            actual: 600,
        };
        assert_eq!(check_parts(&set), vec![want.clone()]);
        let (got, e) = read_failure(set);
        assert!(got <= 4600, "{got}");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains(&part(5)), "{e}");
        assert!(e.to_string().contains("truncated"), "{e}");
        assert_eq!(problem_of(&e), &want);
    }

    #[test]
    fn part_with_extra_bytes() {
        let (_d, _base, _bytes, set) = fixture();
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(set.part_path(1))
            .unwrap();
        f.write_all(b"x").unwrap();
        drop(f);
        let want = PartProblem::WrongSize {
            name: part(2),
            expected: 1000,
            actual: 1001,
        };
        assert_eq!(check_parts(&set), vec![want.clone()]);
        let (got, e) = read_failure(set);
        assert!(got < 2000, "{got}");
        assert_eq!(problem_of(&e), &want);
    }

    #[test]
    fn flipped_byte_in_part_2() {
        let (_d, _base, _bytes, set) = fixture();
        let p = set.part_path(1);
        let mut b = fs::read(&p).unwrap();
        b[123] ^= 0x01;
        fs::write(&p, b).unwrap();
        let want = PartProblem::Corrupt { name: part(2) };
        assert_eq!(check_parts(&set), vec![want.clone()]);
        let (got, e) = read_failure(set);
        // Caught at the part's end, before its last bytes are handed out.
        assert!((1000..2000).contains(&got), "{got}");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains(&part(2)), "{e}");
        assert_eq!(problem_of(&e), &want);
    }

    #[test]
    fn two_parts_swapped() {
        let (_d, _base, _bytes, set) = fixture();
        let (p2, p3) = (set.part_path(1), set.part_path(2));
        let tmp = p2.with_extension("swap");
        fs::rename(&p2, &tmp).unwrap();
        fs::rename(&p3, &p2).unwrap();
        fs::rename(&tmp, &p3).unwrap();
        assert_eq!(
            check_parts(&set),
            vec![
                PartProblem::OutOfOrder {
                    name: part(2),
                    belongs_at: part(3)
                },
                PartProblem::OutOfOrder {
                    name: part(3),
                    belongs_at: part(2)
                },
            ]
        );
        let (got, e) = read_failure(set);
        assert!((1000..2000).contains(&got), "{got}");
        assert!(e.to_string().contains(&part(2)), "{e}");
        assert_eq!(
            problem_of(&e),
            &PartProblem::OutOfOrder {
                name: part(2),
                belongs_at: part(3)
            }
        );
    }

    #[test]
    fn last_part_swapped_with_a_shorter_size_is_out_of_order() {
        let (_d, _base, _bytes, set) = fixture();
        let (p10, p11) = (set.part_path(9), set.part_path(10));
        let tmp = p10.with_extension("swap");
        fs::rename(&p10, &tmp).unwrap();
        fs::rename(&p11, &p10).unwrap();
        fs::rename(&tmp, &p11).unwrap();
        let problems = check_parts(&set);
        assert_eq!(
            problems,
            vec![
                PartProblem::OutOfOrder {
                    name: part(10),
                    belongs_at: part(11)
                },
                PartProblem::OutOfOrder {
                    name: part(11),
                    belongs_at: part(10)
                },
            ]
        );
    }

    #[test]
    fn errors_stick_after_a_failure() {
        let (_d, _base, _bytes, set) = fixture();
        fs::remove_file(set.part_path(0)).unwrap();
        let mut r = MultiPartReader::new(set);
        let mut buf = [0u8; 10];
        let e1 = r.read(&mut buf).unwrap_err();
        let e2 = r.read(&mut buf).unwrap_err();
        assert_eq!(e1.to_string(), e2.to_string());
        assert!(e2.to_string().contains(&part(1)));
    }

    #[test]
    fn open_set_from_any_name() {
        let (d, base, bytes, set) = fixture();
        let dir = d.path();
        for p in [
            dir.join(part(1)),
            dir.join(part(3)),
            dir.join("b.tar.zst.parts.json"),
            base.clone(),
            dir.join("b.tar.zst.*"),
        ] {
            let got = open_set(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(got, set, "from {}", p.display());
            assert_eq!(got.sidecar.as_deref(), Some(&*set.sidecar_path()));
            assert!(is_split(&p), "{}", p.display());
            let mut r = MultiPartReader::open(&p).unwrap();
            assert_eq!(read_all(&mut r).unwrap(), bytes);
        }
    }

    #[test]
    fn open_set_errors_name_the_path() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("nothing.tar.zst");
        let e = open_set(&p).unwrap_err();
        assert!(matches!(e, VolumeError::NotFound { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("nothing.tar.zst.parts.json"), "{msg}");
        assert!(msg.contains("nothing.tar.zst.001"), "{msg}");
        assert!(!is_split(&p));
    }

    #[test]
    fn is_split_tells_a_single_file_bundle() {
        let d = tempfile::tempdir().unwrap();
        let single = d.path().join("single.tar.zst");
        fs::write(&single, b"zstd").unwrap();
        assert!(!is_split(&single));
        // A single file whose name ends in digits is not a part of anything.
        let dated = d.path().join("bundle.2024");
        fs::write(&dated, b"zstd").unwrap();
        assert!(!is_split(&dated));
        // A set of the same base does not turn the single file into a set.
        write_set(&single, PART, &data(1500));
        assert!(!is_split(&single));
        assert!(is_split(&d.path().join("single.tar.zst.002")));
    }

    #[test]
    fn without_sidecar_parts_are_found_by_name() {
        let (_d, base, bytes, set) = fixture();
        fs::remove_file(set.sidecar_path()).unwrap();
        let found = open_set(&base.parent().unwrap().join(part(1))).unwrap();
        assert_eq!(found.sidecar, None);
        assert_eq!(found.sha256, None);
        assert_eq!(found.part_size, PART);
        assert_eq!(found.total_size, 10_500);
        assert_eq!(found.parts.len(), 11);
        assert!(found.parts.iter().all(|p| p.sha256.is_none()));
        assert!(check_parts(&found).is_empty());
        assert_eq!(
            read_all(&mut MultiPartReader::new(found.clone())).unwrap(),
            bytes
        );

        // A truncated middle part is still caught by size.
        let f = fs::OpenOptions::new()
            .write(true)
            .open(set.part_path(1))
            .unwrap();
        f.set_len(10).unwrap();
        drop(f);
        let found = open_set(&base).unwrap();
        let want = PartProblem::WrongSize {
            name: part(2),
            expected: 1000,
            actual: 10,
        };
        assert_eq!(check_parts(&found), vec![want.clone()]);
        assert_eq!(problem_of(&read_failure(found).1), &want);

        // A gap is named.
        fs::remove_file(set.part_path(6)).unwrap();
        let e = open_set(&base).unwrap_err();
        assert!(
            matches!(&e, VolumeError::Part(PartProblem::Missing { name }) if *name == part(7)),
            "{e}"
        );
    }

    #[test]
    fn mixed_widths_without_sidecar_are_refused() {
        let (d, base, _bytes, set) = fixture();
        fs::remove_file(set.sidecar_path()).unwrap();
        fs::write(d.path().join("b.tar.zst.0012"), b"x").unwrap();
        let e = open_set(&base).unwrap_err();
        assert!(matches!(e, VolumeError::Ambiguous { .. }), "{e}");
    }

    #[test]
    fn a_set_renamed_as_a_whole_still_opens() {
        let (d, _base, bytes, set) = fixture();
        for i in 0..set.parts.len() {
            fs::rename(
                set.part_path(i),
                d.path().join(format!("new.tar.zst.{:03}", i + 1)),
            )
            .unwrap();
        }
        fs::rename(set.sidecar_path(), d.path().join("new.tar.zst.parts.json")).unwrap();
        let got = open_set(&d.path().join("new.tar.zst.001")).unwrap();
        assert_eq!(got.base, "new.tar.zst");
        assert_eq!(got.parts[0].name, "new.tar.zst.001");
        assert!(check_parts(&got).is_empty());
        assert_eq!(read_all(&mut MultiPartReader::new(got)).unwrap(), bytes);
    }

    #[test]
    fn sidecar_is_validated() {
        let (_d, base, _bytes, set) = fixture();
        let path = set.sidecar_path();
        let original: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        type Edit = fn(&mut serde_json::Value);
        let cases: Vec<(&str, Edit)> = vec![
            ("is named", |v| {
                v["parts"][1]["name"] = "../../etc/passwd".into()
            }),
            ("partCount", |v| v["partCount"] = 12.into()),
            ("totalSize", |v| v["totalSize"] = 10_501.into()),
            ("listed as", |v| v["parts"][2]["size"] = 999.into()),
            ("no sha256", |v| {
                v["parts"][0].as_object_mut().unwrap().remove("sha256");
            }),
            ("sha256", |v| v["sha256"] = "md5:abc".into()),
            ("no part", |v| v["parts"] = serde_json::json!([])),
        ];
        for (needle, edit) in cases {
            let mut v = original.clone();
            edit(&mut v);
            fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
            let e = open_set(&base).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, VolumeError::Sidecar { .. }), "{needle}: {msg}");
            assert!(msg.contains("b.tar.zst.parts.json"), "{msg}");
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
        let mut v = original.clone();
        v["formatVersion"] = 2.into();
        fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        assert!(matches!(
            open_set(&base),
            Err(VolumeError::FutureSidecar { found: 2, .. })
        ));
        // Unknown fields are ignored.
        let mut v = original;
        v["later"] = "field".into();
        fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(open_set(&base).unwrap(), set);
    }

    #[test]
    fn parse_size_table() {
        const GIB: u64 = 1 << 30;
        let ok: &[(&str, u64)] = &[
            ("1", 1),
            ("1000", 1000),
            ("512B", 512),
            ("4K", 4096),
            ("4k", 4096),
            ("4KiB", 4096),
            ("4KB", 4000),
            ("4kb", 4000),
            ("512M", 512 << 20),
            ("512MiB", 512 << 20),
            ("512Mi", 512 << 20),
            ("500MB", 500_000_000),
            ("4G", 4 * GIB),
            ("4g", 4 * GIB),
            ("4Gi", 4 * GIB),
            ("4GiB", 4 * GIB),
            ("4 GiB", 4 * GIB),
            (" 4G ", 4 * GIB),
            ("4GB", 4_000_000_000),
            ("1T", 1 << 40),
            ("2TB", 2_000_000_000_000),
            ("1.5G", 3 * GIB / 2),
            ("0.5K", 512),
            ("fat32", FAT32_MAX_FILE),
            ("FAT32", 4 * GIB - 1),
            ("18446744073709551615", u64::MAX),
        ];
        for (input, want) in ok {
            match parse_size(input) {
                Ok(got) => assert_eq!(got, *want, "{input:?}"),
                Err(e) => panic!("{input:?}: {e}"),
            }
        }
        let bad: &[(&str, &str)] = &[
            ("", "expected a number"),
            ("0", "greater than zero"),
            ("0G", "greater than zero"),
            ("0.0", "greater than zero"),
            ("-1G", "expected a number"),
            ("G", "expected a number"),
            ("abc", "expected a number"),
            ("4X", "unknown unit"),
            ("4GG", "unknown unit"),
            ("4 G B", "unknown unit"),
            ("4Gb/s", "unknown unit"),
            ("1.2.3", "not a number"),
            ("4.", "not a number"),
            (".", "not a number"),
            ("0.1K", "whole number"),
            ("1.5", "whole number"),
            ("18446744073709551616", "too large"),
            ("20000000T", "too large"),
            ("99999999999999999999999999", "too large"),
        ];
        for (input, reason) in bad {
            match parse_size(input) {
                Ok(v) => panic!("{input:?} was accepted as {v}"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(matches!(e, VolumeError::InvalidSize { .. }), "{msg}");
                    assert!(msg.contains(&format!("{input:?}")), "{msg}");
                    assert!(msg.contains(reason), "{input:?}: {msg}");
                }
            }
        }
    }

    #[test]
    fn writer_errors_name_the_part() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("b.tar.zst");
        let mut w = SplitWriter::create(&base, PART).unwrap();
        w.write_all(&data(1000)).unwrap();
        // Pull the temporary directory away: the next part cannot be created.
        let tmpdir = fs::read_dir(d.path()).unwrap().next().unwrap().unwrap();
        fs::remove_dir_all(tmpdir.path()).unwrap();
        let e = w.write_all(&data(1000)).unwrap_err();
        assert!(e.to_string().contains("b.tar.zst.002"), "{e}");
        assert!(matches!(
            VolumeError::from_io(&e),
            Some(VolumeError::Io { .. })
        ));
        // Once a write failed, the set cannot be finished.
        assert!(matches!(w.finish(), Err(VolumeError::Poisoned { .. })));
        assert!(!d.path().join(part(1)).exists());
    }
}
