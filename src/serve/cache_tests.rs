//! The shared frames on a real seekable bundle file: concurrent readers get the same bytes
//! from one decode per frame, the cache stays within its bytes, least recently used frames
//! go first, and a frame whose bytes changed after a verified read is never sent.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use bytes::Bytes;

use super::super::ops::Metrics;
use super::super::Frames;
use super::*;
use crate::bundle::seek::{open_indexed, open_read_at, SeekIndex};
use crate::bundle::{blob_entry_name, BundleError, BundleWriter};
use crate::digest::Digest;

const MIB: u64 = 1024 * 1024;

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    src: Arc<dyn ReadAt>,
    index: SeekIndex,
    /// Incompressible (stored in raw blocks), over 4 frames.
    a: Vec<u8>,
    /// Compressible (zstd frames with checksums), over 3 frames.
    b: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let a = noise(1, 3 * MIB as usize + 300_000);
        let b: Vec<u8> = (0..(2 * MIB as usize + 123_456))
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect();
        let mut w = BundleWriter::new(Vec::new(), 3, 0).unwrap();
        w.add_compressed_blob(&Digest::of(&a), a.len() as u64, &a[..], true)
            .unwrap();
        w.add_blob(&Digest::of(&b), b.len() as u64, &b[..], true)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar.zst");
        std::fs::write(&path, w.finish().unwrap()).unwrap();
        let (src, index) = open_indexed(&path).unwrap();
        assert!(index.seekable);
        Fixture {
            _dir: dir,
            path,
            src,
            index,
            a,
            b,
        }
    }

    fn offset(&self, blob: &[u8]) -> u64 {
        self.index
            .entry(&blob_entry_name(&Digest::of(blob)))
            .unwrap()
            .offset
    }

    fn frames_of(&self, blob: &[u8]) -> usize {
        let off = self.offset(blob);
        let first = self.index.frame_index(off).unwrap();
        let last = self.index.frame_index(off + blob.len() as u64 - 1).unwrap();
        last - first + 1
    }

    /// A whole (verified) or ranged read; the bytes sent and the outcome.
    fn read(
        &self,
        frames: &Frames,
        blob: &[u8],
        start: u64,
        len: u64,
    ) -> (Vec<u8>, Result<(), BundleError>) {
        let off = self.offset(blob);
        assert!(Frames::covers(&self.index, off + start, len));
        let mut out = Vec::new();
        let verify = start == 0 && len == blob.len() as u64;
        let r = frames.send(
            0,
            self.src.as_ref(),
            &self.index,
            off,
            start,
            len,
            &Digest::of(blob),
            verify,
            64 * 1024,
            |c: Bytes| {
                out.extend_from_slice(&c);
                true
            },
        );
        (out, r)
    }

    /// Flips one byte of `blob` at `at` where the file stores it verbatim (raw blocks).
    fn flip_in_file(&self, blob: &[u8], at: usize) {
        let file = std::fs::read(&self.path).unwrap();
        let needle = &blob[at..at + 64];
        let pos = file
            .windows(64)
            .position(|w| w == needle)
            .expect("stored verbatim");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .unwrap();
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(pos as u64)).unwrap();
        f.write_all(&[file[pos] ^ 0x01]).unwrap();
        f.sync_all().unwrap();
    }
}

