//! The One Billion Row Challenge pipeline: parse and aggregate chunks in parallel, merge at the end.

use arrow::buffer::Buffer;
use quiver_core::{DeadLetter, DeadLetterPayload, Position, QuiverError, Result};
use quiver_ingest::onebrc::{parse_chunk_into, split_lines, RowSink, Station};
use quiver_kernels::onebrc::OneBrcAggregator;
use rayon::prelude::*;

/// Smallest chunk worth a task of its own.
const MIN_CHUNK_BYTES: usize = 1 << 20;

/// Feeds parsed lines to an aggregator, inlined into the parse loop.
struct StationSink<'a>(&'a mut OneBrcAggregator);

impl RowSink for StationSink<'_> {
    #[inline(always)]
    fn row(&mut self, station: Station<'_>, _offset: usize, tenths: i16) {
        self.0.add(station.name, station.prefix, tenths);
    }
}

/// Result of a 1BRC run.
#[derive(Debug, Default)]
pub struct OneBrcRun {
    /// Per-station statistics.
    pub stations: OneBrcAggregator,
    /// Lines that broke the format, with line number, byte offset and reason.
    pub dead_letters: Vec<DeadLetter>,
    /// Lines read (good and bad).
    pub lines: u64,
}

/// Parses and aggregates `input` on `threads` rayon workers.
pub fn run(input: &Buffer, threads: usize, source_name: &str) -> Result<OneBrcRun> {
    let threads = threads.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| {
            QuiverError::Internal(format!("cannot start {threads} worker threads: {e}"))
        })?;
    let bytes = input.as_slice();
    // Several chunks per thread balance uneven chunks; tiny inputs stay one chunk.
    let chunk_count = (threads * 4).min(bytes.len() / MIN_CHUNK_BYTES).max(1);
    let ranges = split_lines(bytes, chunk_count);
    let partials: Vec<(OneBrcAggregator, quiver_ingest::onebrc::ChunkParse)> = pool.install(|| {
        ranges
            .par_iter()
            .map(|range| {
                let mut aggregator = OneBrcAggregator::new();
                let parse = parse_chunk_into(&bytes[range.clone()], StationSink(&mut aggregator));
                (aggregator, parse)
            })
            .collect()
    });
    let mut run = OneBrcRun::default();
    for (range, (aggregator, parse)) in ranges.iter().zip(partials) {
        for bad in &parse.bad_lines {
            let start = range.start + bad.offset_in_chunk;
            run.dead_letters.push(DeadLetter {
                position: Position {
                    source: source_name.to_string(),
                    record: run.lines + bad.line_in_chunk + 1,
                    byte_offset: Some(start as u64),
                },
                reason: bad.reason.to_string(),
                payload: DeadLetterPayload::Bytes(bytes[start..start + bad.length].to_vec()),
            });
        }
        run.lines += parse.lines;
        run.stations.merge(&aggregator);
    }
    Ok(run)
}
