"""``python -m sweep.report --experiment NAME``: figures and a Markdown summary of one run.

Reads the cell rows of the latest run of an experiment (or ``--run RUN_ID``) through
sweep.query's DuckDB views and writes, into ``--out`` (default
``<results>/reports/<experiment>/<run_id>/``):

    report.md     the question, the run, the experiment's table(s), image links, failed cells
    <name>.png    the figure that answers the experiment's question (docs/design.md)
    metrics.csv   every metric column per configuration (the generic table)

A *configuration* is one combination of the experiment's key columns (below) plus any
other config column that varies in the run and is not fixed by those keys (a zipped
axis such as folio.mthp_sizes is; a second workload is not); rows differing only in
``seed`` are averaged. Unknown experiments get the generic table only. Failed cells are
listed and left out of the figures. Exit 1 with one message when the run has no rows or
only failed ones; argument errors exit 2. The output directory is written under a
temporary name beside it and renamed into place, so a reader never sees half a report.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kernel_model.units import format_size
from sweep.nightly import latest_runs, metric_columns
from sweep.query import connect
from sweep.results import CONFIG_COLUMNS
from sweep.schema import SIZE_KEYS

SIZE_COLUMNS = {k.replace(".", "_") for k in SIZE_KEYS} | {"process_page_size"}
CONFIG_NAMES = [c for c, _, _ in CONFIG_COLUMNS]
AVERAGED = ("seed",)
# Enumerations sorted in the order of the config contract (docs/design.md), not alphabetically.
ENUM_ORDER = {
    "folio_anon": ("base", "mthp", "mthp_only"),
    "folio_pagecache": ("fixed", "always_max", "drop_reread", "mmap_convert", "bounce"),
    "arch_native_pgtable": ("off", "mirror", "on_demand"),
    "abi_overhang": ("anon_fault", "sigbus", "anon_vma"),
}
# Metrics kernel_model.simulate emits only when non-zero (its event counters, folio
# orders, ELF failure rules: simulate.Runner.metrics()); a null in an ok row is a 0.
SPARSE_PREFIXES = ("ev_", "elf_failed_", "anon_folios_order_")
BASE_CELL = {"kernel_page_size": 4096, "process_page_size": 4096, "folio_anon": "base"}
QUESTIONS = {  # docs/design.md, "The questions it answers", shortened
    "mthp_gap": "How much of the 64K kernel's advantage does 4K+mTHP recover, and what is left?",
    "page_size_tradeoff": "Is a per-process page size better enough than a fixed 16K kernel? Memory vs "
                          "translation cost, per workload.",
    "pagecache_policy": "Small files: the memory cost of large minimum folio orders per page-cache policy; "
                        "what pins and mlock do to each.",
    "native_pgtable": "The cost of a second (native) page table per mm: memory, translation work, fallbacks.",
    "eof_overhang": "A 64K process maps a 12K file: SIGBUS, anonymous padding on fault, or an extra VMA.",
    "abi_compat": "What breaks: ELF p_align / segment congruence of real binaries under a larger page size; "
                  "pagemap PFN units; userfaultfd granularity.",
}


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


@dataclass
class Run:
    experiment: str
    run_id: str
    keys: list            # config columns that identify a configuration, in order
    metrics: list         # metric columns with a value in some ok row
    groups: list          # Group, sorted by key
    failed: list          # (cell, error) of the failed rows
    info: dict            # git_sha, model_version, started_at, cells


# -- loading ---------------------------------------------------------------------------
def load_run(results, experiment: str, run_id: str | None = None, keys=()) -> Run:
    """The rows of one run of ``experiment`` grouped into configurations."""
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
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [(r["cell"], r["error"]) for r in rows if r["status"] != "ok"]
    if not ok:
        first = (failed[0][1] or "").strip().splitlines()[-1:] or ["no error text"]
        raise ReportError(f"every cell of run {run_id} ({experiment}) failed: {len(failed)} cell(s); "
                          f"first error: {first[0]}")
    present = set(names)
    metrics = [m for m in metric_columns(con) if m in present and any(r[m] is not None for r in ok)]
    keys = [k for k in keys if k in present] + _extra_keys(ok, [k for k in keys if k in present])
    info = {"started_at": min(r["started_at"] for r in rows), "cells": len(rows), "ok": len(ok),
            "git_sha": ok[0]["git_sha"], "model_version": ok[0]["model_version"],
            "done_before": _done_before(con, run_id)}
    return Run(experiment, run_id, keys, metrics, _group(ok, keys, metrics), failed, info)


def _done_before(con, run_id: str) -> int:
    """Planned cells the run skipped because an earlier run (of any experiment) has an ok
    row with the same cell_key (sweep.app: plan.done); their rows are not in this run."""
    if "cells_done_before" not in [c[0] for c in con.execute("DESCRIBE runs").fetchall()]:
        return 0
    got = con.execute("SELECT max(cells_done_before) FROM runs WHERE run_id = ?", [run_id]).fetchone()
    return int(got[0] or 0)


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


def _group(rows: list, keys: list, metrics: list) -> list:
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
            vals = [v for v in vals if v is not None]
            if not vals:
                g.metrics[m] = None
            elif len(vals) == 1 or all(v == vals[0] for v in vals):
                g.metrics[m] = vals[0]
            else:
                g.metrics[m] = sum(vals) / len(vals)
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


def metric(g: Group, name: str):
    """A metric of a configuration; sparse counters absent from the whole run read 0."""
    if name in g.metrics:
        return g.metrics[name]
    return 0 if name.startswith(SPARSE_PREFIXES) else None


# -- tables ----------------------------------------------------------------------------
def fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:.4g}"
    return str(v)


def markdown_table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def generic_table(run: Run) -> tuple:
    """(header, rows): every metric column per configuration."""
    header = ["config", "cells"] + run.metrics
    return header, [[g.label, g.n] + [metric(g, m) for m in run.metrics] for g in run.groups]


def ratio(a, b):
    return None if a is None or not b else a / b


def _rest(g: Group, drop: tuple) -> str:
    return label({k: v for k, v in g.shown.items() if k not in drop})


# -- experiments: (table, figure) per question of docs/design.md -------------------------
def mthp_gap_table(run: Run) -> tuple:
    """walk_mem_refs, l2_tlb_misses and pgtable_bytes_linux, each also over the 4K base cell
    (4K kernel, 4K process page, folio.anon=base) of the same other keys."""
    names = ("walk_mem_refs", "l2_tlb_misses", "pgtable_bytes_linux")
    header = ["config"]
    for n in names:
        header += [n, f"{n} / base"]
    rows = []
    for g in run.groups:
        base = _base_of(run, g)
        row = [g.label]
        for n in names:
            row += [metric(g, n), None if base is None else ratio(metric(g, n), metric(base, n))]
        rows.append(row)
    return header, rows


def _base_of(run: Run, g: Group):
    want = {**g.values, **{k: v for k, v in BASE_CELL.items() if k in g.values}}
    return next((h for h in run.groups if h.values == want), None)


def tradeoff_table(run: Run) -> tuple:
    """Memory against translation cost; pareto: no other config of the same workload is
    at least as good in both total_bytes and walk_cycles and better in one."""
    header = ["config", "total_bytes", "walk_cycles", "anon_bytes", "pagecache_bytes",
              "pgtable_bytes_linux", "pgtable_bytes_native", "padding_bytes", "pareto"]
    rows = []
    for g in run.groups:
        mem, cyc = metric(g, "total_bytes"), metric(g, "walk_cycles")
        peers = [h for h in run.groups if h.values.get("workload_name") == g.values.get("workload_name")]
        dominated = any(metric(h, "total_bytes") <= mem and metric(h, "walk_cycles") <= cyc
                        and (metric(h, "total_bytes") < mem or metric(h, "walk_cycles") < cyc)
                        for h in peers)
        rows.append([g.label] + [metric(g, n) for n in header[1:-1]] + ["no" if dominated else "yes"])
    return header, rows


def _columns(run: Run, names: list, header: list | None = None) -> tuple:
    return ["config"] + (header or names), [[g.label] + [metric(g, n) for n in names] for g in run.groups]


def pagecache_table(run: Run) -> tuple:
    bounce = next((n for n in ("bounce_bytes", "ev_bounce_bytes") if n in run.metrics), "bounce_bytes")
    return _columns(run, ["pagecache_bytes", "pagecache_conversion_failures", "pagecache_livelocks_avoided", bounce])


def native_table(run: Run) -> tuple:
    return _columns(run, ["pgtable_bytes_linux", "pgtable_bytes_native", "walk_mem_refs", "native_fallbacks"])


def eof_table(run: Run) -> tuple:
    return _columns(run, ["padding_bytes", "sigbus", "ev_overhang_vmas"], ["padding_bytes", "sigbus", "overhang_vmas"])


def abi_table(run: Run) -> tuple:
    rules = sorted(m for m in run.metrics if m.startswith("elf_failed_"))
    return _columns(run, ["elf_files", "elf_ok", "elf_failed"] + rules)


# -- figures ---------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")          # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _bars(ax, xlabels: list, series: dict, ylabel: str) -> None:
    """Grouped bars: one group per x label, one bar per series (None draws nothing)."""
    n = max(len(series), 1)
    width = 0.8 / n
    for i, (name, values) in enumerate(series.items()):
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(xlabels))]
        ax.bar(xs, [math.nan if v is None else v for v in values], width, label=str(name))
    ax.set_xticks(range(len(xlabels)), xlabels, rotation=45, ha="right", fontsize=8)
    if all(v is None or v >= 0 for values in series.values() for v in values):
        ax.set_ylim(bottom=0)
    ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend(fontsize=8)


def _pivot(groups: list, series_col: str, name: str, scale: float = 1.0) -> tuple:
    """(x labels, {series value: [metric per x]}): x is a group's label without series_col."""
    xlabels, series = [], {}
    for g in groups:
        x = _rest(g, (series_col,))
        if x not in xlabels:
            xlabels.append(x)
    for g in groups:
        s = series.setdefault(g.values.get(series_col), [None] * len(xlabels))
        v = metric(g, name)
        s[xlabels.index(_rest(g, (series_col,)))] = None if v is None else v / scale
    return xlabels, series


