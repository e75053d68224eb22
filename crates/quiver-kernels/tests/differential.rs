//! Differential tests: the vectorized hash aggregation against the row-at-a-time reference on
//! seeded random data, across key types, null fractions, group counts, batch splits,
//! partitionings and partial emits.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, DictionaryArray,
    Float64Array, Int32Array, Int64Array, LargeStringArray, RecordBatch, StringArray,
    StringViewArray, TimestampMillisecondArray, UInt8Array,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use quiver_kernels::aggregate::MomentKind;
use quiver_kernels::reference::{self, compare_rows, sort_rows, RefRow, RefValue};
use quiver_kernels::{AggregateExpr, AggregateFunction as F, EmitTo, HashAggregator};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const FLOAT_TOLERANCE: f64 = 1e-9;

#[derive(Debug, Clone, Copy)]
enum KeyKind {
    Int64,
    Int32,
    UInt8,
    Utf8,
    LargeUtf8,
    Utf8View,
    Float64,
    Boolean,
    Decimal,
    Date32,
    TimestampMs,
    Binary,
    Dictionary,
}

const ALL_KEYS: [KeyKind; 13] = [
    KeyKind::Int64,
    KeyKind::Int32,
    KeyKind::UInt8,
    KeyKind::Utf8,
    KeyKind::LargeUtf8,
    KeyKind::Utf8View,
    KeyKind::Float64,
    KeyKind::Boolean,
    KeyKind::Decimal,
    KeyKind::Date32,
    KeyKind::TimestampMs,
    KeyKind::Binary,
    KeyKind::Dictionary,
];

fn maybe<T>(rng: &mut StdRng, null_fraction: f64, value: T) -> Option<T> {
    (!rng.gen_bool(null_fraction)).then_some(value)
}

fn key_string(id: u64) -> String {
    // Mixed lengths: inline (≤12 bytes) and out-of-line views, and non-ASCII text.
    match id % 3 {
        0 => format!("k{id}"),
        1 => format!("a-much-longer-key-number-{id}"),
        _ => format!("ключ-{id}-é"),
    }
}

fn key_column(
    kind: KeyKind,
    rng: &mut StdRng,
    rows: usize,
    groups: u64,
    null_fraction: f64,
) -> ArrayRef {
    let ids: Vec<Option<u64>> = (0..rows)
        .map(|_| {
            let id = rng.gen_range(0..groups.max(1));
            maybe(rng, null_fraction, id)
        })
        .collect();
    match kind {
        KeyKind::Int64 => Arc::new(Int64Array::from_iter(ids.iter().map(|v| {
            v.map(|id| match id {
                0 => i64::MIN,
                1 => i64::MAX,
                id => id as i64 * 7919 - 1_000_000,
            })
        }))),
        KeyKind::Int32 => Arc::new(Int32Array::from_iter(
            ids.iter().map(|v| v.map(|id| id as i32 - 50)),
        )),
        KeyKind::UInt8 => Arc::new(UInt8Array::from_iter(
            ids.iter().map(|v| v.map(|id| (id % 256) as u8)),
        )),
        KeyKind::Utf8 => Arc::new(StringArray::from_iter(
            ids.iter().map(|v| v.map(key_string)),
        )),
        KeyKind::LargeUtf8 => Arc::new(LargeStringArray::from_iter(
            ids.iter().map(|v| v.map(key_string)),
        )),
        KeyKind::Utf8View => Arc::new(StringViewArray::from_iter(
            ids.iter().map(|v| v.map(key_string)),
        )),
        KeyKind::Float64 => Arc::new(Float64Array::from_iter(ids.iter().map(|v| {
            v.map(|id| match id % 5 {
                0 => f64::NAN,
                1 if id % 2 == 0 => -0.0,
                1 => 0.0,
                2 => -f64::NAN,
                _ => id as f64 / 4.0,
            })
        }))),
        KeyKind::Boolean => Arc::new(BooleanArray::from_iter(
            ids.iter().map(|v| v.map(|id| id % 2 == 0)),
        )),
        KeyKind::Decimal => Arc::new(
            Decimal128Array::from_iter(
                ids.iter()
                    .map(|v| v.map(|id| id as i128 * 1_000_000_000_000_000_000 - 7)),
            )
            .with_precision_and_scale(38, 5)
            .unwrap(),
        ),
        KeyKind::Date32 => Arc::new(Date32Array::from_iter(
            ids.iter().map(|v| v.map(|id| id as i32 - 10_000)),
        )),
        KeyKind::TimestampMs => Arc::new(
            TimestampMillisecondArray::from_iter(
                ids.iter().map(|v| v.map(|id| id as i64 * 60_000)),
            )
            .with_timezone("+00:00"),
        ),
        KeyKind::Binary => {
            Arc::new(BinaryArray::from_iter(ids.iter().map(|v| {
                v.map(|id| vec![0xff, (id % 251) as u8, (id / 251) as u8, 0])
            })))
        }
        KeyKind::Dictionary => {
            let strings: Vec<Option<String>> = ids.iter().map(|v| v.map(key_string)).collect();
            let array: DictionaryArray<Int32Type> = strings.iter().map(|s| s.as_deref()).collect();
            Arc::new(array)
        }
    }
}

