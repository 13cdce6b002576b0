"""msync(2) in process pages: mm/msync.c, LTP msync01..04."""

import errno

from kernel_model.abi import (MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, MS_ASYNC, MS_INVALIDATE,
                              MS_SYNC, PROT_READ, PROT_WRITE)

RW = PROT_READ | PROT_WRITE


def test_errors(proc, reserve):
    ps, kps = proc.page_size, proc.system.kernel_page_size
    base = reserve(proc, 3)
    proc.system.create_file("/s", 3 * ps)
    fd = proc.open("/s")
    assert proc.mmap(base, ps, RW, MAP_SHARED | MAP_FIXED, fd, 0) == base
    assert proc.msync(base, ps, MS_ASYNC | MS_SYNC) == -errno.EINVAL
    assert proc.msync(base, ps, 0x8) == -errno.EINVAL
    assert proc.msync(base + (kps if ps > kps else 1), ps, MS_SYNC) == -errno.EINVAL
    assert proc.msync(base, 0, MS_SYNC) == 0
    assert proc.msync(base + ps, ps, MS_ASYNC) == -errno.ENOMEM  # unmapped
    assert proc.msync(base, 2 * ps, MS_SYNC) == -errno.ENOMEM  # hole after the mapping
    assert proc.msync(base, 1, MS_SYNC) == 0  # rounds up to the process page
    assert proc.mlock(base, ps) == 0
    assert proc.msync(base, ps, MS_INVALIDATE) == -errno.EBUSY
    assert proc.msync(base, ps, MS_ASYNC) == 0


def test_ms_sync_writes_back_dirty_shared_pages(proc):
    ps = proc.page_size
    f = proc.system.create_file("/d", 2 * ps)
    addr = proc.mmap(0, 2 * ps, RW, MAP_SHARED, proc.open("/d"), 0)
    assert proc.touch(addr, write=True) == 0
    dirty = sum(fo.size(proc.system.kernel_page_size) for fo in f.mapping.folios.values() if fo.dirty)
    # Read-around (filemap_policy._fault_around) caches this two-process-page file in folios
    # of exactly the process order: that is its soft minimum, and its preferred order (2,
    # or 0 for a window under 4 pages) never exceeds it in this matrix. So the write
    # dirties one folio: one process page.
    assert dirty == ps
    assert proc.msync(addr, 2 * ps, MS_SYNC) == 0
    assert [fo.dirty for fo in f.mapping.folios.values()] == [False] * len(f.mapping.folios)
    assert proc.system.stats.events["msync_writeback_bytes"] == dirty
    anon = proc.mmap(0, ps, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    assert proc.msync(anon, ps, MS_SYNC) == 0  # nothing to write for anonymous memory
