"""TLB-model throughput: simulate_tlb beside a naive per-access Python LRU, same run.

    python bench/bench_tlb.py [--n 20000000] [--naive-n 1000000] [--pages 65536]

Streams: a seeded zipf stream of --n accesses over --pages 4K pages (target:
>= 5 M accesses/s on one core), and every data access (L/S/M) of the lackey traces in
tests/data/*.lackey* / tests/data/lackey*.txt.gz.  The page table is arithmetic (every
page mapped, 4 levels, tables at disjoint physical regions), built outside the timed
region: only simulate_tlb is timed.  The naive reference is an OrderedDict L1 (fully
associative) + set-associative L2 over page numbers — TLB only, no walk cache or data
caches, i.e. strictly less work than the model — timed on the first --naive-n accesses.
The zipf stream is also run with tlb.model_data_lines=false (data accesses kept out of
the data-cache model), an info row showing what that part of the model costs.
A stream shorter than 0.2 s of CPU is re-run until 0.2 s has passed (rates per run).
--json OUT writes the summary figures for bench/run_all.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kernel_model.geometry import geometry  # noqa: E402
from kernel_model.pgtable import PageTable  # noqa: E402
from kernel_model.tlb import TlbConfig, simulate_tlb, simulate_tlb_tables  # noqa: E402

PAGE_SHIFT = 12
LEVEL_SHIFTS = (39, 30, 21, 12)  # arm64 4K granule, 48-bit VA (pgtable-hwdef.h)


@dataclass
class ArithLookup:
    present: np.ndarray
    pfn: np.ndarray
    base_shift: np.ndarray
    leaf_shift: np.ndarray
    desc_addr: np.ndarray


def arith_lookup(addrs):
    n = addrs.size
    desc = np.empty((n, len(LEVEL_SHIFTS)), dtype=np.int64)
    for j, sh in enumerate(LEVEL_SHIFTS):
        prefix = 0 if j == 0 else addrs >> LEVEL_SHIFTS[j - 1]
        desc[:, j] = ((j + 1) << 40) + prefix * 4096 + ((addrs >> sh) & 511) * 8
    shift = np.full(n, PAGE_SHIFT, np.int8)
    return ArithLookup(np.ones(n, bool), (addrs >> PAGE_SHIFT) + (1 << 20), shift, shift.copy(), desc)


def read_lackey(path):
    """Data addresses of L/S/M lines (M counts once); instruction and other lines skipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rt") as f:
        for line in f:
            if len(line) > 3 and line[0] == " " and line[1] in "LSM":
                out.append(int(line[3:].split(",", 1)[0], 16))
    return np.array(out, dtype=np.int64)


