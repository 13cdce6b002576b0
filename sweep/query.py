"""``python -m sweep.query "SQL"``: DuckDB over the results directory.

Views: ``cells`` (every cell row, hive columns ``experiment`` and ``date`` included)
and ``runs`` (one row per sweep run), over a hard-linked snapshot of the store's files
(sweep/store.py), so a compaction or another run never makes a query fail or count a
row twice. Unreadable files are quarantined with a warning. Output: an aligned table
(default), csv, json (one object per row in a list) or parquet (``--output FILE``
required; written under a temporary name and renamed). Bad SQL, a missing results
directory or a missing output directory is one ``error:`` line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import weakref
from pathlib import Path

import duckdb

from sweep import exit_on_broken_pipe
from sweep.store import Snapshot, StoreError, migrate, require_dir, tmp_name, verify

# Column lists for the views when no file exists yet, so queries still bind.
_EMPTY_CELLS = ("experiment VARCHAR, date DATE, run_id VARCHAR, cell_key VARCHAR, status VARCHAR, "
                "error VARCHAR")
_EMPTY_RUNS = "run_id VARCHAR, experiment VARCHAR, status VARCHAR, exit_status BIGINT, date DATE"
# Hive partition columns have one type whatever their values look like.
_HIVE = {"cells": "hive_partitioning = true, union_by_name = true, "
                  "hive_types = {'experiment': VARCHAR, 'date': DATE}",
         "runs": "hive_partitioning = true, union_by_name = true, hive_types = {'date': DATE}"}
# DuckDB errors about the SQL itself, never about a file.
_SQL_ERRORS = (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException,
               duckdb.ConversionException, duckdb.NotImplementedException)


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def connect(results: Path | str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with views ``cells`` and ``runs`` over a snapshot of ``results``.

    Raises StoreError when the directory does not exist. The snapshot lives as long as
    the connection.
    """
    root = require_dir(results)
    migrate(root)
    snap = Snapshot(root)
    con = duckdb.connect(":memory:")
    weakref.finalize(con, snap.close)
    con_snapshots[id(con)] = snap
    for view, files, empty in (("cells", snap.cells, _EMPTY_CELLS), ("runs", snap.runs, _EMPTY_RUNS)):
        if files:
            listed = ", ".join(_quote(str(f)) for f in files)
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet([{listed}], {_HIVE[view]})")
        else:
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM (SELECT NULL::VARCHAR AS x) "
                        f"JOIN (SELECT {_null_columns(empty)}) ON false")
    return con


# id(connection) -> its Snapshot, for quarantining what a failed query could not read.
con_snapshots = weakref.WeakValueDictionary()


def quarantine_unreadable(con) -> int:
    """After a query failed on a file: read each file of the connection's snapshot
    whole and quarantine what fails. Returns how many were moved."""
    snap = con_snapshots.get(id(con)) if con is not None else None
    if snap is None:
        return 0
    return verify(snap.results, [snap.original(p) for p in snap.cells + snap.runs])


def _null_columns(spec: str) -> str:
    cols = [c.strip().split() for c in spec.split(",")]
    return ", ".join(f"NULL::{typ} AS {name}" for name, typ in cols)


def format_table(columns: list, rows: list) -> str:
    """Aligned text: numbers right-aligned, everything else left-aligned."""
    def cell(v):
        if v is None:
            return "NULL"
        if isinstance(v, float):
            return f"{v:.6g}"
        return str(v).replace("\n", " ")

    text = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in text]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) and rows
               for i in range(len(columns))]
    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()
    out = [line(columns), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in text]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sweep.query", description=__doc__.splitlines()[0])
    ap.add_argument("sql", help="a DuckDB query over the views cells and runs")
    ap.add_argument("--results", default="./results", help="results directory (default ./results)")
    ap.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    ap.add_argument("--output", help="write to this file instead of stdout (required for parquet)")
    args = ap.parse_args(argv)
    if args.format == "parquet" and not args.output:
        print("error: --format parquet needs --output FILE", file=sys.stderr)
        return 2
    if args.output and not Path(args.output).resolve().parent.is_dir():
        print(f"error: --output: directory {Path(args.output).parent} does not exist", file=sys.stderr)
        return 2
    con = None
    for attempt in range(3):
        try:
            con = connect(args.results)
            rel = con.sql(args.sql)
            if rel is None:
                return 0
            if args.format == "parquet":
                _write_atomic(args.output, lambda tmp: rel.write_parquet(str(tmp)))
                return 0
            columns, rows = rel.columns, rel.fetchall()
            break
        except StoreError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except duckdb.Error as e:
            if isinstance(e, _SQL_ERRORS) or attempt == 2 or not quarantine_unreadable(con):
                print(f"error: {e}", file=sys.stderr)
                return 2
    if args.format == "table":
        text = format_table(columns, rows)
    elif args.format == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        w.writerows(rows)
        text = buf.getvalue().rstrip("\n")
    else:
        text = json.dumps([dict(zip(columns, r)) for r in rows], default=str, indent=1)
    if args.output:
        _write_atomic(args.output, lambda tmp: tmp.write_text(text + "\n"))
    else:
        try:
            print(text, flush=True)
        except BrokenPipeError:
            exit_on_broken_pipe()
    return 0


def _write_atomic(output: str, write) -> None:
    """write(tmp) then rename over ``output``: never half a file under its name."""
    tmp = tmp_name(Path(output))
    try:
        write(tmp)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)


def main_exit() -> None:
    """Console-script entry (pagesweep-query)."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
