//! The uncompressed tar of a seekable bundle as a stream that can jump forward: what a reader
//! skips (a layer load reads through the seek table instead, or one the registry has) is
//! neither read from disk nor decompressed, except for the part of one frame before where
//! the reader lands.

use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::sync::Arc;

use super::seek::{ReadAt, SeekIndex, SliceReader};

type FrameDecoder = zstd::stream::read::Decoder<'static, BufReader<SliceReader>>;

pub struct SkippingStream {
    src: Arc<dyn ReadAt>,
    index: Arc<SeekIndex>,
    /// Decompressing from some frame on (across frames); `None` after a jump.
    dec: Option<FrameDecoder>,
    /// Position in the uncompressed tar.
    pos: u64,
    /// The frame holding `pos` (`frames.len()` at the end).
    frame: usize,
}

impl SkippingStream {
    /// `index` must be the seek table of `src` (see [`super::seek::read_trailer`]).
    pub fn new(src: Arc<dyn ReadAt>, index: Arc<SeekIndex>) -> Self {
        SkippingStream {
            src,
            index,
            dec: None,
            pos: 0,
            frame: 0,
        }
    }

    /// Where the frame holding `pos` ends (a jump short of it reads on instead).
    fn frame_end(&self) -> u64 {
        self.index
            .frames
            .get(self.frame)
            .map_or(u64::MAX, |f| f.d_off + f.d_size)
    }

    /// Starts decompressing at the frame holding `pos`, dropping what precedes `pos` in it.
    fn open(&mut self) -> io::Result<Option<&mut FrameDecoder>> {
        self.frame = self
            .index
            .frames
            .partition_point(|f| f.d_off.saturating_add(f.d_size) <= self.pos);
        let Some(f) = self.index.frames.get(self.frame) else {
            return Ok(None);
        };
        let compressed = SliceReader::new(self.src.clone(), f.c_off, self.index.data_end);
        let mut dec = zstd::stream::read::Decoder::new(compressed)?;
        let lead = self.pos - f.d_off;
        let dropped = io::copy(&mut (&mut dec).take(lead), &mut io::sink())?;
        if dropped != lead {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "frame {} (at byte {} of the file) ends after {dropped} of the {lead} tar bytes before tar byte {}: the bundle is shorter than its seek table says",
                    self.frame, f.c_off, self.pos
                ),
            ));
        }
        Ok(Some(self.dec.insert(dec)))
    }
}

impl Read for SkippingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let dec = match self.dec.as_mut() {
            Some(d) => d,
            None => match self.open()? {
                Some(d) => d,
                // At or past the end of the frames: what follows is the seek table.
                None => return Ok(0),
            },
        };
        let n = dec.read(buf)?;
        self.pos += n as u64;
        while self.pos >= self.frame_end() {
            self.frame += 1;
        }
        Ok(n)
    }
}

/// Forward only (tar skips the unread rest of an entry with `SeekFrom::Current`).
impl Seek for SkippingStream {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(n) => self.pos.checked_add_signed(n),
            SeekFrom::End(_) => None,
        }
        .filter(|t| *t >= self.pos)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "a bundle stream only moves forward",
            )
        })?;
        if self.dec.is_some() && target < self.frame_end() {
            let want = target - self.pos;
            let got = io::copy(&mut (&mut *self).take(want), &mut io::sink())?;
            if got != want {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the tar ends at byte {}, before byte {target} where the entry ends",
                        self.pos
                    ),
                ));
            }
        } else {
            self.dec = None;
            self.pos = target;
        }
        Ok(self.pos)
    }
}
