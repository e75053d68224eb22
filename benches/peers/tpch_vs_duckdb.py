#!/usr/bin/env python3
"""The 22 TPC-H queries (tests/tpch/*.sql) through `quiver run` and DuckDB on the same CSV
files: checks the results match and times both (wall time; each engine reads the CSV files in
every query: DuckDB through views over read_csv, Quiver through --table).

Usage:
    pip install duckdb tpchgen-cli
    tpchgen-cli csv -s 0.1 --output-dir /tmp/tpch
    cargo build --release -p quiver-cli
    python3 benches/peers/tpch_vs_duckdb.py /tmp/tpch [q01 q05 ...]
    python3 benches/peers/tpch_vs_duckdb.py /tmp/tpch --sql FILE   (one query, both outputs)
Environment: QUIVER (the binary, default target/release/quiver), DUCKDB_THREADS (default 2),
DUCK_TABLES=1 (DuckDB reads tables loaded in memory first instead of the CSV files).
"""
import csv, io, math, os, re, subprocess, sys, time, datetime, decimal, json
import duckdb

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QDIR = os.path.join(REPO, "tests", "tpch")
QUIVER = os.environ.get("QUIVER", os.path.join(REPO, "target", "release", "quiver"))
HERE = sys.argv[1] if len(sys.argv) > 1 else "/tmp/tpch"
TABLES = ["lineitem", "orders", "customer", "part", "partsupp", "supplier", "nation", "region"]
TIMEOUT = 300
RTOL = ATOL = 1e-6

def tables_in(sql):
    return [t for t in TABLES if re.search(r"\b%s\b" % t, sql, re.I)]

_con = None
def duck():
    global _con
    if _con is None:
        _con = duckdb.connect()
        _con.execute(f"SET threads={int(os.environ.get('DUCKDB_THREADS', '2'))}")
        for t in TABLES:
            # Views over the CSV files: DuckDB's time includes CSV parsing, as Quiver's does.
            kind = "TABLE" if os.environ.get("DUCK_TABLES") else "VIEW"
            _con.execute(f"CREATE {kind} {t} AS SELECT * FROM read_csv('{HERE}/{t}.csv', header=true, auto_detect=true)")
    return _con

def run_duck(sql):
    con = duck()
    t0 = time.perf_counter()
    try:
        cur = con.execute(sql)
        rows = cur.fetchall()
        cols = [d[0] for d in cur.description]
    except Exception as e:
        return None, None, time.perf_counter() - t0, f"{type(e).__name__}: {e}"
    return cols, rows, time.perf_counter() - t0, None

def run_quiver(sql):
    args = [QUIVER, "-q", "run"]
    for t in tables_in(sql):
        args += ["--table", f"{t}={HERE}/{t}.csv"]
    args += ["--format", "csv", "--sql", sql]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, None, time.perf_counter() - t0, f"TIMEOUT after {TIMEOUT}s"
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        return None, None, dt, f"exit {p.returncode}: {p.stderr.strip()}"
    r = list(csv.reader(io.StringIO(p.stdout)))
    if not r:
        return [], [], dt, None
    return r[0], r[1:], dt, None

def norm_duck(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, decimal.Decimal)):
        return float(v)
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    return str(v)

def cell_eq(d, q):
    # d: normalized duckdb value, q: quiver CSV string
    if d is None:
        return q == "" or q.upper() == "NULL"
    if isinstance(d, float):
        try:
            qf = float(q)
        except ValueError:
            return False
        if math.isnan(d) and math.isnan(qf):
            return True
        return abs(d - qf) <= ATOL + RTOL * max(abs(d), abs(qf))
    return d == q

def fmt_row(r, n=10):
    s = repr(list(r))
    return s if len(s) < 400 else s[:400] + "...]"

def compare(dcols, drows, qcols, qrows):
    if len(dcols) != len(qcols):
        return f"column count: duckdb {len(dcols)} {dcols} vs quiver {len(qcols)} {qcols}"
    nd = [[norm_duck(v) for v in r] for r in drows]
    for i, (a, b) in enumerate(zip(nd, qrows)):
        if len(b) != len(a) or not all(cell_eq(x, y) for x, y in zip(a, b)):
            return (f"row {i} differs (duckdb {len(nd)} rows, quiver {len(qrows)} rows)\n"
                    f"      duckdb: {fmt_row(drows[i])}\n      quiver: {fmt_row(b)}")
    if len(nd) != len(qrows):
        i = min(len(nd), len(qrows))
        extra = ("duckdb: " + fmt_row(drows[i])) if len(nd) > i else ("quiver: " + fmt_row(qrows[i]))
        return f"row count: duckdb {len(nd)} vs quiver {len(qrows)}; first extra row {extra}"
    return None

def main():
    argv = sys.argv[2:]
    if argv and argv[0] == "--sql":
        sql = open(argv[1]).read()
        dc, dr, dt, de = run_duck(sql)
        print("DUCKDB", f"{dt:.3f}s", de or "")
        if dc: print(dc); [print(r) for r in dr[:50]]
        qc, qr, qt, qe = run_quiver(sql)
        print("QUIVER", f"{qt:.3f}s", qe or "")
        if qc: print(qc); [print(r) for r in qr[:50]]
        if dc is not None and qc is not None:
            print("COMPARE:", compare(dc, dr, qc, qr) or "match")
        return
    names = argv or sorted(f[:-4] for f in os.listdir(QDIR) if re.fullmatch(r"q\d\d\.sql", f))
    t0 = time.perf_counter(); duck(); print(f"duckdb load: {time.perf_counter()-t0:.1f}s", flush=True)
    results = []
    for n in names:
        sql = open(os.path.join(QDIR, n + ".sql")).read().strip().rstrip(";")
        dc, dr, dt, de = run_duck(sql)
        qc, qr, qt, qe = run_quiver(sql)
        if qe:
            status, detail = "QUIVER_ERROR", qe
        elif de:
            status, detail = "DUCKDB_ERROR", de
        else:
            detail = compare(dc, dr, qc, qr)
            status = "MISMATCH" if detail else "match"
        nrows = len(dr) if dr is not None else "-"
        results.append(dict(query=n, status=status, quiver_s=round(qt, 3), duckdb_s=round(dt, 3), rows=nrows, detail=detail))
        print(f"{n}  {status:13s} quiver {qt:8.3f}s  duckdb {dt:7.3f}s  rows {nrows}", flush=True)
        if detail:
            print("    " + detail, flush=True)
    print("\nsummary:", {s: sum(r["status"] == s for r in results) for s in sorted({r["status"] for r in results})})

if __name__ == "__main__":
    main()
