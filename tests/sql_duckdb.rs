//! Differential test of the SQL path against DuckDB: generated queries (random keys, aggregates
//! and filters over random typed data with NULLs) run through `quiver::Engine` and through
//! DuckDB's Python wheel on the same CSV file; results must match exactly (floats within 1e-9
//! relative). Skipped, with a message, only when `python3 -c "import duckdb"` fails.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

use std::io::Write;
use std::process::{Command, Stdio};

use quiver::{read_csv, CsvOptions, Engine, IngestConfig};
use quiver_kernels::reference::{batch_rows, RefValue};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const QUERIES: usize = 240;
const WINDOW_QUERIES: usize = 160;
const JOIN_QUERIES: usize = 80;
const SET_QUERIES: usize = 160;

fn duckdb_available() -> bool {
    Command::new("python3")
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|s| s.success())
}

fn table_csv(rng: &mut StdRng, rows: usize) -> String {
    let mut csv = String::from("k_str,k_int,v_int,v_float,flag,id\n");
    let null = |rng: &mut StdRng| rng.gen_bool(0.1);
    for id in 0..rows {
        let k_str = if null(rng) {
            String::new()
        } else {
            format!("s{}", rng.gen_range(0..7))
        };
        let k_int = if null(rng) {
            String::new()
        } else {
            rng.gen_range(-3..4).to_string()
        };
        let v_int = if null(rng) {
            String::new()
        } else {
            rng.gen_range(-1_000_000_i64..1_000_000).to_string()
        };
        // Two decimals, so both engines parse the same binary double.
        let v_float = if null(rng) {
            String::new()
        } else {
            format!(
                "{}.{:02}",
                rng.gen_range(-5000..5000),
                rng.gen_range(0..100)
            )
        };
        let flag = if null(rng) {
            String::new()
        } else {
            rng.gen_bool(0.5).to_string()
        };
        csv.push_str(&format!("{k_str},{k_int},{v_int},{v_float},{flag},{id}\n"));
    }
    csv
}

fn random_query(rng: &mut StdRng) -> String {
    if rng.gen_bool(0.15) {
        return random_distinct_query(rng);
    }
    if rng.gen_bool(0.2) {
        return random_scalar_query(rng);
    }
    let keys: Vec<&str> = match rng.gen_range(0..4) {
        0 => vec![],
        1 => vec!["k_str"],
        2 => vec!["k_int"],
        _ => vec!["k_str", "k_int"],
    };
    let menu = [
        "COUNT(*)",
        "COUNT(v_int)",
        "COUNT(v_float)",
        "SUM(v_int)",
        "SUM(v_float)",
        "AVG(v_int)",
        "AVG(v_float)",
        "MIN(v_int)",
        "MAX(v_float)",
        "MIN(k_str)",
        "MAX(k_str)",
        "COUNT(DISTINCT k_str)",
        "COUNT(DISTINCT v_int % 10)",
        "STDDEV_SAMP(v_float)",
        "VAR_POP(v_int)",
        "BOOL_AND(flag)",
        "BOOL_OR(flag)",
        "SUM(v_int * 2 + 1)",
        "MAX(v_float - v_int)",
        "SUM(v_int) FILTER (WHERE flag)",
        "COUNT(*) FILTER (WHERE v_float > 0)",
        "ROUND(AVG(v_float), 2)",
        "ROUND(SUM(v_float), -2)",
        "FLOOR(AVG(v_int))",
        "CEIL(MAX(v_float))",
        "CORR(v_float, v_int)",
        "COVAR_SAMP(v_int, v_float)",
        "REGR_SLOPE(v_float, v_int)",
        "REGR_INTERCEPT(v_float, v_int)",
        "SUM(DISTINCT v_int % 100)",
        "AVG(DISTINCT k_int)",
    ];
    let aggregate_count = rng.gen_range(1..=4);
    let aggregates: Vec<String> = (0..aggregate_count)
        .map(|i| format!("{} AS a{i}", menu[rng.gen_range(0..menu.len())]))
        .collect();
    let filters = [
        "v_int > 0",
        "v_float < 100.5",
        "k_str IS NOT NULL",
        "k_int BETWEEN -1 AND 2",
        "flag OR v_int < -500000",
        "NOT flag",
        "k_str IN ('s1', 's3', 's5')",
        "v_int IS NULL OR v_float IS NULL",
    ];
    let mut sql = String::from("SELECT ");
    let mut items: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    items.extend(aggregates);
    sql.push_str(&items.join(", "));
    sql.push_str(" FROM t");
    if rng.gen_bool(0.6) {
        sql.push_str(&format!(
            " WHERE {}",
            filters[rng.gen_range(0..filters.len())]
        ));
    }
    if !keys.is_empty() {
        sql.push_str(&format!(" GROUP BY {}", keys.join(", ")));
        if rng.gen_bool(0.3) {
            sql.push_str(" HAVING COUNT(*) > 3");
        }
        // Every key in ORDER BY (NULLs last, both engines' default) makes the order total.
        sql.push_str(&format!(" ORDER BY {}", keys.join(", ")));
        if rng.gen_bool(0.2) {
            sql.push_str(&format!(
                " LIMIT {} OFFSET {}",
                rng.gen_range(1..20),
                rng.gen_range(0..5)
            ));
        }
    }
    sql
}

