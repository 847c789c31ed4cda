use std::collections::HashSet;
use std::io::{self, Read, Write};

use super::frames::FrameWriter;
use super::seek::EntryLoc;
use super::{blob_entry_name, BundleError};
use crate::digest::{Digest, Hasher};

/// Entries at least this big start a frame of their own, so a reader of one blob decompresses
/// nothing of the entries before it.
const OWN_FRAME: u64 = 64 * 1024;
/// The level for content that is already compressed (gzip or zstd layers): higher levels
/// spend CPU finding nothing.
pub const PRECOMPRESSED_LEVEL: i32 = 1;

/// Writes bundle entries in the order given, as a seekable zstd stream (see `seek`).
/// Every blob is counted (and optionally hashed) as it streams: `tar` alone would silently
/// write a corrupt archive when a reader comes up short.
pub struct BundleWriter<W: Write> {
    tar: tar::Builder<FrameWriter<W>>,
    names: HashSet<String>,
    level: i32,
    entries: Vec<EntryLoc>,
}

fn io_err(entry: &str) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |source| BundleError::Write {
        entry: entry.to_string(),
        source,
    }
}

impl<W: Write> BundleWriter<W> {
    /// `level`: zstd level (1-19; 3 is zstd's default); `threads`: compression workers
    /// (0 = single-threaded in the caller's thread).
    pub fn new(out: W, level: i32, threads: u32) -> Result<Self, BundleError> {
        let frames = FrameWriter::new(out, level, threads).map_err(io_err("zstd"))?;
        let mut tar = tar::Builder::new(frames);
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(BundleWriter {
            tar,
            names: HashSet::new(),
            level,
            entries: Vec::new(),
        })
    }

    /// Starts an entry: a new frame when it is big (or compressed differently).
    /// `sampled`: the content is likely compressed already (see `FrameWriter::cut_sampled`).
    fn begin(
        &mut self,
        name: &str,
        size: u64,
        level: i32,
        sampled: bool,
    ) -> Result<(), BundleError> {
        self.claim(name)?;
        let frames = self.tar.get_mut();
        if size >= OWN_FRAME && sampled {
            frames.cut_sampled(level).map_err(io_err(name))?;
        } else if size >= OWN_FRAME || level != frames.level() || (frames.storing() && !sampled) {
            // (Content not known to be compressed does not go on in a stored section.)
            frames.cut(level).map_err(io_err(name))?;
        }
        Ok(())
    }

    /// Records where the entry's content landed: tar pads it to 512 bytes, and whatever
    /// headers came before it (long names) end where the content starts.
    fn end(&mut self, name: &str, size: u64) {
        let end = self.tar.get_ref().position();
        let padded = size.div_ceil(512) * 512;
        self.entries.push(EntryLoc {
            name: name.to_string(),
            offset: end - padded,
            size,
        });
    }

    fn header(size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h
    }

    fn claim(&mut self, name: &str) -> Result<(), BundleError> {
        if !self.names.insert(name.to_string()) {
            return Err(BundleError::Duplicate {
                entry: name.to_string(),
            });
        }
        Ok(())
    }

    /// Adds a small file held in memory.
    pub fn add_file(&mut self, name: &str, bytes: &[u8]) -> Result<(), BundleError> {
        let size = bytes.len() as u64;
        self.begin(name, size, self.level, false)?;
        let mut h = Self::header(size);
        self.tar
            .append_data(&mut h, name, bytes)
            .map_err(io_err(name))?;
        self.end(name, size);
        Ok(())
    }

    /// Streams a blob from `content`, which must yield exactly `size` bytes (and, with
    /// `check_digest`, hash to `digest`); otherwise the bundle is unusable and an error says so.
    pub fn add_blob(
        &mut self,
        digest: &Digest,
        size: u64,
        content: impl Read,
        check_digest: bool,
    ) -> Result<(), BundleError> {
        let level = self.level;
        self.add_blob_at(digest, size, content, check_digest, level, false)
    }

    /// [`BundleWriter::add_blob`] for content that is already compressed (a gzip or zstd
    /// layer): compressed at a fast level, or stored in raw zstd blocks when a sample of its
    /// start shows that even that gains nothing.
    pub fn add_compressed_blob(
        &mut self,
        digest: &Digest,
        size: u64,
        content: impl Read,
        check_digest: bool,
    ) -> Result<(), BundleError> {
        let level = self.level.min(PRECOMPRESSED_LEVEL);
        self.add_blob_at(digest, size, content, check_digest, level, true)
    }

    fn add_blob_at(
        &mut self,
        digest: &Digest,
        size: u64,
        content: impl Read,
        check_digest: bool,
        level: i32,
        sampled: bool,
    ) -> Result<(), BundleError> {
        let name = blob_entry_name(digest);
        self.begin(&name, size, level, sampled)?;
        let mut counted = Counted {
            inner: content,
            limit: size,
            hasher: check_digest.then(Hasher::new),
            read: 0,
            overflow: false,
        };
        // The entry by hand, as `tar` would write it (header, content, zeros to the next 512
        // bytes), so the content goes from `content` straight into the frame buffer instead
        // of through `tar`'s 8 KiB copy buffer: a copy of every byte less.
        let mut h = Self::header(size);
        h.set_path(&name).map_err(io_err(&name))?;
        h.set_cksum();
        let frames = self.tar.get_mut();
        frames.write_all(h.as_bytes()).map_err(io_err(&name))?;
        let len = frames.copy_from(&mut counted).map_err(io_err(&name))?;
        let tail = (512 - len % 512) % 512;
        frames
            .write_all(&[0u8; 512][..tail as usize])
            .map_err(io_err(&name))?;
        self.end(&name, size);
        if counted.read != size || counted.overflow {
            let actual = if counted.overflow {
                size + 1
            } else {
                counted.read
            };
            return Err(BundleError::SizeMismatch {
                digest: digest.clone(),
                expected: size,
                actual,
            });
        }
        if let Some(h) = counted.hasher {
            let (actual, _) = h.finish();
            if &actual != digest {
                return Err(BundleError::DigestMismatch {
                    digest: digest.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }

    /// Ends the tar, the last frame and the seek table, returning the underlying writer (not
    /// yet synced).
    pub fn finish(self) -> Result<W, BundleError> {
        let frames = self.tar.into_inner().map_err(io_err("tar"))?;
        frames.finish(self.entries).map_err(io_err("zstd"))
    }
}

/// Reads at most `limit` bytes, noting whether the source had more.
struct Counted<R> {
    inner: R,
    limit: u64,
    hasher: Option<Hasher>,
    read: u64,
    overflow: bool,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.limit - self.read;
        if left == 0 {
            // Probe for extra bytes the declared size does not cover.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? > 0 {
                self.overflow = true;
            }
            return Ok(0);
        }
        let want = buf.len().min(left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            // Short source: tar would pad with garbage; fail loudly instead.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "blob content ended after {} of {} bytes",
                    self.read, self.limit
                ),
            ));
        }
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.read += n as u64;
        Ok(n)
    }
}
