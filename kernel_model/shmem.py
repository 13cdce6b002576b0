"""MAP_SHARED|MAP_ANONYMOUS memory: an unlinked shmem object behind the VMA.

Counterparts: mm/shmem.c (shmem_zero_setup(), shmem_fault(), shmem_get_folio_gfp()),
mm/memory.c (do_read_fault() -> do_fault_around(), do_shared_fault()), mm/filemap.c
(filemap_map_pages(), shmem's ->map_pages) and kernel/fork.c dup_mmap() with
mm/memory.c vma_needs_copy(): a shmem VMA has no anon_vma, so fork copies no PTEs and
the child faults the pages in from the object.

The object is shared by every VMA that maps it (mmap, split pieces, fork copies): a page
faulted in by any process after fork is the page every other process finds (the running
kernel shows it; tests/oracle compares the faults). Pages are folios of the process order
(shmem_enabled and hugepages-<size>kB/shmem_enabled are "never" by default:
shmem_allowable_huge_orders() gives no larger order). They are counted as anonymous memory
(anon_bytes), stay while the object lives (MADV_DONTNEED only unmaps them, as on tmpfs),
and are freed when the last VMA mapping the object goes (the final fput() of the shmem
file truncates it).

Units: index in kernel pages from the start of the object (vma.pgoff is 0 at mmap,
mm/mmap.c do_mmap() for MAP_SHARED anonymous).
"""

from __future__ import annotations

import weakref

from .mm_types import PROT_EXEC, PROT_READ, PROT_WRITE, Mm, OutOfMemory, Vma
from .rmap import map_folio_range

# mm/memory.c: fault_around_bytes = rounddown_pow_of_two(65536) (debugfs knob, 64K default).
FAULT_AROUND_BYTES = 64 << 10


class ShmemObject:
    """The shmem file of one MAP_SHARED|MAP_ANONYMOUS mmap: index -> folio (keyed by the
    folio's first index)."""

    def __init__(self, system):
        self.pages: dict[int, object] = {}
        # the last reference gone (all VMAs unmapped): truncate, free the folios
        weakref.finalize(self, _release, system, self.pages)


def _release(system, pages: dict) -> None:
    for folio in pages.values():
        if folio.pfn in system.folios and system.folios[folio.pfn] is folio and not folio.mapcount:
            system.anon_folio_free(folio)
    pages.clear()


def shmem_zero_setup(system, vma: Vma) -> None:
    """mm/shmem.c shmem_zero_setup(): give a new shared anonymous VMA its object."""
    vma.shmem = ShmemObject(system)


def _prot(vma: Vma) -> int:
    # shmem needs no write notification (no ->page_mkwrite, no writeback): the PTEs carry
    # the VMA's write permission from the first fault (mm/mmap.c vma_wants_writenotify()).
    return vma.flags & (PROT_READ | PROT_WRITE | PROT_EXEC)


def _index(vma: Vma, addr: int, kps: int) -> int:
    return vma.pgoff + (addr - vma.start) // kps


def shmem_fault(mm: Mm, vma: Vma, addr: int, write: bool) -> int:
    """A fault on an unmapped page of a shmem VMA; returns 0 (one fault counted).

    A read fault first maps the object's pages already present in the fault-around window
    (64K aligned, clipped to the VMA and the PTE table); when that covered addr the fault
    is done. Otherwise (and for every write fault, do_shared_fault() does no fault-around)
    shmem_fault() finds or allocates the folio at the index and maps it."""
    system = mm.system
    kps = system.kernel_page_size
    obj = vma.shmem
    ps = mm.page_size
    writable = bool(_prot(vma) & PROT_WRITE)
    start = addr & ~(ps - 1)
    system.stats.count("faults")
    if not write and FAULT_AROUND_BYTES > ps:
        pmd = system.kgeom.pmd_size
        lo = max(addr & ~(FAULT_AROUND_BYTES - 1), vma.start)
        hi = min(lo + FAULT_AROUND_BYTES, (addr & ~(pmd - 1)) + pmd, vma.end)
        hit = False
        for a in range(lo, hi, ps):
            folio = obj.pages.get(_index(vma, a, kps))
            if folio is not None and mm.pgtable.range_none(a, ps // kps):
                map_folio_range(mm, vma, a, folio, 0, ps // kps, writable)
                system.stats.count("fault_around_pages", ps // kps)
                hit = hit or a == start
        if hit:
            return 0
    idx = _index(vma, start, kps)
    folio = obj.pages.get(idx)
    if folio is None:
        folio = system.anon_folio_alloc(mm.order)
        if folio is None:
            raise OutOfMemory(f"shmem: no order-{mm.order} folio for a fault at {addr:#x}")
        folio.shmem = True
        obj.pages[idx] = folio
        system.stats.count("shmem_pages_allocated", ps // kps)
    map_folio_range(mm, vma, start, folio, 0, ps // kps, writable)
    return 0

