"""Set-associative caches for the translation model: the sequential kernels of tlb.py,
and the hardware table walk (table_walk, tlb_run's translate) tlb_run performs on an L2 TLB miss
over a PageTable's walk_tables() arrays.

Every structure here (L1 dTLB, L2 TLB, walk cache, L1D, L2D) is `sets` rows of `ways`
tags, int64[sets, ways].  The contracts:

- A tag is a non-negative int64; -1 marks an empty way.
- The set of a tag is chosen by the caller (tag-derived; see tlb.py) and passed in.
- A row is kept in recency order: way 0 is the most recently used (LRU) or the newest
  fill (FIFO), empty ways are at the tail.  A fill inserts at way 0 and pushes the last
  way out, which is the least recent / oldest fill, or an empty way while there is one;
  an LRU hit moves the tag to way 0; a FIFO hit and a miss change nothing.  So the
  victim is a pure function of the access order (same input, same bytes) and a lookup
  stops at the first empty way.  Exactly a textbook LRU/FIFO set.

tlb_run keeps the five structures' rows in one flat buffer and works on them through
closures over it that take only scalars (row_access, row_lookup, dcache_read): numba
increfs and decrefs, atomically, every array passed to a function, inlined or not, which
costs more than a lookup.

These are the loops that are sequential by nature (each access sees the state the
previous one left), so they are numba-compiled with cache=True: a sweep runs many
cells per process and must not recompile per cell.  tlb_run makes one pass over the
caller's arrays and allocates nothing per access.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .geometry import DESC_SIZE

EMPTY = -1
HIT = -2  # cache_access(): the tag was present
STAMP_LATER = 1 << 62  # tlb_run's stamped L1: the last use of a way past its width

# Output counters of tlb_run(), by index.
C_L1_MISS = 0
C_L2_MISS = 1
C_WALKS = 2
C_WALK_REFS = 3
C_WALK_CYCLES = 4
C_WC_HITS = 5
C_PT_L1D_MISS = 6
C_PT_L2D_MISS = 7
C_DATA_L1D_MISS = 8
C_DATA_L2D_MISS = 9
C_NOT_PRESENT = 10
C_WRITES = 11  # the write accesses of a stream of records (tlb_run's raw)
NR_COUNTERS = 12

# Where a data-cache read was served, as returned by dcache_read().
SERVED_L1D, SERVED_L2D, SERVED_MEM = 0, 1, 2


@njit(cache=True)
def cache_new(sets, ways):
    """An empty structure: int64[sets, ways] of -1 (at least one set of one way)."""
    return np.full((max(sets, 1), max(ways, 1)), EMPTY, dtype=np.int64)


@njit(cache=True, inline="always")
def set_index(tag, sets):
    """tag % sets for a non-negative tag; a mask when sets is a power of two (the
    usual case), which spares a 64-bit division per lookup."""
    if sets & (sets - 1) == 0:
        return tag & (sets - 1)
    return tag % sets


@intrinsic
def prefetch(typingctx, arr, offset):
    """Ask the CPU to start loading the cache line of element `offset` (flat) of a
    C-contiguous array (llvm.prefetch: a read, kept in all cache levels). A hint only:
    it changes no value, and a bad offset never faults."""
    if not (isinstance(arr, types.Array) and arr.layout == "C" and isinstance(offset, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        off = context.cast(builder, args[1], signature.args[1], types.intp)
        ptr = builder.bitcast(builder.gep(ary.data, [off]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]),
                                            "llvm.prefetch.p0i8")
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.void(arr, offset), codegen


@njit(cache=True, inline="always")
def _row_insert_front(c, s, w, tag):
    """Shift ways 0..w-1 one down (dropping way w) and put `tag` at way 0."""
    for k in range(w, 0, -1):
        c[s, k] = c[s, k - 1]
    c[s, 0] = tag


@njit(cache=True, inline="always")
def cache_access(c, s, tag, lru):
    """Look `tag` up in set `s` and fill it on a miss, in one pass over the ways.

    Returns HIT (-2) on a hit, else the evicted tag (-1: an empty way was used).
    The reference for tlb_run's row_access() (the same scan over its flat rows).
    """
    ways = c.shape[1]
    for w in range(ways):
        t = c[s, w]
        if t == tag:
            if lru and w:
                _row_insert_front(c, s, w, tag)
            return HIT
        if t == EMPTY:
            _row_insert_front(c, s, w, tag)
            return EMPTY
    evicted = c[s, ways - 1]
    _row_insert_front(c, s, ways - 1, tag)
    return evicted


# Fully associative structures wider than this use fa_access() (hash + LRU list, O(1)
# per access) instead of the row scan. Up to 64 ways the scan wins: the row is in recency
# order, most hits are in its first ways (a real trace: ~90 % in the first four), and
# ranks 0 and 1 are checked inline in tlb_run (measured on a 27 M-access sort -n trace and
# on bench_tlb's zipf stream: the 48-way scan 2-3x faster than the hash).
FA_SCAN_MAX_WAYS = 64
_HASH_MUL = np.int64(-7046029254386353131)  # 0x9E3779B97F4A7C15, Fibonacci hashing


@njit(cache=True)
def fa_new(entries):
    """State of a fully associative structure: (keys, prev, next, table, meta).

    keys[w]: tag in way w (-1 empty); prev/next: the recency list over ways, meta[0]
    the most recent way, meta[1] the least recent, meta[2] ways in use, meta[3] log2 of
    the table size; table: an open-addressing hash (linear probing, >= 4x entries,
    power of two) of way numbers.
    """
    bits = 2
    while (1 << bits) < 4 * entries:
        bits += 1
    return (np.full(entries, EMPTY, np.int64), np.full(entries, EMPTY, np.int64),
            np.full(entries, EMPTY, np.int64), np.full(1 << bits, EMPTY, np.int64),
            np.array([EMPTY, EMPTY, 0, bits]).astype(np.int64))


@njit(cache=True, inline="always")
def _fa_slot(tag, mask, bits):
    return ((tag * _HASH_MUL) >> (64 - bits)) & mask


@njit(cache=True, inline="always")
def _fa_unlink(prev, nxt, meta, w):
    p, n = prev[w], nxt[w]
    if p != EMPTY:
        nxt[p] = n
    else:
        meta[0] = n
    if n != EMPTY:
        prev[n] = p
    else:
        meta[1] = p


@njit(cache=True, inline="always")
def _fa_push_front(prev, nxt, meta, w):
    prev[w] = EMPTY
    nxt[w] = meta[0]
    if meta[0] != EMPTY:
        prev[meta[0]] = w
    meta[0] = w
    if meta[1] == EMPTY:
        meta[1] = w


@njit(cache=True, inline="always")
def fa_access(keys, prev, nxt, table, meta, tag, lru):
    """cache_access() for a fully associative structure kept as fa_new() state.

    Same contract and same victims as cache_access(): a hit (-2) becomes the most
    recent under LRU; a miss fills an empty way while there is one, else evicts the
    least recent (LRU) or the oldest fill (FIFO: hits never reorder the list), and
    returns the evicted tag or -1.
    """
    # The most recent two entries first, without hashing: in a program's access stream
    # most hits are there (a rank-0 hit changes nothing, a rank-1 hit relinks one entry).
    w = meta[0]
    if w != EMPTY:
        if keys[w] == tag:
            return HIT
        w = nxt[w]
        if w != EMPTY and keys[w] == tag:
            if lru:
                _fa_unlink(prev, nxt, meta, w)
                _fa_push_front(prev, nxt, meta, w)
            return HIT
    mask = table.shape[0] - 1
    bits = meta[3]
    i = _fa_slot(tag, mask, bits)
    while table[i] != EMPTY:
        w = table[i]
        if keys[w] == tag:
            if lru and meta[0] != w:
                _fa_unlink(prev, nxt, meta, w)
                _fa_push_front(prev, nxt, meta, w)
            return HIT
        i = (i + 1) & mask
    # Miss: i is the empty slot where the tag would go.
    evicted = EMPTY
    if meta[2] < keys.shape[0]:
        w = meta[2]
        meta[2] += 1
    else:
        w = meta[1]
        evicted = keys[w]
        _fa_unlink(prev, nxt, meta, w)
        # Delete `evicted` from the hash by backward shift (no tombstones).
        j = _fa_slot(evicted, mask, bits)
        while table[j] != w:
            j = (j + 1) & mask
        k = j
        while True:
            table[j] = EMPTY
            while True:
                k = (k + 1) & mask
                if table[k] == EMPTY:
                    break
                home = _fa_slot(keys[table[k]], mask, bits)
                # keep table[k] where it is if its home lies cyclically in (j, k]
                if (j < k and j < home <= k) or (j > k and (home > j or home <= k)):
                    continue
                break
            if table[k] == EMPTY:
                break
            table[j] = table[k]
            j = k
        # The deletion may have moved entries: find the insertion slot again.
        i = _fa_slot(tag, mask, bits)
        while table[i] != EMPTY:
            i = (i + 1) & mask
    keys[w] = tag
    table[i] = w
    _fa_push_front(prev, nxt, meta, w)
    return evicted


@njit(cache=True)
def lookup_first_bad(addrs, present, pfn, base_shift, leaf_shift, min_shift, max_shift):
    """Index of the first access tlb_run() cannot take (negative address; present with
    pfn < 0 or shifts outside min_shift <= base_shift <= leaf_shift <= max_shift), or
    -1.  One pass, no temporaries: the caller's arrays can be tens of millions long."""
    for i in range(addrs.shape[0]):
        if addrs[i] < 0:
            return i
        if present[i] and (pfn[i] < 0 or base_shift[i] < min_shift
                           or leaf_shift[i] < base_shift[i] or leaf_shift[i] > max_shift):
            return i
    return -1


