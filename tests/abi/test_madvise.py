"""madvise(2) in process pages: mm/madvise.c, selftests/mm/madv_populate.c, LTP madvise*."""

import errno

from kernel_model.abi import (MADV_COLD, MADV_DOFORK, MADV_DONTFORK, MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE,
                              MADV_NORMAL, MADV_PAGEOUT, MADV_POPULATE_READ, MADV_POPULATE_WRITE, MADV_REMOVE,
                              MADV_WILLNEED, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PROT_NONE,
                              PROT_READ, PROT_WRITE)
from kernel_model.mm_types import VM_DONTCOPY, VM_HUGEPAGE

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def written(p, n):
    addr = p.mmap(0, n * p.page_size, RW, ANON)
    assert [p.touch(addr + i * p.page_size, write=True) for i in range(n)] == [0] * n
    return addr


def test_validation(proc):
    ps, kps = proc.page_size, proc.system.kernel_page_size
    addr = written(proc, 2)
    assert proc.madvise(addr + (kps if ps > kps else 1), ps, MADV_DONTNEED) == -errno.EINVAL
    assert proc.madvise(addr, ps, 999) == -errno.EINVAL
    assert proc.madvise(addr, 0, MADV_DONTNEED) == 0
    assert proc.madvise(addr, -1, MADV_DONTNEED) == -errno.EINVAL  # len rounds to 0 from -1
    assert proc.mincore(addr, 2 * ps) == [1, 1]


def test_dontneed_zaps_whole_process_pages(proc):
    ps = proc.page_size
    addr = written(proc, 3)
    before = proc.system.anon_bytes
    assert proc.madvise(addr + ps, 1, MADV_DONTNEED) == 0  # 1 byte -> one process page
    assert proc.mincore(addr, 3 * ps) == [1, 0, 1]
    assert proc.system.anon_bytes == before - ps


def test_holes_apply_to_mapped_parts_then_enomem(proc, reserve):
    ps = proc.page_size
    base = reserve(proc, 4)
    # 0123
    # AA B   DONTNEED over 0..4: both parts zapped, -ENOMEM for the hole
    proc.mmap(base, 2 * ps, RW, ANON | MAP_FIXED)
    proc.mmap(base + 3 * ps, ps, RW, ANON | MAP_FIXED)
    for i in (0, 1, 3):
        assert proc.touch(base + i * ps, write=True) == 0
    assert proc.madvise(base, 4 * ps, MADV_DONTNEED) == -errno.ENOMEM
    assert proc.mincore(base, 2 * ps) == [0, 0]
    assert proc.mincore(base + 3 * ps, ps) == [0]
    assert proc.madvise(base + 2 * ps, ps, MADV_NORMAL) == -errno.ENOMEM


def test_free_is_anonymous_private_only(proc):
    ps = proc.page_size
    proc.system.create_file("/f", 2 * ps)
    fmap = proc.mmap(0, ps, RW, MAP_PRIVATE, proc.open("/f"), 0)
    shared = proc.mmap(0, ps, RW, MAP_SHARED | MAP_ANONYMOUS)
    assert proc.madvise(fmap, ps, MADV_FREE) == -errno.EINVAL
    assert proc.madvise(shared, ps, MADV_FREE) == -errno.EINVAL
    assert proc.madvise(written(proc, 1), ps, MADV_FREE) == 0


def test_pageout_discards_lazyfree_and_keeps_other_anon(proc):
    ps, kps = proc.page_size, proc.system.kernel_page_size
    stats = proc.system.stats.events
    addr = written(proc, 4)
    assert proc.madvise(addr, 2 * ps, MADV_FREE) == 0
    assert proc.touch(addr + ps, write=True) == 0  # re-dirtied: no longer lazy-free
    assert proc.madvise(addr, 4 * ps, MADV_PAGEOUT) == 0
    # page 0 was lazy-free and clean: discarded; the others stay (no swap)
    assert proc.mincore(addr, 4 * ps) == [0, 1, 1, 1]
    assert stats["madv_pageout_reclaimed_pages"] == ps // kps
    assert stats["madv_pageout_kept_pages"] == 3 * ps // kps


