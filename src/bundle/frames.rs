//! The writing side of the seekable layout: cuts the tar stream into frames of at most
//! [`FRAME_SIZE`] bytes, compresses them on a thread pool (or stores them in raw blocks),
//! writes them in order, then the entry index and the seek table (see `seek`).
//!
//! Frame buffers are recycled: a pack of 1 GiB would otherwise map, fault in and unmap a
//! fresh megabyte a thousand times over. Stored frames never go to the pool and are written
//! from the frame buffer itself.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::{mpsc, Arc, Mutex};

use super::seek::{
    EntryIndexFile, EntryLoc, FOOTER_LEN, FRAME_SIZE, INDEX_MAGIC, MAX_INDEX_LEN,
    SEEKABLE_FOOTER_MAGIC, SEEK_TABLE_MAGIC,
};

/// Bytes sampled from the first frame of a section cut with [`FrameWriter::cut_sampled`].
const SAMPLE: usize = 128 * 1024;
/// zstd's largest block.
const MAX_BLOCK: usize = 128 * 1024;
/// Frame buffers kept for reuse beyond those in flight.
const SPARE_BUFFERS: usize = 4;

/// A frame to compress at a level; the pool answers with the frame and hands the buffer back.
type Job = (u64, Vec<u8>, i32);
type Done = (u64, io::Result<Vec<u8>>, Vec<u8>);

/// A frame ready to be written once the frames before it are.
enum Finished {
    Compressed(Vec<u8>, usize),
    /// The tar bytes themselves, to be written in raw blocks.
    Stored(Vec<u8>),
}

/// Cuts the tar stream into frames and compresses them, in order, into `out`.
pub(crate) struct FrameWriter<W: Write> {
    out: W,
    /// The frame being filled: always `FRAME_SIZE` initialised bytes, `fill` of them used.
    chunk: Vec<u8>,
    fill: usize,
    spare: Vec<Vec<u8>>,
    level: i32,
    /// Decide at the end of the next frame whether this section is worth compressing.
    sample: bool,
    /// This section's frames are stored in raw blocks (the sample gained nothing).
    store: bool,
    /// Compresses samples on the writer's thread (made at the first sample).
    sampler: Option<zstd::bulk::Compressor<'static>>,
    /// Uncompressed bytes accepted so far.
    pos: u64,
    frames: Vec<(u32, u32)>,
    engine: Engine,
}

enum Engine {
    Inline(Box<zstd::bulk::Compressor<'static>>),
    Pool(Pool),
}

struct Pool {
    jobs: Option<mpsc::SyncSender<Job>>,
    done: mpsc::Receiver<Done>,
    next_seq: u64,
    next_out: u64,
    ready: BTreeMap<u64, io::Result<Finished>>,
    limit: u64,
}

fn compressor(level: i32) -> io::Result<zstd::bulk::Compressor<'static>> {
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
    Ok(c)
}

fn compress(
    c: &mut zstd::bulk::Compressor<'static>,
    data: &[u8],
    level: i32,
) -> io::Result<Vec<u8>> {
    c.set_compression_level(level)?;
    c.compress(data)
}

/// Writes `data` as a zstd frame of raw blocks: what zstd itself writes for bytes it cannot
/// compress, without the CPU spent finding that out. It declares its content size (the seek
/// table is checked against it) and has no checksum: the blobs in it are checked by digest.
/// Returns the frame's length.
pub(crate) fn write_raw_frame(out: &mut impl Write, data: &[u8]) -> io::Result<usize> {
    let mut head = [0u8; 9];
    head[..4].copy_from_slice(&0xFD2F_B528u32.to_le_bytes());
    // Frame_Content_Size_flag 2 (4 bytes), Single_Segment_flag, no checksum, no dictionary.
    head[4] = (2 << 6) | (1 << 5);
    head[5..].copy_from_slice(&(data.len() as u32).to_le_bytes());
    out.write_all(&head)?;
    let mut len = head.len();
    let mut chunks = data.chunks(MAX_BLOCK).peekable();
    if chunks.peek().is_none() {
        out.write_all(&[1, 0, 0])?;
        len += 3;
    }
    while let Some(chunk) = chunks.next() {
        let last = u32::from(chunks.peek().is_none());
        // Block_Header: Last_Block, Block_Type 0 (raw), Block_Size; 3 bytes little-endian.
        let header = ((chunk.len() as u32) << 3) | last;
        out.write_all(&header.to_le_bytes()[..3])?;
        out.write_all(chunk)?;
        len += 3 + chunk.len();
    }
    Ok(len)
}

