//! One `instance_type` (or image, region, min_cuda) value. See `rigger_fuzz::instance_type`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rigger_fuzz::instance_type::check(data));
