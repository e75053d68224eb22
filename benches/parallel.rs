//! Independent inputs in parallel: the seed GROUP BY over CSV text, one input on one worker
//! against two inputs of the same size on two rayon workers (each parsed and partially
//! aggregated with state it owns, partial states merged at the end). The ratio of the two
//! throughputs is the scaling; the target is ≥ 1.8× on 2 cores.
#![allow(missing_docs)] // criterion_group! generates undocumented functions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Bench set-up fails loudly by design.

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use quiver_cli::generate::SplitMix64;
use quiver_exec::query::run_partitioned;
use quiver_ingest::text::{read_csv, CsvOptions};
use quiver_ingest::IngestConfig;
use rayon::prelude::*;
use std::sync::Arc;

const ROWS_PER_INPUT: usize = 1_000_000;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("category", DataType::Utf8, false),
        Field::new("amount", DataType::Decimal128(18, 2), false),
    ]))
}

fn csv_text(seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut text = b"category,amount\n".to_vec();
    for _ in 0..ROWS_PER_INPUT {
        let cents = 100 + rng.below(1_000_000);
        text.extend_from_slice(
            format!(
                "category_{},{}.{:02}\n",
                rng.below(10),
                cents / 100,
                cents % 100
            )
            .as_bytes(),
        );
    }
    text
}

fn run(inputs: &[Vec<u8>], plan: &quiver_sql::Plan) -> usize {
    let partitions: Vec<Vec<RecordBatch>> = inputs
        .par_iter()
        .map(|text| {
            read_csv(
                text,
                Some(schema()),
                CsvOptions::default(),
                &IngestConfig::default(),
            )
            .unwrap()
            .batches
        })
        .collect();
    run_partitioned(plan, &partitions)
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

fn parallel_inputs(c: &mut Criterion) {
    let inputs = [csv_text(1), csv_text(2)];
    let plan = quiver_sql::plan(
        "SELECT category, COUNT(*), SUM(amount), AVG(amount), MIN(amount), MAX(amount) \
         FROM t GROUP BY category",
        &[("t".to_string(), schema())],
    )
    .unwrap();
    let mut group = c.benchmark_group("independent_inputs");
    group.sample_size(10);
    for count in [1, 2] {
        group.throughput(Throughput::Elements((ROWS_PER_INPUT * count) as u64));
        group.bench_with_input(
            BenchmarkId::new("csv_group_by_files", count),
            &count,
            |b, &count| b.iter(|| assert_eq!(run(&inputs[..count], &plan), 10)),
        );
    }
    group.finish();
}

criterion_group!(benches, parallel_inputs);
criterion_main!(benches);
