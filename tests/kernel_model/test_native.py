"""The native page table of a 64K process on a 4K kernel (the thread's correspondences).

Scale of the diagrams: the Linux table in 4K geometry, the native one in 64K geometry.

    Linux PTE tables (2M each)   |t0|t1|t2| ... |t255|      256 tables
    native PTE table (512M)      |          T0          |   8192 entries, 1 table

    Linux PMD table (1G)         |            P0            |
    native PTE tables            |     T0      |     T1     |   2 x 512M
"""

import numpy as np
import pytest

from kernel_model.arch.arm64.native import NativePageTable
from kernel_model.geometry import geometry
from kernel_model.mm_types import PROT_READ, PROT_WRITE
from kernel_model.pgtable import PageTable

K4, P16, P64 = geometry("4K"), geometry("16K"), geometry("64K")
RW = PROT_READ | PROT_WRITE
KB, M, G = 1 << 10, 1 << 20, 1 << 30
BASE = 1 * G  # 512M- and 1G-aligned


class Recorder:
    def __init__(self):
        self.next = 0x100000
        self.allocs = []

    def alloc(self, nbytes):
        phys = self.next
        self.next += max(nbytes, 4096)
        self.allocs.append(nbytes)
        return phys

    def free(self, phys, nbytes):
        pass


def mirror(proc=P64, contpte=False, rec=None):
    lp = PageTable(K4, contpte=contpte)
    kw = {"table_alloc": rec.alloc, "table_free": rec.free} if rec else {}
    return lp, NativePageTable(lp, proc, "mirror", contpte=contpte, **kw)


