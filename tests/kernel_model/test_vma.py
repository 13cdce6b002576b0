"""VmaTree: map/merge, unmap/split, set_flags, get_unmapped_area.

Each test draws the address space as tools/testing/vma/vma.c does, one character per
process page from BASE: a letter per VMA in address order (A, B, ...), a blank for a hole.
"""

import errno

import pytest

from kernel_model.mm_types import File, VM_IO, VM_LOCKED, VM_PAD_ANON, VM_READ, VM_WRITE, Vma
from kernel_model.mm_types import VM_GROWSDOWN
from kernel_model.vma import MIN_GAP, STACK_GUARD_GAP_PAGES, WALK_GAPS, VmaTree

RW = VM_READ | VM_WRITE
BASE = 0x10_0000_0000  # aligned to every process page size


def draw(tree, npages):
    """The tree as a string of npages characters from BASE."""
    ps = tree.page_size
    out = []
    for i in range(npages):
        addr = BASE + i * ps
        vma = tree.find(addr)
        out.append(" " if vma is None else chr(ord("A") + tree.vmas.index(vma)))
    return "".join(out).rstrip()


def anon(tree, first, npages, flags=RW):
    """An anonymous VMA over pages [first, first + npages) with pgoff = start >> PAGE_SHIFT."""
    start = BASE + first * tree.page_size
    return Vma(start=start, end=start + npages * tree.page_size, flags=flags,
               pgoff=start >> tree.kernel_page_shift)


def filevma(tree, first, npages, f, pgoff, flags=VM_READ):
    start = BASE + first * tree.page_size
    return Vma(start=start, end=start + npages * tree.page_size, flags=flags, file=f, pgoff=pgoff)


def page(tree, i):
    return BASE + i * tree.page_size


@pytest.fixture(params=[(4096, 4096), (4096, 16384), (4096, 65536), (16384, 16384)],
                ids=["k4-p4", "k4-p16", "k4-p64", "k16-p16"])
def tree(request):
    kps, ps = request.param
    return VmaTree(ps, kernel_page_size=kps)


def test_map_merges_with_both_neighbours(tree):
    # 0123456
    # AA  BB     two compatible anonymous VMAs
    #   **       map the gap: all three merge (vma_merge_new_range)
    # AAAAAA
    tree.map(anon(tree, 0, 2))
    tree.map(anon(tree, 4, 2))
    assert draw(tree, 8) == "AA  BB"
    merged = tree.map(anon(tree, 2, 2))
    assert draw(tree, 8) == "AAAAAA"
    assert (merged.start, merged.end) == (page(tree, 0), page(tree, 6))
    assert merged.pgoff == page(tree, 0) >> tree.kernel_page_shift
    tree.check()


def test_map_different_flags_do_not_merge(tree):
    # 0123
    # AABB      B is read-only, A read-write
    tree.map(anon(tree, 0, 2))
    tree.map(anon(tree, 2, 2, flags=VM_READ))
    assert draw(tree, 4) == "AABB"
    assert [(v.start, v.end, v.flags) for v in tree.vmas] == [
        (page(tree, 0), page(tree, 2), RW), (page(tree, 2), page(tree, 4), VM_READ)]


def test_file_vmas_merge_only_with_contiguous_pgoff(tree):
    f, g = File("f", 1 << 20), File("g", 1 << 20)
    kpp = tree.page_size // tree.kernel_page_size  # kernel pages per process page
    # 012345678
    # AABB          file f at pgoff 0, then pgoff 2 process pages later: contiguous -> one VMA
    tree.map(filevma(tree, 0, 2, f, 0))
    tree.map(filevma(tree, 2, 2, f, 2 * kpp))
    assert draw(tree, 9) == "AAAA"
    #     BB        pgoff jumps: no merge
    tree.map(filevma(tree, 4, 2, f, 10 * kpp))
    #       CC      another file: no merge
    tree.map(filevma(tree, 6, 2, g, 12 * kpp))
    #         D     anonymous after file: no merge
    tree.map(anon(tree, 8, 1, flags=VM_READ))
    assert draw(tree, 9) == "AAAABBCCD"


def test_special_vmas_never_merge(tree):
    # 0123
    # AABB      VM_IO (VM_SPECIAL) with identical flags and contiguous pgoff stays split
    tree.map(anon(tree, 0, 2, flags=RW | VM_IO))
    tree.map(anon(tree, 2, 2, flags=RW | VM_IO))
    assert draw(tree, 4) == "AABB"