/// A projection (no GROUP BY, so DuckDB keeps the input order) of scalar functions of every
/// column, with a filter now and then.
fn random_scalar_query(rng: &mut StdRng) -> String {
    let menu = [
        "ROUND(v_float, 1)",
        "ROUND(v_float)",
        "ROUND(v_float, -2)",
        "ROUND(v_int, -3)",
        "ROUND(v_float * 1.5, 2)",
        "TRUNC(v_float)",
        "FLOOR(v_float)",
        "CEIL(v_float)",
        "FLOOR(v_int)",
        "SIGN(v_int)",
        "SIGN(v_float)",
        "SQRT(ABS(v_float))",
        "CBRT(v_float)",
        "LN(ABS(v_float) + 1)",
        "LOG10(ABS(v_int) + 1)",
        "EXP(v_float / 1000)",
        "POWER(v_float, 2)",
        "MOD(v_int, 7)",
        "GREATEST(v_int, k_int)",
        "LEAST(v_float, v_int, k_int)",
        "REPLACE(k_str, 's', 'x')",
        "LEFT(k_str, 1)",
        "RIGHT(k_str, -1)",
        "REVERSE(k_str)",
        "LPAD(k_str, 4, '*')",
        "RPAD(k_str, 1, '-')",
        "STRPOS(k_str, '1')",
        "SPLIT_PART(k_str, 's', 2)",
        "REPEAT(k_str, 2)",
        "STARTS_WITH(k_str, 's1')",
        "CONTAINS(k_str, '3')",
        "ENDS_WITH(k_str, '4')",
    ];
    let count = rng.gen_range(1..=4);
    let items: Vec<String> = (0..count)
        .map(|i| format!("{} AS e{i}", menu[rng.gen_range(0..menu.len())]))
        .collect();
    let mut sql = format!("SELECT k_str, v_int, {} FROM t", items.join(", "));
    if rng.gen_bool(0.4) {
        sql.push_str(" WHERE v_float > 0 OR k_int = 1");
    }
    sql
}

/// `SELECT DISTINCT` over one to three expressions, ordered by all of them (a total order), with
/// LIMIT / OFFSET now and then.
fn random_distinct_query(rng: &mut StdRng) -> String {
    let menu = [
        "k_str",
        "k_int",
        "flag",
        "v_int % 5 AS m",
        "k_int > 1 AS big",
    ];
    let mut picked: Vec<&str> = menu.iter().copied().filter(|_| rng.gen_bool(0.5)).collect();
    if picked.is_empty() {
        picked.push(menu[rng.gen_range(0..menu.len())]);
    }
    let positions: Vec<String> = (1..=picked.len()).map(|i| i.to_string()).collect();
    let mut sql = format!("SELECT DISTINCT {} FROM t", picked.join(", "));
    if rng.gen_bool(0.5) {
        sql.push_str(" WHERE v_float < 100.5");
    }
    sql.push_str(&format!(" ORDER BY {}", positions.join(", ")));
    if rng.gen_bool(0.4) {
        sql.push_str(&format!(
            " LIMIT {} OFFSET {}",
            rng.gen_range(1..10),
            rng.gen_range(0..4)
        ));
    }
    sql
}

