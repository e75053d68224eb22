//! End-to-end tests of the `quiver` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

use std::path::{Path, PathBuf};
use std::process::Command;

fn quiver() -> Command {
    Command::new(env!("CARGO_BIN_EXE_quiver"))
}

fn onebrc_samples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/1brc");
    let mut samples: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt") && !p.ends_with("LICENSE.txt"))
        .collect();
    samples.sort();
    assert!(
        samples.len() >= 12,
        "1BRC samples missing from {}",
        dir.display()
    );
    samples
}

#[test]
fn onebrc_reproduces_every_official_sample_byte_for_byte() {
    for sample in onebrc_samples() {
        for threads in ["1", "2"] {
            let output = quiver()
                .args(["1brc", "--threads", threads])
                .arg(&sample)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{}: {}",
                sample.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            let expected = std::fs::read(sample.with_extension("out")).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&expected),
                "{} with {threads} threads",
                sample.display()
            );
        }
    }
}

#[test]
fn onebrc_reports_bad_lines_and_keeps_the_good_ones() {
    let dir = std::env::temp_dir().join(format!("quiver-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.txt");
    std::fs::write(&path, "Oslo;1.0\nbroken line\nOslo;3.0\nRome;12.345\n").unwrap();
    let output = quiver().arg("1brc").arg(&path).output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "{Oslo=1.0/2.0/3.0}\n"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("2 of 4 lines rejected"), "{stderr}");
    assert!(
        stderr.contains("record 2") && stderr.contains("missing ';'"),
        "{stderr}"
    );
    assert!(stderr.contains("record 4"), "{stderr}");
}

