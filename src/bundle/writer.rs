use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use super::{blob_entry_name, BundleError};
use crate::digest::{Digest, Hasher};

/// Writes bundle entries in the order given, into a multithreaded zstd stream.
/// Every blob is counted (and optionally hashed) as it streams: `tar` alone would silently
/// write a corrupt archive when a reader comes up short.
pub struct BundleWriter<W: Write> {
    tar: tar::Builder<zstd::stream::Encoder<'static, W>>,
    names: HashSet<String>,
}

fn io_err(entry: &str) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: PathBuf::from(entry),
        source,
    }
}

impl<W: Write> BundleWriter<W> {
    /// `level`: zstd level (1-19; 3 is zstd's default); `threads`: compression workers
    /// (0 = single-threaded in the caller's thread).
    pub fn new(out: W, level: i32, threads: u32) -> Result<Self, BundleError> {
        let mut enc = zstd::stream::Encoder::new(out, level).map_err(io_err("zstd"))?;
        if threads > 0 {
            enc.multithread(threads).map_err(io_err("zstd"))?;
        }
        enc.include_checksum(true).map_err(io_err("zstd"))?;
        let mut tar = tar::Builder::new(enc);
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(BundleWriter {
            tar,
            names: HashSet::new(),
        })
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
        self.claim(name)?;
        let mut h = Self::header(bytes.len() as u64);
        self.tar
            .append_data(&mut h, name, bytes)
            .map_err(io_err(name))
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
        let name = blob_entry_name(digest);
        self.claim(&name)?;
        let mut counted = Counted {
            inner: content,
            limit: size,
            hasher: check_digest.then(Hasher::new),
            read: 0,
            overflow: false,
        };
        let mut h = Self::header(size);
        self.tar
            .append_data(&mut h, &name, &mut counted)
            .map_err(io_err(&name))?;
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

    /// Ends the tar and the zstd frame, returning the underlying writer (not yet synced).
    pub fn finish(self) -> Result<W, BundleError> {
        let enc = self.tar.into_inner().map_err(io_err("tar"))?;
        enc.finish().map_err(io_err("zstd"))
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
