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

/// Free buffers kept at most (of one size): 16 x 256 KiB = 4 MiB beyond what readers hold.
const KEEP: usize = 16;

static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer of `len` bytes (contents unspecified), reused when one of that size is free.
pub fn take(len: usize) -> Vec<u8> {
    let reused = {
        let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
        let i = free.iter().rposition(|b| b.len() == len);
        i.map(|i| free.swap_remove(i))
    };
    reused.unwrap_or_else(|| vec![0; len])
}

/// The first `n` bytes of `buf` as `Bytes`; the buffer returns to the pool when the last
/// clone is dropped.
pub fn freeze(buf: Vec<u8>, n: usize) -> Bytes {
    debug_assert!(n <= buf.len());
    Bytes::from_owner(Chunk { buf, n })
}

/// `data` copied into a pooled buffer.
pub fn copy(data: &[u8], len: usize) -> Bytes {
    let mut buf = take(len.max(data.len()));
    buf[..data.len()].copy_from_slice(data);
    freeze(buf, data.len())
}

struct Chunk {
    buf: Vec<u8>,
    n: usize,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.n]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < KEEP {
            free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_chunk_is_reused_and_reads_back_only_its_bytes() {
        // A size no other test uses, so the pool's shared state cannot interfere.
        const LEN: usize = 12_345;
        let mut buf = take(LEN);
        buf[..3].copy_from_slice(b"abc");
        let ptr = buf.as_ptr();
        let b = freeze(buf, 3);
        assert_eq!(&b[..], b"abc");
        let clone = b.clone();
        drop(b);
        assert_eq!(&clone[..], b"abc", "a clone keeps the buffer alive");
        drop(clone);
        let again = take(LEN);
        assert_eq!(again.len(), LEN);
        assert_eq!(again.as_ptr(), ptr, "the freed buffer came back");
        let c = copy(b"xy", LEN);
        assert_eq!(&c[..], b"xy");
    }
}
