//! Hash aggregation throughput, single thread, data already in Arrow, with a row-at-a-time
//! baseline (the reference implementation) measured in the same run; then the same queries on
//! the same data (written as Arrow IPC files) through DuckDB and Polars, one thread each, when
//! `python3` has them (`pip install duckdb polars pyarrow`), with the ratios printed as a table
//! (`QUIVER_BENCH_PEERS=0` skips them, e.g. when profiling one bench).
#![allow(missing_docs)] // criterion_group! generates undocumented functions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Bench set-up fails loudly by design.

use std::sync::Arc;

use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow::array::{
    ArrayRef, Decimal128Array, Float64Array, Int16Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use quiver_cli::generate::{self, SplitMix64};
use quiver_kernels::group_values::{CompositeGroupValues, GroupValues, RowGroupValues};
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

/// 1BRC-shaped data: `station` (the official 413 names, or `stations` synthetic names of 3 to
/// 26 bytes), temperature in integer tenths, normal around each station's mean with spread 10.
fn onebrc_batches(rows: usize, stations: usize) -> Vec<RecordBatch> {
    let table: Vec<(String, f64)> = if stations <= generate::STATIONS.len() {
        generate::STATIONS[..stations]
            .iter()
            .map(|(name, mean)| (name.to_string(), *mean))
            .collect()
    } else {
        let mut rng = SplitMix64::new(4);
        (0..stations)
            .map(|i| {
                let pad = "x".repeat(rng.below(20) as usize);
                (format!("st{i}{pad}"), rng.below(600) as f64 / 10.0 - 20.0)
            })
            .collect()
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("station", DataType::Utf8, false),
        Field::new("tenths", DataType::Int16, false),
    ]));
    let mut rng = SplitMix64::new(3);
    (0..rows.div_ceil(BATCH_ROWS))
        .map(|b| {
            let n = BATCH_ROWS.min(rows - b * BATCH_ROWS);
            let mut names = Vec::with_capacity(n);
            let mut tenths = Vec::with_capacity(n);
            for _ in 0..n {
                let (name, mean) = &table[rng.below(table.len() as u64) as usize];
                names.push(name.as_str());
                tenths.push(
                    ((mean + rng.normal() * 10.0) * 10.0)
                        .round()
                        .clamp(-999.0, 999.0) as i16,
                );
            }
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(names)),
                Arc::new(Int16Array::from(tenths)),
            ];
            RecordBatch::try_new(schema.clone(), columns).unwrap()
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

fn onebrc_shape(c: &mut Criterion) {
    const ROWS: usize = 10_000_000;
    let aggregates = onebrc_aggregates();
    let mut group = c.benchmark_group("aggregate/1brc_shape");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS as u64));
    for stations in [413, 10_000] {
        let batches = onebrc_batches(ROWS, stations);
        group.bench_function(BenchmarkId::new("stations", stations), |b| {
            b.iter(|| assert_eq!(run(&batches, vec![0], &aggregates).num_rows(), stations))
        });
        // The same names as `Utf8View`, the type `quiver run` reads 1BRC-format input into.
        let view_batches = as_utf8_view(&batches);
        group.bench_function(BenchmarkId::new("stations_utf8view", stations), |b| {
            b.iter(|| {
                assert_eq!(
                    run(&view_batches, vec![0], &aggregates).num_rows(),
                    stations
                )
            })
        });
    }
    group.finish();
}