def test_unmap_middle_splits_and_keeps_pgoff(tree):
    f = File("f", 1 << 20)
    kpp = tree.page_size // tree.kernel_page_size
    # 0123456789
    # AAAAAAAAAA   one file VMA, pgoff 3 (process pages)
    #    ***       unmap pages 3..5
    # AAA   BBBB
    tree.map(filevma(tree, 0, 10, f, 3 * kpp))
    removed = tree.unmap(page(tree, 3), page(tree, 6))
    assert draw(tree, 10) == "AAA   BBBB"
    assert [(v.start, v.end, v.pgoff) for v in removed] == [(page(tree, 3), page(tree, 6), 6 * kpp)]
    assert [(v.start, v.end, v.pgoff) for v in tree.vmas] == [
        (page(tree, 0), page(tree, 3), 3 * kpp), (page(tree, 6), page(tree, 10), 9 * kpp)]
    tree.check()


def test_unmap_across_several_vmas_and_holes(tree):
    # 0123456789
    # AA BBB  CC
    #  *******      unmap 1..7
    # A       BB
    tree.map(anon(tree, 0, 2))
    tree.map(anon(tree, 3, 3, flags=VM_READ))
    tree.map(anon(tree, 8, 2))
    removed = tree.unmap(page(tree, 1), page(tree, 8))
    assert draw(tree, 10) == "A       BB"
    assert [(v.start, v.end) for v in removed] == [(page(tree, 1), page(tree, 2)), (page(tree, 3), page(tree, 6))]


def test_unmap_of_nothing_returns_nothing(tree):
    assert tree.unmap(page(tree, 0), page(tree, 4)) == []
    assert tree.vmas == []


def test_set_flags_splits_then_merges_back(tree):
    # 01234567
    # AAAAAAAA
    #   ***        mprotect(PROT_READ) pages 2..4
    # AABBBCCC
    tree.map(anon(tree, 0, 8))
    tree.set_flags(page(tree, 2), page(tree, 5), 0, VM_WRITE)
    assert draw(tree, 8) == "AABBBCCC"
    assert [v.flags for v in tree.vmas] == [RW, VM_READ, RW]
    # restore: the three pieces merge again (vma_modify_flags -> merge with prev and next)
    tree.set_flags(page(tree, 2), page(tree, 5), VM_WRITE, 0)
    assert draw(tree, 8) == "AAAAAAAA"
    tree.check()


def test_set_flags_over_two_vmas_merges_them(tree):
    # 01234567
    # AAAABBBB     A locked, B not
    # ********     munlock everything: one VMA
    tree.map(anon(tree, 0, 4, flags=RW | VM_LOCKED))
    tree.map(anon(tree, 4, 4))
    assert draw(tree, 8) == "AAAABBBB"
    out = tree.set_flags(page(tree, 0), page(tree, 8), 0, VM_LOCKED)
    assert draw(tree, 8) == "AAAAAAAA"
    assert [(v.start, v.end, v.flags) for v in out] == [(page(tree, 0), page(tree, 8), RW)]


def test_set_flags_skips_holes(tree):
    # 0123456
    # AA  BB
    # ******     lock: both pieces locked, hole untouched
    tree.map(anon(tree, 0, 2))
    tree.map(anon(tree, 4, 2))
    tree.set_flags(page(tree, 0), page(tree, 6), VM_LOCKED, 0)
    assert draw(tree, 7) == "AA  BB"
    assert [v.flags for v in tree.vmas] == [RW | VM_LOCKED, RW | VM_LOCKED]


def test_misaligned_boundaries_are_refused(tree):
    ps = tree.page_size
    if ps == tree.kernel_page_size:
        bad = BASE + ps // 2
    else:
        bad = BASE + tree.kernel_page_size  # kernel-aligned but not process-aligned
    with pytest.raises(ValueError, match="process page size"):
        tree.map(Vma(start=bad, end=bad + ps, flags=RW))
    tree.map(anon(tree, 0, 4))
    with pytest.raises(ValueError, match="process page size"):
        tree.unmap(BASE, bad + ps)
    with pytest.raises(ValueError, match="process page size"):
        tree.set_flags(bad, bad + ps, VM_LOCKED, 0)


def test_overlap_is_refused(tree):
    tree.map(anon(tree, 0, 4))
    with pytest.raises(ValueError, match="overlaps"):
        tree.map(anon(tree, 3, 2))


def test_find_and_find_vma(tree):
    # 012345
    # AA  BB
    tree.map(anon(tree, 0, 2))
    tree.map(anon(tree, 4, 2, flags=VM_READ))
    a, b = tree.vmas
    assert tree.find(page(tree, 1)) is a
    assert tree.find(page(tree, 2)) is None
    assert tree.find_vma(page(tree, 2)) is b
    assert tree.find_vma(page(tree, 6)) is None
    assert tree.find_intersection(page(tree, 1), page(tree, 5)) == [a, b]
    assert tree.holes(page(tree, 0), page(tree, 7)) == [(page(tree, 2), page(tree, 4)), (page(tree, 6), page(tree, 7))]