def _panels(run: Run, col: str) -> list:
    """[(title, groups)] split by the values of ``col`` (one panel when it is not a key)."""
    if col not in run.keys:
        return [("", run.groups)]
    out: dict = {}
    for g in run.groups:
        out.setdefault(str(g.values[col]), []).append(g)
    return list(out.items())


def _grid(plt, n: int, width_per: float = 6.0):
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width_per * cols, 4.5 * rows), squeeze=False, layout="constrained")
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _width(n: int) -> float:
    return max(8.0, 0.45 * n + 3)


def mthp_gap_figure(run: Run, plt):
    header, rows = mthp_gap_table(run)
    labels = [r[0] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(_width(len(labels)), 9), layout="constrained")
    if any(r[2] is not None for r in rows):
        _bars(top, labels, {"walk_mem_refs": [r[2] for r in rows], "l2_tlb_misses": [r[4] for r in rows]},
              "relative to k4K p4K base")
        top.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        top.set_title("mthp_gap: translation cost per configuration, normalised to the 4K base cell")
    else:                              # e.g. kernel=64k pinned: nothing to normalise to
        _bars(top, labels, {"walk_mem_refs": [r[1] for r in rows], "l2_tlb_misses": [r[3] for r in rows]}, "count")
        top.set_title("mthp_gap: translation cost per configuration (no k4K p4K base cell in this run)")
    native = [metric(g, "pgtable_bytes_native") for g in run.groups]
    series = {"pgtable_bytes_linux": [None if r[5] is None else r[5] / 1024 for r in rows]}
    if any(native):  # the proposal's second table: its bytes beside the Linux table's
        series["pgtable_bytes_native"] = [None if v is None else v / 1024 for v in native]
    _bars(bottom, labels, series, "page tables (KiB)")
    return fig


