//! Library half of the `quiver` command: deterministic benchmark data generators, shared by the
//! binary and the criterion benches, and chunked reading of streamed text input.
#![warn(missing_docs)]

pub mod chunked;
pub mod generate;
