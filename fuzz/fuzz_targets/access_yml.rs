//! An org's `.cirun/.access.yml`. See `rigger_fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rigger_fuzz::config::access_yml(data));
