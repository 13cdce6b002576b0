"""The paragraph that answers an experiment's question, computed from one run.

Each function takes the Run and its ReportSpec (the experiment YAML's ``report:``
node) and returns Markdown text quoting the numbers it is based on. Percentages are
printed with one decimal; a configuration the run lacks is left out of the sentence
that needs it, and a sentence with nothing to say is dropped.
"""

from __future__ import annotations

from kernel_model.units import format_size
from sweep.report.load import Run, label, rest
from sweep.report.spec import ReportSpec
from sweep.report.tables import MEMORY_PARTS, gap_split, replay_table

K4, K16, K64 = 4096, 16384, 65536
# Android Developers Blog, "Adding 16 KB Page Size to Android" (August 2024): 16 KB pages
# gave a 5-10% performance boost "while using ~9% additional memory"; the 16 KB page size
# documentation (developer.android.com/guide/practices/page-sizes) says devices with 16 KB
# pages "use slightly more memory on average".
ANDROID_16K_MEMORY = 0.09


def pct(x: float) -> str:
    return f"{float(x) * 100:.1f}%"


def signed(x: float) -> str:
    return f"{x * 100:+.1f}%"


def mib(n) -> str:
    return f"{n / 2**20:.1f} MiB" if abs(n) >= 2**20 else f"{n / 1024:.1f} KiB"


def _partitions(run: Run, fixed: tuple) -> list:
    """[(title, Run-like list of groups)] split by the key columns not in ``fixed``."""
    other = [k for k in run.keys if k not in fixed]
    parts: dict = {}
    for g in run.groups:
        parts.setdefault(tuple(g.values[k] for k in other), []).append(g)
    out = []
    for key, groups in parts.items():
        title = label(dict(zip(other, key))) if len(parts) > 1 else ""
        out.append((title, groups))
    return out


def _find(groups: list, **values):
    return next((g for g in groups if all(g.values.get(k) == v for k, v in values.items())), None)


def _prefix(title: str) -> str:
    return f"**{title}:** " if title else ""


# -- mthp_gap ----------------------------------------------------------------------------
MTHP_DESIGNS = (  # (phrase, key values): what the thread compares with the 64K kernel
    ("4K+mTHP", {"kernel_page_size": K4, "process_page_size": K4, "folio_anon": "mthp"}),
    ("only-mTHP", {"kernel_page_size": K4, "process_page_size": K4, "folio_anon": "mthp_only"}),
    ("a 64K process on the 4K kernel", {"kernel_page_size": K4, "process_page_size": K64, "folio_anon": "base"}),
    ("the 16K kernel", {"kernel_page_size": K16, "process_page_size": K16, "folio_anon": "base"}),
)


