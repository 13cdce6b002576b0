"""The Linux page table: tables on demand, vectorised PTE ops, blocks, the hardware walk.

Diagrams: one character per 4K PTE of a leaf table; `#` mapped, `.` none.
"""

import numpy as np
import pytest

from kernel_model.geometry import geometry
from kernel_model.mm_types import PROT_READ, PROT_WRITE
from kernel_model.pgtable import PageTable

K4, K64 = geometry("4K"), geometry("64K")
RW = PROT_READ | PROT_WRITE
G, M, KB = 1 << 30, 1 << 20, 1 << 10


class Recorder:
    """A table allocator handing out 4K-aligned frames from 0x10000 upwards."""

    def __init__(self):
        self.next = 0x10000
        self.allocs, self.frees = [], []

    def alloc(self, nbytes):
        phys = self.next
        self.next += max(nbytes, 4096)
        self.allocs.append((phys, nbytes))
        return phys

    def free(self, phys, nbytes):
        self.frees.append((phys, nbytes))


def test_new_table_is_one_pgd():
    pt = PageTable(K4)
    assert [pt.nr_tables(n) for n in (0, 1, 2, 3)] == [1, 0, 0, 0]
    assert pt.bytes == 4096  # 512 pgd entries * 8
    assert PageTable(K64).bytes == 512  # 64K/48-bit: a partial top level of 64 entries


def test_one_gib_of_ptes_allocates_each_level_once():
    # 1G..2G: pgd[0] -> pud[1] -> one PMD table -> 512 PTE tables
    pt = PageTable(K4)
    pt.set_ptes(1 * G, 0, 262144, RW)
    assert [pt.nr_tables(n) for n in (0, 1, 2, 3)] == [1, 1, 1, 512]
    assert pt.bytes == 515 * 4096
    assert pt.nr_ptes == 262144
    look = pt.lookup(np.array([G, G + 4096 * 1000, 2 * G - 4096]))
    assert look.pfn.tolist() == [0, 1000, 262143]


def test_set_ptes_across_a_leaf_table_boundary():
    #   PTE table A (..2M)      | PTE table B (2M..)
    #   ....................##  | ##..................
    pt = PageTable(K4)
    pt.set_ptes(2 * M - 2 * 4096, 100, 4, PROT_READ)
    assert pt.nr_tables(3) == 2
    addrs = np.arange(2 * M - 3 * 4096, 2 * M + 3 * 4096, 4096)
    look = pt.lookup(addrs)
    assert look.present.tolist() == [False, True, True, True, True, False]
    assert look.pfn.tolist() == [-1, 100, 101, 102, 103, -1]
    assert look.prot.tolist() == [0, 1, 1, 1, 1, 0]


