"""The page table of one address space in one granule geometry, numpy-backed.

Counterparts: include/linux/pgtable.h (set_ptes, ptep_get_and_clear, the
modify_prot_start/commit_ptes pair, pmd_leaf/pud_leaf), mm/pgtable-generic.c,
mm/memory.c (__pte_alloc/__pmd_alloc/__pud_alloc allocate a table on demand),
mm/mmap.c:free_pgtables() and arch/arm64/include/asm/pgtable-hwdef.h (descriptor
layout).

Layout (a radix tree, as the hardware walks it):
- upper tables (every level but the leaf) are dict entries: table index -> physical
  base address. The table index at a level is `addr >> span_shift` where span_shift is
  the log2 of the VA range one table of that level covers; the top level has exactly one
  table (index 0), allocated with the table, as pgd_alloc() does at mm creation.
- leaf (PTE) tables are rows of a pool of numpy arrays: pfn (int64, -1 = none), prot
  (int8), cont (bool, the PTE_CONT bit) and folio (int64: the head pfn of the folio the
  page belongs to, -1 = none). A dict maps the leaf table index to its pool row.
- block (section) mappings at upper levels (pmd_leaf()/pud_leaf()) are dict entries
  keyed by the global entry index `addr >> level.shift`; a table is never allocated
  under a block.
Memory is proportional to the tables in use, never to the VA space.

What the MMU reads (lookup() -> Lookup, and hw_tables(): the arrays of the compiled walk)
is the TableWalker of hw_walk.py that each PageTable owns (`walker`); the operations on
arrays of entries (the batched fault path's gather_blocks, install_tables, store_ptes;
read_ptes, cont_bits, set_pte_array, drop_range) are in pgtable_bulk.py.

Units: addresses in bytes; pfn, folio_pfn and nr in this table's page units (kernel
pages for the Linux table; process pages for the native table).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arch.arm64 import contpte
from .geometry import Geometry
from .hw_walk import Lookup, TableWalker
from .pgtable_bulk import PageTableBulk
from .tlb_cache import HwTables

_PROT_MAX = 0x7  # PROT_READ | PROT_WRITE | PROT_EXEC (include/uapi/asm-generic/mman-common.h)
_BUMP_BASE = 1 << 40  # physical base of the private table allocator (table_alloc=None)
_NO_ROWS = np.zeros(0, np.int64)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(slots=True)
class Block:
    """A block (section) mapping at an upper level (pmd_leaf()/pud_leaf()): the naturally
    aligned run from `pfn` with `prot`, inside the folio [folio_pfn, +folio_nr) (this
    table's page units); `cont`: its contiguous bit (a PMD block in a folded CONT_PMDS run)."""

    pfn: int
    prot: int
    folio_pfn: int
    folio_nr: int
    cont: bool = False


class PageTable(PageTableBulk):
    """One page-table hierarchy in `geom`. See the module docstring for the layout.

    table_alloc(nbytes) -> physical address of a new table; table_free(phys, nbytes).
    Without table_alloc a private bump allocator hands out addresses (tables aligned to
    their size). `listeners` are called after every mapping change as
    fn(op, addr, nr, pfn=..., prot=..., folio_pfn=..., folio_nr=...) with op one of
    set_ptes, clear_ptes, modify_prot, set_pmd, clear_pmd, set_pud, clear_pud, and nr in
    this table's pages.
    """

    def __init__(self, geom: Geometry, *, table_alloc=None, table_free=None, contpte=False):
        if not isinstance(geom, Geometry):
            raise TypeError(f"geom: expected a kernel_model.geometry.Geometry, got {type(geom).__name__}")
        if (table_alloc is None) != (table_free is None):
            raise ValueError("table_alloc and table_free: pass both (a System's allocator) or neither")
        self.geom = geom
        self.contpte = bool(contpte)
        self.listeners: list = []
        self._alloc_fn, self._free_fn = table_alloc, table_free
        self._bump = _BUMP_BASE
        lv = geom.levels
        self._L = len(lv)
        self._shift = [l.shift for l in lv]
        self._entries = [l.entries for l in lv]
        # VA bits one table of level i covers (the top table covers the whole VA space).
        self._span = [l.shift + (l.entries.bit_length() - 1) for l in lv]
        self._E = self._entries[-1]
        self._ps = geom.page_shift
        # upper tables: level index i (0..L-2) -> {table index: phys}
        self._upper: list[dict[int, int]] = [dict() for _ in range(self._L - 1)]
        # block mappings: level index -> {global entry index: Block}
        self._blocks: list[dict[int, Block]] = [dict() for _ in range(self._L - 1)]
        # leaf pool
        self._leaf: dict[int, int] = {}
        cap = 1  # grows by doubling: a 64K-geometry row is 8192 entries (~144 KiB of arrays)
        self._pfn = np.full((cap, self._E), -1, np.int64)
        self._prot = np.zeros((cap, self._E), np.int8)
        self._cont = np.zeros((cap, self._E), np.bool_)
        self._folio = np.full((cap, self._E), -1, np.int64)
        self._nr_present = np.zeros(cap, np.int64)
        self._leaf_phys = np.full(cap, -1, np.int64)
        self._free_slots: list[int] = list(range(cap - 1, -1, -1))
        self.stats = {"contpte_folds": 0, "contpte_unfolds": 0}
        self._gen = 0  # bumped by every table or block change: invalidates the walker's arrays
        self.walker = TableWalker(self)
        self._upper[0][0] = self._table_alloc(0)

    # ---- table memory -------------------------------------------------------------

    def _table_bytes(self, i: int) -> int:
        return self.geom.levels[i].table_bytes

    def _table_alloc(self, i: int) -> int:
        self._gen += 1
        nbytes = self._table_bytes(i)
        if self._alloc_fn is not None:
            phys = self._alloc_fn(nbytes)
            if phys is None or int(phys) < 0:
                raise MemoryError(f"table_alloc({nbytes}) failed: no memory for a level-"
                                  f"{self.geom.levels[i].number} page table")
            return int(phys)
        return self.private_alloc(nbytes)

    def private_alloc(self, nbytes: int) -> int:
        """The bump allocator used without table_alloc (tables aligned to their size);
        a second table of the same mm (the native one) shares it so addresses never collide."""
        phys = _ceil_div(self._bump, nbytes) * nbytes
        self._bump = phys + nbytes
        return phys

    def _table_release(self, i: int, phys: int) -> None:
        self._gen += 1
        if self._free_fn is not None:
            self._free_fn(phys, self._table_bytes(i))

    @property
    def bytes(self) -> int:
        """pgtable_bytes: the top table (possibly partial) plus a page per other table."""
        return sum(len(self._tables_at(i)) * self._table_bytes(i) for i in range(self._L))

    def _tables_at(self, i: int):
        return self._leaf if i == self._L - 1 else self._upper[i]

    def nr_tables(self, level_number: int) -> int:
        return len(self._tables_at(self._level_index(level_number)))

    def nr_blocks(self, level_number: int) -> int:
        i = self._level_index(level_number)
        return len(self._blocks[i]) if i < self._L - 1 else 0

    @property
    def nr_ptes(self) -> int:
        """Present leaf (PTE-level) entries."""
        return int(self._nr_present.sum())

    def _level_index(self, level_number: int) -> int:
        for i, lvl in enumerate(self.geom.levels):
            if lvl.number == level_number:
                return i
        raise ValueError(f"level {level_number}: this {self.geom.describe()} geometry has levels "
                         f"{[l.number for l in self.geom.levels]}")

    # ---- leaf pool ------------------------------------------------------------------

    def _grow(self, need: int = 1) -> None:
        """Enlarge the leaf pool to hold `need` more tables (at least doubling it)."""
        old = self._pfn.shape[0]
        new = max(old * 2, old + need - len(self._free_slots))
        def grow(a, fill):
            b = np.full((new,) + a.shape[1:], fill, a.dtype)
            b[:old] = a
            return b
        self._pfn = grow(self._pfn, -1)
        self._prot = grow(self._prot, 0)
        self._cont = grow(self._cont, False)
        self._folio = grow(self._folio, -1)
        self._nr_present = grow(self._nr_present, 0)
        self._leaf_phys = grow(self._leaf_phys, -1)
        self._free_slots = list(range(new - 1, old - 1, -1)) + self._free_slots

    def _reserve(self, n: int) -> None:
        if len(self._free_slots) < n:
            self._grow(n)

    def _leaf_get(self, t: int, create: bool) -> int:
        slot = self._leaf.get(t)
        if slot is not None or not create:
            return -1 if slot is None else slot
        addr = t << self._span[-1]
        self._ensure_upper(addr)
        if not self._free_slots:
            self._grow()
        slot = self._free_slots.pop()
        self._leaf_phys[slot] = self._table_alloc(self._L - 1)
        self._leaf[t] = slot
        return slot

    def _ensure_upper(self, addr: int) -> None:
        """__pud_alloc()/__pmd_alloc(): allocate the tables above the leaf for addr."""
        for i in range(1, self._L - 1):
            t = addr >> self._span[i]
            if t not in self._upper[i]:
                self._check_no_block(i - 1, addr)
                self._upper[i][t] = self._table_alloc(i)
        self._check_no_block(self._L - 2, addr)

    def _check_no_block(self, i: int, addr: int) -> None:
        if i >= 0 and (addr >> self._shift[i]) in self._blocks[i]:
            raise ValueError(f"address {addr:#x} lies under a level-{self.geom.levels[i].number} block "
                             f"mapping; clear or split it (split_pmd) before mapping PTEs there")

    # ---- validation -----------------------------------------------------------------

    def _check_range(self, addr: int, nr: int, what: str) -> None:
        if isinstance(addr, bool) or not isinstance(addr, (int, np.integer)) or addr < 0:
            raise ValueError(f"{what}: addr must be a non-negative int, got {addr!r}")
        if addr & (self.geom.page_size - 1):
            raise ValueError(f"{what}: addr {addr:#x} is not aligned to the {self.geom.page_size}-byte page")
        if isinstance(nr, bool) or not isinstance(nr, (int, np.integer)) or nr <= 0:
            raise ValueError(f"{what}: nr must be a positive number of pages, got {nr!r}")
        if addr + (nr << self._ps) > (1 << self.geom.va_bits):
            raise ValueError(f"{what}: [{addr:#x}, +{nr} pages) runs past the {self.geom.va_bits}-bit VA space")

    @staticmethod
    def _check_prot(prot, what: str) -> int:
        if isinstance(prot, bool) or not isinstance(prot, (int, np.integer)) or not 0 <= prot <= _PROT_MAX:
            raise ValueError(f"{what}: prot must be PROT_* bits in 0..{_PROT_MAX}, got {prot!r}")
        return int(prot)

    def _chunks(self, addr: int, nr: int):
        """Split [addr, +nr pages) at leaf-table boundaries: (table, first entry, end entry, offset)."""
        first = addr >> self._ps
        end = first + nr
        E = self._E
        p = first
        while p < end:
            t = p // E
            e1 = min(end, (t + 1) * E)
            yield t, p - t * E, e1 - t * E, p - first
            p = e1

    def _blocks_in(self, i: int, addr: int, end: int) -> list[int]:
        """Keys of the level-i blocks overlapping [addr, end), ascending; O(min(range, blocks))."""
        blocks = self._blocks[i]
        if not blocks:
            return []
        g0, g1 = addr >> self._shift[i], (end - 1) >> self._shift[i]
        if g1 - g0 < len(blocks):
            return [g for g in range(g0, g1 + 1) if g in blocks]
        return sorted(g for g in blocks if g0 <= g <= g1)

    def _check_no_blocks_in(self, addr: int, nr: int, what: str) -> None:
        if not any(self._blocks):
            return
        end = addr + (nr << self._ps)
        for i in range(self._L - 1):
            for g in self._blocks_in(i, addr, end)[:1]:
                raise ValueError(f"{what}: [{addr:#x}, {end:#x}) overlaps the level-"
                                 f"{self.geom.levels[i].number} block at {g << self._shift[i]:#x}; "
                                 f"clear it or split_pmd() first")

    # ---- PTE operations ----------------------------------------------------------------

    def _split(self, addr: int, nr: int, create: bool):
        """[addr, +nr pages) as (partial, rows, offs): chunks of partially covered leaf
        tables (table, slot, e0, e1, offset) and, for the wholly covered tables in address
        order, their pool rows and the offsets of their first page in the range. slot is
        -1 where no table exists and create is False; absent whole tables are left out."""
        first = addr >> self._ps
        E = self._E
        t0, t1 = first // E, (first + nr - 1) // E
        if t0 == t1 and nr < E:  # the common case: part of one table
            slot = self._leaf.get(t0, -1)
            if slot < 0 and create:
                self._reserve(1)
                slot = self._leaf_get(t0, True)
            return [(t0, slot, first - t0 * E, first - t0 * E + nr, 0)], _NO_ROWS, _NO_ROWS
        if create:
            missing = sum(1 for t in range(t0, t1 + 1) if t not in self._leaf)
            self._reserve(missing)
        partial, rows, offs = [], [], []
        tabs = range(t0, t1 + 1)
        if not create and t1 - t0 + 1 > len(self._leaf):
            tabs = sorted(t for t in self._leaf if t0 <= t <= t1)  # zap skips pmd_none() entries
        for t in tabs:
            p0, p1 = max(first, t * E), min(first + nr, (t + 1) * E)
            slot = self._leaf_get(t, create)
            if p1 - p0 == E:
                if slot >= 0:
                    rows.append(slot)
                    offs.append(p0 - first)
            else:
                partial.append((t, slot, p0 - t * E, p1 - t * E, p0 - first))
        return partial, np.array(rows, np.int64), np.array(offs, np.int64)

    def set_ptes(self, addr, pfn, nr, prot, *, folio_pfn=None, folio_nr=None) -> None:
        """Map nr pages from addr to pfn, pfn+1, ... (include/linux/pgtable.h: set_ptes()).

        Linux's contract: the PTEs lie in one PMD and the pages in one folio. Here the
        range may span leaf tables (one vectorised store for all wholly covered tables,
        one per partially covered table); callers still pass one folio at a time:
        [folio_pfn, +folio_nr) must contain [pfn, +nr) (default: the range itself).
        """
        self._check_range(addr, nr, "set_ptes")
        prot = self._check_prot(prot, "set_ptes")
        if isinstance(pfn, bool) or not isinstance(pfn, (int, np.integer)) or pfn < 0:
            raise ValueError(f"set_ptes: pfn must be a non-negative int, got {pfn!r}")
        pfn, nr = int(pfn), int(nr)
        folio_pfn = pfn if folio_pfn is None else int(folio_pfn)
        folio_nr = nr if folio_nr is None else int(folio_nr)
        if folio_nr <= 0 or not folio_pfn <= pfn or pfn + nr > folio_pfn + folio_nr:
            raise ValueError(f"set_ptes: pages [{pfn}, +{nr}) are not inside the folio "
                             f"[{folio_pfn}, +{folio_nr}); set_ptes maps one folio at a time")
        self._check_no_blocks_in(addr, nr, "set_ptes")
        partial, rows, offs = self._split(addr, nr, create=True)
        for _, slot, e0, e1, o in partial:
            row = self._pfn[slot]
            self._nr_present[slot] += (e1 - e0) - int(np.count_nonzero(row[e0:e1] >= 0))
            row[e0:e1] = np.arange(pfn + o, pfn + o + (e1 - e0), dtype=np.int64)
            self._prot[slot, e0:e1] = prot
            self._folio[slot, e0:e1] = folio_pfn
            if self.contpte:
                folds, unfolds = contpte.contpte_set_update(
                    row, self._prot[slot], self._folio[slot], self._cont[slot], e0, e1,
                    self.geom.cont_pte, (pfn - (addr >> self._ps)) % self.geom.cont_pte == 0)
                self.stats["contpte_folds"] += folds
                self.stats["contpte_unfolds"] += unfolds
        if rows.size:
            k, E, off = rows.size, self._E, int(offs[0])  # created: consecutive tables
            self._pfn[rows] = np.arange(pfn + off, pfn + off + k * E, dtype=np.int64).reshape(k, E)
            self._prot[rows] = prot
            self._folio[rows] = folio_pfn
            self._nr_present[rows] = E
            if self.contpte:
                # whole runs of one folio with one prot: foldable iff the PA is congruent
                # to the VA modulo the run (contpte_set_ptes(): addr and PA run-aligned)
                c = self.geom.cont_pte
                ok = (pfn - (addr >> self._ps)) % c == 0
                was = self._cont[rows][:, ::c]
                self.stats["contpte_folds"] += int(np.count_nonzero(~was)) if ok else 0
                self._cont[rows] = ok
        self._notify("set_ptes", addr, nr, pfn=pfn, prot=prot, folio_pfn=folio_pfn, folio_nr=folio_nr)

    def clear_ptes(self, addr, nr) -> np.ndarray:
        """Clear nr PTEs from addr (get_and_clear_full_ptes()); returns the old pfns, -1 = none.
        The result has nr entries: for a large sparse range use zap_ptes()."""
        nr = int(nr) if isinstance(nr, (int, np.integer)) and not isinstance(nr, bool) else nr
        out = None
        for o, old in self._clear(addr, nr, "clear_ptes"):
            if out is None:
                out = np.full(nr, -1, np.int64)
            out[o:o + old.size] = old
        return np.full(nr, -1, np.int64) if out is None else out

    def zap_ptes(self, addr, nr) -> tuple[np.ndarray, np.ndarray]:
        """clear_ptes() returning only what was mapped: (page offsets from addr, pfns), in
        address order; memory proportional to the mapped PTEs, not to nr (zap_pte_range()
        skips pmd_none() ranges)."""
        offs, pfns = [], []
        for o, old in self._clear(addr, nr, "zap_ptes"):
            hit = np.flatnonzero(old >= 0)
            offs.append(hit + o)
            pfns.append(old[hit])
        if not offs:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(offs), np.concatenate(pfns)

    def _clear(self, addr, nr, what: str) -> list[tuple[int, np.ndarray]]:
        """Clear the range; returns (page offset, old pfns) per existing table piece in
        address order."""
        self._check_range(addr, nr, what)
        self._check_no_blocks_in(addr, nr, what)
        nr = int(nr)
        pieces = []
        partial, rows, offs = self._split(addr, nr, create=False)
        for _, slot, e0, e1, o in partial:
            if slot < 0:
                continue
            row = self._pfn[slot]
            old = row[e0:e1].copy()
            pieces.append((o, old))
            self._nr_present[slot] -= int(np.count_nonzero(old >= 0))
            row[e0:e1] = -1
            self._prot[slot, e0:e1] = 0
            self._folio[slot, e0:e1] = -1
            self._contpte_update(slot, e0, e1)
        if rows.size:
            old = self._pfn[rows]
            pieces.extend(zip(offs.tolist(), old))
            self._pfn[rows] = -1
            self._prot[rows] = 0
            self._folio[rows] = -1
            self._cont[rows] = False
            self._nr_present[rows] = 0
        pieces.sort(key=lambda p: p[0])
        self._notify("clear_ptes", addr, nr)
        return pieces

    def modify_prot(self, addr, nr, prot) -> None:
        """Change the protection of the present PTEs in range (change_pte_range() through
        modify_prot_start_ptes()/modify_prot_commit_ptes()); none entries stay none."""
        self._check_range(addr, nr, "modify_prot")
        prot = self._check_prot(prot, "modify_prot")
        self._check_no_blocks_in(addr, nr, "modify_prot")
        partial, rows, _ = self._split(addr, int(nr), create=False)
        for _, slot, e0, e1, _o in partial:
            if slot < 0:
                continue
            seg = self._prot[slot, e0:e1]
            seg[self._pfn[slot, e0:e1] >= 0] = prot
            self._contpte_update(slot, e0, e1)
        if rows.size:
            pf = self._pfn[rows]
            self._prot[rows] = np.where(pf >= 0, prot, 0)
            if self.contpte:
                c = self.geom.cont_pte
                folds, unfolds = contpte.contpte_update(pf.ravel(), self._prot[rows].ravel(),
                                                        self._folio[rows].ravel(), cont := self._cont[rows].ravel(),
                                                        0, pf.size, c)
                self._cont[rows] = cont.reshape(rows.size, self._E)
                self.stats["contpte_folds"] += folds
                self.stats["contpte_unfolds"] += unfolds
        self._notify("modify_prot", addr, int(nr), prot=prot)

    def _contpte_update(self, slot: int, e0: int, e1: int) -> None:
        if not self.contpte:
            return
        folds, unfolds = contpte.contpte_update(self._pfn[slot], self._prot[slot], self._folio[slot],
                                                self._cont[slot], e0, e1, self.geom.cont_pte)
        self.stats["contpte_folds"] += folds
        self.stats["contpte_unfolds"] += unfolds

    # ---- block mappings ------------------------------------------------------------

    def _set_block(self, i: int, op: str, addr, pfn, prot, folio_pfn, folio_nr) -> None:
        size = 1 << self._shift[i]
        npages = size >> self._ps
        self._check_range(addr, npages, op)
        prot = self._check_prot(prot, op)
        if addr & (size - 1):
            raise ValueError(f"{op}: addr {addr:#x} is not aligned to the {size:#x}-byte block")
        if isinstance(pfn, bool) or not isinstance(pfn, (int, np.integer)) or pfn < 0 or pfn % npages:
            raise ValueError(f"{op}: pfn {pfn!r} must be a non-negative multiple of {npages} "
                             f"(a block maps a naturally aligned run)")
        pfn = int(pfn)
        folio_pfn = pfn if folio_pfn is None else int(folio_pfn)
        folio_nr = npages if folio_nr is None else int(folio_nr)
        if not folio_pfn <= pfn or pfn + npages > folio_pfn + folio_nr:
            raise ValueError(f"{op}: the block's pages [{pfn}, +{npages}) are not inside the folio "
                             f"[{folio_pfn}, +{folio_nr}); a block needs a folio covering it")
        for j in range(i):  # no block above
            self._check_no_block(j, addr)
        g = addr >> self._shift[i]
        child = self._tables_at(i + 1)
        if g in child:  # a table below: only an empty one may be replaced (pmd_install()/collapse)
            if i + 1 == self._L - 1 and self._nr_present[child[g]] == 0:
                self._free_leaf(g)
            else:
                raise ValueError(f"{op}: a page table with entries exists under {addr:#x}; "
                                 f"clear the range and free_empty_tables() first")
        for j in range(1, i + 1):
            t = addr >> self._span[j]
            if t not in self._upper[j]:
                self._upper[j][t] = self._table_alloc(j)
        self._gen += 1
        was = self._blocks[i].get(g)
        self._blocks[i][g] = Block(pfn, prot, folio_pfn, folio_nr)
        if self.contpte and i == self._L - 2:
            self._contpmd_update(g, touched_was_cont=was is not None and was.cont)
        self._notify(op, addr, npages, pfn=pfn, prot=prot, folio_pfn=folio_pfn, folio_nr=folio_nr)

    def _clear_block(self, i: int, op: str, addr) -> int:
        size = 1 << self._shift[i]
        if isinstance(addr, bool) or not isinstance(addr, (int, np.integer)) or addr < 0 or addr & (size - 1):
            raise ValueError(f"{op}: addr {addr!r} must be a {size:#x}-aligned address")
        g = addr >> self._shift[i]
        self._gen += 1
        old = self._blocks[i].pop(g, None)
        if old is None:
            return -1
        if self.contpte and i == self._L - 2:
            self._contpmd_update(g, touched_was_cont=old.cont)
        self._notify(op, addr, size >> self._ps)
        return old.pfn

    def _contpmd_update(self, g: int, touched_was_cont: bool) -> None:
        self._gen += 1
        folds, unfolds = contpte.contpmd_update(self._blocks[self._L - 2], g, self.geom.cont_pmd,
                                                self.geom.pmd_size >> self._ps, touched_was_cont)
        self.stats["contpte_folds"] += folds
        self.stats["contpte_unfolds"] += unfolds

    def set_pmd(self, addr, pfn, prot, *, folio_pfn=None, folio_nr=None) -> None:
        """A PMD block mapping (set_pmd_at(), pmd_leaf()); folio defaults to the block."""
        self._set_block(self._L - 2, "set_pmd", addr, pfn, prot, folio_pfn, folio_nr)

    def clear_pmd(self, addr) -> int:
        """pmdp_huge_get_and_clear(): returns the block's pfn or -1 if there was none."""
        return self._clear_block(self._L - 2, "clear_pmd", addr)

    def _pud_index(self, op: str) -> int:
        if self.geom.pud_size is None or self._L < 3:
            raise ValueError(f"{op}: no PUD block mappings with a {self.geom.page_size}-byte granule "
                             f"(arch/arm64/include/asm/pgtable.h: pud_sect_supported() is 4K only)")
        return self._L - 3

    def set_pud(self, addr, pfn, prot, *, folio_pfn=None, folio_nr=None) -> None:
        self._set_block(self._pud_index("set_pud"), "set_pud", addr, pfn, prot, folio_pfn, folio_nr)

    def clear_pud(self, addr) -> int:
        return self._clear_block(self._pud_index("clear_pud"), "clear_pud", addr)

    def split_pmd(self, addr) -> None:
        """Replace the PMD block at addr by a PTE table mapping the same pages
        (mm/huge_memory.c: __split_huge_pmd_locked()); listeners see no change."""
        i = self._L - 2
        size = 1 << self._shift[i]
        g = addr >> self._shift[i]
        blk = self._blocks[i].get(g) if not addr & (size - 1) else None
        if blk is None:
            raise ValueError(f"split_pmd: no PMD block mapping at {addr!r}")
        listeners, self.listeners = self.listeners, []
        try:
            self._gen += 1
            del self._blocks[i][g]
            if self.contpte:
                self._contpmd_update(g, touched_was_cont=blk.cont)
            self.set_ptes(addr, blk.pfn, size >> self._ps, blk.prot, folio_pfn=blk.folio_pfn, folio_nr=blk.folio_nr)
        finally:
            self.listeners = listeners

    # ---- reads ---------------------------------------------------------------------------

    def pte_get(self, addr: int) -> tuple[int, int, int]:
        """(pfn, prot, leaf_shift) of the mapping of one address, pfn -1 when none: the
        fault path's ptep_get()/pmd_leaf() check, with no arrays built."""
        for i in range(self._L - 1):
            blk = self._blocks[i].get(addr >> self._shift[i])
            if blk is not None:
                return self._block_entry(i, blk, addr)
        slot = self._leaf.get(addr >> self._span[-1])
        e = (addr >> self._ps) & (self._E - 1)
        if slot is None or self._pfn[slot, e] < 0:
            return -1, 0, self._ps
        shift = self._ps + contpte.ilog2(self.geom.cont_pte) if self._cont[slot, e] else self._ps
        return int(self._pfn[slot, e]), int(self._prot[slot, e]), shift

    def _block_entry(self, i: int, blk: Block, addr: int) -> tuple[int, int, int]:
        """(pfn, prot, leaf_shift) of addr inside the level-i block blk."""
        return (blk.pfn + ((addr & ((1 << self._shift[i]) - 1)) >> self._ps), blk.prot,
                self._shift[i] + (contpte.ilog2(self.geom.cont_pmd) if blk.cont else 0))

    def pmd_blocks_in(self, addr: int, end: int) -> list[int]:
        """Addresses of the PMD block mappings that overlap [addr, end), ascending."""
        i = self._level_index(2)
        return [g << self._shift[i] for g in sorted(self._blocks_in(i, addr, end))]

    def range_none(self, addr: int, nr: int) -> bool:
        """pte_range_none(): no PTE or block maps any of the nr pages from addr."""
        end = addr + (nr << self._ps)
        if any(self._blocks[i] and self._blocks_in(i, addr, end) for i in range(self._L - 1)):
            return False
        for t, e0, e1, _ in self._chunks(addr, nr):
            slot = self._leaf.get(t)
            if slot is not None and (self._pfn[slot, e0:e1] >= 0).any():
                return False
        return True

    def lookup(self, addrs) -> Lookup:
        """What the MMU reads for every address (walker.lookup())."""
        return self.walker.lookup(addrs)

    def hw_tables(self) -> HwTables:
        """This table as the arrays tlb_cache.tlb_run walks (walker.hw_tables())."""
        return self.walker.hw_tables()

    # ---- teardown --------------------------------------------------------------------

    def _free_leaf(self, t: int) -> None:
        slot = self._leaf.pop(t)
        self._table_release(self._L - 1, int(self._leaf_phys[slot]))
        self._pfn[slot] = -1
        self._prot[slot] = 0
        self._cont[slot] = False
        self._folio[slot] = -1
        self._nr_present[slot] = 0
        self._leaf_phys[slot] = -1
        self._free_slots.append(slot)

    def free_empty_tables(self) -> int:
        """free_pgtables(): free every table below the top with no entry; returns bytes freed."""
        before = self.bytes
        for t in [t for t, s in self._leaf.items() if self._nr_present[s] == 0]:
            self._free_leaf(t)
        for i in range(self._L - 2, 0, -1):
            bits = self._span[i] - self._shift[i]
            used = {c >> bits for c in self._tables_at(i + 1)}
            used.update(g >> bits for g in self._blocks[i])
            for t in [t for t in self._upper[i] if t not in used]:
                self._table_release(i, self._upper[i].pop(t))
        return before - self.bytes

    def _notify(self, op: str, addr: int, nr: int, **kw) -> None:
        for fn in self.listeners:
            fn(op, int(addr), int(nr), **kw)
