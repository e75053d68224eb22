"""Times one SQL query over an Arrow IPC file through DuckDB and Polars, one thread each.

Usage: aggregate_peers.py FILE.arrow "SELECT ... FROM t ..."  (run with POLARS_MAX_THREADS=1)
Prints `duckdb <rows/s>` and `polars <rows/s>`: the median of 5 runs over data already loaded
in each engine's own memory (DuckDB table, Polars DataFrame), like Quiver's timing in the same
bench. An engine that cannot run the query prints `<engine> error` and the reason on stderr.
"""

import os
import statistics
import sys
import time

os.environ.setdefault("POLARS_MAX_THREADS", "1")

import duckdb  # noqa: E402
import polars as pl  # noqa: E402
import pyarrow as pa  # noqa: E402

RUNS = 5


def median_seconds(run):
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    path, sql = sys.argv[1], sys.argv[2]
    with pa.memory_map(path) as source:
        table = pa.ipc.open_file(source).read_all()
    rows = table.num_rows

    try:
        con = duckdb.connect()
        con.execute("SET threads = 1")
        con.register("arrow_input", table)
        con.execute("CREATE TABLE t AS SELECT * FROM arrow_input")
        con.unregister("arrow_input")
        seconds = median_seconds(lambda: con.execute(sql).fetchall())
        print(f"duckdb {rows / seconds:.0f}", flush=True)
    except Exception as error:  # report and go on to the next engine
        print("duckdb error", flush=True)
        print(f"duckdb: {error}", file=sys.stderr)

    try:
        frame = pl.from_arrow(table).rechunk()
        context = pl.SQLContext(t=frame)
        seconds = median_seconds(lambda: context.execute(sql, eager=True))
        print(f"polars {rows / seconds:.0f}", flush=True)
    except Exception as error:
        print("polars error", flush=True)
        print(f"polars: {error}", file=sys.stderr)


if __name__ == "__main__":
    main()
