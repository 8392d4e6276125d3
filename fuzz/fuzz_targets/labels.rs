//! A job's `runs-on` labels against a definition's. See `rigger_fuzz::labels`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rigger_fuzz::labels::check(data));