/// Group ids for two key columns (interning only): the composite mapping the kernels use
/// against the `arrow-row` mapping as the baseline, on few pairs of strings (100 traders × 10
/// symbols) and on about a million pairs of integers.
fn multi_column_keys(c: &mut Criterion) {
    const ROWS: usize = 2_000_000;
    let trades = generate::trade_batches(ROWS, 100, 5).unwrap();
    let trader_symbol: Vec<Vec<ArrayRef>> = trades
        .iter()
        .map(|b| vec![b.column(0).clone(), b.column(1).clone()])
        .collect();
    let mut rng = SplitMix64::new(6);
    let int_pairs: Vec<Vec<ArrayRef>> = (0..ROWS.div_ceil(BATCH_ROWS))
        .map(|b| {
            let n = BATCH_ROWS.min(ROWS - b * BATCH_ROWS);
            let mut column = || -> ArrayRef {
                Arc::new(Int64Array::from_iter_values(
                    (0..n).map(|_| rng.below(1000) as i64 * 7919),
                ))
            };
            vec![column(), column()]
        })
        .collect();
    let mut group = c.benchmark_group("aggregate/multi_column_group_ids");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS as u64));
    for (name, batches) in [
        ("trader_symbol", &trader_symbol),
        ("1M_int_pairs", &int_pairs),
    ] {
        let types: Vec<DataType> = batches[0].iter().map(|a| a.data_type().clone()).collect();
        let intern_all = |mut values: Box<dyn GroupValues>| {
            let mut ids = Vec::new();
            for keys in batches.iter() {
                values.intern(keys, &mut ids).unwrap();
            }
            values.len()
        };
        let composite = intern_all(Box::new(CompositeGroupValues::new(&types).unwrap()));
        assert_eq!(
            composite,
            intern_all(Box::new(RowGroupValues::new(&types).unwrap()))
        );
        group.bench_function(BenchmarkId::new(name, "composite"), |b| {
            b.iter(|| intern_all(Box::new(CompositeGroupValues::new(&types).unwrap())))
        });
        group.bench_function(BenchmarkId::new(name, "row_format_baseline"), |b| {
            b.iter(|| intern_all(Box::new(RowGroupValues::new(&types).unwrap())))
        });
    }
    group.finish();
}

/// The batches with their first column (the station names) cast to `Utf8View`.
fn as_utf8_view(batches: &[RecordBatch]) -> Vec<RecordBatch> {
    batches
        .iter()
        .map(|batch| {
            let names = arrow::compute::cast(batch.column(0), &DataType::Utf8View).unwrap();
            let mut fields: Vec<Field> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields[0] = Field::new(fields[0].name(), DataType::Utf8View, false);
            let mut columns = batch.columns().to_vec();
            columns[0] = names;
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
        })
        .collect()
}

fn onebrc_aggregates() -> Vec<AggregateExpr> {
    vec![
        AggregateExpr::new(F::Min, Some(1), "lo"),
        AggregateExpr::new(F::Avg, Some(1), "mean"),
        AggregateExpr::new(F::Max, Some(1), "hi"),
    ]
}

/// One query of the peer comparison: the data, Quiver's plan of it, and the SQL the peers run.
struct PeerCase {
    name: &'static str,
    batches: Vec<RecordBatch>,
    group_by: Vec<usize>,
    aggregates: Vec<AggregateExpr>,
    sql: &'static str,
}

fn write_ipc(path: &Path, batches: &[RecordBatch]) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = arrow::ipc::writer::FileWriter::try_new(file, &batches[0].schema()).unwrap();
    for batch in batches {
        writer.write(batch).unwrap();
    }
    writer.finish().unwrap();
}

