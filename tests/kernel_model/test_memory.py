"""The fault path (mm/memory.c) through the System/Process API.

Layouts are drawn per kernel page; one letter per page names the folio mapping it (A, B,
... in order of first appearance), `.` is an empty PTE, `z` the zero page, `p` an EOF
padding page. A 12K file mapped by a 64K process on a 4K kernel:
    # 0123456789abcdef
    # AAAppppppppppppp      anon_fault: 3 file pages + 13 anonymous padding pages
"""

import signal

import pytest

from kernel_model.abi import (MADV_DONTNEED, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED,
                              MREMAP_FIXED, MREMAP_MAYMOVE, PROT_READ, PROT_WRITE)
from tests.kernel_model.mmdraw import folio_at, layout, proc

K = 1024
M = 1 << 20
BASE = 0x40000000
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
MATRIX = [("4K", "4K"), ("4K", "16K"), ("4K", "64K"), ("16K", "16K")]
SIZES = {"4K": 4 * K, "16K": 16 * K, "64K": 64 * K}


def prots(p, addr, nr):
    return p.mm.pgtable.read_ptes(addr, nr)[1].tolist()


matrix = pytest.mark.parametrize("kernel, page", MATRIX, ids=[f"k{k}-p{p}" for k, p in MATRIX])


# -- zero page and COW ------------------------------------------------------------------

@matrix
def test_zero_page_read_then_write(kernel, page):
    s, p = proc(kernel, page)
    ps, kps = SIZES[page], SIZES[kernel]
    n = ps // kps  # kernel pages per process page
    assert p.mmap(BASE, 4 * ps, RW, ANON) == BASE
    assert p.touch(BASE + ps + kps * (n - 1)) == 0  # a read of the last kernel page of page 1
    assert layout(p, BASE, 4 * n) == "." * n + "z" * n + "." * 2 * n
    assert prots(p, BASE + ps, n) == [PROT_READ] * n
    assert (s.anon_bytes, s.stats.events["zero_page_faults"]) == (0, 1)
    assert p.touch(BASE + ps, write=True) == 0
    assert layout(p, BASE, 4 * n) == "." * n + "A" * n + "." * 2 * n
    assert prots(p, BASE + ps, n) == [RW] * n
    folio = folio_at(p, BASE + ps)
    assert (folio.order, folio.mapcount, folio.rmap) == (n.bit_length() - 1, n, [(p.mm, BASE + ps, 0, n)])
    assert s.anon_bytes == ps
    assert s.stats.events["cow_copies"] == 1
    assert s.stats.events["faults"] == 2


def test_zero_page_mthp_only_granule_then_cow_keeps_the_granule():
    s, p = proc("4K", "4K", anon="mthp_only", mthp_sizes=(64 * K,))
    assert p.mmap(BASE, 128 * K, RW, ANON) == BASE
    assert p.touch(BASE + 8 * K) == 0
    assert layout(p, BASE, 32) == "z" * 16 + "." * 16
    assert p.touch(BASE + 8 * K, write=True) == 0
    assert layout(p, BASE, 32) == "A" * 16 + "." * 16
    assert folio_at(p, BASE).order == 4
    assert s.anon_bytes == 64 * K


@matrix
def test_fork_cow_both_sides_then_reuse(kernel, page):
    s, p = proc(kernel, page)
    ps, kps = SIZES[page], SIZES[kernel]
    n = ps // kps
    assert p.mmap(BASE, 2 * ps, RW, ANON) == BASE
    assert p.touch(BASE, write=True) == 0
    assert p.touch(BASE + ps, write=True) == 0
    a, b = folio_at(p, BASE), folio_at(p, BASE + ps)
    c = p.fork()
    # both sides write-protected, the folios shared
    assert prots(p, BASE, 2 * n) == [PROT_READ] * 2 * n
    assert prots(c, BASE, 2 * n) == [PROT_READ] * 2 * n
    assert (a.mapcount, b.mapcount) == (2 * n, 2 * n)
    assert s.stats.events["cow_shared_pages"] == 2 * n
    # the parent writes page 0: a copy; the child then maps A alone and reuses it
    assert p.touch(BASE, write=True) == 0
    assert folio_at(p, BASE) not in (a, b)
    assert a.rmap == [(c.mm, BASE, 0, n)]
    assert c.touch(BASE, write=True) == 0
    assert folio_at(c, BASE) is a
    assert prots(c, BASE, n) == [RW] * n
    # the child writes page 1: a copy; the parent reuses B
    assert c.touch(BASE + ps, write=True) == 0
    assert p.touch(BASE + ps, write=True) == 0
    assert folio_at(p, BASE + ps) is b
    assert (s.stats.events["cow_copies"], s.stats.events["cow_reuse"]) == (2, 2)
    assert s.anon_bytes == 4 * ps
    c.exit()
    assert s.anon_bytes == 2 * ps


