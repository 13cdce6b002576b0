"""Geometry against a table written by hand from arch/arm64/include/asm/pgtable-hwdef.h and
arch/arm64/Kconfig (ARM64_CONT_PTE_SHIFT / ARM64_CONT_PMD_SHIFT), one row per supported
(granule, VA bits) pair."""

import pytest

from kernel_model.geometry import geometry

K, M, G = 1 << 10, 1 << 20, 1 << 30

# page, va_bits: (level numbers, shifts, entries per table, pmd block, pud block, CONT_PTES, CONT_PMDS)
TABLE = {
    ("4K", 39): ((1, 2, 3), (30, 21, 12), (512, 512, 512), 2 * M, 1 * G, 16, 16),
    ("4K", 48): ((0, 1, 2, 3), (39, 30, 21, 12), (512, 512, 512, 512), 2 * M, 1 * G, 16, 16),
    ("4K", 52): ((-1, 0, 1, 2, 3), (48, 39, 30, 21, 12), (16, 512, 512, 512, 512), 2 * M, 1 * G, 16, 16),
    ("16K", 36): ((2, 3), (25, 14), (2048, 2048), 32 * M, None, 128, 32),
    ("16K", 47): ((1, 2, 3), (36, 25, 14), (2048, 2048, 2048), 32 * M, None, 128, 32),
    ("16K", 48): ((0, 1, 2, 3), (47, 36, 25, 14), (2, 2048, 2048, 2048), 32 * M, None, 128, 32),
    ("16K", 52): ((0, 1, 2, 3), (47, 36, 25, 14), (32, 2048, 2048, 2048), 32 * M, None, 128, 32),
    ("64K", 42): ((2, 3), (29, 16), (8192, 8192), 512 * M, None, 32, 32),
    ("64K", 48): ((1, 2, 3), (42, 29, 16), (64, 8192, 8192), 512 * M, None, 32, 32),
    ("64K", 52): ((1, 2, 3), (42, 29, 16), (1024, 8192, 8192), 512 * M, None, 32, 32),
}


@pytest.mark.parametrize("key", sorted(TABLE))
def test_geometry_matches_pgtable_hwdef(key):
    page, va_bits = key
    numbers, shifts, entries, pmd, pud, cont_pte, cont_pmd = TABLE[key]
    g = geometry(page, va_bits)
    assert tuple(l.number for l in g.levels) == numbers
    assert tuple(l.shift for l in g.levels) == shifts
    assert tuple(l.entries for l in g.levels) == entries
    assert g.nr_levels == (va_bits - 4) // (g.page_shift - 3)
    assert (g.pmd_size, g.pud_size, g.cont_pte, g.cont_pmd) == (pmd, pud, cont_pte, cont_pmd)
    # The levels together translate exactly va_bits: top entries x top span = 2^va_bits.
    assert g.levels[0].entries << g.levels[0].shift == 1 << va_bits


def test_design_figures():
    # docs/design.md geometry: 4K CONT_PTE 16 (64K); 16K CONT_PTE 128 (2M); 64K CONT_PTE 32 (2M).
    assert [geometry(p).cont_pte_size for p in ("4K", "16K", "64K")] == [64 * K, 2 * M, 2 * M]
    assert [geometry(p).block_sizes for p in ("4K", "16K", "64K")] == [
        (4 * K, 2 * M, 1 * G), (16 * K, 32 * M), (64 * K, 512 * M)]
    # The thread: a 4K PTE table maps 2M, a 64K PTE table 512M: 256 of one feed one of the other.
    assert geometry("64K").pmd_size // geometry("4K").pmd_size == 256
    # One 4K PMD table maps 1G = two 64K PTE tables.
    assert geometry("4K").level(2).entries * geometry("4K").pmd_size // geometry("64K").pmd_size == 2


@pytest.mark.parametrize("bad,msg", [("8K", "allowed: 4K, 16K, 64K"), (12288, "allowed: 4K, 16K, 64K")])
def test_bad_page_size_names_the_allowed_values(bad, msg):
    with pytest.raises(ValueError, match=msg):
        geometry(bad)


@pytest.mark.parametrize("va_bits", [35, 53])
def test_bad_va_bits(va_bits):
    with pytest.raises(ValueError, match="va_bits"):
        geometry("4K", va_bits)
