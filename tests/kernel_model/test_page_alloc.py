"""Buddy allocator, fragmentation and compaction (kernel_model/page_alloc.py, compaction.py).

Layouts are drawn one character per frame, pfn in hex above:
  .  free     M  movable (a, b, ... name one allocation)     U  unmovable
"""

import numpy as np
import pytest

from kernel_model.compaction import buddy_fit
from kernel_model.page_alloc import MAX_ORDER_FOR, PMD_ORDER_FOR, PageAllocator, pageblock_order_for


def free_lists(pa):
    return [pa.free_list(o).tolist() for o in range(pa.max_order + 1)]


def layout(pa):
    return "".join(".MU"[k] for k in pa.frame_kinds())


def check_tiling(pa):
    """Every frame in exactly one block; counters agree with the bitmaps."""
    heads = np.flatnonzero(pa.state)
    sizes = 1 << pa.order_of[heads].astype(np.int64)
    assert np.array_equal(heads[1:], heads[:-1] + sizes[:-1])
    assert heads[0] == 0 and heads[-1] + sizes[-1] == pa.nr_frames
    assert [len(fl) for fl in free_lists(pa)] == [pa.nr_free(o) for o in range(pa.max_order + 1)]
    free = pa.frame_kinds() == 0
    assert int(free.sum()) == pa.nr_free_pages
    per_max_block = np.bincount(np.arange(pa.nr_frames) >> pa.max_order, weights=free,
                                minlength=pa._block_free.size)
    assert pa._block_free.tolist() == per_max_block.astype(int).tolist()


# -- configuration ---------------------------------------------------------------------

def test_max_order_is_arm64_kconfig():
    # arch/arm64/Kconfig ARCH_FORCE_MAX_ORDER: 10 (4K), 11 (16K), 13 (64K).
    assert MAX_ORDER_FOR == {4096: 10, 16384: 11, 65536: 13}
    # pageblock_order = min(HPAGE_PMD_ORDER, MAX_PAGE_ORDER): 2M, 32M, 512M pageblocks.
    assert [pageblock_order_for(ps, MAX_ORDER_FOR[ps]) for ps in (4096, 16384, 65536)] == [9, 11, 13]
    assert PMD_ORDER_FOR == {4096: 9, 16384: 11, 65536: 13}
    assert PageAllocator(1 << 13, max_order=13).page_size == 65536
    assert PageAllocator(1 << 13, max_order=13).pageblock_order == 13
    assert PageAllocator(1 << 11, max_order=11).pageblock_order == 11
    assert PageAllocator(1 << 10, max_order=10).pageblock_order == 9
    assert PageAllocator(8, max_order=3).pageblock_order == 3  # a test pool: 4K, capped by max_order


@pytest.mark.parametrize("kwargs, message", [
    (dict(nr_frames=0, max_order=3), "nr_frames"),
    (dict(nr_frames=8.0, max_order=3), "nr_frames"),
    (dict(nr_frames=8, max_order=-1), "max_order"),
    (dict(nr_frames=8, max_order=3, fragmentation=1.5), "fragmentation"),
    (dict(nr_frames=8, max_order=3, fragmentation="lots"), "fragmentation"),
    (dict(nr_frames=8, max_order=3, page_size=8192), "page_size"),
    (dict(nr_frames=8, max_order=3, seed=None), "seed"),
])
def test_constructor_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PageAllocator(kwargs.pop("nr_frames"), **kwargs)


# -- split and merge -------------------------------------------------------------------

def test_split_from_fresh_order3_pool():
    pa = PageAllocator(8, max_order=3)
    assert free_lists(pa) == [[], [], [], [0]]
    # expand(): keep the low half, free the upper halves.
    # 01234567
    # a.  ....      order 0 at 0; free: 1 (o0), 2-3 (o1), 4-7 (o2)
    assert pa.alloc(0) == 0
    assert free_lists(pa) == [[1], [2], [4], []]
    # ab  ....      the order-0 free block comes first: smallest order wins
    assert pa.alloc(0) == 1
    assert free_lists(pa) == [[], [2], [4], []]
    # abc.....      order 0 again: splits 2-3
    assert pa.alloc(0) == 2
    assert free_lists(pa) == [[3], [], [4], []]
    assert layout(pa) == "MMM....."
    assert pa.nr_free_pages == 5
    check_tiling(pa)