def test_cow_reuse_respects_a_read_only_part_of_the_folio():
    # an mTHP folio across two VMAs of different protection: reuse makes only the faulting
    # process page writable, never the read-only VMA's pages
    s, p = proc("4K", "4K", anon="mthp", mthp_sizes=(64 * K,))
    assert p.mmap(BASE, 64 * K, RW, ANON) == BASE
    assert p.touch(BASE, write=True) == 0
    c = p.fork()
    c.exit()
    assert p.mprotect(BASE + 32 * K, 32 * K, PROT_READ) == 0
    assert p.touch(BASE, write=True) == 0
    assert prots(p, BASE, 16) == [RW] + [PROT_READ] * 15
    assert s.stats.events["cow_reuse"] == 1


@matrix
def test_map_shared_anon_across_fork(kernel, page):
    s, p = proc(kernel, page)
    ps, kps = SIZES[page], SIZES[kernel]
    n = ps // kps
    assert p.mmap(BASE, 2 * ps, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED) == BASE
    assert p.touch(BASE, write=True) == 0
    folio = folio_at(p, BASE)
    c = p.fork()
    # shmem: fork copies no PTEs (vma_needs_copy()); the child's fault finds the same page
    assert folio_at(c, BASE) is None
    assert c.touch(BASE, write=True) == 0
    assert folio_at(c, BASE) is folio
    assert prots(c, BASE, n) == [RW] * n
    assert p.touch(BASE, write=True) == 0
    assert folio.rmap == [(p.mm, BASE, 0, n), (c.mm, BASE, 0, n)]
    # a page faulted in after fork, by the child, is the parent's page too
    assert c.touch(BASE + ps, write=False) == 0
    assert p.touch(BASE + ps, write=False) == 0
    assert folio_at(p, BASE + ps) is folio_at(c, BASE + ps) is not None
    assert s.anon_bytes == 2 * ps
    assert s.stats.events.get("cow_copies", 0) == 0
    # unmapped everywhere, the object is gone and its pages freed
    assert c.munmap(BASE, 2 * ps) == 0 and s.anon_bytes == 2 * ps
    assert p.munmap(BASE, 2 * ps) == 0 and s.anon_bytes == 0


@matrix
def test_mprotect_write_upgrade_only_for_exclusive_pages(kernel, page):
    s, p = proc(kernel, page)
    ps, kps = SIZES[page], SIZES[kernel]
    n = ps // kps
    assert p.mmap(BASE, 3 * ps, RW, ANON) == BASE
    assert p.touch(BASE, write=True) == 0    # page 0: exclusive anon
    assert p.touch(BASE + ps) == 0           # page 1: zero page
    assert p.mprotect(BASE, 3 * ps, PROT_READ) == 0
    assert prots(p, BASE, 2 * n) == [PROT_READ] * 2 * n
    assert p.mprotect(BASE, 3 * ps, RW) == 0
    assert prots(p, BASE, 2 * n) == [RW] * n + [PROT_READ] * n
    faults = s.stats.events["faults"]
    assert p.touch(BASE, write=True) == 0
    assert s.stats.events["faults"] == faults  # no fault: the PTEs are writable


# -- munmap and mremap ------------------------------------------------------------------

@pytest.mark.parametrize("page", ["4K", "16K"])
def test_partial_munmap_of_an_mthp_folio(page):
    s, p = proc("4K", page, anon="mthp", mthp_sizes=(64 * K,))
    ps = SIZES[page]
    assert p.mmap(BASE, 64 * K, RW, ANON) == BASE
    assert p.touch(BASE, write=True) == 0
    folio = folio_at(p, BASE)
    assert p.munmap(BASE + ps, ps) == 0
    n = ps // (4 * K)
    # 0123456789abcdef
    # AAAA....AAAAAAAA  (16K process: one process page gone)
    assert layout(p, BASE, 16) == "A" * n + "." * n + "A" * (16 - 2 * n)
    assert folio.rmap == [(p.mm, BASE, 0, n), (p.mm, BASE + 2 * ps, 2 * n, 16 - 2 * n)]
    assert (folio.mapcount, s.anon_bytes) == (16 - n, 64 * K)
    assert p.munmap(BASE, 64 * K) == 0
    assert (folio.pfn in s.folios, s.anon_bytes) == (False, 0)


