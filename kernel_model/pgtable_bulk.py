"""Bulk operations on a PageTable for the batched fault path (kernel_model/fault_batch.py).

Counterpart: what many set_ptes() calls (include/linux/pgtable.h) and the table
allocations under them (mm/memory.c __pte_alloc(), __pmd_alloc(), __pud_alloc()) leave
behind, done in one vectorised step: read the entries of many aligned blocks, put in
place tables a bulk allocation made, store the final entries. A mixin of PageTable: it
uses the table's private layout (described in pgtable.py).
"""

from __future__ import annotations

import numpy as np

from .arch.arm64 import contpte


def group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(keys, return_inverse=True) for int64 keys, without a sort when they span
    a range not much larger than their number (a presence array over the range instead)."""
    if keys.size == 0:
        return keys, np.zeros(0, np.int64)
    lo = int(keys.min())
    span = int(keys.max()) - lo + 1
    if span > 4 * keys.size + (1 << 16):
        return np.unique(keys, return_inverse=True)
    present = np.zeros(span, np.bool_)
    rel = keys - lo
    present[rel] = True
    rank = np.cumsum(present) - 1
    return np.flatnonzero(present) + lo, rank[rel]


class PageTableBulk:
    """gather_blocks(), install_tables(), store_ptes(): PageTable's bulk side."""

    def gather_blocks(self, first_pages: np.ndarray, n: int):
        """(pfn, prot, folio, cont), each of shape (len(first_pages), n): the leaf entries of
        pages first_pages[i] .. +n (page numbers, addr >> page shift), -1/0/-1/False where
        no leaf table exists. Each row must lie in one leaf table (n divides the table's
        entries and the rows are n-aligned); block mappings are not expanded (callers check
        nr_blocks first)."""
        first_pages = np.asarray(first_pages, np.int64)
        if self._E % n or (first_pages % n).any():
            raise ValueError(f"gather_blocks: rows of {n} pages must be aligned inside one {self._E}-entry table")
        ut, inv = group(first_pages // self._E)
        slots = np.array([self._leaf.get(k, -1) for k in ut.tolist()], np.int64)[inv]
        have = slots >= 0
        e = (first_pages % self._E)[:, None] + np.arange(n, dtype=np.int64)
        s = np.where(have, slots, 0)[:, None]
        hv = have[:, None]
        return (np.where(hv, self._pfn[s, e], -1), np.where(hv, self._prot[s, e], 0).astype(np.int8),
                np.where(hv, self._folio[s, e], -1), hv & self._cont[s, e])

    def install_tables(self, tables) -> None:
        """Put in place the tables a bulk allocation made: tables is [(level index, table
        index, phys)] in allocation order, each one a table that does not exist yet and whose
        parents exist or come earlier in the list (what _leaf_get()/_ensure_upper() would
        have allocated for the same mappings)."""
        leaf = self._L - 1
        self._reserve(sum(1 for i, _, _ in tables if i == leaf))
        for i, t, phys in tables:
            if i == leaf:
                if t in self._leaf:
                    raise ValueError(f"install_tables: leaf table {t} exists")
                slot = self._free_slots.pop()
                self._leaf_phys[slot] = phys
                self._leaf[t] = slot
            else:
                if not 0 < i < leaf or t in self._upper[i]:
                    raise ValueError(f"install_tables: level index {i} table {t} exists or is not an upper table")
                self._upper[i][t] = phys
            self._gen += 1

    def store_ptes(self, pages: np.ndarray, pfn: np.ndarray, prot: np.ndarray, folio: np.ndarray,
                   folds: int = 0) -> None:
        """The final state of many set_ptes() calls at once: entry pages[i] (page numbers,
        unique) maps pfn[i] with prot[i] in folio folio[i]. Every leaf table must exist and
        no listener may be registered (the calls' notifications are not replayed). PTE_CONT
        is recomputed for every run touched from the entries now in it (the fold rule of
        arch/arm64/contpte.py); `folds` is what the set_ptes() calls would have counted."""
        if self.listeners:
            raise ValueError("store_ptes: listeners are registered; use set_ptes()")
        pages = np.asarray(pages, np.int64)
        if pages.size == 0:
            return
        ut, inv = group(pages // self._E)
        slots = np.array([self._leaf[k] for k in ut.tolist()], np.int64)
        s, e = slots[inv], pages % self._E
        was = self._pfn[s, e] >= 0
        self._pfn[s, e] = pfn
        self._prot[s, e] = prot
        self._folio[s, e] = folio
        np.add.at(self._nr_present, s, (~was).astype(np.int64))
        if self.contpte:
            c = self.geom.cont_pte
            runs = group(pages // c)[0]
            rs = slots[np.searchsorted(ut, (runs * c) // self._E)][:, None]
            re = ((runs * c) % self._E)[:, None] + np.arange(c, dtype=np.int64)
            ok = contpte.contpte_runs_ok(self._pfn[rs, re], self._prot[rs, re], self._folio[rs, re])
            self._cont[rs, re] = ok[:, None]
            self.stats["contpte_folds"] += int(folds)
