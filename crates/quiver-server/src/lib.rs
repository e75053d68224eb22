//! The job server: sources → query → sinks with batching, failure strategies, metrics and
//! checkpoints.
//!
//! Not yet implemented. Depends on `quiver-exec` and below.
