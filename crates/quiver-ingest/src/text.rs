//! JSON lines and CSV → Arrow batches, on the `arrow-json` / `arrow-csv` decoders.
//!
//! Records are grouped (up to the batch bounds) and each group is decoded in one call. When a
//! group fails or yields a different number of rows than it has records, it is decoded again
//! record by record: good records still form a batch and each bad one becomes a dead letter with
//! its line, byte offset and the decoder's reason. Blank lines in JSON lines input are not
//! records and are skipped. Record boundaries in CSV come from the `csv` crate, so quoted
//! fields may span lines; a clean CSV input within one batch's bytes is decoded in one pass
//! without them (see `read_csv_in_one_pass`).

use std::io::Cursor;
use std::ops::Range;
use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use quiver_core::{DeadLetter, DeadLetterPayload, Position, QuiverError, Result};

use crate::config::{IngestConfig, UnknownFields};
use crate::output::IngestOutput;

/// CSV dialect options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOptions {
    /// Field separator, `,` by default.
    pub delimiter: u8,
    /// Whether the first record names the columns.
    pub has_header: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            has_header: true,
        }
    }
}

/// One record's bytes in the input and its 1-based starting line.
#[derive(Debug, Clone)]
struct RecordSpan {
    range: Range<usize>,
    line: u64,
}

/// Reads JSON lines (one object per line) into batches; infers the schema when `schema` is None.
pub fn read_json_lines(
    data: &[u8],
    schema: Option<SchemaRef>,
    config: &IngestConfig,
) -> Result<IngestOutput> {
    config.validate()?;
    let spans = json_line_spans(data);
    let schema = match schema {
        Some(schema) => schema,
        None => Arc::new(text_where_untyped(infer_json_schema(
            data,
            &spans,
            config.infer_schema_rows,
        )?)),
    };
    let strict = config.unknown_fields == UnknownFields::Reject;
    let decode = |bytes: &[u8], rows: usize| -> Result<Vec<RecordBatch>, ArrowError> {
        let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
            .with_batch_size(rows.max(1))
            .with_strict_mode(strict)
            // A number or boolean in a text column is kept as its text, not rejected.
            .with_coerce_primitive(true)
            .build_decoder()?;
        let mut batches = Vec::new();
        let mut rest = bytes;
        loop {
            let consumed = decoder.decode(rest)?;
            rest = &rest[consumed..];
            if let Some(batch) = decoder.flush()? {
                batches.push(batch);
            }
            if rest.is_empty() {
                break;
            }
            if consumed == 0 {
                return Err(ArrowError::JsonError("decoder made no progress".into()));
            }
        }
        Ok(batches)
    };
    decode_in_groups(data, &spans, &schema, config, decode)
}

/// Reads CSV into batches; infers column types from the first `infer_schema_rows` records when
/// `schema` is None (a header names them, otherwise `column_1`, `column_2`, ...).
pub fn read_csv(
    data: &[u8],
    schema: Option<SchemaRef>,
    options: CsvOptions,
    config: &IngestConfig,
) -> Result<IngestOutput> {
    read_csv_with::<true>(data, schema, options, config)
}

/// [`read_csv`] with the one-pass fast path on or off (off: the reference it is tested against).
fn read_csv_with<const ONE_PASS: bool>(
    data: &[u8],
    schema: Option<SchemaRef>,
    options: CsvOptions,
    config: &IngestConfig,
) -> Result<IngestOutput> {
    config.validate()?;
    let schema = match schema {
        Some(schema) => schema,
        None => {
            let format = arrow::csv::reader::Format::default()
                .with_header(options.has_header)
                .with_delimiter(options.delimiter);
            let (schema, _) = format
                .infer_schema(Cursor::new(data), Some(config.infer_schema_rows))
                .map_err(|e| QuiverError::Parse {
                    position: Position {
                        source: config.source_name.clone(),
                        record: 0,
                        byte_offset: None,
                    },
                    message: format!("cannot infer the CSV schema: {e}"),
                })?;
            Arc::new(text_where_untyped(schema))
        }
    };
    if ONE_PASS {
        if let Some(output) = read_csv_in_one_pass(data, &schema, options, config) {
            return Ok(output);
        }
    }
    let spans = csv_record_spans(data, options, &config.source_name)?;
    let decode = |bytes: &[u8], rows: usize| decode_csv(bytes, &schema, options, rows);
    decode_in_groups(data, &spans, &schema, config, decode)
}