#[test]
fn missing_file_is_one_clear_line_and_exit_code_1() {
    let output = quiver()
        .args(["1brc", "/no/such/file.txt"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: /no/such/file.txt: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn generated_1brc_data_round_trips_through_the_parser() {
    let dir = std::env::temp_dir().join(format!("quiver-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.txt");
    let status = quiver()
        .args([
            "gen", "1brc", "--rows", "100000", "--keys", "50", "--seed", "7", "--quiet", "-o",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 100_000);
    let output = quiver().arg("1brc").arg(&path).output().unwrap();
    assert!(output.status.success());
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stations = String::from_utf8_lossy(&output.stdout).matches('=').count();
    assert_eq!(stations, 50);
    // Same seed, same bytes.
    let again = dir.join("m2.txt");
    quiver()
        .args([
            "gen", "1brc", "--rows", "100000", "--keys", "50", "--seed", "7", "--quiet", "-o",
        ])
        .arg(&again)
        .status()
        .unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&again).unwrap()
    );
}

#[test]
fn demo_runs_and_accounts_for_every_record() {
    let output = quiver()
        .args(["demo", "--rows", "20000", "--quiet"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("Every record accounted for: 20000 counted of 20000 generated."),
        "{stdout}"
    );
    assert!(stdout.contains("M records/s"));
}

#[test]
fn usage_error_exits_2() {
    let output = quiver().arg("no-such-command").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    // A --table value without NAME=PATH is a usage error too.
    let output = quiver()
        .args(["run", "--table", "t", "--sql", "SELECT 1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("expected NAME=PATH"));
    // The same table name twice is refused rather than one of them ignored.
    let dir = temp_dir("twice");
    let path = dir.join("t.csv");
    std::fs::write(&path, "a\n1\n").unwrap();
    let table = format!("t={}", path.display());
    let output = quiver()
        .args([
            "run",
            "--sql",
            "SELECT a FROM t",
            "--table",
            &table,
            "--table",
            &table,
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("given more than once"));
    // Names differing only in case are the same table, for `explain` as for `run`.
    let other = format!("T={}", path.display());
    let output = quiver()
        .args([
            "explain",
            "--sql",
            "SELECT a FROM t",
            "--table",
            &table,
            "--table",
            &other,
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("given more than once"));
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quiver-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn run_csv_to_csv_with_group_by_order_and_quoting() {
    let dir = temp_dir("run");
    let path = dir.join("t.csv");
    std::fs::write(
        &path,
        "symbol,price,quantity\nAAPL,189.5,10\nMSFT,400.25,5\nAAPL,190.0,\n\"GOO,G\",100.125,7\n",
    )
    .unwrap();
    let output = quiver()
        .args(["run", "--table"])
        .arg(format!("t={}", path.display()))
        .args([
            "--sql",
            "SELECT symbol, COUNT(*) AS n, SUM(quantity) AS q, AVG(price) AS p FROM t GROUP BY symbol ORDER BY symbol",
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "symbol,n,q,p\nAAPL,2,10,189.75\n\"GOO,G\",1,7,100.125\nMSFT,1,5,400.25\n"
    );
}

#[test]
fn run_joins_a_directory_of_orders_with_a_customer_file() {
    let dir = temp_dir("join");
    let orders = dir.join("orders");
    std::fs::create_dir_all(&orders).unwrap();
    std::fs::write(
        orders.join("a.csv"),
        "id,cust,amount\n1,10,5\n2,11,7\n3,,1\n",
    )
    .unwrap();
    std::fs::write(orders.join("b.csv"), "id,cust,amount\n4,10,2\n5,12,9\n").unwrap();
    std::fs::write(
        dir.join("customers.jsonl"),
        "{\"cust\": 10, \"name\": \"ann\"}\n{\"cust\": 11, \"name\": \"bob\"}\n",
    )
    .unwrap();
    let output = quiver()
        .args(["run", "--format", "csv", "--table"])
        .arg(format!("o={}", orders.display()))
        .arg("--table")
        .arg(format!("c={}", dir.join("customers.jsonl").display()))
        .args([
            "--sql",
            "SELECT o.id, c.name, o.amount FROM o LEFT JOIN c ON o.cust = c.cust ORDER BY o.id",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "id,name,amount\n1,ann,5\n2,bob,7\n3,,1\n4,ann,2\n5,,9\n"
    );
    // A self-join of one CSV file (a single file is otherwise streamed, not held).
    let output = quiver()
        .args(["run", "--format", "csv", "--table"])
        .arg(format!("o={}", orders.join("a.csv").display()))
        .args([
            "--sql",
            "SELECT a.id, b.id AS other FROM o a JOIN o b ON a.cust = b.cust ORDER BY a.id",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "id,other\n1,1\n2,2\n"
    );
    // Set operations and comma joins read every table they name, held.
    let union =
        "SELECT cust FROM o UNION SELECT cust FROM c EXCEPT SELECT 11 ORDER BY 1 NULLS LAST";
    let comma = "SELECT o.id, c.name FROM o, c WHERE o.cust = c.cust AND o.amount > 2 ORDER BY 1";
    for (sql, expected) in [
        // A NULL in a one-column row is an empty line, as DuckDB writes it.
        (union, "cust\n10\n12\n\n"),
        (comma, "id,name\n1,ann\n2,bob\n"),
    ] {
        let output = quiver()
            .args(["run", "--format", "csv", "--table"])
            .arg(format!("o={}", orders.display()))
            .arg("--table")
            .arg(format!("c={}", dir.join("customers.jsonl").display()))
            .args(["--sql", sql])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout), expected, "{sql}");
    }
}

#[test]
fn run_over_a_directory_equals_run_over_the_concatenated_file() {
    let dir = temp_dir("parts");
    let parts = dir.join("parts");
    std::fs::create_dir_all(&parts).unwrap();
    let mut all = String::from("k,v\n");
    for part in 0..3 {
        let mut text = String::from("k,v\n");
        for i in 0..200 {
            let line = format!("key{},{}\n", (i * 7 + part) % 13, i * part - 50);
            text.push_str(&line);
            all.push_str(&line);
        }
        std::fs::write(parts.join(format!("p{part}.csv")), text).unwrap();
    }
    std::fs::write(dir.join("all.csv"), all).unwrap();
    let sql = "SELECT k, COUNT(*) AS n, SUM(v) AS s, MIN(v) AS lo, MAX(v) AS hi FROM t GROUP BY k ORDER BY k";
    let run = |path: &Path| {
        let output = quiver()
            .args(["run", "--format", "csv", "--sql", sql, "--table"])
            .arg(format!("t={}", path.display()))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    };
    assert_eq!(run(&parts), run(&dir.join("all.csv")));
    // A glob picks the same files.
    assert_eq!(run(&parts.join("p*.csv")), run(&dir.join("all.csv")));
}

#[test]
fn empty_tables_and_columns_empty_in_the_sample_lose_nothing() {
    let dir = temp_dir("sparse");
    // Column `b` is empty in every record schema inference sees (the first 1000), then holds
    // values: they must be read, not turned into NULLs or rejected.
    let mut csv = String::from("a,b\n");
    let mut jsonl = String::new();
    for _ in 0..1200 {
        csv.push_str("x,\n");
        jsonl.push_str("{\"a\":\"x\",\"b\":null}\n");
    }
    csv.push_str("y,5\ny,17\n");
    jsonl.push_str("{\"a\":\"y\",\"b\":5}\n{\"a\":\"y\",\"b\":17}\n");
    std::fs::write(dir.join("sparse.csv"), csv).unwrap();
    std::fs::write(dir.join("sparse.jsonl"), jsonl).unwrap();
    std::fs::write(dir.join("header_only.csv"), "a,b\n").unwrap();
    // The same through the whole-file path (a directory of partitions).
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::write(dir.join("empty").join("part.csv"), "a,b\n").unwrap();
    let run = |file: &str, sql: &str| {
        let output = quiver()
            .args(["run", "--format", "csv", "--sql", sql, "--table"])
            .arg(format!("t={}", dir.join(file).display()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(output.status.success(), "{file}: {stderr}");
        assert!(!stderr.contains("rejected"), "{file}: {stderr}");
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    let sql = "SELECT a, COUNT(*) AS n, COUNT(b) AS nb, MIN(b) AS lo, MAX(b) AS hi \
               FROM t GROUP BY a ORDER BY a";
    // Text, as the sample gave no type: "17" < "5".
    let expected = "a,n,nb,lo,hi\nx,1200,0,,\ny,2,2,17,5\n";
    assert_eq!(run("sparse.csv", sql), expected);
    assert_eq!(run("sparse.jsonl", sql), expected);
    // A header without records is an empty table with the header's columns.
    assert_eq!(
        run(
            "header_only.csv",
            "SELECT COUNT(*) AS n, COUNT(b) AS nb FROM t"
        ),
        "n,nb\n0,0\n"
    );
    assert_eq!(
        run(
            "header_only.csv",
            "SELECT a, COUNT(*) AS n FROM t GROUP BY a"
        ),
        "a,n\n"
    );
    assert_eq!(run("empty", "SELECT COUNT(*) AS n FROM t"), "n\n0\n");
}

#[test]
fn files_whose_columns_infer_differently_read_like_one_file() {
    let dir = temp_dir("unify");
    let (csv, jsonl) = (dir.join("csv"), dir.join("jsonl"));
    std::fs::create_dir_all(&csv).unwrap();
    std::fs::create_dir_all(&jsonl).unwrap();
    // `y` is integral in one file, fractional in another, empty in a third.
    std::fs::write(csv.join("a.csv"), "x,y\n1,2\n").unwrap();
    std::fs::write(csv.join("b.csv"), "x,y\n3,4.5\n").unwrap();
    std::fs::write(csv.join("c.csv"), "x,y\n5,\n").unwrap();
    std::fs::write(jsonl.join("a.jsonl"), "{\"x\":1,\"y\":2}\n").unwrap();
    std::fs::write(jsonl.join("b.jsonl"), "{\"x\":3,\"y\":4.5}\n").unwrap();
    std::fs::write(jsonl.join("c.jsonl"), "{\"x\":5}\n").unwrap();
    for source in [&csv, &jsonl] {
        let output = quiver()
            .args(["run", "--format", "csv", "--sql"])
            .arg("SELECT SUM(x) AS sx, SUM(y) AS sy, COUNT(y) AS ny FROM t")
            .arg("--table")
            .arg(format!("t={}", source.display()))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "sx,sy,ny\n9,6.5,2\n"
        );
    }
    // CSV files with different headers are refused, naming the file.
    std::fs::write(csv.join("d.csv"), "x,z\n1,2\n").unwrap();
    let output = quiver()
        .args(["run", "--sql", "SELECT COUNT(*) FROM t", "--table"])
        .arg(format!("t={}", csv.display()))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("d.csv: columns [x, z] differ from [x, y]"),
        "{stderr}"
    );
}

#[test]
fn run_reports_bad_sql_and_malformed_rows_clearly() {
    let dir = temp_dir("bad");
    let path = dir.join("t.jsonl");
    std::fs::write(&path, "{\"a\":1}\n{not json\n{\"a\":2}\n").unwrap();
    let output = quiver()
        .args(["run", "--sql", "SELECT a, nope FROM t", "--table"])
        .arg(format!("t={}", path.display()))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown column `nope` at line 1, column 11"),
        "{stderr}"
    );
    let output = quiver()
        .args([
            "run",
            "--format",
            "csv",
            "--sql",
            "SELECT SUM(a) AS s FROM t",
            "--table",
        ])
        .arg(format!("t={}", path.display()))
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), "s\n3\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 records rejected") && stderr.contains("record 2"),
        "{stderr}"
    );
}

#[test]
fn h2o_groupby_table_has_the_published_shape_and_runs_q1() {
    let dir = temp_dir("h2o");
    let path = dir.join("G1_1e4_1e1.csv");
    let status = quiver()
        .args([
            "gen", "h2o", "--rows", "10000", "--keys", "10", "--seed", "3", "--quiet", "-o",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id1,id2,id3,id4,id5,id6,v1,v2,v3"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 10_000);
    for row in &rows {
        let fields: Vec<&str> = row.split(',').collect();
        assert_eq!(fields.len(), 9, "{row}");
        assert!(fields[0].starts_with("id") && fields[0].len() == 5, "{row}");
        assert_eq!(fields[2].len(), 12, "{row}");
        let v1: i64 = fields[6].parse().unwrap();
        assert!((1..=5).contains(&v1));
        let v3: f64 = fields[8].parse().unwrap();
        assert!((0.0..100.0).contains(&v3));
    }
    // H2O groupby q1: sum v1 by id1 — K groups, and the sums add up to the column total.
    let output = quiver()
        .arg("run")
        .arg("--table")
        .arg(format!("x={}", path.display()))
        .args([
            "--sql",
            "SELECT id1, SUM(v1) AS v1 FROM x GROUP BY id1 ORDER BY id1",
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result = String::from_utf8(output.stdout).unwrap();
    let groups: Vec<&str> = result.lines().skip(1).collect();
    assert_eq!(groups.len(), 10);
    let total: i64 = groups
        .iter()
        .map(|l| l.split(',').nth(1).unwrap().parse::<i64>().unwrap())
        .sum();
    let expected: i64 = rows
        .iter()
        .map(|r| r.split(',').nth(6).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, expected);
}

#[test]
fn run_streams_a_window_query_and_reports_late_rows() {
    let dir = temp_dir("window");
    let path = dir.join("events.csv");
    std::fs::write(
        &path,
        "k,t,v\na,1000,1\nb,2000,2\na,61000,3\na,3000,4\nb,125000,5\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        quiver()
            .arg("run")
            .arg("--table")
            .arg(format!("s={}", path.display()))
            .args([
                "--format",
                "csv",
                "--sql",
                "SELECT k, COUNT(*) AS n, SUM(v) AS total FROM s GROUP BY k \
                 WINDOW TUMBLING(t, INTERVAL '1' MINUTE)",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let output = run(&[]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "window_start,window_end,k,n,total\n0,60000,a,1,1\n0,60000,b,1,2\n\
         60000,120000,a,1,3\n120000,180000,b,1,5\n"
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("1 dead-lettered"), "{stderr}");
    assert!(stderr.contains("\"t\":3000"), "{stderr}");
    // Corrections instead: the late row updates its closed window.
    let output = run(&["--late-policy", "update-closed", "--window-partitions", "2"]);
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("0,60000,a,2,5,"), "{stdout}");
}

#[test]
fn generated_trades_in_csv_and_json_lines_give_the_same_answers() {
    let dir = temp_dir("trades");
    let generate = |name: &str| {
        let path = dir.join(name);
        let status = quiver()
            .args([
                "gen", "trades", "--rows", "5000", "--keys", "20", "--seed", "9", "--quiet", "-o",
            ])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        path
    };
    let csv = generate("trades.csv");
    let jsonl = generate("trades.jsonl");
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert!(csv_text.starts_with("trader_id,symbol,price,quantity,trade_time,category,amount\n"));
    assert!(csv_text
        .lines()
        .nth(1)
        .unwrap()
        .contains(",2026-01-01T00:00:00."));
    let run = |path: &std::path::Path, sql: &str| {
        let output = quiver()
            .arg("run")
            .arg("--table")
            .arg(format!("t={}", path.display()))
            .args(["--sql", sql, "--format", "csv"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let sql = "SELECT symbol, COUNT(*) AS n, SUM(quantity) AS q, SUM(amount) AS a, \
               COUNT(DISTINCT trader_id) AS traders FROM t GROUP BY symbol ORDER BY symbol";
    let from_csv = run(&csv, sql);
    assert_eq!(from_csv, run(&jsonl, sql));
    assert!(from_csv.lines().count() > 2, "{from_csv}");
    // The CSV's ISO 8601 times are event times for a window.
    let windows = run(
        &csv,
        "SELECT COUNT(*) AS n FROM t GROUP BY symbol WINDOW TUMBLING(trade_time, INTERVAL '10' SECOND)",
    );
    let total: u64 = windows
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 5000);

    let output = quiver()
        .args(["gen", "trades", "--rows", "10", "--quiet", "-o"])
        .arg(dir.join("trades.parquet"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("goes to a .csv or .jsonl"), "{stderr}");
}

/// `quiver run` of `sql` over CSV on stdin (`s=-`): the child, its open stdin, and its output
/// lines as they come.
fn run_over_a_pipe(
    sql: &str,
) -> (
    std::process::Child,
    std::process::ChildStdin,
    std::sync::mpsc::Receiver<String>,
) {
    use std::io::BufRead;
    let mut child = quiver()
        .args([
            "run",
            "--table",
            "s=-",
            "--input-format",
            "csv",
            "--format",
            "csv",
        ])
        .args(["--sql", sql])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if lines_sender.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    (child, stdin, lines)
}

#[test]
fn a_window_query_over_stdin_answers_before_the_input_ends() {
    use std::io::Write;
    let (mut child, mut stdin, lines) = run_over_a_pipe(
        "SELECT k, COUNT(*) AS n, SUM(v) AS total FROM s GROUP BY k \
         WINDOW TUMBLING(t, INTERVAL '1' MINUTE)",
    );
    // More rows than schema inference waits for, all in the first minute, then one row that
    // closes it; the input stays open.
    let mut text = String::from("k,t,v\n");
    for t in 0..1500 {
        text.push_str(&format!("a,{t},1\n"));
    }
    text.push_str("a,60000,1\n");
    stdin.write_all(text.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let wait = std::time::Duration::from_secs(60);
    assert_eq!(
        lines.recv_timeout(wait).unwrap(),
        "window_start,window_end,k,n,total"
    );
    assert_eq!(lines.recv_timeout(wait).unwrap(), "0,60000,a,1500,1500");
    stdin.write_all(b"b,125000,5\n").unwrap();
    drop(stdin);
    let rest: Vec<String> = lines.iter().collect();
    assert_eq!(rest, vec!["60000,120000,a,1,1", "120000,180000,b,1,5"]);
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_filter_over_stdin_answers_before_the_input_ends() {
    use std::io::Write;
    let (mut child, mut stdin, lines) = run_over_a_pipe("SELECT k, v FROM s WHERE v % 1000 = 0");
    let mut text = String::from("k,v\n");
    for v in 1..=2500 {
        text.push_str(&format!("a,{v}\n"));
    }
    stdin.write_all(text.as_bytes()).unwrap();
    stdin.flush().unwrap();
    // The matching rows come out while the input is still open.
    let wait = std::time::Duration::from_secs(60);
    for expected in ["k,v", "a,1000", "a,2000"] {
        assert_eq!(lines.recv_timeout(wait).unwrap(), expected);
    }
    stdin.write_all(b"b,3000\nb,3001\n").unwrap();
    drop(stdin);
    let rest: Vec<String> = lines.iter().collect();
    assert_eq!(rest, vec!["b,3000"]);
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_query_without_from_reads_one_row_and_needs_no_table() {
    let output = quiver()
        .args([
            "run",
            "--format",
            "csv",
            "--sql",
            "SELECT ROUND(2.675, 2) AS d, ROUND(CAST(2.675 AS DOUBLE), 2) AS f, COUNT(*) AS n",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "d,f,n\n2.68,2.67,1\n"
    );
    // A FROM naming a table that was not given is still an error.
    let output = quiver()
        .args(["run", "--sql", "SELECT a FROM t"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown table `t`"));
}

#[test]
fn a_held_table_of_many_chunks_keeps_order_and_dead_letter_positions() {
    // Over 1 MiB of CSV: the joined file decodes in several chunks, in parallel.
    let dir = temp_dir("held-chunks");
    let mut text = String::from("id,k\n");
    let rows = 150_000u64;
    for id in 1..=rows {
        if id == 120_000 {
            text.push_str("not a number,1\n");
        }
        text.push_str(&format!("{id},{}\n", id % 7));
    }
    std::fs::write(dir.join("t.csv"), &text).unwrap();
    std::fs::write(dir.join("k.csv"), "k,name\n1,one\n3,three\n").unwrap();
    let output = quiver()
        .args(["run", "--format", "csv", "--table"])
        .arg(format!("t={}", dir.join("t.csv").display()))
        .arg("--table")
        .arg(format!("k={}", dir.join("k.csv").display()))
        .args([
            "--sql",
            "SELECT k.name, COUNT(*) AS n, SUM(t.id) AS total, MIN(t.id) AS first \
             FROM t JOIN k ON t.k = k.k GROUP BY k.name ORDER BY k.name",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let expected = |k: u64| {
        let ids: Vec<u64> = (1..=rows).filter(|id| id % 7 == k).collect();
        format!("{},{},{}", ids.len(), ids.iter().sum::<u64>(), ids[0])
    };
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!(
            "name,n,total,first\none,{}\nthree,{}\n",
            expected(1),
            expected(3)
        )
    );
    // The header is line 1, so the bad row is record 120 001 of the file.
    assert!(stderr.contains("record 120001"), "{stderr}");
    assert!(
        stderr.contains("1 records rejected (dead letters), 150000 accepted"),
        "{stderr}"
    );
}

#[test]
fn csv_output_tells_empty_strings_from_nulls_and_json_keeps_null_columns() {
    let run = |format: &str| {
        let output = quiver()
            .args([
                "run",
                "--sql",
                "SELECT '' AS e, NULL AS n, 'a\"b' AS q, 1 AS i",
                "--format",
                format,
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert_eq!(run("csv"), "e,n,q,i\n\"\",,\"a\"\"b\",1\n");
    assert_eq!(
        run("json"),
        "{\"e\":\"\",\"n\":null,\"q\":\"a\\\"b\",\"i\":1}\n"
    );
}

#[test]
fn directories_skip_hidden_and_empty_files() {
    let dir = temp_dir("hidden-empty");
    let parts = dir.join("parts");
    std::fs::create_dir_all(&parts).unwrap();
    std::fs::write(parts.join("1.csv"), "a,b\n1,x\n2,y\n").unwrap();
    std::fs::write(parts.join("2.csv"), "a,b\n").unwrap();
    std::fs::write(parts.join("3.csv"), "").unwrap();
    std::fs::write(parts.join(".hidden.csv"), "a,b\n100,z\n").unwrap();
    let output = quiver()
        .args(["run", "--quiet", "--table"])
        .arg(format!("t={}", parts.display()))
        .args([
            "--sql",
            "SELECT COUNT(*) AS n, SUM(a) AS s FROM t",
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "n,s\n2,3\n");
}

#[test]
fn csv_columns_the_query_never_names_are_not_parsed() {
    let dir = temp_dir("projection");
    let path = dir.join("t.csv");
    let mut text = String::from("a,c\n");
    for i in 0..1100 {
        // Past the 1000 records schema inference reads, `c` holds a value that is no number.
        let c = if i == 1050 {
            "oops".to_string()
        } else {
            format!("{i}.5")
        };
        text.push_str(&format!("{i},{c}\n"));
    }
    std::fs::write(&path, text).unwrap();
    let run = |sql: &str| {
        let output = quiver()
            .args(["run", "--format", "csv", "--table"])
            .arg(format!("t={}", path.display()))
            .args(["--sql", sql])
            .output()
            .unwrap();
        assert!(output.status.success(), "{sql}");
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // `c` is not read: every record counts.
    let (out, err) = run("SELECT COUNT(*) AS n, SUM(a) AS s FROM t");
    assert_eq!(out, "n,s\n1100,604450\n", "{err}");
    assert!(!err.contains("dead letter"), "{err}");
    let (out, err) = run("SELECT COUNT(*) AS n FROM t");
    assert_eq!(out, "n\n1100\n", "{err}");
    // `c` is read: its bad value is a dead letter with its line.
    let (out, err) = run("SELECT COUNT(*) AS n, SUM(c) AS s FROM t");
    assert!(out.starts_with("n,s\n1099,"), "{out}");
    assert!(err.contains("record 1052"), "{err}");
}

#[test]
fn an_unknown_column_lists_every_column_of_the_table() {
    let dir = temp_dir("unknown-column");
    let path = dir.join("t.csv");
    std::fs::write(&path, "id,x,a\n1,2,3\n").unwrap();
    let output = quiver()
        .args(["run", "--table"])
        .arg(format!("t={}", path.display()))
        .args(["--sql", "SELECT amout FROM t"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("columns are: id, x, a"), "{stderr}");
}

/// `quiver run` of `sql` over `path` as a file and the same bytes on stdin: (stdout, stderr)
/// of each; `threads` workers.
fn run_as_file_and_on_stdin(
    path: &Path,
    sql: &str,
    threads: usize,
) -> ((String, String), (String, String)) {
    let text = std::fs::read(path).unwrap();
    let file = quiver()
        .env("RAYON_NUM_THREADS", threads.to_string())
        .args(["run", "--format", "csv", "--table"])
        .arg(format!("t={}", path.display()))
        .args(["--sql", sql])
        .output()
        .unwrap();
    let mut child = quiver()
        .env("RAYON_NUM_THREADS", threads.to_string())
        .args([
            "run",
            "--format",
            "csv",
            "--input-format",
            "csv",
            "--table",
            "t=-",
        ])
        .args(["--sql", sql])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&text).unwrap();
    });
    let piped = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        file.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&file.stderr)
    );
    assert!(
        piped.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&piped.stderr)
    );
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        (text(&file.stdout), text(&file.stderr)),
        (text(&piped.stdout), text(&piped.stderr)),
    )
}

#[test]
fn a_large_file_runs_in_partitions_like_one_pass_over_its_bytes() {
    // About 3 MiB of CSV: several chunks on every worker, quoted fields with newlines, commas and
    // quotes, and malformed rows spread over the file.
    let dir = temp_dir("partitioned-file");
    let mut text = String::from("id,k,name,v\n");
    let rows = 60_000u64;
    for id in 1..=rows {
        if id % 14_989 == 0 {
            text.push_str(&format!("{id},{},oops,not a number\n", id % 100));
        }
        let name = if id % 13 == 0 {
            format!("\"n{id}, \"\"q\"\"\nline two\"")
        } else {
            format!("name number {id}")
        };
        text.push_str(&format!(
            "{id},{},{name},{}\n",
            (id * 7919) % 1000,
            (id * 31) % 10_007
        ));
    }
    let path = dir.join("t.csv");
    std::fs::write(&path, &text).unwrap();
    let queries = [
        // Group order, arrival order and exact sums as in one pass.
        "SELECT k, COUNT(*) AS n, SUM(v) AS total, FIRST_VALUE(name) AS first_name, \
         LAST_VALUE(id) AS last_id, STRING_AGG(CAST(id AS VARCHAR), '|') AS ids \
         FROM t WHERE id % 3 = 0 GROUP BY k",
        "SELECT id, name FROM t WHERE v % 97 = 0 ORDER BY v DESC, id LIMIT 50",
        "SELECT id, v, name FROM t WHERE v % 1013 = 0",
        "SELECT k, id, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC) AS r FROM t \
         QUALIFY r <= 2",
        "SELECT COUNT(*) AS groups FROM (SELECT k FROM t GROUP BY k HAVING SUM(v) > 500000)",
        // A group per row: decoded in parallel, aggregated in one partition.
        "SELECT id, MAX(v) AS v, MIN(name) AS name FROM t GROUP BY id",
    ];
    for (threads, sql) in [2, 3].into_iter().flat_map(|t| queries.map(|q| (t, q))) {
        let ((file_out, file_err), (piped_out, piped_err)) =
            run_as_file_and_on_stdin(&path, sql, threads);
        assert!(file_out.lines().count() > 1, "{sql}: {file_out}");
        assert_eq!(file_out, piped_out, "{sql} on {threads} threads");
        let file_err = file_err.replace(&path.display().to_string(), "-");
        assert_eq!(file_err, piped_err, "{sql} on {threads} threads");
        assert!(
            file_err.contains("4 records rejected (dead letters), 60000 accepted"),
            "{file_err}"
        );
    }
}