@matrix
def test_mremap_move_keeps_the_folios(kernel, page):
    s, p = proc(kernel, page, anon="mthp")
    ps, kps = SIZES[page], SIZES[kernel]
    n = ps // kps
    assert p.mmap(BASE, 4 * ps, RW, ANON) == BASE
    for i in range(4):
        assert p.touch(BASE + i * ps, write=True) == 0
    before = [(folio_at(p, BASE + i * ps), p.mm.pgtable.pte_get(BASE + i * ps)[0]) for i in range(4)]
    dst = BASE + 0x1000000
    assert p.mremap(BASE + ps, 2 * ps, 2 * ps, MREMAP_MAYMOVE | MREMAP_FIXED, dst) == dst
    assert layout(p, BASE, 4 * n).count(".") == 2 * n
    assert [(folio_at(p, dst + i * ps), p.mm.pgtable.pte_get(dst + i * ps)[0]) for i in range(2)] == before[1:3]
    for folio in {f for f, _ in before}:
        for emm, addr, first, nr in folio.rmap:
            assert p.mm.pgtable.pte_get(addr)[0] == folio.pfn + first
    assert s.anon_bytes == 4 * ps


@matrix
def test_mlock_then_munmap_frees(kernel, page):
    s, p = proc(kernel, page)
    ps = SIZES[page]
    assert p.mmap(BASE, 2 * ps, RW, ANON) == BASE
    assert p.mlock(BASE, 2 * ps) == 0
    a = folio_at(p, BASE)
    assert a.mlock_count == 1
    assert p.munlock(BASE, ps) == 0
    assert a.mlock_count == 0
    assert p.mlock(BASE, ps) == 0
    assert a.mlock_count == 1
    assert p.munmap(BASE, 2 * ps) == 0
    assert (a.mlock_count, s.anon_bytes) == (0, 0)


def test_mlocked_file_folio_is_droppable_after_munmap():
    from kernel_model.filemap import folio_droppable
    s, p = proc("4K", "16K")
    s.create_file("/f", 64 * K)
    fd = p.open("/f")
    assert p.mmap(BASE, 64 * K, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd) == BASE
    assert p.mlock(BASE, 64 * K) == 0
    folios = {folio_at(p, BASE + i * 16 * K) for i in range(4)}
    assert {f.mlock_count for f in folios} == {1}
    assert p.munmap(BASE, 64 * K) == 0
    assert all(folio_droppable(f) for f in folios)


# -- EOF overhang: a 12K file mapped by a 64K process on a 4K kernel -----------------------

def overhang(policy, length=64 * K, **knobs):
    s, p = proc("4K", "64K", overhang=policy, **knobs)
    s.create_file("/small", 12 * K)
    fd = p.open("/small")
    assert p.mmap(BASE, length, RW, MAP_SHARED | MAP_FIXED, fd) == BASE
    return s, p


def test_overhang_sigbus():
    s, p = overhang("sigbus")
    assert p.touch(BASE + 4 * K) == 0
    assert layout(p, BASE, 16) == "AAA" + "." * 13
    assert p.touch(BASE + 12 * K) == signal.SIGBUS
    assert p.touch(BASE + 60 * K, write=True) == signal.SIGBUS
    assert (s.stats.events["sigbus"], s.padding_bytes) == (2, 0)


def test_overhang_anon_fault_pads_with_13_pages():
    s, p = overhang("anon_fault")
    assert p.touch(BASE + 12 * K) == 0
    # 0123456789abcdef
    # AAAppppppppppppp
    assert layout(p, BASE, 16) == "AAA" + "p" * 13
    pads = [folio_at(p, BASE + i * 4 * K) for i in range(3, 16)]
    assert [f.order for f in pads] == [0] * 13
    assert s.padding_bytes == 52 * K
    assert s.anon_bytes == 0
    assert s.stats.events.get("sigbus", 0) == 0
    assert p.munmap(BASE, 64 * K) == 0
    assert s.padding_bytes == 0


