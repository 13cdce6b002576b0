"""userfaultfd in process pages: register, missing-fault events, UFFDIO_COPY / UFFDIO_ZEROPAGE.

Counterparts: fs/userfaultfd.c (userfaultfd_register(), handle_userfault(),
userfaultfd_copy(), userfaultfd_zeropage(), validate_range()), mm/userfaultfd.c
(mfill_atomic(), mfill_atomic_pte_copy(), mfill_atomic_pte_zeroed_folio()),
include/uapi/linux/userfaultfd.h, tools/testing/selftests/mm/uffd-unit-tests.c.

The thread (Kalesh Singh / Dev Jain): "userfaultfd ... inherently operates at the strict
PTE granularity of the underlying kernel (4KB) ... We will have to fault in 16 4K pages."
Here every range, fault address and fill is in PROCESS pages: a fault is reported with
its address masked to the process page, and one UFFDIO_COPY of a 64K process page on a
4K kernel installs 16 kernel PTEs (counted in system.stats "uffd_kernel_pages_installed").
"""

from __future__ import annotations

import errno
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .mm_types import VM_FAULT_RETRY, VM_FAULT_SIGBUS, VM_MAYWRITE, VM_SHARED, VM_UFFD_MISSING, VM_UFFD_WP, Mm
from .rmap import map_folio_range

# include/uapi/linux/userfaultfd.h
UFFD_API = 0xAA
UFFDIO_REGISTER_MODE_MISSING = 1 << 0
UFFDIO_REGISTER_MODE_WP = 1 << 1
UFFDIO_REGISTER_MODE_MINOR = 1 << 2
UFFDIO_COPY_MODE_DONTWAKE = 1 << 0
UFFDIO_COPY_MODE_WP = 1 << 1
UFFDIO_ZEROPAGE_MODE_DONTWAKE = 1 << 0
UFFD_EVENT_PAGEFAULT = 0x12
UFFD_PAGEFAULT_FLAG_WRITE = 1 << 0
# _UFFDIO_* ioctl numbers, reported back in uffdio_register.ioctls (UFFD_API_RANGE_IOCTLS).
_UFFDIO_WAKE = 0x02
_UFFDIO_COPY = 0x03
_UFFDIO_ZEROPAGE = 0x04
_UFFDIO_WRITEPROTECT = 0x06
_UFFDIO_CONTINUE = 0x07
_UFFDIO_POISON = 0x08
UFFD_API_RANGE_IOCTLS_BASIC = (1 << _UFFDIO_WAKE) | (1 << _UFFDIO_COPY) | (1 << _UFFDIO_ZEROPAGE)

STAT_INSTALLED = "uffd_kernel_pages_installed"
STAT_FAULTS = "uffd_faults"


@dataclass(frozen=True)
class UffdMsg:
    """struct uffd_msg for UFFD_EVENT_PAGEFAULT: the address is masked to the process page."""

    event: int
    address: int
    flags: int


class UffdRange(NamedTuple):
    """A registered range [start, end) of a context and its UFFDIO_REGISTER_MODE_* bits."""

    start: int
    end: int
    mode: int


@dataclass(eq=False)
class UserfaultfdCtx:
    """struct userfaultfd_ctx: the registered ranges of one mm and the pending fault queue."""

    mm: Mm
    ranges: list[UffdRange] = field(default_factory=list)  # registered, disjoint, ascending
    pending: deque = field(default_factory=deque)  # UffdMsg not yet read
    waiting: set = field(default_factory=set)  # process-page addresses with a blocked thread
    last_copy: int = 0  # uffdio_copy.copy / uffdio_zeropage.zeropage of the last call
    last_ioctls: int = 0  # uffdio_register.ioctls of the last register

    def covering(self, addr: int):
        for start, end, mode in _live_ranges(self):
            if start <= addr < end:
                return mode
        return 0


