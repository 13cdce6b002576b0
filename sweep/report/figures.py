"""Report figures: one PNG per experiment that answers its question at a glance.

matplotlib with the Agg backend (files only, no display)."""

from __future__ import annotations

import math

from kernel_model.attribution import FEATURES
from kernel_model.metrics import lookup
from kernel_model.units import format_size
from sweep.report.load import Run, rest
from sweep.report.tables import MEMORY_PARTS, gap_table, mthp_gap_table, pivot, replay_table

BYTE_SCALES = {1: "", 1024: " (KiB)", 2**20: " (MiB)"}


def axis_label(name: str, scale: int = 1) -> str:
    """An axis label for a metric plotted divided by ``scale``: its name (an event counter
    without its ev_ prefix), with KiB/MiB for a metric the registry counts in bytes."""
    m = lookup(name)
    return name.removeprefix("ev_") + (BYTE_SCALES[scale] if m is not None and m.unit == "bytes" else "")


def pyplot():
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
    t = mthp_gap_table(run)
    labels = t.column("config")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(_width(len(labels)), 9), layout="constrained")
    if any(v is not None for v in t.column("walk_mem_refs / base")):
        _bars(top, labels, {"walk_mem_refs": t.column("walk_mem_refs / base"),
                            "l2_tlb_misses": t.column("l2_tlb_misses / base")}, "relative to k4K p4K base")
        top.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        top.set_title("mthp_gap: translation cost per configuration, normalised to the 4K base cell")
    else:                              # e.g. kernel=64k pinned: nothing to normalise to
        _bars(top, labels, {"walk_mem_refs": t.column("walk_mem_refs"), "l2_tlb_misses": t.column("l2_tlb_misses")},
              "count")
        top.set_title("mthp_gap: translation cost per configuration (no k4K p4K base cell in this run)")
    native = [g.get("pgtable_bytes_native") for g in run.groups]
    series = {"pgtable_bytes_linux": [None if v is None else v / 1024 for v in t.column("pgtable_bytes_linux")]}
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
        xs = [g.get("total_bytes") / 2**20 for g in groups]
        ys = [g.get("walk_cycles") for g in groups]
        ax.scatter(xs, ys)
        _annotate(ax, [(x, y, rest(g, ("workload_name",))) for g, x, y in zip(groups, xs, ys)])
        ax.set_xlabel(axis_label("total_bytes", 2**20))
        ax.set_ylabel(axis_label("walk_cycles"))
        ax.set_title(title or run.experiment)
    fig.suptitle("page_size_tradeoff: memory vs translation cost (lower-left is better)")
    return fig


def pagecache_figure(run: Run, plt):
    panels = [(title, pivot(groups, "folio_pagecache", "pagecache_bytes", 1024))
              for title, groups in _panels(run, "workload_name")]
    bars = max(len(x) * len(s) for _, (x, s) in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(min(40.0, max(8.0, 0.18 * bars + 3)), 6 * len(panels)),
                             squeeze=False, layout="constrained")
    for ax, (title, (xlabels, series)) in zip([a for row in axes for a in row], panels):
        _bars(ax, [x.removeprefix(f"{title} ") for x in xlabels], series, axis_label("pagecache_bytes", 1024))
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
            xs = [(g.get("pgtable_bytes_linux") + g.get("pgtable_bytes_native")) / 1024 for g in pts]
            ys = [g.get("walk_mem_refs") for g in pts]
            style = {"color": f"C{j}"} if marker == "x" else {"edgecolors": f"C{j}", "facecolors": "none"}
            ax.scatter(xs, ys, label=mode, marker=marker, s=size, **style)
            points += [(x, y, rest(g, ("workload_name", "arch_native_pgtable"))) for g, x, y in zip(pts, xs, ys)]
        _annotate(ax, points)
        ax.set_xlabel("pgtable_bytes_linux + native (KiB)")
        ax.set_ylabel(axis_label("walk_mem_refs"))
        ax.set_title(title or "native_pgtable")
        ax.legend(fontsize=8)
    bottom = fig.add_subplot(grid[1, :])
    xlabels, series = pivot(run.groups, "arch_native_pgtable", "native_fallbacks")
    _bars(bottom, xlabels, series, axis_label("native_fallbacks"))
    bottom.set_title("native_fallbacks per mode")
    return fig


