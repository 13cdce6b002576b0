"""Anonymous folio order policy: mTHP and PMD THP, bounded below by the process order.

Counterparts: mm/huge_memory.c (thp_vma_allowable_orders, __thp_vma_allowable_orders),
mm/memory.c (alloc_anon_folio, thp_anon_vma_suitable_orders / thp_vma_suitable_order)
and include/linux/huge_mm.h (highest_order, next_order).

The per-process page size proposal makes the process order the hard minimum folio order
(the thread, Dev 2026-02-17: "The process order will be used as the hard minimum mTHP
order to allocate"); mTHP orders above it stay opportunistic.
"""

from __future__ import annotations

from functools import lru_cache

from .mm_types import (PROT_EXEC, PROT_READ, PROT_WRITE, VM_HUGEPAGE, VM_NOHUGEPAGE, VM_SHARED, Mm, RmapEntry,
                       Vma, is_zero_folio)
from .rmap import rmap_add
from .units import ilog2


def mthp_orders(mm: Mm) -> tuple[int, ...]:
    """The enabled mTHP orders (folio.mthp_sizes) in kernel pages, highest first.

    Sizes that are not above the kernel page size are ignored, as
    /sys/kernel/mm/transparent_hugepage/hugepages-<size>kB exists only for orders >= 2
    (THP_ORDERS_ALL_ANON in include/linux/huge_mm.h excludes orders 0 and 1).
    """
    return _mthp_orders(mm.system.kernel_page_size, tuple(mm.system.policy.mthp_sizes), mm.system.max_order)


