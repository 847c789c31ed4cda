//! Structure-aware variant of `bundle`: the input is the *uncompressed* tar, compressed here,
//! so mutations reach the tar headers and the JSON entries instead of breaking the zstd frame.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(compressed) = zstd::bulk::compress(data, 1) else {
        return;
    };
    let _ = airgap::bundle::verify(&compressed[..]);
    let _ = airgap::bundle::inspect(&compressed[..]);
});