/// Value columns: v_int (moderate i64), v_extreme (i64 extremes; MIN/MAX only), v_float
/// (moderate with specials), v_decimal (decimal(12,2)), v_text (strings), v_flag (filter).
fn value_columns(rng: &mut StdRng, rows: usize, null_fraction: f64) -> Vec<ArrayRef> {
    let ints: Int64Array = (0..rows)
        .map(|_| {
            let v = rng.gen_range(-1_000_000_000_i64..1_000_000_000);
            maybe(rng, null_fraction, v)
        })
        .collect();
    let extremes: Int64Array = (0..rows)
        .map(|_| {
            let v = match rng.gen_range(0..4) {
                0 => i64::MIN,
                1 => i64::MAX,
                _ => rng.gen(),
            };
            maybe(rng, null_fraction, v)
        })
        .collect();
    let floats: Float64Array = (0..rows)
        .map(|_| {
            let v = match rng.gen_range(0..200) {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => -0.0,
                _ => rng.gen_range(-1e6..1e6),
            };
            maybe(rng, null_fraction, v)
        })
        .collect();
    let decimals = (0..rows)
        .map(|_| {
            let v = rng.gen_range(-99_999_999_999_i128..99_999_999_999);
            maybe(rng, null_fraction, v)
        })
        .collect::<Decimal128Array>()
        .with_precision_and_scale(12, 2)
        .unwrap();
    let texts: StringArray = (0..rows)
        .map(|_| {
            let v = key_string(rng.gen_range(0..1000));
            maybe(rng, null_fraction, v)
        })
        .collect();
    let flags: BooleanArray = (0..rows)
        .map(|_| {
            let v = rng.gen_bool(0.5);
            maybe(rng, 0.1, v)
        })
        .collect();
    // (value, key) pairs for ARG_MAX / ARG_MIN: wide integer keys, and boolean keys whose
    // many ties test that the first row in arrival order wins.
    let pair = |value: ArrayRef, key: ArrayRef| -> ArrayRef {
        let fields = vec![
            Field::new("y", value.data_type().clone(), true),
            Field::new("x", key.data_type().clone(), true),
        ];
        Arc::new(arrow::array::StructArray::new(
            fields.into(),
            vec![value, key],
            None,
        ))
    };
    let (ints, floats, texts, flags): (ArrayRef, ArrayRef, ArrayRef, ArrayRef) = (
        Arc::new(ints),
        Arc::new(floats),
        Arc::new(texts),
        Arc::new(flags),
    );
    vec![
        Arc::clone(&ints),
        Arc::new(extremes),
        Arc::clone(&floats),
        Arc::new(decimals),
        Arc::clone(&texts),
        Arc::clone(&flags),
        pair(texts, ints),
        pair(floats, flags),
    ]
}

fn value_fields() -> Vec<Field> {
    vec![
        Field::new("v_int", DataType::Int64, true),
        Field::new("v_extreme", DataType::Int64, true),
        Field::new("v_float", DataType::Float64, true),
        Field::new("v_decimal", DataType::Decimal128(12, 2), true),
        Field::new("v_text", DataType::Utf8, true),
        Field::new("v_flag", DataType::Boolean, true),
        Field::new(
            "v_text_by_int",
            pair_type(DataType::Utf8, DataType::Int64),
            true,
        ),
        Field::new(
            "v_float_by_flag",
            pair_type(DataType::Float64, DataType::Boolean),
            true,
        ),
    ]
}

fn pair_type(value: DataType, key: DataType) -> DataType {
    DataType::Struct(vec![Field::new("y", value, true), Field::new("x", key, true)].into())
}

