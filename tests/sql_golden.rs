//! Golden SQL tests: every `tests/sql/*.slt` file holds tables and queries with their expected
//! output (CSV, as `quiver run --format csv` writes it) or expected error text. One runner reads
//! them all. Format:
//!
//! ```text
//! # a comment
//! table trades                       -- a source: a header of name:Type, then CSV rows,
//! symbol:Utf8,price:Float64          -- up to a blank line (types: Int64, Int32, Float64,
//! A,1.5                              -- Utf8, Boolean, Date32, Timestamp (ms, UTC),
//!                                    -- Decimal(p,s), UInt64, Dictionary (Int32 keys over
//!                                    -- Utf8), Timestamp(s,+02:00) and Timestamp(ms,UTC)
//!                                    -- with named or offset zones)
//! options max_out_of_orderness_ms=0 allowed_lateness_ms=0 late_policy=drop
//! query rowsort                      -- `query` keeps the row order, `rowsort` sorts rows
//! SELECT ...                         -- SQL lines up to `----`
//! ----
//! symbol,n                           -- expected CSV: header, rows, up to a blank line
//! A,1
//!
//! error
//! SELECT nope FROM trades
//! ----
//! unknown column `nope`              -- a substring of the error message
//! ```
//!
//! `QUIVER_BLESS=1 cargo test --test sql_golden` rewrites the expected blocks from the actual
//! output (review the diff before committing).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use quiver::{Engine, LatePolicy, StreamOptions};

fn data_type(name: &str) -> DataType {
    match name {
        "Int64" => DataType::Int64,
        "Int32" => DataType::Int32,
        "Float64" => DataType::Float64,
        "Utf8" => DataType::Utf8,
        "Boolean" => DataType::Boolean,
        "Date32" => DataType::Date32,
        "Timestamp" => DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
        "UInt64" => DataType::UInt64,
        "Dictionary" => DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        "Timestamp(s,+02:00)" => DataType::Timestamp(TimeUnit::Second, Some("+02:00".into())),
        "Timestamp(ms,UTC)" => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        decimal if decimal.starts_with("Decimal(") => {
            let inner = &decimal["Decimal(".len()..decimal.len() - 1];
            let (p, s) = inner.split_once(',').expect("Decimal(p,s)");
            DataType::Decimal128(p.trim().parse().unwrap(), s.trim().parse().unwrap())
        }
        other => panic!("unknown type {other} in a golden table"),
    }
}

