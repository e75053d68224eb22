//! Fuzz target `ingest_1brc`: a thin shim over `quiver_ingest::fuzz::check_1brc`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quiver_ingest::fuzz::check_1brc(data));