/// Decodes CSV records without a header into batches of at most `rows` rows.
fn decode_csv(
    bytes: &[u8],
    schema: &SchemaRef,
    options: CsvOptions,
    rows: usize,
) -> Result<Vec<RecordBatch>, ArrowError> {
    let mut decoder = arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(false)
        .with_delimiter(options.delimiter)
        .with_batch_size(rows.max(1))
        .build_decoder();
    let mut batches = Vec::new();
    let mut rest = bytes;
    loop {
        let consumed = decoder.decode(rest)?;
        rest = &rest[consumed..];
        if rest.is_empty() {
            // An empty decode marks the end of input, completing a last record without newline.
            decoder.decode(&[])?;
            if let Some(batch) = decoder.flush()? {
                batches.push(batch);
            }
            break;
        }
        match decoder.flush()? {
            Some(batch) => batches.push(batch),
            None if consumed == 0 => {
                return Err(ArrowError::CsvError("decoder made no progress".into()))
            }
            None => {}
        }
    }
    Ok(batches)
}

/// The common case, a clean input within one batch's bytes, with one parse instead of two:
/// the `arrow-csv` decoder alone, accepted when it fails on nothing and yields exactly as many
/// rows as there are record ends (newlines outside double quotes, found with `memchr`).
/// Anything else — a bad record, a blank line, a stray quote, `\r`-only line ends — returns
/// `None`, and the record-by-record path decides (tested to agree).
fn read_csv_in_one_pass(
    data: &[u8],
    schema: &SchemaRef,
    options: CsvOptions,
    config: &IngestConfig,
) -> Option<IngestOutput> {
    if data.len() > config.batch_size_bytes
        || data.first() == Some(&b'\n')
        || memchr::memmem::find(data, b"\n\n").is_some()
        || memchr::memmem::find(data, b"\n\r\n").is_some()
    {
        return None;
    }
    let mut record_ends = Vec::new();
    let mut in_quotes = false;
    for at in memchr::memchr2_iter(b'"', b'\n', data) {
        if data[at] == b'"' {
            in_quotes = !in_quotes;
        } else if !in_quotes {
            record_ends.push(at + 1);
        }
    }
    if in_quotes {
        return None;
    }
    let unterminated_tail = record_ends.last().copied().unwrap_or(0) < data.len();
    let mut records = record_ends.len() + usize::from(unterminated_tail);
    let body = if options.has_header {
        records = records.checked_sub(1)?;
        &data[record_ends.first().copied().unwrap_or(data.len())..]
    } else {
        data
    };
    let batches = decode_csv(body, schema, options, config.batch_size_rows).ok()?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    (rows == records).then(|| IngestOutput {
        schema: Some(schema.clone()),
        accepted_rows: rows as u64,
        batches: batches.into_iter().filter(|b| b.num_rows() > 0).collect(),
        ..IngestOutput::default()
    })
}

fn decode_in_groups<D>(
    data: &[u8],
    spans: &[RecordSpan],
    schema: &SchemaRef,
    config: &IngestConfig,
    decode: D,
) -> Result<IngestOutput>
where
    D: Fn(&[u8], usize) -> Result<Vec<RecordBatch>, ArrowError>,
{
    let mut output = IngestOutput {
        schema: Some(schema.clone()),
        ..IngestOutput::default()
    };
    let mut group_start = 0;
    while group_start < spans.len() {
        let first = spans[group_start].range.start;
        let mut group_end = group_start;
        while group_end < spans.len()
            && group_end - group_start < config.batch_size_rows
            && (group_end == group_start
                || spans[group_end].range.end - first <= config.batch_size_bytes)
        {
            group_end += 1;
        }
        let group = &spans[group_start..group_end];
        let bytes = &data[first..group[group.len() - 1].range.end];
        let decoded = decode(bytes, group.len());
        match decoded {
            Ok(batches)
                if batches.iter().map(RecordBatch::num_rows).sum::<usize>() == group.len() =>
            {
                output.accepted_rows += group.len() as u64;
                output.batches.push(concat_batches(schema, &batches)?);
            }
            _ => decode_one_by_one(data, group, schema, config, &decode, &mut output)?,
        }
        group_start = group_end;
    }
    Ok(output)
}

