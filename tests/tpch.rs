//! The 22 TPC-H queries (`tests/tpch/q01.sql` ... `q22.sql`, the specification's text with its
//! validation parameters; Q15's view as a WITH query) over generated data at scale factor 0.01,
//! through `quiver::Engine` and through DuckDB on the same CSV files; results must match row
//! for row (numbers within 1e-6 relative: money columns are doubles and sums run in different
//! orders). The data comes from `tpchgen-cli` (`pip install tpchgen-cli`) and the reference
//! from DuckDB's Python wheel; skipped, with a message, when either is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use arrow::array::{Array, RecordBatch};
use arrow::util::display::array_value_to_string;
use quiver::{read_csv, CsvOptions, Engine, IngestConfig};

const TABLES: [&str; 8] = [
    "lineitem", "orders", "customer", "part", "partsupp", "supplier", "nation", "region",
];

/// What a NULL cell reads as on both sides.
const NULL: &str = "\u{0}NULL";

const DUCKDB_SCRIPT: &str = r#"
import duckdb, json, sys
directory = sys.argv[1]
queries = json.load(sys.stdin)
con = duckdb.connect()
for table in ["lineitem", "orders", "customer", "part", "partsupp", "supplier", "nation", "region"]:
    con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_csv('{directory}/{table}.csv', header=true)")
def cell(v):
    if v is None: return "\u0000NULL"
    if isinstance(v, float): return repr(v)
    return str(v)
for i, q in enumerate(queries):
    print(f"=== {i}")
    for row in con.execute(q).fetchall():
        print("\t".join(cell(v) for v in row))
"#;

fn available(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn queries() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tpch");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

fn quiver_rows(
    tables: &[(String, Vec<RecordBatch>)],
    sql: &str,
) -> Result<Vec<Vec<String>>, String> {
    let mut engine = Engine::new();
    for (name, batches) in tables {
        engine = engine
            .register_table(name.clone(), batches[0].schema(), batches.clone())
            .map_err(|e| e.to_string())?;
    }
    let mut query = engine.sql(sql).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    if let Some(source) = query.source().map(str::to_string) {
        let (_, batches) = tables.iter().find(|(n, _)| *n == source).unwrap();
        for batch in batches {
            out.extend(query.push(batch).map_err(|e| e.to_string())?);
        }
    }
    out.extend(query.finish().map_err(|e| e.to_string())?);
    let mut rows = Vec::new();
    for batch in &out {
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|c| {
                        if c.is_null(row) {
                            NULL.to_string()
                        } else {
                            array_value_to_string(c, row).unwrap()
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

fn same_cell(ours: &str, theirs: &str) -> bool {
    if ours == theirs {
        return true;
    }
    match (ours.parse::<f64>(), theirs.parse::<f64>()) {
        (Ok(a), Ok(b)) => (a - b).abs() <= 1e-6 * a.abs().max(b.abs()) + 1e-6,
        _ => false,
    }
}

#[test]
fn tpch_queries_match_duckdb() {
    if !available("tpchgen-cli", &["--version"]) || !available("python3", &["-c", "import duckdb"])
    {
        eprintln!(
            "SKIPPED: needs tpchgen-cli and python3 with the duckdb wheel (pip install \
             tpchgen-cli duckdb)"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("quiver-tpch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let generated = Command::new("tpchgen-cli")
        .args(["csv", "-s", "0.01", "--output-dir"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(generated.success(), "tpchgen-cli failed");
    let tables: Vec<(String, Vec<RecordBatch>)> = TABLES
        .iter()
        .map(|name| {
            let bytes = std::fs::read(dir.join(format!("{name}.csv"))).unwrap();
            let input = read_csv(
                &bytes[..],
                None,
                CsvOptions::default(),
                &IngestConfig::default(),
            )
            .unwrap();
            assert!(
                input.dead_letters.is_empty(),
                "{name}: {:?}",
                input.dead_letters
            );
            (name.to_string(), input.batches)
        })
        .collect();

    let queries = queries();
    assert_eq!(queries.len(), 22);
    let mut child = Command::new("python3")
        .args(["-c", DUCKDB_SCRIPT])
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let json = format!(
        "[{}]",
        queries
            .iter()
            .map(|(_, q)| format!("{q:?}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "duckdb script failed");
    let text = String::from_utf8(output.stdout).unwrap();
    let mut expected: Vec<Vec<Vec<String>>> = Vec::new();
    for line in text.lines() {
        if line.starts_with("=== ") {
            expected.push(Vec::new());
        } else if let Some(current) = expected.last_mut() {
            current.push(line.split('\t').map(str::to_string).collect());
        }
    }
    assert_eq!(expected.len(), queries.len());

    let mut failures = Vec::new();
    for ((name, sql), duck) in queries.iter().zip(&expected) {
        let ours = match quiver_rows(&tables, sql) {
            Ok(rows) => rows,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if ours.len() != duck.len() {
            failures.push(format!(
                "{name}: {} rows, DuckDB {}",
                ours.len(),
                duck.len()
            ));
            continue;
        }
        if duck.is_empty() {
            failures.push(format!(
                "{name}: no rows at all (the data is too small to test it)"
            ));
        }
        if let Some((row, (a, b))) = ours.iter().zip(duck).enumerate().find(|(_, (a, b))| {
            a.len() != b.len() || a.iter().zip(*b).any(|(x, y)| !same_cell(x, y))
        }) {
            failures.push(format!("{name}: row {row}: quiver {a:?}, duckdb {b:?}"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "TPC-H queries differ from DuckDB:\n{}",
        failures.join("\n")
    );
}
