//! Fuzz target: NIP-01 event parsing, round trip and verification.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_event(data));
