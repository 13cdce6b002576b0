"""mprotect(2) in process pages: LTP mprotect01..04, mm/mprotect.c do_mprotect_pkey()."""

import errno
import os
import signal

from kernel_model.abi import (MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PROT_EXEC, PROT_GROWSDOWN,
                              PROT_GROWSUP, PROT_NONE, PROT_READ, PROT_WRITE)

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def test_errors(proc, reserve):
    ps, kps = proc.page_size, proc.system.kernel_page_size
    base = reserve(proc, 2)
    assert proc.mprotect(base, ps, PROT_READ) == -errno.ENOMEM  # nothing mapped (LTP mprotect01)
    proc.mmap(base, 2 * ps, RW, ANON | MAP_FIXED)
    assert proc.mprotect(base + (kps if ps > kps else 1), ps, PROT_READ) == -errno.EINVAL
    assert proc.mprotect(base, ps, 0x40) == -errno.EINVAL  # arch_validate_prot()
    assert proc.mprotect(base, ps, PROT_READ | PROT_GROWSDOWN | PROT_GROWSUP) == -errno.EINVAL
    assert proc.mprotect(base, 0, PROT_READ) == 0
    assert proc.mprotect(base, -1, PROT_READ) == -errno.ENOMEM  # wraps
    assert [v.flags & 7 for v in proc.mm.vmas.vmas] == [RW]


def test_write_on_a_read_only_shared_file_is_eacces(proc):
    # LTP mprotect01: PROT_WRITE on a MAP_SHARED mapping of an O_RDONLY file -> EACCES
    ps = proc.page_size
    proc.system.create_file("/ro", ps)
    addr = proc.mmap(0, ps, PROT_READ, MAP_SHARED, proc.open("/ro", os.O_RDONLY), 0)
    assert proc.mprotect(addr, ps, RW) == -errno.EACCES
    assert proc.mprotect(addr, ps, PROT_READ | PROT_EXEC) == 0


def test_split_then_merge(proc, layout, reserve):
    ps = proc.page_size
    base = reserve(proc, 4)
    # 0123
    # AAAA
    #  **    PROT_READ
    # ABBC
    proc.mmap(base, 4 * ps, RW, ANON | MAP_FIXED)
    assert proc.mprotect(base + ps, 2 * ps, PROT_READ) == 0
    assert layout(proc) == [(base, base + ps, RW), (base + ps, base + 3 * ps, PROT_READ),
                            (base + 3 * ps, base + 4 * ps, RW)]
    assert proc.mprotect(base + ps, 1, RW) == 0  # length rounds up to one process page
    assert layout(proc) == [(base, base + 2 * ps, RW), (base + 2 * ps, base + 3 * ps, PROT_READ),
                            (base + 3 * ps, base + 4 * ps, RW)]
    assert proc.mprotect(base + 2 * ps, ps, RW) == 0
    assert layout(proc) == [(base, base + 4 * ps, RW)]


def test_hole_gives_enomem_after_changing_what_precedes_it(proc, layout, reserve):
    ps = proc.page_size
    base = reserve(proc, 4)
    # 0123
    # AA B    mprotect(0..4, READ): A changes, then the hole -> ENOMEM, B untouched
    proc.mmap(base, 2 * ps, RW, ANON | MAP_FIXED)
    proc.mmap(base + 3 * ps, ps, RW, ANON | MAP_FIXED)
    assert proc.mprotect(base, 4 * ps, PROT_READ) == -errno.ENOMEM
    assert layout(proc) == [(base, base + 2 * ps, PROT_READ), (base + 3 * ps, base + 4 * ps, RW)]


def test_protection_is_enforced_on_access(proc, reserve):
    ps = proc.page_size
    base = reserve(proc, 1)
    proc.mmap(base, ps, RW, ANON | MAP_FIXED)
    assert proc.touch(base, write=True) == 0
    assert proc.mprotect(base, ps, PROT_READ) == 0
    assert proc.touch(base, write=True) == signal.SIGSEGV
    assert proc.touch(base + ps - 1) == 0
    assert proc.mprotect(base, ps, PROT_NONE) == 0
    assert proc.touch(base) == signal.SIGSEGV
    assert proc.mprotect(base, ps, RW) == 0
    assert proc.touch(base, write=True) == 0
