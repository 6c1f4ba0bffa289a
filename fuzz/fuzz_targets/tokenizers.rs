#![no_main]
//! See `checks::tokenizers` (fuzz/checks.rs) for what is checked.

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::tokenizers(data));
