"""Anonymous folio order choice (mTHP, mthp_only, PMD THP) and PMD-mapped THP operations.

Layouts are drawn per kernel page of a VMA; one letter per page names the folio mapping it,
`.` is an empty PTE, `z` the zero page:
    # 0123456789abcdef
    # AAAAAAAAAAAAAAAA      one order-4 folio over 64K of a 4K kernel
"""

import pytest

from kernel_model.abi import (MADV_DONTNEED, MADV_NOHUGEPAGE, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE,
                              MREMAP_FIXED, MREMAP_MAYMOVE, PROT_READ, PROT_WRITE)
from kernel_model.huge_memory import anon_fault_orders, anon_granule_order
from kernel_model.mm_types import OutOfMemory
from tests.kernel_model.mmdraw import folio_at, layout, proc

K = 1024
M = 1 << 20
BASE = 0x40000000  # 1G: aligned to every folio and PMD size used here
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED


# -- order choice ------------------------------------------------------------------------

def test_base_is_exactly_the_process_order():
    s, p = proc("4K", "16K", anon="base")
    assert p.mmap(BASE, 128 * K, RW, ANON) == BASE
    assert p.touch(BASE + 20 * K, write=True) == 0
    # 0123456789abcdef0123456789abcdef
    # ....AAAA........................
    assert layout(p, BASE, 32) == "....AAAA" + "." * 24
    assert folio_at(p, BASE + 16 * K).order == 2
    assert s.anon_bytes == 16 * K
    assert dict(s.stats.folios_by_order) == {2: 1}


@pytest.mark.parametrize("length, fault, order", [
    (128 * K, 0, 4),            # 64K fits: the largest enabled size
    (48 * K, 0, 3),             # [0, 64K) passes the VMA end (48K): 32K fits
    (48 * K, 40 * K, 2),        # [32K, 64K) passes the end too: 16K
    (48 * K, 44 * K, 2),
])
def test_mthp_largest_order_that_fits_the_vma(length, fault, order):
    s, p = proc("4K", "4K", anon="mthp")
    assert p.mmap(BASE, length, RW, ANON) == BASE
    assert p.touch(BASE + fault, write=True) == 0
    folio = folio_at(p, BASE + fault)
    assert folio.order == order
    start = (BASE + fault) & ~((4 * K << order) - 1)
    assert folio.rmap == [(p.mm, start, 0, 1 << order)]
    assert s.anon_bytes == 4 * K << order


def test_mthp_start_of_vma_not_aligned():
    # VMA [BASE+16K, BASE+112K): a 64K folio must be naturally aligned, so only
    # [64K, 128K) could hold one, and it passes the end; 32K at [32K, 64K) fits.
    s, p = proc("4K", "4K", anon="mthp")
    assert p.mmap(BASE + 16 * K, 96 * K, RW, ANON) == BASE + 16 * K
    assert p.touch(BASE + 40 * K, write=True) == 0
    # 0123456789abcdef0123456789abcdef
    # ....    AAAAAAAA........    ....     (. = empty, blank = outside the VMA)
    assert layout(p, BASE + 16 * K, 24) == "....AAAAAAAA............"
    assert folio_at(p, BASE + 40 * K).order == 3


def test_mthp_pte_range_none_fallback():
    s, p = proc("4K", "4K", anon="mthp")
    assert p.mmap(BASE, 64 * K, RW, ANON) == BASE
    assert p.touch(BASE, write=True) == 0
    assert layout(p, BASE, 16) == "AAAAAAAAAAAAAAAA"
    assert p.madvise(BASE + 16 * K, 48 * K, MADV_DONTNEED) == 0
    # partial unmap keeps the folio (deferred split): pages 0..3 still map it
    assert layout(p, BASE, 16) == "AAAA............"
    assert s.anon_bytes == 64 * K
    assert p.touch(BASE + 40 * K, write=True) == 0
    # order 4 over [0, 64K) is not pte_range_none; order 3 over [32K, 64K) is
    assert layout(p, BASE, 16) == "AAAA....BBBBBBBB"
    assert folio_at(p, BASE + 32 * K).order == 3
    assert s.anon_bytes == 64 * K + 32 * K


def _exhaust(s, keep_order):
    """Take every free frame as unmovable order-0 pages, then give back one naturally
    aligned block of keep_order: the only memory left for a fault."""
    pa = s.page_alloc
    taken = []
    while (pfn := pa.alloc(0, movable=False, compact=False)) is not None:
        taken.append(pfn)
    got = set(taken)
    for base in sorted(got):
        if base % (1 << keep_order) == 0 and all(base + i in got for i in range(1 << keep_order)):
            block = base
            break
    for i in range(1 << keep_order):
        pa.free(block + i, 0)
    return block