def handle_userfault(mm, vma, addr: int, write: bool) -> int:
    """The fault path's call for a missing page in a VM_UFFD_MISSING vma (fs/userfaultfd.c).

    Queues one UFFD_EVENT_PAGEFAULT whose address is `addr` masked to the process page
    (the kernel masks to PAGE_SIZE unless UFFD_FEATURE_EXACT_ADDRESS; here the page is the
    process page), and returns VM_FAULT_RETRY: the thread is blocked until UFFDIO_COPY /
    ZEROPAGE fills the page and wakes it. A second fault on a page whose thread is already
    waiting queues no new message (the selftests read one message per blocked page).
    No context covering `addr` -> VM_FAULT_SIGBUS, as handle_userfault() does when the ctx
    is gone (the "ret = VM_FAULT_SIGBUS" default).
    """
    page = addr & ~(mm.page_size - 1)
    for ctx in mm.uffd_ctxs:
        if ctx.covering(addr) & UFFDIO_REGISTER_MODE_MISSING:
            if page not in ctx.waiting:
                ctx.waiting.add(page)
                flags = UFFD_PAGEFAULT_FLAG_WRITE if write else 0
                ctx.pending.append(UffdMsg(UFFD_EVENT_PAGEFAULT, page, flags))
                mm.system.stats.count(STAT_FAULTS)
            return VM_FAULT_RETRY
    return VM_FAULT_SIGBUS


def _live_ranges(ctx) -> list:
    """ctx.ranges cut to the VMAs that still carry VM_UFFD_MISSING (munmap, mremap and
    exec drop a registration with the VMA, as vma->vm_userfaultfd_ctx goes with it)."""
    out = []
    for s, e, m in ctx.ranges:
        for vma in ctx.mm.vmas.find_intersection(s, e):
            if vma.flags & VM_UFFD_MISSING:
                out.append(UffdRange(max(s, vma.start), min(e, vma.end), m))
    return out


def dup_userfaultfd(parent_mm, child_mm) -> None:
    """fork: the child's VMAs lose their registration (fs/userfaultfd.c dup_userfaultfd():
    without UFFD_FEATURE_EVENT_FORK, which the model does not offer, the child VMA is reset
    with userfaultfd_reset_ctx()). kernel/fork.c dup_mmap() calls it for every VMA."""
    for vma in list(child_mm.vmas):
        if vma.flags & (VM_UFFD_MISSING | VM_UFFD_WP):
            child_mm.vmas.set_flags(vma.start, vma.end, 0, VM_UFFD_MISSING | VM_UFFD_WP)


