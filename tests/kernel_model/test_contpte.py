"""PTE_CONT folding (arch/arm64/mm/contpte.c) over the Linux table's leaf arrays.

Diagrams: one character per 4K PTE; a CONT_PTE run is 16 PTEs (64K) at 4K.
`#` mapped, `.` none, `c` mapped with PTE_CONT, digits name folios.
"""

import numpy as np
import pytest

from kernel_model.geometry import geometry
from kernel_model.mm_types import PROT_READ, PROT_WRITE
from kernel_model.pgtable import PageTable

K4, K64 = geometry("4K"), geometry("64K")
RW = PROT_READ | PROT_WRITE
M = 1 << 20
ONE_RUN = [1] * 16
NO_RUN = [0] * 16


def bits(pt, addr, nr):
    return pt.cont_bits(addr, nr).astype(int).tolist()


def test_aligned_folio_folds_every_run():
    # VA 0x10000, PA pfn 32, one 32-page folio:
    #   |cccccccccccccccc|cccccccccccccccc|
    pt = PageTable(K4, contpte=True)
    pt.set_ptes(0x10000, 32, 32, RW, folio_pfn=32, folio_nr=32)
    assert bits(pt, 0x10000, 32) == ONE_RUN + ONE_RUN
    assert pt.stats == {"contpte_folds": 2, "contpte_unfolds": 0}
    look = pt.lookup(np.array([0x10000, 0x2f000]))
    assert look.leaf_shift.tolist() == [16, 16]
    assert look.pfn.tolist() == [32, 63]


def test_misaligned_pa_never_folds():
    # VA run-aligned but PA pfn 33: (PA - VA) not a multiple of the run
    pt = PageTable(K4, contpte=True)
    pt.set_ptes(0x10000, 33, 16, RW, folio_pfn=32, folio_nr=32)
    assert bits(pt, 0x10000, 16) == NO_RUN
    assert pt.stats["contpte_folds"] == 0


def test_two_folios_in_one_run_do_not_fold():
    #   |0000000011111111|   contiguous PA, but two 8-page folios
    pt = PageTable(K4, contpte=True)
    pt.set_ptes(0, 0, 8, RW, folio_pfn=0, folio_nr=8)
    pt.set_ptes(0x8000, 8, 8, RW, folio_pfn=8, folio_nr=8)
    assert bits(pt, 0, 16) == NO_RUN


def test_run_folds_when_its_last_pte_arrives():
    # one 16-page folio mapped in two halves: ########........ then cccccccccccccccc
    pt = PageTable(K4, contpte=True)
    pt.set_ptes(0, 16, 8, RW, folio_pfn=16, folio_nr=16)
    assert bits(pt, 0, 16) == NO_RUN
    pt.set_ptes(0x8000, 24, 8, RW, folio_pfn=16, folio_nr=16)
    assert bits(pt, 0, 16) == ONE_RUN
    assert pt.stats == {"contpte_folds": 1, "contpte_unfolds": 0}


def test_partial_clear_unfolds_the_whole_run():
    #   |cccccccccccccccc|cccccccccccccccc|
    #   clear PTEs 2,3:
    #   |##..############|cccccccccccccccc|
    pt = PageTable(K4, contpte=True)
    pt.set_ptes(0, 0, 32, RW, folio_pfn=0, folio_nr=32)
    pt.clear_ptes(0x2000, 2)
    assert bits(pt, 0, 32) == NO_RUN + ONE_RUN
    assert pt.stats == {"contpte_folds": 2, "contpte_unfolds": 1}
    assert pt.lookup(np.array([0, 0x10000])).leaf_shift.tolist() == [12, 16]


def test_clearing_whole_runs_is_not_an_unfold():
    pt = PageTable(K4, contpte=True)
    pt.set_ptes(0, 0, 32, RW, folio_pfn=0, folio_nr=32)
    pt.clear_ptes(0, 16)
    assert bits(pt, 0, 32) == NO_RUN + ONE_RUN
    assert pt.stats == {"contpte_folds": 2, "contpte_unfolds": 0}


def test_modify_prot_of_part_unfolds_then_refolds_when_uniform_again():
    pt = PageTable(K4, contpte=True)
    pt.set_ptes(0, 0, 16, RW, folio_pfn=0, folio_nr=16)
    pt.modify_prot(0, 4, PROT_READ)           # RRRRWWWWWWWWWWWW: mixed prot
    assert bits(pt, 0, 16) == NO_RUN
    assert pt.stats == {"contpte_folds": 1, "contpte_unfolds": 1}
    pt.modify_prot(0x4000, 12, PROT_READ)     # RRRRRRRRRRRRRRRR: uniform again
    assert bits(pt, 0, 16) == ONE_RUN
    assert pt.stats == {"contpte_folds": 2, "contpte_unfolds": 1}


