"""/proc/pid/pagemap across page sizes on a 4K kernel (fs/proc/task_mmu.c, pagemap.rst).

One entry per READER page; the PFN is a kernel (4K) frame. Process pages drawn in 4K
kernel pages:

    # kernel page  0123456789abcdef 0123456789abcdef
    # 4K process    WW               W                 (written pages)
    # 64K reader   [      entry 0  ][      entry 1  ]
"""

import errno

import numpy as np
import pytest

from kernel_model.abi import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE
from kernel_model.pagemap import (PAGEMAP_STAT_MISMATCH, PM_FILE, PM_MMAP_EXCLUSIVE, PM_PRESENT, pagemap_pfn)
from kernel_model.system import System

K = 1024
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def kernel_pfns(proc, addrs):
    """The kernel frames mapped at addrs, straight from the Linux page table (-1: none)."""
    look = proc.mm.pgtable.lookup(np.asarray(addrs, dtype=np.int64))
    return [int(p) if ok else -1 for p, ok in zip(look.pfn, look.present)]


class _DoublePageTable:
    """Stand-in for pgtable.PageTable while pgtable.py is not in the tree: one dict entry per
    kernel page, the README contract's set_ptes/clear_ptes/modify_prot/lookup."""

    def __init__(self, geom, *, table_alloc=None, table_free=None, contpte=False):
        self.shift = geom.page_shift
        self.ptes = {}
        self.listeners = []

    def set_ptes(self, addr, pfn, nr, prot, *, folio_pfn=None, folio_nr=None):
        for i in range(nr):
            self.ptes[(addr >> self.shift) + i] = (pfn + i, prot)

    def clear_ptes(self, addr, nr):
        return np.array([self.ptes.pop((addr >> self.shift) + i, (-1, 0))[0] for i in range(nr)], dtype=np.int64)

    def modify_prot(self, addr, nr, prot):
        for i in range(nr):
            key = (addr >> self.shift) + i
            if key in self.ptes:
                self.ptes[key] = (self.ptes[key][0], prot)

    def lookup(self, addrs):
        got = [self.ptes.get(int(a) >> self.shift, (-1, 0)) for a in np.asarray(addrs)]
        pfn = np.array([g[0] for g in got], dtype=np.int64)
        return type("Lookup", (), {"present": pfn >= 0, "pfn": pfn,
                                   "prot": np.array([g[1] for g in got], dtype=np.int8)})()

    def free_empty_tables(self):
        return None


@pytest.fixture(autouse=True)
def _pgtable(monkeypatch):
    """Use the real kernel_model.pgtable when it exists, the double above otherwise."""
    try:
        import kernel_model.pgtable  # noqa: F401
    except ModuleNotFoundError:
        import sys
        import types

        monkeypatch.setitem(sys.modules, "kernel_model.pgtable", types.SimpleNamespace(PageTable=_DoublePageTable))


@pytest.fixture
def system():
    return System(kernel_page_size="4K", memory_size="256M")


def test_64k_reader_of_a_4k_process_sees_the_first_kernel_page_only(system):
    p4 = system.execve(page_size="4K")
    p64 = system.execve(page_size="64K")
    addr = p4.mmap(0x10000000, 128 * K, RW, ANON | MAP_FIXED)  # 64K aligned, so the reader can index it
    assert addr == 0x10000000
    for page in (1, 2, 16):  # kernel pages 1, 2 of the first 64K and page 0 of the second
        assert p4.touch(addr + page * 4 * K, write=True) == 0
    pfn1, pfn2, pfn16 = kernel_pfns(p4, [addr + 4 * K, addr + 8 * K, addr + 64 * K])
    assert -1 not in (pfn1, pfn2, pfn16)
    before = system.stats.events[PAGEMAP_STAT_MISMATCH]
    # Entry 0 indexes kernel page 0, which is not mapped: the 64K reader sees nothing
    # although two kernel pages of that 64K are present. Entry 1 carries kernel page 16's PFN.
    assert p64.read_pagemap(p4.pid, addr, 2) == [0, PM_PRESENT | PM_MMAP_EXCLUSIVE | pfn16]
    assert system.stats.events[PAGEMAP_STAT_MISMATCH] - before == 1
    # The same process read by a 4K reader: exact kernel PFNs, one per 4K, no mismatch.
    assert p4.read_pagemap(p4.pid, addr, 3) == [0, PM_PRESENT | PM_MMAP_EXCLUSIVE | pfn1,
                                               PM_PRESENT | PM_MMAP_EXCLUSIVE | pfn2]
    assert system.stats.events[PAGEMAP_STAT_MISMATCH] - before == 1


