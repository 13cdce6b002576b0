"""userfaultfd in process pages on a 4K kernel: 4K, 16K and 64K processes.

Cases after tools/testing/selftests/mm/uffd-unit-tests.c (register, missing fault,
UFFDIO_COPY, -EEXIST on a retried copy, UFFDIO_ZEROPAGE) with the process page as the
unit. The registered area is four process pages:

    # process page   0123
    # registered     RRRR
    # fault            F      -> event at page 1, masked to the process page
    # copy             C      -> page/4K kernel PTEs installed
"""

import errno

import numpy as np
import pytest

from kernel_model import memory
from kernel_model.abi import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE
from kernel_model.mm_types import VM_UFFD_MISSING
from kernel_model.system import System
from kernel_model.userfaultfd import (STAT_INSTALLED, UFFD_EVENT_PAGEFAULT, UFFD_PAGEFAULT_FLAG_WRITE,
                                      UFFDIO_REGISTER_MODE_MINOR, UFFDIO_REGISTER_MODE_WP, UffdMsg)
from test_pagemap import _pgtable  # noqa: F401  (the pgtable fixture: real module, or a double until it exists)

K = 1024
KPS = 4 * K
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
BASE = 0x20000000


def present(proc, start, nbytes):
    """0/1 per kernel page of [start, start+nbytes), from the Linux page table."""
    addrs = np.arange(start, start + nbytes, KPS, dtype=np.int64)
    return [int(x) for x in proc.mm.pgtable.lookup(addrs).present]


@pytest.fixture
def system():
    return System(kernel_page_size="4K", memory_size="256M")


def registered(system, ps):
    p = system.execve(page_size=ps)
    assert p.mmap(BASE, 4 * ps, RW, ANON | MAP_FIXED) == BASE
    fd = p.userfaultfd()
    assert p.uffdio_register(fd, BASE, 4 * ps) == 0
    return p, fd


