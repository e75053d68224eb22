//! JSON lines and CSV → Arrow batches, on the `arrow-json` / `arrow-csv` decoders.
//!
//! Records are grouped (up to the batch bounds) and each group is decoded in one call. When a
//! group fails or yields a different number of rows than it has records, it is decoded again
//! record by record: good records still form a batch and each bad one becomes a dead letter with
//! its line, byte offset and the decoder's reason. Blank lines in JSON lines input are not
//! records and are skipped. Record boundaries in CSV come from the `csv` crate, so quoted
//! fields may span lines; a clean CSV input within one batch's bytes is decoded in one pass
//! without them (see `read_csv_in_one_pass`).
//!
//! Inferred schemas come from the first `infer_schema_rows` well-formed records; a column with
//! no value there is text (`Utf8`), so later values are kept as written. JSON numbers in an
//! integer column must be whole (`3.0`, `3e2`): `2.7` is a dead letter, not 2; integers beyond
//! `Int64` infer as `Decimal128(20, 0)`, not as rounded floats. JSON numbers and
//! booleans in a text column are kept as their text. Several inputs of one table unify their
//! inferred schemas with [`unify_schemas`].

use std::io::Cursor;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
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
    /// CSV: the record's field count (JSON lines: 0).
    fields: usize,
    /// Why the record is rejected before decoding, when its syntax already says so.
    malformed: Option<&'static str>,
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
    decode_json_lines(data, &spans, schema, config)
}

/// The schema [`read_json_lines`] infers for `data` before columns without a value in the
/// sample become text (so that several inputs can be unified first: [`unify_schemas`]).
pub fn infer_json_lines_schema(data: &[u8], config: &IngestConfig) -> Result<Schema> {
    infer_json_schema(data, &json_line_spans(data), config.infer_schema_rows)
}

/// The schema [`read_csv`] infers for `data` before columns without a value in the sample
/// become text.
pub fn infer_csv_schema(data: &[u8], options: CsvOptions, config: &IngestConfig) -> Result<Schema> {
    let format = arrow::csv::reader::Format::default()
        .with_header(options.has_header)
        .with_delimiter(options.delimiter);
    let (schema, _) = format
        .infer_schema(Cursor::new(data), Some(config.infer_schema_rows))
        .or_else(|_| {
            // A malformed record in the sample: infer from the well-formed ones (the others
            // become dead letters when decoded).
            let sample = csv_inference_sample(data, options, config)?;
            format.infer_schema(Cursor::new(sample), Some(config.infer_schema_rows))
        })
        .map_err(|e| QuiverError::Parse {
            position: Position {
                source: config.source_name.clone(),
                record: 0,
                byte_offset: None,
            },
            message: format!("cannot infer the CSV schema: {e}"),
        })?;
    Ok(distinct_names(microsecond_timestamps(schema)))
}

