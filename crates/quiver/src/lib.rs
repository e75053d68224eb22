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
//!
//! Joins and subqueries read tables registered with their rows; the `FROM` rows are pushed:
//!
//! ```
//! use std::sync::Arc;
//! use quiver::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
//! use quiver::arrow::datatypes::{DataType, Field, Int64Type, Schema};
//! use quiver::Engine;
//!
//! let trades = Arc::new(Schema::new(vec![
//!     Field::new("symbol", DataType::Utf8, false),
//!     Field::new("qty", DataType::Int64, false),
//! ]));
//! let names = Arc::new(Schema::new(vec![
//!     Field::new("symbol", DataType::Utf8, false),
//!     Field::new("sector", DataType::Utf8, false),
//! ]));
//! let sectors = RecordBatch::try_new(names.clone(), vec![
//!     Arc::new(StringArray::from(vec!["A", "B"])),
//!     Arc::new(StringArray::from(vec!["tech", "energy"])),
//! ])?;
//! let mut query = Engine::new()
//!     .register("trades", trades.clone())?
//!     .register_table("sectors", names, vec![sectors])?
//!     .sql("SELECT s.sector, SUM(t.qty) AS qty FROM trades t \
//!           JOIN sectors s ON t.symbol = s.symbol \
//!           WHERE t.symbol IN (SELECT symbol FROM sectors WHERE sector = 'tech') \
//!           GROUP BY s.sector")?;
//! query.push(&RecordBatch::try_new(trades, vec![
//!     Arc::new(StringArray::from(vec!["A", "B", "A"])),
//!     Arc::new(Int64Array::from(vec![1, 2, 4])),
//! ])?)?;
//! let out = query.finish()?;
//! assert_eq!(out[0].num_rows(), 1);
//! assert_eq!(out[0].column(1).as_primitive::<Int64Type>().value(0), 5);
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
