#![no_main]
//! See `checks::configs` (fuzz/checks.rs) for what is checked.

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::configs(data));