def test_free_merges_buddies_back():
    pa = PageAllocator(8, max_order=3)
    a, b, c = pa.alloc(0), pa.alloc(0), pa.alloc(1)
    assert (a, b, c) == (0, 1, 2)
    assert free_lists(pa) == [[], [], [4], []]
    # abcc....  free a: its buddy 1 is allocated, no merge
    pa.free(a, 0)
    assert free_lists(pa) == [[0], [], [4], []]
    # ..cc....  free b: 0+1 -> order 1 at 0; buddy 2 (order 1) allocated, stop
    pa.free(b, 0)
    assert free_lists(pa) == [[], [0], [4], []]
    # ........  free c: 2-3 + 0-1 -> order 2 at 0, + 4-7 -> order 3 at 0
    pa.free(c, 1)
    assert free_lists(pa) == [[], [], [], [0]]
    assert pa.stats["allocs"] == 3 and pa.stats["frees"] == 3
    check_tiling(pa)


def test_blocks_never_merge_past_max_order_or_end_of_memory():
    # 13 frames, max order 2:  0123 4567 89ab c   -> o2: 0, 4, 8; o0: 12 (no buddy 13)
    pa = PageAllocator(13, max_order=2)
    assert free_lists(pa) == [[12], [], [0, 4, 8]]
    assert [pa.alloc(2), pa.alloc(2), pa.alloc(2), pa.alloc(0)] == [0, 4, 8, 12]
    assert pa.alloc(0, compact=False) is None
    for pfn in (4, 0):
        pa.free(pfn, 2)
    assert free_lists(pa) == [[], [], [0, 4]]  # two order-2 buddies stay apart: max order 2
    pa.free(12, 0)
    assert free_lists(pa) == [[12], [], [0, 4]]
    check_tiling(pa)


def test_alloc_failures_when_memory_is_exhausted():
    pa = PageAllocator(8, max_order=3)
    assert pa.alloc(3) == 0
    assert pa.alloc(0) is None                    # compaction tried: nothing free at all
    assert pa.alloc(1, compact=False) is None     # no compaction attempt
    s = pa.stats
    assert (s["alloc_failures"], s["compact_stall"], s["compact_fail"], s["allocs"]) == (2, 1, 1, 1)
    assert s["nr_free_pages"] == 0 and s["movable_pages"] == 8


def test_free_rejects_what_alloc_did_not_return():
    pa = PageAllocator(16, max_order=3, fragmentation=0.5, seed=1)
    u = int(pa.prefill_pfns[0])
    p = pa.alloc(1)
    with pytest.raises(ValueError, match="order 1"):
        pa.free(p, 0)
    with pytest.raises(ValueError, match="not the first frame"):
        pa.free(p + 1, 0)
    with pytest.raises(ValueError, match="pre-fill"):
        pa.free(u, 0)
    with pytest.raises(ValueError, match="out of range"):
        pa.alloc(4)
    with pytest.raises(ValueError, match="not a frame number"):
        pa.free(16, 0)
    pa.free(p, 1)
    with pytest.raises(ValueError, match="a free block"):
        pa.free(p, 1)


def test_movable_and_unmovable_are_tracked():
    pa = PageAllocator(16, max_order=3)
    assert pa.alloc(2, movable=False) == 0
    assert pa.alloc(1) == 4
    assert layout(pa) == "UUUUMM.........."
    s = pa.stats
    assert (s["movable_pages"], s["unmovable_pages"], s["unmovable_bytes"]) == (2, 4, 0)


# -- a reference buddy allocator written the plain way ---------------------------------

class NaiveBuddy:
    """Free lists as Python sets; the same rules, no bitmaps, no numba."""

    def __init__(self, nr_frames, max_order):
        self.n, self.max_order = nr_frames, max_order
        self.free = [set() for _ in range(max_order + 1)]
        for pfn in range(nr_frames):
            self.release(pfn, 0)

    def release(self, pfn, order):
        while order < self.max_order:
            buddy = pfn ^ (1 << order)
            if buddy not in self.free[order]:
                break
            self.free[order].remove(buddy)
            pfn, order = min(pfn, buddy), order + 1
        self.free[order].add(pfn)

    def take(self, order):
        for cur in range(order, self.max_order + 1):
            if self.free[cur]:
                pfn = min(self.free[cur])
                self.free[cur].remove(pfn)
                while cur > order:
                    cur -= 1
                    self.free[cur].add(pfn + (1 << cur))
                return pfn
        return None