def mthp_gap(run: Run, spec: ReportSpec) -> str:
    names = spec.metrics or ("walk_mem_refs", "l2_tlb_misses")
    out = []
    for title, groups in _partitions(run, ("kernel_page_size", "process_page_size", "folio_anon")):
        base = _find(groups, kernel_page_size=K4, process_page_size=K4, folio_anon="base")
        k64 = _find(groups, kernel_page_size=K64, process_page_size=K64, folio_anon="base")
        if base is None or k64 is None:
            out.append(_prefix(title) + "no answer: the run lacks the 4K base cell or the 64K-kernel base cell.")
            continue
        gaps = {n: base.get(n) - k64.get(n) for n in names}
        cut = " and ".join(f"{n} by {pct(gaps[n] / base.get(n))} ({base.get(n):g} to {k64.get(n):g})"
                           if base.get(n) else f"{n} not at all" for n in names)
        text = [f"The 64K kernel cuts {cut} against the 4K kernel with base pages."]
        recovered = {}
        for phrase, values in MTHP_DESIGNS:
            g = _find(groups, **values)
            if g is None or not all(gaps[n] for n in names):
                continue
            recovered[phrase] = [(base.get(n) - g.get(n)) / gaps[n] for n in names]
            shares = " and ".join(f"{pct(r)} of the {n} reduction" for r, n in zip(recovered[phrase], names))
            text.append(f"{phrase[0].upper()}{phrase[1:]} recovers {shares}.")
        mthp = [recovered[p] for p in ("4K+mTHP", "only-mTHP") if p in recovered]
        if mthp:
            best = max(mthp, key=lambda r: r[0])
            if best[0] >= 0.995:
                text.append(f"mTHP recovers all of the {names[0]} reduction here ({pct(best[0])}): nothing is "
                            "left for a larger page geometry to win in this workload.")
            else:
                text.append(f"What mTHP leaves on the table ({pct(1 - best[0])} of the {names[0]} reduction at "
                            "best) is what no folio size gives a 4K kernel: its extra page-table level, the reach "
                            "of its walk cache and of its page-table lines in the data caches, and TLB entries "
                            "for memory outside mTHP folios.")
        if "pgtable_bytes_linux" in run.metrics and base.get("pgtable_bytes_linux"):
            pts = [f"the 64K kernel {pct(k64.get('pgtable_bytes_linux') / base.get('pgtable_bytes_linux'))}"]
            g = _find(groups, **MTHP_DESIGNS[0][1])
            if g is not None:
                pts.insert(0, f"4K+mTHP {pct(g.get('pgtable_bytes_linux') / base.get('pgtable_bytes_linux'))}")
            text.append(f"Page tables, as a share of the 4K base's {mib(base.get('pgtable_bytes_linux'))}: "
                        f"{', '.join(pts)}.")
        out.append(_prefix(title) + " ".join(text))
    return "\n\n".join(out)


# -- page_size_tradeoff ----------------------------------------------------------------
def _verdict(mem: float, cyc: float) -> str:
    if mem <= 0 and cyc <= 0 and (mem < 0 or cyc < 0):
        return "better"
    if mem >= 0 and cyc >= 0 and (mem > 0 or cyc > 0):
        return "worse"
    return "equal" if mem == 0 and cyc == 0 else "a trade-off"


def page_size_tradeoff(run: Run, spec: ReportSpec) -> str:
    cost = spec.metric or "walk_cycles"
    lines, tally = [], {}
    for title, groups in _partitions(run, ("kernel_page_size", "process_page_size")):
        ref = _find(groups, kernel_page_size=K16, process_page_size=K16)
        cands = [g for g in (_find(groups, kernel_page_size=K4, process_page_size=p) for p in (K16, K64)) if g]
        if ref is None or not cands or not ref.get("total_bytes") or not ref.get(cost):
            continue
        deltas = [(g, g.get("total_bytes") / ref.get("total_bytes") - 1, g.get(cost) / ref.get(cost) - 1)
                  for g in cands]
        # the per-process design to put against the 16K kernel: one that beats it in both
        # if there is one, else the cheapest in translation
        dominating = [d for d in deltas if _verdict(d[1], d[2]) == "better"]
        g, mem, cyc = min(dominating or deltas, key=lambda d: (d[2], d[1]))
        verdict = _verdict(mem, cyc)
        tally[verdict] = tally.get(verdict, 0) + 1
        lines.append(f"{title or 'this workload'}: a {format_size(g.values['process_page_size'])} process on "
                     f"the 4K kernel changes {cost} by {signed(cyc)} and total memory by {signed(mem)} "
                     f"({verdict})")
    if not lines:
        return "No answer: the run lacks the 16K-kernel cell or the 4K kernel's per-process cells."
    n = len(lines)
    summary = ", ".join(f"{tally[v]} {v}" for v in ("better", "a trade-off", "worse", "equal") if v in tally)
    return ("Against a fixed 16K kernel, per workload, the better per-process design: " + "; ".join(lines)
            + f". Over {n} workload(s): {summary} (better: no more memory and no more {cost}, less of one).")


