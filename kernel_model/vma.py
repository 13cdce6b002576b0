"""The VMA tree of one mm: map, unmap, split, merge, find a free area.

Counterpart: mm/vma.c (vma_merge_new_range(), vma_modify(), __split_vma(),
do_vmi_align_munmap()) and mm/mmap.c (generic_get_unmapped_area_topdown(),
vm_unmapped_area()). Pure: no page tables, no folios; the ABI adapter (abi*.py) and
memory.py call in here and do the zapping themselves.

Units: bytes. Every VMA boundary is aligned to the process page size `page_size`, with
one exception: the EOF-overhang pair made by map_overhang() (abi.overhang=anon_vma), a
file VMA ending at the file's last kernel page and an anonymous VM_PAD_ANON VMA covering
the rest of that process page. `pgoff` is in kernel pages (`kernel_page_size`).

The VMAs live in a Python list sorted by start with a parallel list of starts for bisect;
a process has tens to thousands of VMAs, and every operation touches O(1) neighbours
after an O(log n) search (the kernel's maple tree gives the same bounds).
"""

from __future__ import annotations

import bisect
import errno
from dataclasses import replace

import numpy as np


from .mm_types import (VM_DONTEXPAND, VM_GROWSDOWN, VM_IO, VM_PAD_ANON, VM_PFNMAP, Vma)
from .units import PAGE_SIZES

# include/linux/mm.h: VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP.
# Such VMAs never merge (mm/vma.c: vma_merge_new_range() bails out on VM_SPECIAL).
VM_MIXEDMAP = 0x10000000
VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP

# mm/util.c: mmap_base(): the gap below STACK_TOP is the stack rlimit clamped to
# [MIN_GAP, MAX_GAP]; with the default 8M stack rlimit and no randomisation the gap is
# MIN_GAP = 128M, so mmap_base = PAGE_ALIGN(STACK_TOP - 128M).
MIN_GAP = 128 << 20

# mm/memory.c: stack_guard_gap = 256UL << PAGE_SHIFT (kernel pages), kept below a
# VM_GROWSDOWN VMA by vm_start_gap() (include/linux/mm.h).
STACK_GUARD_GAP_PAGES = 256

# Gaps get_unmapped_area() tries one by one before its vectorised search of all gaps.
WALK_GAPS = 8

# security/Kconfig DEFAULT_MMAP_MIN_ADDR: distributions ship 32768 on arm64 and 65536
# on x86; 65536 is also a multiple of every process page size.
DEFAULT_MMAP_MIN_ADDR = 65536


def _aligned(value: int, size: int) -> bool:
    return value % size == 0


