//! Fuzz target `ingest_csv`: a thin shim over `quiver_ingest::fuzz::check_csv`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quiver_ingest::fuzz::check_csv(data));