# ---- the hardware walk, run on an L2 TLB miss ---------------------------------------
# Here, not in hw_walk.py, because tlb_run inlines it: numba keys a cached kernel on
# its own source file, so a kernel and everything it inlines must live in one file.

# The walk tables: a PageTable as flat arrays a compiled walk reads (walk_tables()).
# geo int64: G_* scalars, then G_LEVEL_FIELDS per level top first (shift, entry mask,
# base of its rows in nxt, base of its rows in phys, base of its blocks in bpfn/bcont).
G_L, G_PS, G_CONT_PTE, G_CONT_PMD, G_LEVELS = range(5)
G_LEVEL_FIELDS = 5
MAX_LEVELS = 5  # 52-bit VA with a 4K granule (LPA2) has 5
# hw_tables() params: log2(kernel pages per primary page), kernel page shift, primary
# page shift, desc width (levels of the deeper table).
T_R, T_KS, T_PS, T_WIDTH = range(4)


class WalkTables(NamedTuple):
    """One page table as the flat arrays a compiled walk reads (hw_walk.TableWalker's
    walk_tables(); table_walk() takes them one by one)."""

    geo: np.ndarray        # int64: G_* scalars, then G_LEVEL_FIELDS per level, top first
    nxt: np.ndarray        # int32: per upper-table entry the child's row, -1 none, -2 - b block b
    phys: np.ndarray       # int64: the physical address of each table, by level then row
    bpfn: np.ndarray       # int64: the first pfn of each block mapping
    bcont: np.ndarray      # bool: the contiguous bit of each block mapping
    leaf_slot: np.ndarray  # int64: the leaf pool row of each leaf table
    leaf_pfn: np.ndarray   # int64[rows, entries]: the leaf pool's pfns (the table's own array)
    leaf_cont: np.ndarray  # bool[rows, entries]: the leaf pool's PTE_CONT bits (the same)