@pytest.mark.parametrize("nr_frames, max_order, seed", [(64, 3, 0), (100, 4, 1), (1000, 10, 2), (77, 0, 3)])
def test_matches_reference_buddy_on_random_sequences(nr_frames, max_order, seed):
    rng = np.random.default_rng(seed)
    pa, ref = PageAllocator(nr_frames, max_order=max_order), NaiveBuddy(nr_frames, max_order)
    assert free_lists(pa) == [sorted(s) for s in ref.free]
    live = []
    for _ in range(600):
        if live and rng.random() < 0.45:
            pfn, order = live.pop(int(rng.integers(len(live))))
            pa.free(pfn, order)
            ref.release(pfn, order)
        else:
            order = int(rng.integers(0, max_order + 1))
            got, want = pa.alloc(order, compact=False), ref.take(order)
            assert got == want
            if got is not None:
                live.append((got, order))
    assert free_lists(pa) == [sorted(s) for s in ref.free]
    check_tiling(pa)


# -- fragmentation ---------------------------------------------------------------------

def test_fragmentation_pollutes_the_given_fraction_of_pageblocks():
    pa = PageAllocator(1 << 14, max_order=10, fragmentation=0.25, seed=7)  # 4K: 32 pageblocks of 512
    pfns = pa.prefill_pfns
    assert pfns.size == 8  # round(0.25 * 32)
    assert np.unique(pfns >> 9).size == 8  # one page in each of 8 distinct pageblocks
    kinds = pa.frame_kinds()
    assert np.flatnonzero(kinds == 2).tolist() == pfns.tolist()
    s = pa.stats
    assert (s["unmovable_bytes"], s["prefill_unmovable_pages"], s["nr_free_pages"]) == (8 * 4096, 8, (1 << 14) - 8)
    assert (s["unmovable_pages"], s["movable_pages"]) == (0, 0)  # the pre-fill is no caller's memory
    # The free lists are what freeing every other frame one at a time builds.
    ref = NaiveBuddy(0, 10)
    ref.n = 1 << 14
    for pfn in sorted(set(range(1 << 14)) - set(pfns.tolist())):
        ref.release(pfn, 0)
    assert free_lists(pa) == [sorted(s) for s in ref.free]
    check_tiling(pa)


def test_fragmentation_layout_is_seeded():
    a = PageAllocator(5000, max_order=4, fragmentation=0.3, seed=42)
    b = PageAllocator(5000, max_order=4, fragmentation=0.3, seed=42)
    c = PageAllocator(5000, max_order=4, fragmentation=0.3, seed=43)
    assert np.array_equal(a.state, b.state) and np.array_equal(a.order_of, b.order_of)
    assert free_lists(a) == free_lists(b)
    assert a.prefill_pfns.tolist() == b.prefill_pfns.tolist()
    assert a.prefill_pfns.tolist() != c.prefill_pfns.tolist()
    assert a.prefill_pfns.size == 94  # 312 pageblocks of 16 frames (+8 left over) * 0.3 = 93.6
    ref = NaiveBuddy(0, 4)  # free every other frame one at a time: the same free lists
    for pfn in sorted(set(range(5000)) - set(a.prefill_pfns.tolist())):
        ref.release(pfn, 0)
    assert free_lists(a) == [sorted(s) for s in ref.free]
    assert PageAllocator(64, max_order=3, page_size="64K").pageblock_order == 3
    assert [a.alloc(2) for _ in range(5)] == [b.alloc(2) for _ in range(5)]


def test_full_fragmentation_leaves_no_pageblock_whole():
    pa = PageAllocator(1 << 12, max_order=10, fragmentation=1.0, seed=3)  # 8 pageblocks of 512
    assert pa.prefill_pfns.size == 8
    assert pa.nr_free(9) == 0 and pa.nr_free(10) == 0
    assert pa.alloc(9) is None  # every pageblock holds an unmovable page: compaction refuses
    s = pa.stats
    assert (s["alloc_failures"], s["compact_fail"], s["compaction_migrated_pages"]) == (1, 1, 0)


# -- compaction ------------------------------------------------------------------------

