//! `quiver demo`: generated trading records through ingest and the aggregation kernels.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::compute::kernels::numeric::mul;
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMillisecondType};
use quiver_core::{QuiverError, Result};
use quiver_exec::aggregate::{aggregate_partitions, AggregatePlan};
use quiver_ingest::{IngestConfig, RecordBatcher};
use quiver_kernels::{AggregateExpr, AggregateFunction as F, EmitTo, HashAggregator};

use quiver_cli::generate;

fn rate(rows: usize, elapsed: Duration) -> String {
    format!(
        "{:>8.2} M records/s",
        rows as f64 / elapsed.as_secs_f64() / 1e6
    )
}

fn report(stage: &str, rows: usize, elapsed: Duration) {
    println!(
        "  {stage:<44} {:>9.1} ms  {}",
        elapsed.as_secs_f64() * 1e3,
        rate(rows, elapsed)
    );
}

/// Seed query 1, run through the SQL front end.
const GROUP_BY_SQL: &str = "SELECT category, COUNT(*) AS count, SUM(amount) AS sum_amount, \
     AVG(amount) AS avg_amount, MIN(amount) AS min_amount, MAX(amount) AS max_amount \
     FROM test_stream GROUP BY category ORDER BY category";

/// Runs the demo over `rows` generated records.
pub fn run(rows: usize, traders: u64, quiet: bool) -> Result<()> {
    println!(
        "Quiver demo: {rows} generated trading records, {traders} traders, 1 thread unless noted\n"
    );
    let bar = crate::progress_bar(rows as u64, "generating records", quiet);
    let started = Instant::now();
    let records = generate::trades(rows, traders, 42);
    bar.finish_and_clear();
    let generate_time = started.elapsed();

    // Stage 1: row-shaped records → Arrow batches.
    let started = Instant::now();
    let mut batcher =
        RecordBatcher::with_schema(generate::trade_schema(), IngestConfig::default())?;
    let mut batches = Vec::new();
    for record in &records {
        batches.extend(batcher.push(record)?);
    }
    batches.extend(batcher.finish()?);
    let ingest_time = started.elapsed();
    if batcher.rejected_rows() > 0 {
        return Err(QuiverError::Internal(format!(
            "{} generated records rejected",
            batcher.rejected_rows()
        )));
    }

    // Query 1, the seed GROUP BY:
    // SELECT category, COUNT(*), SUM(amount), AVG(amount), MIN(amount), MAX(amount)
    // FROM test_stream GROUP BY category
    let schema = generate::trade_schema();
    let amount = 6;
    let group_by_aggregates = vec![
        AggregateExpr::new(F::CountStar, None, "count"),
        AggregateExpr::new(F::Sum, Some(amount), "sum_amount"),
        AggregateExpr::new(F::Avg, Some(amount), "avg_amount"),
        AggregateExpr::new(F::Min, Some(amount), "min_amount"),
        AggregateExpr::new(F::Max, Some(amount), "max_amount"),
    ];
    let started = Instant::now();
    let mut query = quiver::Engine::new()
        .register("test_stream", schema.clone())?
        .sql(GROUP_BY_SQL)?;
    for batch in &batches {
        query.push(batch)?;
    }
    let output = query.finish()?;
    let group_by_result = concat_batches(query.schema(), &output)?;
    let group_by_time = started.elapsed();

    let plan = AggregatePlan {
        input_schema: schema.clone(),
        group_by: vec![5],
        aggregates: group_by_aggregates,
        memory_limit_bytes: None,
    };
    let (left, right) = batches.split_at(batches.len() / 2);
    let partitions = vec![left.to_vec(), right.to_vec()];
    let started = Instant::now();
    let parallel_result = aggregate_partitions(&plan, &partitions)?;
    let parallel_time = started.elapsed();
    if parallel_result.num_rows() != group_by_result.num_rows() {
        return Err(QuiverError::Internal(
            "parallel and single-partition results differ".into(),
        ));
    }

    // Query 2, the tumbling window (as a batch GROUP BY over the computed window start):
    // SELECT trader_id, symbol, COUNT(*), AVG(price), SUM(quantity), SUM(price * quantity)
    // FROM market_data GROUP BY trader_id, symbol WINDOW TUMBLING (trade_time, INTERVAL '1' MINUTE)
    let started = Instant::now();
    let window_schema = Arc::new(Schema::new(vec![
        Field::new("trader_id", DataType::Utf8, false),
        Field::new("symbol", DataType::Utf8, false),
        Field::new(
            "window_start",
            DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
            false,
        ),
        Field::new("price", DataType::Float64, false),
        Field::new("quantity", DataType::Int64, false),
        Field::new("value", DataType::Float64, false),
    ]));
    let mut window_aggregator = HashAggregator::try_new(
        window_schema.clone(),
        vec![0, 1, 2],
        vec![
            AggregateExpr::new(F::CountStar, None, "trade_count"),
            AggregateExpr::new(F::Avg, Some(3), "avg_price"),
            AggregateExpr::new(F::Sum, Some(4), "total_quantity"),
            AggregateExpr::new(F::Sum, Some(5), "total_value"),
        ],
    )?;
    for batch in &batches {
        let times = batch.column(4).as_primitive::<TimestampMillisecondType>();
        let window_start: ArrayRef = Arc::new(
            times
                .unary::<_, TimestampMillisecondType>(|t| t - t.rem_euclid(60_000))
                .with_timezone("+00:00"),
        );
        let quantity_f64 = cast(batch.column(3), &DataType::Float64)?;
        let value = mul(batch.column(2), &quantity_f64)?;
        let window_batch = RecordBatch::try_new(
            window_schema.clone(),
            vec![
                batch.column(0).clone(),
                batch.column(1).clone(),
                window_start,
                batch.column(2).clone(),
                batch.column(3).clone(),
                value,
            ],
        )?;
        window_aggregator.update(&window_batch)?;
    }
    let window_result = window_aggregator.evaluate(EmitTo::All)?;
    let window_time = started.elapsed();

    println!("{GROUP_BY_SQL}");
    print_batch(&group_by_result, 10)?;
    println!(
        "\nTUMBLING 1 MINUTE by trader_id, symbol (seed query 2), first 5 of {} rows:",
        window_result.num_rows()
    );
    print_batch(&window_result, 5)?;
    let total_count: i64 = group_by_result
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .map_or(0, |c| c.values().iter().sum());
    println!("\nEvery record accounted for: {total_count} counted of {rows} generated.\n");
    println!("Timings (wall clock, this machine):");
    report(
        "generate records (not part of the engine)",
        rows,
        generate_time,
    );
    report("ingest: records -> Arrow batches", rows, ingest_time);
    report(
        "query 1 (SQL): GROUP BY category, 5 aggregates",
        rows,
        group_by_time,
    );
    report(
        &format!(
            "query 1 on 2 partitions in parallel ({} threads)",
            rayon::current_num_threads()
        ),
        rows,
        parallel_time,
    );
    report(
        "query 2: 1-minute windows x trader x symbol",
        rows,
        window_time,
    );
    let pipeline = ingest_time + group_by_time;
    report("ingest + query 1 end to end", rows, pipeline);
    // Freed last: releasing millions of small allocations is allocator work, not engine work.
    drop(records);
    println!("\nQuery 1 runs through the SQL front end; the window query is planned by hand and");
    println!("runs as a batch GROUP BY over the computed window start (no WINDOW clause yet).");
    Ok(())
}

fn print_batch(batch: &RecordBatch, rows: usize) -> Result<()> {
    let shown = batch.slice(0, rows.min(batch.num_rows()));
    let shown = concat_batches(&batch.schema(), [&shown])?;
    let table = arrow::util::pretty::pretty_format_batches(&[shown])?;
    println!("{table}");
    Ok(())
}
