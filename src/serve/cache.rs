//! Shared frame decompression: clients reading the same blob at the same time share one
//! decode of each zstd frame instead of each decompressing it again.
//!
//! A bounded map of decoded frames (at most [`FrameCache::capacity`] bytes), single-flight:
//! the first reader of a frame decodes it while the others wait for it. Readers say which
//! frames they will still read; the frame fewest of them still want goes first (then the
//! least recently used). Plain LRU fails readers of one blob spread over more frames than the
//! cache holds: it drops the frame just ahead of the slowest reader, not the ones behind
//! everyone (measured: half the frame reads of 64 clients of a 96 MiB layer decoded again). Entries are reference-counted: an entry evicted while a reader still copies
//! out of it lives on until that reader drops it (counted in the reader's share of the
//! budget, see `http::SHARED_READER_MEMORY`), so the map's bytes plus the readers' shares
//! stay within `--memory`.
//!
//! Only seekable bundles are cached (frames of at most [`FRAME_SIZE`] bytes of tar); plain
//! tars, layout directories and bundles without a seek table keep reading in place. The
//! verification that goes with it is in `shared`.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::bundle::seek::{Frame, ReadAt, FRAME_SIZE};

use super::ops::Metrics;

/// Which frame: (index of the bundle in the catalog, index of the frame in its seek table).
pub type FrameKey = (usize, usize);

/// One decoded frame, shared by every reader of it.
pub struct Decoded {
    pub bytes: Vec<u8>,
    /// Blobs (by their tar offset) whose part of this very buffer was hashed and found equal
    /// to the part an earlier verified read saw: later readers send it without hashing again.
    checked: Mutex<Vec<u64>>,
}

impl Decoded {
    /// Runs `check` on the part of `blob` at most once for this buffer (others wait for it):
    /// true when it passed now or before.
    pub fn check_once(&self, blob: u64, check: impl FnOnce() -> bool) -> bool {
        let mut done = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        if done.contains(&blob) {
            return true;
        }
        let ok = check();
        if ok {
            done.push(blob);
        }
        ok
    }

    /// Records that `blob`'s part of this buffer was part of a read that matched its digest.
    pub fn mark(&self, blob: u64) {
        let mut done = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        if !done.contains(&blob) {
            done.push(blob);
        }
    }
}

enum Slot {
    /// Being decoded by one reader; its bytes are already counted.
    Loading,
    Ready {
        frame: Arc<Decoded>,
        tick: u64,
    },
}

#[derive(Default)]
struct State {
    slots: HashMap<FrameKey, Slot>,
    /// Readers that will still read each frame (absent: none).
    wanted: HashMap<FrameKey, u32>,
    tick: u64,
    /// Bytes of every slot (loading or ready).
    used: u64,
}

/// The shared, bounded map of decoded frames.
pub struct FrameCache {
    capacity: u64,
    state: Mutex<State>,
    loaded: Condvar,
    metrics: Arc<Metrics>,
}

/// Whether `f` is small enough to decode whole into the cache. A seek table is read from
/// the file: a crafted one could claim frames of any size, and those read in place instead.
pub fn cacheable(f: &Frame) -> bool {
    // Raw blocks add 3 bytes per 128 KiB block; a compressed frame is never much bigger.
    f.d_size <= FRAME_SIZE as u64 && f.c_size <= f.d_size + f.d_size / 8 + 1024
}

