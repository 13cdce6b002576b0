"""``python -m sweep.nightly --experiment NAME``: did the model regress since last run?

Compares the latest run of an experiment that produced rows with the run before it,
cell by cell, matching cells by ``config_key`` (the resolved config without the model
version, so a new model version still matches). A metric regresses when it moved
more than ``--threshold`` (relative) in its bad direction: up for costs (misses,
walks, cycles, bytes, faults, failures, ...), down for the few where higher is better;
a metric fixed by the workload regresses on any change: the directions of
kernel_model/metrics.py's registry (a column it does not know counts as a cost). A cell that was ok and
now failed regresses too. Prints a table of the compared metrics; exit 1 on a
regression, 0 otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys

import duckdb

from kernel_model.metrics import better
from sweep.query import connect, format_table
from sweep.store import StoreError

# Row columns that are not metrics (provenance, hive partitions).
NOT_METRICS = {"duration_s", "attempts"}


def latest_runs(con, experiment: str) -> list:
    """run_ids of ``experiment`` with at least one cell row, newest first."""
    return [r[0] for r in con.execute(
        "SELECT run_id FROM cells WHERE experiment = ? GROUP BY run_id "
        "ORDER BY min(started_at) DESC, run_id DESC", [experiment]).fetchall()]


def metric_columns(con) -> list:
    from sweep.results import CONFIG_COLUMNS, PROVENANCE

    fixed = {c for c, _, _ in CONFIG_COLUMNS} | {c for c, _ in PROVENANCE} | {"experiment", "date"}
    cols = con.execute("DESCRIBE cells").fetchall()
    numeric = ("BIGINT", "INTEGER", "DOUBLE", "FLOAT", "HUGEINT", "SMALLINT", "TINYINT", "BOOLEAN")
    return [name for name, typ, *_ in cols
            if name not in fixed and name not in NOT_METRICS and typ.startswith(numeric)]


def compare(con, experiment: str, threshold: float, metrics=None) -> tuple:
    """(header, rows, regressions) comparing the two latest runs; rows sorted."""
    runs = latest_runs(con, experiment)
    if len(runs) < 2:
        return None, [], 0
    new, old = runs[0], runs[1]
    names = metrics or metric_columns(con)
    out, regressions = [], 0
    cur = {r[0]: r for r in con.execute(
        f"SELECT config_key, cell, status, {', '.join(_q(n) for n in names) or 'NULL'} "
        "FROM cells WHERE run_id = ?", [new]).fetchall()}
    prev = {r[0]: r for r in con.execute(
        f"SELECT config_key, cell, status, {', '.join(_q(n) for n in names) or 'NULL'} "
        "FROM cells WHERE run_id = ?", [old]).fetchall()}
    for key in sorted(cur.keys() & prev.keys(), key=lambda k: cur[k][1]):
        a, b = prev[key], cur[key]
        if a[2] == "ok" and b[2] != "ok":
            out.append((b[1], "status", "ok", b[2], None, "REGRESSION"))
            regressions += 1
            continue
        for i, name in enumerate(names, start=3):
            before, after = a[i], b[i]
            if before is None or after is None or before == after:
                continue
            verdict = _verdict(name, float(before), float(after), threshold)
            rel = (after - before) / abs(before) if before else None
            out.append((b[1], name, before, after, rel, verdict))
            regressions += verdict == "REGRESSION"
    header = ["cell", "metric", f"before ({old})", f"after ({new})", "change", "verdict"]
    return header, out, regressions


def _verdict(name: str, before: float, after: float, threshold: float) -> str:
    rel = (after - before) / abs(before) if before else float("inf")
    direction = better(name)
    if direction == "exact":
        return "REGRESSION"
    bad = -rel if direction == "higher" else rel
    return "REGRESSION" if bad > threshold else ("improved" if -bad > threshold else "within")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sweep.nightly", description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--results", default="./results")
    ap.add_argument("--threshold", type=float, default=0.05,
                    help="relative change counted as a regression (default 0.05 = 5%%)")
    ap.add_argument("--metrics", help="comma-separated metric columns (default: every numeric one)")
    args = ap.parse_args(argv)
    if args.threshold < 0:
        print("error: --threshold must be >= 0", file=sys.stderr)
        return 2
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    try:
        header, rows, regressions = compare(connect(args.results), args.experiment, args.threshold, metrics)
    except (duckdb.Error, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if header is None:
        print(f"nightly {args.experiment}: fewer than two runs with rows; nothing to compare")
        return 0
    print(format_table(header, [(c, m, b, a, None if r is None else f"{r:+.2%}", v)
                                for c, m, b, a, r, v in rows]))
    print(f"nightly {args.experiment}: {regressions} regression(s) beyond {args.threshold:.1%}")
    return 1 if regressions else 0


def main_exit() -> None:
    """Console-script entry (pagesweep-nightly)."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