def test_overhang_anon_vma_one_extra_vma():
    s, p = overhang("anon_vma")
    vmas = [(v.start - BASE, v.end - BASE, v.anon) for v in p.mm.vmas.vmas]
    assert vmas == [(0, 12 * K, False), (12 * K, 64 * K, True)]
    assert s.stats.events["overhang_vmas"] == 1
    assert p.touch(BASE) == 0
    assert layout(p, BASE, 16) == "AAA" + "." * 13
    assert p.touch(BASE + 20 * K, write=True) == 0
    assert layout(p, BASE, 16) == "AAA..p" + "." * 10
    assert s.padding_bytes == 4 * K


def test_overhang_anon_vma_private_cow_stays_in_the_file_vma():
    s, p = proc("4K", "64K", overhang="anon_vma")
    s.create_file("/small", 12 * K)
    fd = p.open("/small")
    assert p.mmap(BASE, 64 * K, RW, MAP_PRIVATE | MAP_FIXED, fd) == BASE
    assert p.touch(BASE + 20 * K, write=True) == 0
    assert p.touch(BASE) == 0
    assert p.touch(BASE + 4 * K, write=True) == 0
    # the copy covers the file VMA's part of the process page only: the padding page stays
    assert layout(p, BASE, 16) == "AAA..p" + "." * 10
    assert folio_at(p, BASE).anon and folio_at(p, BASE).order == 4
    assert s.padding_bytes == 4 * K


@pytest.mark.parametrize("policy", ["sigbus", "anon_fault", "anon_vma"])
def test_whole_process_page_past_eof_is_sigbus(policy):
    s, p = overhang(policy, length=128 * K)
    assert p.touch(BASE + 64 * K) == signal.SIGBUS
    assert p.touch(BASE + 100 * K, write=True) == signal.SIGBUS
    assert s.stats.events["sigbus"] == 2
    assert (s.anon_bytes, s.padding_bytes) == (0, 0)


@pytest.mark.parametrize("kernel, page, pad", [("4K", "4K", 0), ("4K", "16K", 4 * K), ("16K", "16K", 0)])
def test_overhang_padding_across_the_matrix(kernel, page, pad):
    s, p = proc(kernel, page)
    s.create_file("/small", 12 * K)
    fd = p.open("/small")
    ps = SIZES[page]
    assert p.mmap(BASE, 32 * K, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd) == BASE
    assert p.touch(BASE + 8 * K) == 0
    assert s.padding_bytes == pad
    assert p.touch(BASE + 16 * K) == signal.SIGBUS  # past the EOF page (4K), a whole process page past EOF


# Fallbacks count one per untranslatable Linux-table op (arch/arm64/native.py). Touching
# BASE maps the 12K file's 3 kernel pages with one set_ptes (its page-cache folio is one
# order-4 folio holding EOF): 1. anon_fault then maps the 52K past EOF as 13 padding
# pages, one set_ptes each (memory.py _fill_overhang; the thread's "52K/4K = 13
# anonymous pages"): 1 + 13 = 14. sigbus maps nothing past EOF: 1.
@pytest.mark.parametrize("policy, fallback, nr", [("anon_fault", [BASE >> 16], 14), ("sigbus", [BASE >> 16], 1)])
def test_native_mirror_falls_back_for_the_overhang_page(policy, fallback, nr):
    s, p = overhang(policy, length=128 * K, native_pgtable="mirror")
    s.create_file("/big", 128 * K)
    fd = p.open("/big")
    assert p.mmap(BASE + M, 128 * K, PROT_READ, MAP_SHARED | MAP_FIXED, fd) == BASE + M
    assert p.touch(BASE + M) == 0  # a whole 64K of file: one native entry, no fallback
    assert p.mm.native.fallback_pages == []
    assert p.touch(BASE) == 0
    # file pages and padding come from different folios: not one native 64K entry
    assert p.mm.native.fallback_pages == fallback
    assert p.mm.native.fallbacks == nr


@matrix
def test_fork_copies_pinned_anon_pages_at_once(kernel, page):
    from kernel_model.memory import pin_user_pages
    s, p = proc(kernel, page)
    ps, kps = SIZES[page], SIZES[kernel]
    n = ps // kps
    assert p.mmap(BASE, 2 * ps, RW, ANON) == BASE
    assert p.touch(BASE, write=True) == 0
    assert p.touch(BASE + ps, write=True) == 0
    assert pin_user_pages(p.mm, BASE, BASE + ps) == 0
    pinned, shared = folio_at(p, BASE), folio_at(p, BASE + ps)
    assert (pinned.pincount, shared.pincount) == (1, 0)
    c = p.fork()
    # page 0: the child has its own copy, both sides writable; page 1: COW-shared
    assert layout(c, BASE, 2 * n) == "A" * n + "B" * n
    assert folio_at(c, BASE) is not pinned and folio_at(c, BASE + ps) is shared
    assert prots(p, BASE, 2 * n) == [RW] * n + [PROT_READ] * n
    assert prots(c, BASE, 2 * n) == [RW] * n + [PROT_READ] * n
    assert pinned.rmap == [(p.mm, BASE, 0, n)]
    assert s.stats.events["fork_pinned_copies"] == 1
    assert s.anon_bytes == 3 * ps