fn decode_one_by_one<D>(
    data: &[u8],
    group: &[RecordSpan],
    schema: &SchemaRef,
    config: &IngestConfig,
    decode: &D,
    output: &mut IngestOutput,
) -> Result<()>
where
    D: Fn(&[u8], usize) -> Result<Vec<RecordBatch>, ArrowError>,
{
    let mut good = Vec::new();
    for span in group {
        let bytes = &data[span.range.clone()];
        let reason = match decode(bytes, 1) {
            Ok(batches) => {
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                if rows == 1 {
                    good.extend(batches);
                    continue;
                }
                format!("expected one record, found {rows}")
            }
            Err(e) => e.to_string(),
        };
        output.rejected_rows += 1;
        output.dead_letters.push(DeadLetter {
            position: Position {
                source: config.source_name.clone(),
                record: span.line,
                byte_offset: Some(span.range.start as u64),
            },
            reason,
            payload: DeadLetterPayload::Bytes(bytes.to_vec()),
        });
    }
    if !good.is_empty() {
        output.accepted_rows += good.len() as u64;
        output.batches.push(concat_batches(schema, &good)?);
    }
    Ok(())
}

fn json_line_spans(data: &[u8]) -> Vec<RecordSpan> {
    let mut spans = Vec::new();
    let mut start = 0;
    let mut line = 1;
    while start < data.len() {
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
        if !data[start..end].iter().all(u8::is_ascii_whitespace) {
            spans.push(RecordSpan {
                range: start..end,
                line,
            });
        }
        start = end + 1;
        line += 1;
    }
    spans
}

fn csv_record_spans(data: &[u8], options: CsvOptions, source: &str) -> Result<Vec<RecordSpan>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(options.delimiter)
        .from_reader(data);
    let mut record = csv::ByteRecord::new();
    let mut spans = Vec::new();
    loop {
        let start = reader.position().clone();
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|e| QuiverError::Parse {
                position: Position {
                    source: source.to_string(),
                    record: start.line(),
                    byte_offset: Some(start.byte()),
                },
                message: format!("malformed CSV: {e}"),
            })?;
        if !more {
            break;
        }
        // The record's own start (after skipped blank lines) is where the reader says it began.
        let record_start = record.position().map_or(start.clone(), Clone::clone);
        let end = usize::try_from(reader.position().byte())
            .unwrap_or(data.len())
            .min(data.len());
        let begin = usize::try_from(record_start.byte()).unwrap_or(end).min(end);
        spans.push(RecordSpan {
            range: begin..end,
            line: record_start.line(),
        });
    }
    if options.has_header && !spans.is_empty() {
        spans.remove(0);
    }
    Ok(spans)
}

