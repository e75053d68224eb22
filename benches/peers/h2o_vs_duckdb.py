#!/usr/bin/env python3
"""The ten H2O db-benchmark groupby questions through `quiver run` and DuckDB on the same CSV
file (`quiver gen h2o`): checks the results match (as multisets, floats to 1e-6 relative) and
times both. Each engine reads the CSV file in every question, as in the TPC-H script.

Usage:
    pip install duckdb
    cargo build --release -p quiver-cli
    target/release/quiver gen h2o --rows 10000000 --keys 100 -o /tmp/h2o/G1_1e7_1e2.csv
    python3 benches/peers/h2o_vs_duckdb.py /tmp/h2o/G1_1e7_1e2.csv [q1 q6 ...]
Environment: QUIVER (the binary, default target/release/quiver), DUCKDB_THREADS (default 2),
QUIVER_THREADS (passed as RAYON_NUM_THREADS, default unset).
"""
import csv, io, os, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tpch_vs_duckdb import REPO, cell_eq, norm_duck  # noqa: E402

import duckdb  # noqa: E402

QUIVER = os.environ.get("QUIVER", os.path.join(REPO, "target", "release", "quiver"))
TIMEOUT = 600

# The questions as the db-benchmark's DuckDB solution writes them (`x` is the table).
QUESTIONS = {
    "q1": "SELECT id1, sum(v1) AS v1 FROM x GROUP BY id1",
    "q2": "SELECT id1, id2, sum(v1) AS v1 FROM x GROUP BY id1, id2",
    "q3": "SELECT id3, sum(v1) AS v1, avg(v3) AS v3 FROM x GROUP BY id3",
    "q4": "SELECT id4, avg(v1) AS v1, avg(v2) AS v2, avg(v3) AS v3 FROM x GROUP BY id4",
    "q5": "SELECT id6, sum(v1) AS v1, sum(v2) AS v2, sum(v3) AS v3 FROM x GROUP BY id6",
    "q6": "SELECT id4, id5, quantile_cont(v3, 0.5) AS median_v3, stddev(v3) AS sd_v3 "
          "FROM x GROUP BY id4, id5",
    "q7": "SELECT id3, max(v1) - min(v2) AS range_v1_v2 FROM x GROUP BY id3",
    "q8": "SELECT id6, v3 AS largest2_v3 FROM (SELECT id6, v3, row_number() OVER "
          "(PARTITION BY id6 ORDER BY v3 DESC) AS order_v3 FROM x WHERE v3 IS NOT NULL) "
          "sub_query WHERE order_v3 <= 2",
    "q9": "SELECT id2, id4, pow(corr(v1, v2), 2) AS r2 FROM x GROUP BY id2, id4",
    "q10": "SELECT id1, id2, id3, id4, id5, id6, sum(v3) AS v3, count(*) AS count "
           "FROM x GROUP BY id1, id2, id3, id4, id5, id6",
}


def run_duck(con, sql):
    t0 = time.perf_counter()
    try:
        cur = con.execute(sql)
        rows = cur.fetchall()
    except Exception as e:  # reported, not raised: one question failing keeps the others
        return None, time.perf_counter() - t0, f"{type(e).__name__}: {e}"
    return rows, time.perf_counter() - t0, None


def run_quiver(path, sql):
    args = [QUIVER, "-q", "run", "--table", f"x={path}", "--format", "csv", "--sql", sql]
    env = dict(os.environ)
    if os.environ.get("QUIVER_THREADS"):
        env["RAYON_NUM_THREADS"] = os.environ["QUIVER_THREADS"]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        return None, time.perf_counter() - t0, f"TIMEOUT after {TIMEOUT}s"
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        return None, elapsed, f"exit {p.returncode}: {p.stderr.strip()}"
    return list(csv.reader(io.StringIO(p.stdout)))[1:], elapsed, None


def sort_key(row):
    return [("" if v is None else str(v)) for v in row]


def compare(duck_rows, quiver_rows):
    """Rows as multisets: both sorted by their text, then compared cell by cell."""
    if len(duck_rows) != len(quiver_rows):
        return f"row count: duckdb {len(duck_rows)} vs quiver {len(quiver_rows)}"
    # Keys are text or integers in every question, so sorting by the printed keys pairs rows
    # up; the float aggregates follow their keys.
    duck_sorted = sorted(([norm_duck(v) for v in r] for r in duck_rows), key=lambda r: [
        str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in r])
    quiver_sorted = sorted(quiver_rows, key=lambda r: [
        str(int(float(v))) if _is_integral(v) else v for v in r])
    for d, q in zip(duck_sorted, quiver_sorted):
        if len(d) != len(q) or not all(cell_eq(a, b) for a, b in zip(d, q)):
            return f"rows differ: duckdb {d} vs quiver {q}"
    return None


def _is_integral(text):
    try:
        return float(text).is_integer()
    except ValueError:
        return False


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    names = sys.argv[2:] or list(QUESTIONS)
    con = duckdb.connect()
    con.execute(f"SET threads={int(os.environ.get('DUCKDB_THREADS', '2'))}")
    con.execute(f"CREATE VIEW x AS SELECT * FROM read_csv('{path}', header=true, auto_detect=true)")
    statuses = {}
    for name in names:
        sql = QUESTIONS[name]
        duck_rows, duck_s, duck_error = run_duck(con, sql)
        quiver_rows, quiver_s, quiver_error = run_quiver(path, sql)
        if quiver_error:
            status, detail = "QUIVER_ERROR", quiver_error
        elif duck_error:
            status, detail = "DUCKDB_ERROR", duck_error
        else:
            detail = compare(duck_rows, quiver_rows)
            status = "MISMATCH" if detail else "match"
        statuses[status] = statuses.get(status, 0) + 1
        rows = len(duck_rows) if duck_rows is not None else "-"
        print(f"{name:4s} {status:13s} quiver {quiver_s:8.3f}s  duckdb {duck_s:7.3f}s  "
              f"ratio {quiver_s / duck_s:5.2f}  rows {rows}", flush=True)
        if detail:
            print("    " + detail, flush=True)
    print("\nsummary:", statuses)


if __name__ == "__main__":
    main()
