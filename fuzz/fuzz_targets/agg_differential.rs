//! Fuzz target `agg_differential`: a thin shim over `quiver_kernels::fuzz::check_agg_differential`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quiver_kernels::fuzz::check_agg_differential(data));
