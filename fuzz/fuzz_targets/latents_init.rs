#![no_main]
//! See `checks::latents_init` (fuzz/checks.rs) for what is checked.

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::latents_init(data));