# -- pagecache_policy -------------------------------------------------------------------
def pagecache_policy(run: Run, spec: ReportSpec) -> str:
    metric = spec.metric or "pagecache_bytes"
    out = []
    plain = [g for g in run.groups if not g.values.get("workload_mlock_fraction")
             and not g.values.get("workload_pin_fraction") and not g.values.get("workload_read_before_mmap")
             and g.values.get("workload_large_folio_fs", True) is not False]
    for wl in dict.fromkeys(g.values.get("workload_name") for g in run.groups):
        rows = [g for g in plain if g.values.get("workload_name") == wl]
        if not rows:
            continue
        pps = max(g.values.get("process_page_size", 0) for g in rows)
        rows = [g for g in rows if g.values.get("process_page_size", 0) == pps]
        fixed = _find(rows, folio_pagecache="fixed")
        if fixed is None or not fixed.get(metric):
            continue
        others = ", ".join(f"{g.values['folio_pagecache']} {signed(g.get(metric) / fixed.get(metric) - 1)}"
                           for g in rows if g is not fixed)
        out.append(f"{wl or 'the workload'} with a {format_size(pps)} process: {metric} {mib(fixed.get(metric))} "
                   f"under fixed; {others or 'no other policy in the run'}")
    held = [g for g in run.groups if g.values.get("workload_mlock_fraction") or g.values.get("workload_pin_fraction")]
    text = ("Against the fixed policy (folios of the kernel page size): " + "; ".join(out) + ".") if out else \
        "No answer: the run lacks a plain fixed-policy cell."
    if held:
        fails: dict = {}
        for g in held:
            p = g.values.get("folio_pagecache")
            fails[p] = fails.get(p, 0) + (g.get("pagecache_conversion_failures") or 0)
        text += (" With part of the mapped pages mlocked or long-term pinned by another process, conversions "
                 "that failed (small folios kept): " + ", ".join(f"{p} {n:g}" for p, n in fails.items()) + ".")
    return text


# -- native_pgtable ------------------------------------------------------------------------
def native_pgtable(run: Run, spec: ReportSpec) -> str:
    out = []
    for title, groups in _partitions(run, ("arch_native_pgtable", "process_page_size")):
        pps = max(g.values.get("process_page_size", 0) for g in groups)
        off = _find(groups, arch_native_pgtable="off", process_page_size=pps)
        parts = []
        for mode in ("mirror", "on_demand"):
            g = _find(groups, arch_native_pgtable=mode, process_page_size=pps)
            if g is None or not g.get("pgtable_bytes_linux"):
                continue
            s = (f"{mode} costs {mib(g.get('pgtable_bytes_native'))} "
                 f"({pct(g.get('pgtable_bytes_native') / g.get('pgtable_bytes_linux'))} of the Linux table)")
            if off is not None and off.get("walk_mem_refs"):
                s += f", walk_mem_refs {signed(g.get('walk_mem_refs') / off.get('walk_mem_refs') - 1)} against none"
            s += f", {g.get('native_fallbacks') or 0:g} fallback(s)"
            parts.append(s)
        if parts:
            out.append(_prefix(title) + f"a {format_size(pps)} process's native table: " + "; ".join(parts) + ".")
    return "\n\n".join(out) or "No answer: the run has no native-table cell."


# -- eof_overhang ---------------------------------------------------------------------------
def eof_overhang(run: Run, spec: ReportSpec) -> str:
    pps = max(g.values.get("process_page_size", 0) for g in run.groups)
    at = {g.values.get("abi_overhang"): g for g in run.groups if g.values.get("process_page_size", 0) == pps}
    parts = []
    if "anon_fault" in at:
        parts.append(f"anonymous padding on fault costs {mib(at['anon_fault'].get('padding_bytes') or 0)} "
                     f"and raises {at['anon_fault'].get('sigbus') or 0:g} SIGBUS")
    if "sigbus" in at:
        parts.append(f"SIGBUS raises {at['sigbus'].get('sigbus') or 0:g} signal(s) an application does not expect")
    if "anon_vma" in at:
        parts.append(f"an extra anonymous VMA adds {at['anon_vma'].get('ev_overhang_vmas') or 0:g} VMA(s) and "
                     f"{mib(at['anon_vma'].get('padding_bytes') or 0)} of padding")
    if not parts:
        return "No answer: the run has no abi.overhang cell."
    return f"With a {format_size(pps)} process page: " + "; ".join(parts) + "."