/// Median wall time of `runs` runs of `f`, in seconds.
fn median_seconds(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// The same queries on the same data through DuckDB and Polars (one thread each), timed the
/// same way as Quiver here (median of 5 runs, data already in memory), as one table.
fn peers(_: &mut Criterion) {
    if std::env::var_os("QUIVER_BENCH_PEERS").is_some_and(|v| v == "0") {
        println!("peers: skipped (QUIVER_BENCH_PEERS=0)");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/aggregate_peers.py");
    let probe = std::process::Command::new("python3")
        .args(["-c", "import duckdb, polars, pyarrow"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!(
            "peers: skipped (python3 with duckdb, polars and pyarrow not found;              pip install duckdb polars pyarrow)"
        );
        return;
    }
    let seed_aggregates = |amount: usize| {
        vec![
            AggregateExpr::new(F::CountStar, None, "count"),
            AggregateExpr::new(F::Sum, Some(amount), "sum"),
            AggregateExpr::new(F::Avg, Some(amount), "avg"),
            AggregateExpr::new(F::Min, Some(amount), "min"),
            AggregateExpr::new(F::Max, Some(amount), "max"),
        ]
    };
    const ROWS: usize = 10_000_000;
    let seed = seed_batches(ROWS);
    let cases = vec![
        PeerCase {
            name: "seed_group_by_f64",
            batches: seed.clone(),
            group_by: vec![0],
            aggregates: seed_aggregates(1),
            sql: "SELECT category, COUNT(*), SUM(amount), AVG(amount), MIN(amount), MAX(amount) \
                  FROM t GROUP BY category",
        },
        PeerCase {
            name: "seed_group_by_decimal",
            batches: seed,
            group_by: vec![0],
            aggregates: seed_aggregates(2),
            sql: "SELECT category, COUNT(*), SUM(amount_decimal), AVG(amount_decimal), \
                  MIN(amount_decimal), MAX(amount_decimal) FROM t GROUP BY category",
        },
        PeerCase {
            name: "1M_distinct_i64_keys",
            batches: int_key_batches(ROWS, 1_000_000),
            group_by: vec![0],
            aggregates: vec![
                AggregateExpr::new(F::Sum, Some(1), "sum"),
                AggregateExpr::new(F::CountStar, None, "count"),
            ],
            sql: "SELECT key, SUM(value), COUNT(*) FROM t GROUP BY key",
        },
        PeerCase {
            name: "1brc_413_stations",
            batches: onebrc_batches(ROWS, 413),
            group_by: vec![0],
            aggregates: onebrc_aggregates(),
            sql: "SELECT station, MIN(tenths), AVG(tenths), MAX(tenths) FROM t GROUP BY station",
        },
        PeerCase {
            name: "1brc_10000_stations",
            batches: onebrc_batches(ROWS, 10_000),
            group_by: vec![0],
            aggregates: onebrc_aggregates(),
            sql: "SELECT station, MIN(tenths), AVG(tenths), MAX(tenths) FROM t GROUP BY station",
        },
    ];
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let mut table = String::from(
        "| query | rows | Quiver | DuckDB | Polars | Quiver / DuckDB | Quiver / Polars |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for case in &cases {
        let rows: usize = case.batches.iter().map(|b| b.num_rows()).sum();
        let path = dir.join(format!("{}.arrow", case.name));
        write_ipc(&path, &case.batches);
        let quiver = rows as f64
            / median_seconds(5, || {
                run(&case.batches, case.group_by.clone(), &case.aggregates);
            });
        let output = std::process::Command::new("python3")
            .arg(&script)
            .arg(&path)
            .arg(case.sql)
            .env("POLARS_MAX_THREADS", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        // The script prints `duckdb <rows/s>` and `polars <rows/s>` (or an error word).
        let rate = |engine: &str| -> Option<f64> {
            text.lines()
                .find_map(|l| l.strip_prefix(engine))
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        let cell =
            |r: Option<f64>| r.map_or("error".to_string(), |r| format!("{:.0} M/s", r / 1e6));
        let ratio = |r: Option<f64>| r.map_or("–".to_string(), |r| format!("{:.2}×", quiver / r));
        let (duckdb, polars) = (rate("duckdb "), rate("polars "));
        table.push_str(&format!(
            "| {} | {rows} | {:.0} M/s | {} | {} | {} | {} |\n",
            case.name,
            quiver / 1e6,
            cell(duckdb),
            cell(polars),
            ratio(duckdb),
            ratio(polars)
        ));
        if !output.status.success() || duckdb.is_none() || polars.is_none() {
            eprintln!(
                "peers: {}: {}",
                case.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let _ = std::fs::remove_file(&path);
    }
    println!("\npeers (one thread each, median of 5 runs, data in memory):\n{table}");
    std::fs::write(dir.join("aggregate_peers.md"), &table).unwrap();
}

criterion_group!(
    benches,
    seed_query,
    many_int_keys,
    onebrc_shape,
    multi_column_keys,
    peers
);
criterion_main!(benches);
