//! Fuzz checks: functions that turn arbitrary bytes into an aggregation case and panic when the
//! vectorized kernels disagree with the row-at-a-time reference. The cargo-fuzz targets in
//! `fuzz/` are thin shims over these, and `cargo test` replays the committed corpus and every
//! regression through them without libFuzzer.
//!
//! Float inputs come in two columns: one with arbitrary bit patterns (NaN payloads, infinities,
//! subnormals, `-0.0`) for order-based aggregates (MIN, MAX, COUNT DISTINCT, MEDIAN,
//! PERCENTILE_CONT, PERCENTILE_DISC), and one of moderate magnitude for SUM/AVG/VAR/STDDEV, whose compensated
//! summation may legitimately differ from the reference's naive sum under catastrophic
//! cancellation. Floats compare within [`FLOAT_RELATIVE_TOLERANCE`].

pub use crate::expr_fuzz::check_expr_eval;
use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Decimal128Array, Float64Array, Int32Array, Int64Array,
    RecordBatch, StringArray, StringViewArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use crate::aggregate::{AggregateExpr, AggregateFunction as F, HashAggregator};
use crate::reference::{self, RefRow};
use crate::EmitTo;

/// Relative tolerance of float results (absolute below 1.0).
pub const FLOAT_RELATIVE_TOLERANCE: f64 = 1e-9;

/// Reads fuzz bytes as a stream of small choices; exhausted input reads as zeros.
/// A reader of fuzz input: every read succeeds, reading zeros past the end, so any byte string
/// decodes to some case.
#[derive(Debug)]
pub struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, at: 0 }
    }

    /// The next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        let byte = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        byte
    }

    /// A number below `bound` (0 for a bound of 0).
    pub fn below(&mut self, bound: u8) -> u8 {
        self.u8() % bound.max(1)
    }

    /// The next 8 bytes, big-endian.
    pub fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| (acc << 8) | u64::from(self.u8()))
    }

    /// The lowest bit of the next byte.
    pub fn flag(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// True once every input byte was read.
    pub fn exhausted(&self) -> bool {
        self.at >= self.data.len()
    }
}

/// Key column kinds the decoder can produce.
const KEY_KINDS: u8 = 8;

fn key_column(kind: u8, bytes: &mut Bytes<'_>, rows: usize) -> ArrayRef {
    // Few distinct keys so groups repeat; a null about one row in eight.
    let ids: Vec<Option<u8>> = (0..rows)
        .map(|_| {
            let b = bytes.u8();
            (b & 7 != 0).then_some(b >> 4)
        })
        .collect();
    match kind {
        0 => Arc::new(Int64Array::from_iter(ids.iter().map(|v| {
            v.map(|id| match id {
                0 => i64::MIN,
                1 => i64::MAX,
                id => i64::from(id) - 8,
            })
        }))),
        1 => Arc::new(Int32Array::from_iter(ids.iter().map(|v| v.map(i32::from)))),
        2 => Arc::new(StringArray::from_iter(ids.iter().map(|v| v.map(odd_text)))),
        3 => Arc::new(StringViewArray::from_iter(
            ids.iter().map(|v| v.map(odd_text)),
        )),
        4 => Arc::new(Float64Array::from_iter(ids.iter().map(|v| {
            v.map(|id| match id {
                0 => f64::NAN,
                1 => -f64::NAN,
                2 => 0.0,
                3 => -0.0,
                4 => f64::INFINITY,
                id => f64::from(id) / 3.0,
            })
        }))),
        5 => Arc::new(BooleanArray::from_iter(
            ids.iter().map(|v| v.map(|id| id % 2 == 0)),
        )),
        6 => Arc::new(
            Decimal128Array::from_iter(
                ids.iter()
                    .map(|v| v.map(|id| i128::from(id) * 10_i128.pow(30))),
            )
            .with_precision_and_scale(38, 3)
            .unwrap_or_else(|_| Decimal128Array::from(vec![None; rows])),
        ),
        _ => Arc::new(BinaryArray::from_iter(
            ids.iter().map(|v| v.map(|id| vec![0xff, id])),
        )),
    }
}