impl<W: Write> FrameWriter<W> {
    /// `threads` 0 compresses in the caller's thread.
    pub fn new(out: W, level: i32, threads: u32) -> io::Result<Self> {
        let engine = if threads == 0 {
            Engine::Inline(Box::new(compressor(level)?))
        } else {
            let limit = u64::from(threads) * 2;
            let (jobs, rx) = mpsc::sync_channel::<Job>(limit as usize);
            let (done_tx, done) = mpsc::channel::<Done>();
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..threads {
                let rx = rx.clone();
                let tx = done_tx.clone();
                let mut c = compressor(level)?;
                std::thread::spawn(move || loop {
                    let job = rx.lock().map(|r| r.recv());
                    let Ok(Ok((seq, data, level))) = job else {
                        break;
                    };
                    // A panic must still answer for its frame, or the writer waits forever.
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        compress(&mut c, &data, level)
                    }))
                    .unwrap_or_else(|_| Err(io::Error::other("zstd compression panicked")));
                    if tx.send((seq, r, data)).is_err() {
                        break;
                    }
                });
            }
            Engine::Pool(Pool {
                jobs: Some(jobs),
                done,
                next_seq: 0,
                next_out: 0,
                ready: BTreeMap::new(),
                limit,
            })
        };
        Ok(FrameWriter {
            out,
            chunk: vec![0; FRAME_SIZE],
            fill: 0,
            spare: Vec::new(),
            level,
            sample: false,
            store: false,
            sampler: None,
            pos: 0,
            frames: Vec::new(),
            engine,
        })
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The level the current frame is compressed at.
    pub fn level(&self) -> i32 {
        self.level
    }

    /// Whether the current section is being stored in raw blocks.
    pub fn storing(&self) -> bool {
        self.store
    }

    /// Ends the current frame; what follows is compressed at `level`.
    pub fn cut(&mut self, level: i32) -> io::Result<()> {
        self.end_frame()?;
        self.level = level;
        self.sample = false;
        self.store = false;
        Ok(())
    }

    /// Like [`Self::cut`] for content that is likely compressed already: when zstd at
    /// level 1 gains under 1% on a sample of the first frame, the section is stored in raw
    /// blocks instead (compressing 1 GiB of gzip layers at level 1 costs a CPU-second and
    /// saves almost nothing).
    pub fn cut_sampled(&mut self, level: i32) -> io::Result<()> {
        self.cut(level)?;
        self.sample = true;
        Ok(())
    }

    /// Reads `r` to its end straight into the frame buffers (no intermediate copy); returns
    /// the bytes read.
    pub fn copy_from(&mut self, r: &mut impl Read) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            let n = match r.read(&mut self.chunk[self.fill..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(total);
            }
            self.accept(n)?;
            total += n as u64;
        }
    }

    /// Counts `n` bytes just put in the frame buffer; ends the frame when it is full.
    fn accept(&mut self, n: usize) -> io::Result<()> {
        self.fill += n;
        self.pos += n as u64;
        if self.fill == FRAME_SIZE {
            self.end_frame()?;
        }
        Ok(())
    }

    /// Whether zstd at level 1 gains at least 1% on the start of `data`.
    fn worth_compressing(&mut self, data: &[u8]) -> io::Result<bool> {
        let sample = &data[..data.len().min(SAMPLE)];
        let c = match &mut self.sampler {
            Some(c) => c,
            None => self.sampler.insert(zstd::bulk::Compressor::new(1)?),
        };
        let z = c.compress(sample)?;
        Ok(z.len() * 100 < sample.len() * 99)
    }

    fn emit(&mut self, compressed: &[u8], raw_len: usize) -> io::Result<()> {
        self.out.write_all(compressed)?;
        self.frames.push((compressed.len() as u32, raw_len as u32));
        Ok(())
    }

    fn emit_stored(&mut self, data: Vec<u8>) -> io::Result<()> {
        let n = write_raw_frame(&mut self.out, &data)?;
        self.frames.push((n as u32, data.len() as u32));
        self.recycle(data);
        Ok(())
    }

    /// A frame buffer back for reuse: initialised bytes are kept as they are, only the tail
    /// a short frame did not fill is zeroed again.
    fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS && buf.capacity() >= FRAME_SIZE {
            buf.resize(FRAME_SIZE, 0);
            self.spare.push(buf);
        }
    }

    fn end_frame(&mut self) -> io::Result<()> {
        if self.fill == 0 {
            return Ok(());
        }
        let next = self.spare.pop().unwrap_or_else(|| vec![0; FRAME_SIZE]);
        let mut data = std::mem::replace(&mut self.chunk, next);
        data.truncate(self.fill);
        self.fill = 0;
        if self.sample {
            self.sample = false;
            self.store = !self.worth_compressing(&data)?;
        }
        let level = self.level;
        if let Engine::Inline(c) = &mut self.engine {
            if self.store {
                return self.emit_stored(data);
            }
            let z = compress(c, &data, level)?;
            self.emit(&z, data.len())?;
            self.recycle(data);
            return Ok(());
        }
        while self.in_flight() >= self.limit() {
            self.collect_one()?;
        }
        if self.store && self.in_flight() == 0 {
            return self.emit_stored(data);
        }
        let Engine::Pool(p) = &mut self.engine else {
            unreachable!("checked above")
        };
        let seq = p.next_seq;
        p.next_seq += 1;
        if self.store {
            // Its turn comes after the frames the pool still holds.
            p.ready.insert(seq, Ok(Finished::Stored(data)));
            return Ok(());
        }
        p.jobs
            .as_ref()
            .and_then(|j| j.send((seq, data, level)).ok())
            .ok_or_else(|| io::Error::other("a compression thread stopped"))
    }

    fn in_flight(&self) -> u64 {
        match &self.engine {
            Engine::Pool(p) => p.next_seq - p.next_out,
            Engine::Inline(_) => 0,
        }
    }

    fn limit(&self) -> u64 {
        match &self.engine {
            Engine::Pool(p) => p.limit,
            Engine::Inline(_) => 1,
        }
    }

    /// Writes the frames whose turn it is; when none is finished, waits for the pool's next.
    fn collect_one(&mut self) -> io::Result<()> {
        if self.write_ready()? {
            return Ok(());
        }
        let Engine::Pool(p) = &mut self.engine else {
            return Ok(());
        };
        let (seq, r, data) = p
            .done
            .recv()
            .map_err(|_| io::Error::other("a compression thread stopped"))?;
        p.ready
            .insert(seq, r.map(|z| Finished::Compressed(z, data.len())));
        self.recycle(data);
        self.write_ready()?;
        Ok(())
    }

    /// Writes every finished frame that is next in order; whether there was one.
    fn write_ready(&mut self) -> io::Result<bool> {
        let mut wrote = false;
        loop {
            let Engine::Pool(p) = &mut self.engine else {
                return Ok(wrote);
            };
            let Some(f) = p.ready.remove(&p.next_out) else {
                return Ok(wrote);
            };
            p.next_out += 1;
            wrote = true;
            match f? {
                Finished::Compressed(z, n) => self.emit(&z, n)?,
                Finished::Stored(data) => self.emit_stored(data)?,
            }
        }
    }

    /// Flushes the last frame, then writes the entry index and the seek table.
    pub fn finish(mut self, entries: Vec<EntryLoc>) -> io::Result<W> {
        self.end_frame()?;
        while self.in_flight() > 0 {
            self.collect_one()?;
        }
        if let Engine::Pool(p) = &mut self.engine {
            p.jobs = None;
        }
        let index = serde_json::to_vec(&EntryIndexFile {
            airgap_entry_index: 1,
            entries,
        })
        .map_err(io::Error::other)?;
        if index.len() as u64 > MAX_INDEX_LEN {
            return Err(io::Error::other(format!(
                "the entry index would be {} bytes, over the {MAX_INDEX_LEN}-byte limit readers \
                 accept: split the images over several bundles",
                index.len()
            )));
        }
        self.out.write_all(&INDEX_MAGIC.to_le_bytes())?;
        self.out.write_all(&(index.len() as u32).to_le_bytes())?;
        self.out.write_all(&index)?;
        let n = self.frames.len() as u32;
        let mut table = Vec::with_capacity(8 + self.frames.len() * 8 + 9);
        table.extend_from_slice(&SEEK_TABLE_MAGIC.to_le_bytes());
        table.extend_from_slice(&(n * 8 + FOOTER_LEN as u32).to_le_bytes());
        for (c, d) in &self.frames {
            table.extend_from_slice(&c.to_le_bytes());
            table.extend_from_slice(&d.to_le_bytes());
        }
        table.extend_from_slice(&n.to_le_bytes());
        table.push(0);
        table.extend_from_slice(&SEEKABLE_FOOTER_MAGIC.to_le_bytes());
        self.out.write_all(&table)?;
        Ok(self.out)
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(FRAME_SIZE - self.fill);
        self.chunk[self.fill..self.fill + n].copy_from_slice(&buf[..n]);
        self.accept(n)?;
        Ok(n)
    }
    /// Frames end only where the writer decides; there is nothing to push early.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