def test_get_unmapped_area_top_down(tree):
    ps = tree.page_size
    assert tree.mmap_base == (1 << 48) - MIN_GAP
    first = tree.get_unmapped_area(4 * ps)
    assert first == tree.mmap_base - 4 * ps
    tree.map(Vma(start=first, end=first + 4 * ps, flags=RW))
    second = tree.get_unmapped_area(2 * ps)
    assert second == first - 2 * ps
    # a free hint is honoured (rounded up to the process page); a taken one is not
    assert tree.get_unmapped_area(ps, hint=BASE + 1) == BASE + ps
    assert tree.get_unmapped_area(ps, hint=first) == second + ps
    # alignment (vm_unmapped_area align_mask)
    big = 2 << 20
    assert tree.get_unmapped_area(ps, align=big) == (first - ps) // big * big


def test_get_unmapped_area_fills_a_hole_below_the_base(tree):
    ps = tree.page_size
    top = tree.mmap_base
    # [top-8, top-6) and [top-4, top): a 2-page hole between them is the highest fit
    tree.map(Vma(start=top - 8 * ps, end=top - 6 * ps, flags=RW))
    tree.map(Vma(start=top - 4 * ps, end=top, flags=VM_READ))
    assert tree.get_unmapped_area(2 * ps) == top - 6 * ps
    assert tree.get_unmapped_area(3 * ps) == top - 11 * ps


def test_get_unmapped_area_errors(tree):
    assert tree.get_unmapped_area(1 << 48) == -errno.ENOMEM
    with pytest.raises(ValueError, match="multiple"):
        tree.get_unmapped_area(tree.page_size + tree.page_size // 2)


def test_overhang_pair_for_a_12k_file_in_a_64k_process():
    tree = VmaTree(65536, kernel_page_size=4096)
    f = File("small", 12 * 1024)
    # 0
    # A      one 64K process page: file VMA [0, 12K) + pad VMA [12K, 64K)
    file_vma, pad = tree.map_overhang(Vma(start=BASE, end=BASE + 65536, flags=VM_READ, file=f, pgoff=0),
                                      BASE + 12 * 1024)
    assert [(v.start - BASE, v.end - BASE, v.anon, v.flags & VM_PAD_ANON != 0) for v in tree.vmas] == [
        (0, 12 * 1024, False, False), (12 * 1024, 65536, True, True)]
    assert pad.length == 52 * 1024
    tree.check()
    # the pair goes away with the process page that holds it
    assert len(tree.unmap(BASE, BASE + 65536)) == 2
    assert tree.vmas == []


def test_constructor_validates():
    with pytest.raises(ValueError, match="page_size"):
        VmaTree(8192)
    with pytest.raises(ValueError, match="kernel_page_size"):
        VmaTree(4096, kernel_page_size=16384)


def test_get_unmapped_area_finds_a_hole_below_many_full_gaps(tree):
    # more adjacent VMAs than WALK_GAPS below the base, then a 3-page hole, then one more VMA:
    # the vectorised search must return the hole's top, the highest fit
    ps, top = tree.page_size, tree.mmap_base
    n = WALK_GAPS + 4
    for i in range(n):
        start = top - (i + 1) * ps
        tree.map(Vma(start=start, end=start + ps, flags=RW if i % 2 else VM_READ))
    low = top - (n + 4) * ps
    tree.map(Vma(start=low, end=low + ps, flags=RW))
    assert len(tree) == n + 1
    assert tree.get_unmapped_area(3 * ps) == top - (n + 3) * ps
    assert tree.get_unmapped_area(4 * ps) == low - 4 * ps


def test_get_unmapped_area_keeps_the_stack_guard_gap(tree):
    ps, top = tree.page_size, tree.mmap_base
    guard = STACK_GUARD_GAP_PAGES * tree.kernel_page_size
    tree.map(Vma(start=top - ps, end=top, flags=RW | VM_GROWSDOWN))
    assert tree.get_unmapped_area(ps) == (top - ps - guard) // ps * ps - ps


def test_get_unmapped_area_falls_back_bottom_up_above_the_base(tree):
    ps = tree.page_size
    low = tree.mmap_min_addr
    # nothing fits below a base just above mmap_min_addr: search upward from the base
    assert tree.get_unmapped_area(2 * ps, high_limit=low + ps) == low + ps
