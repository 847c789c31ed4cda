//! Seekable bundles. The zstd stream is a run of independent frames (at most [`FRAME_SIZE`]
//! bytes of tar each, a new one at every large entry) followed by two skippable frames: an
//! entry index (where each tar entry's data lies in the uncompressed tar) and a seek table in
//! the zstd seekable format (compressed and decompressed size of every frame). Decoders that
//! know neither skip them, so `zstd -d` still gives the plain tar; airgap uses them to read one
//! blob without decompressing everything before it (`serve`, concurrent reads).
//!
//! Frames are compressed on a pool of threads: they are independent by construction, so the
//! work splits without the serialisation zstd's own multithreading has at every frame end.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::BundleError;

/// Largest frame, in bytes of tar: the most a ranged read decompresses to reach its start.
pub const FRAME_SIZE: usize = 1 << 20;
/// Skippable frame holding the entry index (JSON).
pub(super) const INDEX_MAGIC: u32 = 0x184D_2A5A;
/// Skippable frame holding the seek table (zstd seekable format).
pub(super) const SEEK_TABLE_MAGIC: u32 = 0x184D_2A5E;
pub(super) const SEEKABLE_FOOTER_MAGIC: u32 = 0x8F92_EAB1;
pub(super) const FOOTER_LEN: u64 = 9;
/// The entry index is read into memory: bound it.
pub const MAX_INDEX_LEN: u64 = 64 << 20;
/// 16 Mi frames of 1 MiB: 16 TiB of tar.
const MAX_FRAMES: u64 = 1 << 24;

/// Where one tar entry's content lies in the uncompressed tar stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryLoc {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EntryIndexFile {
    pub(super) airgap_entry_index: u32,
    pub(super) entries: Vec<EntryLoc>,
}

/// One zstd frame: where it is in the file and which tar bytes it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub c_off: u64,
    pub c_size: u64,
    pub d_off: u64,
    pub d_size: u64,
}

/// The trailer of a seekable bundle, or for an older single-stream bundle one pseudo-frame
/// covering everything (reads then decompress from the start).
#[derive(Debug, Clone)]
pub struct SeekIndex {
    pub frames: Vec<Frame>,
    pub entries: Vec<EntryLoc>,
    /// End of the data frames in the file (where the trailer starts).
    pub data_end: u64,
    /// False for a bundle without a seek table.
    pub seekable: bool,
    by_name: std::sync::OnceLock<std::collections::HashMap<String, usize>>,
}

impl SeekIndex {
    /// The frame holding uncompressed offset `offset`.
    fn frame_for(&self, offset: u64) -> Option<&Frame> {
        self.frames.get(self.frame_index(offset)?)
    }

    /// The index in [`SeekIndex::frames`] of the frame holding uncompressed offset `offset`.
    pub fn frame_index(&self, offset: u64) -> Option<usize> {
        let i = self
            .frames
            .partition_point(|f| f.d_off.saturating_add(f.d_size) <= offset);
        (i < self.frames.len()).then_some(i)
    }

    pub fn entry(&self, name: &str) -> Option<&EntryLoc> {
        let by_name = self.by_name.get_or_init(|| {
            self.entries
                .iter()
                .enumerate()
                .map(|(i, e)| (e.name.clone(), i))
                .collect()
        });
        by_name.get(name).map(|&i| &self.entries[i])
    }
}

fn u32_le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn bad_table(reason: impl Into<String>) -> BundleError {
    BundleError::Corrupt {
        entry: "the seek table".into(),
        reason: reason.into(),
    }
}

