//! The one error type of the project, with enough context for a user to act on it.

use std::fmt;

/// Where in the input an error or a rejected record came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// Name of the source (a file path, `stdin`, `records`, ...).
    pub source: String,
    /// 1-based line number for text inputs, 0-based record index for row inputs.
    pub record: u64,
    /// Byte offset of the record's first byte in the source, when the source is bytes.
    pub byte_offset: Option<u64>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} record {}", self.source, self.record)?;
        if let Some(offset) = self.byte_offset {
            write!(f, " (byte {offset})")?;
        }
        Ok(())
    }
}

/// Every error Quiver reports. Variants carry what a user needs to fix the input or the query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuiverError {
    /// A record does not fit the schema: missing field, wrong type, value out of range.
    #[error("{position}: field `{field}`: expected {expected}, found {found}")]
    Schema {
        /// Where the record is.
        position: Position,
        /// The field (column) name.
        field: String,
        /// What the schema wanted.
        expected: String,
        /// What the record held.
        found: String,
    },
    /// Text that could not be parsed (a number, a line, a document).
    #[error("{position}: {message}")]
    Parse {
        /// Where the text is.
        position: Position,
        /// What was wrong.
        message: String,
    },
    /// Arithmetic that has no exact answer in the output type (overflow, division by zero).
    #[error("arithmetic error in {context}: {message}")]
    Arithmetic {
        /// The operation or column, e.g. `SUM(amount)`.
        context: String,
        /// What happened, e.g. `overflow of Int64`.
        message: String,
    },
    /// A configuration value is invalid (batch size of 0, unknown option).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A feature or type combination that is not supported, named.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A query that means nothing as written: a syntax error, an unknown or ambiguous name, a
    /// function given the wrong number of arguments.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// A bound on memory or a queue was reached and the configured response is to fail.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// An I/O error, with the path or stream it happened on.
    #[error("{context}: {source}")]
    Io {
        /// The file or stream.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An error from an Arrow kernel or reader.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A bug in Quiver: an invariant did not hold. Please report it.
    #[error("internal error (a bug in Quiver, please report it): {0}")]
    Internal(String),
}

impl QuiverError {
    /// An I/O error on `context` (usually a path).
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        QuiverError::Io {
            context: context.into(),
            source,
        }
    }

    /// Overflow of `type_name` while computing `context`.
    pub fn overflow(context: impl Into<String>, type_name: impl fmt::Display) -> Self {
        QuiverError::Arithmetic {
            context: context.into(),
            message: format!("overflow of {type_name}"),
        }
    }
}

/// The project's result type.
pub type Result<T, E = QuiverError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_error_names_field_and_position() {
        let error = QuiverError::Schema {
            position: Position {
                source: "trades.jsonl".into(),
                record: 7,
                byte_offset: Some(120),
            },
            field: "price".into(),
            expected: "Float64".into(),
            found: "string \"abc\"".into(),
        };
        assert_eq!(
            error.to_string(),
            "trades.jsonl record 7 (byte 120): field `price`: expected Float64, found string \"abc\""
        );
    }
}
