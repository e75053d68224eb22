//! Dead letters: input that could not be turned into rows, kept whole with its position and reason.

use crate::error::Position;
use crate::record::Record;

/// The rejected input itself, so nothing is lost: raw bytes for text sources, the record for rows.
#[derive(Debug, Clone, PartialEq)]
pub enum DeadLetterPayload {
    /// The raw bytes of a line or document.
    Bytes(Vec<u8>),
    /// A row-shaped record that did not fit the schema.
    Record(Box<Record>),
}

/// One rejected record.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Where it came from.
    pub position: Position,
    /// Why it was rejected, in words a user can act on.
    pub reason: String,
    /// The input itself.
    pub payload: DeadLetterPayload,
}

impl DeadLetter {
    /// The payload as text for display (bytes decoded lossily).
    pub fn payload_text(&self) -> String {
        match &self.payload {
            DeadLetterPayload::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            DeadLetterPayload::Record(record) => format!("{record:?}"),
        }
    }
}

impl std::fmt::Display for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.position, self.reason)
    }
}
