//! Fuzz target `agg_merge`: a thin shim over `quiver_kernels::fuzz::check_agg_merge`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quiver_kernels::fuzz::check_agg_merge(data));