def map_folios(lp, start, size, folio_bytes, pfn0=0):
    """Map [start, start+size) folio by folio, as the fault path does (one set_ptes per folio)."""
    nr = folio_bytes // 4096
    for i in range(size // folio_bytes):
        pfn = pfn0 + i * nr
        lp.set_ptes(start + i * folio_bytes, pfn, nr, RW, folio_pfn=pfn, folio_nr=nr)


def test_512m_of_64k_folios_is_256_linux_tables_and_one_native_table():
    rec = Recorder()
    lp, nt = mirror(rec=rec)
    map_folios(lp, BASE, 512 * M, 64 * KB)
    assert lp.nr_tables(3) == 256
    assert nt.nr_tables(3) == 1
    assert nt.table.nr_ptes == 8192
    # native: 64-entry pgd (512 B) + one PMD table + one PTE table, 64K each
    assert [nt.nr_tables(n) for n in (1, 2, 3)] == [1, 1, 1]
    assert nt.bytes == 512 + 2 * 64 * KB
    assert rec.allocs == [512, 64 * KB, 64 * KB]  # a 64K table is a high-order allocation
    assert lp.bytes == (1 + 1 + 1 + 256) * 4096
    assert nt.fallbacks == 0


def test_1g_spans_one_linux_pmd_table_and_two_native_pte_tables():
    lp, nt = mirror()
    map_folios(lp, BASE, G, 2 * M)
    assert (lp.nr_tables(2), lp.nr_tables(3)) == (1, 512)
    assert (nt.nr_tables(2), nt.nr_tables(3)) == (1, 2)
    assert nt.table.nr_ptes == G // (64 * KB)
    assert nt.bytes == 512 + 3 * 64 * KB


def test_hw_lookup_converts_native_frames_to_kernel_pfns():
    lp, nt = mirror()
    map_folios(lp, BASE, 256 * KB, 64 * KB, pfn0=4096)
    addrs = np.array([BASE, BASE + 64 * KB + 3 * 4096 + 5, BASE + 256 * KB])
    look = nt.hw_lookup(addrs)
    assert look.present.tolist() == [True, True, False]
    assert look.pfn.tolist() == [4096, 4096 + 16 + 3, -1]
    assert look.base_shift.tolist() == [16, 16, 16]
    assert look.leaf_shift.tolist() == [16, 16, 16]
    assert look.desc_addr.shape == (3, 4)  # max(4 Linux levels, 3 native levels)
    assert (look.desc_addr[:, 3] == -1).all()
    assert look.desc_addr[0, 2] + 8 == look.desc_addr[1, 2]  # neighbouring native PTEs


def test_partial_clear_falls_back_to_the_linux_table():
    #   64K process pages:  | p0 | p1 | p2 | p3 |
    #   clear 4 kernel PTEs inside p2:
    #   Linux PTEs of p2:   ####....########
    #   p2 is walked in the Linux table from now on; p0, p1, p3 stay native
    lp, nt = mirror()
    map_folios(lp, BASE, 256 * KB, 64 * KB)
    lp.clear_ptes(BASE + 2 * 64 * KB + 4 * 4096, 4)
    assert nt.fallbacks == 1
    assert nt.fallback_pages == [(BASE >> 16) + 2]
    assert nt.table.nr_ptes == 3
    addrs = BASE + np.array([0, 2 * 64 * KB, 2 * 64 * KB + 4 * 4096, 2 * 64 * KB + 8 * 4096, 3 * 64 * KB])
    look = nt.hw_lookup(addrs)
    assert look.base_shift.tolist() == [16, 12, 12, 12, 16]
    assert look.present.tolist() == [True, True, False, True, True]
    assert look.pfn.tolist() == [0, 32, -1, 40, 48]
    assert (look.desc_addr[1] >= 0).sum() == 4  # a full 4-level Linux walk
    assert (look.desc_addr[0] >= 0).sum() == 3  # a 3-level native walk


def test_misaligned_pa_is_not_translatable():
    lp, nt = mirror()
    lp.set_ptes(BASE, 8, 16, RW, folio_pfn=8, folio_nr=16)  # PA not 64K aligned
    assert nt.fallbacks == 1
    assert nt.table.nr_ptes == 0
    assert nt.hw_lookup(np.array([BASE + 4096])).pfn.tolist() == [9]


def test_a_whole_page_op_recovers_a_fallback_page():
    lp, nt = mirror()
    map_folios(lp, BASE, 64 * KB, 64 * KB)
    lp.clear_ptes(BASE, 1)
    assert nt.fallback_pages == [BASE >> 16]
    lp.clear_ptes(BASE, 16)                      # the whole process page: translatable again
    map_folios(lp, BASE, 64 * KB, 64 * KB, pfn0=160)
    assert nt.fallback_pages == []
    assert nt.fallbacks == 1
    look = nt.hw_lookup(np.array([BASE + 4096]))
    assert (look.pfn.tolist(), look.base_shift.tolist()) == ([161], [16])


def test_modify_prot_is_translated_or_falls_back():
    lp, nt = mirror()
    map_folios(lp, BASE, 128 * KB, 64 * KB)
    lp.modify_prot(BASE, 16, PROT_READ)
    assert nt.hw_lookup(np.array([BASE, BASE + 64 * KB])).prot.tolist() == [1, 3]
    lp.modify_prot(BASE + 64 * KB, 8, PROT_READ)   # half a process page
    assert nt.fallbacks == 1
    look = nt.hw_lookup(np.array([BASE + 64 * KB, BASE + 64 * KB + 8 * 4096]))
    assert look.prot.tolist() == [1, 3]
    assert look.base_shift.tolist() == [12, 12]


def test_linux_pud_block_becomes_two_native_pmd_blocks():
    lp, nt = mirror()
    lp.set_pud(BASE, 262144, RW)          # a 1G hugetlb folio
    assert (nt.nr_tables(3), nt.table.nr_blocks(2)) == (0, 2)
    look = nt.hw_lookup(np.array([BASE + 512 * M + 4096]))
    assert look.leaf_shift.tolist() == [29]
    assert look.pfn.tolist() == [262144 + 131072 + 1]
    lp.clear_pud(BASE)
    assert nt.table.nr_blocks(2) == 0
    assert nt.hw_lookup(np.array([BASE])).present.tolist() == [False]


def test_linux_pmd_block_is_32_native_ptes():
    lp, nt = mirror()
    lp.set_pmd(BASE, 512, RW)
    assert nt.table.nr_ptes == 32
    assert nt.hw_lookup(np.array([BASE + 2 * M - 4096])).pfn.tolist() == [1023]


def test_native_contpte_folds_32_entries_of_one_2m_folio():
    lp, nt = mirror(contpte=True)
    lp.set_pmd(BASE, 512, RW)
    assert nt.table.cont_bits(BASE, 32).all()
    assert nt.hw_lookup(np.array([BASE])).leaf_shift.tolist() == [21]


def test_16k_process_on_4k_kernel():
    lp, nt = mirror(proc=P16)
    map_folios(lp, BASE, 64 * M, 16 * KB)
    assert lp.nr_tables(3) == 32          # 64M / 2M
    assert nt.nr_tables(3) == 2           # 64M / 32M
    assert nt.table.nr_ptes == 4096
    lp.clear_ptes(BASE + 4096, 1)
    assert nt.fallbacks == 1


def test_on_demand_builds_on_first_walk_and_drops_on_change():
    lp = PageTable(K4)
    nt = NativePageTable(lp, P64, "on_demand")
    map_folios(lp, BASE, 1 * M, 64 * KB)
    assert nt.nr_tables(3) == 0 and nt.native_rebuilds == 0
    look = nt.hw_lookup(np.array([BASE, BASE + 64 * KB + 4096]))
    assert look.pfn.tolist() == [0, 17]
    assert (nt.nr_tables(3), nt.native_rebuilds, nt.table.nr_ptes) == (1, 1, 16)
    nt.hw_lookup(np.array([BASE + 4096]))
    assert nt.native_rebuilds == 1            # already built
    map_folios(lp, BASE + 1 * M, 64 * KB, 64 * KB, pfn0=4096)  # a change under the span
    assert (nt.nr_tables(3), nt.stats["native_invalidations"]) == (0, 1)
    assert nt.hw_lookup(np.array([BASE + 1 * M])).pfn.tolist() == [4096]
    assert (nt.native_rebuilds, nt.table.nr_ptes) == (2, 17)


def test_on_demand_partial_page_falls_back_at_build():
    lp = PageTable(K4)
    nt = NativePageTable(lp, P64, "on_demand")
    map_folios(lp, BASE, 128 * KB, 64 * KB)
    lp.clear_ptes(BASE, 1)
    look = nt.hw_lookup(np.array([BASE, BASE + 4096, BASE + 64 * KB]))
    assert nt.fallbacks == 1
    assert look.base_shift.tolist() == [12, 12, 16]
    assert look.pfn.tolist() == [-1, 1, 16]


def test_on_demand_reclaim_discards_oldest_tables_first():
    lp = PageTable(K4)
    nt = NativePageTable(lp, P64, "on_demand")
    map_folios(lp, BASE, 64 * KB, 64 * KB)
    map_folios(lp, BASE + 512 * M, 64 * KB, 64 * KB, pfn0=16)
    nt.hw_lookup(np.array([BASE, BASE + 512 * M]))
    assert nt.bytes == 512 + 3 * 64 * KB
    assert nt.reclaim(1) == 64 * KB            # the first span's leaf table
    assert nt.nr_tables(3) == 1
    assert nt.reclaim(10 * 64 * KB) == 2 * 64 * KB  # the second leaf table and the PMD table
    assert nt.bytes == 512
    assert nt.hw_lookup(np.array([BASE])).pfn.tolist() == [0]
    assert nt.native_rebuilds == 3


def test_on_demand_whole_native_block_of_one_folio_is_a_pmd_block():
    lp = PageTable(K4)
    nt = NativePageTable(lp, P64, "on_demand")
    lp.set_pud(BASE, 262144, RW)
    look = nt.hw_lookup(np.array([BASE + 4096]))
    assert (look.leaf_shift.tolist(), look.pfn.tolist()) == ([29], [262145])
    assert nt.nr_tables(3) == 0


def test_mirror_of_an_already_populated_table():
    lp = PageTable(K4)
    map_folios(lp, BASE, 128 * KB, 64 * KB)
    nt = NativePageTable(lp, P64, "mirror")
    assert nt.table.nr_ptes == 2
    assert nt.native_rebuilds == 0


@pytest.mark.parametrize("args, match", [
    ((P64, "off"), "not a native table mode"),
    ((geometry("4K", 39), "mirror"), "va_bits"),
])
def test_bad_configuration_says_what_to_fix(args, match):
    with pytest.raises(ValueError, match=match):
        NativePageTable(PageTable(K4), *args)


def test_process_page_smaller_than_kernel_page_is_refused():
    with pytest.raises(ValueError, match=">= the kernel page size"):
        NativePageTable(PageTable(P16), K4)


def test_mirror_tables_are_not_reclaimable():
    lp, nt = mirror()
    with pytest.raises(ValueError, match="on_demand"):
        nt.reclaim(4096)


def test_ptdesc_sections_of_linux_tables():
    # Dev Jain, 2026-02-23: a Linux PTE table (2M) points at a 32-entry section of one
    # native PTE table; a Linux PMD table (1G) needs a list: two whole native PTE tables.
    #   native T2 (1G..1.5G): | s0 | s1 | ... | s255 |   32 entries each
    lp, nt = mirror()
    assert nt.ptdesc_sections(3, BASE >> 21) == [(2, 0, 32)]
    assert nt.ptdesc_sections(3, (BASE >> 21) + 255) == [(2, 8160, 32)]
    assert nt.ptdesc_sections(3, (BASE >> 21) + 256) == [(3, 0, 32)]
    assert nt.ptdesc_sections(2, BASE >> 30) == [(2, 0, 8192), (3, 0, 8192)]
    sections = {nt.ptdesc_sections(3, t)[0][:2] for t in range(BASE >> 21, (BASE >> 21) + 256)}
    assert len(sections) == 256 and {s[0] for s in sections} == {2}


def test_a_folio_covering_a_native_pmd_replaces_its_ptes_by_a_block():
    #   native span at BASE: 1 PTE mapped (a 64K folio), then one 512M folio over the span
    #   |#.............|  ->  |==== PMD block ====|   (the PTE table is freed)
    lp, nt = mirror()
    map_folios(lp, BASE, 64 * KB, 64 * KB, pfn0=16)
    assert nt.nr_tables(3) == 1
    lp.set_ptes(BASE, 131072, 131072, RW)   # one 512M folio, PA 512M-aligned
    assert (nt.nr_tables(3), nt.table.nr_blocks(2), nt.table.nr_ptes) == (0, 1, 0)
    look = nt.hw_lookup(np.array([BASE, BASE + 300 * M + 4096]))
    assert look.leaf_shift.tolist() == [29, 29]
    assert look.pfn.tolist() == [131072, 131072 + 300 * 256 + 1]
    lp.clear_ptes(BASE + 64 * KB, 16)           # one process page of the block goes
    assert (nt.table.nr_blocks(2), nt.table.nr_ptes) == (0, 8191)
    assert nt.hw_lookup(np.array([BASE + 64 * KB])).present.tolist() == [False]


@pytest.mark.parametrize("proc, size, want_leaf, want_bytes", [
    # 16K process: native PTE table spans 32M; 4-level 16K/48-bit: pgd of 2 entries (16 B)
    (P16, 64 * M, 2, 16 + 16 * KB * (1 + 1 + 2)),
    # 64K process: native PTE table spans 512M; 3-level, pgd of 64 entries (512 B)
    (P64, 1 * G, 2, 512 + 64 * KB * (1 + 2)),
])
def test_native_tables_are_what_the_geometry_predicts(proc, size, want_leaf, want_bytes):
    lp, nt = mirror(proc=proc)
    map_folios(lp, BASE, size, 2 * M)
    assert want_leaf == size // proc.pmd_size
    assert nt.nr_tables(3) == want_leaf
    assert nt.table.nr_ptes == size // proc.page_size
    assert nt.bytes == want_bytes == proc.levels[0].table_bytes + sum(
        nt.nr_tables(l.number) for l in proc.levels[1:]) * proc.page_size
    assert lp.bytes == 4096 * (1 + 1 + 1 + size // (2 * M))


def test_hw_lookup_rejects_addresses_outside_the_va_space():
    lp = PageTable(K4)
    nt = NativePageTable(lp, P64, "on_demand")
    with pytest.raises(ValueError, match=r"2\*\*48"):
        nt.hw_lookup(np.array([1 << 48]))
    assert nt.native_rebuilds == 0
