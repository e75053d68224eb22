//! Quiver: a columnar, vectorized streaming-SQL engine. This facade is the one crate an
//! embedder adds; it re-exports the small public API of the crates below it.
//!
//! ```
//! use std::sync::Arc;
//! use quiver::arrow::datatypes::{DataType, Field, Schema};
//! use quiver::{records_to_batches, IngestConfig, Record};
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("symbol", DataType::Utf8, false),
//!     Field::new("price", DataType::Float64, false),
//! ]));
//! let records = vec![
//!     Record::new().with("symbol", "AAPL").with("price", 189.5),
//!     Record::new().with("symbol", "MSFT").with("price", "not a price"),
//! ];
//! let out = records_to_batches(&records, Some(schema), IngestConfig::default())?;
//! assert_eq!(out.accepted_rows, 1);
//! assert_eq!(out.rejected_rows, 1);
//! assert!(out.dead_letters[0].reason.contains("expected Float64"));
//! # Ok::<(), quiver::QuiverError>(())
//! ```
#![warn(missing_docs)]

pub use arrow;
pub use quiver_core::{
    format_decimal, DeadLetter, DeadLetterPayload, Decimal, Position, QuiverError, Record, Result,
    Timestamp, Value,
};
pub use quiver_ingest::text::{read_csv, read_json_lines, CsvOptions};
pub use quiver_ingest::{
    infer_schema, onebrc, records_to_batches, IngestConfig, IngestOutput, MixedTypes,
    RecordBatcher, UnknownFields,
};
