//! Options shared by every ingest path: batch bounds, schema inference and coercion policy.

use quiver_core::{QuiverError, Result};

/// What to do when values of one field have types with no exact common type (e.g. bool and int).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MixedTypes {
    /// Reject: during inference an error, during conversion a dead letter.
    #[default]
    Error,
    /// Make the column `Utf8` and render every value as text.
    String,
}

/// What to do with a record field that the schema does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownFields {
    /// Send the record to dead letters, so no data disappears unnoticed.
    #[default]
    Reject,
    /// Drop the extra field and keep the row.
    Ignore,
}

/// Bounds and policies for turning input into Arrow batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// A batch is emitted when it reaches this many rows.
    pub batch_size_rows: usize,
    /// A batch is emitted when its values reach about this many bytes.
    pub batch_size_bytes: usize,
    /// How many leading records schema inference looks at.
    pub infer_schema_rows: usize,
    /// Policy for fields whose values have no common type.
    pub mixed_types: MixedTypes,
    /// Policy for fields the schema does not declare (row input only).
    pub unknown_fields: UnknownFields,
    /// Name of the source in positions of errors and dead letters.
    pub source_name: String,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            batch_size_rows: 8192,
            batch_size_bytes: 8 << 20,
            infer_schema_rows: 1000,
            mixed_types: MixedTypes::default(),
            unknown_fields: UnknownFields::default(),
            source_name: "input".to_string(),
        }
    }
}

impl IngestConfig {
    /// Checks that the bounds can be honoured.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size_rows == 0 {
            return Err(QuiverError::Config(
                "batch_size_rows must be at least 1".into(),
            ));
        }
        if self.batch_size_bytes == 0 {
            return Err(QuiverError::Config(
                "batch_size_bytes must be at least 1".into(),
            ));
        }
        if self.infer_schema_rows == 0 {
            return Err(QuiverError::Config(
                "infer_schema_rows must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Builder-style batch size in rows.
    pub fn with_batch_size_rows(mut self, rows: usize) -> Self {
        self.batch_size_rows = rows;
        self
    }

    /// Builder-style source name.
    pub fn with_source_name(mut self, name: impl Into<String>) -> Self {
        self.source_name = name.into();
        self
    }
}
