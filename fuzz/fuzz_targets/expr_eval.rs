//! Fuzz target `expr_eval`: a thin shim over `quiver_kernels::fuzz::check_expr_eval`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quiver_kernels::fuzz::check_expr_eval(data));
