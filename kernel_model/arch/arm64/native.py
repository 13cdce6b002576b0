"""The native page table: the proposal's second, per-mm table in the process geometry.

Counterpart: the per-process page size proposal (linux-mm thread "[LSF/MM/BPF TOPIC]
Per-process page size", <20260217145026.3880286-1-dev.jain@arm.com>; docs/design.md).
Dev Jain, 2026-02-17: every Linux-pgtable operation (set_ptes, clear_flush_ptes,
modify_prot_start_ptes, ...) of a process with a larger page size covers whole process
pages and becomes native entries; one that is not translatable falls back to the Linux
table for that range. Dev Jain, 2026-02-23: 256 Linux PTE tables (2M each) are sections
of one native PTE table (512M); one Linux PMD table (1G) spans two native PTE tables.
Pedro Falcato and David Hildenbrand, 2026-02-23: the native tables can be built on
demand, HMM/KVM-like, invalidated through mmu notifiers and reclaimed under pressure.

Modes:
- mirror: a listener on the Linux table translates each op eagerly. An op over whole
  process pages (VA, end and PA aligned to the process page) becomes len/proc_page native
  entries (pfn in process-page units); a native PMD block is used where one folio covers a
  whole native PMD block. An untranslatable op puts the process pages it touches in the
  fallback set (the hardware walks the Linux table there) and counts native_fallbacks.
- on_demand: nothing is mirrored eagerly. The first hw walk of a native leaf-table span
  builds it from the Linux table (native_rebuilds; a non-uniform process page found there
  becomes a fallback page and counts native_fallbacks); any Linux op under a built span
  drops it (native_invalidations); reclaim(nbytes) discards built spans, oldest first.
Native tables are allocated through table_alloc in the process geometry: on a 4K kernel
a 64K native table is an order-4 allocation.
"""

from __future__ import annotations

import numpy as np

from ...geometry import Geometry
from ...hw_walk import Lookup
from ...pgtable import PageTable
from ...tlb_cache import HwTables

MODES = ("mirror", "on_demand")

_SET_OPS = ("set_ptes", "set_pmd", "set_pud")
_CLEAR_OPS = ("clear_ptes", "clear_pmd", "clear_pud")


def _no_free(phys: int, nbytes: int) -> None:
    """The private bump allocator never reuses addresses."""


