//! An org's `.cirun/.cirun.global.yml`. See `rigger_fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rigger_fuzz::config::cirun_global_yml(data));
