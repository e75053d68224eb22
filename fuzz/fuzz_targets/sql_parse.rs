//! Fuzz target `sql_parse`: a thin shim over `quiver_sql::check_sql_parse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quiver_sql::check_sql_parse(data));
