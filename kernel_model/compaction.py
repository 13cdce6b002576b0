"""Compaction, simplified: choose the block to clear and check that it can be cleared.

Counterpart: mm/compaction.c.  Linux runs two scanners towards each other (the migrate
scanner isolate_migratepages() from the zone start, the free scanner isolate_freepages()
from the zone end) until compact_finished() sees a free page of the requested order.  We
model its outcome instead of its scan:

- the target is one naturally aligned block of the requested order (what capture_control /
  compact_finished() wait for);
- a block holding an unmovable page cannot be cleared (isolate_migratepages_block() skips
  pages that are not movable, so their pageblock never frees up);
- a block lying inside a larger allocation cannot be cleared either: the allocation that
  covers it is bigger than the hole we want (we never split a folio to compact);
- among the clearable blocks we take the one with the fewest allocated movable pages (the
  least migration work), ties to the lowest pfn;
- every movable allocation inside it is migrated (migrate_pages()) to a free block of its
  own order outside it, taken from the buddy free lists, largest allocation first.

Largest first with the smallest fitting free block is exact for power-of-two sizes in
power-of-two aligned holes (first-fit decreasing is optimal when item sizes divide each
other: Coffman, Garey & Johnson, "Bin packing with divisible item sizes", J. Complexity 3,
1987), so `buddy_fit` below tells exactly whether the moves will all find room.

These functions are pure: arrays in, arrays or scalars out.  PageAllocator drives them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Head-frame states of the allocator (page_alloc.py keeps them in `state[pfn]`).
PB_TAIL = 0  # not the first frame of a block
PB_FREE = 1  # head of a free block (PageBuddy)
PB_MOVABLE = 2  # head of an allocated movable block
PB_UNMOVABLE = 3  # head of an allocated unmovable block

UNCLEARABLE = np.iinfo(np.int64).max  # cost of a block compaction cannot clear


@njit(cache=True)
def compaction_scan(state, order_of, order, block_free, max_order, prune):
    """Score every naturally aligned block of `order` for clearing, in one pass over the
    block heads in pfn order (the migrate scanner's walk, isolate_migratepages()).

    Returns `(cost, stop)`.  cost[b] (int64, one per block b = pfn >> order) is the number
    of allocated movable frames in block b, or UNCLEARABLE if it holds an unmovable page or
    lies inside a larger allocation.  A block that is wholly free would already be a free
    block of at least this order (__free_one_page() merges maximally), so no cost is below
    1, and the first block of cost 1 is the answer whatever follows: the scan stops there
    and `stop` is its index (-1 when it scanned everything; blocks past `stop` are left
    UNCLEARABLE).

    `block_free[m]` is the free frames in max-order block m.  With `prune`, a max-order
    block is skipped (its costs left UNCLEARABLE) when even its best sub-block could not
    beat the best cost found so far: a block's cost is at least its size minus the free
    frames around it.  The lowest-cost, lowest-pfn block is still exact; the other costs
    are then only upper bounds, so rescan without `prune` to rank the rest.
    O(heads scanned); numba, as the walk is sequential.
    """
    nr_blocks = state.shape[0] >> order
    cost = np.full(nr_blocks, UNCLEARABLE, dtype=np.int64)
    size = np.int64(1) << order
    max_mask = (np.int64(1) << max_order) - 1
    best = UNCLEARABLE
    pfn = np.int64(0)
    end_all = np.int64(nr_blocks) << order
    while pfn < end_all:
        if prune and best != UNCLEARABLE and (pfn & max_mask) == 0:
            bound = size - min(block_free[pfn >> max_order], size - 1)
            if bound >= best:
                pfn += max_mask + 1
                continue
        o = np.int64(order_of[pfn])
        if o > order:  # a larger block (allocated: a free one would have served the request)
            pfn += np.int64(1) << o
            continue
        start = pfn
        end = pfn + size
        movable = np.int64(0)
        bad = False
        while pfn < end:
            st = state[pfn]
            o = np.int64(order_of[pfn])
            if st == PB_UNMOVABLE:
                bad = True
            elif st == PB_MOVABLE:
                movable += np.int64(1) << o
            pfn += np.int64(1) << o
        if not bad:
            cost[start >> order] = movable
            best = min(best, movable)
            if movable == 1:
                return cost, start >> order
    return cost, np.int64(-1)


def buddy_fit(free_blocks: np.ndarray, orders: np.ndarray) -> bool:
    """Whether allocations of `orders` fit the free blocks counted in `free_blocks[order]`.

    Simulates __rmqueue_smallest() on the counts: each request, largest first, takes a
    block of the smallest order that has one and returns the split-off halves to the lower
    orders (expand()).  The pfns it would pick do not change the counts, so the answer is
    exactly whether the real allocations, made in the same order, succeed.
    """
    counts = np.array(free_blocks, dtype=np.int64)
    max_order = counts.shape[0] - 1
    for req in sorted((int(o) for o in orders), reverse=True):
        avail = np.flatnonzero(counts[req:]) if req <= max_order else np.empty(0, np.int64)
        if avail.size == 0:
            return False
        cur = req + int(avail[0])
        counts[cur] -= 1
        counts[req:cur] += 1  # expand(): one upper half at each order from req to cur - 1
    return True
