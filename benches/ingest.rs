//! Placeholder, replaced by the ingest bench.
fn main() {}
