//! The 1BRC pipeline (parse + aggregate) on generated measurements, 1 and 2 threads.
#![allow(missing_docs)] // criterion_group! generates undocumented functions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Bench set-up fails loudly by design.

use arrow::buffer::Buffer;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use quiver_cli::generate;

fn onebrc(c: &mut Criterion) {
    const ROWS: u64 = 20_000_000;
    let mut text = Vec::new();
    generate::onebrc_lines(ROWS, generate::STATIONS.len(), 42, &mut text);
    let input = Buffer::from(text);
    let mut group = c.benchmark_group("onebrc/parse_and_aggregate");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS));
    for threads in [1, 2] {
        group.bench_function(BenchmarkId::new("threads", threads), |b| {
            b.iter(|| {
                let run = quiver_exec::onebrc::run(&input, threads, "bench").unwrap();
                assert_eq!(run.lines, ROWS);
                assert!(run.dead_letters.is_empty());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, onebrc);
criterion_main!(benches);
