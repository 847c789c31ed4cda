//! Reusable chunk buffers for streamed reads (`serve`, re-reads during `load`).
//!
//! A read hands each chunk to a consumer as [`Bytes`] (hyper holds it until the socket took
//! it). Allocating a fresh, zeroed 256 KiB buffer per chunk cost `serve` a quarter of its
//! throughput: with the fixed malloc thresholds a fleet needs (`serve::ops`), every free at
//! the heap's top is trimmed and the next allocation faults its pages in again. A buffer
//! dropped by its consumer comes back here instead, up to a small bound, so steady streaming
//! neither allocates nor zeroes.

use std::sync::Mutex;

use bytes::Bytes;

/// Bytes of free buffers kept at most (16 of serve's 256 KiB chunks), beyond what readers hold.
const KEEP: usize = 4 << 20;

/// The process's pool: every streamed read shares it.
static POOL: Pool = Pool::new(KEEP);

/// A buffer of `len` bytes (contents unspecified), reused when one of that size is free.
pub fn take(len: usize) -> Vec<u8> {
    POOL.take(len)
}

/// The first `n` bytes of `buf` as `Bytes`; the buffer returns to the pool when the last
/// clone is dropped.
pub fn freeze(buf: Vec<u8>, n: usize) -> Bytes {
    POOL.freeze(buf, n)
}

/// `data` copied into a pooled buffer of `len` bytes (or of `data`'s, if longer).
pub fn copy(data: &[u8], len: usize) -> Bytes {
    let mut buf = take(len.max(data.len()));
    buf[..data.len()].copy_from_slice(data);
    freeze(buf, data.len())
}

struct Pool {
    keep: usize,
    /// The free buffers and their total length.
    free: Mutex<(Vec<Vec<u8>>, usize)>,
}

impl Pool {
    const fn new(keep: usize) -> Self {
        Pool {
            keep,
            free: Mutex::new((Vec::new(), 0)),
        }
    }

    fn take(&self, len: usize) -> Vec<u8> {
        let reused = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            let (bufs, kept) = &mut *free;
            let i = bufs.iter().rposition(|b| b.len() == len);
            i.map(|i| {
                *kept -= len;
                bufs.swap_remove(i)
            })
        };
        reused.unwrap_or_else(|| vec![0; len])
    }

    fn freeze(&'static self, buf: Vec<u8>, n: usize) -> Bytes {
        assert!(n <= buf.len(), "{n} bytes of a {}-byte buffer", buf.len());
        Bytes::from_owner(Chunk { buf, n, pool: self })
    }

    fn give_back(&self, buf: Vec<u8>) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let (bufs, kept) = &mut *free;
        if *kept + buf.len() <= self.keep {
            *kept += buf.len();
            bufs.push(buf);
        }
    }
}

struct Chunk {
    buf: Vec<u8>,
    n: usize,
    pool: &'static Pool,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.n]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of its own: the process's is shared with other tests running at once.
    fn pool(keep: usize) -> &'static Pool {
        Box::leak(Box::new(Pool::new(keep)))
    }

    #[test]
    fn a_dropped_chunk_is_reused_and_reads_back_only_its_bytes() {
        let pool = pool(1 << 20);
        let mut buf = pool.take(1000);
        buf[..3].copy_from_slice(b"abc");
        let ptr = buf.as_ptr();
        let b = pool.freeze(buf, 3);
        assert_eq!(&b[..], b"abc");
        let clone = b.clone();
        drop(b);
        assert_eq!(&clone[..], b"abc", "a clone keeps the buffer alive");
        assert_eq!(
            pool.free.lock().unwrap().1,
            0,
            "not back while a clone lives"
        );
        drop(clone);
        assert_eq!(pool.free.lock().unwrap().1, 1000);
        let other = pool.take(999);
        assert_ne!(other.as_ptr(), ptr, "only a buffer of the size asked for");
        let again = pool.take(1000);
        assert_eq!(
            (again.len(), again.as_ptr()),
            (1000, ptr),
            "the freed buffer came back"
        );
        assert_eq!(pool.free.lock().unwrap().1, 0);
    }

    #[test]
    fn buffers_beyond_the_bound_are_freed_not_kept() {
        let pool = pool(2000);
        let (a, b, c) = (pool.take(1000), pool.take(1000), pool.take(1000));
        for buf in [a, b, c] {
            drop(pool.freeze(buf, 10));
        }
        let free = pool.free.lock().unwrap();
        assert_eq!((free.0.len(), free.1), (2, 2000));
    }

    #[test]
    fn the_process_pool_copies_and_reads_back() {
        let c = copy(b"xy", 256 * 1024);
        assert_eq!(&c[..], b"xy");
        let long = vec![7u8; 300];
        assert_eq!(
            &copy(&long, 100)[..],
            &long[..],
            "a longer slice gets a longer buffer"
        );
    }
}
