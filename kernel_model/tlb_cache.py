"""Set-associative caches for the translation model: the sequential kernels of tlb.py.

Every structure here (L1 dTLB, L2 TLB, walk cache, L1D, L2D) is the same thing: `sets`
rows of `ways` (tag, stamp) pairs.  The contracts:

- A tag is a non-negative int64; -1 marks an empty way.
- The set of a tag is chosen by the caller (tag-derived; see tlb.py) and passed in.
- A stamp is the logical time of the last use (LRU) or of the fill (FIFO); an empty way
  has stamp -1, so it is always the first victim.  Ties go to the lowest way, so the
  victim is a pure function of the access order: same input, same bytes.
- A lookup that hits refreshes the stamp only under LRU; a miss never changes state;
  a fill replaces the way with the smallest stamp.

These are the loops that are sequential by nature (each access sees the state the
previous one left), so they are numba-compiled with cache=True: a sweep runs many
cells per process and must not recompile per cell.  Everything vectorisable is done
in numpy before the kernel is called (tlb.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

EMPTY = -1

# Output counters of tlb_run(), by index.
C_L1_MISS = 0
C_L2_MISS = 1
C_WALKS = 2
C_WALK_REFS = 3
C_WALK_CYCLES = 4
C_WC_HITS = 5
C_PT_L1D_MISS = 6
C_PT_L2D_MISS = 7
C_DATA_L1D_MISS = 8
C_DATA_L2D_MISS = 9
NR_COUNTERS = 10

# Where a data-cache read was served, as returned by dcache_read().
SERVED_L1D, SERVED_L2D, SERVED_MEM = 0, 1, 2


def cache_new(sets: int, ways: int) -> tuple[np.ndarray, np.ndarray]:
    """An empty structure: (tags, stamps), both int64[sets, ways] filled with -1."""
    return (np.full((sets, ways), EMPTY, dtype=np.int64),
            np.full((sets, ways), EMPTY, dtype=np.int64))


@njit(cache=True)
def cache_lookup(tags, stamps, s, tag, now, lru):
    """True when `tag` is in set `s`; under LRU a hit becomes the most recent."""
    for w in range(tags.shape[1]):
        if tags[s, w] == tag:
            if lru:
                stamps[s, w] = now
            return True
    return False


@njit(cache=True)
def cache_fill(tags, stamps, s, tag, now):
    """Insert `tag` (known absent) into set `s`; return the evicted tag or -1."""
    victim = 0
    oldest = stamps[s, 0]
    for w in range(1, tags.shape[1]):
        if stamps[s, w] < oldest:
            oldest = stamps[s, w]
            victim = w
    evicted = tags[s, victim]
    tags[s, victim] = tag
    stamps[s, victim] = now
    return evicted


@njit(cache=True)
def cache_invalidate(tags, stamps, s, tag):
    """Drop `tag` from set `s` if present (back-invalidation)."""
    for w in range(tags.shape[1]):
        if tags[s, w] == tag:
            tags[s, w] = EMPTY
            stamps[s, w] = EMPTY
            return


@njit(cache=True)
def dcache_read(l1t, l1s, l2t, l2s, line, now):
    """One read of physical cache line `line` through an inclusive L1D/L2D pair.

    L1D is looked up first; on a miss L2D; on a miss memory.  The line is filled into
    L2D (on an L2D miss) and L1D (on an L1D miss).  L2D is inclusive of L1D: a line
    evicted from L2D is invalidated in L1D (WikiChip, Cortex-A76 / Neoverse N1: "The L2
    is strictly inclusive of the L1 data cache").  L1D hits are not seen by L2D, so
    a line hot in L1D can age out of L2D, as in hardware.  Both are true LRU (the TRM's
    L1D is pseudo-LRU; LRU keeps the model checkable).  Returns SERVED_*.
    """
    n1 = l1t.shape[0]
    s1 = line % n1
    if cache_lookup(l1t, l1s, s1, line, now, True):
        return SERVED_L1D
    s2 = line % l2t.shape[0]
    if cache_lookup(l2t, l2s, s2, line, now, True):
        served = SERVED_L2D
    else:
        served = SERVED_MEM
        evicted = cache_fill(l2t, l2s, s2, line, now)
        if evicted != EMPTY:
            cache_invalidate(l1t, l1s, evicted % n1, evicted)
    cache_fill(l1t, l1s, s1, line, now)
    return served


@njit(cache=True)
def tlb_run(keys, present, rows, desc, lines,
            l1_sets, l1_ways, l2_sets, l2_ways, wc_sets, wc_ways, lru,
            d1_sets, d1_ways, d2_sets, d2_ways,
            wc_latency, d1_latency, d2_latency, mem_latency):
    """Run the access stream through L1 TLB, L2 TLB, walk cache and data caches.

    keys:    int64[m] TLB entry key (tlb.py: (addr >> shift) << 6 | shift); ignored
             where not present.  The set index is (key >> 6) % sets.
    present: bool[m]  the page is mapped; else one miss in each TLB, a walk, no fill.
    rows:    int64[m] row of `desc` for each access (the caller's pre-filter keeps the
             original rows so that desc is never copied).
    desc:    int64[n, L] descriptor physical addresses, top..leaf, -1 below the walk.
    lines:   int64[m] physical data line of the access, -1 = do not model it.
    Returns int64[NR_COUNTERS] (C_* indices).
    """
    out = np.zeros(NR_COUNTERS, dtype=np.int64)
    l1t, l1s = np.full((l1_sets, l1_ways), EMPTY, np.int64), np.full((l1_sets, l1_ways), EMPTY, np.int64)
    l2t, l2s = np.full((l2_sets, l2_ways), EMPTY, np.int64), np.full((l2_sets, l2_ways), EMPTY, np.int64)
    wct = np.full((max(wc_sets, 1), max(wc_ways, 1)), EMPTY, np.int64)
    wcs = np.full((max(wc_sets, 1), max(wc_ways, 1)), EMPTY, np.int64)
    d1t, d1s = np.full((d1_sets, d1_ways), EMPTY, np.int64), np.full((d1_sets, d1_ways), EMPTY, np.int64)
    d2t, d2s = np.full((d2_sets, d2_ways), EMPTY, np.int64), np.full((d2_sets, d2_ways), EMPTY, np.int64)
    nlev = desc.shape[1]
    now = 0
    for i in range(keys.shape[0]):
        now += 1
        walk = False
        if not present[i]:
            out[C_L1_MISS] += 1
            out[C_L2_MISS] += 1
            walk = True
        else:
            key = keys[i]
            tag = key >> 6
            s1 = tag % l1_sets
            if not cache_lookup(l1t, l1s, s1, key, now, lru):
                out[C_L1_MISS] += 1
                s2 = tag % l2_sets
                if not cache_lookup(l2t, l2s, s2, key, now, lru):
                    out[C_L2_MISS] += 1
                    walk = True
                    cache_fill(l2t, l2s, s2, key, now)
                cache_fill(l1t, l1s, s1, key, now)
        if walk:
            out[C_WALKS] += 1
            r = rows[i]
            last = -1
            for j in range(nlev):
                if desc[r, j] >= 0:
                    last = j
            # The walk cache holds table descriptors (all levels above the last one
            # read); probe deepest first, resume the walk below the deepest hit.
            start = 0
            if wc_sets > 0:
                out[C_WALK_CYCLES] += wc_latency
                for j in range(last - 1, -1, -1):
                    d = desc[r, j]
                    if d >= 0 and cache_lookup(wct, wcs, (d >> 3) % wc_sets, d, now, lru):
                        out[C_WC_HITS] += 1
                        start = j + 1
                        break
            for j in range(start, last + 1):
                d = desc[r, j]
                if d < 0:
                    continue
                out[C_WALK_REFS] += 1
                now += 1
                served = dcache_read(d1t, d1s, d2t, d2s, d >> 6, now)
                if served == SERVED_L1D:
                    out[C_WALK_CYCLES] += d1_latency
                elif served == SERVED_L2D:
                    out[C_WALK_CYCLES] += d2_latency
                    out[C_PT_L1D_MISS] += 1
                else:
                    out[C_WALK_CYCLES] += mem_latency
                    out[C_PT_L1D_MISS] += 1
                    out[C_PT_L2D_MISS] += 1
                if j < last and wc_sets > 0:
                    cache_fill(wct, wcs, (d >> 3) % wc_sets, d, now)
        if lines[i] >= 0:
            now += 1
            served = dcache_read(d1t, d1s, d2t, d2s, lines[i], now)
            if served != SERVED_L1D:
                out[C_DATA_L1D_MISS] += 1
                if served == SERVED_MEM:
                    out[C_DATA_L2D_MISS] += 1
    return out
