//! Fuzz target `ingest_json`: a thin shim over `quiver_ingest::fuzz::check_json_lines`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quiver_ingest::fuzz::check_json_lines(data));