fn count(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

#[test]
fn concurrent_readers_get_identical_bytes_from_one_decode_per_frame() {
    let fx = Fixture::new();
    let metrics = Arc::new(Metrics::default());
    let frames = Frames::new(16 * MIB, metrics.clone());
    let n = 8;
    let barrier = Barrier::new(n);
    let outs: Vec<Vec<u8>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let (out, r) = fx.read(&frames, &fx.a, 0, fx.a.len() as u64);
                    r.unwrap();
                    out
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in &outs {
        assert!(out == &fx.a, "a reader got other bytes");
    }
    let spanned = fx.frames_of(&fx.a) as u64;
    assert!(spanned >= 4, "the fixture spans {spanned} frames");
    assert_eq!(
        count(&metrics.frames_decoded),
        spanned,
        "one decode per frame"
    );
    assert_eq!(
        count(&metrics.frames_shared),
        (n as u64 - 1) * spanned,
        "every other frame read shared"
    );
    // Later reads check each frame against the hashes the verified reads recorded.
    let (out, r) = fx.read(&frames, &fx.a, 0, fx.a.len() as u64);
    r.unwrap();
    assert!(out == fx.a);
    assert_eq!(count(&metrics.frames_decoded), spanned);
    // A range across frames of the compressed blob, and the whole of it.
    let (out, r) = fx.read(&frames, &fx.b, 1_000_000, 1_100_000);
    r.unwrap();
    assert!(out[..] == fx.b[1_000_000..2_100_000]);
    let (out, r) = fx.read(&frames, &fx.b, 0, fx.b.len() as u64);
    r.unwrap();
    assert!(out == fx.b);
}

#[test]
fn the_cache_keeps_within_its_bytes_and_drops_the_least_recently_used() {
    let fx = Fixture::new();
    let metrics = Arc::new(Metrics::default());
    let frames = Frames::new(2 * MIB, metrics.clone());
    let off = fx.offset(&fx.a);
    let mut worst = 0;
    let r = frames.send(
        0,
        fx.src.as_ref(),
        &fx.index,
        off,
        0,
        fx.a.len() as u64,
        &Digest::of(&fx.a),
        true,
        64 * 1024,
        |_| {
            worst = worst.max(frames.cache.used());
            true
        },
    );
    r.unwrap();
    assert!(worst <= 2 * MIB, "the cache held {worst} bytes");
    assert!(count(&metrics.frame_cache_evictions) >= 2);
    assert!(count(&metrics.frame_cache_bytes) <= 2 * MIB);
    let decoded = count(&metrics.frames_decoded);
    // The last frame read is still there: no decode for it...
    let end = fx.a.len() as u64;
    let (out, r) = fx.read(&frames, &fx.a, end - 1000, 1000);
    r.unwrap();
    assert!(out[..] == fx.a[fx.a.len() - 1000..]);
    assert_eq!(count(&metrics.frames_decoded), decoded);
    // ...the first one was dropped and is decoded again.
    let (out, r) = fx.read(&frames, &fx.a, 0, 1000);
    r.unwrap();
    assert!(out[..] == fx.a[..1000]);
    assert_eq!(count(&metrics.frames_decoded), decoded + 1);
    // A cache smaller than a frame decodes for each reader alone and holds nothing.
    let tiny = Frames::new(1000, metrics.clone());
    let (out, r) = fx.read(&tiny, &fx.b, 0, fx.b.len() as u64);
    r.unwrap();
    assert!(out == fx.b);
    assert_eq!(tiny.cache.used(), 0);
}

/// A source that counts reads and takes its time, so that readers overlap.
struct Slow(Arc<dyn ReadAt>, AtomicU64);

impl ReadAt for Slow {
    fn len(&self) -> u64 {
        self.0.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.1.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_millis(100));
        self.0.read_at(buf, offset)
    }
}

#[test]
fn readers_of_a_frame_being_decoded_wait_for_that_decode() {
    let fx = Fixture::new();
    let metrics = Arc::new(Metrics::default());
    let cache = FrameCache::new(4 * MIB, metrics.clone());
    let slow = Slow(fx.src.clone(), AtomicU64::new(0));
    let k = fx.index.frame_index(fx.offset(&fx.a)).unwrap();
    let f = fx.index.frames[k];
    let barrier = Barrier::new(6);
    let got: Vec<Arc<Decoded>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    cache.get((0, k), &f, &slow).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(slow.1.load(Ordering::Relaxed), 1, "read from the file once");
    assert_eq!(count(&metrics.frames_decoded), 1);
    assert!(
        got.iter().all(|g| Arc::ptr_eq(g, &got[0])),
        "one buffer shared"
    );
    assert_eq!(cache.used(), f.d_size);
    // A source that fails: the slot is freed, the error reported, the next reader retries.
    struct Failing;
    impl ReadAt for Failing {
        fn len(&self) -> u64 {
            u64::MAX
        }
        fn read_at(&self, _: &mut [u8], _: u64) -> std::io::Result<usize> {
            Err(std::io::Error::other("the stick was pulled"))
        }
    }
    let k2 = k + 1;
    let f2 = fx.index.frames[k2];
    let e = cache.get((0, k2), &f2, &Failing).err().unwrap();
    assert!(e.to_string().contains("the stick was pulled"), "{e}");
    assert_eq!(cache.used(), f.d_size, "nothing left reserved");
    let d = cache.get((0, k2), &f2, fx.src.as_ref()).unwrap();
    assert_eq!(d.bytes.len() as u64, f2.d_size);
}