fn quiver_rows(csv: &[u8], sql: &str) -> Result<Vec<Vec<RefValue>>, String> {
    let input = read_csv(csv, None, CsvOptions::default(), &IngestConfig::default())
        .map_err(|e| e.to_string())?;
    // With its rows, so queries can join the table to itself.
    let engine = Engine::new()
        .register_table("t", input.batches[0].schema(), input.batches.clone())
        .map_err(|e| e.to_string())?;
    let mut query = engine.sql(sql).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    // A set operation or VALUES list reads the registered rows itself.
    if query.source().is_some() {
        for batch in &input.batches {
            out.extend(query.push(batch).map_err(|e| e.to_string())?);
        }
    }
    out.extend(query.finish().map_err(|e| e.to_string())?);
    let mut rows = Vec::new();
    for batch in &out {
        for (_, values) in batch_rows(batch, 0).map_err(|e| e.to_string())? {
            rows.push(values);
        }
    }
    Ok(rows)
}

const DUCKDB_SCRIPT: &str = r#"
import duckdb, json, sys
path = sys.argv[1]
queries = json.load(sys.stdin)
con = duckdb.connect()
con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{path}', header=true, columns={{'k_str':'VARCHAR','k_int':'BIGINT','v_int':'BIGINT','v_float':'DOUBLE','flag':'BOOLEAN','id':'BIGINT'}})")
def cell(v):
    if v is None: return "N"
    if isinstance(v, bool): return "B:" + ("true" if v else "false")
    if isinstance(v, int): return "I:" + str(v)
    if isinstance(v, float): return "F:" + repr(v)
    return "S:" + json.dumps(str(v))
for i, q in enumerate(queries):
    print(f"=== {i}")
    try:
        for row in con.execute(q).fetchall():
            print("\t".join(cell(v) for v in row))
    except Exception as e:
        print("ERROR " + str(e).replace("\n", " "))
"#;

fn parse_cell(cell: &str) -> RefValue {
    match cell.split_once(':') {
        None => RefValue::Null,
        Some(("B", v)) => RefValue::Bool(v == "true"),
        Some(("I", v)) => RefValue::Int(v.parse().unwrap()),
        Some(("F", v)) => RefValue::Float(match v {
            "nan" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap(),
        }),
        Some(("S", v)) => {
            // The strings here are plain ASCII: strip the JSON quotes.
            RefValue::Bytes(v.trim_matches('"').as_bytes().to_vec())
        }
        Some(_) => panic!("unexpected cell {cell}"),
    }
}

fn same(a: &RefValue, b: &RefValue) -> bool {
    match (a, b) {
        (RefValue::Float(x), RefValue::Float(y)) => {
            (x.is_nan() && y.is_nan())
                || x == y
                || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-300)
        }
        // DuckDB reports integer AVG and variance as DOUBLE, and SUM as HUGEINT: compare numbers.
        (RefValue::Int(i), RefValue::Float(f)) | (RefValue::Float(f), RefValue::Int(i)) => {
            (*i as f64) == *f
        }
        _ => a == b,
    }
}