@lru_cache(maxsize=64)
def _mthp_orders(kps: int, sizes: tuple, max_order: int) -> tuple[int, ...]:
    orders = {ilog2(size // kps) for size in sizes if size > kps}
    return tuple(sorted((o for o in orders if 2 <= o <= max_order), reverse=True))


def pmd_order(mm: Mm) -> int:
    return mm.system.kgeom.pmd_shift - mm.system.kgeom.page_shift


def order_suitable(vma: Vma, addr: int, order: int, kernel_page_size: int) -> bool:
    """thp_vma_suitable_order(): the naturally aligned range around addr lies in the VMA."""
    size = kernel_page_size << order
    start = addr & ~(size - 1)
    return start >= vma.start and start + size <= vma.end


def anon_fault_orders(mm: Mm, vma: Vma, addr: int) -> tuple[list[int], bool]:
    """Folio orders to try for an anonymous fault at addr, highest first.

    Returns (orders, may_fall_back_to_process_order). The last order is always the
    process order unless folio.anon=mthp_only, which allows exactly the configured size
    and no fallback when it fits the VMA (Pedro's "4K with only mTHP", 2026-02-20).
    """
    policy = mm.system.policy
    kps = mm.system.kernel_page_size
    base = mm.order
    if vma.flags & VM_SHARED:
        # MAP_SHARED|MAP_ANONYMOUS is shmem (mm/shmem.c shmem_zero_setup()); its large folios
        # follow shmem_enabled / hugepages-*/shmem_enabled, "never" by default
        # (shmem_allowable_huge_orders() -> 0), not the anonymous THP knobs: the process order.
        return [base], True
    orders: list[int] = []
    thp_allowed = not (vma.flags & VM_NOHUGEPAGE)
    # mm/huge_memory.c: the PMD order is tried first by do_huge_pmd_anonymous_page()
    # when THP is enabled ("always", or "madvise" with VM_HUGEPAGE).
    if policy.thp_pmd and thp_allowed:
        o = pmd_order(mm)
        if o > base and o <= mm.system.max_order and order_suitable(vma, addr, o, kps):
            orders.append(o)
    if policy.anon == "base" or not thp_allowed:
        orders.append(base)
        return orders, True
    fitting = [o for o in mthp_orders(mm) if o > base and order_suitable(vma, addr, o, kps)]
    if policy.anon == "mthp":
        orders += [o for o in fitting if o not in orders]
    elif policy.anon == "mthp_only" and fitting:
        orders.append(fitting[0])  # exactly the largest configured size: no fallback
        return orders, False
    orders.append(base)
    return orders, True


def anon_granule_order(mm: Mm, vma: Vma, addr: int) -> int:
    """The smallest unit anonymous memory at addr is handled in: the process order, or
    under folio.anon=mthp_only the configured mTHP order where it fits the VMA, so that the
    zero page and copy-on-write copies keep "only mTHP" folios (a zero-page read followed
    by a write would otherwise leave base pages behind)."""
    if mm.system.policy.anon == "mthp_only" and not vma.flags & (VM_NOHUGEPAGE | VM_SHARED):
        kps = mm.system.kernel_page_size
        for o in mthp_orders(mm):
            if o > mm.order and order_suitable(vma, addr, o, kps):
                return o
    return mm.order


def vma_hugepage_hint(vma: Vma) -> str:
    if vma.flags & VM_HUGEPAGE:
        return "hugepage"
    if vma.flags & VM_NOHUGEPAGE:
        return "nohugepage"
    return "default"


# -- PMD-mapped THPs (mm/huge_memory.c) --------------------------------------------------
# A PMD block maps one whole folio of the PMD order; its rmap entry is RmapEntry(mm, addr, 0, nr).
# Operations that cover a block whole keep it a block; one that covers part of it splits
# the PMD into a PTE table of the same pages first (__split_huge_pmd(); the folio itself
# stays whole until fully unmapped, as on the deferred split queue).


def pmd_blocks(mm: Mm, lo: int, hi: int) -> list[tuple[int, int, int]]:
    """(addr, pfn, prot) of the PMD blocks overlapping [lo, hi), ascending."""
    pt = mm.pgtable
    return [(a,) + pt.pte_get(a)[:2] for a in pt.pmd_blocks_in(lo, hi)]


def split_huge_pmds(mm: Mm, lo: int, hi: int, *, whole: bool = False) -> None:
    """__split_huge_pmd() on every block straddling lo or hi (every block in [lo, hi) with
    whole=True); vma_adjust_trans_huge() does this at the edges of a changed range."""
    size = mm.system.kgeom.pmd_size
    pt = mm.pgtable
    for a in pt.pmd_blocks_in(lo, hi):
        if whole or a < lo or a + size > hi:
            pt.split_pmd(a)
            mm.system.stats.count("thp_split_pmd")


def _set_block_prot(mm: Mm, addr: int, pfn: int, prot: int) -> None:
    """pmdp_invalidate() + set_pmd_at() with a new protection."""
    folio = mm.system.pfn_folio(pfn)
    mm.pgtable.clear_pmd(addr)
    mm.pgtable.set_pmd(addr, pfn, prot, folio_pfn=folio.pfn, folio_nr=folio.nr_pages)


def folio_exclusive(mm: Mm, folio) -> bool:
    """Whether folio is an anonymous folio mapped by mm alone (the model of
    PageAnonExclusive / folio_mm_id() == mm's id in wp_can_reuse_anon_folio())."""
    return (folio is not None and folio.anon and not is_zero_folio(mm.system, folio)
            and all(e.mm is mm for e in folio.rmap))


# -- the huge zero page (mm/huge_memory.c) ----------------------------------------------


def huge_zero_folio(system, *, alloc: bool = True):
    """The huge zero folio (mm_get_huge_zero_folio()): one PMD-order folio of zeroes,
    allocated at its first use, never rmapped, never counted as anonymous memory.
    None when folio.huge_zero_page is off (use_zero_page = 0), when alloc is False and it
    does not exist yet, or when no PMD-order block is free."""
    folio = getattr(system, "huge_zero_folio", None)
    if folio is None and alloc and system.policy.huge_zero_page:
        order = system.kgeom.pmd_shift - system.kgeom.page_shift
        if order <= system.max_order:
            folio = system.folio_alloc(order, anon=True, movable=False)
            system.huge_zero_folio = folio
    return folio


def do_huge_zero_read_fault(mm: Mm, vma: Vma, addr: int) -> bool:
    """mm/huge_memory.c do_huge_pmd_anonymous_page() for a read fault: where the PMD order
    is allowed for the VMA (thp_vma_allowable_order(), thp_vma_suitable_order()), the PMD
    is none (no page of the range mapped) and use_zero_page is set, the huge zero page is
    mapped read-only by one PMD (set_huge_zero_folio()). Returns whether it was."""
    system = mm.system
    if vma.flags & VM_SHARED or not system.policy.huge_zero_page:
        return False
    orders, _ = anon_fault_orders(mm, vma, addr)
    o = pmd_order(mm)
    if not orders or orders[0] != o:
        return False
    size = system.kgeom.pmd_size
    start = addr & ~(size - 1)
    if not mm.pgtable.range_none(start, 1 << o):
        return False
    folio = huge_zero_folio(system)
    if folio is None:
        return False  # mm_get_huge_zero_folio() failed: VM_FAULT_FALLBACK
    mm.pgtable.set_pmd(start, folio.pfn, vma.flags & (PROT_READ | PROT_EXEC), folio_pfn=folio.pfn,
                       folio_nr=folio.nr_pages)
    system.stats.count("huge_zero_page_faults")
    return True


def do_huge_zero_wp_pmd(mm: Mm, vma: Vma, addr: int) -> bool:
    """mm/huge_memory.c do_huge_zero_wp_pmd(): a write to the huge zero PMD allocates a PMD
    THP and maps it writable in its place (one fault). When the allocation fails the PMD is
    split into PTEs of the zero page and the caller copies at PTE level
    (VM_FAULT_FALLBACK). Returns whether the THP was mapped."""
    system = mm.system
    size = system.kgeom.pmd_size
    a = addr & ~(size - 1)
    folio = system.anon_folio_alloc(pmd_order(mm))
    if folio is None:
        mm.pgtable.split_pmd(a)
        system.stats.count("thp_split_pmd")
        return False
    mm.pgtable.clear_pmd(a)
    mm.pgtable.set_pmd(a, folio.pfn, vma.flags & (PROT_READ | PROT_WRITE | PROT_EXEC), folio_pfn=folio.pfn,
                       folio_nr=folio.nr_pages)
    rmap_add(vma, folio, mm, a, 0, folio.nr_pages)
    system.stats.count("thp_pmd_faults")
    return True


def change_huge_pmds(mm: Mm, vma: Vma, lo: int, hi: int, prot: int) -> None:
    """mm/huge_memory.c change_huge_pmd() for the blocks wholly inside [lo, hi) (the caller
    split the others). A private mapping gets write permission only on a folio it maps
    alone (can_change_pmd_writable(): PageAnonExclusive)."""
    size = mm.system.kgeom.pmd_size
    for a, pfn, _ in pmd_blocks(mm, lo, hi):
        if a >= lo and a + size <= hi:
            p = prot
            if p & PROT_WRITE and not vma.flags & VM_SHARED and not folio_exclusive(mm, mm.system.pfn_folio(pfn)):
                p &= ~PROT_WRITE
            _set_block_prot(mm, a, pfn, p)


def copy_huge_pmd(parent: Mm, child: Mm, addr: int, pfn: int, prot: int) -> None:
    """mm/huge_memory.c copy_huge_pmd(): the child maps the same anonymous THP; both PMDs
    are write-protected (pmdp_set_wrprotect + pmd_wrprotect) so a write copies or reuses."""
    folio = parent.system.pfn_folio(pfn)
    ro = prot & ~PROT_WRITE
    _set_block_prot(parent, addr, pfn, ro)
    child.pgtable.set_pmd(addr, pfn, ro, folio_pfn=folio.pfn, folio_nr=folio.nr_pages)
    if is_zero_folio(parent.system, folio):
        return  # the huge zero page: mapped again, never rmapped
    folio.rmap.append(RmapEntry(child, addr, 0, folio.nr_pages))
    folio.mapcount += folio.nr_pages


def do_huge_pmd_wp_page(mm: Mm, vma: Vma, addr: int) -> bool:
    """mm/huge_memory.c do_huge_pmd_wp_page() for the block holding addr: a folio this mm
    maps alone is reused (the PMD made writable, True); otherwise the PMD is split and the
    caller copies at PTE level (VM_FAULT_FALLBACK -> do_wp_page(), False)."""
    size = mm.system.kgeom.pmd_size
    a = addr & ~(size - 1)
    pfn, prot, _ = mm.pgtable.pte_get(a)
    folio = mm.system.pfn_folio(pfn)
    if folio is huge_zero_folio(mm.system, alloc=False):
        return do_huge_zero_wp_pmd(mm, vma, addr)
    if vma.flags & VM_SHARED or folio_exclusive(mm, folio):
        _set_block_prot(mm, a, pfn, vma.flags & (PROT_READ | PROT_WRITE | PROT_EXEC))
        mm.system.stats.count("thp_pmd_reuse")
        return True
    mm.pgtable.split_pmd(a)
    mm.system.stats.count("thp_split_pmd")
    return False


def move_huge_pmds(mm: Mm, old_start: int, new_start: int, length: int) -> list[tuple[int, int]]:
    """mm/mremap.c move_page_tables() -> move_pgt_entry(HPAGE_PMD): a block wholly inside
    the old range moves as a block when its new place is PMD-aligned too; the others are
    split. Returns the (old, new) block addresses moved (the caller fixes the rmap)."""
    size = mm.system.kgeom.pmd_size
    old_end = old_start + length
    delta = new_start - old_start
    moved = []
    for a, pfn, prot in pmd_blocks(mm, old_start, old_end):
        if a >= old_start and a + size <= old_end and not delta & (size - 1):
            folio = mm.system.pfn_folio(pfn)
            mm.pgtable.clear_pmd(a)
            mm.pgtable.set_pmd(a + delta, pfn, prot, folio_pfn=folio.pfn, folio_nr=folio.nr_pages)
            moved.append((a, a + delta))
        else:
            mm.pgtable.split_pmd(a)
            mm.system.stats.count("thp_split_pmd")
    return moved
