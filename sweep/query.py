"""``python -m sweep.query "SQL"``: DuckDB over the results directory.

Views: ``cells`` (every cell row, hive columns ``experiment`` and ``date`` included)
and ``runs`` (one row per sweep run). Output: an aligned table (default), csv, json
(one object per row in a list) or parquet (``--output FILE`` required). Bad SQL prints
DuckDB's message and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import duckdb

from sweep import exit_on_broken_pipe
from sweep.results import cell_files

# Column lists for the views when no file exists yet, so queries still bind.
_EMPTY_CELLS = ("experiment VARCHAR, date VARCHAR, run_id VARCHAR, cell_key VARCHAR, status VARCHAR, "
                "error VARCHAR")
_EMPTY_RUNS = "run_id VARCHAR, experiment VARCHAR, status VARCHAR, exit_status BIGINT, date VARCHAR"


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def connect(results: Path | str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with views ``cells`` and ``runs`` over ``results``."""
    root = Path(results)
    con = duckdb.connect(":memory:")
    if cell_files(root):
        pattern = _quote(str(root / "experiment=*" / "date=*" / "*.parquet"))
        con.execute(f"CREATE VIEW cells AS SELECT * FROM read_parquet({pattern}, "
                    "hive_partitioning = true, union_by_name = true)")
    else:
        con.execute(f"CREATE VIEW cells AS SELECT * FROM (SELECT NULL::VARCHAR AS x) "
                    f"JOIN (SELECT {_null_columns(_EMPTY_CELLS)}) ON false")
    if list((root / "runs").glob("date=*/*.parquet")):
        pattern = _quote(str(root / "runs" / "date=*" / "*.parquet"))
        con.execute(f"CREATE VIEW runs AS SELECT * FROM read_parquet({pattern}, "
                    "hive_partitioning = true, union_by_name = true)")
    else:
        con.execute(f"CREATE VIEW runs AS SELECT * FROM (SELECT NULL::VARCHAR AS x) "
                    f"JOIN (SELECT {_null_columns(_EMPTY_RUNS)}) ON false")
    return con


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
    con = connect(args.results)
    try:
        rel = con.sql(args.sql)
        if rel is None:
            return 0
        if args.format == "parquet":
            rel.write_parquet(args.output)
            return 0
        columns, rows = rel.columns, rel.fetchall()
    except duckdb.Error as e:
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
        Path(args.output).write_text(text + "\n")
    else:
        try:
            print(text, flush=True)
        except BrokenPipeError:
            exit_on_broken_pipe()
    return 0


def main_exit() -> None:
    """Console-script entry (pagesweep-query)."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