/// Aggregates over a batch whose value columns start at `first_value`.
fn aggregates(first_value: usize) -> Vec<AggregateExpr> {
    let (int, extreme, float, decimal, text, flag) = (
        first_value,
        first_value + 1,
        first_value + 2,
        first_value + 3,
        first_value + 4,
        first_value + 5,
    );
    let (text_by_int, float_by_flag) = (first_value + 6, first_value + 7);
    vec![
        AggregateExpr::new(F::CountStar, None, "count_star"),
        AggregateExpr::new(F::Count, Some(int), "count_int"),
        AggregateExpr::new(F::Sum, Some(int), "sum_int"),
        AggregateExpr::new(F::Avg, Some(int), "avg_int"),
        AggregateExpr::new(F::Min, Some(extreme), "min_extreme"),
        AggregateExpr::new(F::Max, Some(extreme), "max_extreme"),
        AggregateExpr::new(F::Sum, Some(float), "sum_float"),
        AggregateExpr::new(F::Avg, Some(float), "avg_float"),
        AggregateExpr::new(F::Min, Some(float), "min_float"),
        AggregateExpr::new(F::Max, Some(float), "max_float"),
        AggregateExpr::new(F::Sum, Some(decimal), "sum_decimal"),
        AggregateExpr::new(F::Avg, Some(decimal), "avg_decimal"),
        AggregateExpr::new(F::Min, Some(decimal), "min_decimal"),
        AggregateExpr::new(F::Max, Some(text), "max_text"),
        AggregateExpr::new(F::Min, Some(text), "min_text"),
        AggregateExpr::new(F::Sum, Some(int), "sum_int_filtered").with_filter(flag),
        AggregateExpr::new(F::CountStar, None, "count_filtered").with_filter(flag),
        AggregateExpr::new(F::CountDistinct, Some(text), "distinct_text"),
        AggregateExpr::new(F::CountDistinct, Some(float), "distinct_float"),
        AggregateExpr::new(F::CountDistinct, Some(decimal), "distinct_decimal"),
        AggregateExpr::new(F::SumDistinct, Some(int), "sum_distinct_int"),
        AggregateExpr::new(F::AvgDistinct, Some(int), "avg_distinct_int"),
        AggregateExpr::new(F::SumDistinct, Some(decimal), "sum_distinct_decimal").with_filter(flag),
        AggregateExpr::new(F::VarSamp, Some(float), "var_samp"),
        AggregateExpr::new(F::VarPop, Some(int), "var_pop"),
        AggregateExpr::new(F::StddevSamp, Some(decimal), "stddev_samp"),
        AggregateExpr::new(F::StddevPop, Some(float), "stddev_pop"),
        AggregateExpr::new(F::Moment(MomentKind::Skewness), Some(float), "skewness"),
        AggregateExpr::new(F::Moment(MomentKind::Kurtosis), Some(int), "kurtosis"),
        AggregateExpr::new(
            F::Moment(MomentKind::KurtosisPop),
            Some(decimal),
            "kurtosis_pop",
        )
        .with_filter(flag),
        AggregateExpr::new(F::BoolAnd, Some(flag), "bool_and"),
        AggregateExpr::new(F::BoolOr, Some(flag), "bool_or"),
        AggregateExpr::new(
            F::Bit(quiver_kernels::BitOperation::And),
            Some(int),
            "bit_and",
        ),
        AggregateExpr::new(
            F::Bit(quiver_kernels::BitOperation::Or),
            Some(int),
            "bit_or",
        ),
        AggregateExpr::new(
            F::Bit(quiver_kernels::BitOperation::Xor),
            Some(int),
            "bit_xor",
        ),
        AggregateExpr::new(
            F::Bit(quiver_kernels::BitOperation::And),
            Some(extreme),
            "bit_and_extreme",
        ),
        AggregateExpr::new(F::Median, Some(int), "median_int"),
        AggregateExpr::new(F::PercentileCont(0.9), Some(float), "p90_float"),
        AggregateExpr::new(
            F::PercentileDisc {
                fraction: 0.3,
                descending: false,
            },
            Some(int),
            "p30_disc_int",
        ),
        AggregateExpr::new(
            F::PercentileDisc {
                fraction: 0.5,
                descending: true,
            },
            Some(text),
            "median_disc_text_desc",
        ),
        AggregateExpr::new(
            F::PercentileDisc {
                fraction: 0.9,
                descending: false,
            },
            Some(decimal),
            "p90_disc_decimal",
        ),
        AggregateExpr::new(
            F::PercentileDisc {
                fraction: 0.0,
                descending: true,
            },
            Some(float),
            "max_disc_float",
        ),
        AggregateExpr::new(F::ApproxPercentile(0.9), Some(float), "approx_p90_float"),
        AggregateExpr::new(
            F::ApproxPercentile(0.25),
            Some(decimal),
            "approx_p25_decimal",
        ),
        AggregateExpr::new(F::ApproxPercentile(0.5), Some(int), "approx_median_int")
            .with_filter(flag),
        AggregateExpr::new(F::StringAgg, Some(text), "string_agg").with_separator(" | "),
        AggregateExpr::new(F::FirstValue, Some(float), "first_float"),
        AggregateExpr::new(F::LastValue, Some(text), "last_text"),
        AggregateExpr::new(F::LastValue, Some(decimal), "last_decimal_filtered").with_filter(flag),
        AggregateExpr::new(F::Mode, Some(text), "mode_text"),
        AggregateExpr::new(F::Mode, Some(float), "mode_float"),
        AggregateExpr::new(F::Mode, Some(decimal), "mode_decimal_filtered").with_filter(flag),
        AggregateExpr::new(F::ArgExtreme(true), Some(text_by_int), "arg_max_text"),
        AggregateExpr::new(F::ArgExtreme(false), Some(text_by_int), "arg_min_text"),
        AggregateExpr::new(F::ArgExtreme(true), Some(float_by_flag), "arg_max_ties"),
        AggregateExpr::new(
            F::ArgExtreme(false),
            Some(float_by_flag),
            "arg_min_ties_filtered",
        )
        .with_filter(flag),
    ]
}

