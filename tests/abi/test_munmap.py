"""munmap(2) in process pages: LTP munmap01..03, mm/vma.c do_vmi_munmap()."""

import errno
import signal

from kernel_model.abi import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def test_errors(proc):
    ps, kps = proc.page_size, proc.system.kernel_page_size
    addr = proc.mmap(0, 2 * ps, RW, ANON)
    assert proc.munmap(addr + (kps if ps > kps else 1), ps) == -errno.EINVAL  # unaligned start
    assert proc.munmap(addr, 0) == -errno.EINVAL
    assert proc.munmap((1 << 48) + ps, ps) == -errno.EINVAL  # start > TASK_SIZE
    assert proc.munmap(addr, 1 << 48) == -errno.EINVAL  # len > TASK_SIZE - start
    assert len(proc.mm.vmas) == 1


def test_unmapping_nothing_succeeds(proc, reserve):
    base = reserve(proc, 4)
    assert proc.munmap(base, 4 * proc.page_size) == 0
    assert proc.mm.vmas.vmas == []


def test_middle_split_and_sigsegv(proc, layout, reserve):
    ps = proc.page_size
    base = reserve(proc, 3)
    # 012
    # AAA
    #  *    munmap the middle
    # A B
    assert proc.mmap(base, 3 * ps, RW, ANON | MAP_FIXED) == base
    assert proc.munmap(base + ps, ps) == 0
    assert layout(proc) == [(base, base + ps, RW), (base + 2 * ps, base + 3 * ps, RW)]
    assert proc.touch(base + ps) == signal.SIGSEGV
    assert proc.touch(base + 2 * ps, write=True) == 0


def test_length_rounds_up_to_the_process_page(proc, layout, reserve):
    ps = proc.page_size
    base = reserve(proc, 2)
    proc.mmap(base, 2 * ps, RW, ANON | MAP_FIXED)
    assert proc.munmap(base, 1) == 0
    assert layout(proc) == [(base + ps, base + 2 * ps, RW)]


def test_munmap_frees_the_anonymous_memory(proc):
    ps = proc.page_size
    before = proc.system.anon_bytes
    addr = proc.mmap(0, 4 * ps, RW, ANON)
    assert [proc.touch(addr + i * ps, write=True) for i in range(4)] == [0, 0, 0, 0]
    assert proc.system.anon_bytes - before == 4 * ps
    assert proc.munmap(addr, 4 * ps) == 0
    assert proc.system.anon_bytes == before
