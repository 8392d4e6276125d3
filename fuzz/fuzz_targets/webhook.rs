//! A webhook delivery: signature and payload. See `rigger_fuzz::webhook`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rigger_fuzz::webhook::check(data));