/// Reads the trailer. `Ok(None)`: the file has no seek table (a bundle from an older airgap,
/// or recompressed by other tools); an error: it has one, but damaged.
pub fn read_trailer(src: &dyn ReadAt) -> Result<Option<SeekIndex>, BundleError> {
    let len = src.len();
    if len < FOOTER_LEN + 8 {
        return Ok(None);
    }
    let mut footer = [0u8; FOOTER_LEN as usize];
    src.read_exact_at(&mut footer, len - FOOTER_LEN)
        .map_err(|e| bad_table(e.to_string()))?;
    if u32_le(&footer[5..9]) != SEEKABLE_FOOTER_MAGIC {
        return Ok(None);
    }
    let n = u64::from(u32_le(&footer[0..4]));
    let descriptor = footer[4];
    if descriptor & 0x7f != 0 {
        return Err(bad_table(format!(
            "unknown seek table descriptor {descriptor:#x}"
        )));
    }
    let entry_len = if descriptor & 0x80 != 0 { 12 } else { 8 };
    let table_len = 8 + n * entry_len + FOOTER_LEN;
    // Every frame takes at least a few bytes of the file: bound the allocation by that (and
    // by a plausible count) before reading a table a crafted file could size at will.
    if n > MAX_FRAMES || n * 16 > len {
        return Err(bad_table(format!("it claims an implausible {n} frames")));
    }
    if table_len > len {
        return Err(bad_table(format!(
            "it claims {n} frames, more than the file can hold"
        )));
    }
    let table_start = len - table_len;
    let mut table = vec![0u8; (table_len - FOOTER_LEN) as usize];
    src.read_exact_at(&mut table, table_start)
        .map_err(|e| bad_table(e.to_string()))?;
    if u32_le(&table[0..4]) != SEEK_TABLE_MAGIC
        || u64::from(u32_le(&table[4..8])) != n * entry_len + FOOTER_LEN
    {
        return Err(bad_table("its skippable frame header is wrong"));
    }
    let mut frames = Vec::with_capacity(n as usize);
    let (mut c_off, mut d_off) = (0u64, 0u64);
    for e in table[8..].chunks_exact(entry_len as usize) {
        let (c_size, d_size) = (u64::from(u32_le(&e[0..4])), u64::from(u32_le(&e[4..8])));
        if c_size == 0 {
            return Err(bad_table("a frame of zero bytes"));
        }
        frames.push(Frame {
            c_off,
            c_size,
            d_off,
            d_size,
        });
        c_off += c_size;
        d_off += d_size;
    }
    let data_end = c_off;
    if data_end == table_start {
        // A seekable file from another tool (e.g. recompressed with a seekable zstd): the
        // table follows the frames directly, with no entry index of ours; it is read like a
        // bundle without a table.
        return Ok(None);
    }
    // The entry index sits between the data frames and the seek table.
    if data_end + 8 > table_start {
        return Err(bad_table("the frames it lists overlap the table"));
    }
    let mut head = [0u8; 8];
    src.read_exact_at(&mut head, data_end)
        .map_err(|e| bad_table(e.to_string()))?;
    let index_len = u64::from(u32_le(&head[4..8]));
    if u32_le(&head[0..4]) != INDEX_MAGIC || data_end + 8 + index_len != table_start {
        return Err(bad_table(
            "the entry index is not where the seek table says the frames end",
        ));
    }
    if index_len > MAX_INDEX_LEN {
        return Err(bad_table("the entry index is implausibly large"));
    }
    let mut raw = vec![0u8; index_len as usize];
    src.read_exact_at(&mut raw, data_end + 8)
        .map_err(|e| bad_table(e.to_string()))?;
    let file: EntryIndexFile = serde_json::from_slice(&raw)
        .map_err(|e| bad_table(format!("the entry index is not valid: {e}")))?;
    for e in &file.entries {
        if e.offset.checked_add(e.size).is_none_or(|end| end > d_off) {
            return Err(bad_table(format!(
                "entry {} lies beyond the end of the archive",
                e.name
            )));
        }
    }
    Ok(Some(SeekIndex {
        frames,
        entries: file.entries,
        data_end,
        seekable: true,
        by_name: Default::default(),
    }))
}

/// Checks that every frame the seek table lists starts where it says, as a zstd frame that
/// declares the listed decompressed size (the stream pass checked the content itself).
pub fn check_frames(src: &dyn ReadAt, index: &SeekIndex) -> Result<(), BundleError> {
    for (i, f) in index.frames.iter().enumerate() {
        let mut head = [0u8; 18];
        let n = head.len().min(f.c_size as usize);
        src.read_exact_at(&mut head[..n], f.c_off)
            .map_err(|e| bad_table(e.to_string()))?;
        match zstd::zstd_safe::get_frame_content_size(&head[..n]) {
            Ok(Some(size)) if size == f.d_size => {}
            _ => {
                return Err(bad_table(format!(
                    "frame {i} (at byte {}) is not a zstd frame of {} bytes",
                    f.c_off, f.d_size
                )))
            }
        }
    }
    Ok(())
}

