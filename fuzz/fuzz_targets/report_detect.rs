//! `vulngate_fuzz_targets::report_detect` (the body lives in the main workspace, where the test
//! command's smoke test runs it too): see its documentation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vulngate_fuzz_targets::report_detect(data));