def test_clear_ptes_returns_old_pfns_and_modify_prot_skips_none():
    #   0123456789
    #   ..####....   then clear 1..4 -> .....#....
    pt = PageTable(K4)
    pt.set_ptes(2 * 4096, 50, 4, RW)
    pt.modify_prot(0, 10, PROT_READ)
    look = pt.lookup(np.arange(0, 10 * 4096, 4096))
    assert look.prot.tolist() == [0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    old = pt.clear_ptes(4096, 4)
    assert old.tolist() == [-1, 50, 51, 52]
    assert pt.lookup(np.arange(0, 10 * 4096, 4096)).present.astype(int).tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert pt.nr_ptes == 1


def test_clear_over_many_tables_returns_pfns_in_address_order():
    pt = PageTable(K4)
    pt.set_ptes(0, 7, 512, RW)            # table 0 wholly
    pt.set_ptes(4 * M, 9000, 512, RW)     # table 2 wholly; table 1 absent
    old = pt.clear_ptes(0, 3 * 512)
    assert old[:512].tolist() == list(range(7, 519))
    assert (old[512:1024] == -1).all()
    assert old[1024:].tolist() == list(range(9000, 9512))
    assert pt.nr_ptes == 0


def test_desc_addr_is_each_table_base_plus_index():
    rec = Recorder()
    pt = PageTable(K4, table_alloc=rec.alloc, table_free=rec.free)
    addr = G + 2 * M + 4096  # pgd[0] pud[1] pmd[1] pte[1]
    pt.set_ptes(addr, 42, 1, RW)
    assert rec.allocs == [(0x10000, 4096), (0x11000, 4096), (0x12000, 4096), (0x13000, 4096)]
    look = pt.lookup(np.array([addr, 1 << 39, G + 4 * M]))
    assert look.desc_addr.tolist() == [
        [0x10000, 0x11008, 0x12008, 0x13008],
        [0x10008, -1, -1, -1],            # pgd[1] is invalid: the walk stops there
        [0x10000, 0x11008, 0x12010, -1],  # pmd[2] is invalid
    ]
    assert look.present.tolist() == [True, False, False]
    assert look.base_shift.tolist() == [12, 12, 12]
    assert look.leaf_shift.tolist() == [12, 12, 12]


def test_pmd_block_has_no_pte_table_below():
    rec = Recorder()
    pt = PageTable(K4, table_alloc=rec.alloc, table_free=rec.free)
    pt.set_pmd(4 * M, 512 * 3, RW)
    assert [pt.nr_tables(n) for n in (0, 1, 2, 3)] == [1, 1, 1, 0]
    look = pt.lookup(np.array([4 * M + 5 * 4096]))
    assert look.pfn.tolist() == [512 * 3 + 5]
    assert look.leaf_shift.tolist() == [21]
    assert look.desc_addr.tolist() == [[0x10000, 0x11000, 0x12010, -1]]
    with pytest.raises(ValueError, match="overlaps the level-2 block"):
        pt.set_ptes(4 * M, 0, 1, RW)
    with pytest.raises(ValueError, match="split_pmd"):
        pt.clear_ptes(4 * M, 1)
    assert pt.clear_pmd(4 * M) == 1536
    assert pt.clear_pmd(4 * M) == -1
    assert pt.lookup(np.array([4 * M])).present.tolist() == [False]


def test_pmd_block_needs_alignment_and_an_empty_table_below():
    pt = PageTable(K4)
    with pytest.raises(ValueError, match="aligned"):
        pt.set_pmd(4096, 0, RW)
    with pytest.raises(ValueError, match="multiple of 512"):
        pt.set_pmd(0, 3, RW)
    pt.set_ptes(0, 0, 1, RW)
    with pytest.raises(ValueError, match="page table with entries"):
        pt.set_pmd(0, 512, RW)
    pt.clear_ptes(0, 1)
    pt.set_pmd(0, 512, RW)  # the empty PTE table is freed and replaced
    assert pt.nr_tables(3) == 0


def test_split_pmd_keeps_the_translation():
    pt = PageTable(K4)
    pt.set_pmd(2 * M, 1024, PROT_READ)
    pt.split_pmd(2 * M)
    assert pt.nr_tables(3) == 1 and pt.nr_blocks(2) == 0
    look = pt.lookup(np.array([2 * M, 4 * M - 4096]))
    assert look.pfn.tolist() == [1024, 1535]
    assert look.leaf_shift.tolist() == [12, 12]


def test_pud_block_only_at_4k():
    pt = PageTable(K4)
    pt.set_pud(G, 262144, PROT_READ)
    look = pt.lookup(np.array([G + 3 * 4096]))
    assert look.pfn.tolist() == [262147]
    assert look.leaf_shift.tolist() == [30]
    assert [pt.nr_tables(n) for n in (0, 1, 2, 3)] == [1, 1, 0, 0]
    with pytest.raises(ValueError, match="pud_sect_supported"):
        PageTable(K64).set_pud(0, 0, PROT_READ)


def test_free_empty_tables_frees_leaf_then_upper():
    rec = Recorder()
    pt = PageTable(K4, table_alloc=rec.alloc, table_free=rec.free)
    pt.set_ptes(0, 0, 16, RW)
    pt.set_ptes(G, 0, 16, RW)
    assert [pt.nr_tables(n) for n in (0, 1, 2, 3)] == [1, 1, 2, 2]
    pt.clear_ptes(G, 16)
    assert pt.free_empty_tables() == 2 * 4096
    assert [pt.nr_tables(n) for n in (0, 1, 2, 3)] == [1, 1, 1, 1]
    assert sorted(rec.frees) == [(0x14000, 4096), (0x15000, 4096)]
    pt.clear_ptes(0, 16)
    assert pt.free_empty_tables() == 3 * 4096
    assert pt.bytes == 4096


def test_memory_grows_with_mapped_memory_not_va_span():
    pt = PageTable(K4)
    top = (1 << 48) - 2 * M
    pt.set_ptes(0, 0, 16, RW)
    pt.set_ptes(top, 16, 16, RW)
    assert [pt.nr_tables(n) for n in (0, 1, 2, 3)] == [1, 2, 2, 2]
    assert pt.bytes == 7 * 4096
    assert pt.lookup(np.array([top + 4096])).pfn.tolist() == [17]


def test_listeners_see_every_op():
    pt = PageTable(K4)
    seen = []
    pt.listeners.append(lambda op, addr, nr, **kw: seen.append((op, addr, nr, kw)))
    pt.set_ptes(0x10000, 32, 16, RW, folio_pfn=32, folio_nr=16)
    pt.modify_prot(0x10000, 16, PROT_READ)
    pt.clear_ptes(0x10000, 4)
    pt.set_pmd(2 * M, 512, RW)
    pt.clear_pmd(2 * M)
    assert seen == [
        ("set_ptes", 0x10000, 16, {"pfn": 32, "prot": 3, "folio_pfn": 32, "folio_nr": 16}),
        ("modify_prot", 0x10000, 16, {"prot": 1}),
        ("clear_ptes", 0x10000, 4, {}),
        ("set_pmd", 2 * M, 512, {"pfn": 512, "prot": 3, "folio_pfn": 512, "folio_nr": 512}),
        ("clear_pmd", 2 * M, 512, {}),
    ]


@pytest.mark.parametrize("call, match", [
    (lambda pt: pt.set_ptes(100, 0, 1, RW), "not aligned"),
    (lambda pt: pt.set_ptes(0, 0, 0, RW), "positive number"),
    (lambda pt: pt.set_ptes(0, 0, 1, 9), "PROT_"),
    (lambda pt: pt.set_ptes(0, 5, 4, RW, folio_pfn=4, folio_nr=4), "not inside the folio"),
    (lambda pt: pt.set_ptes((1 << 48) - 4096, 0, 2, RW), "VA space"),
    (lambda pt: pt.lookup(np.array([-1])), r"2\*\*48"),
    (lambda pt: pt.nr_tables(7), "level 7"),
])
def test_bad_input_says_what_to_fix(call, match):
    with pytest.raises(ValueError, match=match):
        call(PageTable(K4))


def test_table_alloc_failure_is_loud():
    with pytest.raises(MemoryError, match="page table"):
        PageTable(K4, table_alloc=lambda n: None, table_free=lambda p, n: None)


def test_lookup_matches_a_dict_reference():
    rng = np.random.default_rng(7)
    pt, ref = PageTable(geometry("16K")), {}
    ps = 16384
    for _ in range(200):
        vpn = int(rng.integers(0, 1 << 22)) * 4
        pfn = int(rng.integers(0, 1 << 20)) * 4
        pt.set_ptes(vpn * ps, pfn, 4, RW)
        for i in range(4):
            ref[vpn + i] = pfn + i
    probe = np.concatenate([np.array(sorted(ref), np.int64), rng.integers(0, 1 << 24, 500)]) * ps
    look = pt.lookup(probe + 123 * 8)
    assert look.pfn.tolist() == [ref.get(int(a) // ps, -1) for a in probe]
    assert look.present.tolist() == [int(a) // ps in ref for a in probe]


def test_single_address_walk_equals_the_vector_walk():
    # lookup() of one address takes a scalar path: it must agree with the array path
    pt = PageTable(K4, contpte=True)
    pt.set_ptes(G, 0, 48, RW, folio_pfn=0, folio_nr=64)
    pt.set_pmd(4 * M, 1024, PROT_READ)
    pt.set_pud(2 * G, 262144, RW)
    probe = [G, G + 40 * 4096, G + 60 * 4096, 4 * M + 4096, 2 * G + 5 * 4096, 3 * G, 1 << 40]
    many = pt.lookup(np.array(probe))
    for k, addr in enumerate(probe):
        one = pt.lookup(np.array([addr]))
        for field in ("present", "pfn", "prot", "base_shift", "leaf_shift"):
            assert getattr(one, field).tolist() == [getattr(many, field)[k]], (field, hex(addr))
        assert one.desc_addr.tolist() == [many.desc_addr[k].tolist()]
    assert many.leaf_shift.tolist() == [16, 16, 12, 21, 30, 12, 12]


def test_zap_ptes_returns_only_what_was_mapped():
    #   a 1 TiB range with two mapped runs: 3 PTEs at +8K and 2 at +512G
    pt = PageTable(K4)
    pt.set_ptes(G + 2 * 4096, 70, 3, RW)
    pt.set_ptes(G + (512 * G), 90, 2, RW)
    offs, pfns = pt.zap_ptes(G, (1 << 40) // 4096)
    assert offs.tolist() == [2, 3, 4, (512 * G) // 4096, (512 * G) // 4096 + 1]
    assert pfns.tolist() == [70, 71, 72, 90, 91]
    assert pt.nr_ptes == 0


def test_vector_walk_of_blocks_only():
    pt = PageTable(K4)
    pt.set_pmd(4 * M, 1024, PROT_READ)
    pt.set_pud(G, 262144, RW)
    look = pt.lookup(np.array([4 * M + 4096, G + 5 * 4096, 4 * M]))
    assert look.pfn.tolist() == [1025, 262149, 1024]
    assert look.leaf_shift.tolist() == [21, 30, 21]
    assert look.prot.tolist() == [1, 3, 1]
    assert (look.desc_addr >= 0).sum(axis=1).tolist() == [3, 2, 3]