class HwTables(NamedTuple):
    """What tlb_run's translate() walks (hw_tables() of a PageTable or NativePageTable)."""

    primary: WalkTables    # the table the MMU walks (the native one when there is one)
    secondary: WalkTables  # the Linux table, for the primary pages listed in fallback
    fallback: np.ndarray   # int64, sorted: primary page numbers walked in the secondary table
    params: np.ndarray     # int64[4]: T_* scalars


@njit(cache=True, inline="always")
def table_walk(addr, geo, nxt, phys, bpfn, bcont, leaf_slot, leaf_pfn, leaf_cont, desc):
    """The hardware walk of one address over the walk_tables() arrays (passed one by one:
    a tuple argument costs a reference count per array per call, more than the walk), as
    _walk() does it: writes the physical address of each descriptor read into desc[level]
    (top first; entries below the walk are left alone) and returns (pfn, leaf_shift): pfn
    in the table's page units, -1 when not mapped (leaf_shift is then the page shift)."""
    L, ps = geo[G_L], geo[G_PS]
    row = np.int64(0)
    pfn = np.int64(-1)
    shift = ps
    for i in range(L):
        f = G_LEVELS + G_LEVEL_FIELDS * i
        lshift = geo[f]
        e = (addr >> lshift) & geo[f + 1]
        desc[i] = phys[geo[f + 3] + row] + e * DESC_SIZE
        if i == L - 1:
            slot = leaf_slot[row]
            pfn = leaf_pfn[slot, e]
            if leaf_cont[slot, e]:
                shift = ps + geo[G_CONT_PTE]
            break
        v = np.int64(nxt[geo[f + 2] + row * (geo[f + 1] + 1) + e])
        if v <= -2:
            b = geo[f + 4] - 2 - v
            pfn = bpfn[b] + ((addr & ((np.int64(1) << lshift) - 1)) >> ps)
            shift = lshift + geo[G_CONT_PMD] if bcont[b] else lshift
            break
        if v < 0:
            break
        row = v
    if pfn < 0:
        return np.int64(-1), ps
    return pfn, shift


# Scalar parameters of tlb_run(), packed in one int64 array (tlb.py: _kernel_params).
(P_L1_SETS, P_L1_WAYS, P_L2_SETS, P_L2_WAYS, P_WC_SETS, P_WC_WAYS, P_LRU,
 P_D1_SETS, P_D1_WAYS, P_D2_SETS, P_D2_WAYS,
 P_WC_LATENCY, P_D1_LATENCY, P_D2_LATENCY, P_MEM_LATENCY,
 P_COALESCE, P_DATA_LINES, P_KERNEL_PAGE_SHIFT, P_LINE_SHIFT, P_TABLES, NR_PARAMS) = range(21)

# Table mode: translations of kernel pages already walked are kept in a direct-mapped memo
# of up to 2**MEMO_BITS entries (a software shortcut over a table that does not change
# while it is used, not a modelled structure), M_FIELDS int64 per kernel page: M_PAGE (EMPTY:
# none), M_PFN (its kernel pfn, -1 when not present), M_KEY (the TLB key of every access
# to it: the entry shift is at least the kernel page's) and M_WAY (where that key was last
# seen in the L1, a hint checked before use).
MEMO_BITS = 16
M_PAGE, M_PFN, M_KEY, M_WAY = range(4)
M_FIELDS = 4


def memo_new(entries):
    """An empty memo of at least `entries` rows (a power of two, at most 2**MEMO_BITS).
    Valid for one table in one state: a caller keeps it across the tlb_run() calls over
    one unchanged table, so each kernel page is walked once for all of them."""
    size = 1
    while size < min(entries, 1 << MEMO_BITS):
        size <<= 1
    memo = np.empty(size * M_FIELDS, np.int64)  # flat: a row's offset is a shift, not a stride product
    memo[M_PAGE::M_FIELDS] = EMPTY
    return memo


# On a walk, tlb_run prefetches the leaf entries and memo slot of the access this many
# accesses ahead: a stream that walks on most accesses (no locality) would otherwise wait
# for one cache miss of the host per access, one after the other.
PREFETCH_AHEAD = 4
# tlb_run's L1 in table mode: stamped, or on its row once L1 misses exceed a quarter of
# the accesses of a window of L1_WINDOW accesses, back to stamps below an eighth.
L1_WINDOW = 4096