def build(nr_frames, max_order, plan):
    """Allocate `plan` in order: (order, movable) pairs; return the pfns."""
    pa = PageAllocator(nr_frames, max_order=max_order)
    return pa, [pa.alloc(order, movable=movable, compact=False) for order, movable in plan]


def test_compaction_moves_order0_pages_out_of_the_cheapest_block():
    #        0123456789abcdef0123456789abcdef
    # start  MMMMMMMMUMMMMMMMMMMMMMMMMMMMMMMM   a..d, U at 8, then 23 order-0 pages
    pa, pfns = build(32, 3, [(1, True), (0, True), (0, True), (2, True), (0, False)] + [(0, True)] * 23)
    assert pfns[:5] == [0, 2, 3, 4, 8] and pfns[5:] == [p for p in range(9, 32)]
    for pfn in (9, 10, 11, 16, 17, 18, 19, 25, 27, 29, 31):
        pa.free(pfn, 0)
    # before MMMMMMMMU...MMMM....MMMMM.M.M.M.     candidates of order 3:
    #        block 0: 8 movable   block 1: unmovable   block 2: 4   block 3: 4 -> block 2 (lower)
    assert layout(pa) == "MMMMMMMMU...MMMM....MMMMM.M.M.M."
    assert free_lists(pa) == [[9, 25, 27, 29, 31], [10], [16], []]
    moves = []
    pa.set_migrate_hook(lambda old, new, order: moves.append((old, new, order)))
    assert pa.alloc(3) == 16
    # after  MMMMMMMMUM..MMMMNNNNNNNNMMMMMMM.     20..23 went to the lowest free order-0 frames
    assert moves == [(20, 9, 0), (21, 25, 0), (22, 27, 0), (23, 29, 0)]
    assert layout(pa) == "MMMMMMMMUM..MMMMMMMMMMMMMMMMMMM."
    assert free_lists(pa) == [[31], [10], [], []]
    s = pa.stats
    assert (s["compaction_migrated_pages"], s["compact_success"], s["compact_fail"]) == (4, 1, 0)
    assert (s["allocs"], s["alloc_failures"], s["movable_pages"]) == (29, 0, 28)
    with pytest.raises(ValueError, match="not the first frame"):
        pa.free(20, 0)  # that page moved: it lives at 9 now
    pa.free(9, 0)
    check_tiling(pa)


def test_compaction_moves_large_folios_largest_first():
    #        0123456789abcdef0123456789abcdef
    # start  aa..bbbbMMMMMMMM..MMMMMM....MMMU   a order 1, b order 2; 31 unmovable
    pa, pfns = build(32, 3, [(1, True), (0, True), (0, True), (2, True)] + [(0, True)] * 23 + [(0, False)])
    assert pfns[:4] == [0, 2, 3, 4] and pfns[-1] == 31
    for pfn in (2, 3, 16, 17, 24, 25, 26, 27):
        pa.free(pfn, 0)
    assert layout(pa) == "MM..MMMMMMMMMMMM..MMMMMM....MMMU"
    assert free_lists(pa) == [[], [2, 16], [24], []]
    # Block 0 and block 2 need 6 pages each: tie -> block 0.  Block 3 holds pfn 31 (U).
    # b (order 2) first takes 24-27, then a (order 1) takes 16-17.
    moves = []
    pa.set_migrate_hook(lambda *m: moves.append(m))
    assert pa.alloc(3, movable=False) == 0
    # after  UUUUUUUUMMMMMMMMaaMMMMMMbbbbMMMU
    assert moves == [(4, 24, 2), (0, 16, 1)]
    assert layout(pa) == "UUUUUUUUMMMMMMMMMMMMMMMMMMMMMMMU"
    assert free_lists(pa) == [[], [], [], []]
    assert pa.stats["compaction_migrated_pages"] == 6
    assert pa.stats["compaction_migrated_blocks"] == 2
    pa.free(16, 1)
    pa.free(24, 2)
    pa.free(0, 3)
    assert free_lists(pa) == [[], [16], [24], [0]]
    check_tiling(pa)