/// Window functions (`OVER`): ranking, offsets, value and aggregate functions over frames,
/// partitioned by zero to two keys, over source rows or over a GROUP BY result. Every window
/// whose result depends on the order of ties orders by the unique `id` last; the output is
/// ordered by `id` (or the group keys), so the comparison is exact.
fn random_window_query(rng: &mut StdRng) -> String {
    let partitions = [
        "",
        "PARTITION BY k_str ",
        "PARTITION BY k_int ",
        "PARTITION BY k_str, k_int ",
    ];
    let partition = partitions[rng.gen_range(0..partitions.len())];
    if rng.gen_bool(0.2) {
        // Over a GROUP BY result.
        let items = [
            "RANK() OVER (ORDER BY SUM(v_int) DESC NULLS LAST, k_str NULLS LAST) AS w",
            "SUM(SUM(v_int)) OVER () AS w",
            "SUM(v_float) / SUM(SUM(v_float)) OVER () AS w",
            "LAG(COUNT(*)) OVER (ORDER BY k_str NULLS FIRST) AS w",
            "AVG(MAX(v_int)) OVER (ORDER BY k_str NULLS LAST ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) AS w",
        ];
        return format!(
            "SELECT k_str, COUNT(*) AS n, {} FROM t GROUP BY k_str ORDER BY k_str NULLS LAST",
            items[rng.gen_range(0..items.len())]
        );
    }
    let orders = [
        "ORDER BY id",
        "ORDER BY v_int NULLS LAST, id",
        "ORDER BY v_float DESC NULLS FIRST, id",
        "ORDER BY k_int DESC NULLS LAST, id DESC",
    ];
    let frames = [
        "",
        "",
        " ROWS BETWEEN 2 PRECEDING AND CURRENT ROW",
        " ROWS BETWEEN UNBOUNDED PRECEDING AND 1 FOLLOWING",
        " ROWS BETWEEN 1 FOLLOWING AND 3 FOLLOWING",
        " ROWS BETWEEN 5 PRECEDING AND 2 PRECEDING",
        " ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING",
        " RANGE BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING",
        " RANGE BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING",
    ];
    // (function, takes a frame)
    let functions = [
        ("ROW_NUMBER()", false),
        ("NTILE(4)", false),
        ("LAG(v_int)", false),
        ("LEAD(v_float, 2, -1.5)", false),
        ("LAG(k_str, 3, 'none')", false),
        ("FIRST_VALUE(v_float)", true),
        ("LAST_VALUE(k_str)", true),
        ("NTH_VALUE(v_int, 2)", true),
        ("SUM(v_int)", true),
        ("AVG(v_float)", true),
        ("COUNT(*)", true),
        ("COUNT(v_float)", true),
        ("MIN(v_int)", true),
        ("MAX(k_str)", true),
        ("SUM(v_int) FILTER (WHERE flag)", true),
    ];
    let count = rng.gen_range(1..=3);
    let mut items = Vec::new();
    for i in 0..count {
        let item = match rng.gen_range(0..12) {
            // Ties decide nothing for the ranks: order by a key with ties alone.
            0 => format!("RANK() OVER ({partition}ORDER BY k_int NULLS FIRST)"),
            1 => format!("DENSE_RANK() OVER ({partition}ORDER BY k_str DESC NULLS LAST)"),
            2 => format!("PERCENT_RANK() OVER ({partition}ORDER BY k_int NULLS LAST)"),
            3 => format!("CUME_DIST() OVER ({partition}ORDER BY flag NULLS FIRST)"),
            // The whole partition: order does not matter.
            4 => format!("SUM(v_int) OVER ({partition})"),
            5 => format!("COUNT(*) OVER ({partition}) + MIN(v_float) OVER ({partition})"),
            // RANGE offsets: a frame of keys, so ties do not matter.
            6 => format!(
                "SUM(v_int) OVER ({partition}ORDER BY v_int NULLS LAST \
                 RANGE BETWEEN 100000 PRECEDING AND 50000 FOLLOWING)"
            ),
            7 => format!(
                "COUNT(*) OVER ({partition}ORDER BY v_float DESC NULLS FIRST \
                 RANGE BETWEEN 500.5 PRECEDING AND CURRENT ROW)"
            ),
            _ => {
                let (function, framed) = functions[rng.gen_range(0..functions.len())];
                let order = orders[rng.gen_range(0..orders.len())];
                let frame = if framed {
                    frames[rng.gen_range(0..frames.len())]
                } else {
                    ""
                };
                format!("{function} OVER ({partition}{order}{frame})")
            }
        };
        items.push(format!("{item} AS w{i}"));
    }
    let mut sql = format!("SELECT id, k_str, {} FROM t", items.join(", "));
    if rng.gen_bool(0.3) {
        sql.push_str(" WHERE v_int > -300000");
    }
    if rng.gen_bool(0.2) {
        sql.push_str(" QUALIFY w0 IS NOT NULL");
    }
    sql.push_str(" ORDER BY id");
    if rng.gen_bool(0.2) {
        sql.push_str(" LIMIT 50 OFFSET 7");
    }
    sql
}