@pytest.mark.parametrize("ps", [4 * K, 16 * K, 64 * K])
def test_missing_fault_is_reported_at_the_process_page_and_filled_by_copy(system, ps):
    p, fd = registered(system, ps)
    assert [(v.start, v.end, bool(v.flags & VM_UFFD_MISSING)) for v in p.mm.vmas] == [(BASE, BASE + 4 * ps, True)]
    # A write one kernel page plus 123 bytes into process page 1 blocks and queues one event.
    addr = BASE + ps + KPS + 123 if ps > KPS else BASE + ps + 123
    assert p.touch(addr, write=True) == memory.VM_FAULT_RETRY
    assert p.touch(addr, write=True) == memory.VM_FAULT_RETRY  # still blocked: no second message
    assert p.uffd_read(fd) == [UffdMsg(UFFD_EVENT_PAGEFAULT, BASE + ps, UFFD_PAGEFAULT_FLAG_WRITE)]
    assert p.uffd_read(fd) == []
    assert present(p, BASE, 4 * ps) == [0] * (4 * ps // KPS)
    # UFFDIO_COPY of one process page installs ps/4K kernel PTEs, then the access completes.
    assert p.uffdio_copy(fd, BASE + ps, b"\x5a" * ps, ps) == 0
    assert p.uffd_ctx(fd).last_copy == ps
    assert system.stats.events[STAT_INSTALLED] == ps // KPS
    n = ps // KPS
    assert present(p, BASE, 4 * ps) == [0] * n + [1] * n + [0] * (2 * n)
    assert p.touch(addr, write=True) == 0
    # A retried copy of the same page: -EEXIST and nothing copied (uffd-unit-tests retry_copy_page).
    assert p.uffdio_copy(fd, BASE + ps, b"\x5a" * ps, ps) == -errno.EEXIST
    assert p.uffd_ctx(fd).last_copy == -errno.EEXIST
    assert system.stats.events[STAT_INSTALLED] == n


@pytest.mark.parametrize("ps", [16 * K, 64 * K])
def test_any_present_kernel_page_makes_the_process_page_exist(system, ps):
    p, fd = registered(system, ps)
    # Copy pages 0..2 while page 1 is already filled: page 0 is copied, then -EEXIST at
    # page 1 stops the fill; mfill_atomic() returns the partial count -> -EAGAIN.
    assert p.uffdio_copy(fd, BASE + ps, ps, ps) == 0  # src as an address
    assert p.uffdio_copy(fd, BASE, b"\0" * 3 * ps, 3 * ps) == -errno.EAGAIN
    assert p.uffd_ctx(fd).last_copy == ps
    n = ps // KPS
    assert present(p, BASE, 4 * ps) == [1] * (2 * n) + [0] * (2 * n)
    assert system.stats.events[STAT_INSTALLED] == 2 * n


@pytest.mark.parametrize("ps", [4 * K, 16 * K, 64 * K])
def test_zeropage_maps_whole_process_pages(system, ps):
    p, fd = registered(system, ps)
    assert p.uffdio_zeropage(fd, BASE + 2 * ps, 2 * ps) == 0
    n = ps // KPS
    assert present(p, BASE, 4 * ps) == [0] * (2 * n) + [1] * (2 * n)
    assert system.stats.events[STAT_INSTALLED] == 2 * n
    assert p.uffdio_zeropage(fd, BASE + 3 * ps, ps) == -errno.EEXIST
    assert p.touch(BASE + 2 * ps) == 0  # a read of the zero page does not fault
    assert p.uffd_read(fd) == []


@pytest.mark.parametrize("ps", [16 * K, 64 * K])
def test_ranges_must_be_process_page_aligned(system, ps):
    p = system.execve(page_size=ps)
    assert p.mmap(BASE, 4 * ps, RW, ANON | MAP_FIXED) == BASE
    fd = p.userfaultfd()
    assert p.uffdio_register(fd, BASE + KPS, ps) == -errno.EINVAL
    assert p.uffdio_register(fd, BASE, KPS) == -errno.EINVAL
    assert p.uffdio_register(fd, BASE, 0) == -errno.EINVAL
    assert p.uffdio_register(fd, BASE, 2 * ps) == 0
    assert p.uffdio_copy(fd, BASE + KPS, b"\0" * ps, ps) == -errno.EINVAL
    assert p.uffdio_copy(fd, BASE, b"\0" * KPS, KPS) == -errno.EINVAL
    assert p.uffdio_zeropage(fd, BASE, KPS) == -errno.EINVAL
    assert system.stats.events[STAT_INSTALLED] == 0


def test_register_on_a_4k_process_accepts_4k_ranges(system):
    p = system.execve(page_size="4K")
    assert p.mmap(BASE, 4 * KPS, RW, ANON | MAP_FIXED) == BASE
    fd = p.userfaultfd()
    assert p.uffdio_register(fd, BASE + KPS, KPS) == 0
    # __split_vma(): the VMA is split around the registered page.
    assert [(v.start - BASE, v.end - BASE, bool(v.flags & VM_UFFD_MISSING)) for v in p.mm.vmas] == [
        (0, KPS, False), (KPS, 2 * KPS, True), (2 * KPS, 4 * KPS, False)]


def test_register_errors(system):
    p = system.execve(page_size="16K")
    assert p.mmap(BASE, 64 * K, RW, ANON | MAP_FIXED) == BASE
    fd = p.userfaultfd()
    assert p.uffdio_register(fd + 1, BASE, 16 * K) == -errno.EBADF
    assert p.uffdio_register(fd, BASE, 16 * K, mode=0) == -errno.EINVAL
    assert p.uffdio_register(fd, BASE, 16 * K, mode=UFFDIO_REGISTER_MODE_WP) == -errno.EINVAL
    assert p.uffdio_register(fd, BASE, 16 * K, mode=UFFDIO_REGISTER_MODE_MINOR) == -errno.EINVAL
    assert p.uffdio_register(fd, BASE + (1 << 30), 16 * K) == -errno.EINVAL  # no VMA there
    # A private file mapping cannot take MISSING faults (vma_can_userfault()).
    system.create_file("/f", 64 * K)
    ffd = p.open("/f")
    faddr = p.mmap(0, 64 * K, PROT_READ, MAP_PRIVATE, ffd, 0)
    assert p.uffdio_register(fd, faddr, 16 * K) == -errno.EINVAL
    # A VMA owned by another userfaultfd: -EBUSY.
    assert p.uffdio_register(fd, BASE, 16 * K) == 0
    other = p.userfaultfd()
    assert p.uffdio_register(other, BASE, 32 * K) == -errno.EBUSY
    # Filling outside a registered range: -ENOENT (find_dst_vma()).
    assert p.uffdio_copy(fd, BASE + 32 * K, b"\0" * 16 * K, 16 * K) == -errno.ENOENT
    assert p.uffdio_copy(fd, BASE, b"\0" * 100, 16 * K) == -errno.EFAULT


def test_register_across_a_hole_registers_the_mapped_parts(system):
    # # process page  0123
    # # vmas          A.B.      '.' = hole
    p = system.execve(page_size="64K")
    ps = 64 * K
    assert p.mmap(BASE, ps, RW, ANON | MAP_FIXED) == BASE
    assert p.mmap(BASE + 2 * ps, ps, RW, ANON | MAP_FIXED) == BASE + 2 * ps
    fd = p.userfaultfd()
    assert p.uffdio_register(fd, BASE, 4 * ps) == 0
    assert [(v.start - BASE, v.end - BASE, bool(v.flags & VM_UFFD_MISSING)) for v in p.mm.vmas] == [
        (0, ps, True), (2 * ps, 3 * ps, True)]
    assert p.uffd_ctx(fd).ranges == [(BASE, BASE + ps, 1), (BASE + 2 * ps, BASE + 3 * ps, 1)]


def test_unregister_restores_normal_faults(system):
    p, fd = registered(system, 16 * K)
    assert p.uffdio_unregister(fd, BASE, 4 * 16 * K) == 0
    assert not any(v.flags & VM_UFFD_MISSING for v in p.mm.vmas)
    assert p.touch(BASE, write=True) == 0
    assert p.uffd_read(fd) == []
    assert present(p, BASE, 16 * K) == [1, 1, 1, 1]


def test_shared_anonymous_memory_can_be_registered(system):
    p = system.execve(page_size="16K")
    assert p.mmap(BASE, 32 * K, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED) == BASE
    fd = p.userfaultfd()
    assert p.uffdio_register(fd, BASE, 32 * K) == 0


def test_a_monitor_fills_the_registered_process_in_its_page_size(system):
    # The fd passed to a 4K monitor (SCM_RIGHTS modelled as sharing the open object): the
    # ioctls act on the 64K target mm, so ranges are still in 64K process pages.
    target, fd = registered(system, 64 * K)
    monitor = system.execve(page_size="4K")
    monitor.fdtable[7] = target.fdtable[fd]
    assert target.touch(BASE + 64 * K) == memory.VM_FAULT_RETRY
    assert monitor.uffd_read(7) == [UffdMsg(UFFD_EVENT_PAGEFAULT, BASE + 64 * K, 0)]
    assert monitor.uffdio_copy(7, BASE + 64 * K, b"\0" * KPS, KPS) == -errno.EINVAL
    assert monitor.uffdio_copy(7, BASE + 64 * K, b"\0" * 64 * K, 64 * K) == 0
    assert present(target, BASE + 64 * K, 64 * K) == [1] * 16
    assert monitor.mm.vmas.find(BASE) is None
    target.exit()
    assert monitor.uffdio_copy(7, BASE, b"\0" * 64 * K, 64 * K) == -errno.ESRCH


def test_fork_child_loses_the_registration(system):
    from kernel_model.userfaultfd import dup_userfaultfd

    parent, fd = registered(system, 16 * K)
    child = parent.fork()
    dup_userfaultfd(parent.mm, child.mm)
    assert [bool(v.flags & VM_UFFD_MISSING) for v in child.mm.vmas] == [False]
    assert [bool(v.flags & VM_UFFD_MISSING) for v in parent.mm.vmas] == [True]
    assert child.touch(BASE, write=True) == 0
    assert parent.uffd_read(fd) == []


def test_munmap_drops_the_registration(system):
    p, fd = registered(system, 16 * K)
    assert p.munmap(BASE, 4 * 16 * K) == 0
    assert p.mmap(BASE, 4 * 16 * K, RW, ANON | MAP_FIXED) == BASE
    other = p.userfaultfd()
    assert p.uffdio_register(other, BASE, 4 * 16 * K) == 0  # no -EBUSY from the dead registration
    assert p.uffd_ctx(fd).covering(BASE) == 0
    assert p.touch(BASE) == memory.VM_FAULT_RETRY
    assert p.uffd_read(other) == [UffdMsg(UFFD_EVENT_PAGEFAULT, BASE, 0)]
    assert p.uffd_read(fd) == []


@pytest.mark.parametrize("ps,nr", [(16 * K, 1), (64 * K, 4)])
def test_on_a_16k_kernel_a_copy_installs_page_size_over_16k_ptes(ps, nr):
    system = System(kernel_page_size="16K", memory_size="256M")
    p = system.execve(page_size=ps)
    assert p.mmap(BASE, 2 * ps, RW, ANON | MAP_FIXED) == BASE
    fd = p.userfaultfd()
    assert p.uffdio_register(fd, BASE, 2 * ps) == 0
    assert p.touch(BASE + ps + 16 * K - 1, write=True) == memory.VM_FAULT_RETRY
    assert p.uffd_read(fd) == [UffdMsg(UFFD_EVENT_PAGEFAULT, BASE + ps, UFFD_PAGEFAULT_FLAG_WRITE)]
    assert p.uffdio_copy(fd, BASE + ps, b"\0" * ps, ps) == 0
    assert system.stats.events[STAT_INSTALLED] == nr
    look = p.mm.pgtable.lookup(np.arange(BASE, BASE + 2 * ps, 16 * K, dtype=np.int64))
    assert [int(x) for x in look.present] == [0] * nr + [1] * nr
