//! What an ingest call returns: batches, dead letters and the counts that account for every input.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use quiver_core::DeadLetter;

/// Batches produced from one input, with every rejected record kept as a dead letter.
///
/// Invariant: `accepted_rows + rejected_rows` is the number of records in the input, and
/// `accepted_rows` equals the total rows of `batches`.
#[derive(Debug, Default)]
pub struct IngestOutput {
    /// The schema the rows were decoded into (declared or inferred), known even when no row
    /// was accepted; `None` only where nothing could be inferred (no records at all, no header).
    pub schema: Option<SchemaRef>,
    /// The accepted rows, in input order, in bounded batches.
    pub batches: Vec<RecordBatch>,
    /// Rejected records with position and reason.
    pub dead_letters: Vec<DeadLetter>,
    /// Rows that went into `batches`.
    pub accepted_rows: u64,
    /// Records that went to `dead_letters`.
    pub rejected_rows: u64,
}

impl IngestOutput {
    /// Total rows across all batches.
    pub fn batch_rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }
}