/// An inferred column whose sampled values were all null or empty (`Null`-typed) becomes text:
/// the values after the sample can be anything, and text keeps each of them as written
/// instead of losing it (a `Null` column decodes every value as null).
fn text_where_untyped(schema: Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Null => field.as_ref().clone().with_data_type(DataType::Utf8),
            _ => field.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

fn infer_json_schema(data: &[u8], spans: &[RecordSpan], max_rows: usize) -> Result<Schema> {
    let sample = &spans[..spans.len().min(max_rows)];
    let Some(last) = sample.last() else {
        return Ok(Schema::empty());
    };
    let bytes = &data[sample[0].range.start..last.range.end];
    if let Ok((schema, _)) = arrow::json::reader::infer_json_schema(Cursor::new(bytes), None) {
        return Ok(schema);
    }
    // A malformed line in the sample: infer from the lines that parse (the others become dead
    // letters when decoded).
    let mut merged = Schema::empty();
    for span in sample {
        if let Ok((schema, _)) =
            arrow::json::reader::infer_json_schema(Cursor::new(&data[span.range.clone()]), None)
        {
            merged = Schema::try_merge([merged, schema])?;
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Int64Type};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("quantity", DataType::Int64, true),
        ]))
    }

    #[test]
    fn json_lines_with_bad_lines_keep_the_good_ones() {
        let data = b"{\"symbol\":\"A\",\"quantity\":1}\n\n{\"symbol\":\"B\",\"quantity\":\"x\"}\n{not json\n{\"symbol\":\"C\"}\n{\"quantity\":3}\n{\"symbol\":\"D\",\"quantity\":4,\"extra\":1}\n";
        let config = IngestConfig::default().with_source_name("t.jsonl");
        let out = read_json_lines(data, Some(schema()), &config).unwrap();
        assert_eq!((out.accepted_rows, out.rejected_rows), (2, 4));
        assert_eq!(out.batch_rows(), 2);
        let lines: Vec<u64> = out.dead_letters.iter().map(|d| d.position.record).collect();
        assert_eq!(lines, vec![3, 4, 6, 7]);
        assert_eq!(out.dead_letters[0].position.source, "t.jsonl");
        let symbols = out.batches[0].column(0).as_string::<i32>();
        assert_eq!((symbols.value(0), symbols.value(1)), ("A", "C"));
    }

    #[test]
    fn json_schema_is_inferred() {
        let data = b"{\"a\":1,\"b\":\"x\"}\n{\"a\":2,\"b\":null}\n";
        let out = read_json_lines(data, None, &IngestConfig::default()).unwrap();
        let batch = &out.batches[0];
        assert_eq!(
            batch.schema().field_with_name("a").unwrap().data_type(),
            &DataType::Int64
        );
        assert_eq!(
            batch
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec(),
            vec![1, 2]
        );
    }

    #[test]
    fn csv_with_bad_rows_and_quoted_newlines() {
        let data = b"symbol,quantity\nA,1\n\"B\nquoted\",2\nC,notanumber\nD\nE,5\nF,6,7\n";
        let out = read_csv(
            data,
            Some(schema()),
            CsvOptions::default(),
            &IngestConfig::default(),
        )
        .unwrap();
        assert_eq!((out.accepted_rows, out.rejected_rows), (3, 3));
        let lines: Vec<u64> = out.dead_letters.iter().map(|d| d.position.record).collect();
        assert_eq!(lines, vec![5, 6, 8]);
        assert!(
            out.dead_letters[0].reason.contains("notanumber"),
            "{}",
            out.dead_letters[0].reason
        );
        let symbols = out.batches[0].column(0).as_string::<i32>();
        assert_eq!(symbols.value(1), "B\nquoted");
    }

    #[test]
    fn csv_schema_is_inferred_and_batches_are_bounded() {
        let mut data = b"k,v\n".to_vec();
        for i in 0..25 {
            data.extend_from_slice(format!("k{i},{i}\n").as_bytes());
        }
        let config = IngestConfig::default().with_batch_size_rows(10);
        let out = read_csv(&data, None, CsvOptions::default(), &config).unwrap();
        let sizes: Vec<usize> = out.batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        assert_eq!(
            out.batches[0].schema().field(1).data_type(),
            &DataType::Int64
        );
    }

    #[test]
    fn columns_without_a_value_in_the_sample_are_text_and_keep_later_values() {
        let config = IngestConfig {
            infer_schema_rows: 2,
            ..IngestConfig::default()
        };
        let out = read_csv(b"a,b\nx,\nx,\ny,5\n", None, CsvOptions::default(), &config).unwrap();
        let schema = out.schema.clone().unwrap();
        assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
        assert_eq!((out.accepted_rows, out.rejected_rows), (3, 0));
        let column = out.batches[0].column(1).as_string::<i32>();
        assert_eq!(column.iter().collect::<Vec<_>>(), [None, None, Some("5")]);

        let data = b"{\"a\":1,\"b\":null}\n{\"a\":2}\n{\"a\":3,\"b\":5.50}\n{\"a\":4,\"b\":true}\n";
        let out = read_json_lines(data, None, &config).unwrap();
        assert_eq!(
            out.schema.as_ref().unwrap().field(1).data_type(),
            &DataType::Utf8
        );
        assert_eq!((out.accepted_rows, out.rejected_rows), (4, 0));
        let column = out.batches[0].column(1).as_string::<i32>();
        assert_eq!(
            column.iter().collect::<Vec<_>>(),
            [None, None, Some("5.50"), Some("true")]
        );
    }

    #[test]
    fn header_only_csv_has_the_header_schema_and_no_rows() {
        let out = read_csv(
            b"a,b\n",
            None,
            CsvOptions::default(),
            &IngestConfig::default(),
        )
        .unwrap();
        let schema = out.schema.unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!((out.accepted_rows, out.batches.len()), (0, 0));
    }

    #[test]
    fn csv_last_record_without_newline_and_empty_input() {
        let out = read_csv(
            b"symbol,quantity\nA,1",
            Some(schema()),
            CsvOptions::default(),
            &IngestConfig::default(),
        )
        .unwrap();
        assert_eq!(out.accepted_rows, 1);
        let out = read_csv(
            b"",
            Some(schema()),
            CsvOptions::default(),
            &IngestConfig::default(),
        )
        .unwrap();
        assert_eq!(
            (out.accepted_rows, out.rejected_rows, out.batches.len()),
            (0, 0, 0)
        );
    }

    #[test]
    fn one_pass_csv_agrees_with_the_record_by_record_path() {
        let fields = [
            "1", "22", "-3", "x", "\"q,1\"", "\"a\nb\"", "", "\"\"\"\"", "ab\"c", "1.5", " 7",
        ];
        let ends = ["\n", "\n", "\n", "\r\n", "\r", "\n\n"];
        let mut rng = quiver_core::rng::SplitMix64::new(0x5EED);
        let mut next = |bound: usize| rng.below(bound as u64) as usize;
        let mut one_pass_taken = 0;
        for case in 0..3000 {
            let mut text = String::from("n,s\n");
            let clean = case % 2 == 0;
            for _ in 0..next(12) {
                if clean {
                    text.push_str(&format!(
                        "{},{}\n",
                        next(100),
                        ["a", "\"b,\nc\"", ""][next(3)]
                    ));
                    continue;
                }
                let width = 1 + next(3);
                let record: Vec<&str> = (0..width).map(|_| fields[next(fields.len())]).collect();
                text.push_str(&record.join(","));
                text.push_str(ends[next(ends.len())]);
            }
            if next(3) == 0 {
                text.truncate(text.len() - 1);
            }
            let schema = (next(4) != 0).then(schema_ns);
            let config = IngestConfig::default().with_batch_size_rows(1 + next(5));
            let options = CsvOptions::default();
            let fast = read_csv_with::<true>(text.as_bytes(), schema.clone(), options, &config);
            let exact = read_csv_with::<false>(text.as_bytes(), schema.clone(), options, &config);
            match (fast, exact) {
                (Ok(fast), Ok(exact)) => {
                    assert_eq!(fast.batches, exact.batches, "{text:?}");
                    assert_eq!(fast.accepted_rows, exact.accepted_rows, "{text:?}");
                    assert_eq!(fast.dead_letters, exact.dead_letters, "{text:?}");
                }
                (Err(fast), Err(exact)) => assert_eq!(fast.to_string(), exact.to_string()),
                (fast, exact) => panic!("{text:?}: {fast:?} vs {exact:?}"),
            }
            if let Some(schema) = schema {
                let body = text.as_bytes();
                one_pass_taken +=
                    usize::from(read_csv_in_one_pass(body, &schema, options, &config).is_some());
            }
        }
        assert!(
            one_pass_taken > 500,
            "one pass taken {one_pass_taken} times"
        );
    }

    fn schema_ns() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn csv_invalid_utf8_is_a_dead_letter() {
        let data = b"symbol,quantity\nA,1\n\xff\xfe,2\n";
        let out = read_csv(
            data,
            Some(schema()),
            CsvOptions::default(),
            &IngestConfig::default(),
        )
        .unwrap();
        assert_eq!((out.accepted_rows, out.rejected_rows), (1, 1));
        assert!(
            out.dead_letters[0].reason.to_lowercase().contains("utf"),
            "{}",
            out.dead_letters[0].reason
        );
    }
}
