"""mremap's page-table side: carry the mappings of a range to a new place.

Counterpart: mm/mremap.c (move_page_tables(), move_pgt_entry(), move_ptes()). The syscall
(VMA moves, checks) is abi_mremap.py.

Units: addresses in bytes; pages in kernel pages.
"""

from __future__ import annotations

import numpy as np

from . import huge_memory
from .memory import folio_runs, pte_spans
from .mm_types import Mm, is_zero_folio
from .rmap import rmap_move


def move_range(mm: Mm, old_start: int, new_start: int, length: int) -> None:
    """mm/mremap.c move_page_tables(): carry the mappings of [old_start, +length) to new_start.

    PMD blocks move whole where both places are PMD-aligned (move_pgt_entry(HPAGE_PMD)),
    else they are split; PTEs move run by run (one set_ptes() per folio run and prot)."""
    system = mm.system
    kps = system.kernel_page_size
    delta = new_start - old_start
    old_end = old_start + length
    huge_memory.split_huge_pmds(mm, old_start, old_end)
    blocks = huge_memory.move_huge_pmds(mm, old_start, new_start, length)
    moved = {}
    for old, _ in blocks:
        folio = system.pfn_folio(mm.pgtable.pte_get(old + delta)[0])
        moved[folio.pfn] = folio
    spans = []
    for s0, s1 in pte_spans(mm, old_start, old_end):
        nr = (s1 - s0) // kps
        pfn, prot, heads = mm.pgtable.read_ptes(s0, nr)
        idx = np.flatnonzero(pfn >= 0)
        mm.pgtable.clear_ptes(s0, nr)
        if idx.size:
            spans.append((s0, idx, pfn[idx], prot[idx], heads[idx]))
        for h in np.unique(heads[idx]).tolist():
            moved.setdefault(h, system.folios[h])
    for folio in moved.values():
        if not is_zero_folio(system, folio):
            rmap_move(mm, folio, old_start, old_end, delta)
    for s0, idx, pfn, prot, heads in spans:
        for i, n in folio_runs(idx, pfn, heads, prot):
            folio = moved[int(heads[i])]
            mm.pgtable.set_ptes(s0 + delta + int(idx[i]) * kps, int(pfn[i]), n, int(prot[i]),
                                folio_pfn=folio.pfn, folio_nr=folio.nr_pages)
