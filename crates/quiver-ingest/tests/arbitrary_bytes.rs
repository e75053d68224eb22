//! Property tests: arbitrary bytes through every text ingest path never panic, and every
//! record is accounted for (accepted + rejected = records in the input).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

use std::sync::Arc;

use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, Field, Schema};
use proptest::prelude::*;
use quiver_ingest::text::{read_csv, read_json_lines, CsvOptions};
use quiver_ingest::{onebrc, IngestConfig};

fn config() -> IngestConfig {
    IngestConfig::default().with_batch_size_rows(3)
}

/// Bytes biased towards the formats' own punctuation, so parsers get past the first byte.
fn texty_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(b";,.-0123456789\n\"{}:ab \\".to_vec()),
            1 => any::<u8>(),
        ],
        0..300,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn onebrc_accounts_for_every_line(bytes in texty_bytes(), chunks in 1usize..5) {
        let out = onebrc::parse_buffer(&Buffer::from(bytes.clone()), &config(), chunks).unwrap();
        let lines = bytes.split(|&b| b == b'\n').count() as u64 - u64::from(bytes.ends_with(b"\n") || bytes.is_empty());
        prop_assert_eq!(out.accepted_rows + out.rejected_rows, lines);
        prop_assert_eq!(out.batch_rows(), out.accepted_rows);
        prop_assert_eq!(out.dead_letters.len() as u64, out.rejected_rows);
    }

    #[test]
    fn json_lines_account_for_every_non_blank_line(bytes in texty_bytes()) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let records = bytes
            .split(|&b| b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .count() as u64;
        let out = read_json_lines(&bytes, Some(schema), &config()).unwrap();
        prop_assert_eq!(out.accepted_rows + out.rejected_rows, records);
        prop_assert_eq!(out.batch_rows(), out.accepted_rows);
        // Inference over arbitrary bytes must not panic either.
        let _ = read_json_lines(&bytes, None, &config());
    }

    #[test]
    fn csv_accounts_for_every_record(bytes in texty_bytes()) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let options = CsvOptions { has_header: false, ..CsvOptions::default() };
        let records = quiver_ingest::fuzz::expected_csv_records(&bytes);
        let out = read_csv(&bytes, Some(schema), options, &config()).unwrap();
        prop_assert_eq!(out.accepted_rows + out.rejected_rows, records);
        prop_assert_eq!(out.batch_rows(), out.accepted_rows);
        let _ = read_csv(&bytes, None, CsvOptions::default(), &config());
    }
}