/// Inferred timestamps in microseconds at least: `arrow-csv` takes the unit from the sample's
/// fractions, and a finer value after it would lose its fraction without a word.
fn microsecond_timestamps(schema: Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Timestamp(TimeUnit::Second | TimeUnit::Millisecond, zone) => field
                .as_ref()
                .clone()
                .with_data_type(DataType::Timestamp(TimeUnit::Microsecond, zone.clone())),
            _ => field.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// A repeated header name gets a suffix (`k`, `k_1`, `k_2`, as DuckDB names them), so that
/// every column can be referred to.
fn distinct_names(schema: Schema) -> Schema {
    let mut seen = std::collections::HashSet::new();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            let mut name = field.name().clone();
            let mut suffix = 0;
            while !seen.insert(name.to_lowercase()) {
                suffix += 1;
                name = format!("{}_{suffix}", field.name());
            }
            field.as_ref().clone().with_name(name)
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// One schema for several inputs of one table, from each input's inferred schema (`sources`
/// names them for errors): a column's types unify as in [`crate::rows`] (null with T is T,
/// integer with float is float, ...), and any other mix is text, which keeps every value;
/// columns without a value anywhere become text too. CSV inputs (`by_position`) must have the
/// same header; JSON-lines fields are matched by name, in order of first appearance.
pub fn unify_schemas(schemas: &[Schema], sources: &[String], by_position: bool) -> Result<Schema> {
    let mut fields: Vec<Field> = Vec::new();
    for (index, schema) in schemas.iter().enumerate() {
        if by_position && index > 0 {
            let names = |s: &Schema| -> Vec<String> {
                s.fields().iter().map(|f| f.name().clone()).collect()
            };
            if names(schema) != names(&schemas[0]) {
                return Err(QuiverError::Config(format!(
                    "{}: columns [{}] differ from [{}] in {}",
                    sources.get(index).map_or("?", String::as_str),
                    names(schema).join(", "),
                    names(&schemas[0]).join(", "),
                    sources.first().map_or("?", String::as_str),
                )));
            }
        }
        for field in schema.fields() {
            match fields.iter_mut().find(|f| f.name() == field.name()) {
                Some(known) => {
                    let unified = crate::rows::unify(known.data_type(), field.data_type())
                        .unwrap_or(DataType::Utf8);
                    *known = known.clone().with_data_type(unified).with_nullable(true);
                }
                None => fields.push(field.as_ref().clone().with_nullable(true)),
            }
        }
    }
    Ok(text_where_untyped(Schema::new(fields)))
}

/// Decodes JSON lines at `spans` of `data` into `schema`.
fn decode_json_lines(
    data: &[u8],
    spans: &[RecordSpan],
    schema: SchemaRef,
    config: &IngestConfig,
) -> Result<IngestOutput> {
    let strict = config.unknown_fields == UnknownFields::Reject;
    let decode_schema = json_decode_schema(&schema);
    let decode = |bytes: &[u8], rows: usize| -> Result<Vec<RecordBatch>, ArrowError> {
        let mut decoder = arrow::json::ReaderBuilder::new(decode_schema.clone())
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
                batches.push(integers_from_decimals(batch, &schema)?);
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
    decode_in_groups(data, spans, &schema, config, decode)
}

/// Whether a JSON column holds whole numbers that [`json_decode_schema`] decodes with a
/// fraction first: integers, and decimals of scale 0 with room for that fraction.
fn whole_numbers(data_type: &DataType) -> bool {
    data_type.is_integer()
        || matches!(data_type, DataType::Decimal128(p, 0) if *p <= 38 - JSON_INTEGER_SCALE as u8)
}

/// Digits after the point that JSON numbers of integer columns are first decoded with.
const JSON_INTEGER_SCALE: i8 = 9;

/// The schema JSON is decoded with: integer columns as `Decimal128(38, 9)`, converted by
/// [`integers_from_decimals`]. `arrow-json` would read `2.7` into an integer column as 2
/// without a word; this way a fraction is an error (the record becomes a dead letter) while
/// `3.0` and `3e2` still read as the integers they are.
fn json_decode_schema(schema: &SchemaRef) -> SchemaRef {
    if !schema.fields().iter().any(|f| whole_numbers(f.data_type())) {
        return Arc::clone(schema);
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            let field = field.as_ref().clone();
            if whole_numbers(field.data_type()) {
                field.with_data_type(DataType::Decimal128(38, JSON_INTEGER_SCALE))
            } else {
                field
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A batch decoded with [`json_decode_schema`] in `schema`'s types: each integer column's values
/// must be whole numbers within the column type's range.
fn integers_from_decimals(
    batch: RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let unit = 10_i128.pow(JSON_INTEGER_SCALE as u32);
    let strict = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| {
            if !whole_numbers(field.data_type()) {
                return Ok(Arc::clone(column));
            }
            let decimals = column
                .as_any()
                .downcast_ref::<arrow::array::Decimal128Array>()
                .ok_or_else(|| {
                    ArrowError::JsonError(format!(
                        "field '{}' not decoded as a decimal",
                        field.name()
                    ))
                })?;
            let mut whole = Vec::with_capacity(decimals.len());
            for (row, &value) in decimals.values().iter().enumerate() {
                let integer = value / unit;
                if integer * unit != value && decimals.is_valid(row) {
                    return Err(ArrowError::JsonError(format!(
                        "whilst decoding field '{}': {} is not an integer",
                        field.name(),
                        arrow::array::Decimal128Array::from(vec![value])
                            .with_precision_and_scale(38, JSON_INTEGER_SCALE)?
                            .value_as_string(0)
                            .trim_end_matches('0')
                    )));
                }
                whole.push(integer);
            }
            let whole = arrow::array::Decimal128Array::new(whole.into(), decimals.nulls().cloned())
                .with_precision_and_scale(38, 0)?;
            arrow::compute::cast_with_options(&whole, field.data_type(), &strict).map_err(|e| {
                ArrowError::JsonError(format!("whilst decoding field '{}': {e}", field.name()))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)
}

/// Reads CSV into batches; infers column types from the first `infer_schema_rows` records when
/// `schema` is None (a header names them, otherwise `column_1`, `column_2`, ...).
pub fn read_csv(
    data: &[u8],
    schema: Option<SchemaRef>,
    options: CsvOptions,
    config: &IngestConfig,
) -> Result<IngestOutput> {
    read_csv_with::<true>(data, schema, None, options, config)
}

/// [`read_csv`] decoding only the columns at `projection` (indices into `schema`, ascending):
/// the batches and the output schema hold those columns. Every record is still split into all
/// of its fields (a record with the wrong number of fields is still a dead letter), but values
/// of the other columns are not parsed, so a value there that would not parse is not one.
pub fn read_csv_projected(
    data: &[u8],
    schema: SchemaRef,
    projection: &[usize],
    options: CsvOptions,
    config: &IngestConfig,
) -> Result<IngestOutput> {
    read_csv_with::<true>(data, Some(schema), Some(projection), options, config)
}

/// [`read_csv`] with the one-pass fast path on or off (off: the reference it is tested against).
fn read_csv_with<const ONE_PASS: bool>(
    data: &[u8],
    schema: Option<SchemaRef>,
    projection: Option<&[usize]>,
    options: CsvOptions,
    config: &IngestConfig,
) -> Result<IngestOutput> {
    config.validate()?;
    let schema = match schema {
        Some(schema) => schema,
        None => Arc::new(text_where_untyped(infer_csv_schema(data, options, config)?)),
    };
    let output_schema = match projection {
        Some(columns) => Arc::new(schema.project(columns)?),
        None => schema.clone(),
    };
    let decode = |bytes: &[u8], rows: usize| decode_csv(bytes, &schema, projection, options, rows);
    if ONE_PASS {
        let plain = |bytes: &[u8], records: usize| {
            decode_plain_csv(
                bytes,
                &schema,
                projection,
                &output_schema,
                options.delimiter,
                records,
                config.batch_size_rows,
            )
        };
        if let Some(output) =
            read_csv_in_one_pass(data, &output_schema, options, config, &decode, &plain)
        {
            return Ok(output);
        }
    }
    let spans = csv_record_spans(data, options, &config.source_name)?;
    decode_in_groups(data, &spans, &output_schema, config, decode)
}

/// Decodes quote-free CSV (no `"`, no `\r`) without `arrow-csv`'s record reader: every field
/// boundary is found in one SIMD scan for the delimiter and newline, and each column's values
/// are parsed with the same functions `arrow-csv` uses (`Parser::parse`, `parse_decimal`; an
/// empty field is NULL), into batches of `batch_rows` rows. `None` — and the caller decodes with
/// `arrow-csv` — for anything it does not settle exactly as `arrow-csv` would: a column of
/// another type, a value that does not parse, a record with the wrong number of fields, a
/// blank line, a record count other than `records`, invalid UTF-8.
fn decode_plain_csv(
    body: &[u8],
    schema: &SchemaRef,
    projection: Option<&[usize]>,
    output_schema: &SchemaRef,
    delimiter: u8,
    records: usize,
    batch_rows: usize,
) -> Option<Vec<RecordBatch>> {
    let width = schema.fields().len();
    let columns: Vec<usize> = projection.map_or_else(|| (0..width).collect(), <[usize]>::to_vec);
    let plain_type = |c: &usize| {
        matches!(
            schema.fields().get(*c).map(|f| f.data_type()),
            Some(
                DataType::Int32
                    | DataType::Int64
                    | DataType::Float64
                    | DataType::Utf8
                    | DataType::Date32
                    | DataType::Decimal128(..)
            )
        )
    };
    if width == 0 || !columns.iter().all(plain_type) || u32::try_from(body.len()).is_err() {
        return None;
    }
    // Validated once; fields are slices of the text (a cut inside a character, possible only
    // with a non-ASCII delimiter byte, gives up).
    let body_text = simdutf8::basic::from_utf8(body).ok()?;
    // `ends[r * width + c]`: where field `c` of record `r` ends (its delimiter or newline).
    let mut ends: Vec<u32> = Vec::with_capacity(records.saturating_mul(width));
    let mut field = 0;
    let mut well_formed = true;
    for_each_separator(body, delimiter, |at| {
        ends.push(at as u32);
        field += 1;
        if body[at] == b'\n' {
            // A blank line is no record to `arrow-csv`: it is skipped.
            let blank = at == 0 || body[at - 1] == b'\n';
            well_formed &= field == width && !blank;
            field = 0;
        } else {
            well_formed &= field < width;
        }
    });
    if !well_formed {
        return None;
    }
    if body.last().is_some_and(|&last| last != b'\n') {
        ends.push(body.len() as u32);
        field += 1;
        if field != width {
            return None;
        }
    }
    if ends.len() != records.checked_mul(width)? {
        return None;
    }
    let text = |record: usize, column: usize| -> Option<&str> {
        let index = record * width + column;
        let start = match index {
            0 => 0,
            _ => ends[index - 1] as usize + 1,
        };
        body_text.get(start..ends[index] as usize)
    };
    let mut batches = Vec::new();
    for first in (0..records).step_by(batch_rows.max(1)) {
        let rows = first..(first + batch_rows.max(1)).min(records);
        let arrays = columns
            .iter()
            .map(|&c| plain_column(schema.field(c).data_type(), rows.clone(), |r| text(r, c)))
            .collect::<Option<Vec<ArrayRef>>>()?;
        batches.push(RecordBatch::try_new(output_schema.clone(), arrays).ok()?);
    }
    Some(batches)
}

/// Calls `visit` with the position of every `delimiter` and newline in `bytes`, in order.
///
/// Separators come every few bytes in typical CSV, too densely for a `memchr2` search per hit:
/// 16 bytes at a time are compared with both (SSE2, part of every x86_64) and the positions
/// read off the bits of the match mask.
fn for_each_separator(bytes: &[u8], delimiter: u8, mut visit: impl FnMut(usize)) {
    let mut start = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of the x86_64 baseline; each load reads the 16 bytes of a
        // `chunks_exact(16)` chunk.
        unsafe {
            let delimiters = _mm_set1_epi8(delimiter as i8);
            let newlines = _mm_set1_epi8(b'\n' as i8);
            for chunk in bytes.chunks_exact(16) {
                let block = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
                let hits = _mm_or_si128(
                    _mm_cmpeq_epi8(block, delimiters),
                    _mm_cmpeq_epi8(block, newlines),
                );
                let mut mask = _mm_movemask_epi8(hits) as u32;
                while mask != 0 {
                    visit(start + mask.trailing_zeros() as usize);
                    mask &= mask - 1;
                }
                start += 16;
            }
        }
    }
    for (offset, &byte) in bytes[start..].iter().enumerate() {
        if byte == delimiter || byte == b'\n' {
            visit(start + offset);
        }
    }
}

/// One column of [`decode_plain_csv`]: the field of each record in `rows`, empty as NULL
/// (`None` from `field`, a field not on character boundaries, gives up like a bad value).
fn plain_column<'a>(
    data_type: &DataType,
    rows: Range<usize>,
    field: impl Fn(usize) -> Option<&'a str>,
) -> Option<ArrayRef> {
    use arrow::array::{Decimal128Array, PrimitiveArray, StringArray};
    use arrow::compute::kernels::cast_utils::{parse_decimal, Parser};
    use arrow::datatypes::{
        ArrowPrimitiveType, Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type,
    };
    fn primitive<'a, T: ArrowPrimitiveType + Parser>(
        rows: Range<usize>,
        field: impl Fn(usize) -> Option<&'a str>,
    ) -> Option<ArrayRef> {
        let values = rows
            .map(|r| match field(r)? {
                "" => Some(None),
                text => T::parse(text).map(Some),
            })
            .collect::<Option<PrimitiveArray<T>>>()?;
        Some(Arc::new(values))
    }
    Some(match data_type {
        DataType::Int32 => primitive::<Int32Type>(rows, field)?,
        DataType::Int64 => primitive::<Int64Type>(rows, field)?,
        DataType::Float64 => primitive::<Float64Type>(rows, field)?,
        DataType::Date32 => primitive::<Date32Type>(rows, field)?,
        DataType::Decimal128(precision, scale) => {
            let values = rows
                .map(|r| match field(r)? {
                    "" => Some(None),
                    text => parse_decimal::<Decimal128Type>(text, *precision, *scale)
                        .ok()
                        .map(Some),
                })
                .collect::<Option<Decimal128Array>>()?;
            Arc::new(values.with_precision_and_scale(*precision, *scale).ok()?)
        }
        DataType::Utf8 => Arc::new(
            rows.map(|r| field(r).map(|text| Some(text).filter(|t| !t.is_empty())))
                .collect::<Option<StringArray>>()?,
        ),
        _ => return None,
    })
}

/// Decodes CSV records without a header into batches of at most `rows` rows.
fn decode_csv(
    bytes: &[u8],
    schema: &SchemaRef,
    projection: Option<&[usize]>,
    options: CsvOptions,
    rows: usize,
) -> Result<Vec<RecordBatch>, ArrowError> {
    let mut builder = arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(false)
        .with_delimiter(options.delimiter)
        .with_batch_size(rows.max(1));
    if let Some(columns) = projection {
        builder = builder.with_projection(columns.to_vec());
    }
    let mut decoder = builder.build_decoder();
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
/// `None`, and the record-by-record path decides (tested to agree). Input without any quote or
/// `\r` is first offered to `plain` (given the body and its record count), a decoder that
/// splits fields without `arrow-csv`'s record reader.
fn read_csv_in_one_pass(
    data: &[u8],
    schema: &SchemaRef,
    options: CsvOptions,
    config: &IngestConfig,
    decode: &impl Fn(&[u8], usize) -> Result<Vec<RecordBatch>, ArrowError>,
    plain: &impl Fn(&[u8], usize) -> Option<Vec<RecordBatch>>,
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
    let mut quoted = false;
    for at in memchr::memchr2_iter(b'"', b'\n', data) {
        if data[at] == b'"' {
            in_quotes = !in_quotes;
            quoted = true;
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
    let plain_batches = (!quoted && memchr::memchr(b'\r', body).is_none())
        .then(|| plain(body, records))
        .flatten();
    let batches = match plain_batches {
        Some(batches) => batches,
        None => decode(body, config.batch_size_rows).ok()?,
    };
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
        let decoded = if group.iter().any(|span| span.malformed.is_some()) {
            Err(ArrowError::CsvError("a malformed record".into()))
        } else {
            decode(bytes, group.len())
        };
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
        let decoded = match span.malformed {
            Some(why) => Err(ArrowError::CsvError(why.into())),
            None => decode(bytes, 1),
        };
        let reason = match decoded {
            Ok(batches) => {
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                if rows == 1 {
                    good.extend(batches);
                    continue;
                }
                format!("expected one record, found {rows}")
            }
            Err(e) => without_decoder_lines(&e.to_string()),
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

/// A decoder's message about one record without the decoder's own line number (`for line 1`,
/// `at line 0`): the record was decoded alone, and the dead letter carries its real line.
fn without_decoder_lines(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = [" for line ", " at line "]
        .iter()
        .filter_map(|phrase| rest.find(phrase).map(|i| (i, phrase.len())))
        .min()
    {
        let (start, phrase) = at;
        let digits = rest[start + phrase..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        out.push_str(&rest[..start]);
        if digits == 0 {
            out.push_str(&rest[start..start + phrase]);
        }
        rest = &rest[start + phrase + digits..];
    }
    out.push_str(rest);
    out
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
                fields: 0,
                malformed: None,
            });
        }
        start = end + 1;
        line += 1;
    }
    spans
}

/// The first `infer_schema_rows` records (after the header, which is kept) that have as many
/// fields as the first record, as one CSV text.
fn csv_inference_sample(
    data: &[u8],
    options: CsvOptions,
    config: &IngestConfig,
) -> Result<Vec<u8>, ArrowError> {
    let all = CsvOptions {
        has_header: false,
        ..options
    };
    let spans = csv_record_spans(data, all, &config.source_name)
        .map_err(|e| ArrowError::CsvError(e.to_string()))?;
    let Some(first) = spans.first() else {
        return Ok(Vec::new());
    };
    let wanted = config.infer_schema_rows + usize::from(options.has_header);
    let mut sample = Vec::new();
    for span in spans
        .iter()
        .filter(|s| s.fields == first.fields && s.malformed.is_none())
        .take(wanted)
    {
        sample.extend_from_slice(&data[span.range.clone()]);
        if !sample.ends_with(b"\n") {
            sample.push(b'\n');
        }
    }
    Ok(sample)
}

fn csv_record_spans(data: &[u8], options: CsvOptions, source: &str) -> Result<Vec<RecordSpan>> {
    let mut spans = Vec::new();
    // Where the records being read start, and the lines before that point.
    let (mut offset, mut lines_before) = (0, 0);
    loop {
        let from = spans.len();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(options.delimiter)
            .from_reader(&data[offset..]);
        let mut record = csv::ByteRecord::new();
        loop {
            let start = reader.position().clone();
            let more = reader
                .read_byte_record(&mut record)
                .map_err(|e| QuiverError::Parse {
                    position: Position {
                        source: source.to_string(),
                        record: lines_before + start.line(),
                        byte_offset: Some(offset as u64 + start.byte()),
                    },
                    message: format!("malformed CSV: {e}"),
                })?;
            if !more {
                break;
            }
            // The record's own start (after skipped blank lines) is where the reader says it
            // began.
            let record_start = record.position().map_or(start.clone(), Clone::clone);
            let end = usize::try_from(reader.position().byte())
                .map_or(data.len(), |end| offset + end)
                .min(data.len());
            let mut begin = usize::try_from(record_start.byte())
                .map_or(end, |begin| offset + begin)
                .min(end);
            let mut line = lines_before + record_start.line();
            // After a `\r\n` record end the reader starts the next record at the `\n`, before
            // counting its line: the record is the line after it.
            if begin > 0 && begin < end && data[begin - 1] == b'\r' && data[begin] == b'\n' {
                begin += 1;
                line += 1;
            }
            spans.push(RecordSpan {
                range: begin..end,
                line,
                fields: record.len(),
                malformed: None,
            });
        }
        // A quoted field that never closes takes the rest of the input into the last record
        // (the reader does not object): that record's first line is rejected, and the lines
        // after it are read again as records of their own, so none of them is lost.
        let read_some = spans.len() > from;
        match spans.last_mut() {
            Some(last)
                if read_some
                    && unterminated_quote(&data[last.range.clone()], options.delimiter) =>
            {
                let line_end = memchr::memchr(b'\n', &data[last.range.clone()])
                    .map_or(last.range.end, |i| last.range.start + i + 1);
                let rest = line_end..last.range.end;
                last.range.end = line_end;
                last.malformed = Some("a quoted field is not closed before the end of the input");
                if rest.is_empty() {
                    break;
                }
                (offset, lines_before) = (rest.start, last.line);
            }
            _ => break,
        }
    }
    if options.has_header && !spans.is_empty() {
        spans.remove(0);
    }
    Ok(spans)
}

/// Whether a CSV record ends inside a quoted field: under the `csv` crate's rules, a quote opens
/// a quoted field only at the start of a field, and `""` inside one is a quote.
fn unterminated_quote(record: &[u8], delimiter: u8) -> bool {
    let (mut in_quotes, mut at_field_start) = (false, true);
    let mut at = 0;
    while at < record.len() {
        let byte = record[at];
        if in_quotes {
            if byte == b'"' {
                if record.get(at + 1) == Some(&b'"') {
                    at += 2;
                    continue;
                }
                in_quotes = false;
            }
            at_field_start = false;
        } else {
            in_quotes = byte == b'"' && at_field_start;
            at_field_start = matches!(byte, b'\n' | b'\r') || byte == delimiter;
        }
        at += 1;
    }
    in_quotes
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
        let schema = temporal_strings(exact_big_integers(schema, bytes), bytes);
        return Ok(in_key_order(schema, data, sample));
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
    let schema = temporal_strings(exact_big_integers(merged, bytes), bytes);
    Ok(in_key_order(schema, data, sample))
}

/// What a JSON string reads as, by the patterns `arrow-csv` infers CSV columns with: a date
/// (`2024-01-05`), or a timestamp with 0, ≤ 3, ≤ 6 or ≤ 9 fraction digits (`T` or a space, an
/// optional zone suffix such as `Z` or `+02:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TemporalText {
    Date,
    Timestamp(u8),
}

fn temporal_text(text: &str) -> Option<TemporalText> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let date = digits(0..4)
        && bytes.get(4) == Some(&b'-')
        && digits(5..7)
        && bytes.get(7) == Some(&b'-')
        && digits(8..10);
    if !date {
        return None;
    }
    if bytes.len() == 10 {
        return Some(TemporalText::Date);
    }
    let time = matches!(bytes.get(10), Some(b'T' | b' '))
        && digits(11..13)
        && bytes.get(13) == Some(&b':')
        && digits(14..16)
        && bytes.get(16) == Some(&b':')
        && digits(17..19);
    if !time {
        return None;
    }
    let rest = &bytes[19..];
    let fraction = match rest.first() {
        Some(b'.') => rest[1..].iter().take_while(|b| b.is_ascii_digit()).count(),
        _ => 0,
    };
    let after = rest
        .get(usize::from(fraction > 0) + fraction..)
        .unwrap_or_default();
    // A fraction point needs digits; whatever follows (a zone) must not start with a digit.
    if (rest.first() == Some(&b'.') && fraction == 0)
        || fraction > 9
        || after.first().is_some_and(u8::is_ascii_digit)
    {
        return None;
    }
    Some(TemporalText::Timestamp(fraction as u8))
}

/// `arrow-json` infers every string as text; a string column whose sampled values in `bytes`
/// are all dates becomes `Date32`, all dates or timestamps `Timestamp` in the finest unit
/// written (as `arrow-csv` infers CSV columns), so that JSON event times can drive windows.
fn temporal_strings(schema: Schema, bytes: &[u8]) -> Schema {
    let Some(batches) = sample_as_text(&schema, &DataType::Utf8, bytes) else {
        return schema;
    };
    let kind_of = |name: &str| -> Option<TemporalText> {
        let mut widest: Option<TemporalText> = None;
        for column in batches.iter().filter_map(|b| b.column_by_name(name)) {
            for text in column.as_string_opt::<i32>()?.iter().flatten() {
                let kind = temporal_text(text)?;
                widest = Some(widest.map_or(kind, |w| w.max(kind)));
            }
        }
        widest
    };
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            let field = field.as_ref().clone();
            if field.data_type() != &DataType::Utf8 {
                return field;
            }
            let temporal = match kind_of(field.name()) {
                Some(TemporalText::Date) => DataType::Date32,
                // Microseconds at least (PostgreSQL's and DuckDB's precision): a finer value
                // after the sample must not lose its fraction.
                Some(TemporalText::Timestamp(fraction)) if fraction <= 6 => {
                    DataType::Timestamp(TimeUnit::Microsecond, None)
                }
                Some(TemporalText::Timestamp(_)) => DataType::Timestamp(TimeUnit::Nanosecond, None),
                None => return field,
            };
            // The pattern is not enough (2024-02-30, 24:00:00): every sampled value must read.
            if reads_as(&batches, field.name(), &temporal) {
                field.with_data_type(temporal)
            } else {
                field
            }
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// Whether every value of text column `name` in `batches` casts to `data_type`.
fn reads_as(batches: &[RecordBatch], name: &str, data_type: &DataType) -> bool {
    let options = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    batches
        .iter()
        .filter_map(|b| b.column_by_name(name))
        .all(|column| arrow::compute::cast_with_options(column, data_type, &options).is_ok())
}

/// `schema`'s fields in the order their keys first appear in the `sample` records of `data`
/// (as DuckDB orders them); `arrow-json` infers them sorted by name.
fn in_key_order(schema: Schema, data: &[u8], sample: &[RecordSpan]) -> Schema {
    let mut order: Vec<String> = Vec::new();
    for span in sample {
        if order.len() == schema.fields().len() {
            break;
        }
        for key in json_object_keys(&data[span.range.clone()]).unwrap_or_default() {
            if !order.contains(&key) {
                order.push(key);
            }
        }
    }
    let position = |name: &str| order.iter().position(|k| k == name).unwrap_or(usize::MAX);
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    // Stable: fields whose key was not found keep their relative order, at the end.
    fields.sort_by_key(|f| position(f.name()));
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// The top-level keys of a JSON object, in order; `None` when `text` is not one.
fn json_object_keys(text: &[u8]) -> Option<Vec<String>> {
    let mut at = skip_space(text, 0);
    if text.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    let mut keys = Vec::new();
    loop {
        at = skip_space(text, at);
        match text.get(at)? {
            b'}' => return Some(keys),
            b'"' => {}
            _ => return None,
        }
        let (key, next) = json_string(text, at)?;
        keys.push(key);
        at = skip_space(text, next);
        if text.get(at) != Some(&b':') {
            return None;
        }
        at = skip_json_value(text, at + 1)?;
        at = skip_space(text, at);
        match text.get(at)? {
            b',' => at += 1,
            b'}' => return Some(keys),
            _ => return None,
        }
    }
}

fn skip_space(text: &[u8], mut at: usize) -> usize {
    while text.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// The string starting at the quote at `start` (escapes decoded), and the index after it.
fn json_string(text: &[u8], start: usize) -> Option<(String, usize)> {
    let mut at = start + 1;
    while let Some(&b) = text.get(at) {
        match b {
            b'\\' => at += 2,
            b'"' => {
                let raw = &text[start + 1..at];
                let value = if raw.contains(&b'\\') {
                    decode_json_escapes(std::str::from_utf8(&text[start..=at]).ok()?)?
                } else {
                    std::str::from_utf8(raw).ok()?.to_string()
                };
                return Some((value, at + 1));
            }
            _ => at += 1,
        }
    }
    None
}

/// A quoted JSON string's text with `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t` and
/// `\uXXXX` (basic plane) decoded.
fn decode_json_escapes(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
            }
            other => other,
        });
    }
    Some(out)
}

/// The index after the JSON value starting at or after `at`.
fn skip_json_value(text: &[u8], at: usize) -> Option<usize> {
    let mut at = skip_space(text, at);
    match text.get(at)? {
        b'"' => json_string(text, at).map(|(_, next)| next),
        b'{' | b'[' => {
            let mut depth = 0_usize;
            while let Some(&b) = text.get(at) {
                match b {
                    b'"' => {
                        at = json_string(text, at)?.1;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
            None
        }
        _ => {
            while text
                .get(at)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
            {
                at += 1;
            }
            Some(at)
        }
    }
}

/// The sample `bytes` decoded with the columns of `schema` inferred as `inferred` read as text
/// (values as written); `None` when there are none or the sample does not decode.
fn sample_as_text(schema: &Schema, inferred: &DataType, bytes: &[u8]) -> Option<Vec<RecordBatch>> {
    let texts: Vec<Field> = schema
        .fields()
        .iter()
        .filter(|f| f.data_type() == inferred)
        .map(|f| f.as_ref().clone().with_data_type(DataType::Utf8))
        .collect();
    if texts.is_empty() {
        return None;
    }
    arrow::json::ReaderBuilder::new(Arc::new(Schema::new(texts)))
        .with_coerce_primitive(true)
        .build(Cursor::new(bytes))
        .and_then(|reader| reader.collect::<Result<Vec<_>, _>>())
        .ok()
}

/// Digits of the whole numbers [`exact_big_integers`] types as `Decimal128(20, 0)`: every
/// `u64` and `i64`.
const BIG_INTEGER_DIGITS: u8 = 20;

/// `arrow-json` infers a column holding an integer beyond `Int64` as `Float64`, which would
/// round it (9007199254740993 → 9007199254740992). A `Float64` column whose values in the
/// sample `bytes` are all integers as written, of at most 20 digits, becomes
/// `Decimal128(20, 0)`: exact, and decoded through the same whole-number check as integers.
fn exact_big_integers(schema: Schema, bytes: &[u8]) -> Schema {
    // The numbers as written: text columns keep a number's own digits.
    let Some(batches) = sample_as_text(&schema, &DataType::Float64, bytes) else {
        return schema;
    };
    let integral = |name: &str| -> bool {
        let mut values = batches
            .iter()
            .filter_map(|b| b.column_by_name(name))
            .filter_map(|c| c.as_string_opt::<i32>())
            .flat_map(|c| c.iter().flatten());
        let whole = |text: &str| {
            let digits = text.strip_prefix('-').unwrap_or(text);
            !digits.is_empty()
                && digits.len() <= usize::from(BIG_INTEGER_DIGITS)
                && digits.bytes().all(|b| b.is_ascii_digit())
        };
        let mut any = false;
        values.all(|text| {
            any = true;
            whole(text)
        }) && any
    };
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            let field = field.as_ref().clone();
            if field.data_type() == &DataType::Float64 && integral(field.name()) {
                field.with_data_type(DataType::Decimal128(BIG_INTEGER_DIGITS, 0))
            } else {
                field
            }
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
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
    fn json_strings_of_dates_and_timestamps_infer_as_such() {
        let data = concat!(
            "{\"d\":\"2024-01-05\",\"t\":\"2026-01-01T00:00:10Z\",\"u\":\"2026-01-01 00:00:10.5\",\"s\":\"2024-01-05\"}\n",
            "{\"d\":null,\"t\":\"2026-01-01T00:01:00+02:00\",\"u\":\"2026-01-01 00:00:11.123456\",\"s\":\"soon\"}\n",
        );
        let config = IngestConfig::default().with_source_name("e.jsonl");
        let schema = infer_json_lines_schema(data.as_bytes(), &config).unwrap();
        let type_of = |name: &str| schema.field_with_name(name).unwrap().data_type().clone();
        assert_eq!(type_of("d"), DataType::Date32);
        assert_eq!(
            type_of("t"),
            DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert_eq!(
            type_of("u"),
            DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert_eq!(type_of("s"), DataType::Utf8);
        let out = read_json_lines(data.as_bytes(), None, &config).unwrap();
        assert_eq!((out.accepted_rows, out.rejected_rows), (2, 0));
        let batch = &out.batches[0];
        let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
        let t = column("t");
        let t = t.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        // The zone is applied: 00:01:00+02:00 is 22:01:00 UTC the day before.
        assert_eq!(t.values(), &[1_767_225_610_000_000, 1_767_218_460_000_000]);
        // Keys keep the file's order, not arrow-json's sorted one.
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["d", "t", "u", "s"]);
        let u = column("u");
        let u = u.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(u.value(1) - u.value(0), 623_456);
        for text in [
            "2024-1-05",
            "2024-01-05T10:00",
            "2024-01-05T10:00:00.",
            "2024-01-05T10:00:001",
        ] {
            assert_eq!(temporal_text(text), None, "{text}");
        }
        // A value of the pattern that is no date keeps the column text, and every row.
        let data = "{\"t\":\"2024-02-30\",\"id\":1}\n{\"t\":\"2026-01-01\",\"id\":2}\n";
        let out = read_json_lines(data.as_bytes(), None, &config).unwrap();
        assert_eq!((out.accepted_rows, out.rejected_rows), (2, 0));
        assert_eq!(
            out.batches[0].schema().field(0).data_type(),
            &DataType::Utf8
        );
        // A finer fraction after the sample keeps its digits.
        let mut data = "{\"t\":\"2026-01-01T00:00:10Z\"}\n".repeat(1_200);
        data.push_str("{\"t\":\"2026-01-01T00:00:10.750001Z\"}\n");
        let out = read_json_lines(data.as_bytes(), None, &config).unwrap();
        assert_eq!(last_microseconds(&out) % 1_000_000, 750_001);
    }

    /// The last value of the first column, a microsecond timestamp.
    fn last_microseconds(out: &IngestOutput) -> i64 {
        let last = out.batches.last().unwrap();
        let t = last
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        t.value(t.len() - 1)
    }

    #[test]
    fn csv_timestamps_keep_a_finer_fraction_after_the_sample() {
        let mut data = String::from("t,v\n");
        for i in 0..1_200 {
            data.push_str(&format!("2026-01-01T00:00:10Z,{i}\n"));
        }
        data.push_str("2026-01-01T00:00:10.750001Z,1\n");
        let config = IngestConfig::default().with_source_name("t.csv");
        let out = read_csv(data.as_bytes(), None, CsvOptions::default(), &config).unwrap();
        assert_eq!(out.rejected_rows, 0);
        assert_eq!(last_microseconds(&out) % 1_000_000, 750_001);
    }

    #[test]
    fn json_object_keys_come_in_order_through_nesting_and_escapes() {
        let line = br#" { "z": {"a": [1, "}", {"b": 2}]}, "y\"q": "x,y", "\u00e9t\u00e9" : -1.5e3 , "a": null } "#;
        assert_eq!(
            json_object_keys(line).unwrap(),
            ["z", "y\"q", "\u{e9}t\u{e9}", "a"]
        );
        assert_eq!(json_object_keys(b"{}").unwrap(), Vec::<String>::new());
        for bad in [&b"[1]"[..], b"{\"a\" 1}", b"{\"a\":1", b"{\"a\":\"x}"] {
            assert_eq!(
                json_object_keys(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
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
    fn json_numbers_with_a_fraction_are_not_cut_into_integer_columns() {
        let data = b"{\"v\":1}\n{\"v\":2.7}\n{\"v\":3e2}\n{\"v\":-4.0}\n{\"v\":null}\n{\"v\":-0.5}\n{\"v\":9223372036854775808}\n";
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let out = read_json_lines(data, Some(schema), &IngestConfig::default()).unwrap();
        let values: Vec<Option<i64>> = out
            .batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<Int64Type>()
                    .iter()
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(values, [Some(1), Some(300), Some(-4), None]);
        let reasons: Vec<(u64, &str)> = out
            .dead_letters
            .iter()
            .map(|d| (d.position.record, d.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert_eq!(reasons[0].0, 2);
        assert!(
            reasons[0].1.contains("2.7 is not an integer"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].1.contains("-0.5 is not an integer"),
            "{reasons:?}"
        );
        assert_eq!(reasons[2].0, 7);
        // Inferred integer columns get the same check.
        let out =
            read_json_lines(b"{\"v\":1}\n{\"v\":2}\n", None, &IngestConfig::default()).unwrap();
        let schema = out.schema.unwrap();
        let inferred =
            read_json_lines(b"{\"v\":2.5}\n", Some(schema), &IngestConfig::default()).unwrap();
        assert_eq!((inferred.accepted_rows, inferred.rejected_rows), (0, 1));
    }

    #[test]
    fn repeated_csv_header_names_get_suffixes() {
        let out = read_csv(
            b"k,K,k,v\n1,2,3,4\n",
            None,
            CsvOptions::default(),
            &IngestConfig::default(),
        )
        .unwrap();
        let schema = out.schema.unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["k", "K_1", "k_2", "v"]);
        assert_eq!(out.accepted_rows, 1);
    }

    #[test]
    fn json_integers_beyond_int64_are_inferred_exactly() {
        let data = b"{\"id\":9007199254740993,\"x\":1.5}\n{\"id\":18446744073709551615,\"x\":2}\n{\"id\":-3}\n";
        let out = read_json_lines(data, None, &IngestConfig::default()).unwrap();
        let schema = out.schema.clone().unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Decimal128(20, 0));
        assert_eq!(schema.field(1).data_type(), &DataType::Float64);
        let ids = out.batches[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Decimal128Type>();
        assert_eq!(
            ids.values().to_vec(),
            [9_007_199_254_740_993, 18_446_744_073_709_551_615, -3]
        );
        // A later fraction in that column is a dead letter, not rounded.
        let out = read_json_lines(
            b"{\"id\":2.5}\n{\"id\":7}\n",
            Some(schema),
            &IngestConfig::default(),
        )
        .unwrap();
        assert_eq!((out.accepted_rows, out.rejected_rows), (1, 1));
    }

    #[test]
    fn a_malformed_record_in_the_inference_sample_is_a_dead_letter() {
        let out = read_csv(
            b"k,v\na,1\nb,2,extra\nc\nd,4\n",
            None,
            CsvOptions::default(),
            &IngestConfig::default(),
        )
        .unwrap();
        assert_eq!(out.schema.unwrap().field(1).data_type(), &DataType::Int64);
        assert_eq!((out.accepted_rows, out.rejected_rows), (2, 2));
        let lines: Vec<u64> = out.dead_letters.iter().map(|d| d.position.record).collect();
        assert_eq!(lines, [3, 4]);
    }

    #[test]
    fn schemas_of_several_inputs_unify() {
        let names = ["a.csv".to_string(), "b.csv".to_string()];
        let int = Field::new("x", DataType::Int64, true);
        let float = Field::new("y", DataType::Float64, true);
        let unified = unify_schemas(
            &[
                Schema::new(vec![int.clone(), Field::new("y", DataType::Int64, true)]),
                Schema::new(vec![Field::new("x", DataType::Null, true), float.clone()]),
            ],
            &names,
            true,
        )
        .unwrap();
        assert_eq!(unified, Schema::new(vec![int.clone(), float.clone()]));
        // A type mix without a common number type is text; a column null everywhere is text.
        let unified = unify_schemas(
            &[
                Schema::new(vec![int.clone(), Field::new("z", DataType::Null, true)]),
                Schema::new(vec![Field::new("x", DataType::Boolean, true)]),
            ],
            &names,
            false,
        )
        .unwrap();
        let types: Vec<&DataType> = unified.fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(types, [&DataType::Utf8, &DataType::Utf8]);
        // CSV headers must agree.
        let error = unify_schemas(
            &[Schema::new(vec![int.clone()]), Schema::new(vec![float])],
            &names,
            true,
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("b.csv: columns [y] differ from [x]"),
            "{error}"
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
    fn an_unclosed_quote_rejects_its_line_and_keeps_the_lines_after_it() {
        // Line 6 opens a quote that never closes; `"x""y"` and `"q\nr"` are well formed.
        let data = b"symbol,quantity\nA,1\n\"x\"\"y\",5\n\"q\nr\",6\n\"B,2\nC,3\nE,7";
        let out = read_csv(
            data,
            Some(schema()),
            CsvOptions::default(),
            &IngestConfig::default(),
        )
        .unwrap();
        assert_eq!((out.accepted_rows, out.rejected_rows), (5, 1));
        let dead = &out.dead_letters[0];
        assert_eq!(
            (dead.position.record, dead.position.byte_offset),
            (6, Some(37))
        );
        assert!(dead.reason.contains("not closed"), "{}", dead.reason);
        let batch = arrow::compute::concat_batches(&schema(), &out.batches).unwrap();
        let symbols: Vec<&str> = batch
            .column(0)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        assert_eq!(symbols, ["A", "x\"y", "q\nr", "C", "E"]);
        // A quote inside a field is an ordinary character: nothing is unclosed.
        assert!(!unterminated_quote(b"a\"b,c\n", b','));
        assert!(unterminated_quote(b"a,\"b\"\"\n", b','));
        assert!(!unterminated_quote(b"a,\"b\"\"\"\n", b','));
    }

    #[test]
    fn crlf_dead_letters_have_the_lines_and_bytes_of_lf_ones() {
        for (newline, expected_byte) in [("\n", 14), ("\r\n", 16)] {
            let data = ["id,s,v", "1,a,10", "2,b", "3,c,30", ""].join(newline);
            let out = read_csv(
                data.as_bytes(),
                None,
                CsvOptions::default(),
                &IngestConfig::default(),
            )
            .unwrap();
            assert_eq!(
                (out.accepted_rows, out.rejected_rows),
                (2, 1),
                "{newline:?}"
            );
            let dead = &out.dead_letters[0];
            assert_eq!(
                (dead.position.record, dead.position.byte_offset),
                (3, Some(expected_byte)),
                "{newline:?}"
            );
            // The decoder saw the record alone: its own line number would be wrong.
            assert!(!dead.reason.contains("line"), "{}", dead.reason);
            assert!(dead.reason.contains("expected 3 got 2"), "{}", dead.reason);
        }
        assert_eq!(
            without_decoder_lines("value 'x' for column 0 at line 0. Row data: 'online'"),
            "value 'x' for column 0. Row data: 'online'"
        );
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
            // Decoding one column only must agree between the paths too.
            let projection: Option<&[usize]> = (schema.is_some() && next(2) == 0).then_some(&[1]);
            let fast = read_csv_with::<true>(
                text.as_bytes(),
                schema.clone(),
                projection,
                options,
                &config,
            );
            let exact = read_csv_with::<false>(
                text.as_bytes(),
                schema.clone(),
                projection,
                options,
                &config,
            );
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
                let decode =
                    |bytes: &[u8], rows: usize| decode_csv(bytes, &schema, None, options, rows);
                let plain = |_: &[u8], _: usize| None;
                one_pass_taken += usize::from(
                    read_csv_in_one_pass(body, &schema, options, &config, &decode, &plain)
                        .is_some(),
                );
            }
        }
        assert!(
            one_pass_taken > 500,
            "one pass taken {one_pass_taken} times"
        );
    }

    #[test]
    fn separators_are_found_in_order_at_every_length() {
        let mut rng = quiver_core::rng::SplitMix64::new(9);
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| [b'a', b',', b'\n', b';', 0x80][rng.below(5) as usize])
                .collect();
            for delimiter in [b',', b';'] {
                let mut found = Vec::new();
                for_each_separator(&bytes, delimiter, |at| found.push(at));
                let expected: Vec<usize> = (0..len)
                    .filter(|&i| bytes[i] == delimiter || bytes[i] == b'\n')
                    .collect();
                assert_eq!(found, expected, "{bytes:?}");
            }
        }
    }

    /// The quote-free decoder gives `arrow-csv`'s batches wherever it answers, and answers
    /// `None` wherever `arrow-csv` fails: random fields of every column type it takes (and one
    /// it does not), NULLs, values that do not parse, wrong field counts, multi-byte text,
    /// projections and batch sizes.
    #[test]
    fn plain_csv_decodes_as_arrow_csv_does() {
        let types = [
            DataType::Int64,
            DataType::Int32,
            DataType::Float64,
            DataType::Utf8,
            DataType::Date32,
            DataType::Decimal128(9, 2),
            DataType::Boolean,
        ];
        let values = [
            "0",
            "-17",
            "9223372036854775807",
            "2147483648",
            "1.5",
            "-0.0",
            "1e300",
            "NaN",
            "inf",
            "2024-02-29",
            "2023-02-29",
            "12.345",
            "1234567.89",
            "abc",
            "é🦀",
            "",
            "",
            " 3",
            "true",
            "+4",
            "0x10",
            "1.",
        ];
        let mut rng = quiver_core::rng::SplitMix64::new(0xC5F);
        let mut next = |bound: usize| rng.below(bound as u64) as usize;
        let (mut answered, mut cases) = (0, 0);
        for _ in 0..4000 {
            let width = 1 + next(4);
            let mut fields = Vec::new();
            for c in 0..width {
                // Mostly types the plain decoder takes; Boolean now and then.
                let pick = if next(12) == 0 { 6 } else { next(6) };
                fields.push(Field::new(format!("c{c}"), types[pick].clone(), true));
            }
            let schema = Arc::new(Schema::new(fields));
            let clean = next(3) != 0;
            let mut text = String::new();
            let mut records = 0;
            for _ in 0..next(9) {
                let mut count = width;
                if !clean && next(8) == 0 {
                    count = 1 + next(width + 1);
                }
                let record: Vec<&str> = (0..count)
                    .map(|c| {
                        let typed = clean && next(4) != 0;
                        match (typed, schema.field(c.min(width - 1)).data_type()) {
                            (true, DataType::Int64 | DataType::Int32) => {
                                ["7", "-3", "", "120"][next(4)]
                            }
                            (true, DataType::Float64) => ["2.5", "-1", "", "1e-5"][next(4)],
                            (true, DataType::Date32) => ["2024-01-31", "", "1999-12-01"][next(3)],
                            (true, DataType::Decimal128(..)) => ["1.25", "-3", "", "0.1"][next(4)],
                            _ => values[next(values.len())],
                        }
                    })
                    .collect();
                text.push_str(&record.join(","));
                text.push('\n');
                records += 1;
            }
            if next(4) == 0 && !text.is_empty() {
                text.pop();
            }
            let projection: Option<Vec<usize>> =
                (next(3) == 0).then(|| (0..width).filter(|_| next(2) == 0).collect());
            let output_schema = match &projection {
                Some(columns) => Arc::new(schema.project(columns).unwrap()),
                None => schema.clone(),
            };
            let batch_rows = 1 + next(6);
            let plain = decode_plain_csv(
                text.as_bytes(),
                &schema,
                projection.as_deref(),
                &output_schema,
                b',',
                records,
                batch_rows,
            );
            let reference = decode_csv(
                text.as_bytes(),
                &schema,
                projection.as_deref(),
                CsvOptions::default(),
                batch_rows,
            );
            cases += 1;
            match (plain, reference) {
                (Some(plain), Ok(reference)) => {
                    let reference: Vec<RecordBatch> =
                        reference.into_iter().filter(|b| b.num_rows() > 0).collect();
                    assert_eq!(plain, reference, "{text:?} {projection:?}");
                    answered += 1;
                }
                (Some(plain), Err(e)) => panic!("{text:?}: plain {plain:?}, arrow-csv {e}"),
                (None, _) => {}
            }
        }
        assert!(
            answered * 4 > cases,
            "plain decoder answered {answered} of {cases}"
        );
    }

    #[test]
    fn projected_csv_decodes_only_the_chosen_columns() {
        let data = b"n,s,x\n1,a,2.5\n2,b,oops\n3,c,4\n1,2\n";
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
        ]));
        let config = IngestConfig::default();
        let body = &data[b"n,s,x\n".len()..];
        let options = CsvOptions {
            has_header: false,
            ..CsvOptions::default()
        };
        let out = read_csv_projected(body, schema.clone(), &[0, 1], options, &config).unwrap();
        assert_eq!(out.schema.as_ref().unwrap().fields().len(), 2);
        // `oops` is in a column not read: its record counts; the short record is still bad.
        assert_eq!(out.accepted_rows, 3);
        assert_eq!(out.dead_letters.len(), 1);
        assert_eq!(out.dead_letters[0].position.record, 4);
        let full = read_csv(body, Some(schema), options, &config).unwrap();
        assert_eq!(full.accepted_rows, 2);
        let projected = concat_batches(out.schema.as_ref().unwrap(), &out.batches).unwrap();
        let n = projected
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(n.values().to_vec(), vec![1, 2, 3]);
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
