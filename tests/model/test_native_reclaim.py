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
    assert built > 0 and p.mm.native.native_rebuilds == 1
    assert s.reclaim_native_tables(1) > 0
    assert p.mm.native.stats["native_reclaimed_bytes"] > 0
    look = p.mm.native.hw_lookup(walk)
    assert look.present.all() and p.mm.native.native_rebuilds == 2
    assert p.mm.native.bytes == built
    assert s.stats.events["native_reclaims"] == 1
