"""mremap(2) in process pages: mm/mremap.c, selftests/mm/mremap_test.c, mremap_dontunmap.c, LTP mremap01..05."""

import errno
import signal

from kernel_model.abi import (MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MREMAP_DONTUNMAP, MREMAP_FIXED,
                              MREMAP_MAYMOVE, PROT_READ, PROT_WRITE)

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def test_errors(proc, reserve):
    ps, kps = proc.page_size, proc.system.kernel_page_size
    base = reserve(proc, 8)
    assert proc.mremap(base, ps, 2 * ps, MREMAP_MAYMOVE) == -errno.EFAULT  # LTP mremap04: unmapped
    proc.mmap(base, 2 * ps, RW, ANON | MAP_FIXED)
    assert proc.mremap(base, ps, ps, 0x8) == -errno.EINVAL
    assert proc.mremap(base, ps, ps, MREMAP_FIXED, base + 4 * ps) == -errno.EINVAL  # FIXED needs MAYMOVE
    assert proc.mremap(base, ps, 2 * ps, MREMAP_MAYMOVE | MREMAP_DONTUNMAP) == -errno.EINVAL  # resize
    assert proc.mremap(base + (kps if ps > kps else 1), ps, ps, 0) == -errno.EINVAL
    assert proc.mremap(base, ps, 0, 0) == -errno.EINVAL
    assert proc.mremap(base, 3 * ps, 4 * ps, MREMAP_MAYMOVE) == -errno.EFAULT  # crosses the VMA end
    assert proc.mremap(base, 2 * ps, 2 * ps, MREMAP_MAYMOVE | MREMAP_FIXED, base + ps) == -errno.EINVAL  # overlap
    assert proc.mremap(base, 0, ps, MREMAP_MAYMOVE) == -errno.EINVAL  # old_len 0 of a private mapping


def test_shrink_in_place(proc, layout, reserve):
    ps = proc.page_size
    base = reserve(proc, 4)
    proc.mmap(base, 4 * ps, RW, ANON | MAP_FIXED)
    assert proc.mremap(base, 4 * ps, ps + 1, 0) == base  # new size rounds up: 2 pages stay
    assert layout(proc) == [(base, base + 2 * ps, RW)]


def test_grow_in_place_or_move(proc, layout, reserve):
    ps = proc.page_size
    base = reserve(proc, 6)
    # 012345
    # AA B      A cannot grow past B without MAYMOVE
    proc.mmap(base, 2 * ps, RW, ANON | MAP_FIXED)
    proc.mmap(base + 3 * ps, ps, PROT_READ, ANON | MAP_FIXED)
    assert proc.touch(base, write=True) == 0
    assert proc.mremap(base, 2 * ps, 3 * ps, 0) == base  # the free page above: grows in place
    assert layout(proc) == [(base, base + 3 * ps, RW), (base + 3 * ps, base + 4 * ps, PROT_READ)]
    assert proc.mremap(base, 3 * ps, 4 * ps, 0) == -errno.ENOMEM
    new = proc.mremap(base, 3 * ps, 4 * ps, MREMAP_MAYMOVE)
    assert new == base - 4 * ps  # top-down: the 2 free pages above B are too few
    assert layout(proc) == sorted([(new, new + 4 * ps, RW), (base + 3 * ps, base + 4 * ps, PROT_READ)])
    assert proc.mincore(new, 4 * ps) == [1, 0, 0, 0]  # the page tables moved with it
    assert proc.touch(base) == signal.SIGSEGV


def test_fixed_replaces_the_target(proc, layout, reserve):
    ps = proc.page_size
    base = reserve(proc, 6)
    proc.mmap(base, 2 * ps, RW, ANON | MAP_FIXED)
    proc.mmap(base + 4 * ps, 2 * ps, PROT_READ, ANON | MAP_FIXED)
    assert proc.touch(base + ps, write=True) == 0
    assert proc.mremap(base, 2 * ps, 2 * ps, MREMAP_MAYMOVE | MREMAP_FIXED, base + 4 * ps) == base + 4 * ps
    assert layout(proc) == [(base + 4 * ps, base + 6 * ps, RW)]
    assert proc.mincore(base + 4 * ps, 2 * ps) == [0, 1]


def test_dontunmap_keeps_an_empty_source(proc, layout):
    # selftests/mm/mremap_dontunmap.c: the source VMA stays, its pages moved away
    ps = proc.page_size
    src = proc.mmap(0, 2 * ps, RW, ANON)
    assert [proc.touch(src + i * ps, write=True) for i in range(2)] == [0, 0]
    dst = proc.mremap(src, 2 * ps, 2 * ps, MREMAP_MAYMOVE | MREMAP_DONTUNMAP)
    assert (src, dst) == (proc.mm.mmap_base - 2 * ps, proc.mm.mmap_base - 4 * ps)
    assert sorted(layout(proc)) == sorted([(src, src + 2 * ps, RW), (dst, dst + 2 * ps, RW)])
    assert proc.mincore(src, 2 * ps) == [0, 0]
    assert proc.mincore(dst, 2 * ps) == [1, 1]
