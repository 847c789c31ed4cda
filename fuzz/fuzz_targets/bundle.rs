//! `verify` and `inspect` on raw bytes (a .tar.zst as found on a USB stick): never panic,
//! never allocate beyond the limits (run with -rss_limit_mb / -malloc_limit_mb).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = airgap::bundle::verify(data);
    let _ = airgap::bundle::inspect(data);
});
