"""Loading one run of an experiment and grouping its rows into configurations.

``load_rows`` is the only function that knows where cell rows live (sweep.query's
DuckDB views over the results directory); everything else works on plain dicts keyed
by column name.

A *configuration* is one combination of the experiment's key columns (its
``report.keys``) plus any other config column that varies in the run and is not
fixed by those keys (a zipped axis such as folio.mthp_sizes is; a second workload is
not); rows differing only in ``seed`` are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kernel_model.metrics import SPARSE_PREFIXES  # emitted only when non-zero: a null in an ok row is a 0
from kernel_model.units import format_size
from sweep.results import CONFIG_COLUMNS
from sweep.schema import CHOICES, SIZE_KEYS

SIZE_COLUMNS = {k.replace(".", "_") for k in SIZE_KEYS} | {"process_page_size"}
CONFIG_NAMES = [c for c, _, _ in CONFIG_COLUMNS]
AVERAGED = ("seed",)
# Enumerations sorted in the order of the config contract (the schema's Enums), not
# alphabetically; labels show their bare values.
ENUM_ORDER = {k.replace(".", "_"): CHOICES[k]
              for k in ("folio.anon", "folio.pagecache", "arch.native_pgtable", "abi.overhang")}


class ReportError(Exception):
    """A report that cannot be made; the message says why and what to run."""


@dataclass
class Group:
    """One configuration: its key values, label and metrics averaged over its rows."""

    key: tuple
    values: dict          # every key column
    shown: dict           # the key columns that vary in the run (all of them when none does)
    label: str
    n: int
    metrics: dict = field(default_factory=dict)

    def get(self, name: str):
        """A metric; sparse counters absent from the whole run read 0."""
        if name in self.metrics:
            return self.metrics[name]
        return 0 if name.startswith(SPARSE_PREFIXES) else None


@dataclass
class Run:
    experiment: str
    run_id: str
    keys: list            # config columns that identify a configuration, in order
    metrics: list         # metric columns with a value in some ok row
    groups: list          # Group, sorted by key
    failed: list          # (cell, error) of the failed rows
    info: dict            # git_sha, model_version, started_at, cells

    def find(self, **values):
        """The first configuration whose key columns equal ``values`` (None when none does)."""
        return next((g for g in self.groups if all(g.values.get(k) == v for k, v in values.items())), None)


def load_rows(results, experiment: str, run_id: str | None):
    """(run_id, cell rows of that run as dicts, metric column names, runs cells_done_before).

    The latest run with rows when ``run_id`` is None. The one place that reads the
    results layout."""
    from sweep.nightly import latest_runs, metric_columns
    from sweep.query import connect

    con = connect(results)
    runs = latest_runs(con, experiment)
    if not runs:
        raise ReportError(f"no cells for experiment {experiment!r} under {results}; run "
                          f"`python -m sweep +experiment={experiment} results.dir={results}` first")
    if run_id is None:
        run_id = runs[0]
    elif run_id not in runs:
        raise ReportError(f"run {run_id!r} has no cells for experiment {experiment!r} under {results}; "
                          f"its runs, newest first: {', '.join(runs[:5])}")
    cur = con.execute("SELECT * FROM cells WHERE experiment = ? AND run_id = ? ORDER BY cell, cell_key",
                      [experiment, run_id])
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    done_before = 0
    if "cells_done_before" in [c[0] for c in con.execute("DESCRIBE runs").fetchall()]:
        # Planned cells the run skipped because an earlier run (of any experiment) has an ok
        # row with the same cell_key (sweep.app: plan.done); their rows are not in this run.
        got = con.execute("SELECT max(cells_done_before) FROM runs WHERE run_id = ?", [run_id]).fetchone()
        done_before = int(got[0] or 0)
    present = set(names)
    return run_id, rows, [m for m in metric_columns(con) if m in present], done_before


def experiment_rows(results, experiment: str) -> list:
    """Every cell row of ``experiment`` (all runs) as dicts, oldest run first."""
    from sweep.query import connect

    con = connect(results)
    cur = con.execute("SELECT * FROM cells WHERE experiment = ? ORDER BY started_at, run_id, cell", [experiment])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def load_run(results, experiment: str, run_id: str | None = None, keys=()) -> Run:
    """The rows of one run of ``experiment`` grouped into configurations."""
    run_id, rows, metric_names, done_before = load_rows(results, experiment, run_id)
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [(r["cell"], r["error"]) for r in rows if r["status"] != "ok"]
    if not ok:
        first = (failed[0][1] or "").strip().splitlines()[-1:] or ["no error text"]
        raise ReportError(f"every cell of run {run_id} ({experiment}) failed: {len(failed)} cell(s); "
                          f"first error: {first[0]}")
    metrics = [m for m in metric_names if any(r[m] is not None for r in ok)]
    present = [k for k in keys if k in ok[0]]
    keys = present + _extra_keys(ok, present)
    info = {"started_at": min(r["started_at"] for r in rows), "cells": len(rows), "ok": len(ok),
            "git_sha": ok[0]["git_sha"], "model_version": ok[0]["model_version"], "done_before": done_before}
    return Run(experiment, run_id, keys, metrics, group_rows(ok, keys, metrics), failed, info)


def _extra_keys(rows: list, keys: list) -> list:
    """Config columns that vary in ``rows`` and split a configuration of ``keys`` further."""
    extra = []
    distinct = len({tuple(r[k] for k in keys) for r in rows})
    for col in CONFIG_NAMES:
        if col in keys or col in AVERAGED or col not in rows[0]:
            continue
        n = len({tuple(r[k] for k in keys + extra + [col]) for r in rows})
        if n > distinct:
            extra.append(col)
            distinct = n
    return extra


def _sort_key(col: str, value):
    order = ENUM_ORDER.get(col)
    if value is None:
        return (0, 0, "")
    if order and value in order:
        return (1, order.index(value), "")
    if isinstance(value, (int, float)):
        return (2, value, "")
    return (3, 0, str(value))


def _mean(values: list):
    if not values:
        return None
    if len(values) == 1 or all(v == values[0] for v in values):
        return values[0]
    return sum(values) / len(values)


def group_rows(rows: list, keys: list, metrics: list) -> list:
    by_key: dict = {}
    for r in rows:
        by_key.setdefault(tuple(r[k] for k in keys), []).append(r)
    varying = [k for i, k in enumerate(keys) if len({t[i] for t in by_key}) > 1] or keys
    groups = []
    for key in sorted(by_key, key=lambda t: tuple(_sort_key(c, v) for c, v in zip(keys, t))):
        members = by_key[key]
        values = dict(zip(keys, key))
        shown = {k: values[k] for k in varying}
        g = Group(key, values, shown, label(shown), len(members))
        for m in metrics:
            vals = [r.get(m) for r in members]
            if m.startswith(SPARSE_PREFIXES):
                vals = [0 if v is None else v for v in vals]
            g.metrics[m] = _mean([v for v in vals if v is not None])
        groups.append(g)
    return groups


def label(values: dict) -> str:
    """'k4K p64K mthp': page sizes as k/p, enumerations bare, a zero *_fraction (no mlock,
    no pin) left out, anything else name=value ('mlock=0.5', 'large_folio_fs=false')."""
    parts = []
    for col, v in values.items():
        if col.endswith("_fraction") and v == 0:
            continue
        if col == "kernel_page_size":
            parts.append(f"k{format_size(v)}")
        elif col == "ablation_against" and isinstance(v, int):  # gap_attribution's system B
            parts.append(f"vs k{format_size(v)}")
        elif col == "process_page_size":
            parts.append(f"p{format_size(v)}")
        elif col in ENUM_ORDER or col == "workload_name":
            parts.append(str(v))
        else:
            short = col.split("_", 1)[1] if col.split("_", 1)[0] in ("workload", "memory", "arch",
                                                                     "folio", "tlb", "abi") else col
            shown = format_size(v) if col in SIZE_COLUMNS and isinstance(v, int) else v
            short = short.removesuffix("_fraction")
            parts.append(f"{short}={str(shown).lower() if isinstance(shown, bool) else shown}")
    return " ".join(parts)


def rest(g: Group, drop: tuple) -> str:
    """The label of ``g`` without the columns in ``drop``."""
    return label({k: v for k, v in g.shown.items() if k not in drop})