/// Text with awkward UTF-8: multi-byte characters, combining marks, an empty string.
fn odd_text(id: u8) -> String {
    match id % 6 {
        0 => String::new(),
        1 => "é".repeat(usize::from(id)),
        2 => format!("k{id}\u{0301}"),
        3 => format!("🦀{id}"),
        4 => "a-long-key-that-does-not-fit-inline".to_string(),
        _ => format!("k{id}"),
    }
}

fn value_fields() -> Vec<Field> {
    vec![
        Field::new("v_int", DataType::Int64, true),
        Field::new("v_float_any", DataType::Float64, true),
        Field::new("v_float", DataType::Float64, true),
        Field::new("v_decimal", DataType::Decimal128(38, 2), true),
        Field::new("v_text", DataType::Utf8, true),
        Field::new("v_flag", DataType::Boolean, true),
    ]
}

fn value_columns(bytes: &mut Bytes<'_>, rows: usize) -> Vec<ArrayRef> {
    let null_every = bytes.below(5); // 0: no nulls
    let nullable = |bytes: &mut Bytes<'_>| null_every != 0 && bytes.below(null_every + 1) == 0;
    let mut ints = Vec::with_capacity(rows);
    let mut any_floats = Vec::with_capacity(rows);
    let mut floats = Vec::with_capacity(rows);
    let mut decimals = Vec::with_capacity(rows);
    let mut texts = Vec::with_capacity(rows);
    let mut flags = Vec::with_capacity(rows);
    for _ in 0..rows {
        let int = match bytes.below(4) {
            0 => i64::MIN,
            1 => i64::MAX,
            _ => bytes.u64() as i64,
        };
        ints.push((!nullable(bytes)).then_some(int));
        any_floats.push((!nullable(bytes)).then(|| f64::from_bits(bytes.u64())));
        floats.push((!nullable(bytes)).then(|| f64::from(bytes.u8() as i8) * 1.5e3 / 7.0));
        // At most 30 digits: sums of a fuzz case's rows cannot overflow i128 or 38 digits.
        decimals.push((!nullable(bytes)).then(|| (bytes.u64() as i64 as i128) * 1_000_000_000_000));
        texts.push((!nullable(bytes)).then(|| odd_text(bytes.u8())));
        flags.push((!nullable(bytes)).then(|| bytes.flag()));
    }
    vec![
        Arc::new(Int64Array::from(ints)),
        Arc::new(Float64Array::from(any_floats)),
        Arc::new(Float64Array::from(floats)),
        Arc::new(
            Decimal128Array::from(decimals)
                .with_precision_and_scale(38, 2)
                .unwrap_or_else(|_| Decimal128Array::from(vec![None; rows])),
        ),
        Arc::new(StringArray::from(texts)),
        Arc::new(BooleanArray::from(flags)),
    ]
}

fn aggregate_menu(first_value: usize) -> Vec<AggregateExpr> {
    let (int, any_float, float, decimal, text, flag) = (
        first_value,
        first_value + 1,
        first_value + 2,
        first_value + 3,
        first_value + 4,
        first_value + 5,
    );
    vec![
        AggregateExpr::new(F::CountStar, None, "count_star"),
        AggregateExpr::new(F::Count, Some(any_float), "count"),
        AggregateExpr::new(F::Sum, Some(int), "sum_int"),
        AggregateExpr::new(F::Avg, Some(int), "avg_int"),
        AggregateExpr::new(F::Min, Some(int), "min_int"),
        AggregateExpr::new(F::Max, Some(any_float), "max_float_any"),
        AggregateExpr::new(F::Min, Some(any_float), "min_float_any"),
        AggregateExpr::new(F::Sum, Some(float), "sum_float"),
        AggregateExpr::new(F::Avg, Some(float), "avg_float"),
        AggregateExpr::new(F::Sum, Some(decimal), "sum_decimal"),
        AggregateExpr::new(F::Avg, Some(decimal), "avg_decimal"),
        AggregateExpr::new(F::Max, Some(decimal), "max_decimal"),
        AggregateExpr::new(F::Min, Some(text), "min_text"),
        AggregateExpr::new(F::Max, Some(text), "max_text"),
        AggregateExpr::new(F::CountDistinct, Some(any_float), "distinct_float_any"),
        AggregateExpr::new(F::CountDistinct, Some(text), "distinct_text"),
        AggregateExpr::new(F::VarSamp, Some(float), "var_samp"),
        AggregateExpr::new(F::StddevPop, Some(float), "stddev_pop"),
        AggregateExpr::new(F::BoolAnd, Some(flag), "bool_and"),
        AggregateExpr::new(F::BoolOr, Some(flag), "bool_or"),
        AggregateExpr::new(F::Median, Some(any_float), "median_float_any"),
        AggregateExpr::new(F::PercentileCont(0.25), Some(int), "p25_int"),
        AggregateExpr::new(
            F::ApproxPercentile(0.9),
            Some(any_float),
            "approx_p90_float_any",
        ),
        AggregateExpr::new(F::ApproxPercentile(0.5), Some(int), "approx_median_int"),
        AggregateExpr::new(F::StringAgg, Some(text), "string_agg").with_separator(";"),
        AggregateExpr::new(F::Sum, Some(int), "sum_int_filtered").with_filter(flag),
        AggregateExpr::new(F::FirstValue, Some(any_float), "first_float_any"),
        AggregateExpr::new(F::LastValue, Some(text), "last_text"),
        AggregateExpr::new(F::FirstValue, Some(int), "first_int_filtered").with_filter(flag),
        AggregateExpr::new(
            F::PercentileDisc {
                fraction: 0.4,
                descending: false,
            },
            Some(any_float),
            "p40_disc_float_any",
        ),
        AggregateExpr::new(
            F::PercentileDisc {
                fraction: 0.75,
                descending: true,
            },
            Some(text),
            "p75_disc_text_desc",
        )
        .with_filter(flag),
        AggregateExpr::new(F::Bit(crate::BitOperation::And), Some(int), "bit_and_int"),
        AggregateExpr::new(F::Bit(crate::BitOperation::Xor), Some(int), "bit_xor_int")
            .with_filter(flag),
    ]
}

