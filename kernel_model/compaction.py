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

# Head-frame states of the allocator (page_alloc.py keeps them in `state[pfn]`).
PB_TAIL = 0  # not the first frame of a block
PB_FREE = 1  # head of a free block (PageBuddy)
PB_MOVABLE = 2  # head of an allocated movable block
PB_UNMOVABLE = 3  # head of an allocated unmovable block


def compaction_scan(state: np.ndarray, order_of: np.ndarray, order: int):
    """Score every naturally aligned block of `order` for clearing.

    `state`/`order_of` are the allocator's per-frame head arrays.  Returns
    `(clearable, movable_pages)`, both of length nr_frames >> order: whether the block holds
    no unmovable page and is not inside a larger allocation, and how many of its frames are
    allocated movable memory.  Vectorised over the heads: O(nr_frames) to find them.
    """
    nr_blocks = state.shape[0] >> order
    heads = np.flatnonzero(state).astype(np.int64)
    hstate = state[heads]
    horder = order_of[heads].astype(np.int64)
    # Blocks must lie wholly below nr_blocks << order; heads beyond belong to no candidate.
    inside = (heads >> order) < nr_blocks

    small = inside & (horder <= order)
    block = heads[small] >> order
    mov = (hstate[small] == PB_MOVABLE)
    movable_pages = np.bincount(block[mov], weights=(1 << horder[small][mov]).astype(np.float64),
                                minlength=nr_blocks).astype(np.int64)[:nr_blocks]
    unmov_block = block[hstate[small] == PB_UNMOVABLE]

    clearable = np.ones(nr_blocks, dtype=bool)
    clearable[unmov_block] = False
    # An allocation of a larger order covers 1 << (o - order) candidate blocks: mark them
    # with a difference array so no Python loop runs per allocation.
    big = inside & (horder > order) & (hstate != PB_FREE)
    if big.any():
        start = heads[big] >> order
        end = np.minimum(start + (1 << (horder[big] - order)), nr_blocks)
        diff = np.zeros(nr_blocks + 1, dtype=np.int64)
        np.add.at(diff, start, 1)
        np.add.at(diff, end, -1)
        clearable &= np.cumsum(diff[:-1]) == 0
    return clearable, movable_pages


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
