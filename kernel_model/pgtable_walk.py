"""The hardware walk over a PageTable: what the MMU reads for each address.

Counterpart: the arm64 translation table walk (Arm ARM D8, "VMSAv8-64 translation
table walk"), over the tables kernel_model/pgtable.py keeps; and the fault path's
single-entry reads (ptep_get(), pmd_leaf(), pte_range_none() in include/linux/pgtable.h
and mm/memory.c). A mixin of PageTable: it reads the table's private layout (described
in pgtable.py) and never changes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arch.arm64 import contpte
from .geometry import DESC_SIZE
# the layout of walk_tables() that the compiled walk (tlb_cache.table_walk) reads
from .tlb_cache import G_CONT_PMD, G_CONT_PTE, G_L, G_LEVEL_FIELDS, G_LEVELS, G_PS

_NO_PAGES = np.zeros(0, np.int64)


@dataclass
class Lookup:
    """What a hardware walk returns for each address (arrays of equal length n).

    pfn is the KERNEL frame of the accessed page (-1 if not present); base_shift is the
    page shift of the geometry walked; leaf_shift the size of the translation as a shift
    (page, contiguous run when folded, or block); desc_addr[i, j] the physical address of
    the j-th descriptor read (top level first), -1 where the walk did not read one.  A
    walk that meets an invalid descriptor records that read and stops.
    """

    present: np.ndarray
    pfn: np.ndarray
    prot: np.ndarray
    base_shift: np.ndarray
    leaf_shift: np.ndarray
    desc_addr: np.ndarray



class PageTableWalk:
    """lookup(), walk_tables(), pte_get(), range_none(), pmd_blocks_in(): PageTable's read side."""

    def walk_tables(self) -> tuple:
        """The table as the tuple (geo, nxt, phys, bpfn, bcont, leaf_slot, leaf_pfn, leaf_cont)
        that tlb_cache.table_walk() reads: the rows of _walk_index() concatenated over the
        levels, and the leaf pool itself (shared, not copied: a later set_ptes into an existing
        leaf table is seen). Rebuilt only after a table or block changed."""
        key = (self._gen, id(self._pfn))
        cached = getattr(self, "_walk_tables_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        levels = self._walk_index()
        L = self._L
        geo = np.zeros(G_LEVELS + G_LEVEL_FIELDS * L, np.int64)
        geo[G_L], geo[G_PS] = L, self._ps
        geo[G_CONT_PTE] = contpte.ilog2(self.geom.cont_pte)
        geo[G_CONT_PMD] = contpte.ilog2(self.geom.cont_pmd)
        nxt, phys, bpfn, bcont = [], [], [], []
        n_nxt = n_phys = n_blk = 0
        leaf_slot = np.zeros(0, np.int64)
        for i, (vals, slots, nx, barr) in enumerate(levels):
            geo[G_LEVELS + G_LEVEL_FIELDS * i: G_LEVELS + G_LEVEL_FIELDS * (i + 1)] = (
                self._shift[i], self._entries[i] - 1, n_nxt, n_phys, n_blk)
            phys.append(vals)
            n_phys += vals.size
            if nx is None:
                leaf_slot = np.ascontiguousarray(slots, np.int64)
                continue
            nxt.append(nx.ravel())
            n_nxt += nx.size
            bpfn.append(barr[0])
            bcont.append(barr[2])
            n_blk += barr[0].size
        cat = lambda parts, dt: np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros(0), dt)
        out = (geo, cat(nxt, np.int32), cat(phys, np.int64), cat(bpfn, np.int64), cat(bcont, np.bool_),
               leaf_slot, self._pfn, self._cont)
        self._walk_tables_cache = (key, out)
        return out

    def hw_tables(self) -> tuple:
        """(primary, secondary, fallback, params) for tlb_cache.tlb_run's translate(): this table alone."""
        t = self.walk_tables()
        return t, t, _NO_PAGES, np.array([0, self._ps, self._ps, self._L], np.int64)

    def lookup(self, addrs) -> Lookup:
        """Walk every address as the MMU would, vectorised per level (see _walk)."""
        a = np.asarray(addrs, dtype=np.int64).ravel()
        if a.size and (a.min() < 0 or a.max() >= (1 << self.geom.va_bits)):
            raise ValueError(f"lookup: addresses must lie in [0, 2**{self.geom.va_bits})")
        present, pfn, prot, leaf_shift, desc = self._walk_one(int(a[0])) if a.size == 1 else self._walk(a)
        return Lookup(present=present, pfn=pfn, prot=prot, base_shift=np.full(a.size, self._ps, np.int8),
                      leaf_shift=leaf_shift, desc_addr=np.ascontiguousarray(desc.T))

    def _walk_index(self):
        """The radix tree as arrays, for the walk: per level i, the tables' phys by row and
        nxt[i][row, entry] = the child's row at level i+1 (>= 0), -1 for none, or -2 - b
        for block b of the level (pfn, prot, cont arrays); leaf rows carry their pool slot.
        Rebuilt from the dicts only after a table or block changed: O(tables), never
        O(PTEs); its memory is 4 bytes per upper-table entry."""
        gen, idx = self._index_cache
        if gen == self._gen:
            return idx
        keys = [np.array(sorted(self._tables_at(i)), np.int64) for i in range(self._L)]
        levels = []
        for i in range(self._L):
            tabs = self._tables_at(i)
            vals = np.array([tabs[k] for k in keys[i].tolist()], np.int64)
            slots = None
            if i == self._L - 1:
                slots, vals = vals, (self._leaf_phys[vals] if vals.size else vals)
            if i == self._L - 1:
                levels.append((vals, slots, None, None))
                continue
            bits = self._span[i] - self._shift[i]
            mask = self._entries[i] - 1
            nxt = np.full((keys[i].size, self._entries[i]), -1, np.int32)
            ck = keys[i + 1]
            if ck.size:
                nxt[np.searchsorted(keys[i], ck >> bits), ck & mask] = np.arange(ck.size, dtype=np.int32)
            blk = self._blocks[i]
            bk = np.array(sorted(blk), np.int64)
            binfo = [blk[k] for k in bk.tolist()]
            if bk.size:
                nxt[np.searchsorted(keys[i], bk >> bits), bk & mask] = -2 - np.arange(bk.size, dtype=np.int32)
            barr = (np.array([b[0] for b in binfo], np.int64), np.array([b[1] for b in binfo], np.int8),
                    np.array([b[4] for b in binfo], np.bool_))
            levels.append((vals, slots, nxt, barr))
        self._index_cache = (self._gen, levels)
        return levels

    def pte_get(self, addr: int) -> tuple[int, int, int]:
        """(pfn, prot, leaf_shift) of the mapping of one address, pfn -1 when none: the
        fault path's ptep_get()/pmd_leaf() check, with no arrays built."""
        L, ps = self._L, self._ps
        for i in range(L - 1):
            g = addr >> self._shift[i]
            blk = self._blocks[i].get(g)
            if blk is not None:
                return (blk[0] + ((addr & ((1 << self._shift[i]) - 1)) >> ps), blk[1],
                        self._shift[i] + (contpte.ilog2(self.geom.cont_pmd) if blk[4] else 0))
        slot = self._leaf.get(addr >> self._span[L - 1])
        if slot is None:
            return -1, 0, ps
        e = (addr >> ps) & (self._E - 1)
        pfn = int(self._pfn[slot, e])
        if pfn < 0:
            return -1, 0, ps
        shift = ps + contpte.ilog2(self.geom.cont_pte) if self._cont[slot, e] else ps
        return pfn, int(self._prot[slot, e]), shift

    def pmd_blocks_in(self, addr: int, end: int) -> list[int]:
        """Addresses of the PMD block mappings that overlap [addr, end), ascending."""
        i = self._level_index(2)
        return [g << self._shift[i] for g in sorted(self._blocks_in(i, addr, end))]

    def range_none(self, addr: int, nr: int) -> bool:
        """pte_range_none(): no PTE or block maps any of the nr pages from addr."""
        end = addr + (nr << self._ps)
        for i in range(self._L - 1):
            if self._blocks[i] and self._blocks_in(i, addr, end):
                return False
        for t, e0, e1, _ in self._chunks(addr, nr):
            slot = self._leaf.get(t)
            if slot is not None and (self._pfn[slot, e0:e1] >= 0).any():
                return False
        return True

    def _walk_one(self, addr: int):
        """_walk() of a single address straight from the dicts (the fault path's look-up):
        the same result without building the walk index or any array gathers."""
        L, ps = self._L, self._ps
        desc = np.full((L, 1), -1, np.int64)
        pfn, prot, shift = -1, 0, ps
        phys = self._upper[0][0]
        for i in range(L):
            g = addr >> self._shift[i]
            desc[i, 0] = phys + (g & (self._entries[i] - 1)) * DESC_SIZE
            if i == L - 1:
                slot = self._leaf[addr >> self._span[i]]
                e = g & (self._E - 1)
                pfn, prot = int(self._pfn[slot, e]), int(self._prot[slot, e])
                if self._cont[slot, e]:
                    shift = ps + contpte.ilog2(self.geom.cont_pte)
                break
            blk = self._blocks[i].get(g)
            if blk is not None:
                pfn = blk[0] + ((addr & ((1 << self._shift[i]) - 1)) >> ps)
                prot = blk[1]
                shift = self._shift[i] + (contpte.ilog2(self.geom.cont_pmd) if blk[4] else 0)
                break
            if i + 1 == L - 1:
                slot = self._leaf.get(g)
                if slot is None:
                    break
                phys = int(self._leaf_phys[slot])
            else:
                phys = self._upper[i + 1].get(g)
                if phys is None:
                    break
        if pfn < 0:
            shift = ps
        return (np.array([pfn >= 0]), np.array([pfn], np.int64), np.array([prot], np.int8),
                np.array([shift], np.int8), desc)

    def _walk(self, a: np.ndarray):
        """The walk of addresses a (any order): per level one gather of the next row from
        the nxt arrays of _walk_index() (as the MMU indexes each table), no sorting and no
        per-address Python. desc is returned level-major (L, n)."""
        n, L, ps = a.size, self._L, self._ps
        levels = self._walk_index()
        desc = np.full((L, n), -1, np.int64)
        pfn = np.full(n, -1, np.int64)
        prot = np.zeros(n, np.int8)
        leaf_shift = np.full(n, ps, np.int8)
        live = None  # None: every address is still walking (no index arrays needed)
        la = a
        row = np.zeros(n, np.int64)
        for i in range(L):
            if la.size == 0:
                break
            at = slice(None) if live is None else live
            phys, slots, nxt, barr = levels[i]
            e = (la >> self._shift[i]) & (self._entries[i] - 1)
            desc[i, at] = phys[row] + e * DESC_SIZE
            if i == L - 1:
                sl = slots[row]
                pfn[at] = self._pfn[sl, e]
                prot[at] = self._prot[sl, e]
                cont = self._cont[sl, e]
                if cont.any():
                    leaf_shift[at] = np.where(cont, ps + contpte.ilog2(self.geom.cont_pte), ps)
                break
            v = nxt[row, e]
            if barr[0].size:
                isblk = v <= -2
                if isblk.any():
                    b = -2 - v[isblk]
                    bat = np.flatnonzero(isblk) if live is None else live[isblk]
                    bpfn, bprot, bcont = barr
                    pfn[bat] = bpfn[b] + ((la[isblk] & ((1 << self._shift[i]) - 1)) >> ps)
                    prot[bat] = bprot[b]
                    cshift = self._shift[i] + contpte.ilog2(self.geom.cont_pmd)
                    leaf_shift[bat] = np.where(bcont[b], cshift, self._shift[i])
            ok = v >= 0
            if ok.all():
                row = v.astype(np.int64)
                continue
            live = np.flatnonzero(ok) if live is None else live[ok]
            la, row = la[ok], v[ok].astype(np.int64)
        present = pfn >= 0
        leaf_shift[~present] = ps
        return present, pfn, prot, leaf_shift, desc