/// A decoded aggregation case.
#[derive(Debug)]
pub struct Case {
    /// Schema of the batches.
    pub schema: SchemaRef,
    /// Input batches (possibly empty ones).
    pub batches: Vec<RecordBatch>,
    /// Key column indices.
    pub group_by: Vec<usize>,
    /// Aggregates.
    pub aggregates: Vec<AggregateExpr>,
}

/// Decodes `data` into a case: 0–2 key columns of arbitrary kinds, 1–4 batches of 0–63 rows,
/// and a subset of the aggregate menu chosen by bits of the input.
pub fn decode_case(data: &[u8]) -> Case {
    let mut bytes = Bytes { data, at: 0 };
    let key_count = usize::from(bytes.below(3));
    let key_kinds: Vec<u8> = (0..key_count).map(|_| bytes.below(KEY_KINDS)).collect();
    let batch_count = 1 + usize::from(bytes.below(4));
    let menu_bits = bytes.u64() | 1;
    let mut schema: Option<SchemaRef> = None;
    let mut batches = Vec::new();
    for _ in 0..batch_count {
        let rows = usize::from(bytes.below(64));
        let mut columns: Vec<ArrayRef> = key_kinds
            .iter()
            .map(|&k| key_column(k, &mut bytes, rows))
            .collect();
        columns.extend(value_columns(&mut bytes, rows));
        let schema = schema.get_or_insert_with(|| {
            let mut fields: Vec<Field> = columns
                .iter()
                .take(key_count)
                .enumerate()
                .map(|(i, c)| Field::new(format!("key{i}"), c.data_type().clone(), true))
                .collect();
            fields.extend(value_fields());
            Arc::new(Schema::new(fields))
        });
        match RecordBatch::try_new(schema.clone(), columns) {
            Ok(batch) => batches.push(batch),
            Err(e) => panic!("fuzz decoder built an invalid batch: {e}"),
        }
    }
    let schema = schema.unwrap_or_else(|| Arc::new(Schema::empty()));
    let aggregates = aggregate_menu(key_count)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| menu_bits >> i & 1 == 1)
        .map(|(_, a)| a)
        .collect();
    Case {
        schema,
        batches,
        group_by: (0..key_count).collect(),
        aggregates,
    }
}

fn vectorized(case: &Case) -> Result<Vec<RefRow>, String> {
    let mut aggregator = HashAggregator::try_new(
        case.schema.clone(),
        case.group_by.clone(),
        case.aggregates.clone(),
    )
    .map_err(|e| e.to_string())?;
    for batch in &case.batches {
        aggregator.update(batch).map_err(|e| e.to_string())?;
    }
    let output = aggregator
        .evaluate(EmitTo::All)
        .map_err(|e| e.to_string())?;
    let mut rows =
        reference::batch_rows(&output, case.group_by.len()).map_err(|e| e.to_string())?;
    reference::sort_rows(&mut rows);
    Ok(rows)
}

