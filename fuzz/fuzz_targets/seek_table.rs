//! The seek table and entry index of a bundle (`serve`, `verify`, load's range reads) on raw
//! bytes: reading the trailer, checking the frames and reading every entry it lists must never
//! panic or allocate beyond the limits, whatever the trailer claims.
#![no_main]

use std::io::Read;
use std::sync::Arc;

use airgap::bundle::seek::{check_frames, read_range, read_trailer, ReadAt};
use libfuzzer_sys::fuzz_target;

struct Bytes(Vec<u8>);

impl ReadAt for Bytes {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let start = (offset as usize).min(self.0.len());
        let n = buf.len().min(self.0.len() - start);
        buf[..n].copy_from_slice(&self.0[start..start + n]);
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let src: Arc<dyn ReadAt> = Arc::new(Bytes(data.to_vec()));
    let Ok(Some(index)) = read_trailer(src.as_ref()) else {
        return;
    };
    let _ = check_frames(src.as_ref(), &index);
    // Bounded reads: an entry may claim any size, the decoder must cope.
    for e in index.entries.iter().take(64) {
        if let Ok(r) = read_range(src.clone(), &index, e.offset, e.size.min(1 << 20)) {
            let _ = std::io::copy(&mut r.take(1 << 20), &mut std::io::sink());
        }
    }
});