def test_compaction_needs_the_requested_size_free_somewhere():
    #        0123456789abcdef
    # start  MMMM..M.MMMMMMM.    4 free frames: no order-3 block can be cleared into the rest
    pa, pfns = build(16, 3, [(2, True)] + [(0, True)] * 12)
    for pfn in (4, 5, 7, 15):
        pa.free(pfn, 0)
    assert layout(pa) == "MMMM..M.MMMMMMM."
    moves = []
    pa.set_migrate_hook(lambda *m: moves.append(m))
    assert pa.alloc(3) is None
    assert moves == []
    s = pa.stats
    assert (s["alloc_failures"], s["compact_fail"], s["compaction_migrated_pages"]) == (1, 1, 0)
    assert layout(pa) == "MMMM..M.MMMMMMM."


def test_compaction_skips_the_cheapest_block_when_its_folio_finds_no_hole():
    #        0123456789abcdef0123456789abcdef
    # start  bbbbMM..MMMMMMM.MMMMMMMMU...M.M.     order 3 wanted; 8 frames free
    # block 0: 6 movable, but b (order 2) needs an order-2 hole: outside block 0 the
    #          holes are 15, 25, 26-27, 29, 31 -> none.  Skipped.
    # block 1: 7 movable order-0 pages -> they fill 25, 29, 31, 6-7, 26-27 (smallest first).
    # block 2: 8 movable.  block 3: holds U.
    pa, pfns = build(32, 3, [(2, True)] + [(0, True)] * 20 + [(0, False)] + [(0, True)] * 7)
    assert pfns[:2] == [0, 4] and pfns[21] == 24
    for pfn in (6, 7, 15, 25, 26, 27, 29, 31):
        pa.free(pfn, 0)
    assert layout(pa) == "MMMMMM..MMMMMMM.MMMMMMMMU...M.M."
    assert free_lists(pa) == [[15, 25, 29, 31], [6, 26], [], []]
    moves = []
    pa.set_migrate_hook(lambda *m: moves.append(m))
    assert pa.alloc(3) == 8
    assert moves == [(8, 25, 0), (9, 29, 0), (10, 31, 0), (11, 6, 0), (12, 7, 0), (13, 26, 0), (14, 27, 0)]
    # after  bbbbMMMMNNNNNNNNMMMMMMMMUMMMMMMM
    assert layout(pa) == "MMMMMMMMMMMMMMMMMMMMMMMMUMMMMMMM"
    assert free_lists(pa) == [[], [], [], []]
    assert pa.stats["compaction_migrated_pages"] == 7
    check_tiling(pa)


def test_compaction_never_picks_a_block_inside_a_larger_folio():
    #        0123456789abcdef
    #        bbbb.M.MMMMMMM..    order-1 request once 14-15 is taken.  Order-1 blocks
    #        0-1 and 2-3 lie inside b (order 2): no movable page *of their own*, yet no
    #        candidates.  4-5 and 6-7 hold one movable page each: 4-5 (lower) wins.
    pa, pfns = build(16, 3, [(2, True)] + [(0, True)] * 12)
    for pfn in (4, 6, 14, 15):
        pa.free(pfn, 0)
    # 14-15 merged into an order-1 block: order 1 is free, no compaction needed
    assert free_lists(pa) == [[4, 6], [14], [], []]
    assert pa.alloc(1) == 14
    moves = []
    pa.set_migrate_hook(lambda *m: moves.append(m))
    # now only 4 and 6 free: block 4-5 (1 movable at 5) is the first cheapest; 5 -> 6
    assert pa.alloc(1) == 4
    assert moves == [(5, 6, 0)]
    assert pa.stats["compaction_migrated_pages"] == 1
    check_tiling(pa)


def test_compaction_fails_when_every_block_holds_an_unmovable_page():
    #        0123456789abcdef
    #        U...U...U...U...   order 2 wanted; 12 pages free, each block holds a U
    pa = PageAllocator(16, max_order=3)
    pfns = [pa.alloc(0, movable=(i % 4 != 0)) for i in range(16)]
    for pfn in pfns:
        if pfn % 4:
            pa.free(pfn, 0)
    assert layout(pa) == "U...U...U...U..."
    assert pa.alloc(2) is None
    assert pa.alloc(2) is None  # deferred: same answer, counted the same
    s = pa.stats
    assert (s["alloc_failures"], s["compact_stall"], s["compact_fail"], s["compaction_migrated_pages"]) == (2, 2, 2, 0)
    assert pa.alloc(1) == 2


