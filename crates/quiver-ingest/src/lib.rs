//! Ingest: turns rows, JSON lines, CSV and 1BRC text into Arrow record batches.
//!
//! Every path returns accepted rows as bounded batches and rejected input as dead letters with
//! position and reason, so `accepted + rejected` always equals the input. Depends only on
//! `quiver-core`; knows nothing of SQL or aggregation.
#![warn(missing_docs)]

pub mod config;
pub mod fuzz;
pub mod onebrc;
pub mod output;
pub mod rows;
pub mod text;

pub use config::{IngestConfig, MixedTypes, UnknownFields};
pub use output::IngestOutput;
pub use rows::{infer_schema, records_to_batches, RecordBatcher};