struct Table {
    name: String,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

fn read_table(name: &str, header: &str, rows: &[&str]) -> Table {
    // Commas inside a type's parentheses (Decimal(10,2)) do not separate columns.
    let mut columns = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in header.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                columns.push(&header[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    columns.push(&header[start..]);
    let fields: Vec<Field> = columns
        .into_iter()
        .map(|column| {
            let (name, kind) = column.split_once(':').expect("name:Type");
            Field::new(name.trim(), data_type(kind.trim()), true)
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let text = rows.join("\n");
    let reader = arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(false)
        .with_batch_size(3) // several batches, so streaming paths see batch boundaries
        .build(Cursor::new(text.into_bytes()))
        .unwrap();
    let batches = reader.collect::<Result<Vec<_>, _>>().unwrap();
    Table {
        name: name.to_string(),
        schema,
        batches,
    }
}

fn csv(schema: &SchemaRef, batches: &[RecordBatch]) -> Vec<String> {
    let mut bytes = Vec::new();
    {
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut bytes);
        if batches.is_empty() {
            writer
                .write(&RecordBatch::new_empty(schema.clone()))
                .unwrap();
        }
        for batch in batches {
            writer.write(batch).unwrap();
        }
    }
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn run(tables: &[Table], options: StreamOptions, sql: &str) -> Result<Vec<String>, String> {
    let mut engine = Engine::new().with_stream_options(options);
    for table in tables {
        // Every table's rows are registered too, so queries can JOIN them.
        engine = engine
            .register_table(
                table.name.clone(),
                table.schema.clone(),
                table.batches.clone(),
            )
            .map_err(|e| e.to_string())?;
    }
    let mut query = engine.sql(sql).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    // A query without FROM, or over held tables only, reads its rows by itself.
    if let Some(source) = query.source().map(str::to_string) {
        let table = tables
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(&source))
            .ok_or_else(|| format!("no table {source}"))?;
        for batch in &table.batches {
            out.extend(query.push(batch).map_err(|e| e.to_string())?);
        }
    }
    out.extend(query.finish().map_err(|e| e.to_string())?);
    Ok(csv(query.schema(), &out))
}

fn parse_options(line: &str) -> StreamOptions {
    let mut options = StreamOptions::default();
    for setting in line.split_whitespace().skip(1) {
        let (key, value) = setting.split_once('=').expect("key=value");
        match key {
            "max_out_of_orderness_ms" => options.max_out_of_orderness_ms = value.parse().unwrap(),
            "allowed_lateness_ms" => options.allowed_lateness_ms = value.parse().unwrap(),
            "partitions" => options.partitions = value.parse().unwrap(),
            "late_policy" => {
                options.late_policy = match value {
                    "drop" => LatePolicy::Drop,
                    "dead_letter" => LatePolicy::DeadLetter,
                    horizon if horizon.starts_with("update_closed:") => LatePolicy::UpdateClosed {
                        horizon_ms: horizon["update_closed:".len()..].parse().unwrap(),
                    },
                    other => panic!("late_policy {other}"),
                }
            }
            other => panic!("unknown option {other}"),
        }
    }
    options
}

/// Runs one file; returns (cases, failures, blessed text).
fn run_file(path: &Path) -> (usize, Vec<String>, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut tables: Vec<Table> = Vec::new();
    let mut options = StreamOptions::default();
    let mut failures = Vec::new();
    let mut blessed: Vec<String> = Vec::new();
    let mut cases = 0;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(name) = line.strip_prefix("table ") {
            let header = lines[i + 1];
            let mut end = i + 2;
            while end < lines.len() && !lines[end].trim().is_empty() {
                end += 1;
            }
            tables.retain(|t| t.name != name.trim());
            tables.push(read_table(name.trim(), header, &lines[i + 2..end]));
            blessed.extend(lines[i..end].iter().map(|l| l.to_string()));
            i = end;
            continue;
        }
        if line.starts_with("options") {
            options = parse_options(line);
            blessed.push(line.to_string());
            i += 1;
            continue;
        }
        let is_query = line == "query" || line == "query rowsort";
        if is_query || line == "error" {
            cases += 1;
            let start = i;
            let mut separator = i + 1;
            while lines[separator] != "----" {
                separator += 1;
            }
            let sql = lines[i + 1..separator].join("\n");
            let mut end = separator + 1;
            while end < lines.len() && !lines[end].trim().is_empty() {
                end += 1;
            }
            let expected: Vec<String> = lines[separator + 1..end]
                .iter()
                .map(|l| l.to_string())
                .collect();
            let location = format!("{}:{}", path.display(), start + 1);
            blessed.extend(lines[start..=separator].iter().map(|l| l.to_string()));
            match (is_query, run(&tables, options, &sql)) {
                (true, Ok(mut actual)) => {
                    if line == "query rowsort" && actual.len() > 1 {
                        actual[1..].sort();
                    }
                    if actual != expected {
                        failures.push(format!(
                            "{location}\n{sql}\nexpected:\n{}\nactual:\n{}",
                            expected.join("\n"),
                            actual.join("\n")
                        ));
                    }
                    blessed.extend(actual);
                }
                (true, Err(error)) => {
                    failures.push(format!("{location}\n{sql}\nfailed: {error}"));
                    blessed.extend(expected);
                }
                (false, Ok(_)) => {
                    failures.push(format!("{location}\n{sql}\nexpected an error, got rows"));
                    blessed.extend(expected);
                }
                (false, Err(error)) => {
                    let wanted = expected.join("\n");
                    if wanted.is_empty() || !error.contains(&wanted) {
                        failures.push(format!(
                            "{location}\n{sql}\nexpected error containing: {wanted}\nactual: {error}"
                        ));
                        blessed.push(error);
                    } else {
                        blessed.extend(expected);
                    }
                }
            }
            i = end;
            continue;
        }
        blessed.push(line.to_string());
        i += 1;
    }
    (cases, failures, blessed.join("\n") + "\n")
}

fn golden_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

#[test]
fn golden_sql_files() {
    let bless = std::env::var("QUIVER_BLESS").is_ok_and(|v| v == "1");
    let mut total = 0;
    let mut failures = Vec::new();
    for file in golden_files() {
        let (cases, file_failures, blessed) = run_file(&file);
        total += cases;
        if bless {
            std::fs::write(&file, blessed).unwrap();
        }
        failures.extend(file_failures);
    }
    assert!(total >= 150, "only {total} golden cases");
    assert!(
        bless || failures.is_empty(),
        "{} of {total} golden cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