def _annotate(ax, points: list) -> None:
    """One label per point; configurations within 1% of the axes' spans of each other
    (they overlap on the plot) share one."""
    ax.margins(x=0.2, y=0.1)
    ax.ticklabel_format(useOffset=False)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    xspan, yspan = (max(xs) - min(xs)) or 1, (max(ys) - min(ys)) or 1
    at: list = []                      # [x, y, texts], greedily in input order
    for x, y, text in points:
        near = next((a for a in at if abs(a[0] - x) <= 0.01 * xspan and abs(a[1] - y) <= 0.01 * yspan), None)
        if near is None:
            at.append([x, y, [text]])
        else:
            near[2].append(text)
    for x, y, texts in at:
        note = ax.annotate("\n".join(texts), (x, y), fontsize=6, textcoords="offset points", xytext=(4, 3),
                           va="top")
        note.set_in_layout(False)      # long labels must not squeeze the axes


def tradeoff_figure(run: Run, plt):
    panels = _panels(run, "workload_name")
    fig, axes = _grid(plt, len(panels))
    for ax, (title, groups) in zip(axes, panels):
        xs = [metric(g, "total_bytes") / 2**20 for g in groups]
        ys = [metric(g, "walk_cycles") for g in groups]
        ax.scatter(xs, ys)
        _annotate(ax, [(x, y, _rest(g, ("workload_name",))) for g, x, y in zip(groups, xs, ys)])
        ax.set_xlabel("total_bytes (MiB)")
        ax.set_ylabel("walk_cycles")
        ax.set_title(title or run.experiment)
    fig.suptitle("page_size_tradeoff: memory vs translation cost (lower-left is better)")
    return fig