def test_4k_reader_of_a_64k_process_gets_sixteen_kernel_frames_per_process_page(system):
    p64 = system.execve(page_size="64K")
    p4 = system.execve(page_size="4K")
    addr = p64.mmap(0, 128 * K, RW, ANON)
    assert p64.touch(addr + 5 * 4 * K, write=True) == 0  # faults the whole 64K process page
    first = kernel_pfns(p64, [addr])[0]
    entries = p4.read_pagemap(p64.pid, addr, 17)
    assert entries == [PM_PRESENT | PM_MMAP_EXCLUSIVE | (first + i) for i in range(16)] + [0]
    assert system.stats.events[PAGEMAP_STAT_MISMATCH] == 0
    # The 64K process reading itself: one entry per 64K; the PFN is still in 4K frames, so
    # pfn * 64K (what a 64K tool computes) is not the physical address pfn * 4K.
    own = p64.read_pagemap(p64.pid, addr, 2)
    assert own == [PM_PRESENT | PM_MMAP_EXCLUSIVE | first, 0]
    assert pagemap_pfn(own[0]) == first
    assert system.stats.events[PAGEMAP_STAT_MISMATCH] == 1


def test_fork_shares_pages_so_they_are_not_exclusive(system):
    parent = system.execve(page_size="16K")
    addr = parent.mmap(0, 32 * K, RW, ANON)
    assert parent.touch(addr, write=True) == 0
    pfn = kernel_pfns(parent, [addr])[0]
    assert parent.read_pagemap(parent.pid, addr, 1) == [PM_PRESENT | PM_MMAP_EXCLUSIVE | pfn]
    child = parent.fork()
    assert parent.read_pagemap(parent.pid, addr, 1) == [PM_PRESENT | pfn]
    assert parent.read_pagemap(child.pid, addr, 2) == [PM_PRESENT | pfn, 0]


def test_file_pages_carry_pm_file(system):
    system.create_file("/data", 64 * K)
    p = system.execve(page_size="16K")
    fd = p.open("/data")
    addr = p.mmap(0, 64 * K, PROT_READ, MAP_SHARED, fd, 0)
    assert p.touch(addr + 16 * K) == 0
    pfn = kernel_pfns(p, [addr + 16 * K])[0]
    assert p.read_pagemap(p.pid, addr + 16 * K, 1) == [PM_PRESENT | PM_FILE | PM_MMAP_EXCLUSIVE | pfn]


def test_read_faults_map_the_zero_page_without_flags(system):
    p = system.execve(page_size="16K")
    addr = p.mmap(0, 16 * K, PROT_READ, ANON)
    assert p.touch(addr) == 0
    pfn = kernel_pfns(p, [addr])[0]
    if system.zero_folio is None:
        pytest.skip("this System has no zero page")
    assert pfn == system.zero_folio.pfn
    assert p.read_pagemap(p.pid, addr, 1) == [PM_PRESENT | pfn]  # vm_normal_page() is NULL


def test_errors_and_edges(system):
    p64 = system.execve(page_size="64K")
    p4 = system.execve(page_size="4K")
    assert p64.read_pagemap(p4.pid, 0x10000000 + 4 * K, 1) == -errno.EINVAL  # not a 64K offset
    assert p4.read_pagemap(p64.pid, 0x10000000 + 4 * K, 1) == [0]
    assert p4.read_pagemap(p64.pid, 0x10000000, -1) == -errno.EINVAL
    assert p4.read_pagemap(9999, 0, 1) == -errno.ESRCH
    assert p4.read_pagemap(p64.pid, 0, 0) == []
    top = 1 << 48
    assert p64.read_pagemap(p4.pid, top - 64 * K, 5) == [0]  # read() stops at TASK_SIZE
    with pytest.raises(TypeError, match="ints"):
        p4.read_pagemap(p64.pid, "0x1000", 1)


def test_16k_kernel_16k_reader_has_no_mismatch_and_64k_reader_does():
    system = System(kernel_page_size="16K", memory_size="256M")
    p16 = system.execve(page_size="16K")
    p64 = system.execve(page_size="64K")
    addr = p64.mmap(0, 64 * K, RW, ANON)
    assert p64.touch(addr, write=True) == 0
    first = kernel_pfns(p64, [addr])[0]
    flags = PM_PRESENT | PM_MMAP_EXCLUSIVE
    assert p16.read_pagemap(p64.pid, addr, 4) == [flags | (first + i) for i in range(4)]
    assert system.stats.events[PAGEMAP_STAT_MISMATCH] == 0
    assert p64.read_pagemap(p64.pid, addr, 1) == [flags | first]
    assert system.stats.events[PAGEMAP_STAT_MISMATCH] == 1