class UserfaultfdOps:
    """The userfaultfd syscalls of a Process (mixed into process.Process).

    Needs `self.system`, `self.mm` and `self.fdtable` (fd -> open object, the table
    abi's open() fills too). The ioctls act on the context's mm (ctx->mm), which need not
    be the caller's: a monitor that received the fd fills another process's pages, in
    that mm's process pages. A context whose mm has exited answers -ESRCH
    (mmget_not_zero() failing in userfaultfd_copy() and friends).
    """

    # -- fd table -----------------------------------------------------------------
    def _fd_install(self, obj) -> int:
        """fs/file.c alloc_fd(): the lowest free descriptor >= 3 in self.fdtable."""
        fd = 3
        while fd in self.fdtable:
            fd += 1
        self.fdtable[fd] = obj
        return fd

    def _uffd_ctx(self, fd):
        obj = self.fdtable.get(fd)
        return obj if isinstance(obj, UserfaultfdCtx) else None

    def _uffd_get(self, fd):
        """(ctx, 0) for a live context behind fd, else (None, -EBADF / -ESRCH)."""
        ctx = self._uffd_ctx(fd)
        if ctx is None:
            return None, -errno.EBADF
        if not any(p.mm is ctx.mm for p in self.system.processes.values()):
            return None, -errno.ESRCH
        return ctx, 0

    # -- syscalls -----------------------------------------------------------------
    def userfaultfd(self, flags: int = 0) -> int:
        """userfaultfd(2) + UFFDIO_API: a new context on this mm; returns the fd."""
        return self._fd_install(UserfaultfdCtx(mm=self.mm))

    def uffd_ctx(self, fd) -> UserfaultfdCtx | None:
        """The context behind `fd` (to read uffdio_copy.copy as ctx.last_copy)."""
        return self._uffd_ctx(fd)

    @staticmethod
    def _uffd_validate_range(mm, start: int, length: int) -> int:
        """fs/userfaultfd.c validate_range(), in the mm's process pages: 0 or -EINVAL.

        start and len aligned to the page (here the process page), len != 0, start >=
        mmap_min_addr, and the range below TASK_SIZE.
        """
        ps = mm.page_size
        task_size = 1 << mm.system.va_bits
        if start % ps or length % ps or length <= 0:
            return -errno.EINVAL
        if start < mm.vmas.mmap_min_addr or start >= task_size or length > task_size - start:
            return -errno.EINVAL
        return 0

    def uffdio_register(self, fd, start: int, length: int, mode: int = UFFDIO_REGISTER_MODE_MISSING) -> int:
        """UFFDIO_REGISTER: mark the VMAs in [start, start+length) VM_UFFD_MISSING; 0 or -errno.

        fs/userfaultfd.c userfaultfd_register(): a zero or unknown mode -> -EINVAL (WP and
        MINOR need pte markers and a shmem page cache the model lacks: -EINVAL, as a kernel
        without CONFIG_HAVE_ARCH_USERFAULTFD_WP/MINOR answers); validate_range() -> -EINVAL;
        no VMA in the range -> -EINVAL (holes between VMAs are allowed and stay
        unregistered); vma_can_userfault(): a MISSING range must be anonymous or shmem, so
        a file mapping that is not MAP_SHARED -> -EINVAL; !VM_MAYWRITE -> -EPERM; a VMA
        owned by another context -> -EBUSY. The VMAs are split at start and end
        (vma_modify_flags_uffd()). uffdio_register.ioctls goes to ctx.last_ioctls.
        """
        ctx, err = self._uffd_get(fd)
        if ctx is None:
            return err
        mm = ctx.mm
        if not mode or mode & ~(UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP | UFFDIO_REGISTER_MODE_MINOR):
            return -errno.EINVAL
        if mode & ~UFFDIO_REGISTER_MODE_MISSING:
            return -errno.EINVAL
        ret = self._uffd_validate_range(mm, start, length)
        if ret:
            return ret
        end = start + length
        vmas = mm.vmas.find_intersection(start, end)
        if not vmas:
            return -errno.EINVAL
        for vma in vmas:
            if vma.file is not None and not vma.flags & VM_SHARED:
                return -errno.EINVAL
            if not vma.flags & VM_MAYWRITE:
                return -errno.EPERM
        for other in mm.uffd_ctxs:
            if other is not ctx and any(s < end and start < e for s, e, _ in _live_ranges(other)):
                return -errno.EBUSY
        for known in mm.uffd_ctxs:  # drop what died with an old VMA before flags change
            known.ranges = _live_ranges(known)
        mm.vmas.set_flags(start, end, VM_UFFD_MISSING, 0)
        ranges = ctx.ranges if ctx in mm.uffd_ctxs else []
        for vma in vmas:  # what is registered: the mapped parts of the range
            lo, hi = max(vma.start, start), min(vma.end, end)
            ranges = [r for r in ranges if r.end <= lo or r.start >= hi] + [UffdRange(lo, hi, mode)]
        ctx.ranges = sorted(ranges)
        if ctx not in mm.uffd_ctxs:
            mm.uffd_ctxs.append(ctx)
        ctx.last_ioctls = UFFD_API_RANGE_IOCTLS_BASIC
        return 0

    def uffdio_unregister(self, fd, start: int, length: int) -> int:
        """UFFDIO_UNREGISTER: clear VM_UFFD_MISSING over the range; 0 or -errno.

        Pages already blocked in the range are woken (userfaultfd_unregister() wakes
        them): their waits end and they fault normally on the retry.
        """
        ctx, err = self._uffd_get(fd)
        if ctx is None:
            return err
        mm = ctx.mm
        ret = self._uffd_validate_range(mm, start, length)
        if ret:
            return ret
        end = start + length
        if mm.vmas.find_intersection(start, end):
            mm.vmas.set_flags(start, end, 0, VM_UFFD_MISSING | VM_UFFD_WP)
        kept = []
        for s, e, m in ctx.ranges:
            if s < start:
                kept.append(UffdRange(s, min(e, start), m))
            if e > end:
                kept.append(UffdRange(max(s, end), e, m))
        ctx.ranges = kept
        ctx.waiting = {a for a in ctx.waiting if not start <= a < end}
        return 0

    def uffd_read(self, fd):
        """read(2) on the uffd: the pending messages, oldest first (empty list: -EAGAIN in O_NONBLOCK)."""
        ctx = self._uffd_ctx(fd)
        if ctx is None:
            return -errno.EBADF
        msgs = list(ctx.pending)
        ctx.pending.clear()
        return msgs

    def _uffd_fill(self, ctx, dst: int, length: int, what: str) -> int:
        """mfill_atomic(): fill process pages one at a time; returns bytes filled or -errno."""
        mm = ctx.mm
        system = mm.system
        ps = mm.page_size
        kps = system.kernel_page_size
        nr = ps // kps
        end = dst + length
        vmas = mm.vmas.find_intersection(dst, end)
        # mm/userfaultfd.c find_dst_vma(): the range must lie in one VMA registered with a
        # userfaultfd, else -ENOENT.
        if len(vmas) != 1 or vmas[0].start > dst or vmas[0].end < end or not vmas[0].flags & VM_UFFD_MISSING:
            return -errno.ENOENT
        vma = vmas[0]
        pages = dst + np.arange(length // ps, dtype=np.int64) * ps
        kaddrs = (pages[:, None] + np.arange(nr, dtype=np.int64)[None, :] * kps).ravel()
        mapped = np.asarray(mm.pgtable.lookup(kaddrs).present, dtype=bool).reshape(len(pages), nr).any(axis=1)
        copied = 0
        for i, page in enumerate(pages.tolist()):  # one process page at a time, as mfill_atomic() loops
            if mapped[i]:
                # mfill_atomic_install_pte(): !pte_none(ptep_get(dst_pte)) -> -EEXIST; pages
                # already filled stay filled and the caller sees the partial count.
                return copied if copied else -errno.EEXIST
            if what == "zeropage" and system.zero_folio is not None:
                # mfill_atomic_pte_zeropage(): the zero page, read-only (pte_mkspecial).
                map_folio_range(mm, vma, page, system.zero_folio, 0, nr, writable=False)
            else:
                # mfill_atomic_pte_copy() / mfill_atomic_pte_zeroed_folio(): a new anon folio
                # of the process order, mapped writable when the VMA is.
                folio = system.anon_folio_alloc(mm.order)
                if folio is None:
                    return copied if copied else -errno.ENOMEM
                map_folio_range(mm, vma, page, folio, 0, nr, writable=True)
            system.stats.count(STAT_INSTALLED, nr)
            ctx.waiting.discard(page)
            copied += ps
        return copied

    def _uffd_ioctl_fill(self, fd, dst, length, mode, allowed_modes, what) -> int:
        ctx, err = self._uffd_get(fd)
        if ctx is None:
            return err
        ctx.last_copy = 0
        if mode & ~allowed_modes:
            return -errno.EINVAL
        ret = self._uffd_validate_range(ctx.mm, dst, length)
        if ret:
            return ret
        done = self._uffd_fill(ctx, dst, length, what)
        ctx.last_copy = done
        if done < 0:
            return done
        # userfaultfd_copy(): ret = range.len == uffdio_copy.len ? 0 : -EAGAIN
        return 0 if done == length else -errno.EAGAIN

    def uffdio_copy(self, fd, dst: int, src, length: int, mode: int = 0) -> int:
        """UFFDIO_COPY: fill [dst, dst+length) from `src`; 0, -EAGAIN (partial) or -errno.

        `src` is the source: bytes (at least `length` of them, else -EFAULT as a short
        copy_from_user) or a source address (any alignment; a wrapping range -> -EINVAL).
        The model keeps no page contents, so only the count matters. The copied byte
        count is ctx.last_copy (uffdio_copy.copy); mfill_atomic() returns "copied ?
        copied : err", so a fill that stops at an already mapped page after filling some
        returns -EAGAIN with last_copy > 0, and -EEXIST when the first page is mapped.
        """
        if isinstance(src, (bytes, bytearray, memoryview)):
            if len(src) < length:
                return -errno.EFAULT  # copy_from_user() of the short tail fails
        elif isinstance(src, (int, np.integer)):
            # userfaultfd_copy(): src need not be aligned, but must not wrap.
            if src < 0 or src + length <= src or src + length > (1 << self.system.va_bits):
                return -errno.EINVAL
        else:
            raise TypeError(f"uffdio_copy: src must be bytes or an address, got {type(src).__name__}")
        return self._uffd_ioctl_fill(fd, dst, length, mode,
                                     UFFDIO_COPY_MODE_DONTWAKE | UFFDIO_COPY_MODE_WP, "copy")

    def uffdio_zeropage(self, fd, start: int, length: int, mode: int = 0) -> int:
        """UFFDIO_ZEROPAGE: fill [start, start+length) with zeroes; 0, -EAGAIN or -errno.

        Each process page maps the system zero folio read-only (mfill_atomic_pte_zeropage());
        without one (the zero page disabled) it gets a zeroed anonymous folio, the path
        taken when mm_forbids_zeropage(): mfill_atomic_pte_zeroed_folio().
        """
        return self._uffd_ioctl_fill(fd, start, length, mode, UFFDIO_ZEROPAGE_MODE_DONTWAKE, "zeropage")
