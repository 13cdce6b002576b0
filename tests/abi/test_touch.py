"""touch(): the access path with Linux's signals (arch/arm64/mm/fault.c, mm/memory.c, mm/filemap.c)."""

import signal

from kernel_model.abi import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_NONE, PROT_READ, PROT_WRITE

RW = PROT_READ | PROT_WRITE


def test_sigsegv_cases(proc):
    ps = proc.page_size
    assert proc.touch(proc.mm.mmap_base) == signal.SIGSEGV  # nothing mapped
    ro = proc.mmap(0, ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS)
    none = proc.mmap(0, ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS)
    assert proc.touch(ro, write=True) == signal.SIGSEGV
    assert proc.touch(ro) == 0
    assert proc.touch(none) == signal.SIGSEGV
    assert proc.touch(-1) == signal.SIGSEGV
    assert proc.touch(1 << 48) == signal.SIGSEGV


def test_anonymous_write_fault_fills_a_whole_process_page(proc):
    ps = proc.page_size
    addr = proc.mmap(0, 2 * ps, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    before = proc.system.anon_bytes
    assert proc.touch(addr + ps - 1, write=True) == 0
    assert proc.system.anon_bytes - before == ps  # the process order is the minimum folio order
    assert proc.mincore(addr, 2 * ps) == [1, 0]


def test_a_whole_process_page_past_eof_is_sigbus(proc):
    ps = proc.page_size
    proc.system.create_file("/f", ps)
    addr = proc.mmap(0, 2 * ps, PROT_READ, MAP_SHARED, proc.open("/f"), 0)
    assert proc.touch(addr + ps - 1) == 0
    assert proc.touch(addr + ps) == signal.SIGBUS


# -- the thread's case: a 64K process maps a 12K file (Kalesh / Dev, 2026-02-26) ----------

def _map_small(make_proc, policy):
    p = make_proc("4K", "64K", overhang=policy)
    p.system.create_file("/small", 12 * 1024)
    addr = p.mmap(0, 65536, PROT_READ, MAP_PRIVATE, p.open("/small"), 0)
    return p, addr


def test_overhang_sigbus(make_proc):
    p, addr = _map_small(make_proc, "sigbus")
    assert p.touch(addr + 8 * 1024) == 0
    assert p.touch(addr + 12 * 1024) == signal.SIGBUS
    assert p.system.stats.events["sigbus"] == 1


def test_overhang_anon_fault_pads_13_pages(make_proc):
    p, addr = _map_small(make_proc, "anon_fault")
    assert p.touch(addr + 12 * 1024) == 0
    assert p.touch(addr + 60 * 1024) == 0
    assert p.system.padding_bytes == 52 * 1024  # 13 anonymous 4K pages


def test_overhang_anon_vma(make_proc):
    p, addr = _map_small(make_proc, "anon_vma")
    assert len(p.mm.vmas) == 2
    assert p.touch(addr) == 0
    assert p.touch(addr + 12 * 1024) == 0
    assert p.touch(addr + 60 * 1024) == 0
    assert p.mincore(addr, 65536) == [1]
