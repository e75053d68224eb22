//! Execution: runs kernels over streams of batches and independent inputs in parallel on rayon,
//! each partition owning its state, partial states merged at the end.
//!
//! Depends on `quiver-ingest` and `quiver-kernels`; knows nothing of SQL text.
#![warn(missing_docs)]

pub mod aggregate;
pub mod derived;
pub mod fuzz;
mod having_changelog;
pub mod join;
pub mod onebrc;
pub mod query;
pub mod window;
pub mod window_parallel;
pub mod window_reference;
