//! GitHub's answers to rigger's client. See `rigger_fuzz::github`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rigger_fuzz::github::check(data));