/// Positioned reads from a bundle file or a split set, shareable between threads.
pub trait ReadAt: Send + Sync {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(buf, offset)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf = &mut buf[n..];
            offset += n as u64;
        }
        Ok(())
    }
}

/// A single-file bundle.
pub struct FileAt {
    file: File,
    len: u64,
}

impl ReadAt for FileAt {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let room = self.len.saturating_sub(offset);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        self.file.read_at(&mut buf[..want], offset)
    }
}

/// A split set read as one file (parts checked by size, not hashed: readers verify blobs).
pub struct PartsAt {
    parts: Vec<(File, u64, u64)>,
    len: u64,
}

impl ReadAt for PartsAt {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let i = self
            .parts
            .partition_point(|(_, start, size)| start + size <= offset);
        let Some((file, start, size)) = self.parts.get(i) else {
            return Ok(0);
        };
        let room = start + size - offset;
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        file.read_at(&mut buf[..want], offset - start)
    }
}

/// Opens a bundle (a file, or a split set named by any part) for positioned reads.
pub fn open_read_at(path: &Path) -> Result<Arc<dyn ReadAt>, BundleError> {
    let io_err = |p: PathBuf| move |source| BundleError::Io { path: p, source };
    if crate::bundle::volume::is_split(path) {
        let set = crate::bundle::volume::open_set(path)?;
        let mut parts = Vec::with_capacity(set.parts.len());
        let mut start = 0;
        for (i, p) in set.parts.iter().enumerate() {
            let pp = set.part_path(i);
            let file = File::open(&pp).map_err(io_err(pp.clone()))?;
            let actual = file.metadata().map_err(io_err(pp.clone()))?.len();
            if actual != p.size {
                return Err(crate::bundle::volume::VolumeError::Part(
                    crate::bundle::volume::PartProblem::WrongSize {
                        name: p.name.clone(),
                        expected: p.size,
                        actual,
                    },
                )
                .into());
            }
            parts.push((file, start, p.size));
            start += p.size;
        }
        return Ok(Arc::new(PartsAt { parts, len: start }));
    }
    let file = File::open(path).map_err(io_err(path.to_path_buf()))?;
    let len = file.metadata().map_err(io_err(path.to_path_buf()))?.len();
    Ok(Arc::new(FileAt { file, len }))
}

/// A `Read` over `[pos, end)` of a `ReadAt`.
pub struct SliceReader {
    src: Arc<dyn ReadAt>,
    pos: u64,
    end: u64,
}

impl SliceReader {
    pub fn new(src: Arc<dyn ReadAt>, pos: u64, end: u64) -> Self {
        SliceReader { src, pos, end }
    }
}

impl Read for SliceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = self.end.saturating_sub(self.pos);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.src.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the bundle is shorter than its seek table says",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads `len` bytes of the uncompressed tar from `offset`, decompressing from the frame that
/// holds `offset` (at most [`FRAME_SIZE`] bytes are decompressed and dropped to get there).
pub fn read_range(
    src: Arc<dyn ReadAt>,
    index: &SeekIndex,
    offset: u64,
    len: u64,
) -> io::Result<impl Read + Send> {
    let frame = index.frame_for(offset).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("offset {offset} is beyond the end of the archive"),
        )
    })?;
    let compressed = SliceReader::new(src, frame.c_off, index.data_end);
    let mut dec = zstd::stream::read::Decoder::new(compressed)?;
    let skip = offset - frame.d_off;
    let skipped = io::copy(&mut (&mut dec).take(skip), &mut io::sink())?;
    if skipped != skip {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(dec.take(len))
}

