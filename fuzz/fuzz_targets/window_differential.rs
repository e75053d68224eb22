//! Fuzz target `window_differential`: a thin shim over
//! `quiver_exec::fuzz::check_window_differential`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quiver_exec::fuzz::check_window_differential(data));
