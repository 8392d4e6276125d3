//! A machine's `POST /callback/{instance}`. See `rigger_fuzz::callback`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rigger_fuzz::callback::check(data));