/// Subqueries in expressions, and self-joins of the table: inner and left, one or two equality keys (of different types
/// too), extra conditions, aggregates and window functions over the joined rows; ordered by
/// unique ids (or group keys) so the comparison is exact.
fn random_join_query(rng: &mut StdRng) -> String {
    let kind = ["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"][rng.gen_range(0..4)];
    let keys = [
        "a.k_int = b.k_int",
        "a.k_str = b.k_str AND a.k_int = b.k_int",
        "a.id = b.id + 1",
        "b.k_int = a.v_int % 4",
        "CAST(a.k_int AS DOUBLE) = b.k_int",
        "a.flag = b.flag AND a.k_str = b.k_str",
    ];
    let extras = [
        "",
        " AND b.v_float > a.v_float",
        " AND a.v_int < 0",
        " AND b.id < a.id",
        " AND (a.k_str IS NULL OR b.v_int > 0)",
    ];
    let on = format!(
        "{}{}",
        keys[rng.gen_range(0..keys.len())],
        extras[rng.gen_range(0..extras.len())]
    );
    let limit = rng.gen_range(5..40);
    // Subqueries in expressions: a value, a set, a truth.
    let subqueries = [
        "v_int > (SELECT AVG(v_int) FROM t WHERE k_str = 's1')",
        "k_int IN (SELECT k_int FROM t WHERE flag AND v_float > 4000)",
        "k_int NOT IN (SELECT k_int FROM t WHERE v_int > 990000)",
        "k_str NOT IN (SELECT k_str FROM t WHERE v_float < -4990)",
        "v_float < (SELECT MIN(v_float) FROM t WHERE k_int = 3) + 100",
        "EXISTS (SELECT 1 FROM t WHERE v_int > 999990)",
        "k_str IN (SELECT MAX(k_str) FROM t GROUP BY k_int)",
    ];
    if rng.gen_bool(0.3) {
        let condition = subqueries[rng.gen_range(0..subqueries.len())];
        return format!(
            "SELECT id, k_str, v_int, (SELECT COUNT(*) FROM t WHERE flag) AS flagged FROM t \
             WHERE {condition} AND id < {} ORDER BY id",
            limit * 10
        );
    }
    if kind.starts_with("RIGHT") || kind.starts_with("FULL") {
        // The table's unmatched rows have a NULL a.id.
        return format!(
            "SELECT a.id, b.id AS b_id, b.v_float, a.k_str FROM t a {kind} t b ON {on} \
             WHERE (a.id < {limit} OR a.id IS NULL) AND (b.id < {} OR b.id IS NULL) \
             ORDER BY a.id NULLS FIRST, b.id NULLS FIRST",
            limit * 4
        );
    }
    match rng.gen_range(0..4) {
        0 => format!(
            "SELECT a.id, b.id AS b_id, b.v_float FROM t a {kind} t b ON {on} \
             WHERE a.id < {limit} ORDER BY a.id, b.id NULLS FIRST"
        ),
        1 => format!(
            "SELECT a.k_str, COUNT(*) AS n, COUNT(b.id) AS matched, SUM(b.v_int) AS s \
             FROM t a {kind} t b ON {on} WHERE a.id < {} GROUP BY a.k_str \
             ORDER BY a.k_str NULLS LAST",
            limit * 20
        ),
        2 => format!(
            "SELECT a.id, COUNT(b.id) AS matched, MAX(b.v_float) AS best FROM t a {kind} t b \
             ON {on} WHERE a.id < {limit} GROUP BY a.id ORDER BY a.id"
        ),
        _ => format!(
            "SELECT a.id, b.id AS b_id, ROW_NUMBER() OVER (PARTITION BY a.id ORDER BY b.id \
             NULLS FIRST) AS rn FROM t a {kind} t b ON {on} WHERE a.id < {limit} \
             ORDER BY a.id, b.id NULLS FIRST"
        ),
    }
}