def test_lru_advice_refuses_locked_vmas(proc):
    ps = proc.page_size
    addr = written(proc, 1)
    assert proc.mlock(addr, ps) == 0
    for advice in (MADV_DONTNEED, MADV_FREE, MADV_COLD, MADV_PAGEOUT):
        assert proc.madvise(addr, ps, advice) == -errno.EINVAL
    assert proc.mincore(addr, ps) == [1]


def test_populate_read_and_write(proc, reserve):
    ps = proc.page_size
    addr = proc.mmap(0, 3 * ps, RW, ANON)
    assert proc.madvise(addr, 3 * ps, MADV_POPULATE_WRITE) == 0
    assert proc.mincore(addr, 3 * ps) == [1, 1, 1]
    ro = proc.mmap(0, 2 * ps, PROT_READ, ANON)
    assert proc.madvise(ro, 2 * ps, MADV_POPULATE_WRITE) == -errno.EINVAL  # madv_populate.c test_prot_read
    assert proc.madvise(ro, 2 * ps, MADV_POPULATE_READ) == 0
    none = proc.mmap(0, ps, PROT_NONE, ANON)
    assert proc.madvise(none, ps, MADV_POPULATE_READ) == -errno.EINVAL
    # holes: madv_populate.c test_holes -> ENOMEM, the part before the hole populated
    base = reserve(proc, 3)
    proc.mmap(base, ps, RW, ANON | MAP_FIXED)
    proc.mmap(base + 2 * ps, ps, RW, ANON | MAP_FIXED)
    assert proc.madvise(base, 3 * ps, MADV_POPULATE_READ) == -errno.ENOMEM
    assert proc.mincore(base, ps) == [1]
    assert proc.mincore(base + 2 * ps, ps) == [0]


def test_populate_past_eof_is_efault(proc):
    ps = proc.page_size
    proc.system.create_file("/one", ps)
    addr = proc.mmap(0, 2 * ps, PROT_READ, MAP_SHARED, proc.open("/one"), 0)
    assert proc.madvise(addr, 2 * ps, MADV_POPULATE_READ) == -errno.EFAULT  # SIGBUS page
    assert proc.mincore(addr, ps) == [1]


def test_flag_advice_splits_and_fork_honours_dontfork(proc, layout):
    ps = proc.page_size
    addr = written(proc, 3)
    assert proc.madvise(addr + ps, ps, MADV_DONTFORK) == 0
    assert [(v.start - addr, v.end - addr, bool(v.flags & VM_DONTCOPY)) for v in proc.mm.vmas.vmas] == [
        (0, ps, False), (ps, 2 * ps, True), (2 * ps, 3 * ps, False)]
    child = proc.fork()
    assert layout(child) == [(addr, addr + ps, RW), (addr + 2 * ps, addr + 3 * ps, RW)]
    assert proc.madvise(addr + ps, ps, MADV_DOFORK) == 0
    assert layout(proc) == [(addr, addr + 3 * ps, RW)]
    assert proc.madvise(addr, ps, MADV_HUGEPAGE) == 0
    assert [bool(v.flags & VM_HUGEPAGE) for v in proc.mm.vmas.vmas] == [True, False]


def test_willneed_reads_the_file_into_the_page_cache(proc):
    ps = proc.page_size
    proc.system.create_file("/w", 4 * ps)
    addr = proc.mmap(0, 4 * ps, PROT_READ, MAP_SHARED, proc.open("/w"), 0)
    assert proc.mincore(addr, 4 * ps) == [0, 0, 0, 0]
    assert proc.madvise(addr, 2 * ps, MADV_WILLNEED) == 0
    assert proc.mincore(addr, 2 * ps) == [1, 1]


def test_remove_needs_a_shared_writable_file_mapping(proc):
    ps = proc.page_size
    proc.system.create_file("/r", 2 * ps)
    fd = proc.open("/r")
    priv = proc.mmap(0, 2 * ps, RW, MAP_PRIVATE, fd, 0)
    assert proc.madvise(priv, ps, MADV_REMOVE) == -errno.EACCES
    assert proc.madvise(written(proc, 1), ps, MADV_REMOVE) == -errno.EINVAL
    shared = proc.mmap(0, 2 * ps, RW, MAP_SHARED, fd, 0)
    assert [proc.touch(shared + i * ps) for i in range(2)] == [0, 0]
    assert proc.madvise(shared, 2 * ps, MADV_REMOVE) == 0
    assert proc.mincore(shared, 2 * ps) == [0, 0]