struct Case {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    group_by: Vec<usize>,
    aggregates: Vec<AggregateExpr>,
}

fn make_case(seed: u64, keys: &[KeyKind], rows: usize, groups: u64, null_fraction: f64) -> Case {
    let mut rng = StdRng::seed_from_u64(seed);
    // Random batch sizes, including empty and one-row batches.
    let mut sizes = Vec::new();
    let mut left = rows;
    while left > 0 {
        let size = match rng.gen_range(0..6) {
            0 => 0,
            1 => 1,
            _ => rng.gen_range(1..=left.min(4096)),
        }
        .min(left);
        sizes.push(size);
        left -= size;
    }
    sizes.push(0);
    let mut fields: Vec<Field> = Vec::new();
    let mut batches = Vec::new();
    let mut schema: Option<SchemaRef> = None;
    for size in sizes {
        let mut columns: Vec<ArrayRef> = keys
            .iter()
            .map(|&k| key_column(k, &mut rng, size, groups, null_fraction))
            .collect();
        columns.extend(value_columns(&mut rng, size, null_fraction));
        let schema = schema.get_or_insert_with(|| {
            fields = columns
                .iter()
                .take(keys.len())
                .enumerate()
                .map(|(i, c)| Field::new(format!("key{i}"), c.data_type().clone(), true))
                .collect();
            fields.extend(value_fields());
            Arc::new(Schema::new(fields.clone()))
        });
        batches.push(RecordBatch::try_new(schema.clone(), columns).unwrap());
    }
    let schema = schema.unwrap();
    Case {
        schema,
        batches,
        group_by: (0..keys.len()).collect(),
        aggregates: aggregates(keys.len()),
    }
}

fn expected(case: &Case) -> Vec<RefRow> {
    let mut rows = reference::aggregate(&case.batches, &case.group_by, &case.aggregates).unwrap();
    sort_rows(&mut rows);
    rows
}

fn single_phase(case: &Case) -> Vec<RefRow> {
    let mut aggregator = HashAggregator::try_new(
        case.schema.clone(),
        case.group_by.clone(),
        case.aggregates.clone(),
    )
    .unwrap();
    for batch in &case.batches {
        aggregator.update(batch).unwrap();
    }
    let output = aggregator.evaluate(EmitTo::All).unwrap();
    let mut rows = reference::batch_rows(&output, case.group_by.len()).unwrap();
    sort_rows(&mut rows);
    rows
}

