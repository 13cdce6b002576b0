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

import numpy as np
from numba import njit

_EMPTY = -1
_READ, _WRITTEN = 1, 2
_HASH_MUL = np.int64(-7046029254386353131)  # 0x9E3779B97F4A7C15, Fibonacci hashing


@njit(cache=True, inline="always")
def _slot(page, bits):
    return (page * _HASH_MUL) >> (64 - bits) & ((np.int64(1) << bits) - 1)


@njit(cache=True, inline="always")
def _record_addr(raw, i):
    """The little-endian int64 address of record i of a compact trace's bytes."""
    v = np.int64(0)
    for b in range(8):
        v |= np.int64(raw[i, b]) << (8 * b)
    return v


@njit(cache=True)
def _scan(addrs, is_write, raw, page_shift, start, keys, flags, bits, used, ev_idx, nev, acc):
    """Record the events of the accesses from `start` on (page = addr >> page_shift) until
    the set is half full; returns (the index to resume at, pages in the set, events
    recorded). The accesses are addrs/is_write, or the records `raw` (uint8[k, 9],
    workloads.trace.RecordWindow) when it has rows. acc: int64[3], the lowest and highest
    address seen (updated) and, for records, the first one with a negative address or a
    write byte other than 0/1 (the scan stops there)."""
    limit = keys.shape[0] >> 1
    prev = np.int64(_EMPTY)
    prev_written = False
    from_raw = raw.shape[0] > 0
    n = raw.shape[0] if from_raw else addrs.shape[0]
    lo, hi = acc[0], acc[1]
    for i in range(start, n):
        if from_raw:
            a = _record_addr(raw, i)
            wb = raw[i, 8]
            if a < 0 or wb > 1:
                acc[0], acc[1], acc[2] = lo, hi, i
                return n, used, nev
            w = wb != 0
        else:
            a = addrs[i]
            w = is_write[i]
        lo = min(lo, a)
        hi = max(hi, a)
        p = a >> page_shift
        if p == prev and (prev_written or not w):
            continue
        s = _slot(p, bits)
        while keys[s] != _EMPTY and keys[s] != p:
            s = (s + 1) & (keys.shape[0] - 1)
        if keys[s] == _EMPTY:
            if used >= limit:
                acc[0], acc[1] = lo, hi
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
        prev = p
        prev_written = flags[s] == _WRITTEN
    acc[0], acc[1] = lo, hi
    return n, used, nev


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
        Sets self.lo/self.hi to the chunk's lowest/highest address."""
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
        acc = np.array([np.iinfo(np.int64).max, np.iinfo(np.int64).min, -1], np.int64)
        # at most two events per page: a chunk has at most 2 * (pages in the set after it)
        ev_idx = np.empty(min(n, 2 * self._keys.size), np.int64)
        i, nev = 0, 0
        while True:
            i, self._used, nev = _scan(addrs, is_write, raw, self.page_shift, i, self._keys, self._flags,
                                       self._bits, self._used, ev_idx, nev, acc)
            if i == n:
                self.lo, self.hi = int(acc[0]), int(acc[1])
                return ev_idx[:nev].copy(), int(acc[2])
            self._bits += 1
            self._keys, self._flags = _rehash(self._keys, self._flags, self._bits)
            if ev_idx.size < min(n, 2 * self._keys.size):
                ev_idx = np.concatenate([ev_idx, np.empty(min(n, 2 * self._keys.size) - ev_idx.size, np.int64)])

    def pages(self) -> np.ndarray:
        """Every page seen, ascending."""
        return np.sort(self._keys[self._keys != _EMPTY])
