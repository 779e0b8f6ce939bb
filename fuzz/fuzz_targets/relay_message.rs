//! Fuzz target: relay-to-client message parsing and round trip.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_relay_message(data));
