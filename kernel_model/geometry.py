"""arm64 translation-table geometry for a granule (page size) and VA size.

Every figure here follows the macros of arch/arm64/include/asm/pgtable-hwdef.h:

    ARM64_HW_PGTABLE_LEVELS(va_bits)  = (va_bits - 4) // (PAGE_SHIFT - 3)
    ARM64_HW_PGTABLE_LEVEL_SHIFT(n)   = (PAGE_SHIFT - 3) * (4 - n) + 3
    PTRS_PER_PTE = PTRS_PER_PMD = PTRS_PER_PUD = 1 << (PAGE_SHIFT - 3)
    PGDIR_SHIFT  = ARM64_HW_PGTABLE_LEVEL_SHIFT(4 - CONFIG_PGTABLE_LEVELS)
    PTRS_PER_PGD = 1 << (VA_BITS - PGDIR_SHIFT)
    CONT_PTE_SHIFT = CONFIG_ARM64_CONT_PTE_SHIFT + PAGE_SHIFT
    CONT_PMD_SHIFT = CONFIG_ARM64_CONT_PMD_SHIFT + PMD_SHIFT

and arch/arm64/Kconfig: ARM64_CONT_PTE_SHIFT is 4/7/5 and ARM64_CONT_PMD_SHIFT 4/5/5 for
4K/16K/64K. Block (section) mappings: PMD blocks at every granule; PUD blocks only with
4K pages (pud_sect_supported() in arch/arm64/include/asm/pgtable.h).

Levels are numbered as the architecture does: the leaf (PTE) level is 3, the PMD level 2,
PUD 1, P4D/PGD 0, and -1 for the fifth level of 52-bit 4K (LPA2).  A Geometry lists them
top (first walked) to leaf.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .units import format_size, parse_page_size

DESC_SIZE = 8  # bytes per translation-table descriptor

# arch/arm64/Kconfig: ARM64_CONT_PTE_SHIFT / ARM64_CONT_PMD_SHIFT per granule.
_CONT_PTE_SHIFT = {12: 4, 14: 7, 16: 5}
_CONT_PMD_SHIFT = {12: 4, 14: 5, 16: 5}

VA_BITS_MIN, VA_BITS_MAX = 36, 52

LEVEL_NAMES = {-1: "pgd5", 0: "pgd", 1: "pud", 2: "pmd", 3: "pte"}


@dataclass(frozen=True)
class Level:
    """One translation level: `entries` descriptors, each mapping 1 << `shift` bytes."""

    number: int  # architectural level: 3 is the leaf, 2 the PMD, ...
    shift: int
    entries: int

    @property
    def name(self) -> str:
        return LEVEL_NAMES[self.number]

    @property
    def entry_size(self) -> int:
        return 1 << self.shift

    @property
    def table_bytes(self) -> int:
        return self.entries * DESC_SIZE


@dataclass(frozen=True)
class Geometry:
    page_size: int
    va_bits: int
    levels: tuple[Level, ...]  # top (walked first) .. leaf

    @property
    def page_shift(self) -> int:
        return self.page_size.bit_length() - 1

    @property
    def nr_levels(self) -> int:
        return len(self.levels)

    @property
    def ptrs_per_table(self) -> int:
        return 1 << (self.page_shift - 3)

    @property
    def pmd_shift(self) -> int:
        return (self.page_shift - 3) * 2 + 3

    @property
    def pud_shift(self) -> int:
        return (self.page_shift - 3) * 3 + 3

    @property
    def pmd_size(self) -> int:
        """Size of a PMD block mapping (and the span of one PTE table)."""
        return 1 << self.pmd_shift

    @property
    def pud_size(self) -> int | None:
        """Size of a PUD block mapping, or None where Linux has none (16K and 64K)."""
        return (1 << self.pud_shift) if self.page_size == 4096 and self.nr_levels >= 3 else None

    @property
    def cont_pte(self) -> int:
        """Entries in a contiguous-PTE run (CONT_PTES)."""
        return 1 << _CONT_PTE_SHIFT[self.page_shift]

    @property
    def cont_pmd(self) -> int:
        """Entries in a contiguous-PMD run (CONT_PMDS)."""
        return 1 << _CONT_PMD_SHIFT[self.page_shift]

    @property
    def cont_pte_size(self) -> int:
        return self.cont_pte * self.page_size

    @property
    def cont_pmd_size(self) -> int:
        return self.cont_pmd * self.pmd_size

    @property
    def block_sizes(self) -> tuple[int, ...]:
        """Leaf mapping sizes Linux uses, smallest first: page, PMD block, PUD block."""
        sizes = [self.page_size]
        if self.nr_levels >= 2:
            sizes.append(self.pmd_size)
        if self.pud_size is not None:
            sizes.append(self.pud_size)
        return tuple(sizes)

    def level(self, number: int) -> Level:
        for lvl in self.levels:
            if lvl.number == number:
                return lvl
        raise KeyError(f"{format_size(self.page_size)} geometry with {self.va_bits}-bit VA "
                       f"has no level {number}")

    def describe(self) -> str:
        parts = [f"{lvl.name}:{lvl.entries}x{format_size(lvl.entry_size)}" for lvl in self.levels]
        return f"{format_size(self.page_size)}/{self.va_bits}-bit " + " ".join(parts)


@lru_cache(maxsize=None)
def _geometry(page_size: int, va_bits: int) -> Geometry:
    page_shift = page_size.bit_length() - 1
    bits_per_level = page_shift - 3
    nr_levels = (va_bits - 4) // bits_per_level  # ARM64_HW_PGTABLE_LEVELS
    levels = []
    for n in range(4 - nr_levels, 4):
        shift = bits_per_level * (4 - n) + 3  # ARM64_HW_PGTABLE_LEVEL_SHIFT
        if n == 4 - nr_levels:
            entries = 1 << (va_bits - shift)  # PTRS_PER_PGD: a partial top level
        else:
            entries = 1 << bits_per_level
        levels.append(Level(number=n, shift=shift, entries=entries))
    return Geometry(page_size=page_size, va_bits=va_bits, levels=tuple(levels))


def geometry(page_size, va_bits: int = 48) -> Geometry:
    """The Geometry for a granule ("4K", 16384, ...) and a VA size in bits (36..52)."""
    size = parse_page_size(page_size)
    if isinstance(va_bits, bool) or not isinstance(va_bits, int):
        raise ValueError(f"va_bits: expected an integer {VA_BITS_MIN}..{VA_BITS_MAX}, got {va_bits!r}")
    if not VA_BITS_MIN <= va_bits <= VA_BITS_MAX:
        raise ValueError(f"va_bits: {va_bits} is out of range; allowed {VA_BITS_MIN}..{VA_BITS_MAX}")
    return _geometry(size, va_bits)