/// Reads `len` bytes of blob `digest` from tar offset `offset` in chunks of at most `chunk`
/// bytes, handing each to `send` (which returns false when its reader went away: then this
/// stops quietly). With `verify`, the bytes are hashed and the last chunk is held back until
/// they match: a consumer that ends at the declared length (an HTTP body with a
/// Content-Length) never completes with wrong bytes, it gets the error instead.
#[allow(clippy::too_many_arguments)]
pub fn send_chunks(
    src: Arc<dyn ReadAt>,
    index: &SeekIndex,
    offset: u64,
    len: u64,
    digest: &crate::digest::Digest,
    verify: bool,
    chunk: usize,
    send: impl FnMut(bytes::Bytes) -> bool,
) -> Result<(), BundleError> {
    let corrupt = |e: io::Error| BundleError::Corrupt {
        entry: super::blob_entry_name(digest),
        reason: e.to_string(),
    };
    let r = read_range(src, index, offset, len).map_err(corrupt)?;
    send_from(r, len, digest, verify, chunk, send)
}

/// `send_chunks` from any reader positioned at the range's start (a foreign archive's file).
pub fn send_from(
    mut r: impl Read,
    len: u64,
    digest: &crate::digest::Digest,
    verify: bool,
    chunk: usize,
    mut send: impl FnMut(bytes::Bytes) -> bool,
) -> Result<(), BundleError> {
    let corrupt = |e: io::Error| BundleError::Corrupt {
        entry: super::blob_entry_name(digest),
        reason: e.to_string(),
    };
    let mut r = (&mut r).take(len);
    let mut hasher = verify.then(crate::digest::Hasher::new);
    let mut read = 0u64;
    let mut held: Option<bytes::Bytes> = None;
    loop {
        let mut buf = super::chunks::take(chunk);
        let n = r.read(&mut buf).map_err(corrupt)?;
        if n == 0 {
            break;
        }
        if let Some(h) = &mut hasher {
            h.update(&buf[..n]);
        }
        read += n as u64;
        if let Some(prev) = held.replace(super::chunks::freeze(buf, n)) {
            if !send(prev) {
                return Ok(());
            }
        }
    }
    if read != len {
        return Err(BundleError::SizeMismatch {
            digest: digest.clone(),
            expected: len,
            actual: read,
        });
    }
    if let Some(h) = hasher {
        let (actual, _) = h.finish();
        if &actual != digest {
            return Err(BundleError::DigestMismatch {
                digest: digest.clone(),
                actual,
            });
        }
    }
    if let Some(last) = held {
        send(last);
    }
    Ok(())
}

/// Lists every entry of a bundle without a seek table by decompressing it once.
pub fn scan_entries(input: impl Read) -> Result<Vec<EntryLoc>, BundleError> {
    let dec = zstd::stream::read::Decoder::new(input)
        .map_err(|e| BundleError::NotABundle(format!("cannot start zstd decompression: {e}")))?;
    let mut archive = tar::Archive::new(dec);
    let corrupt = |e: io::Error| BundleError::Corrupt {
        entry: "an entry while indexing".into(),
        reason: e.to_string(),
    };
    let mut out = Vec::new();
    for entry in archive.entries().map_err(corrupt)? {
        let entry = entry.map_err(corrupt)?;
        out.push(EntryLoc {
            name: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
            offset: entry.raw_file_position(),
            size: entry.size(),
        });
    }
    Ok(out)
}

/// Opens a bundle for random access: its seek table, or (older bundles) an index built by one
/// pass whose reads then decompress from the start.
pub fn open_indexed(path: &Path) -> Result<(Arc<dyn ReadAt>, SeekIndex), BundleError> {
    let src = open_read_at(path)?;
    if let Some(index) = read_trailer(src.as_ref())? {
        return Ok((src, index));
    }
    let len = src.len();
    let entries = scan_entries(io::BufReader::new(SliceReader::new(src.clone(), 0, len)))?;
    let index = SeekIndex {
        frames: vec![Frame {
            c_off: 0,
            c_size: len,
            d_off: 0,
            d_size: u64::MAX,
        }],
        entries,
        data_end: len,
        seekable: false,
        by_name: Default::default(),
    };
    Ok((src, index))
}
