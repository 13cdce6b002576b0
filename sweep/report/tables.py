"""Report tables: named columns per configuration, rendered as Markdown and CSV."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from kernel_model.attribution import ALL, FEATURES, NR_SUBSETS, metric_name, saved_shares
from sweep.report.load import Run, rest


@dataclass
class Table:
    columns: list         # column names, in order; the first is "config"
    rows: list            # dicts keyed by column name (plus "_group": the Group)

    def column(self, name: str) -> list:
        return [r.get(name) for r in self.rows]


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


def markdown(table: Table) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in table.columns) + " |" for r in table.rows]
    return "\n".join(lines)


def to_csv(table: Table) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(table.columns)
    w.writerows([[fmt(r.get(c)) if r.get(c) is not None else "" for c in table.columns] for r in table.rows])
    return out.getvalue().encode()


def ratio(a, b):
    return None if a is None or not b else a / b


def _rows(run: Run, names: list, header: list | None = None) -> Table:
    header = header or names
    rows = [{"config": g.label, "_group": g, **{h: g.get(n) for h, n in zip(header, names)}} for g in run.groups]
    return Table(["config"] + header, rows)


def generic_table(run: Run) -> Table:
    """Every metric column per configuration."""
    t = _rows(run, run.metrics)
    for r in t.rows:
        r["cells"] = r["_group"].n
    t.columns.insert(1, "cells")
    return t


BASE_CELL = {"kernel_page_size": 4096, "process_page_size": 4096, "folio_anon": "base"}


def base_of(run: Run, g):
    """The 4K base cell (4K kernel, 4K process page, base folios) of g's other keys."""
    want = {**g.values, **{k: v for k, v in BASE_CELL.items() if k in g.values}}
    return next((h for h in run.groups if h.values == want), None)


MTHP_GAP_METRICS = ("walk_mem_refs", "l2_tlb_misses", "pgtable_bytes_linux")


def mthp_gap_table(run: Run) -> Table:
    """walk_mem_refs, l2_tlb_misses and pgtable_bytes_linux, each also over the 4K base
    cell of the same other keys."""
    columns = ["config"]
    for n in MTHP_GAP_METRICS:
        columns += [n, f"{n} / base"]
    rows = []
    for g in run.groups:
        base = base_of(run, g)
        row = {"config": g.label, "_group": g}
        for n in MTHP_GAP_METRICS:
            row[n] = g.get(n)
            row[f"{n} / base"] = None if base is None else ratio(g.get(n), base.get(n))
        rows.append(row)
    return Table(columns, rows)


def tradeoff_table(run: Run) -> Table:
    """Memory against translation cost; pareto: no other config of the same workload is
    at least as good in both total_bytes and walk_cycles and better in one."""
    t = _rows(run, ["total_bytes", "walk_cycles", "anon_bytes", "pagecache_bytes", "pgtable_bytes_linux",
                    "pgtable_bytes_native", "padding_bytes"])
    for r in t.rows:
        g = r["_group"]
        mem, cyc = g.get("total_bytes"), g.get("walk_cycles")
        peers = [h for h in run.groups if h.values.get("workload_name") == g.values.get("workload_name")]
        dominated = any(h.get("total_bytes") <= mem and h.get("walk_cycles") <= cyc
                        and (h.get("total_bytes") < mem or h.get("walk_cycles") < cyc) for h in peers)
        r["pareto"] = "no" if dominated else "yes"
    t.columns.append("pareto")
    return t


def pagecache_table(run: Run) -> Table:
    bounce = next((n for n in ("bounce_bytes", "ev_bounce_bytes") if n in run.metrics), "bounce_bytes")
    return _rows(run, ["pagecache_bytes", "pagecache_conversion_failures", "pagecache_livelocks_avoided", bounce])


def native_table(run: Run) -> Table:
    return _rows(run, ["pgtable_bytes_linux", "pgtable_bytes_native", "walk_mem_refs", "native_fallbacks"])


def eof_table(run: Run) -> Table:
    return _rows(run, ["padding_bytes", "sigbus", "ev_overhang_vmas"], ["padding_bytes", "sigbus", "overhang_vmas"])


def abi_table(run: Run) -> Table:
    rules = sorted(m for m in run.metrics if m.startswith("elf_failed_"))
    return _rows(run, ["elf_files", "elf_ok", "elf_failed"] + rules)


MEMORY_PARTS = ("anon_bytes", "pagecache_bytes", "padding_bytes", "pgtable_bytes")


def replay_table(run: Run) -> Table:
    """machine_replay: each design's memory split, and its total over the 4K design's."""
    t = _rows(run, ["anon_bytes", "pagecache_bytes", "padding_bytes", "total_bytes"])
    for r in t.rows:
        g = r["_group"]
        r["pgtable_bytes"] = (g.get("pgtable_bytes_linux") or 0) + (g.get("pgtable_bytes_native") or 0)
        base = base_of(run, g)
        r["total / 4K"] = None if base is None else ratio(g.get("total_bytes"), base.get("total_bytes"))
    t.columns[4:4] = ["pgtable_bytes"]
    t.columns.append("total / 4K")
    return t


def pivot(groups: list, series_col: str, name: str, scale: float = 1.0) -> tuple:
    """(x labels, {series value: [metric per x]}): x is a group's label without series_col."""
    xlabels, series = [], {}
    for g in groups:
        x = rest(g, (series_col,))
        if x not in xlabels:
            xlabels.append(x)
    for g in groups:
        s = series.setdefault(g.values.get(series_col), [None] * len(xlabels))
        v = g.get(name)
        s[xlabels.index(rest(g, (series_col,)))] = None if v is None else v / scale
    return xlabels, series


GAP_METRICS = tuple(metric_name(m) for m in range(NR_SUBSETS))


def gap_split(g):
    """(gap, shares) of a gap_attribution configuration (attribution.saved_shares: walk
    cycles B saves over A and each cause's exact share), or None when a subset is missing."""
    value = {m: g.get(metric_name(m)) for m in range(NR_SUBSETS)}
    if any(v is None for v in value.values()):
        return None
    return saved_shares(value)


def gap_table(run: Run) -> Table:
    """gap_attribution: A's and B's walk cycles, the gap, and each cause's share of it in
    cycles (rounded; the exact shares sum to the gap) and in percent of the gap."""
    cols = ["config", "walk_cycles A", "walk_cycles B", "gap"] + list(FEATURES) + [f"{f} %" for f in FEATURES]
    rows = []
    for g in run.groups:
        split = gap_split(g)
        if split is None:
            continue
        gap, shares = split
        r = {"config": g.label, "_group": g, "walk_cycles A": g.get(metric_name(0)),
             "walk_cycles B": g.get(metric_name(ALL)), "gap": gap}
        for f, sh in zip(FEATURES, shares):
            r[f] = round(float(sh))
            r[f"{f} %"] = round(float(sh / gap) * 100, 1) if gap else None
        rows.append(r)
    return Table(cols, rows)
