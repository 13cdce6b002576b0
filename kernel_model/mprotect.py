"""mprotect's page-table side: change the protection of the present entries of a range.

Counterpart: mm/mprotect.c (change_protection(), change_pte_range(), can_change_pte_writable()),
mm/huge_memory.c (change_huge_pmd()). The syscall (VMA flags, checks) is abi_mprotect.py.

Units: addresses in bytes; pages in kernel pages.
"""

from __future__ import annotations

import numpy as np

from . import huge_memory
from .memory import pte_spans
from .mm_types import PROT_WRITE, VM_SHARED, Mm


def change_protection(mm: Mm, start: int, end: int, prot: int) -> None:
    """mm/mprotect.c change_protection(): rewrite the protection of present PTEs in [start, end).

    Shared mappings get prot as is. A private mapping gets write permission only on pages
    of anonymous folios it maps alone (change_pte_range() with MM_CP_TRY_CHANGE_WRITABLE:
    can_change_pte_writable() wants PageAnonExclusive); COW-shared, zero-page and file pages
    stay read-only and take a write fault. PMD blocks: change_huge_pmd().
    """
    kps = mm.system.kernel_page_size
    for vma in mm.vmas.find_intersection(start, end):
        lo, hi = max(start, vma.start), min(end, vma.end)
        huge_memory.split_huge_pmds(mm, lo, hi)
        huge_memory.change_huge_pmds(mm, vma, lo, hi, prot)
        for s0, s1 in pte_spans(mm, lo, hi):
            if vma.flags & VM_SHARED or not prot & PROT_WRITE:
                mm.pgtable.modify_prot(s0, (s1 - s0) // kps, prot)
                continue
            heads = mm.pgtable.read_ptes(s0, (s1 - s0) // kps)[2]
            ok = np.zeros(heads.size, np.bool_)
            for h in np.unique(heads[heads >= 0]).tolist():
                if huge_memory.folio_exclusive(mm, mm.system.folios.get(h)):
                    ok |= heads == h
            brk = np.flatnonzero(np.diff(ok)) + 1
            for i0, i1 in zip(np.r_[0, brk].tolist(), np.r_[brk, ok.size].tolist()):
                p = prot if ok[i0] else prot & ~PROT_WRITE
                mm.pgtable.modify_prot(s0 + i0 * kps, i1 - i0, p)