def naive_lru(pages, l1_entries, l2_entries, l2_ways):
    l1 = OrderedDict()
    l2 = [OrderedDict() for _ in range(l2_entries // l2_ways)]
    m1 = m2 = 0
    for p in pages:
        if p in l1:
            l1.move_to_end(p)
            continue
        m1 += 1
        s = l2[p % len(l2)]
        if p in s:
            s.move_to_end(p)
        else:
            m2 += 1
            s[p] = None
            if len(s) > l2_ways:
                s.popitem(last=False)
        l1[p] = None
        if len(l1) > l1_entries:
            l1.popitem(last=False)
    return m1, m2


def repeated(fn, min_s):
    """(result of the first call, CPU seconds per call, wall seconds per call): fn() run
    until min_s of CPU time has passed, so a short trace is not timed at clock resolution."""
    t0, w0 = time.process_time(), time.perf_counter()
    res, reps = fn(), 1
    while time.process_time() - t0 < min_s:
        fn()
        reps += 1
    return res, (time.process_time() - t0) / reps, (time.perf_counter() - w0) / reps


def bench(name, addrs, cfg, naive_n, min_s=0.2):
    lk = arith_lookup(addrs)
    # CPU time of this process: the figure that does not depend on what else the host
    # runs; wall time is printed beside it.
    res, model_s, model_wall = repeated(lambda: simulate_tlb(addrs, lk, cfg, kernel_page_shift=PAGE_SHIFT), min_s)
    sub = (addrs[:naive_n] >> PAGE_SHIFT).tolist()
    (m1, m2), naive_s, _ = repeated(lambda: naive_lru(sub, cfg.l1.entries, cfg.l2.entries, cfg.l2.ways), min_s)
    # The model's TLB counts on the naive prefix must be the naive simulator's.
    pre = simulate_tlb(addrs[:naive_n], arith_lookup(addrs[:naive_n]), cfg, kernel_page_shift=PAGE_SHIFT)
    if (pre["l1_tlb_misses"], pre["l2_tlb_misses"]) != (m1, m2):
        raise SystemExit(f"{name}: model and naive LRU disagree on the prefix: "
                         f"{pre['l1_tlb_misses']}, {pre['l2_tlb_misses']} vs {m1}, {m2}")
    model_rate = addrs.size / model_s
    naive_rate = len(sub) / naive_s
    print(f"{name:28s} n={addrs.size:>10,d}  model {model_rate / 1e6:7.2f} M acc/s ({model_s * 1e3:7.1f} ms cpu, {model_wall * 1e3:7.1f} ms wall per run)"
          f"  naive-LRU {naive_rate / 1e6:5.2f} M acc/s on {len(sub):,d}  ratio {model_rate / naive_rate:6.1f}x")
    print(f"{'':28s} l1_tlb_misses={res['l1_tlb_misses']:,d} l2_tlb_misses={res['l2_tlb_misses']:,d} "
          f"walk_mem_refs={res['walk_mem_refs']:,d} walk_cycles={res['walk_cycles']:,d} "
          f"(prefix of {len(sub):,d}: l1 {m1:,d}, l2 {m2:,d}, model == naive)")
    return dict(figure=f"TLB model {name}", measured=f"{model_rate / 1e6:.2f} M acc/s",
                baseline=f"naive LRU {naive_rate / 1e6:.2f} M acc/s", ratio=model_rate / naive_rate,
                rate=model_rate, note=f"n={addrs.size:,d}; {model_s * 1e3:.1f} ms cpu, {model_wall * 1e3:.1f} ms wall per run")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000_000)
    ap.add_argument("--naive-n", type=int, default=1_000_000)
    ap.add_argument("--pages", type=int, default=65536)
    ap.add_argument("--zipf-a", type=float, default=1.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, default=5e6, help="accesses/s on the zipf stream (target)")
    ap.add_argument("--json", help="write the summary figures to this file (bench/run_all.py)")
    args = ap.parse_args(argv)
    cfg = TlbConfig.from_cfg(yaml.safe_load((ROOT / "conf/tlb/neoverse_n1.yaml").read_text()))

    warm = np.arange(1000, dtype=np.int64) << PAGE_SHIFT  # load/compile the numba cache
    simulate_tlb(warm, arith_lookup(warm), cfg, kernel_page_shift=PAGE_SHIFT)

    rng = np.random.default_rng(args.seed)
    pages = (rng.zipf(args.zipf_a, args.n) - 1) % args.pages
    # scatter the popular pages over the VA so neighbours in rank are not neighbours in VA
    perm = rng.permutation(args.pages).astype(np.int64)
    addrs = (perm[pages] << PAGE_SHIFT) + (rng.integers(0, 1 << PAGE_SHIFT, args.n) & ~7) + (1 << 32)
    zipf = bench(f"zipf a={args.zipf_a} {args.pages} pages", addrs, cfg, args.naive_n)
    zipf.update(target=f">= {args.target / 1e6:g} M acc/s", ok=zipf["rate"] >= args.target)
    figures = [zipf]
    # The same stream with data accesses kept out of the data-cache model (page-table
    # lines only): how much of the time the data lines take (tlb.model_data_lines).
    lean = bench("zipf, model_data_lines=false", addrs, dataclasses.replace(cfg, model_data_lines=False),
                 args.naive_n)
    lean.update(target="info", ok=None)
    figures.append(lean)

    # The same stream over a real page table (every page of the 256M span mapped): the
    # table walked only on an L2 miss (simulate_tlb_tables, what simulate() runs) against a
    # full lookup() of every access then simulate_tlb (the per-access walk it replaces).
    pt = PageTable(geometry("4K"))
    pt.set_ptes(1 << 32, 1 << 20, args.pages, 3)
    tables = pt.hw_tables()
    simulate_tlb_tables(addrs[:1000], tables, cfg, kernel_page_shift=PAGE_SHIFT)
    walked, t_tab, _ = repeated(lambda: simulate_tlb_tables(addrs, tables, cfg, kernel_page_shift=PAGE_SHIFT), 0.2)
    full, t_full, _ = repeated(lambda: simulate_tlb(addrs, pt.lookup(addrs), cfg, kernel_page_shift=PAGE_SHIFT), 0.2)
    if walked != full:
        raise SystemExit("walk on miss and lookup of every access disagree")
    print(f"{'page table, walk on L2 miss':28s} n={addrs.size:>10,d}  {addrs.size / t_tab / 1e6:7.2f} M acc/s  "
          f"lookup()+simulate_tlb {addrs.size / t_full / 1e6:5.2f} M acc/s  ratio {t_full / t_tab:6.1f}x (same counts)")
    figures.append(dict(figure="TLB over a PageTable, walk on L2 miss", target="info",
                        measured=f"{addrs.size / t_tab / 1e6:.2f} M acc/s",
                        baseline=f"lookup()+simulate_tlb {addrs.size / t_full / 1e6:.2f} M acc/s",
                        ratio=t_full / t_tab, ok=None, note="simulate_tlb_tables vs a walk of every access"))

    traces = sorted(set((ROOT / "tests/data").glob("*.lackey*")) | set((ROOT / "tests/data").glob("lackey*.txt.gz")))
    for path in traces:
        fig = bench(f"lackey {path.name}", read_lackey(path), cfg, args.naive_n)
        fig.update(target="info", ok=None)
        figures.append(fig)
    if not traces:
        print("no lackey trace under tests/data; zipf only")
    print(f"target >= {args.target / 1e6:g} M accesses/s on the zipf stream: {'met' if zipf['ok'] else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
