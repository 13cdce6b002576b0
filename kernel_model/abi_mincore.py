"""mincore, msync and the access path touch() in process-page units.

Counterparts: mm/mincore.c (SYSCALL mincore, do_mincore(), mincore_page()), mm/msync.c
(SYSCALL msync), arch/arm64/mm/fault.c (do_page_fault(): the VMA permission check and
VM_FAULT_* -> signal). Cases: tools/testing/selftests/mincore/mincore_selftest.c,
LTP mincore01..04, msync01..04.
"""

from __future__ import annotations

import errno
import signal

import numpy as np

from . import memory
from .abi_common import MS_ASYNC, MS_INVALIDATE, MS_SYNC, U64, offset_in_page, page_align, u64
from .filemap import filemap_get_folios
from .mm_types import (VM_FAULT_OOM, VM_FAULT_RETRY, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV, VM_LOCKED, VM_READ,
                       VM_SHARED, VM_WRITE)


class MincoreOps:
    """mincore/msync/touch of a Process."""

    # -- mincore ------------------------------------------------------------------------
    def mincore(self, addr: int, length: int):
        """mincore(2): a list with one 0/1 entry per PROCESS page of [addr, addr + length),
        or -errno: an unaligned start -> -EINVAL, a range beyond TASK_SIZE -> -ENOMEM, an
        unmapped page -> -ENOMEM (mm/mincore.c do_mincore(): vma_lookup() fails)."""
        ps = self.page_size
        start, length = u64(addr), u64(length)
        if offset_in_page(start, ps):
            return -errno.EINVAL
        if length > self.task_size or start > self.task_size - length:  # access_ok()
            return -errno.ENOMEM
        pages = length // ps + (1 if offset_in_page(length, ps) else 0)
        end = start + pages * ps
        if pages == 0:
            return []
        cur = start
        vec = []
        for vma in self.mm.vmas.find_intersection(start, end):
            if vma.start > cur:
                return -errno.ENOMEM
            hi = min(end, vma.end)
            vec.append(self._mincore_vma(vma, cur, hi))
            cur = hi
        if cur < end:
            return -errno.ENOMEM
        flat = np.concatenate(vec)
        # one entry per process page: the kernel-page vector at each process page's first page
        # (a process page is mapped and cached as a whole; the EOF-overhang pad is its tail)
        kps = self.system.kernel_page_size
        per = ps // kps
        return [int(x) for x in flat.reshape(-1, per)[:, 0]] if per > 1 else [int(x) for x in flat]

    def _mincore_vma(self, vma, lo: int, hi: int) -> np.ndarray:
        """Residency of every kernel page of [lo, hi) in vma: a present PTE, or for a file
        VMA a page-cache folio at that index (mincore_page())."""
        kps = self.system.kernel_page_size
        addrs = np.arange(lo, hi, kps, dtype=np.int64)
        present = self.mm.pgtable.lookup(addrs).present.astype(np.uint8)
        if vma.file is not None:
            first = vma.pgoff + (lo - vma.start) // kps
            cached = np.zeros(addrs.size, dtype=np.uint8)
            for folio in filemap_get_folios(vma.file.mapping, first, first + addrs.size):
                a = max(folio.index, first) - first
                b = min(folio.index + folio.nr_pages, first + addrs.size) - first
                cached[a:b] = 1
            present |= cached
        return present

    # -- msync --------------------------------------------------------------------------
    def msync(self, addr: int, length: int, flags: int) -> int:
        """msync(2): MS_SYNC writes back the dirty page-cache folios of shared file mappings."""
        ps = self.page_size
        start, length, flags = u64(addr), u64(length), u64(flags)
        if flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC):
            return -errno.EINVAL
        if offset_in_page(start, ps):
            return -errno.EINVAL
        if flags & MS_ASYNC and flags & MS_SYNC:
            return -errno.EINVAL
        length = page_align(length, ps)
        end = start + length
        if end > U64:
            return -errno.ENOMEM
        if end == start:
            return 0
        unmapped_error = 0
        cur = start
        while True:
            vma = self.mm.vmas.find_vma(cur)
            if vma is None:
                return -errno.ENOMEM
            if cur < vma.start:
                if flags == MS_ASYNC:
                    return -errno.ENOMEM
                cur = vma.start
                if cur >= end:
                    return -errno.ENOMEM
                unmapped_error = -errno.ENOMEM
            if flags & MS_INVALIDATE and vma.flags & VM_LOCKED:
                return -errno.EBUSY
            hi = min(end, vma.end)
            if flags & MS_SYNC and vma.file is not None and vma.flags & VM_SHARED:
                self._writeback(vma, cur, hi)
            cur = vma.end
            if cur >= end:
                return unmapped_error

    def _writeback(self, vma, lo: int, hi: int) -> None:
        """vfs_fsync_range(): clean the dirty folios caching the range, counting the bytes."""
        kps = self.system.kernel_page_size
        first = vma.pgoff + (lo - vma.start) // kps
        for folio in filemap_get_folios(vma.file.mapping, first, first + (hi - lo) // kps):
            if folio.dirty:
                folio.dirty = False
                self.system.stats.count("msync_writeback_bytes", folio.size(kps))

    # -- the access path ----------------------------------------------------------------
    def touch(self, addr: int, write: bool = False) -> int:
        """One user access: 0, or signal.SIGSEGV / signal.SIGBUS as Linux would deliver.

        arch/arm64/mm/fault.c do_page_fault(): no VMA -> SIGSEGV; a write needs VM_WRITE; a
        read needs VM_READ or VM_WRITE (PROT_WRITE implies PROT_READ; with EPAN exec does not
        imply read). A present PTE that allows the access does not fault at all. Otherwise
        handle_mm_fault(): VM_FAULT_SIGBUS -> SIGBUS, VM_FAULT_SIGSEGV -> SIGSEGV. A write
        re-dirties a MADV_FREE folio (it is no longer lazy-free).
        """
        mm = self.mm
        addr = int(addr)
        if not 0 <= addr < self.task_size:
            return signal.SIGSEGV
        vma = mm.vmas.find(addr)
        if vma is None:
            return signal.SIGSEGV
        if write and not vma.flags & VM_WRITE:
            return signal.SIGSEGV
        if not write and not vma.flags & (VM_READ | VM_WRITE):
            return signal.SIGSEGV
        look = mm.pgtable.lookup(np.array([addr], dtype=np.int64))
        if look.present[0] and (not write or int(look.prot[0]) & VM_WRITE):
            if write:
                self._redirty(int(look.pfn[0]))
            return 0
        ret = memory.handle_mm_fault(mm, addr, bool(write))
        if ret & VM_FAULT_SIGBUS:
            return signal.SIGBUS
        if ret & (VM_FAULT_SIGSEGV | VM_FAULT_OOM):
            return signal.SIGSEGV
        if ret & VM_FAULT_RETRY:
            return int(VM_FAULT_RETRY)  # blocked on userfaultfd until UFFDIO_COPY/ZEROPAGE
        if write:
            look = mm.pgtable.lookup(np.array([addr], dtype=np.int64))
            if look.present[0]:
                self._redirty(int(look.pfn[0]))
        return 0

    def _redirty(self, pfn: int) -> None:
        folio = self.system.pfn_folio(pfn)
        if folio is not None:
            folio.dirty = True
            self.lazyfree.discard(folio)
