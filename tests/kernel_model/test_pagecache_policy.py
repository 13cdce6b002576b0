"""folio.pagecache policies on mmap and fault, with the thread's hazards.

A 64K process (order 4) on a 4K kernel faults file process pages of 16 kernel pages.
Layouts are [(index, order)] of the cached folios; in the drawings `.` is a cached
order-0 folio, `[..]` a larger one, `p` a pinned folio, `-` a hole:
    # 0123456789abcdef
    # ....------------
"""

import pytest

from kernel_model.filemap import filemap_get_folios, filemap_read, pagecache_metrics
from kernel_model.filemap_policy import VM_FAULT_SIGBUS, filemap_fault, filemap_mmap
from kernel_model.mm_types import VM_READ, VM_SHARED, Mm, Vma
from kernel_model.system import Policy, System

K = 4096


def make(pagecache, readahead=0, kps="4K", memory="256M"):
    s = System(kps, memory, policy=Policy(pagecache=pagecache, readahead=readahead))
    return s, Mm(system=s, page_size=65536, vmas=None, pgtable=None)


def vma_of(f):
    return Vma(0x10000000, 0x10000000 + (-(-f.size // 65536)) * 65536, VM_READ | VM_SHARED, file=f)


def layout(f):
    return [(fo.index, fo.order) for fo in filemap_get_folios(f.mapping, 0, 1 << 40)]


def faulted(got):
    return [(fo.index, fo.order) for fo, _ in got]


def counters(s):
    m = pagecache_metrics(s)
    return {k: m[k] for k in ("pagecache_conversions", "pagecache_conversion_failures",
                              "pagecache_livelocks_avoided", "pagecache_order_conflicts", "bounce_bytes")}


def zero(**kw):
    base = dict(pagecache_conversions=0, pagecache_conversion_failures=0, pagecache_livelocks_avoided=0,
                pagecache_order_conflicts=0, bounce_bytes=0)
    base.update(kw)
    return base


@pytest.fixture
def unmapped(monkeypatch):
    """A test double for rmap.folio_unmap_all: records and clears the rmap."""
    seen = []

    def unmap_all(folio):
        seen.append(folio.index)
        folio.rmap, folio.mapcount = [], 0

    monkeypatch.setattr("kernel_model.filemap.folio_unmap_all", unmap_all)
    return seen


# -- fixed and always_max ------------------------------------------------------------

def test_fixed_maps_small_folios_and_counts_conflicts():
    # 0123456789abcdef
    # ....[  ][      ]   read() cached 0-3; the fault fills 4-15 as large as alignment allows
    s, mm = make("fixed")
    f = s.create_file("/f", 32 * K)
    filemap_read(s, f, 0, 4 * K)
    got = filemap_fault(s, mm, vma_of(f), 0, 16)
    assert faulted(got) == [(0, 0), (1, 0), (2, 0), (3, 0), (4, 2), (8, 3)]
    assert [idx for _, idx in got] == [0, 1, 2, 3, 4, 8]
    assert counters(s) == zero(pagecache_order_conflicts=6)
    assert faulted(filemap_fault(s, mm, vma_of(f), 16, 16)) == [(16, 4)]  # an uncached process page
    assert counters(s)["pagecache_order_conflicts"] == 6


def test_fixed_fault_folio_of_process_order_may_contain_eof():
    s, mm = make("fixed")
    f = s.create_file("/f", 3 * K)  # 12K file, one 64K process page
    assert faulted(filemap_fault(s, mm, vma_of(f), 0, 3)) == [(0, 4)]
    assert pagecache_metrics(s)["pagecache_eof_waste_bytes"] == 65536 - 3 * K


def test_always_max_faults_see_large_folios():
    s, mm = make("always_max")
    f = s.create_file("/f", 40 * K)
    filemap_read(s, f, 0, 4 * K)  # read() too caches order >= 4
    assert layout(f) == [(0, 4)]
    assert faulted(filemap_fault(s, mm, vma_of(f), 16, 16)) == [(16, 4)]
    assert counters(s) == zero()


def test_fault_past_eof_is_sigbus_and_overhang_is_rejected():
    s, mm = make("fixed")
    f = s.create_file("/f", 3 * K)
    assert filemap_fault(s, mm, vma_of(f), 3, 1) == VM_FAULT_SIGBUS
    with pytest.raises(ValueError, match="passes EOF page 3"):
        filemap_fault(s, mm, vma_of(f), 0, 16)
    with pytest.raises(ValueError, match="anonymous"):
        filemap_fault(s, mm, Vma(0, 65536, VM_READ), 0, 1)


def test_fault_read_around_uses_the_readahead_window():
    # 128K window centred on index 32: pages 16..47, order-2 folios raised to the process order.
    s, mm = make("fixed", readahead=128 * 1024)
    f = s.create_file("/f", 1 << 20)
    assert faulted(filemap_fault(s, mm, vma_of(f), 32, 16)) == [(32, 4)]
    assert layout(f) == [(16, 4), (32, 4)]


# -- drop_reread (Dev) -----------------------------------------------------------------

def test_drop_reread_converts_a_fully_cached_range(unmapped):
    # before: 0123456789abcdef   after: [              ]
    #         ................
    s, mm = make("drop_reread")
    f = s.create_file("/f", 32 * K)
    free0 = s.page_alloc.nr_free_pages
    filemap_read(s, f, 0, 16 * K)
    mapped = filemap_get_folios(f.mapping, 3, 4)[0]
    mapped.rmap, mapped.mapcount = [("another mm", 0x1000, 1)], 1  # mapped by a 4K process
    got = filemap_fault(s, mm, vma_of(f), 0, 16)
    assert faulted(got) == [(0, 4)]
    assert unmapped == [3]  # unmapped from every mm before the drop
    assert f.mapping.min_order == 4
    assert counters(s) == zero(pagecache_conversions=1)
    assert s.stats.events["pagecache_conversion_dropped_bytes"] == 64 * 1024
    assert s.page_alloc.nr_free_pages == free0 - 16  # the 16 small folios were freed


@pytest.mark.parametrize("hazard", ["pincount", "mlock_count"])
def test_drop_reread_pinned_or_mlocked_folio_fails_the_conversion(hazard):
    # 0123456789abcdef
    # .....p..........   a long-term pin (or mlock) on page 5: nothing can be dropped
    s, mm = make("drop_reread")
    f = s.create_file("/f", 32 * K)
    filemap_read(s, f, 0, 64 * 1024)
    setattr(filemap_get_folios(f.mapping, 5, 6)[0], hazard, 1)
    got = filemap_fault(s, mm, vma_of(f), 0, 16)
    assert faulted(got) == [(i, 0) for i in range(16)]
    assert f.mapping.min_order == 0
    assert counters(s) == zero(pagecache_conversion_failures=1, pagecache_order_conflicts=16)


def _converted_with_small_tail(s, mm, f, tail):
    """Cache pages 0-15 small and convert them; then cache `tail` small pages (read before)."""
    filemap_read(s, f, 0, 64 * 1024)
    for i in tail:  # read() before the min order was raised: small folios
        filemap_read(s, f, i * K, K)
    assert faulted(filemap_fault(s, mm, vma_of(f), 0, 16)) == [(0, 4)]
    assert f.mapping.min_order == 4


def test_drop_reread_partially_populated_range_avoids_the_eexist_livelock(unmapped):
    # 0123456789abcdef0123456789abcdef
    # [              ]..--------------   then a fault on 16-31 after min order became 4
    s, mm = make("drop_reread")
    f = s.create_file("/f", 48 * K)
    _converted_with_small_tail(s, mm, f, [16, 17])
    got = filemap_fault(s, mm, vma_of(f), 16, 16)  # must return, not loop
    assert faulted(got) == [(16, 4)]
    assert layout(f) == [(0, 4), (16, 4)]
    assert counters(s) == zero(pagecache_conversions=1, pagecache_livelocks_avoided=1)


def test_read_into_partially_populated_block_after_raise_avoids_the_livelock():
    # 0123456789abcdef0123456789abcdef0123
    # [              ]----------------..-   read() of page 34 needs an order-4 folio at 32
    s, mm = make("drop_reread")
    f = s.create_file("/f", 48 * K)
    _converted_with_small_tail(s, mm, f, [32, 33])
    assert filemap_read(s, f, 34 * K, K) == K
    assert layout(f) == [(0, 4), (32, 4)]
    assert counters(s) == zero(pagecache_conversions=1, pagecache_livelocks_avoided=1)


def test_read_into_pinned_partial_block_fills_holes_and_counts_failure():
    # 0123456789abcdef0123456789abcdef0123
    # [              ]----------------.p.    page 33 pinned: block 32-47 cannot be dropped
    s, mm = make("drop_reread")
    f = s.create_file("/f", 48 * K)
    _converted_with_small_tail(s, mm, f, [32, 33])
    filemap_get_folios(f.mapping, 33, 34)[0].pincount = 1
    assert filemap_read(s, f, 34 * K, K) == K
    assert layout(f) == [(0, 4), (32, 0), (33, 0), (34, 0)]
    assert counters(s) == zero(pagecache_conversions=1, pagecache_conversion_failures=1)


def test_fault_on_pinned_partial_range_after_raise_maps_small_folios():
    # 0123456789abcdef0123456789abcdef
    # [              ]p.[][  ][      ]   holes filled below the min order, failure counted
    s, mm = make("drop_reread")
    f = s.create_file("/f", 32 * K)
    _converted_with_small_tail(s, mm, f, [16, 17])
    filemap_get_folios(f.mapping, 16, 17)[0].pincount = 1
    got = filemap_fault(s, mm, vma_of(f), 16, 16)
    assert faulted(got) == [(16, 0), (17, 0), (18, 1), (20, 2), (24, 3)]
    assert counters(s) == zero(pagecache_conversions=1, pagecache_conversion_failures=1,
                               pagecache_order_conflicts=5)


# -- mmap_convert (Willy) ----------------------------------------------------------------

def test_mmap_convert_on_first_mmap_only():
    s, mm = make("mmap_convert")
    f = s.create_file("/lib.so", 32 * K)
    conf = s.create_file("/etc/conf", 2 * K)
    filemap_read(s, f, 0, 4 * K)
    filemap_read(s, conf, 0, 2 * K)
    assert layout(f) == [(0, 0), (1, 0), (2, 0), (3, 0)]  # read() before any mmap: small
    filemap_mmap(s, mm, vma_of(f))
    assert (f.mapping.min_order, f.mapping.nr_mmapped, layout(f)) == (4, 1, [])
    filemap_mmap(s, mm, vma_of(f))
    assert f.mapping.nr_mmapped == 2
    assert faulted(filemap_fault(s, mm, vma_of(f), 0, 16)) == [(0, 4)]
    filemap_read(s, f, 20 * K, K)
    assert layout(f) == [(0, 4), (16, 4)]
    assert layout(conf) == [(0, 0), (1, 0)] and conf.mapping.min_order == 0  # never mmapped
    assert counters(s) == zero(pagecache_conversions=1)
    assert s.stats.events["pagecache_conversion_dropped_bytes"] == 4 * K


def test_mmap_convert_on_16k_kernel_raises_to_order_2():
    s = System("16K", "256M", policy=Policy(pagecache="mmap_convert", readahead=0))
    mm = Mm(system=s, page_size=65536, vmas=None, pgtable=None)
    f = s.create_file("/f", 100 * 1024)
    filemap_mmap(s, mm, vma_of(f))
    assert f.mapping.min_order == 2
    assert faulted(filemap_fault(s, mm, vma_of(f), 4, 3)) == [(4, 2)]  # 64K..100K: 3 pages to EOF


# -- bounce (Ryan's fallback adapter) --------------------------------------------------

def test_bounce_copies_into_a_process_order_anonymous_folio():
    s, mm = make("bounce")
    f = s.create_file("/nolf", 3 * K + 5, large_folios=False)  # 4 pages, no large folios
    anon0 = s.anon_bytes
    got = filemap_fault(s, mm, vma_of(f), 0, 4)
    ((bounce, idx),) = got
    assert (idx, bounce.order, bounce.anon, bounce.mapping, bounce.index) == (0, 4, True, None, 0)
    assert layout(f) == [(0, 0), (1, 0), (2, 0), (3, 0)]  # the fs's own cache stays small
    assert s.anon_bytes - anon0 == 65536
    assert counters(s) == zero(bounce_bytes=4 * K)
    filemap_fault(s, mm, vma_of(f), 0, 4)  # every fault copies again
    assert counters(s)["bounce_bytes"] == 8 * K


def test_bounce_on_large_folio_fs_and_fixed_on_small_folio_fs():
    s, mm = make("bounce")
    f = s.create_file("/lf", 16 * K)
    assert faulted(filemap_fault(s, mm, vma_of(f), 0, 4)) == [(0, 4)]  # large folios: no bounce
    s2, mm2 = make("always_max")
    g = s2.create_file("/nolf", 16 * K, large_folios=False)
    assert faulted(filemap_fault(s2, mm2, vma_of(g), 0, 4)) == [(0, 0), (1, 0), (2, 0), (3, 0)]
    assert counters(s2) == zero(pagecache_order_conflicts=4)


def test_policies_are_deterministic():
    def run():
        s, mm = make("drop_reread", readahead=64 * 1024)
        f = s.create_file("/f", 200 * K)
        filemap_read(s, f, 10 * K, 40 * K)
        filemap_fault(s, mm, vma_of(f), 0, 16)
        filemap_fault(s, mm, vma_of(f), 32, 16)
        filemap_read(s, f, 0, f.size)
        return [(fo.index, fo.order, fo.pfn) for fo in filemap_get_folios(f.mapping, 0, 1 << 40)], counters(s)

    assert run() == run()


# -- end to end through the syscalls (needs the page table module) ----------------------

def _holder_then_64k(pagecache):
    """A 4K process mmaps /lib and mlocks its first 16K; then a 64K process maps and touches
    both of its process pages."""
    pytest.importorskip("kernel_model.pgtable")
    from kernel_model.abi import MAP_PRIVATE, PROT_READ

    s = System("4K", "256M", policy=Policy(pagecache=pagecache, readahead=0))
    s.create_file("/lib", 32 * K)
    holder = s.execve("kernel")
    a = holder.mmap(0, 32 * K, PROT_READ, MAP_PRIVATE, holder.open("/lib"), 0)
    assert holder.mlock(a, 4 * K) == 0
    p = s.execve("64K")
    b = p.mmap(0, 32 * K, PROT_READ, MAP_PRIVATE, p.open("/lib"), 0)
    assert (p.touch(b), p.touch(b + 16 * K)) == (0, 0)
    return s, s.files["/lib"]


def test_end_to_end_mlock_blocks_drop_reread():
    # 0123456789abcdef0123456789abcdef
    # llll[  ][      ][              ]   l: mlocked by the 4K holder, mapped small by the 64K process
    s, f = _holder_then_64k("drop_reread")
    assert layout(f) == [(0, 0), (1, 0), (2, 0), (3, 0), (4, 2), (8, 3), (16, 4)]
    assert counters(s) == zero(pagecache_conversion_failures=1, pagecache_order_conflicts=6)


def test_end_to_end_mmap_convert_is_immune_to_the_later_mlock():
    # the holder's mmap is the file's first: it is converted before anything is locked
    s, f = _holder_then_64k("mmap_convert")
    assert layout(f) == [(0, 4), (16, 4)]
    assert counters(s) == zero(pagecache_conversions=1)
