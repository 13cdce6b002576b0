"""On-demand native tables are discardable (Pedro/David in the thread, 2026-02-23): under
memory pressure the System frees them, and the next hardware walk rebuilds them."""

import numpy as np

from kernel_model import System
from kernel_model.abi import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE

M = 1 << 20


def test_reclaim_frees_on_demand_tables_and_the_walk_rebuilds_them():
    s = System("4K", "256M", native_pgtable="on_demand")
    p = s.execve(page_size="64K")
    addr = p.mmap(0, 8 * M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    for a in range(addr, addr + 8 * M, 64 * 1024):
        assert p.touch(a, write=True) == 0
    walk = np.arange(addr, addr + 8 * M, 64 * 1024, dtype=np.int64)
    p.mm.native.hw_lookup(walk)
    built = p.mm.native.bytes
    # The 64K native geometry at 48-bit VA has 3 levels (levels = (48 - 4) // (16 - 3)):
    # a top table of 1 << (48 - 42) = 64 entries (512 bytes), then PMD and PTE tables of 8192
    # entries (64K each). mmap places the 8M top-down just below mmap_base = 2**48 - 128M,
    # inside one 512M native leaf span: one PMD table and one PTE table are built.
    assert built == 64 * 8 + 2 * 8192 * 8 and p.mm.native.native_rebuilds == 1
    # Reclaim discards that span's PTE table and the PMD table it leaves empty; the top table stays.
    assert s.reclaim_native_tables(1) == 2 * 8192 * 8
    assert p.mm.native.stats["native_reclaimed_bytes"] == 2 * 8192 * 8
    assert p.mm.native.bytes == 64 * 8
    look = p.mm.native.hw_lookup(walk)
    assert look.present.all() and p.mm.native.native_rebuilds == 2
    assert p.mm.native.bytes == built
    assert s.stats.events["native_reclaims"] == 1
