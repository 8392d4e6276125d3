//! Vast.ai's answers to rigger's client. See `rigger_fuzz::vast`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rigger_fuzz::vast::check(data));