fn two_phase(case: &Case, partitions: usize, seed: u64) -> Vec<RefRow> {
    let mut rng = StdRng::seed_from_u64(seed);
    let new = || {
        HashAggregator::try_new(
            case.schema.clone(),
            case.group_by.clone(),
            case.aggregates.clone(),
        )
        .unwrap()
    };
    let mut partials: Vec<HashAggregator> = (0..partitions).map(|_| new()).collect();
    // Contiguous runs of batches per partition, merged in order, keep arrival order for
    // STRING_AGG; the run lengths are random.
    let mut cuts: Vec<usize> = (1..partitions)
        .map(|_| rng.gen_range(0..=case.batches.len()))
        .collect();
    cuts.sort_unstable();
    for (index, batch) in case.batches.iter().enumerate() {
        let partition = cuts.iter().filter(|&&cut| cut <= index).count();
        partials[partition].update(batch).unwrap();
    }
    let mut last = new();
    for partial in &mut partials {
        // Hand state over in pieces, as a bounded emit would.
        let first = partial.num_groups() / 2;
        last.merge(&partial.state(EmitTo::First(first)).unwrap())
            .unwrap();
        last.merge(&partial.state(EmitTo::All).unwrap()).unwrap();
    }
    let output = last.evaluate(EmitTo::All).unwrap();
    let mut rows = reference::batch_rows(&output, case.group_by.len()).unwrap();
    sort_rows(&mut rows);
    rows
}

fn check(case: &Case, label: &str) {
    let expected = expected(case);
    let actual = single_phase(case);
    if let Err(e) = compare_rows(&actual, &expected, FLOAT_TOLERANCE) {
        panic!("{label} single-phase: {e}");
    }
    for partitions in [2, 5] {
        let merged = two_phase(case, partitions, 99);
        if let Err(e) = compare_rows(&merged, &expected, FLOAT_TOLERANCE) {
            panic!("{label} two-phase with {partitions} partitions: {e}");
        }
    }
}

#[test]
fn every_key_type_matches_the_reference() {
    for (i, &key) in ALL_KEYS.iter().enumerate() {
        for (j, null_fraction) in [0.0, 0.1, 1.0].into_iter().enumerate() {
            for groups in [1, 17, 2000 / LARGE_CASE_DIVISOR as u64] {
                let seed = (i * 100 + j * 10) as u64 + groups;
                let case = make_case(
                    seed,
                    &[key],
                    3000 / DISTINCT_CASE_DIVISOR,
                    groups,
                    null_fraction,
                );
                check(
                    &case,
                    &format!("{key:?} nulls={null_fraction} groups={groups}"),
                );
            }
        }
    }
}

#[test]
fn multi_column_keys_match_the_reference() {
    let combinations: [&[KeyKind]; 7] = [
        &[KeyKind::Int64, KeyKind::Utf8],
        &[KeyKind::Utf8View, KeyKind::Float64],
        &[KeyKind::Boolean, KeyKind::Dictionary],
        &[KeyKind::Utf8, KeyKind::Utf8, KeyKind::Int32],
        &[
            KeyKind::Decimal,
            KeyKind::TimestampMs,
            KeyKind::Binary,
            KeyKind::UInt8,
        ],
        &[KeyKind::LargeUtf8, KeyKind::Date32],
        &[KeyKind::Float64, KeyKind::Boolean, KeyKind::Utf8],
    ];
    for (seed, keys) in combinations.iter().enumerate() {
        for (groups, null_fraction) in [(40, 0.1), (3, 0.0), (400, 0.5), (7, 1.0)] {
            let rows = 5000 / DISTINCT_CASE_DIVISOR;
            let case = make_case(seed as u64 + groups, keys, rows, groups, null_fraction);
            check(
                &case,
                &format!("{keys:?} groups={groups} nulls={null_fraction}"),
            );
        }
    }
}

#[test]
fn many_multi_column_groups_match_the_reference() {
    let rows = 100_000 / LARGE_CASE_DIVISOR;
    let case = make_case(12, &[KeyKind::Int64, KeyKind::Utf8], rows, 1_000, 0.01);
    check(
        &case,
        &format!("Int64 x Utf8 {rows} rows, about a million pairs"),
    );
}

#[test]
fn global_aggregate_matches_the_reference_including_no_rows() {
    for rows in [0, 1, 2500] {
        let mut case = make_case(rows as u64, &[], rows, 1, 0.1);
        case.group_by.clear();
        check(&case, &format!("global over {rows} rows"));
    }
    let case = make_case(3, &[], 0, 1, 0.1);
    let rows = single_phase(&case);
    assert_eq!(rows.len(), 1, "a global aggregate over no rows has one row");
}

