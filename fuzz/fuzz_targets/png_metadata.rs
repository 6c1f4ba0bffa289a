#![no_main]
//! See `checks::png_metadata` (fuzz/checks.rs) for what is checked.

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::png_metadata(data));