class FaState(NamedTuple):
    """A fully associative structure's fa_new() arrays."""

    keys: np.ndarray
    prev: np.ndarray
    next: np.ndarray
    table: np.ndarray
    meta: np.ndarray


class TlbArrays(NamedTuple):
    """The hardware's contents as tlb_run() reads and updates them (tlb_state_new())."""

    rows: np.ndarray        # every set-associative structure's rows in one flat buffer,
    l1: np.ndarray          # and each one as an int64[sets, ways] view of it: L1 TLB,
    l2: np.ndarray          # L2 TLB,
    walk_cache: np.ndarray  # walk cache,
    l1d: np.ndarray         # L1D,
    l2d: np.ndarray         # L2D
    fa_l1: FaState          # the L1 and L2 TLB when fully associative and wider than
    fa_l2: FaState          # FA_SCAN_MAX_WAYS (else one unused way each)


@njit(cache=True)
def tlb_state_new(params):
    """Empty L1/L2 TLB, walk cache and L1D/L2D for params: the TlbArrays that tlb_run()
    updates in place, so a caller can carry the hardware's state from one access stream
    to the next."""
    l1_sets, l1_ways = params[P_L1_SETS], params[P_L1_WAYS]
    l2_sets, l2_ways = params[P_L2_SETS], params[P_L2_WAYS]
    l1_fa = l1_sets == 1 and l1_ways > FA_SCAN_MAX_WAYS
    l2_fa = l2_sets == 1 and l2_ways > FA_SCAN_MAX_WAYS
    fa1k, fa1p, fa1n, fa1t, fa1m = fa_new(l1_ways if l1_fa else 1)
    fa2k, fa2p, fa2n, fa2t, fa2m = fa_new(l2_ways if l2_fa else 1)
    dims = np.array([l1_sets, l1_ways, l2_sets, l2_ways, params[P_WC_SETS], params[P_WC_WAYS],
                     params[P_D1_SETS], params[P_D1_WAYS], params[P_D2_SETS], params[P_D2_WAYS]])
    dims = np.maximum(dims, 1)  # at least one set of one way, as cache_new()
    total = 0
    for k in range(5):
        total += dims[2 * k] * dims[2 * k + 1]
    rows = np.full(total, EMPTY, np.int64)
    o1 = dims[0] * dims[1]
    o2 = o1 + dims[2] * dims[3]
    o3 = o2 + dims[4] * dims[5]
    o4 = o3 + dims[6] * dims[7]
    return TlbArrays(rows, rows[:o1].reshape((dims[0], dims[1])), rows[o1:o2].reshape((dims[2], dims[3])),
                     rows[o2:o3].reshape((dims[4], dims[5])), rows[o3:o4].reshape((dims[6], dims[7])),
                     rows[o4:].reshape((dims[8], dims[9])),
                     FaState(fa1k, fa1p, fa1n, fa1t, fa1m), FaState(fa2k, fa2p, fa2n, fa2t, fa2m))


@njit(cache=True, inline="always")
def record_addr(raw, i):
    """The little-endian int64 address of record i of a compact trace's bytes."""
    v = np.int64(0)
    for b in range(8):
        v |= np.int64(raw[i, b]) << (8 * b)
    return v