/// Under `force-hash-collisions` every probe walks all groups, so the largest cases shrink to
/// stay linear enough to run (the collision paths are what that feature tests).
const LARGE_CASE_DIVISOR: usize = if cfg!(feature = "force-hash-collisions") {
    50
} else {
    1
};

/// COUNT(DISTINCT) keeps one hash table of (group, value) pairs, so under
/// `force-hash-collisions` each case costs the square of its distinct pairs.
const DISTINCT_CASE_DIVISOR: usize = if cfg!(feature = "force-hash-collisions") {
    5
} else {
    1
};

#[test]
fn many_groups_match_the_reference() {
    let rows = 200_000 / LARGE_CASE_DIVISOR;
    let case = make_case(7, &[KeyKind::Int64], rows, 1_000_000, 0.01);
    check(&case, &format!("Int64 {rows} rows, nearly all distinct"));
    let rows = 100_000 / LARGE_CASE_DIVISOR;
    let case = make_case(8, &[KeyKind::Utf8], rows, 1_000_000, 0.01);
    check(&case, &format!("Utf8 {rows} rows, nearly all distinct"));
}

#[test]
fn emitting_in_pieces_equals_emitting_all() {
    for keys in [
        &[KeyKind::Utf8][..],
        &[KeyKind::Utf8, KeyKind::Int64][..],
        &[KeyKind::Int32, KeyKind::Float64, KeyKind::Utf8View][..],
    ] {
        emitting_in_pieces(&make_case(11, keys, 4000, 300, 0.1));
    }
}

/// Emits `case`'s groups 37 at a time after all input and compares them with the reference.
fn emitting_in_pieces(case: &Case) {
    let expected = expected(case);
    let mut aggregator = HashAggregator::try_new(
        case.schema.clone(),
        case.group_by.clone(),
        case.aggregates.clone(),
    )
    .unwrap();
    for batch in &case.batches {
        aggregator.update(batch).unwrap();
    }
    let mut rows = Vec::new();
    while aggregator.num_groups() > 0 {
        let piece = aggregator.evaluate(EmitTo::First(37)).unwrap();
        assert!(piece.num_rows() <= 37);
        rows.extend(reference::batch_rows(&piece, case.group_by.len()).unwrap());
    }
    sort_rows(&mut rows);
    compare_rows(&rows, &expected, FLOAT_TOLERANCE).unwrap();
}

/// Every numeric value type through COUNT / SUM / AVG / MIN / MAX (which share one pass per
/// column and filter): a column of moderate values summed and averaged, and a column full of
/// the type's extremes (MIN, MAX, NaN, ±inf, ±0) for the extremes only.
#[test]
fn every_numeric_value_type_matches_the_reference() {
    let types = [
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::UInt8,
        DataType::UInt16,
        DataType::UInt32,
        DataType::UInt64,
        DataType::Float32,
        DataType::Float64,
        DataType::Decimal128(38, 3),
    ];
    for (seed, data_type) in types.iter().enumerate() {
        for null_fraction in [0.0, 0.2] {
            let mut rng = StdRng::seed_from_u64(seed as u64 * 31 + 7);
            let schema = Arc::new(Schema::new(vec![
                Field::new("k", DataType::Int64, true),
                Field::new("moderate", data_type.clone(), true),
                Field::new("extreme", data_type.clone(), true),
                Field::new("flag", DataType::Boolean, true),
            ]));
            let batches: Vec<RecordBatch> = [700, 0, 1, 1300, 999]
                .into_iter()
                .map(|rows| {
                    let keys: Int64Array = (0..rows)
                        .map(|_| {
                            // Mostly 40 busy groups, some groups of one or two rows.
                            let key = if rng.gen_bool(0.1) {
                                rng.gen_range(1000..2000_i64)
                            } else {
                                rng.gen_range(0..40_i64)
                            };
                            maybe(&mut rng, 0.05, key)
                        })
                        .collect();
                    let moderate = moderate_column(&mut rng, data_type, rows, null_fraction);
                    let extreme = extreme_column(&mut rng, data_type, rows, null_fraction);
                    let flags: BooleanArray = (0..rows)
                        .map(|_| {
                            let flag = rng.gen_bool(0.6);
                            maybe(&mut rng, 0.1, flag)
                        })
                        .collect();
                    let columns: Vec<ArrayRef> =
                        vec![Arc::new(keys), moderate, extreme, Arc::new(flags)];
                    RecordBatch::try_new(schema.clone(), columns).unwrap()
                })
                .collect();
            let aggregates = vec![
                AggregateExpr::new(F::CountStar, None, "rows"),
                AggregateExpr::new(F::Sum, Some(1), "sum"),
                AggregateExpr::new(F::Avg, Some(1), "avg"),
                AggregateExpr::new(F::Min, Some(1), "min"),
                AggregateExpr::new(F::Max, Some(1), "max"),
                AggregateExpr::new(F::Count, Some(1), "count"),
                AggregateExpr::new(F::Max, Some(2), "max_extreme"),
                AggregateExpr::new(F::Count, Some(2), "count_extreme"),
                AggregateExpr::new(F::Min, Some(2), "min_extreme"),
                AggregateExpr::new(F::Min, Some(2), "min_extreme_filtered").with_filter(3),
                AggregateExpr::new(F::CountStar, None, "rows_filtered").with_filter(3),
                AggregateExpr::new(F::Avg, Some(1), "avg_filtered").with_filter(3),
            ];
            let case = Case {
                schema,
                batches,
                group_by: vec![0],
                aggregates,
            };
            check(&case, &format!("{data_type} nulls={null_fraction}"));
        }
    }
}