@pytest.mark.parametrize("page, keep, expect, failed", [
    ("4K", 2, 2, 2),    # 64K and 32K fail, 16K succeeds
    ("4K", 0, 0, 3),    # 64K, 32K, 16K fail: down to the process order 0
    ("16K", 2, 2, 2),   # process order 2: 64K, 32K fail, 16K is the process page
])
def test_mthp_allocation_failure_falls_back_order_by_order(page, keep, expect, failed):
    s, p = proc("4K", page, anon="mthp", memory="8M")
    assert p.mmap(BASE, 128 * K, RW, ANON) == BASE
    assert p.touch(BASE + 64 * K, write=True) == 0  # page tables exist now
    block = _exhaust(s, keep)
    failures = s.page_alloc.stats["alloc_failures"]
    assert p.touch(BASE, write=True) == 0
    folio = folio_at(p, BASE)
    assert (folio.pfn, folio.order) == (block, expect)
    assert s.page_alloc.stats["alloc_failures"] - failures == failed
    assert s.stats.events["anon_fault_fallback"] == 1


def test_never_below_the_process_order():
    s, p = proc("4K", "16K", anon="mthp", memory="8M")
    assert p.mmap(BASE, 128 * K, RW, ANON) == BASE
    assert p.touch(BASE + 64 * K, write=True) == 0
    _exhaust(s, 1)  # an order-1 block (8K) is free: below the 16K process page
    with pytest.raises(OutOfMemory, match="process order 2"):
        p.touch(BASE, write=True)


def test_mthp_only_no_fallback():
    s, p = proc("4K", "4K", anon="mthp_only", mthp_sizes=(64 * K,), memory="8M")
    assert p.mmap(BASE, 128 * K, RW, ANON) == BASE
    assert p.touch(BASE + 64 * K, write=True) == 0
    assert folio_at(p, BASE + 64 * K).order == 4
    _exhaust(s, 3)  # 32K free, but mthp_only allows exactly 64K
    with pytest.raises(OutOfMemory, match="mthp_only"):
        p.touch(BASE, write=True)


def test_mthp_only_falls_to_process_order_where_the_size_does_not_fit():
    s, p = proc("4K", "4K", anon="mthp_only", mthp_sizes=(64 * K,))
    assert p.mmap(BASE, 48 * K, RW, ANON) == BASE
    vma = p.mm.vmas.find(BASE)
    assert anon_fault_orders(p.mm, vma, BASE) == ([0], True)
    assert anon_granule_order(p.mm, vma, BASE) == 0
    assert p.touch(BASE, write=True) == 0
    assert layout(p, BASE, 12) == "A..........."


def test_shared_anon_takes_the_process_order():
    # MAP_SHARED|MAP_ANONYMOUS is shmem: shmem_enabled (default never), not the anon mTHP knobs
    from kernel_model.abi import MAP_SHARED
    s, p = proc("4K", "16K", anon="mthp", thp_pmd=True)
    assert p.mmap(BASE, 4 * M, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED) == BASE
    assert p.touch(BASE, write=True) == 0
    assert folio_at(p, BASE).order == 2
    assert s.stats.events.get("thp_pmd_faults", 0) == 0


def test_madv_nohugepage_keeps_base_order():
    s, p = proc("4K", "4K", anon="mthp", thp_pmd=True)
    assert p.mmap(BASE, 4 * M, RW, ANON) == BASE
    assert p.madvise(BASE, 4 * M, MADV_NOHUGEPAGE) == 0
    assert anon_fault_orders(p.mm, p.mm.vmas.find(BASE), BASE) == ([0], True)
    assert p.touch(BASE, write=True) == 0
    assert folio_at(p, BASE).order == 0


# -- PMD THP --------------------------------------------------------------------------

def pmd_proc(page="4K"):
    s, p = proc("4K", page, thp_pmd=True, memory="64M")
    assert p.mmap(BASE, 4 * M, RW, ANON) == BASE
    assert p.touch(BASE + 4 * K, write=True) == 0
    return s, p


@pytest.mark.parametrize("page", ["4K", "16K", "64K"])
def test_pmd_fault_maps_a_block(page):
    s, p = pmd_proc(page)
    pfn, prot, shift = p.mm.pgtable.pte_get(BASE)
    folio = s.pfn_folio(pfn)
    assert (folio.order, prot, shift) == (9, RW, 21)
    assert folio.rmap == [(p.mm, BASE, 0, 512)]
    assert p.mm.pgtable.pmd_blocks_in(BASE, BASE + 4 * M) == [BASE]
    assert s.stats.events["thp_pmd_faults"] == 1
    assert s.anon_bytes == 2 * M


def test_pmd_fallback_when_the_vma_does_not_cover_the_block():
    s, p = proc("4K", "4K", thp_pmd=True, anon="mthp")
    assert p.mmap(BASE, 2 * M - 64 * K, RW, ANON) == BASE
    assert p.touch(BASE, write=True) == 0
    assert folio_at(p, BASE).order == 4
    assert p.mm.pgtable.pmd_blocks_in(BASE, BASE + 2 * M) == []


