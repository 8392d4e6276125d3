//! `rigger.toml` and the environment. See `rigger_fuzz::settings`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rigger_fuzz::settings::check(data));
