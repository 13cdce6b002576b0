"""The huge zero page (mm/huge_memory.c do_huge_pmd_anonymous_page() read path,
do_huge_zero_wp_pmd(), copy_huge_pmd(), zap_huge_pmd()), as the running 6.18 kernel
shows it (tests/oracle compares the same against the live kernel)."""

from kernel_model.abi import (MADV_DONTNEED, MADV_NOHUGEPAGE, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ,
                              PROT_WRITE)
from kernel_model.huge_memory import huge_zero_folio
from tests.kernel_model.mmdraw import proc

M = 1 << 20
BASE = 0x40000000
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED


def _setup(**knobs):
    s, p = proc("4K", "4K", memory="256M", thp_pmd=True, **knobs)
    assert p.mmap(BASE, 4 * M, RW, ANON) == BASE
    return s, p


def test_read_maps_the_huge_zero_page_and_a_write_gets_a_thp():
    s, p = _setup()
    assert p.touch(BASE + 5000, write=False) == 0
    hz = huge_zero_folio(s, alloc=False)
    assert hz is not None and hz.order == 9
    assert p.mm.pgtable.pmd_blocks_in(BASE, BASE + 4 * M) == [BASE]
    assert p.mm.pgtable.pte_get(BASE + 2 * M - 4096)[0] == hz.pfn + 511
    assert s.anon_bytes == 0 and s.stats.events["faults"] == 1
    assert p.touch(BASE + M, write=False) == 0  # still mapped: no fault
    assert s.stats.events["faults"] == 1
    assert p.touch(BASE + 8192, write=True) == 0  # do_huge_zero_wp_pmd(): one fault, a whole THP
    assert s.stats.events["faults"] == 2 and s.anon_bytes == 2 * M
    pfn, prot, _ = p.mm.pgtable.pte_get(BASE)
    assert s.pfn_folio(pfn).order == 9 and prot & PROT_WRITE and not hz.rmap
    assert p.mm.pgtable.pmd_blocks_in(BASE, BASE + 4 * M) == [BASE]


def test_use_zero_page_off_maps_the_small_zero_page():
    s, p = _setup(huge_zero_page=False)
    assert p.touch(BASE, write=False) == 0
    assert huge_zero_folio(s, alloc=False) is None
    assert p.mm.pgtable.pmd_blocks_in(BASE, BASE + 4 * M) == []
    assert s.pfn_folio(p.mm.pgtable.pte_get(BASE)[0]) is s.zero_folio


def test_nohugepage_and_a_populated_range_get_no_huge_zero_page():
    s, p = _setup()
    assert p.touch(BASE + 2 * M, write=True) == 0  # a THP at [2M, 4M)
    assert p.madvise(BASE, 2 * M, MADV_NOHUGEPAGE) == 0
    assert p.touch(BASE, write=False) == 0
    assert huge_zero_folio(s, alloc=False) is None


def test_fork_shares_and_dontneed_keeps_the_huge_zero_page():
    s, p = _setup()
    assert p.touch(BASE, write=False) == 0
    hz = huge_zero_folio(s, alloc=False)
    child = p.fork()
    assert child.mm.pgtable.pte_get(BASE)[0] == hz.pfn
    assert child.touch(BASE, write=True) == 0
    assert s.anon_bytes == 2 * M and p.mm.pgtable.pte_get(BASE)[0] == hz.pfn
    assert p.madvise(BASE, 2 * M, MADV_DONTNEED) == 0
    assert s.folios.get(hz.pfn) is hz and p.mm.pgtable.pte_get(BASE)[0] == -1