def pagecache_figure(run: Run, plt):
    panels = [(title, _pivot(groups, "folio_pagecache", "pagecache_bytes", 1024))
              for title, groups in _panels(run, "workload_name")]
    bars = max(len(x) * len(s) for _, (x, s) in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(min(40.0, max(8.0, 0.18 * bars + 3)), 6 * len(panels)),
                             squeeze=False, layout="constrained")
    for ax, (title, (xlabels, series)) in zip([a for row in axes for a in row], panels):
        _bars(ax, [x.removeprefix(f"{title} ") for x in xlabels], series, "pagecache_bytes (KiB)")
        ax.set_title(f"pagecache_policy: {title}" if title else "pagecache_policy")
    return fig


MODE_MARKERS = {"off": ("o", 60), "mirror": ("s", 110), "on_demand": ("x", 40)}  # overlaps stay visible


def native_figure(run: Run, plt):
    panels = _panels(run, "workload_name")
    fig = plt.figure(figsize=(6.0 * len(panels), 9), layout="constrained")
    grid = fig.add_gridspec(2, len(panels))
    for i, (title, groups) in enumerate(panels):
        ax = fig.add_subplot(grid[0, i])
        points = []
        for j, (mode, (marker, size)) in enumerate(MODE_MARKERS.items()):
            pts = [g for g in groups if g.values.get("arch_native_pgtable") == mode]
            if not pts:
                continue
            xs = [(metric(g, "pgtable_bytes_linux") + metric(g, "pgtable_bytes_native")) / 1024 for g in pts]
            ys = [metric(g, "walk_mem_refs") for g in pts]
            style = {"color": f"C{j}"} if marker == "x" else {"edgecolors": f"C{j}", "facecolors": "none"}
            ax.scatter(xs, ys, label=mode, marker=marker, s=size, **style)
            points += [(x, y, _rest(g, ("workload_name", "arch_native_pgtable"))) for g, x, y in zip(pts, xs, ys)]
        _annotate(ax, points)
        ax.set_xlabel("pgtable_bytes_linux + native (KiB)")
        ax.set_ylabel("walk_mem_refs")
        ax.set_title(title or "native_pgtable")
        ax.legend(fontsize=8)
    bottom = fig.add_subplot(grid[1, :])
    xlabels, series = _pivot(run.groups, "arch_native_pgtable", "native_fallbacks")
    _bars(bottom, xlabels, series, "native_fallbacks")
    bottom.set_title("native_fallbacks per mode")
    return fig


def eof_figure(run: Run, plt):
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), layout="constrained")
    for ax, (name, scale, unit) in zip(axes, (("padding_bytes", 1024, " (KiB)"), ("sigbus", 1, ""),
                                              ("ev_overhang_vmas", 1, ""))):
        xlabels, series = _pivot(run.groups, "abi_overhang", name, scale)
        _bars(ax, xlabels, series, name.replace("ev_", "") + unit)
    fig.suptitle("eof_overhang: cost of each EOF overhang policy")
    return fig


def abi_figure(run: Run, plt):
    labels = [g.label for g in run.groups]
    ok = [metric(g, "elf_ok") or 0 for g in run.groups]
    bad = [metric(g, "elf_failed") or 0 for g in run.groups]
    fig, ax = plt.subplots(figsize=(_width(len(labels)), 5), layout="constrained")
    ax.bar(labels, ok, label="elf_ok", color="tab:green")
    ax.bar(labels, bad, bottom=ok, label="elf_failed", color="tab:red")
    ax.set_ylabel("ELF files")
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
    ax.set_title("abi_compat: ELF files that load under each page size")
    return fig


@dataclass(frozen=True)
class Spec:
    keys: tuple
    required: tuple
    table: object
    figure: object


