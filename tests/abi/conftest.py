"""Fixtures for the syscall tests: a process per (kernel page size, process page size).

The matrix of the issue: process pages of 4K, 16K and 64K on a 4K kernel, and 16K on a
16K kernel. Until kernel_model/pgtable.py lands, a small dict-backed stand-in with the
README's PageTable interface is installed so that these tests exercise the ABI alone.
"""

import importlib.util
import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest


def _install_pgtable_double():
    if importlib.util.find_spec("kernel_model.pgtable") is not None:
        return

    @dataclass
    class Lookup:
        present: np.ndarray
        pfn: np.ndarray
        prot: np.ndarray
        base_shift: np.ndarray
        leaf_shift: np.ndarray
        desc_addr: np.ndarray

    class PageTable:
        """Leaf entries in a dict keyed by kernel-page number: enough for the ABI tests."""

        def __init__(self, geom, *, table_alloc=None, table_free=None, contpte=False):
            self.geom = geom
            self.shift = geom.page_shift
            self.ptes = {}
            self.listeners = []
            self.bytes = 0

        def set_ptes(self, addr, pfn, nr, prot, *, folio_pfn=None, folio_nr=None):
            base = addr >> self.shift
            for i in range(nr):
                self.ptes[base + i] = (pfn + i, prot)

        def clear_ptes(self, addr, nr):
            base = addr >> self.shift
            return np.array([self.ptes.pop(base + i, (-1, 0))[0] for i in range(nr)], dtype=np.int64)

        def modify_prot(self, addr, nr, prot):
            base = addr >> self.shift
            for i in range(nr):
                if base + i in self.ptes:
                    self.ptes[base + i] = (self.ptes[base + i][0], prot)

        def set_pmd(self, addr, pfn, prot):
            self.set_ptes(addr, pfn, self.geom.pmd_size >> self.shift, prot)

        def clear_pmd(self, addr):
            self.clear_ptes(addr, self.geom.pmd_size >> self.shift)

        def lookup(self, addrs):
            keys = np.asarray(addrs, dtype=np.int64) >> self.shift
            got = [self.ptes.get(int(k)) for k in keys]
            n = len(got)
            return Lookup(present=np.array([g is not None for g in got], dtype=bool),
                          pfn=np.array([g[0] if g else -1 for g in got], dtype=np.int64),
                          prot=np.array([g[1] if g else 0 for g in got], dtype=np.int8),
                          base_shift=np.full(n, self.shift, dtype=np.int8),
                          leaf_shift=np.full(n, self.shift, dtype=np.int8),
                          desc_addr=np.full((n, 1), -1, dtype=np.int64))

        def free_empty_tables(self):
            pass

        def nr_tables(self, level_number):
            return 0

    mod = types.ModuleType("kernel_model.pgtable")
    mod.PageTable, mod.Lookup = PageTable, Lookup
    sys.modules["kernel_model.pgtable"] = mod


_install_pgtable_double()

from kernel_model.system import System  # noqa: E402

MATRIX = [("4K", "4K"), ("4K", "16K"), ("4K", "64K"), ("16K", "16K")]


@pytest.fixture(params=MATRIX, ids=[f"k{k}-p{p}" for k, p in MATRIX])
def proc(request):
    kernel, page = request.param
    system = System(kernel_page_size=kernel, memory_size="256M")
    return system.execve(page_size=page)


@pytest.fixture
def make_proc():
    """make_proc(kernel, page, **policy) -> a fresh process on a fresh System."""
    def make(kernel="4K", page="kernel", memory_size="256M", **knobs):
        return System(kernel_page_size=kernel, memory_size=memory_size, **knobs).execve(page_size=page)
    return make


def layout(p):
    """(start, end, prot bits) of every VMA, as the tests assert it."""
    return [(v.start, v.end, v.flags & 7) for v in p.mm.vmas.vmas]


@pytest.fixture(name="layout")
def layout_fixture():
    return layout


@pytest.fixture
def reserve():
    """reserve(p, n) -> a base address with n free process pages above it (mapped then unmapped)."""
    def make(p, n):
        from kernel_model.abi import MAP_ANONYMOUS, MAP_PRIVATE, PROT_NONE

        base = p.mmap(0, n * p.page_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS)
        assert base > 0
        assert p.munmap(base, n * p.page_size) == 0
        return base
    return make
