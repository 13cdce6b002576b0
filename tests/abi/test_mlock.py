"""mlock, mlock2, munlock, mlockall in process pages: mm/mlock.c, selftests/mm/mlock2-tests.c."""

import errno

from kernel_model.abi import (MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT,
                              MLOCK_ONFAULT, PROT_READ, PROT_WRITE)
from kernel_model.mm_types import VM_LOCKED, VM_LOCKONFAULT

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def locks(p, base):
    return [(v.start - base, v.end - base, v.flags & (VM_LOCKED | VM_LOCKONFAULT)) for v in p.mm.vmas.vmas]


def test_mlock_aligns_instead_of_failing(proc, reserve):
    ps, kps = proc.page_size, proc.system.kernel_page_size
    base = reserve(proc, 3)
    proc.mmap(base, 3 * ps, RW, ANON | MAP_FIXED)
    # start inside page 1, one byte: page 1 is locked (start aligned down, length up)
    off = kps if ps > kps else 1
    assert proc.mlock(base + ps + off, 1) == 0
    assert locks(proc, base) == [(0, ps, 0), (ps, 2 * ps, VM_LOCKED), (2 * ps, 3 * ps, 0)]
    assert proc.mm.locked_vm == ps
    assert proc.mincore(base, 3 * ps) == [0, 1, 0]  # mlock populates
    assert proc.mlock(base, 0) == 0
    assert proc.munlock(base + ps, ps) == 0
    assert locks(proc, base) == [(0, 3 * ps, 0)]
    assert proc.mm.locked_vm == 0


def test_mlock_over_holes_is_enomem_with_partial_effect(proc, reserve):
    ps = proc.page_size
    base = reserve(proc, 4)
    # 0123
    # AA B    mlock(0..4): A locked, the hole -> ENOMEM, B untouched
    proc.mmap(base, 2 * ps, RW, ANON | MAP_FIXED)
    proc.mmap(base + 3 * ps, ps, PROT_READ, ANON | MAP_FIXED)
    assert proc.mlock(base, 4 * ps) == -errno.ENOMEM
    assert locks(proc, base) == [(0, 2 * ps, VM_LOCKED), (3 * ps, 4 * ps, 0)]
    assert proc.mlock(base + 2 * ps, ps) == -errno.ENOMEM  # starts in the hole
    assert proc.munlock(base, 4 * ps) == -errno.ENOMEM
    assert locks(proc, base) == [(0, 2 * ps, 0), (3 * ps, 4 * ps, 0)]


def test_mlock2_onfault(proc):
    ps = proc.page_size
    addr = proc.mmap(0, 3 * ps, RW, ANON)
    assert proc.mlock2(addr, 3 * ps, 0x2) == -errno.EINVAL
    assert proc.mlock2(addr, 3 * ps, MLOCK_ONFAULT) == 0
    assert locks(proc, addr) == [(0, 3 * ps, VM_LOCKED | VM_LOCKONFAULT)]
    assert proc.mincore(addr, 3 * ps) == [0, 0, 0]  # not populated
    assert proc.touch(addr + ps, write=True) == 0
    assert proc.mincore(addr, 3 * ps) == [0, 1, 0]
    # mlock over it turns lock-on-fault into a populating lock (mlock2-tests.c)
    assert proc.mlock(addr, 3 * ps) == 0
    assert locks(proc, addr) == [(0, 3 * ps, VM_LOCKED)]
    assert proc.mincore(addr, 3 * ps) == [1, 1, 1]


def test_mlockall_and_munlockall(proc):
    ps = proc.page_size
    a = proc.mmap(0, 2 * ps, RW, ANON)
    assert proc.mlockall(0) == -errno.EINVAL
    assert proc.mlockall(MCL_ONFAULT) == -errno.EINVAL
    assert proc.mlockall(0x10) == -errno.EINVAL
    assert proc.mlockall(MCL_CURRENT) == 0
    assert locks(proc, a) == [(0, 2 * ps, VM_LOCKED)]
    assert proc.mincore(a, 2 * ps) == [1, 1]
    b = proc.mmap(0, ps, RW, ANON)
    assert proc.mm.vmas.find(b).flags & VM_LOCKED == 0
    assert proc.mlockall(MCL_FUTURE | MCL_ONFAULT) == 0
    c = proc.mmap(0, ps, PROT_READ, ANON)
    assert proc.mm.vmas.find(c).flags & (VM_LOCKED | VM_LOCKONFAULT) == VM_LOCKED | VM_LOCKONFAULT
    assert proc.munlockall() == 0
    assert [v.flags & VM_LOCKED for v in proc.mm.vmas.vmas] == [0] * len(proc.mm.vmas)
    assert proc.mm.locked_vm == 0
    d = proc.mmap(0, ps, PROT_READ | 4, ANON)
    assert proc.mm.vmas.find(d).flags & VM_LOCKED == 0


def test_locks_are_not_inherited_by_fork(proc):
    ps = proc.page_size
    addr = proc.mmap(0, 2 * ps, RW, ANON)
    assert proc.mlock(addr, 2 * ps) == 0
    child = proc.fork()
    assert [v.flags & VM_LOCKED for v in child.mm.vmas.vmas] == [0]
    assert child.mm.locked_vm == 0 and proc.mm.locked_vm == 2 * ps
