//! Hash aggregation throughput, single thread, data already in Arrow, with a row-at-a-time
//! baseline (the reference implementation) measured in the same run.
#![allow(missing_docs)] // criterion_group! generates undocumented functions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Bench set-up fails loudly by design.

use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use quiver_cli::generate::SplitMix64;
use quiver_kernels::{reference, AggregateExpr, AggregateFunction as F, EmitTo, HashAggregator};

const BATCH_ROWS: usize = 8192;

/// The seed query's data: `category` (10 distinct strings), `amount` as f64 and as decimal(18,2).
fn seed_batches(rows: usize) -> Vec<RecordBatch> {
    let categories: Vec<String> = (0..10).map(|i| format!("category_{i}")).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("category", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("amount_decimal", DataType::Decimal128(18, 2), false),
    ]));
    let mut rng = SplitMix64::new(1);
    (0..rows.div_ceil(BATCH_ROWS))
        .map(|b| {
            let n = BATCH_ROWS.min(rows - b * BATCH_ROWS);
            let keys: StringArray = (0..n)
                .map(|_| Some(categories[rng.below(10) as usize].as_str()))
                .collect();
            let cents: Vec<i64> = (0..n).map(|_| 100 + rng.below(1_000_000) as i64).collect();
            let amount: Float64Array = cents.iter().map(|&c| c as f64 / 100.0).collect();
            let decimal = Decimal128Array::from_iter_values(cents.iter().map(|&c| i128::from(c)))
                .with_precision_and_scale(18, 2)
                .unwrap();
            let columns: Vec<ArrayRef> = vec![Arc::new(keys), Arc::new(amount), Arc::new(decimal)];
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        })
        .collect()
}

/// `distinct` i64 keys drawn uniformly, and an i64 value.
fn int_key_batches(rows: usize, distinct: u64) -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Int64, false),
        Field::new("value", DataType::Int64, false),
    ]));
    let mut rng = SplitMix64::new(2);
    (0..rows.div_ceil(BATCH_ROWS))
        .map(|b| {
            let n = BATCH_ROWS.min(rows - b * BATCH_ROWS);
            let keys: Int64Array = (0..n)
                .map(|_| Some(rng.below(distinct) as i64 * 7919))
                .collect();
            let values: Int64Array = (0..n).map(|_| Some(rng.below(1000) as i64)).collect();
            RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(values)]).unwrap()
        })
        .collect()
}

fn run(batches: &[RecordBatch], group_by: Vec<usize>, aggregates: &[AggregateExpr]) -> RecordBatch {
    let mut aggregator =
        HashAggregator::try_new(batches[0].schema(), group_by, aggregates.to_vec()).unwrap();
    for batch in batches {
        aggregator.update(batch).unwrap();
    }
    aggregator.evaluate(EmitTo::All).unwrap()
}

fn seed_query(c: &mut Criterion) {
    const ROWS: usize = 10_000_000;
    let batches = seed_batches(ROWS);
    let aggregates = |amount: usize| {
        vec![
            AggregateExpr::new(F::CountStar, None, "count"),
            AggregateExpr::new(F::Sum, Some(amount), "sum"),
            AggregateExpr::new(F::Avg, Some(amount), "avg"),
            AggregateExpr::new(F::Min, Some(amount), "min"),
            AggregateExpr::new(F::Max, Some(amount), "max"),
        ]
    };
    // Output checked once against the row-at-a-time reference before timing.
    let check = &batches[..20];
    let mut expected = reference::aggregate(check, &[0], &aggregates(2)).unwrap();
    let mut actual = reference::batch_rows(&run(check, vec![0], &aggregates(2)), 1).unwrap();
    reference::sort_rows(&mut expected);
    reference::sort_rows(&mut actual);
    reference::compare_rows(&actual, &expected, 1e-9).unwrap();

    let mut group = c.benchmark_group("aggregate/seed_group_by_10_string_keys");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function(BenchmarkId::new("f64_amount", ROWS), |b| {
        b.iter(|| assert_eq!(run(&batches, vec![0], &aggregates(1)).num_rows(), 10))
    });
    group.bench_function(BenchmarkId::new("decimal_amount", ROWS), |b| {
        b.iter(|| assert_eq!(run(&batches, vec![0], &aggregates(2)).num_rows(), 10))
    });
    // Baseline: the same query row at a time (one key lookup and one match per value).
    let baseline_rows = 500_000;
    let baseline = &batches[..baseline_rows / BATCH_ROWS];
    let baseline_rows = baseline.iter().map(|b| b.num_rows()).sum::<usize>();
    group.throughput(Throughput::Elements(baseline_rows as u64));
    group.bench_function(
        BenchmarkId::new("row_at_a_time_baseline_decimal", baseline_rows),
        |b| {
            b.iter(|| {
                assert_eq!(
                    reference::aggregate(baseline, &[0], &aggregates(2))
                        .unwrap()
                        .len(),
                    10
                )
            })
        },
    );
    group.finish();
}

fn many_int_keys(c: &mut Criterion) {
    const ROWS: usize = 10_000_000;
    let batches = int_key_batches(ROWS, 1_000_000);
    let aggregates = vec![
        AggregateExpr::new(F::Sum, Some(1), "sum"),
        AggregateExpr::new(F::CountStar, None, "count"),
    ];
    let mut group = c.benchmark_group("aggregate/1M_distinct_i64_keys");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function(BenchmarkId::new("sum_count", ROWS), |b| {
        b.iter(|| assert!(run(&batches, vec![0], &aggregates).num_rows() > 990_000))
    });
    group.finish();
}

criterion_group!(benches, seed_query, many_int_keys);
criterion_main!(benches);
