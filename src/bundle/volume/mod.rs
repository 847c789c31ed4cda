//! Split volumes: one bundle stream written as numbered part files, and read back as one
//! stream, so a bundle fits on media with a per-file limit (FAT32: 4 GiB - 1 byte).
//!
//! Pure I/O, independent of the bundle format: [`SplitWriter`] is a `Write` and
//! [`MultiPartReader`] a `Read`; the bundle writer and reader sit on top unchanged.
//!
//! The files (parts `<base>.001` …, the sidecar `<base>.parts.json`), how a set is named and
//! found, and what is checked: bundle-spec/FORMAT.md, "Split volumes".
//!
//! # Sizes
//!
//! [`parse_size`]: `4G`, `4Gi` and `4GiB` are binary (4 × 1024³), as in `split`, `dd`,
//! `truncate` and most CLI tools; `4GB` is decimal (4 × 1000³); `fat32` is 4 GiB - 1 byte.

mod reader;
#[cfg(test)]
mod tests;
mod writer;

pub use reader::{check_parts, is_split, open_set, MultiPartReader};
pub use writer::SplitWriter;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::fsutil::FileError;

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

/// Errors of this module. Each names the file, part or input at fault; advice for the user is
/// in [`VolumeError::hint`], not in the message.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("invalid size {input:?}: {reason}")]
    InvalidSize { input: String, reason: String },
    /// A local file operation failed: its action and path, the OS error as source.
    #[error(transparent)]
    File(#[from] FileError),
    /// A part went past what the filesystem accepts in one file (FAT32: 4 GiB - 1).
    #[error("writing {}: the file system refused to grow the file past {written} bytes", path.display())]
    FileTooLarge {
        path: PathBuf,
        written: u64,
        #[source]
        source: io::Error,
    },
    #[error("invalid split bundle name {}: it needs a UTF-8 file name", base.display())]
    InvalidBase { base: PathBuf },
    #[error("no split bundle at {}: found neither the sidecar {} nor a first part {}", path.display(), sidecar.display(), first_part.display())]
    NotFound {
        path: PathBuf,
        sidecar: PathBuf,
        first_part: PathBuf,
    },
    #[error("invalid sidecar {}: {reason}", path.display())]
    Sidecar { path: PathBuf, reason: String },
    #[error("sidecar {} has format version {found}, newer than this airgap understands ({PARTS_FORMAT_VERSION})", path.display())]
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
        let inner = e.get_ref()?;
        inner.downcast_ref::<VolumeError>().or_else(|| {
            inner
                .downcast_ref::<reader::ReadFailure>()
                .map(|f| &f.error)
        })
    }

    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            VolumeError::InvalidSize { .. } => Some(
                "a size is a number with an optional unit: B; K, M, G, T or KiB, MiB, GiB, TiB \
                 for powers of 1024; KB, MB, GB, TB for powers of 1000; or fat32 (4 GiB - 1 byte)"
                    .into(),
            ),
            VolumeError::FileTooLarge { .. } => Some(
                "FAT32 holds at most 4 GiB - 1 byte per file: split with `fat32` or smaller".into(),
            ),
            VolumeError::FutureSidecar { .. } => {
                Some("upgrade airgap to read this split bundle".into())
            }
            VolumeError::Ambiguous { .. } => {
                Some("move one set's parts elsewhere, or put its sidecar beside the parts".into())
            }
            _ => None,
        }
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
        _ => return Err(err(format!("unknown unit {unit:?}"))),
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

/// Every file in `dir` named `<base>.<digits>`: (number, width, name), sorted by number.
fn list_parts(dir: &Path, base: &str) -> Result<Vec<(usize, usize, String)>, VolumeError> {
    let rd = read_dir_of(dir);
    let mut found = Vec::new();
    for entry in fs::read_dir(rd).map_err(FileError::with("listing", rd))? {
        let entry = entry.map_err(FileError::with("listing", rd))?;
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
