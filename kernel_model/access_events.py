"""The fault events of an access stream: each page's first touch and first write.

An Access phase takes a fault at the first touch of each process page, and again at its
first write after a read (the write-protect fault on the zero page or a COW page), in
access order (kernel_model/simulate.py: Runner._fault_in). Only those accesses can
fault, so the simulator hands the fault path just them: at most two per page, found
here in one compiled pass over the stream with a hash set of the pages seen, instead
of a sort of the whole stream. A stream read in chunks keeps one FirstTouch across its
chunks: the events are those of the whole stream, whatever the chunk size.
"""

from __future__ import annotations

import sys

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .tlb_cache import prefetch  # an intrinsic: compiled into _scan (after a change: warmup --force)

_EMPTY = -1
_READ, _WRITTEN = 1, 2
_HASH_MUL = np.int64(-7046029254386353131)  # 0x9E3779B97F4A7C15, Fibonacci hashing


@njit(cache=True, inline="always")
def _slot(page, bits):
    return (page * _HASH_MUL) >> (64 - bits) & ((np.int64(1) << bits) - 1)


@intrinsic
def _load_i64(typingctx, raw, offset):
    """The int64 at byte `offset` of the C-contiguous bytes `raw`, one unaligned load (the
    eight byte loads and shifts of a decode are not merged into one in a loop that also
    stores, which the scan below does)."""
    if not (isinstance(raw, types.Array) and raw.dtype == types.uint8 and raw.layout == "C"
            and isinstance(offset, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        off = context.cast(builder, args[1], signature.args[1], types.intp)
        ptr = builder.bitcast(builder.gep(ary.data, [off]), ir.IntType(64).as_pointer())
        return builder.load(ptr, align=1)
    return types.int64(raw, offset), codegen


_LITTLE_ENDIAN = sys.byteorder == "little"


@njit(cache=True, inline="always")
def _record_addr(raw, i):
    """The little-endian int64 address of record i of a compact trace's bytes."""
    if _LITTLE_ENDIAN:
        return _load_i64(raw, 9 * i)
    v = np.int64(0)
    for b in range(8):
        v |= np.int64(raw[i, b]) << (8 * b)
    return v


# The state of the most recently seen pages, by page % _RECENT: page << 1 | written. An
# access to one of them that adds no event (its page seen, and written or a read) is
# skipped after one comparison: a program alternates between a few pages (stack, heap,
# code data), so a single "previous page" would miss about half of the time.
_RECENT = 64

# The records come from a memory-mapped file: the scan asks for their bytes this many
# records ahead, once per 8 records (a cache line holds 7.1). Without it each new 4K page
# of the file stalls the scan, which then takes 1.8x as long (27 M-access trace; the
# CPU's own prefetcher stops at page boundaries). tlb_run, which does more per access,
# gains nothing from it.
PREFETCH_RECORDS = 512


@njit(cache=True)
def _scan(addrs, is_write, raw, page_shift, start, keys, flags, bits, used, ev_idx, nev, acc):
    """Record the events of the accesses from `start` on (page = addr >> page_shift) until
    the set is half full; returns (the index to resume at, pages in the set, events
    recorded). The accesses are addrs/is_write, or the records `raw` (uint8[k, 9],
    workloads.trace.RecordWindow, decoded here) when it has rows. acc: int64[3] updated
    with the OR of the addresses seen (negative if one is), the highest page, and the OR
    of the write bytes of the records (above 1 if one is not 0 or 1). Only the accesses
    past the `recent` filter are ORed: every page's first access of the call is (`recent`
    starts with a page of another slot in each, which matches no access), so is every
    negative address (a negative page), and so is every write byte above 1 (its bits
    above bit 0 fail the filter's test)."""
    recent = ((np.arange(_RECENT) + 1) & (_RECENT - 1)) << 1
    ors, hi, wor = acc[0], acc[1], acc[2]
    mask = keys.shape[0] - 1
    limit = keys.shape[0] >> 1
    from_raw = raw.shape[0] > 0
    n = raw.shape[0] if from_raw else addrs.shape[0]
    for i in range(start, n):
        if from_raw:
            if (i & 7) == 0:
                prefetch(raw, 9 * (i + PREFETCH_RECORDS))
            a = _record_addr(raw, i)
            wb = np.int64(raw[i, 8])
        else:
            a = addrs[i]
            wb = np.int64(is_write[i])
        p = a >> page_shift
        # recent: page << 1 | written. No event when the page is seen and written, or
        # seen and this is a read: x >> 1 == 0 (same page) and no write bit beyond x's.
        x = recent[p & (_RECENT - 1)] ^ (p << 1)
        if ((x >> 1) | (wb & ~x)) == 0:
            continue
        ors |= a
        wor |= wb
        w = wb != 0
        hi = max(hi, p)
        s = _slot(p, bits)
        while keys[s] != _EMPTY and keys[s] != p:
            s = (s + 1) & mask
        if keys[s] == _EMPTY:
            if used >= limit:
                acc[0], acc[1], acc[2] = ors, hi, wor
                return i, used, nev
            keys[s] = p
            flags[s] = _WRITTEN if w else _READ
            used += 1
            ev_idx[nev] = i
            nev += 1
        elif w and flags[s] == _READ:
            flags[s] = _WRITTEN
            ev_idx[nev] = i
            nev += 1
        recent[p & (_RECENT - 1)] = p << 1 | (flags[s] == _WRITTEN)
    acc[0], acc[1], acc[2] = ors, hi, wor
    return n, used, nev


@njit(cache=True)
def _first_bad_record(raw):
    """The first record with a negative address or a write byte other than 0/1, or -1."""
    for i in range(raw.shape[0]):
        if _record_addr(raw, i) < 0 or raw[i, 8] > 1:
            return i
    return -1


@njit(cache=True)
def _rehash(keys, flags, bits):
    nk = np.full(1 << bits, _EMPTY, np.int64)
    nf = np.zeros(1 << bits, np.int8)
    for j in range(keys.shape[0]):
        p = keys[j]
        if p != _EMPTY:
            s = _slot(p, bits)
            while nk[s] != _EMPTY:
                s = (s + 1) & (nk.shape[0] - 1)
            nk[s] = p
            nf[s] = flags[j]
    return nk, nf


def _read_only(a):
    a.flags.writeable = False
    return a


# placeholders of the unused source: the types of a chunk's arrays and of a RecordWindow's bytes
_NO_ADDRS = np.zeros(0, np.int64)
_NO_WRITES = _read_only(np.zeros(0, np.bool_))
_NO_RECORDS = _read_only(np.zeros((0, 9), np.uint8))


class FirstTouch:
    """The pages seen so far in one access stream (memory: the stream's footprint)."""

    def __init__(self, page_shift: int):
        self.page_shift = int(page_shift)
        self._bits = 12
        self._keys = np.full(1 << self._bits, _EMPTY, np.int64)
        self._flags = np.zeros(1 << self._bits, np.int8)
        self._used = 0

    def events(self, addrs: np.ndarray, is_write: np.ndarray) -> np.ndarray:
        """Indices into this chunk of its accesses that take a fault event (a page's first
        touch in the stream, or its first write after reads), ascending; remembers them.
        Sets self.hi_page to the chunk's highest page and self.negative when one of its
        addresses is negative."""
        if is_write.flags.writeable:  # one compiled signature for phases' read-only arrays and chunks
            is_write = is_write.view()
            is_write.flags.writeable = False
        return self._events(addrs, is_write, _NO_RECORDS)[0]

    def record_events(self, raw: np.ndarray):
        """events() of the records `raw` (a RecordWindow's uint8[k, 9]), decoded in the same
        pass: (event indices, the first record with a negative address or a write byte
        other than 0/1, or -1; the events are then incomplete)."""
        return self._events(_NO_ADDRS, _NO_WRITES, raw)

    def _events(self, addrs, is_write, raw):
        n = raw.shape[0] or addrs.size
        acc = np.array([0, np.iinfo(np.int64).min, 0], np.int64)
        # at most two events per page: a chunk has at most 2 * (pages in the set after it)
        ev_idx = np.empty(min(n, 2 * self._keys.size), np.int64)
        i, nev = 0, 0
        while True:
            i, self._used, nev = _scan(addrs, is_write, raw, self.page_shift, i, self._keys, self._flags,
                                       self._bits, self._used, ev_idx, nev, acc)
            if i == n:
                break
            self._bits += 1
            self._keys, self._flags = _rehash(self._keys, self._flags, self._bits)
            if ev_idx.size < min(n, 2 * self._keys.size):
                ev_idx = np.concatenate([ev_idx, np.empty(min(n, 2 * self._keys.size) - ev_idx.size, np.int64)])
        self.hi_page = int(acc[1])
        self.negative = bool(acc[0] < 0)
        bad = _first_bad_record(raw) if acc[0] < 0 or acc[2] > 1 else -1
        return ev_idx[:nev].copy(), bad

    def __len__(self) -> int:
        """The number of pages seen."""
        return self._used

    def pages(self) -> np.ndarray:
        """Every page seen, ascending."""
        return np.sort(self._keys[self._keys != _EMPTY])