#[test]
fn a_frame_that_changed_after_a_verified_read_is_never_sent() {
    let fx = Fixture::new();
    let metrics = Arc::new(Metrics::default());
    // Room for two frames: reading the other blob evicts this one's.
    let frames = Frames::new(2 * MIB, metrics.clone());
    let whole = fx.a.len() as u64;
    for _ in 0..3 {
        let (out, r) = fx.read(&frames, &fx.a, 0, whole);
        r.unwrap();
        assert!(out == fx.a);
    }
    let (out, r) = fx.read(&frames, &fx.b, 0, fx.b.len() as u64);
    r.unwrap();
    assert!(out == fx.b);
    // The bundle changes under the server, in the blob's second frame.
    let off = fx.offset(&fx.a);
    let k = fx.index.frame_index(off).unwrap() + 1;
    let at = (fx.index.frames[k].d_off - off) as usize + 5000;
    fx.flip_in_file(&fx.a, at);
    let (out, r) = fx.read(&frames, &fx.a, 0, whole);
    match r {
        Err(BundleError::FrameMismatch { frame, .. }) => assert_eq!(frame, k),
        other => panic!("expected a frame mismatch, got {other:?}"),
    }
    let sent = out.len();
    assert!(
        sent < at && out[..] == fx.a[..sent],
        "{sent} bytes sent, not only good ones before the changed frame"
    );
    // The other blob is still served.
    let (out, r) = fx.read(&frames, &fx.b, 0, fx.b.len() as u64);
    r.unwrap();
    assert!(out == fx.b);
}

#[test]
fn a_blob_damaged_before_any_verified_read_never_completes() {
    let fx = Fixture::new();
    let frames = Frames::new(16 * MIB, Arc::new(Metrics::default()));
    let at = fx.a.len() - 2000;
    fx.flip_in_file(&fx.a, at);
    // A fresh view of the file: nothing of it was read before.
    let (src, _) = (open_read_at(&fx.path).unwrap(), ());
    let fx = Fixture { src, ..fx };
    let whole = fx.a.len() as u64;
    for _ in 0..2 {
        let (out, r) = fx.read(&frames, &fx.a, 0, whole);
        assert!(
            matches!(r, Err(BundleError::DigestMismatch { .. })),
            "{r:?}"
        );
        assert!((out.len() as u64) < whole, "the whole blob was sent");
    }
}

#[test]
fn memory_is_split_between_frames_and_readers() {
    use super::super::http::split_memory;
    assert_eq!(split_memory(64 * MIB, None, true), (16 * MIB, 48));
    assert_eq!(split_memory(64 * MIB, None, false), (0, 64));
    assert_eq!(split_memory(16 * MIB, None, true), (4 * MIB, 12));
    // Asked for: at most half, whole MiB; 0 turns sharing off.
    assert_eq!(
        split_memory(64 * MIB, Some(8 * MIB + 5), true),
        (8 * MIB, 56)
    );
    assert_eq!(split_memory(64 * MIB, Some(60 * MIB), true), (32 * MIB, 32));
    assert_eq!(split_memory(64 * MIB, Some(0), true), (0, 64));
    // Too little to share: two readers in place, as before.
    assert_eq!(split_memory(4 * MIB, None, true), (0, 12));
}

#[test]
fn frames_readers_still_want_stay_before_more_recent_ones_nobody_wants() {
    let fx = Fixture::new();
    let metrics = Arc::new(Metrics::default());
    let first = fx.index.frame_index(fx.offset(&fx.a)).unwrap();
    let f = |k: usize| fx.index.frames[first + k];
    let size = f(0).d_size.max(f(1).d_size);
    let cache = FrameCache::new(2 * size, metrics.clone());
    let get = |k: usize| cache.get((0, first + k), &f(k), fx.src.as_ref()).unwrap();
    // A slower reader still has frames 1..=3 ahead of it; frame 0 is behind everyone.
    cache.want(0, first + 1..=first + 3);
    get(1);
    get(0);
    assert_eq!(count(&metrics.frames_decoded), 2);
    // Room for frame 2: frame 0 goes, though used after frame 1.
    get(2);
    get(1);
    assert_eq!(count(&metrics.frames_decoded), 3, "frame 1 was dropped");
    get(0);
    assert_eq!(count(&metrics.frames_decoded), 4);
    cache.unwant(0, first + 1..=first + 3);
}
