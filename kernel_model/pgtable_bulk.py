"""Array-at-a-time operations on a PageTable: many entries read or stored in one step.

Counterpart: what many set_ptes() calls (include/linux/pgtable.h) and the table
allocations under them (mm/memory.c __pte_alloc(), __pmd_alloc(), __pud_alloc()) leave
behind, done in one vectorised step for the batched fault path (kernel_model/fault_batch.py):
read the entries of many aligned blocks, put in place tables a bulk allocation made,
store the final entries. And the range reads and rebuilds the other modules take as
arrays: read_ptes() (a range's entries, blocks expanded: fork, mprotect, mremap, the
native table), cont_bits(), and set_pte_array()/drop_range(), with which the native
table is rebuilt from and discarded against the Linux one. A mixin of PageTable: it
uses the table's private layout (described in pgtable.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

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


@njit(cache=True)
def _store(t_pfn, t_prot, t_folio, nr_present, slots, ents, pfn, prot, folio):
    """Entry ents[i] of leaf table slots[i] := (pfn[i], prot[i], folio[i]), counting the
    entries that were not present before in nr_present."""
    for i in range(slots.size):
        s, e = slots[i], ents[i]
        if t_pfn[s, e] < 0:
            nr_present[s] += 1
        t_pfn[s, e] = pfn[i]
        t_prot[s, e] = prot[i]
        t_folio[s, e] = folio[i]


class PageTableBulk:
    """gather_blocks(), install_tables(), store_ptes(), read_ptes(), cont_bits(),
    set_pte_array(), drop_range(): PageTable's array side."""

    def gather_blocks(self, first_pages: np.ndarray, n: int):
        """(pfn, prot, folio, cont), each of shape (len(first_pages), n): the leaf entries of
        pages first_pages[i] .. +n (page numbers, addr >> page shift), -1/0/-1/False where
        no leaf table exists. Each row must lie in one leaf table (n divides the table's
        entries and the rows are n-aligned); block mappings are not expanded (callers check
        nr_blocks first)."""
        first_pages = np.asarray(first_pages, np.int64)
        if self._E % n or (first_pages % n).any():
            raise ValueError(f"gather_blocks: rows of {n} pages must be aligned inside one {self._E}-entry table")
        m = first_pages.size
        pfn, prot = np.full((m, n), -1, np.int64), np.zeros((m, n), np.int8)
        folio, cont = np.full((m, n), -1, np.int64), np.zeros((m, n), np.bool_)
        if not self._leaf or m == 0:
            return pfn, prot, folio, cont
        ut, inv = group(first_pages // self._E)
        slots = np.array([self._leaf.get(k, -1) for k in ut.tolist()], np.int64)[inv]
        rows = np.flatnonzero(slots >= 0)  # only rows whose leaf table exists are read
        s = slots[rows][:, None]
        e = (first_pages[rows] % self._E)[:, None] + np.arange(n, dtype=np.int64)
        pfn[rows], prot[rows], folio[rows], cont[rows] = self._pfn[s, e], self._prot[s, e], self._folio[s, e], \
            self._cont[s, e]
        return pfn, prot, folio, cont

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
        _store(self._pfn, self._prot, self._folio, self._nr_present, slots[inv], pages % self._E,
               np.asarray(pfn, np.int64), np.asarray(prot, np.int8), np.asarray(folio, np.int64))
        if self.contpte:
            c = self.geom.cont_pte
            runs = group(pages // c)[0]
            rs = slots[np.searchsorted(ut, (runs * c) // self._E)][:, None]
            re = ((runs * c) % self._E)[:, None] + np.arange(c, dtype=np.int64)
            ok = contpte.contpte_runs_ok(self._pfn[rs, re], self._prot[rs, re], self._folio[rs, re])
            self._cont[rs, re] = ok[:, None]
            self.stats["contpte_folds"] += int(folds)

    def read_ptes(self, addr, nr):
        """(pfn, prot, folio) arrays of the nr pages from addr as this table maps them,
        block mappings expanded to their pages; -1 pfn/folio where nothing is mapped."""
        self._check_range(addr, nr, "read_ptes")
        nr = int(nr)
        pfn = np.full(nr, -1, np.int64)
        prot = np.zeros(nr, np.int8)
        folio = np.full(nr, -1, np.int64)
        for t, e0, e1, off in self._chunks(addr, nr):
            slot = self._leaf.get(t)
            if slot is not None:
                pfn[off:off + e1 - e0] = self._pfn[slot, e0:e1]
                prot[off:off + e1 - e0] = self._prot[slot, e0:e1]
                folio[off:off + e1 - e0] = self._folio[slot, e0:e1]
        end = addr + (nr << self._ps)
        for i in range(self._L - 1):
            for g in self._blocks_in(i, addr, end):
                blk = self._blocks[i][g]
                b0, b1 = max(g << self._shift[i], addr), min((g + 1) << self._shift[i], end)
                if b0 < b1:
                    s0, s1 = (b0 - addr) >> self._ps, (b1 - addr) >> self._ps
                    first = blk.pfn + ((b0 - (g << self._shift[i])) >> self._ps)
                    pfn[s0:s1] = np.arange(first, first + s1 - s0)
                    prot[s0:s1] = blk.prot
                    folio[s0:s1] = blk.folio_pfn
        return pfn, prot, folio

    def cont_bits(self, addr, nr) -> np.ndarray:
        """The PTE_CONT bits of nr PTEs from addr (False where no table)."""
        self._check_range(addr, nr, "cont_bits")
        out = np.zeros(int(nr), np.bool_)
        for t, e0, e1, off in self._chunks(addr, int(nr)):
            slot = self._leaf.get(t)
            if slot is not None:
                out[off:off + e1 - e0] = self._cont[slot, e0:e1]
        return out

    def set_pte_array(self, addr, pfns, prots, folios) -> None:
        """Store arbitrary entries from arrays (-1 pfn = none): rebuilding a table from
        another one (the on-demand native table). No listeners are called."""
        pfns = np.asarray(pfns, np.int64)
        nr = len(pfns)
        self._check_range(addr, nr, "set_pte_array")
        prots = np.broadcast_to(np.asarray(prots, np.int8), (nr,))
        folios = np.broadcast_to(np.asarray(folios, np.int64), (nr,))
        self._check_no_blocks_in(addr, nr, "set_pte_array")
        for t, e0, e1, off in self._chunks(addr, nr):
            seg = pfns[off:off + e1 - e0]
            slot = self._leaf_get(t, create=bool((seg >= 0).any()))
            if slot < 0:
                continue
            present = seg >= 0
            self._nr_present[slot] += int(np.count_nonzero(present)) - int(
                np.count_nonzero(self._pfn[slot, e0:e1] >= 0))
            self._pfn[slot, e0:e1] = seg
            self._prot[slot, e0:e1] = np.where(present, prots[off:off + e1 - e0], 0)
            self._folio[slot, e0:e1] = np.where(present, folios[off:off + e1 - e0], -1)
            self._contpte_update(slot, e0, e1)

    def drop_range(self, addr: int, size: int) -> None:
        """Unmap everything in [addr, addr+size), blocks included (a partially covered
        block is split first), without notifying listeners: discarding a table that can
        be rebuilt (the on-demand native table)."""
        listeners, self.listeners = self.listeners, []
        try:
            end = addr + size
            for i in range(self._L - 1):
                bsize = 1 << self._shift[i]
                for g in self._blocks_in(i, addr, end):
                    b0 = g << self._shift[i]
                    if b0 >= addr and b0 + bsize <= end:
                        self._clear_block(i, "drop_range", b0)
                    elif i == self._L - 2:
                        self.split_pmd(b0)
                    else:
                        raise ValueError(f"drop_range: [{addr:#x}, {end:#x}) splits the level-"
                                         f"{self.geom.levels[i].number} block at {b0:#x}")
            self._clear(addr, size >> self._ps, "drop_range")
        finally:
            self.listeners = listeners
