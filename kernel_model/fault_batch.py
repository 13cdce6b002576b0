"""Batched anonymous faults: the faults of one access chunk resolved together.

The reference is the per-fault path (memory.handle_mm_fault): this module is a pure
optimisation of it and must leave every result identical, which tests/model compare cell
by cell (the page tables, the folios, the allocator and every metric).

The faults of a chunk (each process page's first touch, and its first write after a
read) are taken in access order. Those of a plain private anonymous VMA are decided by
one compiled loop over a compact state of the naturally aligned ranges they fall in
(none / zero page / mapped writable / mapped read-only), by the rules of
do_anonymous_page() and do_wp_page() on the zero page (mm/memory.c) with the folio order
of anon_fault_orders() (mm/huge_memory.c, here in _decide()). The folios and the page
tables those faults allocate are then taken from the buddy allocator in one call, in the
order the faults would have asked for them (PageAllocator.alloc_bulk: the same pfns), the
leaf entries are stored in one vectorised step per batch (PageTable.store_ptes) and the
folios with their rmap go into system.folios as arrays (FolioTable.add_mapped: they become
Folio objects when something first reads the table).

What the batch does not cover goes through handle_mm_fault() in its place in the order:
a fault that finds no free block (compaction, page-cache shrink, fallback to a smaller
order, OOM), a write to a present read-only page other than the zero page (COW after
fork), file, shared, userfaultfd, mlocked and padding VMAs, signals, PMD THP, a native
page table, and the rare write that would partly cover a folded contpte run.

PAGESWEEP_FAULT_PATH=reference (or simulate(cfg, fault_path="reference")) forces the
per-fault path everywhere; it is not part of a cell's config, as it changes no result.
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit

from . import huge_memory
from .memory import handle_mm_fault
from .mm_types import (PROT_EXEC, PROT_READ, PROT_WRITE, VM_LOCKED, VM_NOHUGEPAGE, VM_PAD_ANON, VM_READ,
                       VM_SHARED, VM_UFFD_MISSING, VM_WRITE)
from .pgtable_bulk import group

FAULT_PATHS = ("batch", "reference")
FAULT_PATH_ENV = "PAGESWEEP_FAULT_PATH"

# Fewer batchable faults than this in a row go through handle_mm_fault(): the batch's
# fixed cost (a few dozen numpy calls) is worth it only above a few faults.
MIN_BATCH = 32

# _decide()'s actions per fault
SPURIOUS, ZERO, NEW, COW = 0, 1, 2, 3
# per kernel page state in _decide()
S_NONE, S_ZERO, S_RW, S_RO = 0, 1, 2, 3
# folio.anon policy codes
P_BASE, P_MTHP, P_MTHP_ONLY = 0, 1, 2

_BAD_VMA = VM_SHARED | VM_UFFD_MISSING | VM_PAD_ANON | VM_LOCKED


def fault_path(value: str | None = None) -> str:
    """The fault path to use: `value`, else $PAGESWEEP_FAULT_PATH, else batch."""
    path = value or os.environ.get(FAULT_PATH_ENV) or "batch"
    if path not in FAULT_PATHS:
        raise ValueError(f"fault path {path!r} (simulate(fault_path=) or ${FAULT_PATH_ENV}): "
                         f"allowed: {', '.join(FAULT_PATHS)}")
    return path


def fault_in(mm, addrs: np.ndarray, writes: np.ndarray, path: str = "batch") -> np.ndarray:
    """Take the faults at addrs[i] (write when writes[i]) in order; returns each one's
    handle_mm_fault() code (0, or VM_FAULT_* for a signal)."""
    n = addrs.size
    rets = np.zeros(n, np.int64)
    ctx = _Context.build(mm) if path == "batch" and n >= MIN_BATCH else None
    vmas = ctx._vmas(addrs) if ctx is not None else None  # (start, end, flags) per fault: one lookup
    ok = ctx.batchable(addrs, writes, vmas[2]) if ctx is not None else np.zeros(n, np.bool_)
    i = 0
    window = 1 << 20
    while i < n:
        if not ok[i]:
            rets[i] = handle_mm_fault(mm, int(addrs[i]), bool(writes[i]))
            i += 1
            continue
        j = i + int(np.argmin(ok[i:i + window])) if not ok[i:i + window].all() else min(n, i + window)
        if j - i < MIN_BATCH:
            for k in range(i, j):
                rets[k] = handle_mm_fault(mm, int(addrs[k]), bool(writes[k]))
            i = j
            continue
        if _Context.build(mm) is None:
            # a fault taken one by one changed what the batch relies on (a native
            # fallback, a PMD block): the rest one by one too
            ok[i:] = False
            continue
        done = ctx.run(addrs[i:j], writes[i:j], tuple(v[i:j] for v in vmas))
        i += done
        if i < j:  # the fault the batch left: allocation failure or an uncovered case
            rets[i] = handle_mm_fault(mm, int(addrs[i]), bool(writes[i]))
            i += 1
            window = max(1 << 10, 2 * done)  # failures come in runs: smaller batches for a while
        else:
            window = min(1 << 20, 2 * window)
    return rets


class _Context:
    """What one mm's batches need: the policy as numbers, the tables' geometry."""

    @classmethod
    def build(cls, mm):
        system = mm.system
        policy = system.policy
        pt, native = mm.pgtable, mm.native
        if policy.thp_pmd or any(pt._blocks) or pt._alloc_fn != system.table_alloc:
            return None
        if native is None:
            if pt.listeners:
                return None
        elif (native.mode != "mirror" or native._fallback or any(native.table._blocks)
              or pt.listeners != [native._on_linux_op] or native.table._alloc_fn != system.table_alloc
              or native.table.listeners or native.table._span[-1] < pt._span[-1]):
            return None
        base = mm.order
        morders = [o for o in huge_memory.mthp_orders(mm) if o > base] if policy.anon != "base" else []
        gmax = max([base] + morders)
        if gmax >= huge_memory.pmd_order(mm):
            return None  # an mTHP order at or above the PMD order maps a block: per fault
        return cls(mm, base, np.array(morders, np.int64), gmax)

    def __init__(self, mm, base, morders, gmax):
        self.mm, self.system, self.pt = mm, mm.system, mm.pgtable
        self.base, self.morders, self.gmax = base, morders, gmax
        self.policy = {"base": P_BASE, "mthp": P_MTHP, "mthp_only": P_MTHP_ONLY}[self.system.policy.anon]
        self.ks = self.system.kgeom.page_shift
        zf = self.system.zero_folio
        self.zf_pfn, self.zf_nr = (zf.pfn, zf.nr_pages) if zf is not None else (-1, 0)
        self.cont = self.pt.geom.cont_pte if self.pt.contpte else 0
        # The tables a mapping writes: the Linux table, then (arch.native_pgtable=mirror) the
        # native one, whose listener turns each set_ptes()/clear_ptes() of whole process
        # pages into native entries in process-page units (arch/arm64/native.py). A batch
        # never maps a folio as large as a native PMD block, so it makes PTEs only, and
        # never makes a fallback (its mappings are whole, aligned process pages).
        self.tables = [self.pt] + ([mm.native.table] if mm.native is not None else [])

    def _table_order(self, pt, i):
        """system.table_alloc()'s order for a table of level index i (pagetable_alloc())."""
        kps = self.system.kernel_page_size
        return max(0, (max(pt.geom.levels[i].table_bytes, kps) // kps - 1).bit_length())

    def _vmas(self, addrs):
        """Per address: (start, end, flags) of its VMA, flags -1 where none."""
        vmas = self.mm.vmas.vmas
        starts = np.array([v.start for v in vmas], np.int64)
        ends = np.array([v.end for v in vmas], np.int64)
        flags = np.array([v.flags if v.anon else -1 for v in vmas], np.int64)
        i = np.searchsorted(starts, addrs, side="right") - 1
        inside = (i >= 0) & (addrs < ends[np.maximum(i, 0)])
        i = np.maximum(i, 0)
        return starts[i], ends[i], np.where(inside, flags[i], -1)

    def batchable(self, addrs, writes, flags):
        """Faults the batch may take: a private anonymous VMA allowing the access (flags: its
        vm_flags per fault, _vmas()), and not a write to a present read-only page other than
        the zero page."""
        ok = (flags >= 0) & (flags & _BAD_VMA == 0)
        ok &= np.where(writes, flags & VM_WRITE != 0, flags & (VM_READ | VM_WRITE) != 0)
        if self.pt.nr_ptes == 0:  # nothing mapped (build() takes no table with a block mapping)
            return ok
        pfn, prot, folio, _ = self.pt.gather_blocks(addrs >> self.ks, 1)
        ro_other = (pfn[:, 0] >= 0) & (prot[:, 0] & PROT_WRITE == 0) & (folio[:, 0] != self.zf_pfn)
        return ok & ~(ro_other & writes)

    def run(self, addrs, writes, vmas) -> int:
        """Take the faults in order as far as the batch can (vmas: their _vmas()); returns
        how many were taken."""
        pt, ks, gmax = self.pt, self.ks, self.gmax
        vstart, vend, flags = vmas
        pages = addrs >> ks
        blk_first = (pages >> gmax) << gmax
        ub, ev_blk = group(blk_first)
        pfn, prot, folio, cont = pt.gather_blocks(ub, 1 << gmax)
        state = np.where(pfn < 0, S_NONE,
                         np.where(folio == self.zf_pfn, S_ZERO,
                                  np.where(prot & PROT_WRITE != 0, S_RW, S_RO))).astype(np.int8)
        ev_pg = pages - blk_first
        ev_cont = cont[ev_blk, ev_pg]
        n = addrs.size
        act = np.zeros(n, np.int8)
        order = np.zeros(n, np.int64)
        mstart = np.zeros(n, np.int64)
        fallback = np.zeros(n, np.bool_)
        k = int(_decide(ev_blk, ev_pg, writes, flags & VM_NOHUGEPAGE != 0, vstart, vend, ev_cont, ub, state,
                        ks, self.base, self.morders, self.policy, self.zf_pfn >= 0, self.cont,
                        act, order, mstart, fallback))
        act, order, mstart, fallback = act[:k], order[:k], mstart[:k], fallback[:k]
        vprot = (flags[:k] & (PROT_READ | PROT_WRITE | PROT_EXEC)).astype(np.int8)
        taken = self._allocate(act, order, ub[ev_blk[:k]] + mstart)
        if taken is None:
            return 0
        k, folio_pfns, tables = taken
        self._apply(act[:k], order[:k], ub[ev_blk[:k]] + mstart[:k], vprot[:k], fallback[:k], folio_pfns, tables)
        return k

    def _allocate(self, act, order, map_page):
        """The folios and page tables of the faults, from one alloc_bulk() call in the order
        the per-fault path asks for them: per fault its folio, then the missing tables top
        down (_ensure_upper() then the leaf), the Linux table's before the native one's.
        Returns (faults taken, folio pfns, tables per page table)."""
        ks = self.ks
        k = act.size
        ev = np.arange(k, dtype=np.int64)
        folio_ev = ev[(act == NEW) | (act == COW)]
        items_ev, items_sub, items_order = [folio_ev], [np.zeros(folio_ev.size, np.int64)], [order[folio_ev]]
        maps = ev[(act == NEW) | (act == ZERO)]
        addr = map_page[maps] << ks
        new_tables = {}  # (event, sub) -> (page table number, level index, table index)
        # the Linux leaf tables the mappings fall in, with each one's first mapping; every
        # other table (upper levels, the native table's) spans whole Linux leaf tables
        leaf_span = self.pt._span[self.pt._L - 1]
        ul, inv = group(addr >> leaf_span)
        ul_first = np.full(ul.size, maps.size, np.int64)
        np.minimum.at(ul_first, inv, np.arange(maps.size, dtype=np.int64))
        sub = 0
        for n_pt, pt in enumerate(self.tables):
            for i in range(1, pt._L):
                sub += 1
                uk, kinv = np.unique(ul >> (pt._span[i] - leaf_span), return_inverse=True)
                first = np.full(uk.size, maps.size, np.int64)
                np.minimum.at(first, kinv, ul_first)
                have = pt._leaf if i == pt._L - 1 else pt._upper[i]
                miss = np.array([t not in have for t in uk.tolist()], np.bool_)
                if miss.any():
                    e = maps[first[miss]]
                    items_ev.append(e)
                    items_sub.append(np.full(e.size, sub, np.int64))
                    items_order.append(np.full(e.size, self._table_order(pt, i), np.int64))
                    new_tables.update(((a, sub), (n_pt, i, t)) for a, t in zip(e.tolist(), uk[miss].tolist()))
        iev, isub, iord = (np.concatenate(a) for a in (items_ev, items_sub, items_order))
        seq = np.lexsort((isub, iev))
        iev, isub, iord = iev[seq], isub[seq], iord[seq]
        pfns, n = self.system.page_alloc.alloc_bulk(iord, isub == 0, iev)
        kdone = int(iev[n]) if n < iev.size else k
        if kdone == 0:
            return None
        is_folio = isub[:n] == 0
        tables = [[] for _ in self.tables]  # per page table: (level index, table index, phys) in allocation order
        kps = self.system.kernel_page_size
        for e, sb, p in zip(iev[:n][~is_folio].tolist(), isub[:n][~is_folio].tolist(), pfns[~is_folio].tolist()):
            n_pt, i, t = new_tables[(e, sb)]
            tables[n_pt].append((i, t, p * kps))
        return kdone, pfns[is_folio], tables

    def _folds(self, pt, m_act, m_nr, r=0):
        """The contpte folds the set_ptes() calls of these mappings (m_nr pages each in pt's
        units) count: every whole run they cover (naturally aligned folios and zero-page
        pieces are congruent), none for a part of a run (a run partly written by a batch
        mapping holds other folios or repeats the zero page, so it never folds)."""
        if not pt.contpte:
            return 0
        c = pt.geom.cont_pte
        zf_nr = max(1, self.zf_nr >> r)
        return int(np.where((m_act == ZERO) & (c > zf_nr), 0, m_nr // c).sum())

    def _apply(self, act, order, map_page, vprot, fallback, folio_pfns, tables):
        """The page tables, folios, rmap and counters the faults leave."""
        system, pt, mm = self.system, self.pt, self.mm
        ks, kps = self.ks, system.kernel_page_size
        for table, new in zip(self.tables, tables):
            table.install_tables(new)
        nr = np.int64(1) << order
        has_folio = (act == NEW) | (act == COW)
        fo_pfn = np.full(act.size, -1, np.int64)
        fo_pfn[has_folio] = folio_pfns
        mapped = act != SPURIOUS
        m_page, m_nr, m_act = map_page[mapped], nr[mapped], act[mapped]
        m_pfn, m_prot = fo_pfn[mapped], vprot[mapped]
        # one entry per page mapped, in fault order; a later fault's entry wins (COW after zero)
        tot = int(m_nr.sum())
        rep = np.repeat(np.arange(m_nr.size), m_nr)
        off = np.arange(tot, dtype=np.int64) - np.repeat(np.cumsum(m_nr) - m_nr, m_nr)
        zero = m_act[rep] == ZERO
        e_page = m_page[rep] + off
        e_pfn = np.where(zero, self.zf_pfn + off % max(self.zf_nr, 1), m_pfn[rep] + off)
        e_folio = np.where(zero, self.zf_pfn, m_pfn[rep])
        e_prot = np.where(zero, m_prot[rep] & ~PROT_WRITE, m_prot[rep]).astype(np.int8)
        upage, inv = group(e_page)
        pick = np.full(upage.size, -1, np.int64)
        np.maximum.at(pick, inv, np.arange(tot, dtype=np.int64))
        upfn, uprot, ufolio = e_pfn[pick], e_prot[pick], e_folio[pick]
        listeners, pt.listeners = pt.listeners, []  # the native mirror gets its entries below
        try:
            pt.store_ptes(upage, upfn, uprot, ufolio, self._folds(pt, m_act, m_nr))
        finally:
            pt.listeners = listeners
        if len(self.tables) > 1:  # one native entry per process page, in process-page units
            r = self.base
            head = upage & ((1 << r) - 1) == 0
            self.tables[1].store_ptes(upage[head] >> r, upfn[head] >> r, uprot[head], ufolio[head] >> r,
                                      self._folds(self.tables[1], m_act, m_nr >> r, r))
        # folios: system.folios and mem_map in fault order, each mapped once by this mm
        f_pfn, f_order = fo_pfn[has_folio], order[has_folio]
        f_nr = nr[has_folio]
        system.folios.add_mapped(mm, f_pfn, f_order, map_page[has_folio] << ks, f_nr)  # Folio objects when read
        if f_pfn.size:
            rep = np.repeat(f_pfn, f_nr)
            frames = rep + (np.arange(rep.size, dtype=np.int64) - np.repeat(np.cumsum(f_nr) - f_nr, f_nr))
            system.mem_map_head[frames] = rep
        system.anon_bytes += int(f_nr.sum()) * kps
        orders, counts = np.unique(f_order, return_counts=True)
        system.stats.folios_by_order.update(dict(zip(orders.tolist(), counts.tolist())))
        ev = system.stats.events
        for name, count in (("faults", int(mapped.sum())), ("zero_page_faults", int((act == ZERO).sum())),
                            ("cow_copies", int((act == COW).sum())), ("anon_fault_fallback", int(fallback.sum()))):
            if count:
                ev[name] += count


@njit(cache=True)
def _granule(p_abs, ks, vstart, vend, base, morders, policy, nohuge):
    """anon_granule_order(): mthp_only's largest mTHP order that fits the VMA, else the
    process order."""
    if policy == P_MTHP_ONLY and not nohuge:
        for o in morders:
            if _fits(p_abs, ks, o, vstart, vend):
                return o
    return base


@njit(cache=True)
def _fits(p_abs, ks, o, vstart, vend):
    """thp_vma_suitable_order(): the naturally aligned range of order o lies in the VMA."""
    start = ((p_abs >> o) << o) << ks
    return start >= vstart and start + ((1 << o) << ks) <= vend


@njit(cache=True)
def _none(row, r0, nr):
    for j in range(r0, r0 + nr):
        if row[j] != S_NONE:
            return False
    return True


@njit(cache=True)
def anon_fault_order(row, p, p_abs, ks, vstart, vend, base, morders, policy, nohuge):
    """THE ORDER RULE of an anonymous write fault (keep it equal to the per-fault path's:
    huge_memory.anon_fault_orders() + memory._alloc_anon(), i.e. thp_vma_allowable_orders()
    and alloc_anon_folio()): the enabled mTHP orders above the process order, highest
    first, that fit the VMA (thp_vma_suitable_order()) and whose range is empty
    (pte_range_none()); folio.anon=mthp_only allows only the largest fitting one, with no
    fallback; otherwise the process order, the hard minimum. `row` is the fault's block
    state, p its page in the block, p_abs its kernel page number. Returns (order, number of
    orders tried before it: anon_fault_fallback counts a fault when > 0), or (-1, 0) when
    the per-fault path must take the fault (mthp_only's order populated: OutOfMemory).
    Allocation failure is not decided here: alloc_bulk() stops the batch at that fault."""
    skipped = 0
    if policy != P_BASE and not nohuge:
        for o in morders:
            if not _fits(p_abs, ks, o, vstart, vend):
                continue
            if _none(row, (p >> o) << o, 1 << o):
                return o, skipped
            if policy == P_MTHP_ONLY:
                return -1, 0
            skipped += 1
    return base, skipped


@njit(cache=True)
def _decide(ev_blk, ev_pg, ev_write, ev_nohuge, vstart, vend, ev_cont, blk_first, state, ks, base, morders,
            policy, zero_ok, cont, act, order, mstart, fallback):
    """The per-fault rules over the batch's page state, fault by fault in order:
    handle_mm_fault() -> do_anonymous_page() (zero page on a read, else a folio of the
    order anon_fault_orders() and alloc_anon_folio() choose: the highest enabled order
    that fits the VMA with pte_range_none(), the process order the hard minimum, and
    folio.anon=mthp_only's single order) or do_wp_page() on the zero page (a folio of
    anon_granule_order() replaces it). Sets act/order/mstart (first page of the mapping in
    its block) per fault; returns the number decided: it stops at a fault it leaves to
    handle_mm_fault()."""
    for i in range(ev_blk.size):
        b, p, w = ev_blk[i], ev_pg[i], ev_write[i]
        row = state[b]
        s = row[p]
        if s == S_RW or (s != S_NONE and not w):
            act[i] = SPURIOUS
            continue
        if s == S_RO:
            return i
        p_abs = blk_first[b] + p
        nohuge = ev_nohuge[i]
        if s == S_ZERO:  # do_wp_page() on the zero page: copy it into a new folio
            g = _granule(p_abs, ks, vstart[i], vend[i], base, morders, policy, nohuge)
            r0 = (p >> g) << g
            if g > base:
                for j in range(r0, r0 + (1 << g)):
                    if row[j] != S_ZERO:
                        g = base
                        r0 = (p >> g) << g
                        break
            if (1 << g) < cont and ev_cont[i]:
                return i  # part of a folded run: the unfold is left to the per-fault path
            row[r0:r0 + (1 << g)] = S_RW
            act[i], order[i], mstart[i] = COW, g, r0
            continue
        if not w and zero_ok:  # the zero page over the granule (the process page if populated)
            g = _granule(p_abs, ks, vstart[i], vend[i], base, morders, policy, nohuge)
            r0 = (p >> g) << g
            if g > base and not _none(row, r0, 1 << g):
                g = base
                r0 = (p >> g) << g
            row[r0:r0 + (1 << g)] = S_ZERO
            act[i], order[i], mstart[i] = ZERO, g, r0
            continue
        chosen, skipped = anon_fault_order(row, p, p_abs, ks, vstart[i], vend[i], base, morders, policy, nohuge)
        if chosen < 0:
            return i
        r0 = (p >> chosen) << chosen
        row[r0:r0 + (1 << chosen)] = S_RW
        act[i], order[i], mstart[i], fallback[i] = NEW, chosen, r0, skipped > 0
    return ev_blk.size
