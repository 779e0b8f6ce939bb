//! Fuzz target: a worker-to-monitor frame through the monitor's request
//! table (the monitor's attack surface from a compromised worker).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_worker_frame(data));
