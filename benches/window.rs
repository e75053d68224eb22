//! Windowed aggregation throughput through the SQL engine, single thread, data already in
//! Arrow: the seed tumbling-window query (trader_id × symbol, 1-minute windows) in EMIT FINAL and
//! EMIT CHANGES modes, hopping and session windows, against the same GROUP BY without a window
//! and the naive row-keeping reference, measured in the same run.
#![allow(missing_docs)] // criterion_group! generates undocumented functions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Bench set-up fails loudly by design.

use arrow::array::RecordBatch;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quiver::{Engine, StreamOptions};
use quiver_cli::generate;
use quiver_exec::window::{EmitMode, LatePolicy, WindowOptions};
use quiver_exec::window_reference::{window_aggregate, StreamEvent};
use quiver_kernels::window::WindowSpec;
use quiver_kernels::{AggregateExpr, AggregateFunction as F};

const ROWS: usize = 1_000_000;
const REFERENCE_ROWS: usize = 50_000;

fn trade_batches(rows: usize) -> Vec<RecordBatch> {
    generate::trade_batches(rows, 100, 7).unwrap()
}

const AGGREGATES: &str = "COUNT(*) AS trade_count, AVG(price) AS avg_price, \
     SUM(quantity) AS total_quantity, SUM(price * quantity) AS total_value";

fn run(engine: &Engine, sql: &str, batches: &[RecordBatch]) -> usize {
    let mut query = engine.sql(sql).unwrap();
    let mut rows = 0;
    for batch in batches {
        rows += query
            .push(batch)
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>();
    }
    rows + query
        .finish()
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum::<usize>()
}

fn windows(c: &mut Criterion) {
    let batches = trade_batches(ROWS);
    let engine = Engine::new()
        .register("market_data", generate::trade_schema())
        .unwrap()
        .with_stream_options(StreamOptions {
            max_out_of_orderness_ms: 1_000,
            ..StreamOptions::default()
        });
    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    let cases = [
        ("group_by_no_window", String::new()),
        (
            "tumbling_1m_final",
            "WINDOW TUMBLING(trade_time, INTERVAL '1' MINUTE)".to_string(),
        ),
        (
            "tumbling_1m_changes",
            "WINDOW TUMBLING(trade_time, INTERVAL '1' MINUTE) EMIT CHANGES".to_string(),
        ),
        (
            "hopping_5m_1m_final",
            "WINDOW SLIDING(trade_time, INTERVAL '5' MINUTE, INTERVAL '1' MINUTE)".to_string(),
        ),
        (
            "session_2s_final",
            "WINDOW SESSION(trade_time, INTERVAL '2' SECOND)".to_string(),
        ),
    ];
    for (name, window) in &cases {
        let sql = format!(
            "SELECT trader_id, symbol, {AGGREGATES} FROM market_data \
             GROUP BY trader_id, symbol {window}"
        );
        group.bench_function(*name, |b| b.iter(|| run(&engine, &sql, &batches)));
    }
    group.finish();

    // The naive reference keeps every row and aggregates each window from scratch.
    let reference_batches = trade_batches(REFERENCE_ROWS);
    let schema = generate::trade_schema();
    let events: Vec<StreamEvent> = reference_batches
        .iter()
        .map(|b| StreamEvent::Rows(b.clone(), b.column(4).clone()))
        .collect();
    let options = WindowOptions {
        spec: WindowSpec::Tumbling {
            size_ms: 60_000,
            offset_ms: 0,
        },
        max_out_of_orderness_ms: 1_000,
        allowed_lateness_ms: 0,
        late_policy: LatePolicy::DeadLetter,
        emit: EmitMode::Final,
    };
    let aggregates = vec![
        AggregateExpr::new(F::CountStar, None, "trade_count"),
        AggregateExpr::new(F::Avg, Some(2), "avg_price"),
        AggregateExpr::new(F::Sum, Some(3), "total_quantity"),
    ];
    let mut group = c.benchmark_group("window_reference");
    group.throughput(Throughput::Elements(REFERENCE_ROWS as u64));
    group.sample_size(10);
    group.bench_function("tumbling_1m_row_at_a_time", |b| {
        b.iter(|| window_aggregate(&options, &schema, 2, &aggregates, &events).unwrap())
    });
    group.finish();
}

criterion_group!(benches, windows);
criterion_main!(benches);
