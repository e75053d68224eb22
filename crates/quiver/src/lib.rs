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
//!
//! SQL over batches:
//!
//! ```
//! use std::sync::Arc;
//! use quiver::arrow::array::{Float64Array, RecordBatch, StringArray};
//! use quiver::arrow::datatypes::{DataType, Field, Schema};
//! use quiver::Engine;
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("symbol", DataType::Utf8, false),
//!     Field::new("price", DataType::Float64, false),
//! ]));
//! let batch = RecordBatch::try_new(schema.clone(), vec![
//!     Arc::new(StringArray::from(vec!["A", "B", "A"])),
//!     Arc::new(Float64Array::from(vec![1.0, 2.0, 4.0])),
//! ])?;
//! let mut query = Engine::new()
//!     .register("trades", schema)?
//!     .sql("SELECT symbol, AVG(price) AS avg_price FROM trades GROUP BY symbol ORDER BY symbol")?;
//! query.push(&batch)?;
//! let out = query.finish()?;
//! assert_eq!(out[0].num_rows(), 2);
//! # Ok::<(), quiver::QuiverError>(())
//! ```
#![warn(missing_docs)]

mod engine;

pub use arrow;
pub use engine::{Engine, Query};
pub use quiver_core::{
    format_decimal, DeadLetter, DeadLetterPayload, Decimal, Position, QuiverError, Record, Result,
    Timestamp, Value,
};
pub use quiver_exec::query::StreamOptions;
pub use quiver_exec::window::{LatePolicy, WindowMetrics};
pub use quiver_ingest::text::{read_csv, read_json_lines, CsvOptions};
pub use quiver_ingest::{
    infer_schema, onebrc, records_to_batches, IngestConfig, IngestOutput, MixedTypes,
    RecordBatcher, UnknownFields,
};
pub use quiver_sql::{EmitMode, WindowSpec};