@njit(cache=True, error_model="numpy")
def tlb_run(addrs, raw, present, pfn, base_shift, leaf_shift, desc, wkey, params, state, tables, memo):
    """Run the access stream through L1 TLB, L2 TLB, walk cache and data caches.

    Two sources of translations (params[P_TABLES]):
    - 0, a Lookup: present bool[n], pfn int64[n], base_shift/leaf_shift int8[n], desc
      int64[n, L] (top..leaf, -1 below the walk): the pgtable Lookup fields, already
      validated by tlb.py; `tables` is unused. wkey int64[n, L], or no rows: the
      walk-cache key of each descriptor read (desc's shape); without rows the key is the
      descriptor's address, as in hardware (a gap_attribution cell keys the walk cache of
      one system's walks by the other's descriptors: kernel_model/ablation.py).
    - 1, the page table itself: `tables` = hw_tables() (translate() below); the
      per-access arrays are unused. The translation of each kernel page is read once
      through `memo` (memo_new(): the caller's, kept across calls over the unchanged
      table; unused in mode 0); the descriptors are walked only on an L2 TLB miss. The
      same counts as mode 0 over lookup() of the same table.
    params: int64[NR_PARAMS] (P_* indices). Returns int64[NR_COUNTERS] (C_* indices).
    The accesses are addrs, or (table mode) the records `raw` when it has rows (uint8[k, 9]
    of a compact trace, workloads.trace.RecordWindow, already validated): each address is
    decoded here and the writes counted (C_WRITES), no decoded array is made.

    TLB key: (addr >> shift) << 6 | shift, set (addr >> shift) % sets.  Data line:
    (pfn << PAGE_SHIFT | page offset) >> line_shift.  An access whose key is the L1 TLB's
    most recent entry and whose line is the most recent of its L1D set hits both without
    changing any state: it is skipped after two comparisons (the pre-filter).
    """
    l1_sets, l1_ways = params[P_L1_SETS], params[P_L1_WAYS]
    l2_sets, l2_ways = params[P_L2_SETS], params[P_L2_WAYS]
    wc_sets = params[P_WC_SETS]
    lru = params[P_LRU] != 0
    coalesce = params[P_COALESCE] != 0
    data_lines = params[P_DATA_LINES] != 0
    kps = params[P_KERNEL_PAGE_SHIFT]
    kmask = (np.int64(1) << kps) - 1
    line_shift = params[P_LINE_SHIFT]
    wc_latency, d1_latency = params[P_WC_LATENCY], params[P_D1_LATENCY]
    d2_latency, mem_latency = params[P_D2_LATENCY], params[P_MEM_LATENCY]
    from_tables = params[P_TABLES] != 0

    # Counters in locals, not out[]: numba keeps them in registers (an array store per
    # event cannot be, since out could alias the inputs), about a tenth of the loop.
    n_l1_miss = n_l2_miss = n_walks = n_walk_refs = n_walk_cycles = n_wc_hits = np.int64(0)
    n_pt_l1d_miss = n_pt_l2d_miss = n_data_l1d_miss = n_data_l2d_miss = n_absent = np.int64(0)
    l1_fa = l1_sets == 1 and l1_ways > FA_SCAN_MAX_WAYS
    l2_fa = l2_sets == 1 and l2_ways > FA_SCAN_MAX_WAYS
    rows, l1, l2, wc, d1, d2 = state.rows, state.l1, state.l2, state.walk_cache, state.l1d, state.l2d
    fa1, fa2 = state.fa_l1, state.fa_l2
    fa1k, fa1p, fa1n, fa1t, fa1m = fa1.keys, fa1.prev, fa1.next, fa1.table, fa1.meta
    fa2k, fa2p, fa2n, fa2t, fa2m = fa2.keys, fa2.prev, fa2.next, fa2.table, fa2.meta
    # The set-associative structures' rows in `rows` (tlb_state_new): set s of a structure
    # at base + s * ways. The helpers below are closures over `rows` taking only scalars:
    # numba increfs and decrefs (atomically) each array passed to a function, inlined or not.
    l1_w, l2_w, wc_w, d1_w, d2_w = l1.shape[1], l2.shape[1], wc.shape[1], d1.shape[1], d2.shape[1]
    d1_sets, d2_sets = d1.shape[0], d2.shape[0]
    b_l2 = l1.size
    b_wc = b_l2 + l2.size
    b_d1 = b_wc + wc.size
    b_d2 = b_d1 + d1.size

    def row_front(o, w, tag):
        """_row_insert_front() on the row at rows[o]."""
        for k in range(w, 0, -1):
            rows[o + k] = rows[o + k - 1]
        rows[o] = tag

    def row_lookup(o, ways, tag, lru_):
        """Look `tag` up in the row of `ways` tags at rows[o]: -1 on a hit (under LRU now
        the most recent), else the way a fill pushes out (the first empty one, or the last)."""
        for w in range(ways):
            t = rows[o + w]
            if t == tag:
                if lru_ and w:
                    row_front(o, w, tag)
                return -1
            if t == EMPTY:
                return w
        return ways - 1

    def row_has(o, ways, tag):
        """Whether `tag` is in the row of `ways` tags at rows[o] (a scan of every way)."""
        hit = False
        for w in range(ways):
            hit |= rows[o + w] == tag
        return hit

    def row_access(o, ways, tag, lru_):
        """cache_access() on the row of `ways` tags at rows[o]."""
        w = row_lookup(o, ways, tag, lru_)
        if w < 0:
            return HIT
        evicted = rows[o + w]
        row_front(o, w, tag)
        return evicted

    def dcache_read(line):
        """One read of physical cache line `line` through the inclusive L1D/L2D pair.

        L1D is looked up first; on a miss L2D; on a miss memory.  The line is filled into
        L2D (on an L2D miss) and L1D (on an L1D miss).  L2D is inclusive of L1D: a line
        evicted from L2D is invalidated in L1D (WikiChip, Cortex-A76 / Neoverse N1: "The L2
        is strictly inclusive of the L1 data cache").  L1D hits are not seen by L2D, so
        a line hot in L1D can age out of L2D, as in hardware.  Both are true LRU (the TRM's
        L1D is pseudo-LRU; LRU keeps the model checkable).  Returns SERVED_*."""
        o1 = b_d1 + set_index(line, d1_sets) * d1_w
        if row_lookup(o1, d1_w, line, True) < 0:
            return SERVED_L1D
        served = SERVED_L2D
        evicted = row_access(b_d2 + set_index(line, d2_sets) * d2_w, d2_w, line, True)
        if evicted != HIT:
            served = SERVED_MEM
            if evicted != EMPTY:  # the L2D refill evicts before the L1D refill: back-invalidate
                oe = b_d1 + set_index(evicted, d1_sets) * d1_w
                for w in range(d1_w):
                    t = rows[oe + w]
                    if t == EMPTY:
                        break
                    if t == evicted:  # drop it, the row stays compact
                        for k in range(w, d1_w - 1):
                            rows[oe + k] = rows[oe + k + 1]
                        rows[oe + d1_w - 1] = EMPTY
                        break
        row_front(o1, d1_w - 1, line)
        return served

    prim, sec, fallback, tp = tables
    p_geo, p_nxt, p_phys, p_bpfn, p_bcont, p_slot, p_pfn, p_cont = prim
    s_geo, s_nxt, s_phys, s_bpfn, s_bcont, s_slot, s_pfn, s_cont = sec

    def translate(addr, desc):
        """What the MMU sees for one address over hw_tables(): the primary table, or the
        secondary (Linux) one for a primary page listed in the sorted `fallback` array
        (the native table's fallback pages). Returns (kernel pfn or -1, base_shift,
        leaf_shift) and fills desc[:width] (-1 below the walk), as hw_lookup()/lookup()
        do. A closure over the tables, with the primary walk written out: numba increfs
        and decrefs (atomically) every array passed to a function, inlined or not, which
        costs about ten times the walk; the secondary table takes table_walk()."""
        for j in range(tp[T_WIDTH]):
            desc[j] = -1
        ps = tp[T_PS]
        if fallback.size:
            fp = addr >> ps
            k = np.searchsorted(fallback, fp)
            if k < fallback.size and fallback[k] == fp:
                spfn, sshift = table_walk(addr, s_geo, s_nxt, s_phys, s_bpfn, s_bcont, s_slot, s_pfn, s_cont, desc)
                return spfn, s_geo[G_PS], sshift
        # table_walk() over the primary table
        gps = p_geo[G_PS]
        row = np.int64(0)
        tpfn = np.int64(-1)
        shift = gps
        nl = p_geo[G_L]
        for lv in range(nl):
            f = G_LEVELS + G_LEVEL_FIELDS * lv
            lshift = p_geo[f]
            e = (addr >> lshift) & p_geo[f + 1]
            desc[lv] = p_phys[p_geo[f + 3] + row] + e * DESC_SIZE
            if lv == nl - 1:
                slot = p_slot[row]
                tpfn = p_pfn[slot, e]
                if p_cont[slot, e]:
                    shift = gps + p_geo[G_CONT_PTE]
                break
            v = np.int64(p_nxt[p_geo[f + 2] + row * (p_geo[f + 1] + 1) + e])
            if v <= -2:
                b = p_geo[f + 4] - 2 - v
                tpfn = p_bpfn[b] + ((addr & ((np.int64(1) << lshift) - 1)) >> gps)
                shift = lshift + p_geo[G_CONT_PMD] if p_bcont[b] else lshift
                break
            if v < 0:
                break
            row = v
        if tpfn < 0:
            return np.int64(-1), ps, gps
        r = tp[T_R]
        if r:  # a primary-page frame -> the kernel frame of the accessed kernel page
            tpfn = (tpfn << r) | ((addr >> tp[T_KS]) & ((np.int64(1) << r) - 1))
        return tpfn, ps, shift
    # table mode: the memo (memo_new()) and the descriptors of the walk in progress
    msize = memo.shape[0] // M_FIELDS
    scratch = np.full(max(MAX_LEVELS, desc.shape[1]), EMPTY, np.int64)
    ks = tp[1]  # the kernel page shift: the finest granule a translation can change at
    scratch_page = EMPTY  # the kernel page whose walk scratch holds
    def prefetch_translation(addr):
        """Start loading what the memo and translate() will read for `addr`: its memo slot
        and its leaf entries in the primary table, found through the upper levels (a few
        small, cached rows). Hints only: nothing is written."""
        prefetch(memo, ((addr >> ks) & (msize - 1)) * M_FIELDS)
        row = np.int64(0)
        nl = p_geo[G_L]
        for lv in range(nl):
            f = G_LEVELS + G_LEVEL_FIELDS * lv
            e = (addr >> p_geo[f]) & p_geo[f + 1]
            if lv == nl - 1:
                slot = p_slot[row]
                prefetch(p_pfn, slot * p_pfn.shape[1] + e)
                prefetch(p_cont, slot * p_cont.shape[1] + e)
                break
            v = np.int64(p_nxt[p_geo[f + 2] + row * (p_geo[f + 1] + 1) + e])
            if v < 0:
                break
            row = v

    nlev = desc.shape[1] if not from_tables else MAX_LEVELS
    prev_key = EMPTY
    from_raw = raw.shape[0] > 0
    own_keys = from_tables or wkey.shape[0] == 0
    n_writes = np.int64(0)
    n_acc = raw.shape[0] if from_raw else addrs.shape[0]
    reg1 = l1_sets == 1 and l1_w > 1 and lru and not l1_fa  # the L1's ranks 0 and 1 in c0, c1
    c0, c1 = rows[0], rows[1]
    # Table mode, the same L1 (reg1): its ways in l1tag in a fixed order, with the access
    # index of each one's last use in l1time (built from the rows' recency order, and
    # turned back into it): a hit on any way, found through the memo's way hint for the
    # page, costs one comparison and one store, where the row in recency order shifts its
    # first ways. A miss takes an empty way (the ways from l1_used on), else the least
    # recent: exactly the row's LRU. The ways past l1_w hold EMPTY, which no key equals,
    # and a last use later than any: so any hint below FA_SCAN_MAX_WAYS can be checked, and
    # the searches run over all FA_SCAN_MAX_WAYS ways (a fixed count: vectorised, without
    # a branch per way). A miss costs those searches, more than the row's: a stream that
    # misses often (no locality) is run on the row instead (L1_WINDOW; counted only off
    # the path of a hit: on a stamped lookup that missed its hint, on a row lookup past
    # c0, c1).
    adaptive = reg1 and from_tables
    stamped = adaptive
    l1tag = np.full(FA_SCAN_MAX_WAYS, EMPTY, np.int64)
    l1time = np.full(FA_SCAN_MAX_WAYS, STAMP_LATER, np.int64)

    def stamps_from_rows():
        """Fill l1tag/l1time from the L1 row (recency order); returns the ways in use."""
        used = 0
        for w in range(l1_w):
            l1tag[w] = rows[w]
            l1time[w] = STAMP_LATER
            if rows[w] != EMPTY:
                l1time[w] = -1 - w  # older than any access to come
                used += 1
        return used

    def rows_from_stamps(used):
        """Write the stamped L1 back into its row: the most recent first, then the
        empty ways (untouched: ways only fill)."""
        order = np.argsort(-l1time[:used])
        for w in range(used):
            rows[w] = l1tag[order[w]]

    l1_used = stamps_from_rows() if stamped else 0
    win_start = win_miss = np.int64(0)  # the window's first access, L1 misses in it (adaptive)

    def l1_find(key):
        """The way of the stamped L1 that holds `key`, or -1."""
        hit = False
        at = 0
        for w in range(FA_SCAN_MAX_WAYS):
            e = l1tag[w] == key
            hit |= e
            at += w if e else 0
        return at if hit else -1

    def l1_lru():
        """The least recent way of the full stamped L1 (its last uses are distinct)."""
        oldest = l1time[0]
        for w in range(1, FA_SCAN_MAX_WAYS):
            oldest = min(oldest, l1time[w])
        at = 0
        for w in range(FA_SCAN_MAX_WAYS):
            at += w if l1time[w] == oldest else 0
        return at
    l1_missed = False  # the last L1 lookup past c0, c1 missed
    same_shift = min(line_shift, ks)  # the virtual line of the last present access (table mode)
    same_line = EMPTY
    i = np.int64(-1)
    while True:
        i += 1
        # Table mode: skip the accesses to the same line as the previous access, which was
        # present: its key is the L1 TLB's most recent entry and its line the most recent of
        # its L1D set (the data read comes last), so such an access changes nothing (the
        # pre-filter, below, with neither translated: a page never splits a line,
        # same_shift <= ks). A loop of its own: its few variables stay in registers.
        while i < n_acc:
            if from_raw:
                addr = record_addr(raw, i)
                n_writes += raw[i, 8]
            else:
                addr = addrs[i]
            if not from_tables or addr >> same_shift != same_line:
                break
            i += 1
        if i >= n_acc:
            break
        if from_tables:
            kp = addr >> ks
            m = (kp & (msize - 1)) * M_FIELDS
            if memo[m + M_PAGE] != kp:
                tpfn, tbase, tleaf = translate(addr, scratch)
                scratch_page = kp
                tshift = tleaf if coalesce else tbase
                memo[m + M_PAGE] = kp
                memo[m + M_PFN] = tpfn
                memo[m + M_KEY] = ((addr >> tshift) << 6) | tshift
                memo[m + M_WAY] = 0
            a_pfn = memo[m + M_PFN]
            is_present = a_pfn >= 0
            key = memo[m + M_KEY]
            shift = key & 63
        else:
            is_present = present[i]
            a_pfn = pfn[i]
            shift = np.int64(leaf_shift[i]) if coalesce else np.int64(base_shift[i])
            key = ((addr >> shift) << 6) | shift
        walk = False
        same_line = addr >> same_shift if is_present else EMPTY
        if not is_present:
            n_absent += 1
            prev_key = EMPTY
            n_l1_miss += 1
            n_l2_miss += 1
            walk = True
            line = EMPTY
        else:
            tag = addr >> shift
            line = EMPTY
            if data_lines:
                line = ((a_pfn << kps) | (addr & kmask)) >> line_shift
            if stamped:
                h = memo[m + M_WAY]
                if l1tag[h] == key:
                    l1time[h] = i
                    r1 = HIT
                else:
                    w = l1_find(key)
                    r1 = HIT
                    if w < 0:
                        if l1_used < l1_w:
                            w = l1_used
                            l1_used += 1
                        else:
                            w = l1_lru()
                        r1 = l1tag[w]
                        l1tag[w] = key
                    l1time[w] = i
                    memo[m + M_WAY] = w
                    win_miss += r1 != HIT  # counted here, off the path of a hit
                    if i - win_start >= L1_WINDOW:
                        if win_miss > L1_WINDOW // 4:  # to the row
                            rows_from_stamps(l1_used)
                            c0, c1 = rows[0], rows[1]
                            l1_missed = r1 != HIT
                            stamped = False
                        win_start, win_miss = i, 0
            elif reg1:
                # A fully associative LRU L1 scanned as one row: its two most recent entries
                # are kept in c0, c1 (rows[0], rows[1] are stale meanwhile), so a hit on
                # either changes registers only, not memory the next access reads back.
                h1 = key == c1
                if (key == c0) | h1:
                    c1 = c0 if h1 else c1
                    c0 = key
                    r1 = HIT
                else:
                    rows[0], rows[1] = c0, c1
                    # After a miss, expect another (a stream without locality): test the
                    # whole full row at once (vectorised, no early exit) and on a miss push
                    # the last way out, what row_access() would do after its scan.
                    if l1_missed and rows[l1_w - 1] != EMPTY and not row_has(0, l1_w, key):
                        r1 = rows[l1_w - 1]
                        row_front(0, l1_w - 1, key)
                    else:
                        r1 = row_access(0, l1_w, key, lru)
                    c0, c1 = rows[0], rows[1]
                    l1_missed = r1 != HIT
                    win_miss += l1_missed
                    if adaptive and i - win_start >= L1_WINDOW:
                        if win_miss < L1_WINDOW // 8:  # back to stamps (the row is up to date here)
                            l1_used = stamps_from_rows()
                            stamped = True
                        win_start, win_miss = i, 0
            elif key == prev_key:
                # The L1 TLB's most recent entry (prev_key: no L1 operation since): a hit
                # that changes nothing. If the line is also its L1D set's most recent, the
                # data read is such a hit too and the access changes no state at all.
                if not data_lines or d1[set_index(line, d1_sets), 0] == line:
                    continue
                r1 = HIT
            elif l1_fa:
                r1 = fa_access(fa1k, fa1p, fa1n, fa1t, fa1m, key, lru)
            else:
                # ranks 0 and 1 of the set inline (most hits): a call passing the arrays
                # costs atomic reference counting, several times the lookup itself
                s1 = set_index(tag, l1_sets)
                if l1[s1, 0] == key:
                    r1 = HIT
                elif l1_ways > 1 and l1[s1, 1] == key:
                    if lru:
                        l1[s1, 1] = l1[s1, 0]
                        l1[s1, 0] = key
                    r1 = HIT
                else:
                    r1 = row_access(s1 * l1_w, l1_w, key, lru)
            prev_key = key
            if r1 != HIT:
                n_l1_miss += 1
                if l2_fa:
                    r2 = fa_access(fa2k, fa2p, fa2n, fa2t, fa2m, key, lru)
                else:
                    r2 = row_access(b_l2 + set_index(tag, l2_sets) * l2_w, l2_w, key, lru)
                if r2 != HIT:
                    n_l2_miss += 1
                    walk = True
        if walk:
            n_walks += 1
            if from_tables:
                ahead = i + PREFETCH_AHEAD
                if ahead < n_acc:
                    prefetch_translation(record_addr(raw, ahead) if from_raw else addrs[ahead])
                if scratch_page != addr >> ks:  # not the walk that just filled the memo
                    translate(addr, scratch)
                    scratch_page = addr >> ks
            else:  # scratch, not a view desc[i]: an array variable costs a reference count per access
                for j in range(nlev):
                    scratch[j] = desc[i, j]
            last = -1
            for j in range(nlev):
                if scratch[j] >= 0:
                    last = j
            # The walk cache holds table descriptors (all levels above the last one
            # read); probe deepest first, resume the walk below the deepest hit.
            start = 0
            if wc_sets > 0:
                n_walk_cycles += wc_latency
                for j in range(last - 1, -1, -1):
                    d = scratch[j] if own_keys else wkey[i, j]  # no array view per walk
                    if scratch[j] >= 0 and row_lookup(b_wc + set_index(d >> 3, wc_sets) * wc_w, wc_w, d, lru) < 0:
                        n_wc_hits += 1
                        start = j + 1
                        break
            for j in range(start, last + 1):
                d = scratch[j]
                if d < 0:
                    continue
                n_walk_refs += 1
                dl = d >> line_shift
                served = SERVED_L1D if d1[set_index(dl, d1_sets), 0] == dl else dcache_read(dl)
                if served == SERVED_L1D:
                    n_walk_cycles += d1_latency
                elif served == SERVED_L2D:
                    n_walk_cycles += d2_latency
                    n_pt_l1d_miss += 1
                else:
                    n_walk_cycles += mem_latency
                    n_pt_l1d_miss += 1
                    n_pt_l2d_miss += 1
                if j < last and wc_sets > 0:
                    k = d if own_keys else wkey[i, j]
                    row_front(b_wc + set_index(k >> 3, wc_sets) * wc_w, wc_w - 1, k)  # fill
        if line >= 0 and d1[set_index(line, d1_sets), 0] != line:  # not a rank-0 L1D hit
            served = dcache_read(line)
            if served != SERVED_L1D:
                n_data_l1d_miss += 1
                if served == SERVED_MEM:
                    n_data_l2d_miss += 1
    if stamped:
        rows_from_stamps(l1_used)
    elif reg1:
        rows[0], rows[1] = c0, c1
    out = np.zeros(NR_COUNTERS, dtype=np.int64)
    out[C_L1_MISS] = n_l1_miss
    out[C_L2_MISS] = n_l2_miss
    out[C_WALKS] = n_walks
    out[C_WALK_REFS] = n_walk_refs
    out[C_WALK_CYCLES] = n_walk_cycles
    out[C_WC_HITS] = n_wc_hits
    out[C_PT_L1D_MISS] = n_pt_l1d_miss
    out[C_PT_L2D_MISS] = n_pt_l2d_miss
    out[C_DATA_L1D_MISS] = n_data_l1d_miss
    out[C_DATA_L2D_MISS] = n_data_l2d_miss
    out[C_NOT_PRESENT] = n_absent
    out[C_WRITES] = n_writes
    return out
