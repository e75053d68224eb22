//! Ingest throughput: row-shaped trading records → Arrow, and 1BRC text → columns.
#![allow(missing_docs)] // criterion_group! generates undocumented functions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Bench set-up fails loudly by design.

use arrow::buffer::Buffer;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use quiver_cli::generate;
use quiver_ingest::{onebrc, IngestConfig, RecordBatcher};

fn rows_to_arrow(c: &mut Criterion) {
    const ROWS: usize = 1_000_000;
    let records = generate::trades(ROWS, 100, 42);
    let mut group = c.benchmark_group("ingest/rows_to_arrow");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function(BenchmarkId::new("7_fields_1M_rows_batch_8192", ROWS), |b| {
        b.iter(|| {
            let mut batcher =
                RecordBatcher::with_schema(generate::trade_schema(), IngestConfig::default())
                    .unwrap();
            let mut rows = 0;
            for record in &records {
                for batch in batcher.push(record).unwrap() {
                    rows += batch.num_rows();
                }
            }
            for batch in batcher.finish().unwrap() {
                rows += batch.num_rows();
            }
            assert_eq!(rows, ROWS);
        })
    });
    group.finish();
}

fn onebrc_parse(c: &mut Criterion) {
    const ROWS: u64 = 10_000_000;
    let mut text = Vec::new();
    generate::onebrc_lines(ROWS, generate::STATIONS.len(), 42, &mut text);
    let input = Buffer::from(text);
    let mut group = c.benchmark_group("ingest/1brc_text_to_columns");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(input.len() as u64));
    let config = IngestConfig::default();
    group.bench_function(BenchmarkId::new("1_chunk_bytes", ROWS), |b| {
        b.iter(|| {
            let out = onebrc::parse_buffer(&input, &config, 1).unwrap();
            assert_eq!(out.accepted_rows, ROWS);
        })
    });
    group.throughput(Throughput::Elements(ROWS));
    group.bench_function(BenchmarkId::new("1_chunk_rows", ROWS), |b| {
        b.iter(|| {
            let parse = onebrc::parse_chunk(input.as_slice(), |_, _, t| {
                std::hint::black_box(t);
            });
            assert_eq!(parse.lines, ROWS);
        })
    });
    group.finish();
}

criterion_group!(benches, rows_to_arrow, onebrc_parse);
criterion_main!(benches);