def eof_figure(run: Run, plt):
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), layout="constrained")
    for ax, (name, scale) in zip(axes, (("padding_bytes", 1024), ("sigbus", 1), ("ev_overhang_vmas", 1))):
        xlabels, series = pivot(run.groups, "abi_overhang", name, scale)
        _bars(ax, xlabels, series, axis_label(name, scale))
    fig.suptitle("eof_overhang: cost of each EOF overhang policy")
    return fig


def abi_figure(run: Run, plt):
    labels = [g.label for g in run.groups]
    ok = [g.get("elf_ok") or 0 for g in run.groups]
    bad = [g.get("elf_failed") or 0 for g in run.groups]
    fig, ax = plt.subplots(figsize=(_width(len(labels)), 5), layout="constrained")
    ax.bar(labels, ok, label="elf_ok", color="tab:green")
    ax.bar(labels, bad, bottom=ok, label="elf_failed", color="tab:red")
    ax.set_ylabel("ELF files")
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
    ax.set_title("abi_compat: ELF files that load under each page size")
    return fig




PART_COLORS = {"anon_bytes": "tab:blue", "pagecache_bytes": "tab:orange", "padding_bytes": "tab:red",
               "pgtable_bytes": "tab:gray"}


def replay_figure(run: Run, plt):
    """One stacked bar per design: anon, page cache, padding, page tables (MiB), its
    total over the 4K design's written on top."""
    t = replay_table(run)
    labels = t.column("config")
    fig, ax = plt.subplots(figsize=(max(8.0, 1.2 * len(labels) + 3), 6), layout="constrained")
    bottom = [0.0] * len(labels)
    for part in MEMORY_PARTS:
        values = [(v or 0) / 2**20 for v in t.column(part)]
        ax.bar(labels, values, bottom=bottom, label=part.removesuffix("_bytes"), color=PART_COLORS[part])
        bottom = [b + v for b, v in zip(bottom, values)]
    for x, (top, rel) in enumerate(zip(bottom, t.column("total / 4K"))):
        if rel is not None:
            ax.annotate(f"{(rel - 1) * 100:+.1f}%", (x, top), ha="center", va="bottom", fontsize=10,
                        fontweight="bold", textcoords="offset points", xytext=(0, 3))
    ax.set_ylabel("memory (MiB)")
    ax.tick_params(axis="x", rotation=30)
    ax.margins(y=0.12)
    ax.legend(loc="upper left", fontsize=9)
    ax.set_title("machine_replay: the captured machine's memory under each page-size design (vs 4K)")
    return fig


FEATURE_COLORS = {"reach": "tab:blue", "contpte": "tab:purple", "levels": "tab:green",
                  "walk_cache": "tab:orange", "pt_lines": "tab:gray"}


def gap_figure(run: Run, plt):
    """One stacked bar per workload (a panel per kernel compared with): the walk cycles B
    saves, as % of A's, split into each cause's Shapley share (a negative share, a cause
    that costs, below the axis); the total written on top."""
    t = gap_table(run)
    panels: dict = {}
    for r in t.rows:
        g = r["_group"]
        panels.setdefault(g.values.get("ablation_against"), []).append(r)
    fig, axes = _grid(plt, len(panels), width_per=max(5.0, 1.1 * max(len(v) for v in panels.values()) + 2))
    for ax, (against, rows) in zip(axes, panels.items()):
        labels = [rest(r["_group"], ("ablation_against",)) or r["config"] for r in rows]
        base = [r["walk_cycles A"] or 1 for r in rows]
        up, down = [0.0] * len(rows), [0.0] * len(rows)
        for f in FEATURES:
            vals = [r[f] / b * 100 for r, b in zip(rows, base)]
            bottoms = [u if v >= 0 else d for v, u, d in zip(vals, up, down)]
            ax.bar(labels, vals, bottom=bottoms, label=f, color=FEATURE_COLORS[f])
            up = [u + max(v, 0) for u, v in zip(up, vals)]
            down = [d + min(v, 0) for d, v in zip(down, vals)]
        for x, (r, b, top) in enumerate(zip(rows, base, up)):
            ax.annotate(f"{float(r['gap']) / b * 100:.1f}%", (x, top), ha="center", va="bottom", fontsize=10,
                        fontweight="bold", textcoords="offset points", xytext=(0, 3))
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_ylabel("walk cycles saved (% of the 4K kernel's)")
        ax.set_title(f"vs the {format_size(against)} kernel" if isinstance(against, int) else "")
        ax.tick_params(axis="x", rotation=20)
        ax.margins(y=0.12)
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("gap_attribution: where the larger kernel page saves walk cycles (Shapley shares)")
    return fig
