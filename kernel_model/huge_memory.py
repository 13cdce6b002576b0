"""Anonymous folio order policy: mTHP and PMD THP, bounded below by the process order.

Counterparts: mm/huge_memory.c (thp_vma_allowable_orders, __thp_vma_allowable_orders),
mm/memory.c (alloc_anon_folio, thp_anon_vma_suitable_orders / thp_vma_suitable_order)
and include/linux/huge_mm.h (highest_order, next_order).

The per-process page size proposal makes the process order the hard minimum folio order
(the thread, Dev 2026-02-17: "The process order will be used as the hard minimum mTHP
order to allocate"); mTHP orders above it stay opportunistic.
"""

from __future__ import annotations

from .mm_types import VM_HUGEPAGE, VM_NOHUGEPAGE, Mm, Vma
from .units import ilog2


def mthp_orders(mm: Mm) -> list[int]:
    """The enabled mTHP orders (folio.mthp_sizes) in kernel pages, highest first.

    Sizes that are not above the kernel page size are ignored, as
    /sys/kernel/mm/transparent_hugepage/hugepages-<size>kB exists only for orders >= 2
    (THP_ORDERS_ALL_ANON in include/linux/huge_mm.h excludes orders 0 and 1).
    """
    kps = mm.system.kernel_page_size
    orders = {ilog2(size // kps) for size in mm.system.policy.mthp_sizes if size > kps}
    return sorted((o for o in orders if 2 <= o <= mm.system.max_order), reverse=True)


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
    orders: list[int] = []
    thp_allowed = not (vma.flags & VM_NOHUGEPAGE)
    # mm/huge_memory.c: the PMD order is tried first by do_huge_pmd_anonymous_page()
    # when THP is enabled ("always", or "madvise" with VM_HUGEPAGE).
    if policy.thp_pmd and thp_allowed:
        o = pmd_order(mm)
        if o > base and o <= mm.system.max_order and order_suitable(vma, addr, o, kps):
            orders.append(o)
    fitting = [o for o in mthp_orders(mm) if o > base and order_suitable(vma, addr, o, kps)] if thp_allowed else []
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
    if mm.system.policy.anon == "mthp_only" and not vma.flags & VM_NOHUGEPAGE:
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
