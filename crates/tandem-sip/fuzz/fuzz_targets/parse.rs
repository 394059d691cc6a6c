//! Parse, every accessor, an edit and stream framing on arbitrary bytes (see
//! `tandem_sip::fuzz::fuzz_parse`). Run: `cargo +nightly fuzz run parse` from `crates/tandem-sip`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tandem_sip::fuzz::fuzz_parse(data);
});
