//! `Spec::parse` never panics, whatever the text.
#![no_main]

use std::path::Path;

use airgap::spec::Spec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Spec::parse(text, Path::new("airgap.yaml"), &|_| Some("x".into()));
});
