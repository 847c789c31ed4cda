//! `Reference::parse` never panics, and what it parses prints to text that parses back to
//! the same value.
#![no_main]

use airgap::reference::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Reference::parse(text) {
        let printed = r.to_string();
        match Reference::parse(&printed) {
            Ok(again) => assert_eq!(again, r, "{text:?} printed as {printed:?}"),
            Err(e) => panic!("{text:?} parsed, but its printed form {printed:?} does not: {e}"),
        }
    }
});