fn expected(case: &Case) -> Result<Vec<RefRow>, String> {
    let mut rows = reference::aggregate(&case.batches, &case.group_by, &case.aggregates)
        .map_err(|e| e.to_string())?;
    reference::sort_rows(&mut rows);
    Ok(rows)
}

fn assert_same(
    label: &str,
    actual: &Result<Vec<RefRow>, String>,
    expected: &Result<Vec<RefRow>, String>,
) {
    match (actual, expected) {
        (Ok(a), Ok(e)) => {
            if let Err(difference) = reference::compare_rows(a, e, FLOAT_RELATIVE_TOLERANCE) {
                panic!("{label}: {difference}");
            }
        }
        // Both reject (integer SUM overflow): agreement.
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => panic!("{label}: reference failed ({e}) but kernels succeeded"),
        (Err(a), Ok(_)) => panic!("{label}: kernels failed ({a}) but the reference succeeded"),
    }
}

/// Vectorized single-phase aggregation equals the row-at-a-time reference.
pub fn check_agg_differential(data: &[u8]) {
    let case = decode_case(data);
    assert_same("single phase", &vectorized(&case), &expected(&case));
}

/// Round-trips a state batch through Arrow IPC, as a checkpoint or a network hop would.
fn ipc_round_trip(batch: &RecordBatch) -> Result<RecordBatch, String> {
    let mut buffer = Vec::new();
    {
        let mut writer =
            StreamWriter::try_new(&mut buffer, &batch.schema()).map_err(|e| e.to_string())?;
        writer.write(batch).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
    }
    let mut reader = StreamReader::try_new(Cursor::new(buffer), None).map_err(|e| e.to_string())?;
    match reader.next() {
        Some(batch) => batch.map_err(|e| e.to_string()),
        None => Err("IPC stream had no batch".into()),
    }
}

/// The batches split at arbitrary points into partitions, partially aggregated, their state
/// serialised through Arrow IPC in arbitrary pieces and merged, equal single-phase aggregation.
pub fn check_agg_merge(data: &[u8]) {
    let case = decode_case(data);
    let single = vectorized(&case);
    let mut split = Bytes {
        data: data.get(data.len() / 2..).unwrap_or(&[]),
        at: 0,
    };
    let merged = (|| -> Result<Vec<RefRow>, String> {
        let new = || {
            HashAggregator::try_new(
                case.schema.clone(),
                case.group_by.clone(),
                case.aggregates.clone(),
            )
            .map_err(|e| e.to_string())
        };
        // Cut each batch at an arbitrary row; consecutive pieces go to partitions in order.
        let partition_count = 1 + usize::from(split.below(3));
        let mut partitions: Vec<HashAggregator> = (0..partition_count)
            .map(|_| new())
            .collect::<Result<_, _>>()?;
        let mut partition = 0;
        for batch in &case.batches {
            let cut = usize::from(split.u8()) % (batch.num_rows() + 1);
            partitions[partition]
                .update(&batch.slice(0, cut))
                .map_err(|e| e.to_string())?;
            if split.flag() {
                partition = (partition + 1).min(partition_count - 1);
            }
            partitions[partition]
                .update(&batch.slice(cut, batch.num_rows() - cut))
                .map_err(|e| e.to_string())?;
        }
        let mut last = new()?;
        for partial in &mut partitions {
            let first = usize::from(split.u8()) % (partial.num_groups() + 1);
            for emit in [EmitTo::First(first), EmitTo::All] {
                let state = partial.state(emit).map_err(|e| e.to_string())?;
                last.merge(&ipc_round_trip(&state)?)
                    .map_err(|e| e.to_string())?;
            }
        }
        let output = last.evaluate(EmitTo::All).map_err(|e| e.to_string())?;
        let mut rows =
            reference::batch_rows(&output, case.group_by.len()).map_err(|e| e.to_string())?;
        reference::sort_rows(&mut rows);
        Ok(rows)
    })();
    // Overflow is order-dependent only for integer SUM, which errors at evaluation in both.
    assert_same("two phase vs single phase", &merged, &single);
}