class NativePageTable:
    def __init__(self, linux_pt: PageTable, proc_geom: Geometry, mode: str = "mirror", *,
                 table_alloc=None, table_free=None, contpte=False):
        if mode not in MODES:
            raise ValueError(f"arch.native_pgtable: {mode!r} is not a native table mode; allowed: "
                             f"{', '.join(MODES)} (off means no NativePageTable at all)")
        kgeom = linux_pt.geom
        if proc_geom.page_size < kgeom.page_size:
            raise ValueError(f"process page size {proc_geom.page_size} is smaller than the kernel's "
                             f"{kgeom.page_size}; it must be >= the kernel page size")
        if proc_geom.va_bits != kgeom.va_bits:
            raise ValueError(f"process geometry has {proc_geom.va_bits}-bit VA, the kernel's "
                             f"{kgeom.va_bits}; use the same va_bits")
        self.linux = linux_pt
        self.geom = proc_geom
        self.mode = mode
        if table_alloc is None and table_free is None:  # share the Linux table's private allocator
            table_alloc, table_free = linux_pt.private_alloc, _no_free
        self.table = PageTable(proc_geom, table_alloc=table_alloc, table_free=table_free, contpte=contpte)
        self._ks, self._ps = kgeom.page_shift, proc_geom.page_shift
        self._r = self._ps - self._ks  # log2(kernel pages per process page)
        self._span_shift = proc_geom.pmd_shift  # VA covered by one native leaf table
        self._fallback: set[int] = set()  # process-page numbers walked in the Linux table
        self._fb_cache: np.ndarray | None = None
        self._built: dict[int, None] = {}  # on_demand: native leaf spans built, in build order
        self.stats = {"native_fallbacks": 0, "native_rebuilds": 0, "native_invalidations": 0,
                      "native_reclaimed_bytes": 0}
        linux_pt.listeners.append(self._on_linux_op)
        if mode == "mirror":
            for span in self._linux_spans():
                self._build(span)

    # ---- accounting ----------------------------------------------------------------

    @property
    def bytes(self) -> int:
        """pgtable_bytes_native: the native tables in the process geometry."""
        return self.table.bytes

    @property
    def fallbacks(self) -> int:
        return self.stats["native_fallbacks"]

    native_fallbacks = fallbacks

    @property
    def native_rebuilds(self) -> int:
        return self.stats["native_rebuilds"]

    @property
    def fallback_pages(self) -> list[int]:
        """Process-page numbers (addr >> process page shift) that walk the Linux table."""
        return sorted(self._fallback)

    def ptdesc_sections(self, level_number: int, table_index: int) -> list[tuple[int, int, int]]:
        """The native leaf-table sections that one Linux table's range maps into, as Dev Jain
        (2026-02-23) proposes to keep in the Linux table's struct ptdesc: a pointer for a
        Linux PTE table, a list for a table spanning several native ones. Returns
        [(native leaf table index, first entry, nr entries)]; table_index is the Linux
        table's index at that level (addr >> the VA bits one such table spans)."""
        lp = self.linux
        i = lp._level_index(level_number)
        span = lp._span[i]
        if isinstance(table_index, bool) or not isinstance(table_index, int) or table_index < 0:
            raise ValueError(f"ptdesc_sections: table_index must be a non-negative int, got {table_index!r}")
        start, end = table_index << span, (table_index + 1) << span
        out = []
        for t in range(start >> self._span_shift, ((end - 1) >> self._span_shift) + 1):
            lo, hi = max(start, t << self._span_shift), min(end, (t + 1) << self._span_shift)
            out.append((t, (lo - (t << self._span_shift)) >> self._ps, (hi - lo) >> self._ps))
        return out

    def nr_tables(self, level_number: int) -> int:
        return self.table.nr_tables(level_number)

    def free_empty_tables(self) -> int:
        return self.table.free_empty_tables()

    # ---- fallback set ----------------------------------------------------------------

    def _fallback_add(self, p0: int, p1: int) -> None:
        self._fallback.update(range(p0, p1))
        self._fb_cache = None

    def _fallback_remove(self, p0: int, p1: int) -> None:
        if self._fallback:
            if p1 - p0 > len(self._fallback):
                self._fallback.difference_update([p for p in self._fallback if p0 <= p < p1])
            else:
                self._fallback.difference_update(range(p0, p1))
            self._fb_cache = None

    def _in_fallback(self, pages: np.ndarray) -> np.ndarray:
        if not self._fallback:
            return np.zeros(pages.size, np.bool_)
        if self._fb_cache is None:
            self._fb_cache = np.array(sorted(self._fallback), np.int64)
        return np.isin(pages, self._fb_cache)

    # ---- mirror: translate Linux ops -----------------------------------------------------

    def _on_linux_op(self, op, addr, nr, *, pfn=None, prot=None, folio_pfn=None, folio_nr=None):
        end = addr + (nr << self._ks)
        if self.mode == "on_demand":
            self._invalidate(addr, end)
            return
        pmask = (1 << self._ps) - 1
        rmask = (1 << self._r) - 1
        translatable = not (addr & pmask or end & pmask)
        if op in _SET_OPS:
            translatable = translatable and not (pfn & rmask)
        p0, p1 = addr >> self._ps, (end + pmask) >> self._ps
        if not translatable:
            # the warning path of the proposal: this range keeps the Linux geometry
            self.stats["native_fallbacks"] += 1
            self._fallback_add(p0, p1)
            self.table.drop_range(p0 << self._ps, (p1 - p0) << self._ps)
            return
        if op in _SET_OPS:
            self._fallback_remove(p0, p1)
            self._native_set(addr, end, pfn >> self._r, prot, folio_pfn >> self._r,
                             max(1, folio_nr >> self._r))
        elif op in _CLEAR_OPS:
            self._fallback_remove(p0, p1)
            self.table.drop_range(addr, end - addr)
        elif op == "modify_prot":
            self._native_modify_prot(addr, end, prot)
        else:
            raise ValueError(f"native mirror: unknown Linux page-table op {op!r}")

    def _native_set(self, addr, end, opfn, prot, ofolio, ofolio_nr) -> None:
        """Native entries for [addr, end) -> opfn...; a PMD block for each native PMD span the
        range and the folio cover whole with a PMD-aligned PA (pmd_leaf in the native geometry)."""
        t = self.table
        if t._blocks[t._L - 2]:  # replace native blocks under the range; PTEs are overwritten
            t.drop_range(addr, end - addr)
        bsize = 1 << self._span_shift
        a = addr
        while a < end:
            nxt = min(end, (a | (bsize - 1)) + 1)
            o = opfn + ((a - addr) >> self._ps)
            npp = (nxt - a) >> self._ps
            if nxt - a == bsize and not o % npp and ofolio <= o and o + npp <= ofolio + ofolio_nr:
                t.drop_range(a, bsize)  # native PTEs the block replaces
                if (a >> self._span_shift) in t._leaf:
                    t._free_leaf(a >> self._span_shift)
                t.set_pmd(a, o, prot, folio_pfn=ofolio, folio_nr=ofolio_nr)
            else:
                t.set_ptes(a, o, npp, prot, folio_pfn=ofolio, folio_nr=ofolio_nr)
                if ofolio_nr << self._ps >= bsize:
                    self._try_collapse(a >> self._span_shift)
            a = nxt

    def _try_collapse(self, span: int) -> None:
        """When one folio now maps a whole native leaf table contiguously with one prot,
        replace the table by a native PMD block (as khugepaged's collapse would)."""
        start = span << self._span_shift
        n = 1 << (self._span_shift - self._ps)
        pfn, prot, folio = self.table.read_ptes(start, n)
        if (pfn[0] >= 0 and not pfn[0] % n and (pfn == pfn[0] + np.arange(n)).all()
                and (prot == prot[0]).all() and (folio == folio[0]).all()):
            self.table.drop_range(start, 1 << self._span_shift)
            self.table.free_empty_tables()
            self.table.set_pmd(start, int(pfn[0]), int(prot[0]), folio_pfn=int(folio[0]),
                               folio_nr=max(n, 1))

    def _native_modify_prot(self, addr, end, prot) -> None:
        t = self.table
        bsize = 1 << self._span_shift
        for g in range(addr >> self._span_shift, ((end - 1) >> self._span_shift) + 1):
            blk = t._blocks[t._L - 2].get(g)
            if blk is None:
                continue
            b0 = g << self._span_shift
            if b0 >= addr and b0 + bsize <= end:
                t.set_pmd(b0, blk.pfn, prot, folio_pfn=blk.folio_pfn, folio_nr=blk.folio_nr)
            else:
                t.split_pmd(b0)
        t.modify_prot(addr, (end - addr) >> self._ps, prot)

    # ---- on demand --------------------------------------------------------------------

    def _linux_spans(self) -> list[int]:
        """Native leaf spans holding any Linux mapping."""
        lp = self.linux
        spans = {(t << lp._span[-1]) >> self._span_shift for t in lp._leaf}
        for i in range(lp._L - 1):
            for g in lp._blocks[i]:
                s0 = (g << lp._shift[i]) >> self._span_shift
                s1 = (((g + 1) << lp._shift[i]) - 1) >> self._span_shift
                spans.update(range(s0, s1 + 1))
        return sorted(spans)

    def _build(self, span: int) -> None:
        """Translate one native leaf span from the Linux table (vectorised over its pages)."""
        start = span << self._span_shift
        npp = 1 << (self._span_shift - self._ps)
        R = 1 << self._r
        pfn, prot, folio = self.linux.read_ptes(start, npp * R)
        p2, pr2, f2 = pfn.reshape(npp, R), prot.reshape(npp, R), folio.reshape(npp, R)
        none = (p2 < 0).all(axis=1)
        uni = ((p2[:, 0] >= 0) & (p2[:, 0] % R == 0)
               & (p2 == p2[:, :1] + np.arange(R, dtype=np.int64)).all(axis=1)
               & (pr2 == pr2[:, :1]).all(axis=1) & (f2 == f2[:, :1]).all(axis=1))
        bad = np.flatnonzero(~none & ~uni)
        if bad.size:
            self.stats["native_fallbacks"] += int(bad.size)
            self._fallback.update((bad + span * npp).tolist())
            self._fb_cache = None
        opfn = np.where(uni, p2[:, 0] >> self._r, -1)
        oprot = np.where(uni, pr2[:, 0], 0).astype(np.int8)
        ofolio = np.where(uni, f2[:, 0] >> self._r, -1)
        if (uni.all() and not opfn[0] % npp and (opfn == opfn[0] + np.arange(npp)).all()
                and (oprot == oprot[0]).all() and (ofolio == ofolio[0]).all()):
            self.table.set_pmd(start, int(opfn[0]), int(oprot[0]), folio_pfn=int(ofolio[0]), folio_nr=npp)
        elif uni.any():
            self.table.set_pte_array(start, opfn, oprot, ofolio)

    def _invalidate(self, addr: int, end: int) -> None:
        """mmu_notifier invalidate_range: drop every built native span under [addr, end)."""
        s0, s1 = addr >> self._span_shift, (end - 1) >> self._span_shift
        if s1 - s0 + 1 > len(self._built):
            hit = [s for s in self._built if s0 <= s <= s1]
        else:
            hit = [s for s in range(s0, s1 + 1) if s in self._built]
        for s in hit:
            self._drop_span(s)
            self.stats["native_invalidations"] += 1

    def _drop_span(self, span: int) -> int:
        before = self.table.bytes
        start = span << self._span_shift
        self.table.drop_range(start, 1 << self._span_shift)
        npp = 1 << (self._span_shift - self._ps)
        self._fallback_remove(span * npp, (span + 1) * npp)
        t = self.table
        if span in t._leaf:
            t._free_leaf(span)
        del self._built[span]
        return before - t.bytes

    def reclaim(self, nbytes: int) -> int:
        """Discard built native spans, oldest first, until nbytes of tables are freed
        (upper tables left empty are freed too). Returns the bytes freed."""
        if self.mode != "on_demand":
            raise ValueError("reclaim: only arch.native_pgtable=on_demand tables can be discarded; "
                             "mirror tables have no rebuild path")
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
            raise ValueError(f"reclaim: nbytes must be a non-negative int, got {nbytes!r}")
        freed = 0
        for span in list(self._built):
            if freed >= nbytes:
                break
            freed += self._drop_span(span)
            freed += self.table.free_empty_tables()
        self.stats["native_reclaimed_bytes"] += freed
        return freed

    # ---- the hardware walk ---------------------------------------------------------------

    @property
    def span_shift(self) -> int:
        """log2 of the VA one native leaf table covers (the on-demand build unit)."""
        return self._span_shift

    def build_spans(self, spans) -> None:
        """on_demand: build the native leaf spans not built yet (the hardware is about to
        walk them), in the order given (hw_lookup: ascending). mirror: nothing to do."""
        if self.mode != "on_demand":
            return
        for s in np.asarray(spans, np.int64).tolist():
            if s not in self._built:
                self._build(s)
                self._built[s] = None
                self.stats["native_rebuilds"] += 1

    def hw_tables(self) -> HwTables:
        """hw_lookup() as arrays for the compiled walk (the translate closure inside tlb_cache.tlb_run): the
        native table, the Linux table for the sorted fallback pages, and the frame
        conversion. on_demand: call build_spans() for the spans to be walked first."""
        if self._fb_cache is None:
            self._fb_cache = np.array(sorted(self._fallback), np.int64)
        width = max(self.linux.geom.nr_levels, self.geom.nr_levels)
        return HwTables(primary=self.table.walker.walk_tables(), secondary=self.linux.walker.walk_tables(),
                        fallback=self._fb_cache, params=np.array([self._r, self._ks, self._ps, width], np.int64))

    def hw_lookup(self, addrs) -> Lookup:
        """The translation the MMU sees: the native table where it holds the range, the Linux
        table for fallback pages; pfn in kernel pages in both cases."""
        a = np.asarray(addrs, dtype=np.int64).ravel()
        n = a.size
        if n and (a.min() < 0 or a.max() >= (1 << self.geom.va_bits)):
            raise ValueError(f"hw_lookup: addresses must lie in [0, 2**{self.geom.va_bits})")
        if self.mode == "on_demand" and n:
            self.build_spans(np.unique(a >> self._span_shift))
        fb = self._in_fallback(a >> self._ps)
        L = max(self.linux.geom.nr_levels, self.geom.nr_levels)
        present = np.zeros(n, np.bool_)
        pfn = np.full(n, -1, np.int64)
        prot = np.zeros(n, np.int8)
        base_shift = np.full(n, self._ps, np.int8)
        leaf_shift = np.full(n, self._ps, np.int8)
        desc = np.full((n, L), -1, np.int64)
        nat = ~fb
        for sel, lk, conv in ((nat, self.table.lookup(a[nat]), True), (fb, self.linux.lookup(a[fb]), False)):
            if not sel.any():
                continue
            present[sel] = lk.present
            k = lk.pfn
            if conv:  # process-page frame -> the kernel frame of the accessed kernel page
                k = np.where(lk.present, (k << self._r) | ((a[sel] >> self._ks) & ((1 << self._r) - 1)), -1)
            pfn[sel] = k
            prot[sel] = lk.prot
            base_shift[sel] = lk.base_shift
            leaf_shift[sel] = lk.leaf_shift
            desc[sel, :lk.desc_addr.shape[1]] = lk.desc_addr
        return Lookup(present=present, pfn=pfn, prot=prot, base_shift=base_shift,
                      leaf_shift=leaf_shift, desc_addr=desc)
