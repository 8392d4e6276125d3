//! Deliveries through `/webhook`, the inbox and the engine. See `rigger_fuzz::inbox`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rigger_fuzz::inbox::check(data));
