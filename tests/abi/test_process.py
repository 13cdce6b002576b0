"""Processes: execve with a personality page size, fork inheritance, exit (fs/exec.c, kernel/fork.c)."""

import errno

import numpy as np
import pytest

from kernel_model.abi import AT_PAGESZ, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
from kernel_model.system import System

RW = PROT_READ | PROT_WRITE


def pfn_of(p, addr):
    return int(p.mm.pgtable.lookup(np.array([addr], dtype=np.int64)).pfn[0])


@pytest.mark.parametrize("kernel,page,expect", [("4K", "kernel", 4096), ("4K", "16K", 16384),
                                                ("4K", "64K", 65536), ("16K", "kernel", 16384),
                                                ("16K", "64K", 65536)])
def test_page_size_getpagesize_and_auxv(kernel, page, expect):
    s = System(kernel, "64M")
    p = s.execve(page_size=page)
    assert (p.page_size, p.getpagesize(), p.auxv[AT_PAGESZ], p.getauxval(AT_PAGESZ)) == (expect,) * 4
    assert p.mm.page_size == expect and p.mm.vmas.page_size == expect
    assert p.mm.vmas.kernel_page_size == s.kernel_page_size
    assert s.processes == {p.pid: p}


def test_page_size_below_the_kernel_is_refused():
    s = System("16K", "64M")
    with pytest.raises(ValueError, match="below the kernel page size"):
        s.execve(page_size="4K")
    assert s.processes == {}


def test_fork_inherits_the_page_size_and_shares_anon_cow(proc, layout):
    ps = proc.page_size
    addr = proc.mmap(0, 2 * ps, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    assert proc.touch(addr, write=True) == 0
    child = proc.fork()
    assert child.pid != proc.pid
    assert (child.page_size, child.getpagesize(), child.auxv[AT_PAGESZ]) == (ps, ps, ps)
    assert layout(child) == layout(proc)
    assert sorted(proc.system.processes) == sorted([proc.pid, child.pid])
    assert pfn_of(child, addr) == pfn_of(proc, addr)  # shared copy-on-write
    assert proc.touch(addr, write=True) == 0
    assert pfn_of(child, addr) != pfn_of(proc, addr)  # the parent's write copied the page
    assert child.mincore(addr, 2 * ps) == [1, 0]


def test_execve_replaces_the_mm_and_keeps_the_pid(make_proc):
    p = make_proc("4K", "16K")
    pid = p.pid
    addr = p.mmap(0, 16384, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    assert p.touch(addr, write=True) == 0
    # base folios (the System default): the write fault allocates one folio of the
    # process order, 16K, and nothing else is anonymous
    assert p.system.anon_bytes == 16384
    p.execve()  # the personality's page size is kept
    assert (p.pid, p.page_size, p.mm.vmas.vmas) == (pid, 16384, [])
    assert p.system.anon_bytes == 0
    p.execve(page_size="64K")
    assert (p.page_size, p.auxv[AT_PAGESZ]) == (65536, 65536)
    child = p.fork()
    child.execve()
    assert child.page_size == 65536  # inherited personality survives the child's exec


def test_exit_leaves_the_process_table(proc):
    child = proc.fork()
    child.exit()
    assert child.mm is None and child.pid not in proc.system.processes
    child.exit()  # idempotent
    with pytest.raises(ValueError, match="has exited"):
        child.fork()


def test_spawn_with_a_non_elf_path_fails_with_enoexec(tmp_path):
    path = tmp_path / "not-elf"
    path.write_bytes(b"#!/bin/sh\necho hi\n")
    s = System("4K", "64M")
    with pytest.raises(OSError) as info:
        s.execve(page_size="16K", path=str(path))
    assert info.value.errno == errno.ENOEXEC
    assert s.processes == {}