# -- abi_compat ------------------------------------------------------------------------------
def abi_compat(run: Run, spec: ReportSpec) -> str:
    parts = []
    for g in run.groups:
        files = g.get("elf_files") or 0
        if not files:
            continue
        rules = {m.removeprefix("elf_failed_"): g.get(m) for m in run.metrics if m.startswith("elf_failed_")}
        rules = {k: v for k, v in rules.items() if v}
        top = max(rules, key=lambda k: (rules[k], k)) if rules else None
        s = f"{g.label}: {pct((g.get('elf_failed') or 0) / files)} of {files:g} ELF files fail to load"
        parts.append(s + (f" (most often: {top}, {rules[top]:g})" if top else ""))
    mismatch = [g for g in run.groups if g.get("pagemap_pfn_unit_mismatch")]
    text = ("; ".join(parts) + ".") if parts else "No ELF file was loaded in this run."
    if mismatch:
        text += (" pagemap returns PFNs in kernel pages where the process counts in its own: "
                 + ", ".join(f"{g.label} {g.get('pagemap_pfn_unit_mismatch'):g} entries" for g in mismatch) + ".")
    return text


# -- machine_replay ---------------------------------------------------------------------------
REPLAY_DESIGNS = (
    ("a 4K kernel with 16K processes", {"kernel_page_size": K4, "process_page_size": K16, "folio_anon": "base"}),
    ("a 4K kernel with 64K processes", {"kernel_page_size": K4, "process_page_size": K64, "folio_anon": "base"}),
    ("the 16K kernel", {"kernel_page_size": K16, "process_page_size": K16, "folio_anon": "base"}),
    ("the 64K kernel", {"kernel_page_size": K64, "process_page_size": K64, "folio_anon": "base"}),
    ("4K with mTHP", {"kernel_page_size": K4, "process_page_size": K4, "folio_anon": "mthp"}),
)


def machine_replay(run: Run, spec: ReportSpec) -> str:
    table = replay_table(run)
    rows = {id(r["_group"]): r for r in table.rows}
    base = run.find(kernel_page_size=K4, process_page_size=K4, folio_anon="base")
    if base is None or not base.get("total_bytes"):
        return "No answer: the run lacks the 4K design."
    b = rows[id(base)]
    parts = []
    for phrase, values in REPLAY_DESIGNS:
        g = run.find(**values)
        if g is None:
            continue
        r = rows[id(g)]
        delta = {p: (r[p] or 0) - (b[p] or 0) for p in MEMORY_PARTS}
        main = max(delta, key=lambda p: (abs(delta[p]), p))
        grew = mib(g.get("total_bytes") - base.get("total_bytes"))
        parts.append(f"{phrase} needs {signed(r['total / 4K'] - 1)} ({grew}"
                     f", most of it {main.removesuffix('_bytes').replace('pgtable', 'page tables')} "
                     f"{'+' if delta[main] >= 0 else '-'}{mib(abs(delta[main]))})")
    designs = "; ".join(parts) + "." if parts else ""
    text = (f"The captured machine needs {mib(base.get('total_bytes'))} under the 4K design (anon "
            f"{mib(b['anon_bytes'] or 0)}, page cache {mib(b['pagecache_bytes'] or 0)}, page tables "
            f"{mib(b['pgtable_bytes'])}). " + designs[:1].upper() + designs[1:])
    k16 = run.find(**REPLAY_DESIGNS[2][1])
    if k16 is not None:
        text += (f" Android's published figure for 16K pages (Android Developers Blog, "
                 f"August 2024) is about {ANDROID_16K_MEMORY * 100:.0f}% more memory system-wide; this machine "
                 f"at 16K: {signed(rows[id(k16)]['total / 4K'] - 1)}.")
    return text