def test_modify_prot_of_whole_runs_keeps_them_folded():
    pt = PageTable(K4, contpte=True)
    pt.set_ptes(0, 0, 2 * M // 4096, RW, folio_pfn=0, folio_nr=512)  # a whole PTE table
    pt.modify_prot(0, 512, PROT_READ)
    assert pt.cont_bits(0, 512).all()
    assert pt.stats == {"contpte_folds": 32, "contpte_unfolds": 0}
    assert pt.lookup(np.array([0x1000])).prot.tolist() == [PROT_READ]


def test_remap_of_part_unfolds():
    # ptes 4..7 remapped to another folio: the run loses PTE_CONT
    pt = PageTable(K4, contpte=True)
    pt.set_ptes(0, 0, 16, RW, folio_pfn=0, folio_nr=16)
    pt.set_ptes(0x4000, 100, 4, RW, folio_pfn=100, folio_nr=4)
    assert bits(pt, 0, 16) == NO_RUN
    assert pt.stats == {"contpte_folds": 1, "contpte_unfolds": 1}


def test_switch_off_never_folds():
    pt = PageTable(K4, contpte=False)
    pt.set_ptes(0, 0, 512, RW, folio_pfn=0, folio_nr=512)
    assert not pt.cont_bits(0, 512).any()
    assert pt.lookup(np.array([0])).leaf_shift.tolist() == [12]
    assert pt.stats == {"contpte_folds": 0, "contpte_unfolds": 0}


def test_64k_run_is_32_ptes_of_2m():
    pt = PageTable(K64, contpte=True)
    pt.set_ptes(0, 64, 64, RW, folio_pfn=64, folio_nr=64)
    assert pt.cont_bits(0, 64).astype(int).tolist() == [1] * 64
    assert pt.lookup(np.array([0x10000])).leaf_shift.tolist() == [21]
    pt.clear_ptes(0, 1)
    assert pt.cont_bits(0, 64).astype(int).tolist() == [0] * 32 + [1] * 32


def test_contiguous_pmd_run_of_one_folio():
    # 16 PMD blocks (32M at 4K) of one 32M folio (hugetlb-style): each is CONT_PMD
    pt = PageTable(K4, contpte=True)
    run = 16 * 512
    for k in range(16):
        pt.set_pmd(32 * M + k * 2 * M, run + k * 512, RW, folio_pfn=run, folio_nr=run)
    assert pt.lookup(np.array([32 * M, 63 * M])).leaf_shift.tolist() == [25, 25]
    assert pt.stats["contpte_folds"] == 1
    pt.clear_pmd(34 * M)
    assert pt.lookup(np.array([32 * M])).leaf_shift.tolist() == [21]
    assert pt.stats["contpte_unfolds"] == 1


def test_fold_state_matches_the_rule_on_random_ops():
    # after any sequence of ops, PTE_CONT is exactly the fold rule applied to each run
    rng = np.random.default_rng(3)
    pt = PageTable(K4, contpte=True)
    for _ in range(300):
        op = rng.integers(0, 3)
        start = int(rng.integers(0, 120))
        nr = int(rng.integers(1, 130 - start))
        if op == 0:
            pfn = int(rng.integers(0, 4)) + 16 * int(rng.integers(0, 8))
            pt.set_ptes(start * 4096, pfn, nr, int(rng.integers(1, 4)), folio_pfn=pfn, folio_nr=nr)
        elif op == 1:
            pt.clear_ptes(start * 4096, nr)
        else:
            pt.modify_prot(start * 4096, nr, int(rng.integers(1, 4)))
        pfn, prot, folio = pt.read_ptes(0, 128)
        want = []
        for r in range(8):
            p, q, f = pfn[r * 16:(r + 1) * 16], prot[r * 16:(r + 1) * 16], folio[r * 16:(r + 1) * 16]
            ok = p[0] >= 0 and p[0] % 16 == 0 and (p == p[0] + np.arange(16)).all() \
                and (q == q[0]).all() and (f == f[0]).all()
            want += [int(ok)] * 16
        assert bits(pt, 0, 128) == want
