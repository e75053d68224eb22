//! The SQL path against calling the kernels directly on the same data, single thread, data
//! already in Arrow: what parsing, planning, projection and output assembly cost per query.
//!
//! Each pair runs one query through `Engine::sql` (`push` every batch, `finish`) and through a
//! hand-built `HashAggregator` (plus, for the expression query, `Expr::evaluate` of
//! `price * quantity` per batch, as the plan does). Outputs are compared before timing.
#![allow(missing_docs)] // criterion_group! generates undocumented functions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Bench set-up fails loudly by design.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quiver::Engine;
use quiver_cli::generate;
use quiver_kernels::expr::{BinaryOp, Expr};
use quiver_kernels::{reference, AggregateExpr, AggregateFunction as F, EmitTo, HashAggregator};

const ROWS: usize = 2_000_000;

fn trade_batches(rows: usize) -> Vec<RecordBatch> {
    generate::trade_batches(rows, 100, 11).unwrap()
}

fn through_sql(engine: &Engine, sql: &str, batches: &[RecordBatch]) -> Vec<RecordBatch> {
    let mut query = engine.sql(sql).unwrap();
    let mut out = Vec::new();
    for batch in batches {
        out.extend(query.push(batch).unwrap());
    }
    out.extend(query.finish().unwrap());
    out
}

/// The kernels alone: group by `group_by`, aggregate; `extra` computes appended input columns.
fn through_kernels(
    batches: &[RecordBatch],
    extra: &[Expr],
    group_by: Vec<usize>,
    aggregates: &[AggregateExpr],
) -> RecordBatch {
    let base = batches[0].schema();
    let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
    for (i, e) in extra.iter().enumerate() {
        fields.push(Field::new(
            format!("e{i}"),
            e.data_type(&base).unwrap(),
            true,
        ));
    }
    let schema = Arc::new(Schema::new(fields));
    let mut aggregator =
        HashAggregator::try_new(schema.clone(), group_by, aggregates.to_vec()).unwrap();
    for batch in batches {
        if extra.is_empty() {
            aggregator.update(batch).unwrap();
        } else {
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            columns.extend(extra.iter().map(|e| e.evaluate(batch).unwrap()));
            aggregator
                .update(&RecordBatch::try_new(schema.clone(), columns).unwrap())
                .unwrap();
        }
    }
    aggregator.evaluate(EmitTo::All).unwrap()
}

fn sorted_rows(batches: &[RecordBatch], keys: usize) -> Vec<reference::RefRow> {
    let mut rows: Vec<_> = batches
        .iter()
        .flat_map(|b| reference::batch_rows(b, keys).unwrap())
        .collect();
    reference::sort_rows(&mut rows);
    rows
}

fn sql_against_kernels(c: &mut Criterion) {
    let batches = trade_batches(ROWS);
    let engine = Engine::new()
        .register("trades", generate::trade_schema())
        .unwrap();
    // Column indices of generate::trade_schema().
    let (trader_id, symbol, price, quantity, category, amount) = (0, 1, 2, 3, 5, 6);
    let seed_sql = "SELECT category, COUNT(*) AS n, SUM(amount) AS total, AVG(amount) AS mean, \
                    MIN(amount) AS lo, MAX(amount) AS hi FROM trades GROUP BY category";
    let seed_aggregates = vec![
        AggregateExpr::new(F::CountStar, None, "n"),
        AggregateExpr::new(F::Sum, Some(amount), "total"),
        AggregateExpr::new(F::Avg, Some(amount), "mean"),
        AggregateExpr::new(F::Min, Some(amount), "lo"),
        AggregateExpr::new(F::Max, Some(amount), "hi"),
    ];
    let value_sql = "SELECT trader_id, symbol, COUNT(*) AS n, SUM(quantity) AS q, \
                     SUM(price * quantity) AS value FROM trades GROUP BY trader_id, symbol";
    let value_expr = Expr::Binary(
        Box::new(Expr::Column(price)),
        BinaryOp::Multiply,
        Box::new(Expr::Column(quantity)),
    );
    let value_aggregates = vec![
        AggregateExpr::new(F::CountStar, None, "n"),
        AggregateExpr::new(F::Sum, Some(quantity), "q"),
        AggregateExpr::new(F::Sum, Some(7), "value"),
    ];
    let value_exprs = [value_expr];

    // Same answers both ways before anything is timed.
    let sql_rows = sorted_rows(&through_sql(&engine, seed_sql, &batches), 1);
    let kernel_rows = sorted_rows(
        &[through_kernels(
            &batches,
            &[],
            vec![category],
            &seed_aggregates,
        )],
        1,
    );
    reference::compare_rows(&sql_rows, &kernel_rows, 0.0).unwrap();
    let sql_rows = sorted_rows(&through_sql(&engine, value_sql, &batches), 2);
    let kernel_rows = sorted_rows(
        &[through_kernels(
            &batches,
            &value_exprs,
            vec![trader_id, symbol],
            &value_aggregates,
        )],
        2,
    );
    reference::compare_rows(&sql_rows, &kernel_rows, 0.0).unwrap();

    let mut group = c.benchmark_group("sql_e2e");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("seed_group_by/kernels", |b| {
        b.iter(|| through_kernels(&batches, &[], vec![category], &seed_aggregates))
    });
    group.bench_function("seed_group_by/sql", |b| {
        b.iter(|| through_sql(&engine, seed_sql, &batches))
    });
    group.bench_function("value_by_trader_symbol/kernels", |b| {
        b.iter(|| {
            through_kernels(
                &batches,
                &value_exprs,
                vec![trader_id, symbol],
                &value_aggregates,
            )
        })
    });
    group.bench_function("value_by_trader_symbol/sql", |b| {
        b.iter(|| through_sql(&engine, value_sql, &batches))
    });
    group.finish();
}

criterion_group!(benches, sql_against_kernels);
criterion_main!(benches);
