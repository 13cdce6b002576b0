"""The reverse map: which mm maps which pages of a folio, and where.

Counterpart: mm/rmap.c (folio_add_anon_rmap_ptes, folio_remove_rmap_ptes, try_to_unmap,
remove_migration_ptes) and mm/mlock.c (mlock_count). Folio.rmap entries are
`mm_types.RmapEntry(mm, addr, first, nr)`: kernel pages first .. first+nr-1 of the folio are mapped at addr
in mm (by PTEs, or by one PMD block when the folio has the PMD order and nr covers it).
The zero folio is never rmapped (vm_normal_page() returns NULL for it).
"""

from __future__ import annotations

import numpy as np

from .mm_types import PROT_EXEC, PROT_READ, PROT_WRITE, VM_LOCKED, Folio, Mm, RmapEntry, Vma, is_zero_folio


def _pte_prot(vma: Vma, writable: bool) -> int:
    prot = vma.flags & (PROT_READ | PROT_WRITE | PROT_EXEC)
    return prot if writable else prot & ~PROT_WRITE


def map_folio_range(mm: Mm, vma: Vma, addr: int, folio: Folio, first: int, nr: int, writable: bool) -> None:
    """Map kernel pages [first, first+nr) of folio at addr: set_ptes() + folio_add_*_rmap_ptes()."""
    prot = _pte_prot(vma, writable)
    mm.pgtable.set_ptes(addr, folio.pfn + first, nr, prot, folio_pfn=folio.pfn, folio_nr=folio.nr_pages)
    if folio is mm.system.zero_folio:
        return  # the zero page is not rmapped (vm_normal_page() returns NULL for it)
    rmap_add(vma, folio, mm, addr, first, nr)


def rmap_add(vma: Vma, folio: Folio, mm: Mm, addr: int, first: int, nr: int) -> None:
    folio.rmap.append(RmapEntry(mm, addr, first, nr))
    folio.mapcount += nr
    if vma.flags & VM_LOCKED:
        # mm/mlock.c mlock_new_folio()/mlock_vma_folio(): mapped into a VM_LOCKED VMA
        folio_mlock_recount(folio)


def folio_mlock_recount(folio: Folio) -> None:
    """folio->mlock_count as the number of VM_LOCKED VMAs mapping the folio (mm/mlock.c
    counts one mlock_folio() per locked VMA mapping and one munlock_folio() per locked
    unmap or munlock; recounting from the rmap keeps it exact through splits and merges)."""
    locked = set()
    for emm, addr, _, nr in folio.rmap:
        for v in emm.vmas.find_intersection(addr, addr + nr * emm.system.kernel_page_size):
            if v.flags & VM_LOCKED:
                locked.add(id(v))
    folio.mlock_count = len(locked)


def _rmap_cut(folio: Folio, mm: Mm, start: int, end: int):
    """folio.rmap with mm's entries cut at start and end, in order: (entry, inside) pairs,
    inside True for the pieces within [start, end)."""
    kps = mm.system.kernel_page_size
    for entry in folio.rmap:
        emm, addr, first, nr = entry
        eend = addr + nr * kps
        if emm is not mm or eend <= start or addr >= end:
            yield entry, False
            continue
        lo, hi = max(addr, start), min(eend, end)
        if lo > addr:
            yield RmapEntry(emm, addr, first, (lo - addr) // kps), False
        yield RmapEntry(emm, lo, first + (lo - addr) // kps, (hi - lo) // kps), True
        if hi < eend:
            yield RmapEntry(emm, hi, first + (hi - addr) // kps, (eend - hi) // kps), False


def unmap_folio_range(mm: Mm, folio: Folio, start: int, end: int) -> int:
    """Drop folio's rmap entries of mm inside [start, end); returns the pages unmapped."""
    pieces = list(_rmap_cut(folio, mm, start, end))
    folio.rmap = [e for e, inside in pieces if not inside]
    dropped = sum(e.nr for e, inside in pieces if inside)
    folio.mapcount -= dropped
    if dropped and folio.mlock_count:
        folio_mlock_recount(folio)  # mm/rmap.c folio_remove_rmap_ptes() -> munlock_vma_folio()
    return dropped


def rmap_move(mm: Mm, folio: Folio, start: int, end: int, delta: int) -> None:
    """mremap: the rmap entries of mm inside [start, end) move by delta (an entry straddling
    an edge is split there first)."""
    folio.rmap = [RmapEntry(e.mm, e.addr + delta, e.first, e.nr) if inside else e
                  for e, inside in _rmap_cut(folio, mm, start, end)]


def folio_put_if_unused(system, folio: Folio) -> None:
    """Free an anonymous folio nobody maps or pins any more (folio_put() reaching zero)."""
    if (folio.anon and folio.mapcount == 0 and folio.pincount == 0 and folio.pfn in system.folios
            and not folio.shmem and not is_zero_folio(system, folio)):
        system.anon_folio_free(folio)


def folio_unmap_all(folio: Folio) -> None:
    """try_to_unmap(): remove every mapping of folio from every mm (a PMD mapping is split
    first, as try_to_unmap_one() does with TTU_SPLIT_HUGE_PMD)."""
    for mm, addr, first, nr in list(folio.rmap):
        kps = mm.system.kernel_page_size
        for a in mm.pgtable.pmd_blocks_in(addr, addr + nr * kps):  # split_huge_pmd_address()
            mm.pgtable.split_pmd(a)
            mm.system.stats.count("thp_split_pmd")
        mm.pgtable.clear_ptes(addr, nr)
        unmap_folio_range(mm, folio, addr, addr + nr * kps)


def folio_remap(folio: Folio, old_pfn: int) -> None:
    """remove_migration_ptes(): after compaction moved folio from old_pfn, point its
    mappings (PTEs with their own protections, or the PMD) at the new frames."""
    for mm, addr, first, nr in folio.rmap:
        pt = mm.pgtable
        if first == 0 and nr == folio.nr_pages and pt.pmd_blocks_in(addr, addr + 1) == [addr]:
            _, prot, _ = pt.pte_get(addr)
            pt.clear_pmd(addr)
            pt.set_pmd(addr, folio.pfn, prot, folio_pfn=folio.pfn, folio_nr=folio.nr_pages)
            continue
        _, prots, _ = pt.read_ptes(addr, nr)
        pt.clear_ptes(addr, nr)
        brk = np.flatnonzero(np.diff(prots)) + 1
        for i0, i1 in zip(np.r_[0, brk].tolist(), np.r_[brk, nr].tolist()):
            pt.set_ptes(addr + i0 * mm.system.kernel_page_size, folio.pfn + first + i0, i1 - i0,
                        int(prots[i0]), folio_pfn=folio.pfn, folio_nr=folio.nr_pages)