impl FrameCache {
    pub fn new(capacity: u64, metrics: Arc<Metrics>) -> FrameCache {
        FrameCache {
            capacity,
            state: Mutex::new(State::default()),
            loaded: Condvar::new(),
            metrics,
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decoded bytes held now (loading or ready).
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    /// The decoded frame `key` (`frame` is where it lies in `src`): from the cache, after
    /// waiting for the reader decoding it, or decoded now. When the cache cannot take it (all
    /// of it reserved by frames being decoded) it is decoded for this reader alone.
    pub fn get(&self, key: FrameKey, frame: &Frame, src: &dyn ReadAt) -> io::Result<Arc<Decoded>> {
        let mut st = self.lock();
        loop {
            let st_ref = &mut *st;
            match st_ref.slots.get_mut(&key) {
                Some(Slot::Ready { frame, tick }) => {
                    st_ref.tick += 1;
                    *tick = st_ref.tick;
                    let f = frame.clone();
                    drop(st);
                    Metrics::add(&self.metrics.frames_shared, 1);
                    return Ok(f);
                }
                Some(Slot::Loading) => {
                    st = self.loaded.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                None => break,
            }
        }
        let size = frame.d_size;
        while st.used + size > self.capacity {
            let victim = st
                .slots
                .iter()
                .filter_map(|(k, s)| match s {
                    Slot::Ready { tick, .. } => {
                        Some((st.wanted.get(k).copied().unwrap_or(0), *tick, *k))
                    }
                    Slot::Loading => None,
                })
                .min();
            let Some((_, _, old)) = victim else {
                break;
            };
            if let Some(Slot::Ready { frame, .. }) = st.slots.remove(&old) {
                st.used -= frame.bytes.len() as u64;
                Metrics::add(&self.metrics.frame_cache_evictions, 1);
            }
        }
        if st.used + size > self.capacity {
            drop(st);
            return self.decode(frame, src);
        }
        st.slots.insert(key, Slot::Loading);
        st.used += size;
        self.gauge(&st);
        drop(st);
        // Whatever happens (an error, a panic), the slot is filled or freed and waiters woken.
        let mut loading = Loading {
            cache: self,
            key,
            size,
            done: None,
        };
        let result = self.decode(frame, src);
        if let Ok(f) = &result {
            loading.done = Some(f.clone());
        }
        drop(loading);
        result
    }

    /// A reader will read frames `frames` of bundle `bundle` (in order).
    pub fn want(&self, bundle: usize, frames: std::ops::RangeInclusive<usize>) {
        let mut st = self.lock();
        for k in frames {
            *st.wanted.entry((bundle, k)).or_default() += 1;
        }
    }

    /// A reader will not read these frames (any more).
    pub fn unwant(&self, bundle: usize, frames: std::ops::RangeInclusive<usize>) {
        let mut st = self.lock();
        for k in frames {
            if let Some(n) = st.wanted.get_mut(&(bundle, k)) {
                *n -= 1;
                if *n == 0 {
                    st.wanted.remove(&(bundle, k));
                }
            }
        }
    }

    fn gauge(&self, st: &State) {
        self.metrics
            .frame_cache_bytes
            .store(st.used, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reads the frame's compressed bytes and decompresses them whole, checking the size the
    /// seek table gives (and zstd the frame's checksum, when it has one).
    fn decode(&self, frame: &Frame, src: &dyn ReadAt) -> io::Result<Arc<Decoded>> {
        Metrics::add(&self.metrics.frames_decoded, 1);
        let bytes = decode_frame(frame, src)?;
        Ok(Arc::new(Decoded {
            bytes,
            checked: Mutex::new(Vec::new()),
        }))
    }
}

/// Decompresses one frame of a seekable bundle into a buffer of its own.
pub fn decode_frame(frame: &Frame, src: &dyn ReadAt) -> io::Result<Vec<u8>> {
    thread_local! {
        // A decompression context per reader thread, not one per frame.
        static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let mut compressed = vec![0u8; frame.c_size as usize];
    src.read_exact_at(&mut compressed, frame.c_off)?;
    let want = frame.d_size as usize;
    let bytes = DCTX.with(|d| -> io::Result<Vec<u8>> {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        let dctx = d.as_mut().expect("just made");
        dctx.decompress(&compressed, want)
    })?;
    if bytes.len() != want {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the frame at byte {} holds {} bytes of tar, not the {want} its seek table says",
                frame.c_off,
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// A slot being decoded: filled (or freed, on an error) when dropped.
struct Loading<'a> {
    cache: &'a FrameCache,
    key: FrameKey,
    size: u64,
    done: Option<Arc<Decoded>>,
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        let mut st = self.cache.lock();
        match self.done.take() {
            Some(frame) => {
                st.tick += 1;
                let tick = st.tick;
                // The real size (checked equal to the table's; kept exact regardless).
                st.used = st.used - self.size + frame.bytes.len() as u64;
                st.slots.insert(self.key, Slot::Ready { frame, tick });
            }
            None => {
                st.slots.remove(&self.key);
                st.used -= self.size;
            }
        }
        self.cache.gauge(&st);
        drop(st);
        self.cache.loaded.notify_all();
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