def test_fork_splits_a_pinned_pmd_and_copies():
    from kernel_model.memory import pin_user_pages
    s, p = proc("4K", "64K", thp_pmd=True)
    assert p.mmap(BASE, 2 * M, RW, ANON) == BASE
    assert p.touch(BASE, write=True) == 0
    thp = folio_at(p, BASE)
    assert pin_user_pages(p.mm, BASE, BASE + 64 * K) == 0
    c = p.fork()
    assert p.mm.pgtable.pmd_blocks_in(BASE, BASE + 2 * M) == []
    assert c.mm.pgtable.pmd_blocks_in(BASE, BASE + 2 * M) == []
    assert thp.rmap == [(p.mm, BASE, 0, 512)]
    assert s.stats.events["fork_pinned_copies"] == 32  # one 64K process page at a time
    assert s.anon_bytes == 4 * M


# -- fault-around (do_read_fault -> filemap_map_pages) --------------------------------------

def cached_file(page, size=128 * K, **knobs):
    from kernel_model.filemap import filemap_read
    s, p = proc("4K", page, **knobs)
    f = s.create_file("/data", size)
    assert filemap_read(s, f, 0, size) == size
    fd = p.open("/data")
    assert p.mmap(BASE, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd) == BASE
    return s, p


@pytest.mark.parametrize("page", ["4K", "16K"])
def test_fault_around_maps_the_cached_64k_window(page):
    s, p = cached_file(page)
    assert p.touch(BASE + 20 * K) == 0
    # 0123456789abcdef0123456789abcdef
    # ################................   one fault maps the aligned 64K window
    assert "".join("#" if c != "." else "." for c in layout(p, BASE, 32)) == "#" * 16 + "." * 16
    assert (s.stats.events["faults"], s.stats.events["fault_around_pages"]) == (1, 16)
    assert p.touch(BASE + 60 * K) == 0
    assert s.stats.events["faults"] == 1  # already mapped: no fault
    assert prots(p, BASE, 16) == [PROT_READ] * 16


def test_fault_around_cold_cache_maps_only_the_faulting_page():
    s, p = proc("4K", "4K")
    s.create_file("/data", 128 * K)
    fd = p.open("/data")
    assert p.mmap(BASE, 128 * K, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd) == BASE
    assert p.touch(BASE + 20 * K) == 0
    # nothing was cached before the fault: __do_fault() read it in and mapped one page
    assert "".join("#" if c != "." else "." for c in layout(p, BASE, 16)) == "....." + "#" + "." * 10
    assert p.touch(BASE + 24 * K) == 0  # now the read-around window is cached
    assert "".join("#" if c != "." else "." for c in layout(p, BASE, 16)) == "#" * 16
    assert s.stats.events["fault_around_pages"] == 15


def test_fault_around_skips_folios_below_the_process_order():
    # readahead off: read() caches order-0 folios; a 16K process may not map them whole
    s, p = cached_file("16K", readahead=0)
    assert p.touch(BASE) == 0
    assert s.stats.events.get("fault_around_pages", 0) == 0
    assert s.stats.events["pagecache_order_conflicts"] == 4
    assert "".join("#" if c != "." else "." for c in layout(p, BASE, 8)) == "####...."


def test_fault_around_stops_before_the_eof_process_page():
    # 40K file, 16K process: process pages [0,16K) and [16K,32K) are whole, [32K,48K)
    # holds EOF and is left to the overhang path
    s, p = cached_file("16K", size=40 * K)
    assert p.touch(BASE) == 0
    assert "".join("#" if c != "." else "." for c in layout(p, BASE, 12)) == "#" * 8 + "...."
    assert s.padding_bytes == 0
    assert p.touch(BASE + 32 * K) == 0
    # 0123456789ab
    # AAAABBBBCCpp   (the readahead folios: 16K, 16K, then 8K holding EOF + 2 padding pages)
    assert layout(p, BASE, 12) == "AAAABBBBCCpp"
    assert s.padding_bytes == 8 * K