def test_pmd_partial_munmap_splits_and_keeps_the_folio():
    s, p = pmd_proc()
    folio = folio_at(p, BASE)
    assert p.munmap(BASE + M, M) == 0
    assert p.mm.pgtable.pmd_blocks_in(BASE, BASE + 2 * M) == []
    assert s.stats.events["thp_split_pmd"] == 1
    assert folio.rmap == [(p.mm, BASE, 0, 256)]
    assert (folio.mapcount, s.anon_bytes) == (256, 2 * M)
    # the PTEs of the split block: still one folio, so contpte folds them (64K runs)
    assert p.mm.pgtable.pte_get(BASE + 8 * K) == (folio.pfn + 2, RW, 16)
    assert p.munmap(BASE, M) == 0
    assert s.anon_bytes == 0
    assert folio.pfn not in s.folios


def test_pmd_whole_munmap_frees_the_folio():
    s, p = pmd_proc()
    assert p.munmap(BASE, 2 * M) == 0
    assert (s.anon_bytes, s.stats.events.get("thp_split_pmd", 0)) == (0, 0)


def test_pmd_mprotect_whole_keeps_the_block_partial_splits():
    s, p = pmd_proc()
    assert p.mprotect(BASE, 2 * M, PROT_READ) == 0
    assert p.mm.pgtable.pmd_blocks_in(BASE, BASE + 2 * M) == [BASE]
    assert p.mm.pgtable.pte_get(BASE)[1:] == (PROT_READ, 21)
    # write permission back: the folio is exclusive, so the block is writable again
    assert p.mprotect(BASE, 2 * M, RW) == 0
    assert p.mm.pgtable.pte_get(BASE)[1:] == (RW, 21)
    assert p.mprotect(BASE + M, M, PROT_READ) == 0
    assert p.mm.pgtable.pmd_blocks_in(BASE, BASE + 2 * M) == []
    _, prot, _ = p.mm.pgtable.read_ptes(BASE, 512)
    assert prot.tolist() == [RW] * 256 + [PROT_READ] * 256


def test_pmd_fork_shares_the_block_then_split_on_copy_and_reuse():
    s, p = pmd_proc()
    folio = folio_at(p, BASE)
    c = p.fork()
    assert c.mm.pgtable.pte_get(BASE) == (folio.pfn, PROT_READ, 21)
    assert p.mm.pgtable.pte_get(BASE) == (folio.pfn, PROT_READ, 21)
    assert folio.mapcount == 1024
    # the parent writes: not exclusive -> split its PMD, copy one process page
    assert p.touch(BASE + 4 * K, write=True) == 0
    assert s.stats.events["thp_split_pmd"] == 1
    new = folio_at(p, BASE + 4 * K)
    assert new is not folio and new.order == 0
    assert p.mm.pgtable.pte_get(BASE)[:2] == (folio.pfn, PROT_READ)
    assert c.mm.pgtable.pmd_blocks_in(BASE, BASE + 2 * M) == [BASE]
    # the child exits: the parent maps the THP alone, a write reuses it in place
    c.exit()
    assert folio.rmap == [(p.mm, BASE, 0, 1), (p.mm, BASE + 8 * K, 2, 510)]
    assert p.touch(BASE + 8 * K, write=True) == 0  # exclusive now: reused in place
    assert folio_at(p, BASE + 8 * K) is folio
    assert s.stats.events["cow_reuse"] == 1
    assert s.anon_bytes == 2 * M + 4 * K


def test_pmd_reuse_when_exclusive():
    s, p = pmd_proc()
    c = p.fork()
    c.exit()
    assert p.touch(BASE, write=True) == 0
    assert p.mm.pgtable.pmd_blocks_in(BASE, BASE + 2 * M) == [BASE]
    assert p.mm.pgtable.pte_get(BASE)[1:] == (RW, 21)
    assert s.stats.events["thp_pmd_reuse"] == 1


@pytest.mark.parametrize("dst, block", [(BASE + 0x10000000, True), (BASE + 0x10000000 + 64 * K, False)])
def test_pmd_mremap_moves_the_folio(dst, block):
    s, p = pmd_proc()
    folio = folio_at(p, BASE)
    assert p.mremap(BASE, 2 * M, 2 * M, MREMAP_MAYMOVE | MREMAP_FIXED, dst) == dst
    assert folio.rmap == [(p.mm, dst, 0, 512)]
    assert (p.mm.pgtable.pmd_blocks_in(dst, dst + 2 * M) == [dst]) is block
    assert p.mm.pgtable.pte_get(dst + 12 * K)[0] == folio.pfn + 3
    assert p.mm.pgtable.pte_get(BASE)[0] == -1
    assert s.anon_bytes == 2 * M
    assert p.munmap(dst, 2 * M) == 0
    assert s.anon_bytes == 0