EXPERIMENTS = {
    "mthp_gap": Spec(("kernel_page_size", "process_page_size", "folio_anon"),
                     ("walk_mem_refs", "l2_tlb_misses", "pgtable_bytes_linux"), mthp_gap_table, mthp_gap_figure),
    "page_size_tradeoff": Spec(("workload_name", "kernel_page_size", "process_page_size"),
                               ("total_bytes", "walk_cycles"), tradeoff_table, tradeoff_figure),
    "pagecache_policy": Spec(("workload_name", "process_page_size", "workload_large_folio_fs",
                              "workload_mlock_fraction", "workload_pin_fraction", "folio_pagecache"),
                             ("pagecache_bytes",), pagecache_table, pagecache_figure),
    "native_pgtable": Spec(("workload_name", "arch_native_pgtable", "process_page_size"),
                           ("pgtable_bytes_linux", "pgtable_bytes_native", "walk_mem_refs", "native_fallbacks"),
                           native_table, native_figure),
    "eof_overhang": Spec(("process_page_size", "abi_overhang"), ("padding_bytes", "sigbus"), eof_table, eof_figure),
    "abi_compat": Spec(("kernel_page_size", "process_page_size"), ("elf_ok", "elf_failed"), abi_table, abi_figure),
}


# -- the report ------------------------------------------------------------------------
def build(run: Run) -> tuple:
    """(markdown text, {file name: bytes}) of the report of ``run``."""
    spec = EXPERIMENTS.get(run.experiment)
    files, md = {}, [f"# {run.experiment}: run {run.run_id}", ""]
    if run.experiment in QUESTIONS:
        md += [f"Question (docs/design.md): {QUESTIONS[run.experiment]}", ""]
    info = run.info
    md += [f"Run `{run.run_id}` started {info['started_at']:%Y-%m-%d %H:%M:%S} UTC: {info['ok']} ok, "
           f"{info['cells'] - info['ok']} failed of {info['cells']} cells; {len(run.groups)} configurations "
           f"(keys: {', '.join(run.keys) or 'none'}); model {info['model_version']}, git {info['git_sha']}.", ""]
    if info["done_before"]:
        md += [f"**Incomplete:** {info['done_before']} planned cell(s) were already done by earlier runs and "
               "are not in this run; rerun the sweep with `sweep.force=true` for a complete one.", ""]
    if any(g.n > 1 for g in run.groups):
        md += ["Configurations with more than one cell (seeds) show the mean.", ""]
    missing = [m for m in spec.required if m not in run.metrics] if spec else []
    if spec and not missing:
        plt = _pyplot()
        fig = spec.figure(run, plt)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        files[f"{run.experiment}.png"] = buf.getvalue()
        header, rows = spec.table(run)
        md += [f"![{run.experiment}]({run.experiment}.png)", "", markdown_table(header, rows), ""]
    else:
        if missing:
            md += [f"The {run.experiment} figure needs metric columns this run lacks: {', '.join(missing)}; "
                   "every metric per configuration instead.", ""]
        header, rows = generic_table(run)
        md += [markdown_table(header, rows), ""]
    if run.failed:
        md += ["## Failed cells", "", markdown_table(["cell", "error"], [
            [c, (e or "").splitlines()[-1] if e else ""] for c, e in run.failed]), ""]
    md += ["Every metric per configuration: [metrics.csv](metrics.csv).", ""]
    header, rows = generic_table(run)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows([[fmt(v) if v is not None else "" for v in row] for row in rows])
    files["metrics.csv"] = out.getvalue().encode()
    text = "\n".join(md)
    files["report.md"] = text.encode()
    return text, files


def write_report(out: Path, files: dict) -> None:
    """Write ``files`` into a temporary directory beside ``out`` and rename it into place
    (an older report there is renamed aside first and removed after)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    old = out.parent / f".{out.name}.{os.getpid()}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    if out.exists():
        os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def report(results, experiment: str, run_id: str | None = None, out=None) -> Path:
    """Make the report of one run; returns its directory."""
    spec = EXPERIMENTS.get(experiment)
    run = load_run(results, experiment, run_id, spec.keys if spec else ())
    _, files = build(run)
    out = Path(out) if out else Path(results) / "reports" / experiment / run.run_id
    write_report(out, files)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sweep.report", description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", required=True, help="experiment name (conf/experiment/NAME.yaml)")
    ap.add_argument("--results", default="./results", help="results directory (default ./results)")
    ap.add_argument("--out", help="output directory (default RESULTS/reports/EXPERIMENT/RUN_ID)")
    ap.add_argument("--run", help="run_id (default: the experiment's latest run with rows)")
    args = ap.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"error: results directory {args.results} does not exist; pass --results DIR", file=sys.stderr)
        return 1
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"error: --out {args.out} is a file; give a directory", file=sys.stderr)
        return 2
    try:
        out = report(args.results, args.experiment, args.run, args.out)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"report {args.experiment}: {out / 'report.md'}")
    if "**Incomplete:**" in (out / "report.md").read_text():
        print("warning: the run reused cells of earlier runs; the report lacks them (see report.md)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