def test_buddy_fit_is_exact_for_power_of_two_sizes():
    assert buddy_fit(np.array([0, 0, 1]), [1, 0, 0]) is True      # 4 = 2 + 1 + 1
    assert buddy_fit(np.array([0, 0, 1]), [1, 1, 0]) is False     # 5 > 4
    assert buddy_fit(np.array([2, 0, 0]), [1]) is False           # two singles are no pair
    assert buddy_fit(np.array([1, 1, 0]), [0, 1]) is True
    assert buddy_fit(np.array([0, 0, 0, 1]), [2, 1, 0, 0]) is True


def test_pruned_scan_finds_the_same_cheapest_block():
    from kernel_model.compaction import compaction_scan

    rng = np.random.default_rng(9)
    pa = PageAllocator(4096, max_order=6, fragmentation=0.2, seed=9)
    live = [(p, 0) for p in (pa.alloc(0, compact=False) for _ in range(3500)) if p is not None]
    for i in rng.permutation(len(live))[:900].tolist():
        pa.free(*live[i])
    assert pa.nr_free(3) == 0 and pa.nr_free_pages == 900 + 4096 - 3500 - pa.prefill_pfns.size
    for order in (2, 3, 4, 5):
        full, stop_full = compaction_scan(pa.state, pa.order_of, order, pa._block_free, pa.max_order, False)
        pruned, stop = compaction_scan(pa.state, pa.order_of, order, pa._block_free, pa.max_order, True)
        best = int(np.argmin(full))
        assert (stop_full, stop) == (-1, -1) or stop_full == stop
        assert int(np.argmin(pruned)) == best and pruned[best] == full[best]
        assert np.all(pruned >= full)


def test_deferral_changes_no_result():
    """The same random workload with and without the failure cache: identical everything."""
    runs = []
    for defer in (True, False):
        pa = PageAllocator(512, max_order=5, fragmentation=0.3, seed=5)
        pa._use_deferral = defer
        rng = np.random.default_rng(11)
        moves, live, results = [], [], []

        def hook(old, new, order, live=live, moves=moves):
            moves.append((old, new, order))
            live[live.index((old, order))] = (new, order)

        pa.set_migrate_hook(hook)
        for _ in range(1500):
            if live and rng.random() < 0.4:
                pfn, order = live.pop(int(rng.integers(len(live))))
                pa.free(pfn, order)
            else:
                order = int(rng.integers(0, 6))
                pfn = pa.alloc(order, movable=bool(rng.random() < 0.9))
                results.append(pfn)
                if pfn is not None and pa.state[pfn] == 2:
                    live.append((pfn, order))
        check_tiling(pa)
        runs.append((results, moves, pa.stats, free_lists(pa)))
    assert runs[0] == runs[1]
    # The seeded stream must reach both compaction outcomes, or the equality above would not
    # cover the deferral path; how often each happens is the seeded stream's, not knowable by hand.
    assert runs[0][2]["compact_success"] > 0 and runs[0][2]["compact_fail"] > 0


def test_16m_frames_initialise_and_allocate():
    pa = PageAllocator(1 << 24, max_order=10, fragmentation=0.5, seed=0)  # 64G of 4K pages
    assert pa.prefill_pfns.size == 16384  # half of 32768 pageblocks
    assert pa.nr_free_pages == (1 << 24) - 16384
    lowest = int(pa.free_list(10)[0])
    assert pa.alloc(10) == lowest
    pa.free(lowest, 10)
    assert pa.nr_free_pages == (1 << 24) - 16384 and int(pa.free_list(10)[0]) == lowest


def test_fragmentation_order_pollutes_smaller_blocks():
    # 4K kernel, 1M of frames (256 of them), every 64K block (order 4) polluted:
    # no order-4 block can be handed out or compacted, order 3 still can.
    # 0               16              32   ...  frame
    # [...u.......|...][..u............]      u = the one unmovable page of each block
    from kernel_model.page_alloc import PageAllocator

    a = PageAllocator(256, max_order=10, fragmentation=1.0, seed=3, page_size="4K", fragmentation_order=4)
    assert a.prefill_pfns.size == 16
    assert sorted((a.prefill_pfns // 16).tolist()) == list(range(16))
    assert a.alloc(4) is None
    assert a.stats["alloc_failures"] == 1
    assert a.alloc(3) is not None
    with pytest.raises(ValueError, match="memory.fragmentation_order"):
        PageAllocator(256, max_order=10, fragmentation=1.0, fragmentation_order=11)
