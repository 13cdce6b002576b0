"""The hardware walk over a PageTable: what the MMU reads for each address.

Counterpart: the arm64 translation table walk (Arm ARM D8, "VMSAv8-64 translation
table walk") over the tables kernel_model/pgtable.py keeps. Linux has no such code: the
MMU walks the tables the kernel writes. The kernel's own reads of its table (ptep_get(),
pmd_leaf(), pte_range_none()) are PageTable methods.

A PageTable owns one TableWalker (`pt.walker`); it reads the table's private layout
(described in pgtable.py) and never changes it. Its two views:
- lookup(addrs) -> Lookup: the walk of every address, vectorised per level;
- walk_tables()/hw_tables(): the table as the flat arrays the compiled walk of
  tlb_cache.tlb_run reads on an L2 TLB miss (layout: tlb_cache.WalkTables, G_*).
Both are rebuilt only after a table or block changed (the PageTable's generation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arch.arm64 import contpte
from .geometry import DESC_SIZE
# the layout of walk_tables() that the compiled walk (tlb_cache.table_walk) reads
from .tlb_cache import G_CONT_PMD, G_CONT_PTE, G_L, G_LEVEL_FIELDS, G_LEVELS, G_PS, HwTables, WalkTables

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


class TableWalker:
    """The MMU's view of one PageTable `pt`: lookup(), walk_tables(), hw_tables()."""

    def __init__(self, pt):
        self.pt = pt
        self._index = (-1, None)   # (pt generation, _walk_index() levels)
        self._tables = (None, None)  # ((generation, leaf pool id), walk_tables())

    def walk_tables(self) -> WalkTables:
        """The table as the WalkTables arrays that tlb_cache.table_walk() reads: the rows of
        _walk_index() concatenated over the levels, and the leaf pool itself (shared, not
        copied: a later set_ptes into an existing leaf table is seen). Rebuilt only after a
        table or block changed."""
        pt = self.pt
        key = (pt._gen, id(pt._pfn))
        if self._tables[0] == key:
            return self._tables[1]
        levels = self._walk_index()
        L = pt._L
        geo = np.zeros(G_LEVELS + G_LEVEL_FIELDS * L, np.int64)
        geo[G_L], geo[G_PS] = L, pt._ps
        geo[G_CONT_PTE] = contpte.ilog2(pt.geom.cont_pte)
        geo[G_CONT_PMD] = contpte.ilog2(pt.geom.cont_pmd)
        nxt, phys, bpfn, bcont = [], [], [], []
        n_nxt = n_phys = n_blk = 0
        leaf_slot = np.zeros(0, np.int64)
        for i, (vals, slots, nx, barr) in enumerate(levels):
            geo[G_LEVELS + G_LEVEL_FIELDS * i: G_LEVELS + G_LEVEL_FIELDS * (i + 1)] = (
                pt._shift[i], pt._entries[i] - 1, n_nxt, n_phys, n_blk)
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
        out = WalkTables(geo=geo, nxt=cat(nxt, np.int32), phys=cat(phys, np.int64), bpfn=cat(bpfn, np.int64),
                         bcont=cat(bcont, np.bool_), leaf_slot=leaf_slot, leaf_pfn=pt._pfn, leaf_cont=pt._cont)
        self._tables = (key, out)
        return out

    def hw_tables(self) -> HwTables:
        """The HwTables for tlb_cache.tlb_run's translate(): this table alone."""
        t = self.walk_tables()
        return HwTables(primary=t, secondary=t, fallback=_NO_PAGES,
                        params=np.array([0, self.pt._ps, self.pt._ps, self.pt._L], np.int64))

    def lookup(self, addrs) -> Lookup:
        """Walk every address as the MMU would, vectorised per level (see _walk)."""
        pt = self.pt
        a = np.asarray(addrs, dtype=np.int64).ravel()
        if a.size and (a.min() < 0 or a.max() >= (1 << pt.geom.va_bits)):
            raise ValueError(f"lookup: addresses must lie in [0, 2**{pt.geom.va_bits})")
        present, pfn, prot, leaf_shift, desc = self._walk_one(int(a[0])) if a.size == 1 else self._walk(a)
        return Lookup(present=present, pfn=pfn, prot=prot, base_shift=np.full(a.size, pt._ps, np.int8),
                      leaf_shift=leaf_shift, desc_addr=np.ascontiguousarray(desc.T))

    def _walk_index(self):
        """The radix tree as arrays, for the walk: per level i, the tables' phys by row and
        nxt[i][row, entry] = the child's row at level i+1 (>= 0), -1 for none, or -2 - b
        for block b of the level (pfn, prot, cont arrays); leaf rows carry their pool slot.
        Rebuilt from the dicts only after a table or block changed: O(tables), never
        O(PTEs); its memory is 4 bytes per upper-table entry."""
        pt = self.pt
        gen, idx = self._index
        if gen == pt._gen:
            return idx
        keys = [np.array(sorted(pt._tables_at(i)), np.int64) for i in range(pt._L)]
        levels = []
        for i in range(pt._L):
            tabs = pt._tables_at(i)
            vals = np.array([tabs[k] for k in keys[i].tolist()], np.int64)
            if i == pt._L - 1:
                levels.append((pt._leaf_phys[vals] if vals.size else vals, vals, None, None))
                continue
            bits = pt._span[i] - pt._shift[i]
            mask = pt._entries[i] - 1
            nxt = np.full((keys[i].size, pt._entries[i]), -1, np.int32)
            ck = keys[i + 1]
            if ck.size:
                nxt[np.searchsorted(keys[i], ck >> bits), ck & mask] = np.arange(ck.size, dtype=np.int32)
            blk = pt._blocks[i]
            bk = np.array(sorted(blk), np.int64)
            binfo = [blk[k] for k in bk.tolist()]
            if bk.size:
                nxt[np.searchsorted(keys[i], bk >> bits), bk & mask] = -2 - np.arange(bk.size, dtype=np.int32)
            barr = (np.array([b.pfn for b in binfo], np.int64), np.array([b.prot for b in binfo], np.int8),
                    np.array([b.cont for b in binfo], np.bool_))
            levels.append((vals, None, nxt, barr))
        self._index = (pt._gen, levels)
        return levels

    def _walk_one(self, addr: int):
        """_walk() of a single address straight from the dicts (the fault path's look-up):
        the same result without building the walk index or any array gathers."""
        pt = self.pt
        L, ps = pt._L, pt._ps
        desc = np.full((L, 1), -1, np.int64)
        pfn, prot, shift = -1, 0, ps
        phys = pt._upper[0][0]
        for i in range(L):
            g = addr >> pt._shift[i]
            desc[i, 0] = phys + (g & (pt._entries[i] - 1)) * DESC_SIZE
            if i == L - 1:
                slot = pt._leaf[addr >> pt._span[i]]
                e = g & (pt._E - 1)
                pfn, prot = int(pt._pfn[slot, e]), int(pt._prot[slot, e])
                if pt._cont[slot, e]:
                    shift = ps + contpte.ilog2(pt.geom.cont_pte)
                break
            blk = pt._blocks[i].get(g)
            if blk is not None:
                pfn, prot, shift = pt._block_entry(i, blk, addr)
                break
            if i + 1 == L - 1:
                slot = pt._leaf.get(g)
                if slot is None:
                    break
                phys = int(pt._leaf_phys[slot])
            else:
                phys = pt._upper[i + 1].get(g)
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
        pt = self.pt
        n, L, ps = a.size, pt._L, pt._ps
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
            e = (la >> pt._shift[i]) & (pt._entries[i] - 1)
            desc[i, at] = phys[row] + e * DESC_SIZE
            if i == L - 1:
                sl = slots[row]
                pfn[at] = pt._pfn[sl, e]
                prot[at] = pt._prot[sl, e]
                cont = pt._cont[sl, e]
                if cont.any():
                    leaf_shift[at] = np.where(cont, ps + contpte.ilog2(pt.geom.cont_pte), ps)
                break
            v = nxt[row, e]
            if barr[0].size:
                isblk = v <= -2
                if isblk.any():
                    b = -2 - v[isblk]
                    bat = np.flatnonzero(isblk) if live is None else live[isblk]
                    bpfn, bprot, bcont = barr
                    pfn[bat] = bpfn[b] + ((la[isblk] & ((1 << pt._shift[i]) - 1)) >> ps)
                    prot[bat] = bprot[b]
                    cshift = pt._shift[i] + contpte.ilog2(pt.geom.cont_pmd)
                    leaf_shift[bat] = np.where(bcont[b], cshift, pt._shift[i])
            ok = v >= 0
            if ok.all():
                row = v.astype(np.int64)
                continue
            live = np.flatnonzero(ok) if live is None else live[ok]
            la, row = la[ok], v[ok].astype(np.int64)
        present = pfn >= 0
        leaf_shift[~present] = ps
        return present, pfn, prot, leaf_shift, desc
