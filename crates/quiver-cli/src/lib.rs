//! Library half of the `quiver` command: deterministic benchmark data generators, shared by the
//! binary and the criterion benches.
#![warn(missing_docs)]

pub mod generate;