class VmaTree:
    """The sorted VMAs of one mm, every boundary aligned to `page_size`.

    `kernel_page_size` is PAGE_SIZE, the unit of Vma.pgoff (it decides whether two VMAs
    have contiguous pgoffs and so may merge). `va_bits` gives TASK_SIZE = 1 << va_bits
    (arm64 TASK_SIZE_64 without 52-bit opt-in).
    """

    def __init__(self, page_size: int, *, kernel_page_size: int = 4096, va_bits: int = 48,
                 mmap_min_addr: int = DEFAULT_MMAP_MIN_ADDR):
        if page_size not in PAGE_SIZES:
            raise ValueError(f"VmaTree: page_size must be one of {PAGE_SIZES}, got {page_size!r}")
        if kernel_page_size not in PAGE_SIZES or kernel_page_size > page_size:
            raise ValueError(f"VmaTree: kernel_page_size must be one of {PAGE_SIZES} and <= page_size "
                             f"{page_size}, got {kernel_page_size!r}")
        self.page_size = page_size
        self.kernel_page_size = kernel_page_size
        self.kernel_page_shift = kernel_page_size.bit_length() - 1
        self.task_size = 1 << va_bits
        # mmap_min_addr rounded up to the process page: no mapping may start below it.
        self.mmap_min_addr = -(-max(mmap_min_addr, page_size) // page_size) * page_size
        self.mmap_base = (self.task_size - MIN_GAP) // page_size * page_size
        self.vmas: list[Vma] = []
        self._starts: list[int] = []  # vmas[i].start, for bisect
        self._ends: list[int] = []  # vmas[i].end, for the vectorised free-area search
        self._growsdown: set[Vma] = set()  # VMAs whose vm_start_gap() is below their start

    # -- lookup -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.vmas)

    def __iter__(self):
        return iter(list(self.vmas))

    def find(self, addr: int) -> Vma | None:
        """The VMA containing addr, or None (vma_lookup(), include/linux/mm.h)."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.vmas[i].end:
            return self.vmas[i]
        return None

    def find_vma(self, addr: int) -> Vma | None:
        """The first VMA with end > addr, as mm/mmap.c: find_vma() (it may start above addr)."""
        i = self._index_after(addr)
        return self.vmas[i] if i < len(self.vmas) else None

    def find_intersection(self, start: int, end: int) -> list[Vma]:
        """The VMAs overlapping [start, end), in address order (find_vma_intersection())."""
        i = self._index_after(start)
        out = []
        while i < len(self.vmas) and self.vmas[i].start < end:
            out.append(self.vmas[i])
            i += 1
        return out

    def holes(self, start: int, end: int) -> list[tuple[int, int]]:
        """The unmapped sub-ranges of [start, end), in address order."""
        out, cur = [], start
        for vma in self.find_intersection(start, end):
            if vma.start > cur:
                out.append((cur, vma.start))
            cur = max(cur, vma.end)
        if cur < end:
            out.append((cur, end))
        return out

    def _index_after(self, addr: int) -> int:
        """Index of the first VMA with end > addr."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and self.vmas[i].end > addr:
            return i
        return i + 1

    # -- validation ---------------------------------------------------------------
    def _is_boundary(self, addr: int) -> bool:
        """addr is the start or end of an existing VMA (no split needed there)."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and self.vmas[i].start == addr:
            return True
        return i >= 0 and self.vmas[i].end == addr

    def _check_range(self, start: int, end: int, what: str, *, existing: bool = False) -> None:
        """Both ends aligned to the process page; with existing=True an end may instead be an
        existing VMA boundary (the EOF-overhang pair's kernel-page boundary)."""
        ps = self.page_size
        ok_start = _aligned(start, ps) or (existing and self._is_boundary(start))
        ok_end = _aligned(end, ps) or (existing and self._is_boundary(end))
        if not (ok_start and ok_end):
            raise ValueError(f"{what}: [{start:#x}, {end:#x}) is not aligned to the process page size "
                             f"{ps:#x}; round the range to process pages first")
        if not 0 <= start < end <= self.task_size:
            raise ValueError(f"{what}: [{start:#x}, {end:#x}) is empty or outside [0, {self.task_size:#x})")

    # -- insertion and merging ------------------------------------------------------
    def _can_merge(self, a: Vma, b: Vma) -> bool:
        """b directly follows a and may be merged into it.

        mm/vma.c: is_mergeable_vma() (same flags, file, anon_vma_name, no VM_SPECIAL),
        can_vma_merge_after()/before() (pgoff contiguous: a.pgoff + pages(a) == b.pgoff).
        """
        return (a.end == b.start and a.flags == b.flags and a.file is b.file and a.name == b.name
                and a.shmem is b.shmem
                and not a.flags & VM_SPECIAL
                and a.pgoff + (a.length >> self.kernel_page_shift) == b.pgoff)

    def _insert(self, vma: Vma) -> int:
        i = bisect.bisect_left(self._starts, vma.start)
        self.vmas.insert(i, vma)
        self._starts.insert(i, vma.start)
        self._ends.insert(i, vma.end)
        self._note_flags(vma)
        return i

    def _note_flags(self, vma: Vma) -> None:
        if vma.flags & VM_GROWSDOWN:
            self._growsdown.add(vma)
        else:
            self._growsdown.discard(vma)

    def _remove_at(self, i: int) -> Vma:
        del self._starts[i]
        del self._ends[i]
        vma = self.vmas.pop(i)
        self._growsdown.discard(vma)
        return vma

    def _merge_around(self, lo: int, hi: int) -> None:
        """Merge every mergeable adjacent pair among indices [lo, hi] (vma_merge_existing_range())."""
        lo = max(lo, 0)
        i = hi
        while i > lo:
            if i < len(self.vmas) and self._can_merge(self.vmas[i - 1], self.vmas[i]):
                prev, nxt = self.vmas[i - 1], self._remove_at(i)
                prev.end = nxt.end
                self._ends[i - 1] = prev.end
            i -= 1

    def map(self, vma: Vma) -> Vma:
        """Insert vma into a free range, merging with compatible neighbours.

        Returns the VMA that now covers vma's range (vma itself or the merged neighbour),
        as mm/vma.c: vma_merge_new_range() followed by __mmap_region() does. Raises
        ValueError on misalignment or overlap: the caller unmaps first (MAP_FIXED).
        """
        self._check_range(vma.start, vma.end, "VmaTree.map")
        if self.find_intersection(vma.start, vma.end):
            raise ValueError(f"VmaTree.map: {vma!r} overlaps an existing VMA; unmap the range first")
        i = self._insert(vma)
        self._merge_around(i - 1, i + 1)
        return self.find(vma.start)

    def map_overhang(self, vma: Vma, eof_addr: int) -> tuple[Vma, Vma]:
        """Map vma as a file VMA up to eof_addr and an anonymous VM_PAD_ANON VMA after it.

        abi.overhang=anon_vma (Android's approach, the thread: Kalesh 2026-02-27): the file
        VMA ends at the file's last kernel page, eof_addr; an extra anonymous VMA covers
        [eof_addr, vma.end), the rest of that process page. eof_addr must be kernel-page
        aligned and inside the last process page of vma. Returns (file_vma, pad_vma).
        """
        self._check_range(vma.start, vma.end, "VmaTree.map_overhang")
        ps, kps = self.page_size, self.kernel_page_size
        if vma.file is None:
            raise ValueError("VmaTree.map_overhang: vma must be file-backed")
        if not (_aligned(eof_addr, kps) and vma.end - ps < eof_addr < vma.end and eof_addr > vma.start):
            raise ValueError(f"VmaTree.map_overhang: eof_addr {eof_addr:#x} must be kernel-page aligned and "
                             f"inside the last process page [{vma.end - ps:#x}, {vma.end:#x}) of {vma!r}")
        if self.find_intersection(vma.start, vma.end):
            raise ValueError(f"VmaTree.map_overhang: {vma!r} overlaps an existing VMA; unmap the range first")
        pad = Vma(start=eof_addr, end=vma.end, flags=(vma.flags & ~VM_PAD_ANON) | VM_PAD_ANON,
                  file=None, pgoff=eof_addr >> self.kernel_page_shift, name=vma.name)
        vma.end = eof_addr
        i = self._insert(vma)
        self._insert(pad)
        self._merge_around(i - 1, i + 2)
        return self.find(vma.start), self.find(eof_addr)

    # -- splitting ------------------------------------------------------------------
    def _split_at(self, addr: int) -> None:
        """Split the VMA containing addr so that a boundary falls at addr (__split_vma())."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0:
            return
        vma = self.vmas[i]
        if not vma.start < addr < vma.end:
            return
        tail = replace(vma, start=addr, pgoff=vma.pgoff + ((addr - vma.start) >> self.kernel_page_shift))
        vma.end = addr
        self._ends[i] = addr
        self._insert(tail)

    def unmap(self, start: int, end: int) -> list[Vma]:
        """Remove [start, end), splitting VMAs that straddle either end.

        Returns the removed pieces in address order (do_vmi_align_munmap() gathers them
        the same way before unmap_region()). Unmapped gaps inside the range are ignored.
        """
        self._check_range(start, end, "VmaTree.unmap", existing=True)
        self._split_at(start)
        self._split_at(end)
        lo = self._index_after(start)
        hi = lo
        while hi < len(self.vmas) and self.vmas[hi].start < end:
            hi += 1
        removed = self.vmas[lo:hi]
        del self.vmas[lo:hi]
        del self._starts[lo:hi]
        del self._ends[lo:hi]
        self._growsdown.difference_update(removed)
        return removed

    def set_flags(self, start: int, end: int, set_bits: int, clear_bits: int) -> list[Vma]:
        """flags = (flags & ~clear_bits) | set_bits on every mapped part of [start, end).

        Splits at start and end, then merges what became identical (mm/mprotect.c:
        mprotect_fixup() and mm/mlock.c: mlock_fixup() both go through vma_modify_flags()).
        Holes are skipped: the callers check holes and Linux's partial-effect rules first.
        Returns the VMAs covering the mapped parts afterwards.
        """
        self._check_range(start, end, "VmaTree.set_flags", existing=True)
        if set_bits & clear_bits:
            raise ValueError(f"VmaTree.set_flags: bits {set_bits & clear_bits:#x} are both set and cleared")
        if not self.find_intersection(start, end):
            return []
        self._split_at(start)
        self._split_at(end)
        lo = self._index_after(start)
        hi = lo
        while hi < len(self.vmas) and self.vmas[hi].start < end:
            vma = self.vmas[hi]
            vma.flags = (vma.flags & ~clear_bits) | set_bits
            self._note_flags(vma)
            hi += 1
        self._merge_around(lo - 1, hi)
        return self.find_intersection(start, end)

    # -- free-area search -----------------------------------------------------------
    def vm_start_gap(self, vma: Vma) -> int:
        """vm_start_gap(): a VM_GROWSDOWN VMA keeps stack_guard_gap free below it."""
        if vma.flags & VM_GROWSDOWN:
            return max(vma.start - (STACK_GUARD_GAP_PAGES << self.kernel_page_shift), 0)
        return vma.start

    def get_unmapped_area(self, length: int, hint: int = 0, align: int | None = None,
                          *, high_limit: int | None = None) -> int:
        """A free [addr, addr + length) top-down below mmap_base, or -ENOMEM.

        mm/mmap.c: generic_get_unmapped_area_topdown(): a non-zero hint is page-aligned
        and used if the range is free and inside [mmap_min_addr, TASK_SIZE); otherwise the
        highest gap below high_limit (mm->mmap_base) that fits, then, as the kernel's
        fallback, the lowest gap above mmap_base (the bottom-up search). `align` (a power
        of two >= page_size) aligns the result, as vm_unmapped_area()'s align_mask does.
        """
        ps = self.page_size
        if length <= 0 or not _aligned(length, ps):
            raise ValueError(f"get_unmapped_area: length {length:#x} must be a positive multiple of {ps:#x}")
        align = ps if align is None else align
        if align < ps or align & (align - 1):
            raise ValueError(f"get_unmapped_area: align {align:#x} must be a power of two >= {ps:#x}")
        base = self.mmap_base if high_limit is None else high_limit
        if length > self.task_size - self.mmap_min_addr:
            return -errno.ENOMEM
        if hint:
            addr = -(-hint // ps) * ps
            if (self.task_size - length >= addr >= self.mmap_min_addr and addr % align == 0
                    and self._is_free(addr, addr + length)):
                return addr
        # Gap i lies between VMA i-1 and VMA i. First walk a few gaps down from base, as
        # vm_unmapped_area() walks the maple tree's gaps (the usual fit is the first gap);
        # then search every gap at once with numpy: O(n) in C instead of the kernel's
        # O(log n) augmented gap tree.
        n = len(self.vmas)
        top = bisect.bisect_left(self._starts, base)  # VMAs top.. start at or above base
        for i in range(top, max(top - WALK_GAPS, -1), -1):
            lo = max(self._ends[i - 1] if i else 0, self.mmap_min_addr)
            hi = min(self.vm_start_gap(self.vmas[i]) if i < n else self.task_size, base)
            cand = (hi - length) // align * align
            if hi - lo >= length and cand >= lo:
                return cand
        gap_lo = np.maximum(np.array([0] + self._ends, dtype=np.int64), self.mmap_min_addr)
        gap_hi = np.array(self._starts + [self.task_size], dtype=np.int64)
        for vma in self._growsdown:
            gap_hi[bisect.bisect_left(self._starts, vma.start)] = self.vm_start_gap(vma)
        hi_down = np.minimum(gap_hi, base)
        cand = (hi_down - length) // align * align
        ok = (cand >= gap_lo) & (hi_down - gap_lo >= length)
        if ok.any():
            return int(cand[np.flatnonzero(ok)[-1]])
        # bottom-up fallback above mmap_base (the VM_UNMAPPED_AREA_TOPDOWN failure path of
        # generic_get_unmapped_area_topdown() retries with low_limit = TASK_UNMAPPED_BASE)
        lo_up = np.maximum(gap_lo, base)
        cand = -(-lo_up // align) * align
        ok = cand + length <= gap_hi
        if ok.any():
            return int(cand[np.flatnonzero(ok)[0]])
        return -errno.ENOMEM

    def _is_free(self, start: int, end: int) -> bool:
        i = self._index_after(start)
        if i < len(self.vmas) and self.vm_start_gap(self.vmas[i]) < end:
            return False
        return True

    # -- debugging ------------------------------------------------------------------
    def check(self) -> None:
        """Raise ValueError unless the tree is sorted, non-overlapping and aligned."""
        ps, kps = self.page_size, self.kernel_page_size
        for i, vma in enumerate(self.vmas):
            if self._starts[i] != vma.start or self._ends[i] != vma.end or vma.start >= vma.end:
                raise ValueError(f"VmaTree: corrupt entry {i}: {vma!r}")
            if i and self.vmas[i - 1].end > vma.start:
                raise ValueError(f"VmaTree: {self.vmas[i - 1]!r} overlaps {vma!r}")
            start_ok = _aligned(vma.start, ps) or (vma.flags & VM_PAD_ANON and _aligned(vma.start, kps))
            nxt = self.vmas[i + 1] if i + 1 < len(self.vmas) else None
            end_ok = _aligned(vma.end, ps) or (nxt is not None and nxt.start == vma.end
                                               and nxt.flags & VM_PAD_ANON and _aligned(vma.end, kps))
            if not (start_ok and end_ok):
                raise ValueError(f"VmaTree: {vma!r} is not aligned to the process page size {ps:#x}")
