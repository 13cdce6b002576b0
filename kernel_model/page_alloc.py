"""The buddy allocator over kernel-page frames, with fragmentation and compaction.

Counterpart: mm/page_alloc.c (the free lists, __rmqueue_smallest(), expand(),
__free_one_page()), mm/compaction.c (see compaction.py), include/linux/pageblock-flags.h.

Memory is `nr_frames` kernel-page frames, pfn 0 .. nr_frames - 1, in one zone.  Every
frame belongs to exactly one block: a naturally aligned run of 1 << order frames, order
0 .. max_order inclusive (MAX_PAGE_ORDER), either free (on the free list of its order)
or allocated (movable or unmovable).  Blocks tile memory with no gap.

State, all numpy, nothing per frame in Python (16M frames = 64G of 4K pages fit in 32 MB):
- `state[pfn]`  int8: PB_FREE / PB_MOVABLE / PB_UNMOVABLE for the head (first) frame of a
  block, PB_TAIL for every other frame.  Like Linux, only the head carries the order
  (PageBuddy + buddy_order(), or the compound order of an allocated page).
- `order_of[pfn]` int8: the order of the block headed by pfn.
- free lists: one hierarchical bitmap per order over its block indices (pfn >> order),
  64-way summary levels above, so that the lowest free block of an order is found in
  log64(nr_frames) word reads (find-first-set) and a block is added or removed in as many.

Deterministic choice: Linux takes the head of a free list (whichever block was freed last
or first); we take the lowest pfn of the smallest order that has one, so the same calls
give the same pfns on every run and every machine.

Fragmentation: `fragmentation` f places, with a seeded RNG, one UNMOVABLE order-0 page at
a random offset in round(f * nr_pageblocks) distinct random pageblocks (pageblock_order =
min(max_order, PMD order): include/linux/pageblock-flags.h with THP/hugetlb on arm64,
HPAGE_PMD_ORDER = PMD_SHIFT - PAGE_SHIFT).  Each such pageblock can then never be handed
out whole, nor compacted.  Those pages count as used memory (`unmovable_bytes`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .units import parse_page_size
from .compaction import PB_FREE, PB_MOVABLE, PB_TAIL, PB_UNMOVABLE, UNCLEARABLE, buddy_fit, compaction_scan

# arch/arm64/Kconfig, config ARCH_FORCE_MAX_ORDER: default "13" if ARM64_64K_PAGES,
# "11" if ARM64_16K_PAGES, "10" otherwise (4K).  Since v6.4 (commit "mm, treewide: redefine
# MAX_ORDER sanely") it is inclusive: orders 0..MAX_PAGE_ORDER can be allocated.
MAX_ORDER_FOR = {4096: 10, 16384: 11, 65536: 13}

# The PMD order of each granule: PMD_SHIFT - PAGE_SHIFT = PAGE_SHIFT - 3
# (arch/arm64/include/asm/pgtable-hwdef.h); pageblock_order = min(it, MAX_PAGE_ORDER).
PMD_ORDER_FOR = {4096: 9, 16384: 11, 65536: 13}

# Free-list bitmap: 64 bits a word; summary levels until one word remains.
_WORD_SHIFT = 6
_MAX_LEVELS = 8  # 64**8 bits: far beyond any memory.size
_ONE = np.uint64(1)


def pageblock_order_for(page_size: int, max_order: int) -> int:
    """include/linux/pageblock-flags.h: pageblock_order = min(HPAGE_PMD_ORDER, max order)."""
    return min(PMD_ORDER_FOR[page_size], max_order)


# -- free-list bitmaps (numba: one block at a time, inherently sequential) ------------

@njit(cache=True)
def _ctz(x):
    """Index of the lowest set bit of a non-zero uint64."""
    n = 0
    if (x & np.uint64(0xFFFFFFFF)) == 0:
        n += 32
        x >>= np.uint64(32)
    if (x & np.uint64(0xFFFF)) == 0:
        n += 16
        x >>= np.uint64(16)
    if (x & np.uint64(0xFF)) == 0:
        n += 8
        x >>= np.uint64(8)
    if (x & np.uint64(0xF)) == 0:
        n += 4
        x >>= np.uint64(4)
    if (x & np.uint64(0x3)) == 0:
        n += 2
        x >>= np.uint64(2)
    if (x & np.uint64(0x1)) == 0:
        n += 1
    return n


@njit(cache=True)
def _bm_set(bm, off, nlev, order, idx):
    for lvl in range(nlev[order]):
        w = idx >> 6
        pos = off[order, lvl] + w
        old = bm[pos]
        bm[pos] = old | (np.uint64(1) << np.uint64(idx & 63))
        if old != 0:
            return
        idx = w


@njit(cache=True)
def _bm_clear(bm, off, nlev, order, idx):
    for lvl in range(nlev[order]):
        w = idx >> 6
        pos = off[order, lvl] + w
        new = bm[pos] & ~(np.uint64(1) << np.uint64(idx & 63))
        bm[pos] = new
        if new != 0:
            return
        idx = w


@njit(cache=True)
def _bm_first(bm, off, nlev, order):
    """Lowest set index in the bitmap of `order`, or -1."""
    idx = 0
    for lvl in range(nlev[order] - 1, -1, -1):
        word = bm[off[order, lvl] + idx]
        if word == 0:
            return -1
        idx = idx * 64 + _ctz(word)
    return idx


@njit(cache=True)
def _rmqueue_smallest(bm, off, nlev, nr_free, block_free, state, order_of, order, max_order, new_state):
    """mm/page_alloc.c: __rmqueue_smallest() + expand().  Returns the pfn or -1.

    The smallest order with a free block wins; within it the lowest pfn.  A larger block is
    split: expand() keeps the lower half and puts each upper half on the free list of its
    order.
    """
    for cur in range(order, max_order + 1):
        idx = _bm_first(bm, off, nlev, cur)
        if idx < 0:
            continue
        pfn = idx << cur
        _bm_clear(bm, off, nlev, cur, idx)
        nr_free[cur] -= 1
        while cur > order:
            cur -= 1
            buddy = pfn + (1 << cur)
            state[buddy] = PB_FREE
            order_of[buddy] = cur
            _bm_set(bm, off, nlev, cur, buddy >> cur)
            nr_free[cur] += 1
        state[pfn] = new_state
        order_of[pfn] = order
        block_free[pfn >> max_order] -= 1 << order
        return pfn
    return -1


@njit(cache=True)
def _free_one_page(bm, off, nlev, nr_free, block_free, state, order_of, pfn, order, max_order, nr_frames):
    """mm/page_alloc.c: __free_one_page().  Merge with the buddy (mm/internal.h:
    __find_buddy_pfn() = pfn ^ (1 << order)) while it is a free block of the same order
    (page_is_buddy()), then put the merged block on its free list.  Returns its head pfn."""
    state[pfn] = PB_TAIL
    block_free[pfn >> max_order] += 1 << order
    while order < max_order:
        buddy = pfn ^ (1 << order)
        if buddy >= nr_frames or state[buddy] != PB_FREE or order_of[buddy] != order:
            break
        _bm_clear(bm, off, nlev, order, buddy >> order)
        nr_free[order] -= 1
        state[buddy] = PB_TAIL
        pfn &= buddy
        order += 1
    state[pfn] = PB_FREE
    order_of[pfn] = order
    _bm_set(bm, off, nlev, order, pfn >> order)
    nr_free[order] += 1
    return pfn


@njit(cache=True)
def _isolate_free(bm, off, nlev, nr_free, block_free, state, order_of, start, end, max_order):
    """Take every free block inside [start, end) off its free list (isolate_freepages_block()
    for the block being cleared: its free frames become part of the new allocation).
    Returns the number of free frames taken."""
    taken = 0
    pfn = start
    while pfn < end:
        o = order_of[pfn]
        if state[pfn] == PB_FREE:
            _bm_clear(bm, off, nlev, o, pfn >> o)
            nr_free[o] -= 1
            state[pfn] = PB_TAIL
            taken += 1 << o
        pfn += 1 << o  # blocks tile memory: the next head follows this block
    block_free[start >> max_order] -= taken
    return taken


@njit(cache=True)
def _rmqueue_bulk(bm, off, nlev, nr_free, block_free, state, order_of, orders, kinds, groups, max_order,
                  nr_frames, out):
    """_rmqueue_smallest() for each request in turn, as that many alloc() calls without
    compaction would make them. Requests come in groups (consecutive equal `groups`):
    when one fails, the requests its group already got are freed again, newest first,
    which restores the free lists exactly (the buddy layout of a set of free frames is
    unique: __free_one_page() merges every free buddy pair). Returns the index of the
    first request of the failed group, or the number of requests."""
    gstart = 0
    for i in range(orders.size):
        if i == 0 or groups[i] != groups[i - 1]:
            gstart = i
        pfn = _rmqueue_smallest(bm, off, nlev, nr_free, block_free, state, order_of, orders[i], max_order,
                                kinds[i])
        if pfn < 0:
            for j in range(i - 1, gstart - 1, -1):
                _free_one_page(bm, off, nlev, nr_free, block_free, state, order_of, out[j], orders[j],
                               max_order, nr_frames)
            return gstart
        out[i] = pfn
    return orders.size


# -- initial layout (vectorised) --------------------------------------------------------

def _bitmap_layout(nr_frames: int, max_order: int):
    """Offsets of every (order, level) word range in one flat uint64 array."""
    off = np.zeros((max_order + 1, _MAX_LEVELS), dtype=np.int64)
    nlev = np.zeros(max_order + 1, dtype=np.int64)
    total = 0
    for order in range(max_order + 1):
        nbits = nr_frames >> order
        lvl = 0
        nwords = max(1, -(-nbits // 64))
        while True:
            if lvl == _MAX_LEVELS:
                raise ValueError(f"nr_frames={nr_frames} is too large for the free-list bitmaps")
            off[order, lvl] = total
            total += nwords
            lvl += 1
            if nwords == 1:
                break
            nwords = -(-nwords // 64)
        nlev[order] = lvl
    return off, nlev, total


def _initial_free_heads(nr_frames: int, max_order: int, used: np.ndarray) -> list[np.ndarray]:
    """Free-block indices (pfn >> order), per order, of memory whose only used frames are
    the sorted order-0 frames `used`.

    This is the layout that freeing every other frame through __free_one_page() builds
    (memblock_free_all() -> __free_pages_core()), computed from the used frames alone, top
    down: every max-order block without a used frame is free; below, the children of a
    block that is not wholly free (it holds a used frame, or runs past the end of memory)
    are free blocks unless they hold a used frame themselves.  O(len(used) * max_order)
    plus the max-order blocks: no pass over every frame.
    """
    heads: list[np.ndarray] = [np.empty(0, np.int64)] * (max_order + 1)
    nb = nr_frames >> max_order
    notfull = np.unique(used >> max_order)
    notfull = notfull[notfull < nb]
    heads[max_order] = np.setdiff1d(np.arange(nb, dtype=np.int64), notfull, assume_unique=True)
    for order in range(max_order - 1, -1, -1):
        parents = notfull
        partial = nr_frames >> (order + 1)  # the block running past the end, if any
        if nr_frames & ((1 << (order + 1)) - 1) and 2 * partial < nr_frames >> order:
            parents = np.append(parents, partial)
        nb = nr_frames >> order
        children = np.concatenate((2 * parents, 2 * parents + 1))
        children = np.sort(children[children < nb])
        notfull = np.unique(used >> order)
        notfull = notfull[notfull < nb]
        heads[order] = np.setdiff1d(children, notfull, assume_unique=True)
    return heads


class PageAllocator:
    """A buddy allocator (mm/page_alloc.c) over `nr_frames` kernel-page frames.

    Orders 0..max_order inclusive.  `fragmentation` in [0, 1] pollutes that fraction of
    pageblocks with one unmovable page each (module docstring).  `page_size` (bytes) is
    only needed for byte statistics and the pageblock order; when None it is the granule
    whose MAX_ORDER_FOR equals max_order, or 4096 for any other max_order (test pools).
    """

    def __init__(self, nr_frames, *, max_order, fragmentation=0.0, seed=0, page_size=None,
                 fragmentation_order=None):
        if isinstance(nr_frames, bool) or not isinstance(nr_frames, (int, np.integer)) or nr_frames < 1:
            raise ValueError(f"nr_frames: expected a positive integer number of frames, got {nr_frames!r}")
        if isinstance(max_order, bool) or not isinstance(max_order, (int, np.integer)) or not 0 <= max_order <= 30:
            raise ValueError(f"max_order: expected an integer 0..30 (arm64: {MAX_ORDER_FOR}), got {max_order!r}")
        try:
            fragmentation = float(fragmentation)
        except (TypeError, ValueError):
            raise ValueError(f"fragmentation: expected a number 0.0..1.0, got {fragmentation!r}") from None
        if not 0.0 <= fragmentation <= 1.0 or math.isnan(fragmentation):
            raise ValueError(f"fragmentation: {fragmentation!r} is out of range 0.0..1.0")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
        if page_size is None:
            by_order = {o: ps for ps, o in MAX_ORDER_FOR.items()}
            page_size = by_order.get(int(max_order), 4096)
        page_size = parse_page_size(page_size, what="page_size")

        self.nr_frames = int(nr_frames)
        self.max_order = int(max_order)
        self.page_size = int(page_size)
        self.pageblock_order = pageblock_order_for(self.page_size, self.max_order)
        # The block size the unmovable scatter pollutes: a pageblock by default; a smaller
        # order models a finer-grained scatter (e.g. 4 on 4K: every polluted 64K block can
        # no longer hold a 64K folio, the per-process page size's minimum on a 4K kernel).
        if fragmentation_order is None:
            fragmentation_order = self.pageblock_order
        if isinstance(fragmentation_order, bool) or not isinstance(fragmentation_order, (int, np.integer)) \
                or not 0 <= fragmentation_order <= self.max_order:
            raise ValueError(f"memory.fragmentation_order: expected an order 0..{self.max_order}, "
                             f"got {fragmentation_order!r}")
        self.fragmentation_order = int(fragmentation_order)
        self.fragmentation = fragmentation
        self.seed = int(seed)
        self._migrate_hook = None
        self._pending_moves = []  # (old_pfn, new_pfn, order) of the compaction in progress

        # Fragmentation: one unmovable page in each of a seeded choice of pageblocks.
        fo = self.fragmentation_order
        nr_pageblocks = self.nr_frames >> fo
        nr_polluted = int(math.floor(fragmentation * nr_pageblocks + 0.5))
        rng = np.random.default_rng(seed)
        blocks = np.sort(rng.choice(nr_pageblocks, size=nr_polluted, replace=False)) if nr_polluted else \
            np.empty(0, dtype=np.int64)
        offsets = rng.integers(0, 1 << fo, size=nr_polluted)
        used = (blocks.astype(np.int64) << fo) + offsets
        self.prefill_pfns = used  # sorted; for tests and reports

        self.state = np.zeros(self.nr_frames, dtype=np.int8)
        self.order_of = np.zeros(self.nr_frames, dtype=np.int8)
        self._off, self._nlev, nwords = _bitmap_layout(self.nr_frames, self.max_order)
        self._bm = np.zeros(nwords, dtype=np.uint64)
        self._nr_free = np.zeros(self.max_order + 1, dtype=np.int64)
        for order, idx in enumerate(_initial_free_heads(self.nr_frames, self.max_order, used)):
            self.state[idx << order] = PB_FREE
            self.order_of[idx << order] = order
            self._nr_free[order] = idx.size
            self._bitmap_fill(order, idx)
        self.state[used] = PB_UNMOVABLE
        # Free frames per max-order block (the last one may be partial): compaction's bound.
        self._block_free = np.full((self.nr_frames >> self.max_order) + 1, 1 << self.max_order, dtype=np.int64)
        self._block_free[-1] = self.nr_frames & ((1 << self.max_order) - 1)
        np.subtract.at(self._block_free, used >> self.max_order, 1)

        self._stats = dict.fromkeys((
            "allocs", "frees", "alloc_failures", "compact_stall", "compact_success", "compact_fail",
            "compaction_migrated_pages", "compaction_migrated_blocks"), 0)
        self._allocated = {PB_MOVABLE: 0, PB_UNMOVABLE: 0}  # pages held by callers
        # Compaction deferral (mm/compaction.c defer_compaction(), made exact): a failed
        # compaction for `order` stays failed until a free or a successful compaction
        # changes the layout, since a plain allocation only removes free space.  Consulting
        # it changes no result, only the time to reach it.
        self._layout_gen = 0
        self._compact_failed_gen = {}

    def _bitmap_fill(self, order: int, idx: np.ndarray) -> None:
        """Set the bits `idx` (sorted, unique) in the free-list bitmap of `order`, all levels."""
        for lvl in range(int(self._nlev[order])):
            if idx.size == 0:
                return
            words = idx >> _WORD_SHIFT
            base = int(self._off[order, lvl])
            np.bitwise_or.at(self._bm, base + words, _ONE << (idx & 63).astype(np.uint64))
            idx = np.unique(words)

    # -- the contract ------------------------------------------------------------------

    def set_migrate_hook(self, fn) -> None:
        """fn(old_pfn, new_pfn, order) is called for each movable allocation compaction
        moves, after the allocator's state is final for that alloc() (so it may call back)."""
        if fn is not None and not callable(fn):
            raise ValueError(f"set_migrate_hook: expected a callable fn(old_pfn, new_pfn, order) or None, got {fn!r}")
        self._migrate_hook = fn

    def alloc(self, order, *, movable=True, compact=True):
        """Allocate a block of 1 << order frames; return its first pfn, or None.

        None only after compaction (if `compact`) failed; counted in `alloc_failures`.
        The caller decides on fallback to a smaller order or OOM.
        """
        order = self._check_order(order, "alloc")
        kind = PB_MOVABLE if movable else PB_UNMOVABLE
        pfn = self._rmqueue(order, kind)
        if pfn < 0 and compact:
            pfn = self._compact(order, kind)
        if pfn < 0:
            self._stats["alloc_failures"] += 1
            return None
        self._stats["allocs"] += 1
        self._allocated[kind] += 1 << order
        if self._pending_moves:
            self._run_hooks()
        return pfn

    def alloc_bulk(self, orders, movable, groups) -> tuple[np.ndarray, int]:
        """alloc(orders[i], movable=movable[i], compact=False) for each i in turn, in one call:
        exactly the pfns those calls would return, in that order. The requests come in
        groups (one fault's folio and page tables: equal consecutive `groups` values); at
        the first request that finds no free block its whole group is undone, nothing is
        counted for it, and the call stops. Returns (pfns, n): pfns[:n] were allocated, n
        the first request of the failed group or len(orders). The caller takes that group
        through alloc() (compaction, fallback) itself."""
        orders = np.asarray(orders, np.int64)
        movable = np.asarray(movable, np.bool_)
        groups = np.asarray(groups, np.int64)
        if orders.size and (orders.min() < 0 or orders.max() > self.max_order):
            raise ValueError(f"alloc_bulk: orders must lie in 0..{self.max_order} (max_order)")
        kinds = np.where(movable, PB_MOVABLE, PB_UNMOVABLE).astype(self.state.dtype)
        out = np.full(orders.size, -1, np.int64)
        n = int(_rmqueue_bulk(self._bm, self._off, self._nlev, self._nr_free, self._block_free, self.state,
                              self.order_of, orders, kinds, groups, self.max_order, self.nr_frames, out))
        pages = np.int64(1) << orders[:n]
        self._stats["allocs"] += n
        self._allocated[PB_MOVABLE] += int(pages[movable[:n]].sum())
        self._allocated[PB_UNMOVABLE] += int(pages[~movable[:n]].sum())
        return out[:n], n

    def free(self, pfn, order) -> None:
        """Free the block at `pfn` of `order`, exactly as it was allocated."""
        order = self._check_order(order, "free")
        if isinstance(pfn, bool) or not isinstance(pfn, (int, np.integer)) or not 0 <= pfn < self.nr_frames:
            raise ValueError(f"free: pfn {pfn!r} is not a frame number 0..{self.nr_frames - 1}")
        pfn = int(pfn)
        kind = int(self.state[pfn])
        if kind not in (PB_MOVABLE, PB_UNMOVABLE) or int(self.order_of[pfn]) != order:
            what = "a free block" if kind == PB_FREE else "not the first frame of an allocation" \
                if kind == PB_TAIL else f"an allocation of order {int(self.order_of[pfn])}"
            raise ValueError(f"free(pfn={pfn}, order={order}): pfn {pfn} is {what}; "
                             f"free exactly the pfn and order alloc() returned, once")
        i = int(np.searchsorted(self.prefill_pfns, pfn))
        if i < self.prefill_pfns.size and int(self.prefill_pfns[i]) == pfn:
            raise ValueError(f"free(pfn={pfn}, order={order}): pfn {pfn} is a fragmentation pre-fill page, "
                             f"which stays allocated for the allocator's life; free only what alloc() returned")
        _free_one_page(self._bm, self._off, self._nlev, self._nr_free, self._block_free, self.state,
                       self.order_of, pfn, order, self.max_order, self.nr_frames)
        self._allocated[kind] -= 1 << order
        self._stats["frees"] += 1
        self._layout_gen += 1

    @property
    def nr_free_pages(self) -> int:
        """Free frames (NR_FREE_PAGES)."""
        return int((self._nr_free << np.arange(self.max_order + 1, dtype=np.int64)).sum())

    def nr_free(self, order) -> int:
        """Free blocks of exactly `order` (a column of /proc/buddyinfo)."""
        return int(self._nr_free[self._check_order(order, "nr_free")])

    def free_list(self, order) -> np.ndarray:
        """The pfns on the free list of `order`, ascending (diagnostic: O(nr_frames >> order))."""
        order = self._check_order(order, "free_list")
        nbits = self.nr_frames >> order
        start = int(self._off[order, 0])
        nwords = max(1, -(-nbits // 64))
        bits = np.unpackbits(self._bm[start : start + nwords].view(np.uint8), bitorder="little")[:nbits]
        return np.flatnonzero(bits).astype(np.int64) << order

    def frame_kinds(self) -> np.ndarray:
        """Per frame: 0 free, 1 movable, 2 unmovable (int8; diagnostic, O(nr_frames))."""
        heads = np.flatnonzero(self.state)
        kinds = (self.state[heads] - PB_FREE).astype(np.int8)
        return np.repeat(kinds, 1 << self.order_of[heads].astype(np.int64))

    @property
    def stats(self) -> dict:
        """Counters and gauges; byte figures in bytes, pages in kernel pages."""
        s = dict(self._stats)
        s["nr_free_pages"] = self.nr_free_pages
        s["movable_pages"] = self._allocated[PB_MOVABLE]
        s["unmovable_pages"] = self._allocated[PB_UNMOVABLE]
        s["prefill_unmovable_pages"] = int(self.prefill_pfns.size)
        # The fragmentation pre-fill only: used memory that is no anon, pagecache or table.
        s["unmovable_bytes"] = int(self.prefill_pfns.size) * self.page_size
        return s

    # -- internals ---------------------------------------------------------------------

    _use_deferral = True  # tests switch it off to show it changes no result

    def _check_order(self, order, what: str) -> int:
        if type(order) is int and 0 <= order <= self.max_order:  # the common case, cheaply
            return order
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= order <= self.max_order:
            raise ValueError(f"{what}: order {order!r} is out of range 0..{self.max_order} (max_order)")
        return int(order)

    def _rmqueue(self, order: int, kind: int) -> int:
        return int(_rmqueue_smallest(self._bm, self._off, self._nlev, self._nr_free, self._block_free,
                                     self.state, self.order_of, order, self.max_order, kind))

    def _compact(self, order: int, kind: int) -> int:
        """mm/compaction.c, simplified (see compaction.py): clear one block of `order` by
        migrating its movable allocations elsewhere, then hand it out.  -1 on failure."""
        self._stats["compact_stall"] += 1
        self._pending_moves = []
        deferred = self._use_deferral and self._compact_failed_gen.get(order) == self._layout_gen
        if deferred or self.nr_free_pages < (1 << order):
            # Not enough free memory anywhere: clearing any block needs 1 << order free frames
            # in all (its own free frames plus room for what it holds).
            return self._compact_fail(order)
        cost, stop = compaction_scan(self.state, self.order_of, order, self._block_free, self.max_order, True)
        cand = int(np.argmin(cost))  # fewest movable pages; ties: lowest pfn
        if stop >= 0:  # a block with one movable page: the cheapest, and always movable
            cand = int(stop)
        elif cost[cand] == UNCLEARABLE:
            return self._compact_fail(order)
        elif not self._fits_elsewhere(cand << order, (cand + 1) << order):
            # Rank every block exactly, then take the cheapest one that can be cleared.
            cost, _ = compaction_scan(self.state, self.order_of, order, self._block_free, self.max_order, False)
            while True:
                cand = int(np.argmin(cost))  # fewest movable pages; ties: lowest pfn
                if cost[cand] == UNCLEARABLE:
                    return self._compact_fail(order)
                if self._fits_elsewhere(cand << order, (cand + 1) << order):
                    break
                cost[cand] = UNCLEARABLE
        start, end = cand << order, (cand + 1) << order
        heads = start + np.flatnonzero(self.state[start:end])
        moving = heads[self.state[heads] == PB_MOVABLE]
        # Largest first (buddy_fit's order), ties in address order.
        moving = moving[np.lexsort((moving, -self.order_of[moving].astype(np.int64)))]
        _isolate_free(self._bm, self._off, self._nlev, self._nr_free, self._block_free, self.state, self.order_of,
                      start, end, self.max_order)
        migrated = 0
        for old in moving.tolist():
            o = int(self.order_of[old])
            new = self._rmqueue(o, PB_MOVABLE)
            if new < 0:  # buddy_fit said it fits: a broken invariant, not an allocation failure
                raise RuntimeError(f"compaction: no room for order-{o} block at pfn {old} after buddy_fit")
            self.state[old] = PB_TAIL
            self._pending_moves.append((old, new, o))
            migrated += 1 << o
        self.state[start] = kind
        self.order_of[start] = order
        self._stats["compact_success"] += 1
        self._stats["compaction_migrated_pages"] += migrated
        self._stats["compaction_migrated_blocks"] += len(self._pending_moves)
        self._layout_gen += 1
        return start

    def _fits_elsewhere(self, start: int, end: int) -> bool:
        """Whether the movable allocations in [start, end) fit the free blocks outside it."""
        heads = start + np.flatnonzero(self.state[start:end])
        st = self.state[heads]
        orders = self.order_of[heads].astype(np.int64)
        outside = self._nr_free.copy()
        np.subtract.at(outside, orders[st == PB_FREE], 1)
        return buddy_fit(outside, orders[st == PB_MOVABLE])

    def _compact_fail(self, order: int) -> int:
        self._stats["compact_fail"] += 1
        self._compact_failed_gen[order] = self._layout_gen
        return -1

    def _run_hooks(self) -> None:
        moves, self._pending_moves = self._pending_moves, []
        if self._migrate_hook is not None:
            for old, new, o in moves:
                self._migrate_hook(old, new, o)
