//! The One Billion Row Challenge pipeline: parse and aggregate chunks in parallel, merge at the end.

use arrow::buffer::Buffer;
use quiver_core::{DeadLetter, DeadLetterPayload, Position, QuiverError, Result};
use quiver_ingest::onebrc::{
    add_invalid_names, parse_chunk_unchecked_into, split_lines, ChunkParse, RowSink, Station,
};
use quiver_kernels::onebrc::OneBrcAggregator;
use rayon::prelude::*;

/// Smallest chunk worth a task of its own.
const MIN_CHUNK_BYTES: usize = 1 << 20;

/// Feeds parsed lines to an aggregator, inlined into the parse loop. The aggregator checks each
/// distinct name for UTF-8 once; the lines of names it refuses are kept for the dead letters.
struct StationSink<'a> {
    stations: &'a mut OneBrcAggregator,
    invalid_name_offsets: &'a mut Vec<usize>,
}

impl RowSink for StationSink<'_> {
    #[inline(always)]
    fn row(&mut self, station: Station<'_>, offset: usize, tenths: i16) {
        if !self.stations.add(station.name, station.prefix, tenths) {
            self.invalid_name_offsets.push(offset);
        }
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
    let partials: Vec<(OneBrcAggregator, ChunkParse)> = pool.install(|| {
        ranges
            .par_iter()
            .map(|range| {
                let chunk = &bytes[range.clone()];
                let mut stations = OneBrcAggregator::new();
                let mut invalid_name_offsets = Vec::new();
                let sink = StationSink {
                    stations: &mut stations,
                    invalid_name_offsets: &mut invalid_name_offsets,
                };
                let mut parse = parse_chunk_unchecked_into(chunk, sink);
                add_invalid_names(chunk, &mut parse, &mut invalid_name_offsets);
                (stations, parse)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow::array::AsArray;
    use arrow::datatypes::Decimal128Type;
    use quiver_core::rng::SplitMix64;
    use quiver_ingest::config::IngestConfig;
    use quiver_ingest::onebrc::parse_buffer;

    use super::*;

    /// `(min, max, sum, count)` of tenths by station name.
    type Stats = BTreeMap<Vec<u8>, (i64, i64, i64, u64)>;

    fn fold(stats: &mut Stats, name: &[u8], tenths: i64) {
        let entry = stats.entry(name.to_vec()).or_insert((tenths, tenths, 0, 0));
        entry.0 = entry.0.min(tenths);
        entry.1 = entry.1.max(tenths);
        entry.2 += tenths;
        entry.3 += 1;
    }

    #[test]
    fn names_that_are_not_utf8_are_dead_letters_as_when_the_parser_checks_them() {
        let good: [&[u8]; 4] = [
            b"Oslo",
            "Zürich".as_bytes(),
            b"Las Palmas de Gran Canaria",
            "Ho Chi Minh City — 胡志明市".as_bytes(),
        ];
        let invalid: [&[u8]; 4] = [
            b"\xff\xfe",
            b"Z\xfcrich",
            b"Las Palmas de Gran Canari\xe1",
            b"sixteen bytes!!!\xc3",
        ];
        let mut rng = SplitMix64::new(11);
        let mut text = Vec::new();
        // About 3.5 MB: several chunks of more than 1 MiB, invalid names in each.
        for _ in 0..200_000 {
            let name = match rng.below(100) {
                0 => invalid[rng.below(4) as usize],
                1 => b"no separator\n".as_slice(),
                _ => good[rng.below(4) as usize],
            };
            text.extend_from_slice(name);
            if name.ends_with(b"\n") {
                continue;
            }
            let tenths = rng.below(1999) as i64 - 999;
            let sign = if tenths < 0 { "-" } else { "" };
            let magnitude = tenths.unsigned_abs();
            text.extend_from_slice(
                format!(";{sign}{}.{}\n", magnitude / 10, magnitude % 10).as_bytes(),
            );
        }
        let input = Buffer::from(text);
        let config = IngestConfig::default().with_source_name("m.txt");
        let checked = parse_buffer(&input, &config, 5).unwrap();
        let mut expected = Stats::new();
        for batch in &checked.batches {
            let names = batch.column(0).as_string_view();
            let tenths = batch.column(1).as_primitive::<Decimal128Type>();
            for row in 0..batch.num_rows() {
                fold(
                    &mut expected,
                    names.value(row).as_bytes(),
                    tenths.value(row) as i64,
                );
            }
        }
        assert!(checked
            .dead_letters
            .iter()
            .any(|letter| letter.reason == "station name is not valid UTF-8"));
        for threads in [1, 2, 3] {
            let run = run(&input, threads, "m.txt").unwrap();
            assert_eq!(run.dead_letters, checked.dead_letters, "{threads} threads");
            assert_eq!(run.lines, checked.accepted_rows + checked.rejected_rows);
            let mut got = Stats::new();
            for (name, stats) in run.stations.iter() {
                let entry = (
                    i64::from(stats.min_tenths),
                    i64::from(stats.max_tenths),
                    stats.sum_tenths,
                    stats.count,
                );
                assert!(got.insert(name.to_vec(), entry).is_none());
            }
            assert_eq!(got, expected, "{threads} threads");
        }
    }
}
