"""Fixtures for the syscall tests: a process per (kernel page size, process page size).

The matrix: process pages of 4K, 16K and 64K on a 4K kernel, and 16K on a 16K kernel.
"""

import pytest

from kernel_model.system import System

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
        # an address, not -errno; its value depends on what the caller mapped before, so
        # the contract checked is the fixture's own: n free process pages from base up
        assert base >= 0 and base % p.page_size == 0
        assert p.munmap(base, n * p.page_size) == 0
        assert p.mm.vmas.find_intersection(base, base + n * p.page_size) == []
        return base
    return make