/// Values whose sums fit every output type: within ±1000 (0..1000 unsigned), thousandths for
/// floats and decimals.
fn moderate_column(rng: &mut StdRng, data_type: &DataType, rows: usize, nulls: f64) -> ArrayRef {
    let signed = !matches!(
        data_type,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64
    );
    let low = if signed { -1000 } else { 0 };
    let whole: Int64Array = (0..rows)
        .map(|_| {
            let value = rng.gen_range(low..1000_i64);
            maybe(rng, nulls, value)
        })
        .collect();
    match data_type {
        DataType::Float32 | DataType::Float64 => {
            let thousandths: Float64Array = whole
                .iter()
                .map(|v| v.map(|v| v as f64 + f64::from(rng.gen_range(0..1000_u16)) / 1000.0))
                .collect();
            arrow::compute::cast(&thousandths, data_type).unwrap()
        }
        DataType::Decimal128(..) => Arc::new(
            whole
                .iter()
                .map(|v| v.map(|v| i128::from(v) * 1000 + rng.gen_range(0..1000_i128)))
                .collect::<Decimal128Array>()
                .with_data_type(data_type.clone()),
        ),
        _ => arrow::compute::cast(&whole, data_type).unwrap(),
    }
}

/// Values drawn mostly from the type's extremes.
fn extreme_column(rng: &mut StdRng, data_type: &DataType, rows: usize, nulls: f64) -> ArrayRef {
    macro_rules! integers {
        ($array:ty, $native:ty) => {
            Arc::new(
                (0..rows)
                    .map(|_| {
                        let value = match rng.gen_range(0..4) {
                            0 => <$native>::MIN,
                            1 => <$native>::MAX,
                            2 => 0,
                            _ => rng.gen::<$native>(),
                        };
                        maybe(rng, nulls, value)
                    })
                    .collect::<$array>(),
            )
        };
    }
    macro_rules! floats {
        ($array:ty, $native:ty) => {
            Arc::new(
                (0..rows)
                    .map(|_| {
                        let value = match rng.gen_range(0..7) {
                            0 => <$native>::NAN,
                            1 => <$native>::INFINITY,
                            2 => <$native>::NEG_INFINITY,
                            3 => -0.0,
                            4 => 0.0,
                            5 => <$native>::MIN_POSITIVE,
                            _ => rng.gen::<$native>() * <$native>::MAX,
                        };
                        maybe(rng, nulls, value)
                    })
                    .collect::<$array>(),
            )
        };
    }
    let decimal_max = 10_i128.pow(38) - 1;
    match data_type {
        DataType::Int8 => integers!(arrow::array::Int8Array, i8),
        DataType::Int16 => integers!(arrow::array::Int16Array, i16),
        DataType::Int32 => integers!(Int32Array, i32),
        DataType::Int64 => integers!(Int64Array, i64),
        DataType::UInt8 => integers!(UInt8Array, u8),
        DataType::UInt16 => integers!(arrow::array::UInt16Array, u16),
        DataType::UInt32 => integers!(arrow::array::UInt32Array, u32),
        DataType::UInt64 => integers!(arrow::array::UInt64Array, u64),
        DataType::Float32 => floats!(arrow::array::Float32Array, f32),
        DataType::Float64 => floats!(Float64Array, f64),
        DataType::Decimal128(..) => Arc::new(
            (0..rows)
                .map(|_| {
                    let value = match rng.gen_range(0..4) {
                        0 => -decimal_max,
                        1 => decimal_max,
                        2 => 0,
                        _ => rng.gen_range(-decimal_max..=decimal_max),
                    };
                    maybe(rng, nulls, value)
                })
                .collect::<Decimal128Array>()
                .with_data_type(data_type.clone()),
        ),
        other => panic!("no extreme values for {other}"),
    }
}

