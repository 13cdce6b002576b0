"""fork's memory side: the child's VMAs and its copy-on-write share of the parent's folios.

Counterpart: kernel/fork.c (dup_mmap()), mm/memory.c (copy_page_range(), copy_present_ptes(),
copy_present_page()), mm/huge_memory.c (copy_huge_pmd()). The process side (pid, fd table)
is process.py's Process.fork().

Units: addresses in bytes; pages in kernel pages.
"""

from __future__ import annotations

import numpy as np

from . import huge_memory
from .abi_common import VM_WIPEONFORK
from .memory import folio_runs, pte_spans, vma_prot
from .mm_types import (PROT_WRITE, VM_DONTCOPY, VM_LOCKED, VM_LOCKONFAULT, VM_PAD_ANON, VM_SHARED, VM_WRITE, Mm,
                       OutOfMemory, Vma)
from .rmap import map_folio_range
from .userfaultfd import dup_userfaultfd


def _copy_pinned(child: Mm, vma: Vma, addr: int, nr: int) -> None:
    """mm/memory.c copy_present_ptes(): an anonymous folio that may be DMA-pinned is not
    shared (folio_try_dup_anon_rmap_ptes() fails); copy_present_page() gives the child its
    own copy at once, writable, and the parent keeps its PTEs writable. The copy is made in
    folios of the process order (one kernel page each in an anon_vma overhang VMA)."""
    system = child.system
    kps = system.kernel_page_size
    order = 0 if vma.flags & VM_PAD_ANON else child.order
    size = kps << order
    a, end = addr, addr + nr * kps
    while a < end:
        hi = min((a & ~(size - 1)) + size, end)
        new = system.anon_folio_alloc(order, padding=bool(vma.flags & VM_PAD_ANON))
        if new is None:
            raise OutOfMemory(f"fork: no order-{order} folio to copy a pinned page at {a:#x}")
        map_folio_range(child, vma, a, new, (a - (a & ~(size - 1))) // kps, (hi - a) // kps, writable=True)
        system.stats.count("fork_pinned_copies")
        a = hi


def dup_mm(parent: Mm, child: Mm) -> None:
    """kernel/fork.c dup_mmap() + mm/memory.c copy_page_range(): the child gets the VMAs;
    private anonymous folios are shared copy-on-write (copy_present_ptes(): both sides
    write-protected; copy_huge_pmd() for PMD blocks); file pages are not copied (the
    child faults them in), as copy_page_range() skips VMAs without anon_vma."""
    system = parent.system
    kps = system.kernel_page_size
    child.brk, child.start_brk, child.mmap_base = parent.brk, parent.start_brk, parent.mmap_base
    for vma in parent.vmas.vmas:
        if vma.flags & VM_DONTCOPY:
            continue
        cvma = child.vmas.map(Vma(vma.start, vma.end, vma.flags & ~(VM_LOCKED | VM_LOCKONFAULT),
                                  file=vma.file, pgoff=vma.pgoff, name=vma.name, shmem=vma.shmem))
        if vma.flags & VM_WIPEONFORK:
            continue  # kernel/fork.c dup_mmap(): the child's copy starts empty
        if vma.flags & VM_SHARED:
            # vma_needs_copy(): a shared VMA has no anon_vma; the child faults its pages in
            # (from the page cache, or the shmem object of a shared anonymous mapping)
            if vma.shmem is not None:
                system.stats.count("fork_shared_anon_vmas")
            continue
        huge_memory.split_huge_pmds(parent, vma.start, vma.end)
        for a, pfn, prot in huge_memory.pmd_blocks(parent, vma.start, vma.end):
            if system.pfn_folio(pfn).pincount:  # copy_huge_pmd(): pinned -> split, copy per PTE
                huge_memory.split_huge_pmds(parent, a, a + 1, whole=True)
                continue
            huge_memory.copy_huge_pmd(parent, child, a, pfn, prot)
            if vma.flags & VM_WRITE:
                system.stats.count("cow_shared_pages", 1 << huge_memory.pmd_order(parent))
        for s0, s1 in pte_spans(parent, vma.start, vma.end):
            pfn, _, heads = parent.pgtable.read_ptes(s0, (s1 - s0) // kps)
            idx = np.flatnonzero(pfn >= 0)
            if idx.size == 0:
                continue
            pfn, heads = pfn[idx], heads[idx]
            for i, n in folio_runs(idx, pfn, heads):
                folio = system.folios[int(heads[i])]
                if not folio.anon:
                    continue
                addr = s0 + int(idx[i]) * kps
                if folio.pincount:
                    _copy_pinned(child, cvma, addr, n)
                    continue
                parent.pgtable.modify_prot(addr, n, vma_prot(vma) & ~PROT_WRITE)
                map_folio_range(child, cvma, addr, folio, int(pfn[i]) - folio.pfn, n, writable=False)
                if vma.flags & VM_WRITE:
                    system.stats.count("cow_shared_pages", n)
    dup_userfaultfd(parent, child)
