"""Buddy allocator speed at memory.size = 64G on a 4K kernel (16M frames).

    python bench/bench_page_alloc.py [--frames 16777216] [--ops 200000] [--compact-frames 2097152]

Figures: PageAllocator() initialisation at fragmentation 0, 0.5 and 1 (target
< 0.5 s); alloc+free throughput of a seeded random mix of orders 0..4 with a live set
(no compaction needed); direct compaction over --compact-frames (default 8G of 4K pages;
filling memory one alloc() at a time is the slow part): allocate every frame as order-0
movable pages, free a seeded half (order 4) or a seeded quarter (order 6) of them, then
time allocations that each need a compaction.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kernel_model.page_alloc import PageAllocator  # noqa: E402


INIT_TARGET_S = 0.5  # PageAllocator() at memory.size = 64G, any fragmentation (this bench's target)


def bench_init(frames: int, seed: int) -> list[dict]:
    PageAllocator(64, max_order=3).alloc(0)  # numba compile / cache load outside the timing
    figures = []
    for frag in (0.0, 0.5, 1.0):
        best = min(_timed(lambda: PageAllocator(frames, max_order=10, fragmentation=frag, seed=seed))
                   for _ in range(3))
        print(f"init {frames} frames fragmentation={frag}: {best * 1e3:.1f} ms")
        figures.append(dict(figure=f"PageAllocator init {frames:,d} frames, fragmentation={frag}",
                            target=f"< {INIT_TARGET_S * 1e3:g} ms", measured=f"{best * 1e3:.1f} ms", baseline="",
                            ratio=None, ok=best < INIT_TARGET_S, note="best of 3"))
    return figures


def bench_alloc_free(frames: int, ops: int, seed: int) -> dict:
    pa = PageAllocator(frames, max_order=10, fragmentation=0.5, seed=seed)
    rng = np.random.default_rng(seed)
    orders = rng.integers(0, 5, size=ops).tolist()
    frees = (rng.random(ops) < 0.45).tolist()
    picks = rng.random(ops).tolist()
    live: list[tuple[int, int]] = []
    t0 = time.perf_counter()
    for order, do_free, pick in zip(orders, frees, picks):
        if do_free and live:
            i = int(pick * len(live))
            live[i], live[-1] = live[-1], live[i]
            pfn, o = live.pop()
            pa.free(pfn, o)
        else:
            pfn = pa.alloc(order)
            if pfn is not None:
                live.append((pfn, order))
    dt = time.perf_counter() - t0
    print(f"alloc/free mix: {ops} ops in {dt:.2f} s = {ops / dt / 1e3:.0f} k ops/s "
          f"(live {len(live)}, compactions {pa.stats['compact_stall']})")
    return dict(figure=f"alloc/free mix, orders 0..4, {frames:,d} frames", target="info",
                measured=f"{ops / dt / 1e3:.0f} k ops/s", baseline="", ratio=None, ok=None, note=f"{ops:,d} ops")


def bench_compaction(frames: int, seed: int, order: int, free_fraction: float, n: int = 20) -> dict:
    pa = PageAllocator(frames, max_order=10, seed=seed)
    t0 = time.perf_counter()
    got = np.array([pa.alloc(0) for _ in range(frames)])
    t_fill = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    for pfn in got[rng.random(frames) < free_fraction].tolist():
        pa.free(pfn, 0)
    while pa.nr_free(order) or any(pa.nr_free(o) for o in range(order + 1, 11)):
        pa.alloc(order, compact=False)  # use up the blocks the random frees left whole
    t0 = time.perf_counter()
    done = 0
    for _ in range(n):
        if pa.alloc(order) is None:
            break
        done += 1
    dt = time.perf_counter() - t0
    s = pa.stats
    print(f"fill {frames} order-0 allocs: {t_fill:.2f} s = {frames / t_fill / 1e3:.0f} k allocs/s")
    print(f"order-{order} via compaction, {free_fraction:.0%} free: {done} allocs in {dt * 1e3:.0f} ms = "
          f"{dt / max(done, 1) * 1e3:.2f} ms each (migrated pages {s['compaction_migrated_pages']}, "
          f"compact_fail {s['compact_fail']})")
    return dict(figure=f"order-{order} alloc via compaction, {free_fraction:.0%} free of {frames:,d}", target="info",
                measured=f"{dt / max(done, 1) * 1e3:.2f} ms/alloc", baseline="", ratio=None, ok=None,
                note=f"{done} allocs, {s['compaction_migrated_pages']} pages migrated")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1 << 24)
    ap.add_argument("--ops", type=int, default=200_000)
    ap.add_argument("--compact-frames", type=int, default=1 << 21)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the summary figures to this file (bench/run_all.py)")
    args = ap.parse_args()
    figures = bench_init(args.frames, args.seed)
    figures.append(bench_alloc_free(args.frames, args.ops, args.seed))
    figures.append(bench_compaction(args.compact_frames, args.seed, order=4, free_fraction=0.5))
    figures.append(bench_compaction(args.compact_frames, args.seed, order=6, free_fraction=0.25))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