#[test]
fn integer_sum_overflow_is_an_error_in_both() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("v", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 1, 2])),
            Arc::new(Int64Array::from(vec![i64::MAX, i64::MAX, 5])),
        ],
    )
    .unwrap();
    let aggregates = vec![AggregateExpr::new(F::Sum, Some(1), "s")];
    let mut aggregator = HashAggregator::try_new(schema, vec![0], aggregates.clone()).unwrap();
    aggregator.update(&batch).unwrap();
    let error = aggregator.evaluate(EmitTo::All).unwrap_err();
    assert!(error.to_string().contains("overflow"), "{error}");
    assert!(reference::aggregate(&[batch], &[0], &aggregates).is_err());
}

#[test]
fn memory_limit_is_a_clear_error() {
    let case = make_case(5, &[KeyKind::Utf8], 50_000, 1_000_000, 0.0);
    let mut aggregator = HashAggregator::try_new(
        case.schema.clone(),
        case.group_by.clone(),
        case.aggregates.clone(),
    )
    .unwrap()
    .with_memory_limit(64 * 1024);
    let error = case
        .batches
        .iter()
        .find_map(|b| aggregator.update(b).err())
        .expect("the limit is reached");
    assert!(error.to_string().contains("over its limit"), "{error}");
}

#[test]
fn size_tracks_allocated_state() {
    let case = make_case(
        6,
        &[KeyKind::Int64],
        100_000 / LARGE_CASE_DIVISOR,
        1_000_000,
        0.0,
    );
    let mut aggregator = HashAggregator::try_new(
        case.schema.clone(),
        case.group_by.clone(),
        case.aggregates.clone(),
    )
    .unwrap();
    let before = aggregator.size();
    for batch in &case.batches {
        aggregator.update(batch).unwrap();
    }
    let groups = aggregator.num_groups();
    // At least the keys, one i64 per COUNT and the 16-byte sums must be accounted for.
    assert!(
        aggregator.size() > before + groups * (8 + 8 + 16),
        "size {} for {groups} groups",
        aggregator.size()
    );
    let _ = TimeUnit::Millisecond;
}

#[test]
#[cfg_attr(
    feature = "force-hash-collisions",
    ignore = "every hash is 0 under force-hash-collisions, so HyperLogLog cannot estimate"
)]
fn approx_count_distinct_is_within_its_error_bound_and_merges_exactly() {
    let case = make_case(21, &[KeyKind::Utf8], 60_000, 20, 0.05);
    let approx = vec![AggregateExpr::new(
        F::ApproxCountDistinct,
        Some(1),
        "approx",
    )];
    let exact = vec![AggregateExpr::new(F::CountDistinct, Some(1), "exact")];
    let run = |aggregates: &Vec<AggregateExpr>| {
        let case = Case {
            schema: case.schema.clone(),
            batches: case.batches.clone(),
            group_by: case.group_by.clone(),
            aggregates: aggregates.clone(),
        };
        (single_phase(&case), two_phase(&case, 3, 5))
    };
    let (approx_single, approx_merged) = run(&approx);
    let (exact_single, _) = run(&exact);
    assert_eq!(
        approx_single, approx_merged,
        "HLL merge must equal one sketch"
    );
    for (a, e) in approx_single.iter().zip(&exact_single) {
        let (RefValue::Int(estimate), RefValue::Int(truth)) = (&a.1[0], &e.1[0]) else {
            panic!("counts expected");
        };
        let error = (*estimate - *truth).abs() as f64 / (*truth).max(1) as f64;
        assert!(
            error <= 3.0 * quiver_kernels::more_accumulators::HLL_STANDARD_ERROR,
            "{estimate} vs {truth}"
        );
    }
}
