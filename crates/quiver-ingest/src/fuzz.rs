//! Fuzz checks for the text ingest paths: arbitrary bytes never panic and every record is
//! accounted for. The cargo-fuzz targets in `fuzz/` are thin shims over these.

use std::sync::Arc;

use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::config::IngestConfig;
use crate::onebrc;
use crate::output::IngestOutput;
use crate::text::{read_csv, read_json_lines, CsvOptions};

fn config() -> IngestConfig {
    IngestConfig::default().with_batch_size_rows(3)
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::Utf8, true),
        Field::new("c", DataType::Float64, true),
    ]))
}

/// Records in `data` as the CSV reader should count them, found independently of it: the `csv`
/// crate's records, except that a record whose quoted field is still open at the end of the
/// input is its first line only, and the lines after it are counted again as records.
pub fn expected_csv_records(data: &[u8]) -> u64 {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let mut record = csv::ByteRecord::new();
    let (mut count, mut last_start) = (0, 0);
    while let Ok(true) = reader.read_byte_record(&mut record) {
        count += 1;
        last_start = record
            .position()
            .map_or(0, |p| usize::try_from(p.byte()).unwrap_or(data.len()))
            .min(data.len());
    }
    // After a `\r\n` the reader starts the next record at the `\n`.
    if last_start > 0 && data[last_start - 1] == b'\r' && data.get(last_start) == Some(&b'\n') {
        last_start += 1;
    }
    if count == 0 || !open_quote_at_end(&data[last_start..]) {
        return count;
    }
    match data[last_start..].iter().position(|&b| b == b'\n') {
        Some(newline) => count + expected_csv_records(&data[last_start + newline + 1..]),
        None => count,
    }
}

/// Whether a quoted field is open at the end of `record` (quotes open only at a field's start).
fn open_quote_at_end(record: &[u8]) -> bool {
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut state = State::FieldStart;
    for &byte in record {
        state = match (state, byte) {
            (State::Quoted, b'"') => State::QuoteInQuoted,
            (State::Quoted, _) | (State::QuoteInQuoted, b'"') => State::Quoted,
            (State::FieldStart, b'"') => State::Quoted,
            (_, b',' | b'\n' | b'\r') => State::FieldStart,
            _ => State::Unquoted,
        };
    }
    matches!(state, State::Quoted)
}

fn assert_accounted(label: &str, out: &IngestOutput, records: u64) {
    assert_eq!(
        out.accepted_rows + out.rejected_rows,
        records,
        "{label}: records lost or invented"
    );
    assert_eq!(
        out.batch_rows(),
        out.accepted_rows,
        "{label}: batch rows differ from accepted"
    );
    assert_eq!(
        out.dead_letters.len() as u64,
        out.rejected_rows,
        "{label}: dead letters differ from rejected"
    );
}

/// 1BRC text: every line is accepted or a dead letter, for any chunking, and the fast line
/// parser agrees with the exact one.
pub fn check_1brc(data: &[u8]) {
    let lines = if data.is_empty() {
        0
    } else {
        data.iter().filter(|&&b| b == b'\n').count() as u64 + u64::from(!data.ends_with(b"\n"))
    };
    let mut fast_rows = Vec::new();
    let fast = onebrc::parse_chunk_with::<_, true>(data, |s: onebrc::Station<'_>, offset, t| {
        fast_rows.push((s.name.to_vec(), s.prefix, offset, t))
    });
    let mut exact_rows = Vec::new();
    let exact = onebrc::parse_chunk_with::<_, false>(data, |s: onebrc::Station<'_>, offset, t| {
        exact_rows.push((s.name.to_vec(), s.prefix, offset, t))
    });
    assert_eq!(fast, exact, "1brc: fast and exact paths disagree on lines");
    let mut unchecked_rows = Vec::new();
    let mut refused = Vec::new();
    let mut unchecked =
        onebrc::parse_chunk_unchecked_into(data, |s: onebrc::Station<'_>, offset, t| {
            if std::str::from_utf8(s.name).is_ok() {
                unchecked_rows.push((s.name.to_vec(), s.prefix, offset, t));
            } else {
                refused.push(offset);
            }
        });
    onebrc::add_invalid_names(data, &mut unchecked, &mut refused);
    unchecked_rows.sort_by_key(|row| row.2);
    assert_eq!(
        unchecked, fast,
        "1brc: names checked by the sink give other bad lines"
    );
    assert_eq!(
        unchecked_rows, fast_rows,
        "1brc: names checked by the sink give other rows"
    );
    assert_eq!(
        fast_rows, exact_rows,
        "1brc: fast and exact paths disagree on rows"
    );
    for chunks in [1, 3] {
        match onebrc::parse_buffer(&Buffer::from(data.to_vec()), &config(), chunks) {
            Ok(out) => assert_accounted("1brc", &out, lines),
            Err(e) => panic!("1brc ingest failed instead of dead-lettering: {e}"),
        }
    }
}

/// JSON lines: every non-blank line is accepted or a dead letter; inference never panics.
pub fn check_json_lines(data: &[u8]) {
    let records = data
        .split(|&b| b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .count() as u64;
    match read_json_lines(data, Some(schema()), &config()) {
        Ok(out) => assert_accounted("json", &out, records),
        Err(e) => panic!("JSON ingest failed instead of dead-lettering: {e}"),
    }
    if let Ok(out) = read_json_lines(data, None, &config()) {
        assert_accounted("json inferred", &out, records);
    }
}

/// CSV: every record (as the `csv` crate splits them) is accepted or a dead letter.
pub fn check_csv(data: &[u8]) {
    let records = expected_csv_records(data);
    let options = CsvOptions {
        has_header: false,
        ..CsvOptions::default()
    };
    match read_csv(data, Some(schema()), options, &config()) {
        Ok(out) => assert_accounted("csv", &out, records),
        Err(e) => panic!("CSV ingest failed instead of dead-lettering: {e}"),
    }
    let _ = read_csv(data, None, CsvOptions::default(), &config());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_the_fuzzer_found_are_accounted_for() {
        // An unclosed quote, then invalid UTF-8 on the next line.
        check_csv(&[34, 10, 200, 10]);
        assert_eq!(expected_csv_records(b"a\n\"b\nc\n"), 3);
        assert_eq!(expected_csv_records(b"a\n\"b\"\nc\n"), 3);
        assert_eq!(expected_csv_records(b"a\r\n\"b\nc\n"), 3);
        check_csv(b"a\r\n\"b\nc\n");
        check_csv(b"1,x\r\n\"2\r\n3,y\r\n");
    }
}