# -- gap_attribution ------------------------------------------------------------------------
# What each cause is, in a reader's words, and which of them a folio size can give a 4K
# kernel (larger TLB entries) and which only a larger page-table granule gives.
GAP_PHRASES = {"reach": "TLB reach", "contpte": "contpte", "levels": "fewer levels",
               "walk_cache": "walk-cache reach", "pt_lines": "page-table lines in the caches"}
FOLIO_REACHABLE = ("reach", "contpte")


def gap_attribution(run: Run, spec: ReportSpec) -> str:
    from kernel_model.attribution import FEATURES

    by_b: dict = {}
    for g in run.groups:
        split = gap_split(g)
        if split is not None:
            by_b.setdefault(g.values.get("ablation_against"), []).append((g, *split))
    if not by_b:
        return "No answer: the run has no cell with all 32 ablation subsets."
    out = []
    for against, items in sorted(by_b.items(), key=lambda kv: kv[0] or 0):
        k = format_size(against) if isinstance(against, int) else str(against)
        parts, folio = [], []
        for g, gap, shares in items:
            name = rest(g, ("ablation_against",)) or g.label
            a = g.get("ablate_walk_cycles_none")
            if not gap:
                parts.append(f"{name}: no gap ({a:g} walk cycles on both)")
                continue
            ranked = sorted(zip(FEATURES, shares), key=lambda fs: -abs(fs[1]))
            split = ", ".join(f"{GAP_PHRASES[f]} {pct(sh / gap)}" for f, sh in ranked)
            parts.append(f"{name}: {pct(gap / a) if a else 'n/a'} of the 4K kernel's {a:,.0f} walk cycles "
                         f"({split})")
            folio.append(sum(sh for f, sh in zip(FEATURES, shares) if f in FOLIO_REACHABLE) / gap)
        text = f"The {k} kernel saves " + "; ".join(parts) + "."
        if folio:
            lo, hi = min(folio), max(folio)
            span = pct(lo) if lo == hi else f"{pct(lo)} to {pct(hi)}"
            text += (f" Larger TLB entries (TLB reach and contpte), which folios can give a 4K kernel, account "
                     f"for {span} of the gap; the rest (fewer levels, walk-cache reach, page-table lines in the "
                     f"caches) comes only with the {k} page-table granule.")
        out.append(text)
    contpte = FEATURES.index("contpte")
    if all(shares[contpte] == 0 for items in by_b.values() for _, _, shares in items):
        out.append("Contpte takes no share here: no run folds a contiguous range on either kernel (none "
                   "can with base folios; with folio=mthp some can).")
    out.append("Each cause's share is its exact Shapley value over the 32 ablation runs; the shares sum to the "
               "gap exactly.")
    return "\n\n".join(out)


# -- any other experiment with a report node ------------------------------------------------
def generic(run: Run, spec: ReportSpec) -> str:
    m = spec.metric
    if not m or m not in run.metrics:
        return ""
    groups = [g for g in run.groups if g.get(m) is not None]
    if not groups:
        return ""
    ranked = sorted(groups, key=lambda g: g.get(m), reverse=spec.better == "higher")
    best, worst = ranked[0], ranked[-1]
    text = (f"Best in {m} ({spec.better} is better): {best.label} ({best.get(m):g}); "
            f"worst: {worst.label} ({worst.get(m):g})")
    if worst.get(m):
        text += f", {signed(best.get(m) / worst.get(m) - 1)} from worst to best"
    return text + "."


ANSWERS = {"mthp_gap": mthp_gap, "page_size_tradeoff": page_size_tradeoff, "pagecache_policy": pagecache_policy,
           "native_pgtable": native_pgtable, "eof_overhang": eof_overhang, "abi_compat": abi_compat,
           "machine_replay": machine_replay, "gap_attribution": gap_attribution}


def answer(run: Run, spec: ReportSpec) -> str:
    return ANSWERS.get(run.experiment, generic)(run, spec)
