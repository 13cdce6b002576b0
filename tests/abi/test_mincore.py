"""mincore(2): one entry per PROCESS page; mm/mincore.c, selftests/mincore/mincore_selftest.c."""

import errno

from kernel_model.abi import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def test_errors(proc, reserve):
    ps, kps = proc.page_size, proc.system.kernel_page_size
    base = reserve(proc, 2)
    assert proc.mincore(base, ps) == -errno.ENOMEM  # unmapped (mincore_selftest basic_interface)
    proc.mmap(base, ps, RW, ANON | MAP_FIXED)
    assert proc.mincore(base + (kps if ps > kps else 1), ps) == -errno.EINVAL
    assert proc.mincore(base, 0) == []
    assert proc.mincore(base, 2 * ps) == -errno.ENOMEM  # runs into the hole
    assert proc.mincore(base, 1 << 49) == -errno.ENOMEM  # beyond TASK_SIZE (access_ok)


def test_vector_has_one_entry_per_process_page(proc):
    ps, kps = proc.page_size, proc.system.kernel_page_size
    addr = proc.mmap(0, 4 * ps, RW, ANON)
    assert proc.mincore(addr, 4 * ps) == [0, 0, 0, 0]
    assert proc.touch(addr + ps + kps - 1, write=True) == 0
    assert proc.touch(addr + 3 * ps + ps - 1, write=True) == 0
    assert proc.mincore(addr, 4 * ps) == [0, 1, 0, 1]
    assert proc.mincore(addr, ps + 1) == [0, 1]  # a partial page counts as one entry
    assert proc.mincore(addr + ps, 1) == [1]


def test_read_fault_maps_the_zero_page_which_counts_as_resident(proc):
    ps = proc.page_size
    addr = proc.mmap(0, 2 * ps, PROT_READ, ANON)
    assert proc.touch(addr) == 0
    assert proc.mincore(addr, 2 * ps) == [1, 0]


def test_file_pages_in_the_page_cache_count_even_unmapped(proc):
    ps = proc.page_size
    f = proc.system.create_file("/c", 3 * ps)
    fd = proc.open("/c")
    a = proc.mmap(0, 3 * ps, PROT_READ, MAP_SHARED, fd, 0)
    b = proc.mmap(0, 3 * ps, PROT_READ, MAP_SHARED, fd, 0)
    assert proc.mincore(a, 3 * ps) == [0, 0, 0]
    assert proc.touch(a + 2 * ps) == 0
    cached = proc.mincore(b, 3 * ps)  # b never touched: page-cache residency (mincore_page())
    assert cached[2] == 1 and cached == proc.mincore(a, 3 * ps)
    assert f.mapping.folios != {}