/// Set operations, comma joins and joined subqueries / VALUES lists over `t`.
fn random_set_query(rng: &mut StdRng) -> String {
    let predicates = [
        "k_int > 0",
        "k_int <= 1",
        "flag",
        "NOT flag",
        "k_str IN ('s1', 's2', 's3')",
        "v_int > 0",
        "v_float < 0",
        "k_str IS NULL OR k_int IS NULL",
        "id % 3 = 0",
    ];
    let columns = [
        ("k_str", "k_str"),
        ("k_int", "k_int"),
        ("k_str, k_int", "k_str, k_int"),
        ("k_int, flag", "k_int, flag"),
        ("k_int", "CAST(v_int % 5 AS BIGINT)"),
        ("k_int", "v_float"),
        ("k_str, flag", "k_str, v_int > 0"),
    ];
    let operators = [
        "UNION",
        "UNION ALL",
        "INTERSECT",
        "INTERSECT ALL",
        "EXCEPT",
        "EXCEPT ALL",
    ];
    let pick = |rng: &mut StdRng, list: &[&'static str]| list[rng.gen_range(0..list.len())];
    let (left_columns, right_columns) = columns[rng.gen_range(0..columns.len())];
    let width = left_columns.split(',').count();
    let order: Vec<String> = (1..=width).map(|i| format!("{i} NULLS FIRST")).collect();
    let order = order.join(", ");
    let (p1, p2, p3) = (
        pick(rng, &predicates),
        pick(rng, &predicates),
        pick(rng, &predicates),
    );
    let (op1, op2) = (pick(rng, &operators), pick(rng, &operators));
    let limit = rng.gen_range(5..40);
    let correlated = [
        "v_int > (SELECT AVG(v_int) FROM t b WHERE b.k_str = a.k_str AND b.flag)",
        "v_float < (SELECT MIN(b.v_float) + 500 FROM t b WHERE b.k_int = a.k_int AND b.k_str = a.k_str)",
        "(SELECT COUNT(*) FROM t b WHERE b.k_int = a.k_int AND b.v_int > 0) > 210",
        "(SELECT COUNT(*) FROM t b WHERE b.k_int = a.k_int AND b.flag) > 200",
        "EXISTS (SELECT 1 FROM t b WHERE b.k_str = a.k_str AND b.k_int = a.k_int AND b.v_int > 990000)",
        "NOT EXISTS (SELECT 1 FROM t b WHERE b.k_str = a.k_str AND b.v_float > 4990)",
        "EXISTS (SELECT 1 FROM t b WHERE b.k_int = a.k_int AND b.v_float > a.v_float + 9900)",
        "NOT EXISTS (SELECT 1 FROM t b WHERE b.k_str = a.k_str AND b.id > a.id AND b.v_int > a.v_int)",
        "a.k_int IN (SELECT b.k_int FROM t b WHERE b.k_str = a.k_str AND b.v_int < -995000)",
        "a.k_str IN (SELECT b.k_str FROM t b WHERE b.id = a.id + 1 AND b.flag)",
    ];
    let per_row = [
        "(SELECT COUNT(*) FROM t b WHERE b.k_int = a.k_int AND b.flag)",
        "(SELECT SUM(b.v_int) FROM t b WHERE b.k_str = a.k_str AND b.k_int = a.k_int)",
        "(SELECT MAX(b.v_float) - MIN(b.v_float) FROM t b WHERE b.k_str = a.k_str AND NOT b.flag)",
        "EXISTS (SELECT 1 FROM t b WHERE b.k_int = a.k_int AND b.v_float > a.v_float + 9000)",
        "NOT EXISTS (SELECT 1 FROM t b WHERE b.k_str = a.k_str AND b.k_int = a.k_int AND b.v_int > 900000)",
    ];
    if rng.gen_bool(0.1) {
        let value = per_row[rng.gen_range(0..per_row.len())];
        return format!(
            "SELECT a.id, {value} AS x, a.k_str FROM t a WHERE a.id < {limit} ORDER BY a.id"
        );
    }
    if rng.gen_bool(0.25) {
        let condition = correlated[rng.gen_range(0..correlated.len())];
        let or_else = if rng.gen_bool(0.3) {
            " OR a.k_int = 0"
        } else {
            ""
        };
        return format!(
            "SELECT a.id, a.k_str, a.v_int FROM t a WHERE ({condition}{or_else}) AND a.id < {} \
             ORDER BY a.id",
            limit * 20
        );
    }
    match rng.gen_range(0..9) {
        7 => format!(
            "SELECT * FROM (SELECT id, k_int, k_str, v_int FROM t WHERE id < {limit}) a {} \
             (SELECT k_int, k_str AS s, v_float FROM t WHERE {p1} AND id < 200) b USING (k_int) \
             ORDER BY 1 NULLS FIRST, 2 NULLS FIRST, 3 NULLS FIRST, 4 NULLS FIRST, \
             5 NULLS FIRST, 6 NULLS FIRST",
            pick(rng, &["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"])
        ),
        8 => format!(
            "SELECT k_int, COUNT(*) AS n, SUM(other) AS s FROM (SELECT id, k_int, flag FROM t \
             WHERE id < {}) a {} (SELECT id AS other, k_int, flag FROM t WHERE {p1} AND id < 300) b \
             GROUP BY k_int ORDER BY k_int NULLS FIRST",
            limit * 5,
            pick(rng, &["NATURAL JOIN", "NATURAL LEFT JOIN", "NATURAL FULL JOIN"])
        ),
        0 => format!(
            "SELECT {left_columns} FROM t WHERE {p1} {op1} SELECT {right_columns} FROM t \
             WHERE {p2} ORDER BY {order}"
        ),
        1 => format!(
            "SELECT {left_columns} FROM t WHERE {p1} {op1} (SELECT {right_columns} FROM t \
             WHERE {p2} {op2} SELECT {left_columns} FROM t WHERE {p3}) ORDER BY {order}"
        ),
        2 => format!(
            "SELECT k_str, COUNT(*) AS n, SUM(v_int) AS s FROM (SELECT k_str, v_int FROM t \
             WHERE {p1} {op1} SELECT k_str, v_int FROM t WHERE {p2}) AS u GROUP BY k_str \
             ORDER BY k_str NULLS FIRST"
        ),
        3 => format!(
            "SELECT a.id, b.id AS b_id, b.v_float FROM t a, t b WHERE a.k_int = b.k_int \
             AND a.id < {limit} AND b.id < {} AND {} ORDER BY a.id, b.id",
            limit * 3,
            pick(
                rng,
                &["b.flag", "a.k_str = b.k_str", "b.v_int > a.v_int", "TRUE"]
            )
        ),
        4 => format!(
            "SELECT a.id, s.total, s.n FROM t a {} (SELECT k_str, SUM(v_int) AS total, \
             COUNT(*) AS n FROM t WHERE {p1} GROUP BY k_str) AS s ON a.k_str = s.k_str \
             WHERE a.id < {limit} ORDER BY a.id",
            pick(rng, &["JOIN", "LEFT JOIN"])
        ),
        5 => format!(
            "WITH w(k, lo, hi) AS (SELECT k_int, MIN(v_float), MAX(v_float) FROM t WHERE {p1} \
             GROUP BY k_int) SELECT a.id, w.lo, w.hi FROM t a {} w ON a.k_int = w.k \
             AND a.v_float BETWEEN w.lo AND w.hi WHERE a.id < {limit} ORDER BY a.id",
            pick(rng, &["JOIN", "LEFT JOIN"])
        ),
        _ => format!(
            "SELECT a.id, v.weight FROM t a {} (VALUES ('s1', 10), ('s2', 20), (NULL, 30), \
             ('s2', 25)) AS v(k, weight) ON a.k_str = v.k WHERE a.id < {limit} \
             ORDER BY a.id, v.weight NULLS FIRST",
            pick(rng, &["JOIN", "LEFT JOIN"])
        ),
    }
}

#[test]
fn generated_set_operation_queries_match_duckdb() {
    let mut rng = StdRng::seed_from_u64(20261129);
    let csv = table_csv(&mut rng, 3000);
    let queries: Vec<String> = (0..SET_QUERIES)
        .map(|_| random_set_query(&mut rng))
        .collect();
    compare_with_duckdb(&csv, &queries);
}

#[test]
fn generated_join_queries_match_duckdb() {
    let mut rng = StdRng::seed_from_u64(20261128);
    let csv = table_csv(&mut rng, 3000);
    let queries: Vec<String> = (0..JOIN_QUERIES)
        .map(|_| random_join_query(&mut rng))
        .collect();
    compare_with_duckdb(&csv, &queries);
}

#[test]
fn generated_queries_match_duckdb() {
    let mut rng = StdRng::seed_from_u64(20261125);
    let csv = table_csv(&mut rng, 3000);
    let queries: Vec<String> = (0..QUERIES).map(|_| random_query(&mut rng)).collect();
    compare_with_duckdb(&csv, &queries);
}

#[test]
fn generated_window_queries_match_duckdb() {
    let mut rng = StdRng::seed_from_u64(20261127);
    let csv = table_csv(&mut rng, 3000);
    let queries: Vec<String> = (0..WINDOW_QUERIES)
        .map(|_| random_window_query(&mut rng))
        .collect();
    compare_with_duckdb(&csv, &queries);
}

/// Runs `queries` through Quiver and DuckDB over one generated table and compares the rows.
fn compare_with_duckdb(csv: &str, queries: &[String]) {
    if !duckdb_available() {
        eprintln!("SKIPPED: python3 with the duckdb wheel is not available (pip install duckdb)");
        return;
    }
    let dir = std::env::temp_dir().join(format!(
        "quiver-duckdb-{}-{}",
        std::process::id(),
        queries.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.csv");
    std::fs::write(&path, csv).unwrap();

    let mut child = Command::new("python3")
        .args(["-c", DUCKDB_SCRIPT])
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let json = format!(
        "[{}]",
        queries
            .iter()
            .map(|q| format!("{q:?}"))
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
    let mut expected: Vec<Vec<String>> = Vec::new();
    for line in text.lines() {
        if line.starts_with("=== ") {
            expected.push(Vec::new());
        } else if let Some(current) = expected.last_mut() {
            current.push(line.to_string());
        }
    }
    assert_eq!(expected.len(), queries.len());

    let mut compared = 0;
    for (sql, duck) in queries.iter().zip(&expected) {
        if duck.first().is_some_and(|l| l.starts_with("ERROR")) {
            panic!("DuckDB rejected a generated query: {sql}: {}", duck[0]);
        }
        let ours = quiver_rows(csv.as_bytes(), sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(
            ours.len(),
            duck.len(),
            "{sql}: {} rows, DuckDB {}",
            ours.len(),
            duck.len()
        );
        for (row, (a, line)) in ours.iter().zip(duck).enumerate() {
            let b: Vec<RefValue> = line.split('\t').map(parse_cell).collect();
            assert_eq!(a.len(), b.len(), "{sql}: row {row} width");
            for (x, y) in a.iter().zip(&b) {
                assert!(same(x, y), "{sql}: row {row}: quiver {a:?}, duckdb {b:?}");
            }
        }
        compared += 1;
    }
    assert_eq!(compared, queries.len());
}
