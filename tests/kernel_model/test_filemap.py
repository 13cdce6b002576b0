"""The page cache: min folio order per mapping, read(), EOF rule, reclaim, metrics.

Folio layouts are drawn per kernel page index; `[..]` is one folio, `|` marks the page
that holds EOF:
    # 0123456789abcd|
    # [  ][  ][  ][]
"""

import os

import pytest

from kernel_model.filemap import (filemap_get_folio, filemap_get_folios, filemap_read, mapping_init,
                                  max_pagecache_order, pagecache_metrics, shrink)
from kernel_model.mm_types import AddressSpace, File
from kernel_model.system import Policy, System

KERNEL_PAGE_SIZES = ("4K", "16K", "64K")
# System refuses less memory than one MAX_PAGE_ORDER block: 512M with 64K pages.
MEMORY = {"4K": "256M", "16K": "256M", "64K": "512M"}


def make_system(kps="4K", pagecache="fixed", readahead=128 * 1024, memory=None):
    return System(kps, memory or MEMORY[kps], policy=Policy(pagecache=pagecache, readahead=readahead))


def layout(file):
    """[(index, order)] of the cached folios, in index order."""
    return [(f.index, f.order) for f in filemap_get_folios(file.mapping, 0, 1 << 40)]


# -- mapping_init -------------------------------------------------------------------

@pytest.mark.parametrize("kps, pagecache, large, expect", [
    ("4K", "fixed", True, (0, 9)),        # MAX_PAGECACHE_ORDER = min(PMD order 9, MAX_PAGE_ORDER 10)
    ("4K", "always_max", True, (4, 9)),   # 64K process pages on a 4K kernel: order 4
    ("4K", "drop_reread", True, (0, 9)),
    ("4K", "mmap_convert", True, (0, 9)),
    ("4K", "bounce", True, (0, 9)),
    ("16K", "fixed", True, (0, 11)),      # min(PMD order 11, MAX_PAGE_ORDER 11)
    ("16K", "always_max", True, (2, 11)),
    ("64K", "fixed", True, (0, 13)),      # min(PMD order 13, MAX_PAGE_ORDER 13)
    ("64K", "always_max", True, (0, 13)),  # the kernel page already is the largest process page
    ("4K", "always_max", False, (0, 0)),  # no large folio support: min = max = 0
    ("16K", "bounce", False, (0, 0)),
])
def test_mapping_init_orders(kps, pagecache, large, expect):
    s = make_system(kps, pagecache)
    f = s.create_file("/f", 100, large_folios=large)
    assert (f.mapping.min_order, f.mapping.max_order) == expect


def test_max_pagecache_order_per_kernel():
    assert [max_pagecache_order(make_system(k)) for k in KERNEL_PAGE_SIZES] == [9, 11, 13]


def test_mapping_init_rejects_non_mapping():
    s = make_system()
    with pytest.raises(TypeError, match="expected an AddressSpace"):
        mapping_init(s, File("/x", 1))  # the File, not its .mapping


# -- read() and the EOF rule ---------------------------------------------------------

def test_read_returns_bytes_up_to_eof():
    s = make_system()
    f = s.create_file("/f", 10000)
    assert filemap_read(s, f, 0, 4096) == 4096
    assert filemap_read(s, f, 8192, 4096) == 10000 - 8192
    assert filemap_read(s, f, 10000, 10) == 0
    assert filemap_read(s, f, 20000, 10) == 0
    assert s.stats.events["pagecache_reads"] == 4
    assert s.stats.events["pagecache_read_bytes"] == 4096 + 10000 - 8192
    with pytest.raises(ValueError, match="offset and length must be >= 0"):
        filemap_read(s, f, -1, 10)


def test_empty_file_caches_nothing():
    s = make_system(pagecache="always_max")
    f = s.create_file("/empty", 0)
    assert filemap_read(s, f, 0, 4096) == 0
    assert layout(f) == []
    assert pagecache_metrics(s)["pagecache_bytes"] == 0


def test_readahead_stops_at_eof_folio():
    # 13 pages + 1 byte; the first window is 32 pages (get_init_ra_size(14, 32)) in
    # order-2 folios; the last folio shrinks to order 1 so that none starts past EOF.
    # 0123456789abcd|
    # [  ][  ][  ][]
    s = make_system()
    f = s.create_file("/f", 13 * 4096 + 1)
    assert filemap_read(s, f, 0, f.size) == f.size
    assert layout(f) == [(0, 2), (4, 2), (8, 2), (12, 1)]
    m = pagecache_metrics(s)
    assert m["pagecache_bytes"] == 14 * 4096
    assert m["pagecache_eof_waste_bytes"] == 14 * 4096 - f.size
    assert (m["pagecache_folios_order_1"], m["pagecache_folios_order_2"]) == (1, 3)


def test_readahead_disabled_reads_min_order_folios():
    s = make_system(readahead=0)
    f = s.create_file("/f", 5 * 4096)
    assert filemap_read(s, f, 4096, 2 * 4096) == 8192
    assert layout(f) == [(1, 0), (2, 0)]


def test_min_order_folio_may_contain_eof():
    # always_max on 4K: every folio is at least order 4 (64K); a 1-byte file takes one.
    s = make_system(pagecache="always_max")
    f = s.create_file("/f", 1)
    assert filemap_read(s, f, 0, 1) == 1
    assert layout(f) == [(0, 4)]
    assert pagecache_metrics(s)["pagecache_eof_waste_bytes"] == 65536 - 1


def test_sequential_reads_grow_the_folio_order():
    # page_cache_ra_order(): +2 per sequential window; windows of 8, 16, 32 pages
    # (get_init_ra_size, get_next_ra_size); a folio is aligned to its size, so the
    # order-4 window at 8 takes two order-3 folios, and the window end at 56 trims the last.
    # 0       8       16      24      32              48      56
    # [  ][  ][      ][      ][      ][              ][      ]
    s = make_system()
    f = s.create_file("/f", 1 << 20)
    for off in range(0, 56 * 4096, 16384):
        filemap_read(s, f, off, 16384)
    assert layout(f) == [(0, 2), (4, 2), (8, 3), (16, 3), (24, 3), (32, 4), (48, 3)]


def test_one_large_read_is_read_window_by_window():
    # read() of 64 pages with a 32-page window: the second window is a sequential
    # (async) readahead, so its folios are two orders larger.
    # 0                               32              48
    # [  ][  ][  ][  ][  ][  ][  ][  ][              ][              ]
    s = make_system()
    f = s.create_file("/f", 64 * 4096)
    assert filemap_read(s, f, 0, f.size) == f.size
    assert layout(f) == [(i, 2) for i in range(0, 32, 4)] + [(32, 4), (48, 4)]


def _expected_bytes(sizes, min_folio_bytes):
    return sum(-(-size // min_folio_bytes) * min_folio_bytes for size in sizes)


def _read_tree(system, root):
    """Read every regular file under root fully once; return their sizes."""
    sizes = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            size = os.path.getsize(path)
            f = system.create_file(path, size)
            assert filemap_read(system, f, 0, size + 1) == size
            sizes.append(size)
    return sizes


TREE_SIZES = (0, 1, 4095, 4096, 4097, 12 * 1024, 65535, 65536, 65537, 100_000, (1 << 20) + 3, 3 << 20)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    for i, size in enumerate(TREE_SIZES):
        sub = root / f"d{i % 3}"
        sub.mkdir(exist_ok=True)
        with open(sub / f"file{i}", "wb") as fh:
            fh.truncate(size)  # sparse: the size is what matters
    os.symlink(root / "d0" / "file0", root / "link")
    return root


@pytest.mark.parametrize("kps", KERNEL_PAGE_SIZES)
@pytest.mark.parametrize("pagecache", ["fixed", "always_max"])
@pytest.mark.parametrize("readahead", [0, 128 * 1024, 2 << 20])
def test_tree_pagecache_bytes_exact(tree, kps, pagecache, readahead):
    s = make_system(kps, pagecache, readahead)
    sizes = _read_tree(s, tree)
    assert sorted(sizes) == sorted(TREE_SIZES)
    kernel_page = s.kernel_page_size
    min_folio = kernel_page << (s.max_process_order if pagecache == "always_max" else 0)
    assert pagecache_metrics(s)["pagecache_bytes"] == _expected_bytes(sizes, min_folio)
    for f in s.files.values():  # no folio starts past the EOF page
        assert all(idx * kernel_page < max(f.size, 1) for idx, _ in layout(f))


DOC_ROOT = "/usr/share/doc"


@pytest.mark.skipif(not os.path.isdir(DOC_ROOT), reason="no /usr/share/doc on this machine")
@pytest.mark.parametrize("kps, pagecache", [("4K", "fixed"), ("16K", "always_max"), ("64K", "fixed")])
def test_usr_share_doc_pagecache_bytes_exact(kps, pagecache):
    s = make_system(kps, pagecache, memory="1G")
    sizes = _read_tree(s, DOC_ROOT)
    assert sizes, "expected regular files under /usr/share/doc"
    min_folio = s.kernel_page_size << (s.max_process_order if pagecache == "always_max" else 0)
    assert pagecache_metrics(s)["pagecache_bytes"] == _expected_bytes(sizes, min_folio)
    assert s.stats.events.get("pagecache_evictions", 0) == 0


# -- reclaim -------------------------------------------------------------------------

def _three_files(s):
    files = [s.create_file(p, 2 * 4096) for p in ("/a", "/b", "/c")]
    for f in files:
        filemap_read(s, f, 0, f.size)
    return files


def test_shrink_evicts_least_recently_used_first():
    s = make_system(readahead=0)
    a, b, c = _three_files(s)
    filemap_read(s, a, 0, a.size)  # a becomes the youngest
    assert shrink(s, 3) == 3
    assert (layout(a), layout(b), layout(c)) == ([(0, 0), (1, 0)], [], [(1, 0)])
    assert s.stats.events["pagecache_evictions"] == 3


def test_shrink_skips_mapped_pinned_and_mlocked_folios():
    s = make_system(readahead=0)
    a, b, c = _three_files(s)
    filemap_get_folio(b.mapping, 0).pincount = 1
    filemap_get_folio(c.mapping, 0).mlock_count = 1
    filemap_get_folio(c.mapping, 1).mapcount = 1
    assert shrink(s, 10) == 3
    assert (layout(a), layout(b), layout(c)) == ([], [(0, 0)], [(0, 0), (1, 0)])
    with pytest.raises(ValueError, match="non-negative integer"):
        shrink(s, -1)


def test_reading_more_than_memory_reclaims_page_cache():
    s = make_system(readahead=128 * 1024, memory="64M")  # 96M of files
    files = [s.create_file(f"/big{i}", 8 << 20) for i in range(12)]
    for f in files:
        assert filemap_read(s, f, 0, f.size) == f.size
    m = pagecache_metrics(s)
    # 96M of files through 64M of RAM: the cache holds at most 64M, so at least 32M were
    # evicted. The exact amount depends on when reclaim ran and on the folio sizes
    # readahead chose, so a bound is all first principles give.
    assert s.stats.events["pagecache_evicted_bytes"] >= (96 << 20) - (64 << 20)
    assert m["pagecache_bytes"] == sum(f.size for f in files) - s.stats.events["pagecache_evicted_bytes"]
    assert layout(files[-1])[-1][0] * 4096 < files[-1].size  # the last file is still cached
    assert sum(fo.nr_pages for fo in filemap_get_folios(files[-1].mapping, 0, 1 << 40)) == 2048
    assert layout(files[0]) == []  # the oldest went first


def test_same_inputs_same_layout_and_pfns():
    def run():
        s = make_system(readahead=64 * 1024, memory="256M")
        out = []
        for i, size in enumerate((5000, 70000, 300000, 1 << 20)):
            f = s.create_file(f"/f{i}", size)
            filemap_read(s, f, size // 3, size)
            filemap_read(s, f, 0, size)
            out += [(f.path, fo.index, fo.order, fo.pfn) for fo in filemap_get_folios(f.mapping, 0, 1 << 40)]
        return out

    assert run() == run()


def test_metrics_names():
    s = make_system("16K")
    assert sorted(pagecache_metrics(s)) == sorted(
        ["pagecache_bytes", "pagecache_eof_waste_bytes"]
        + [f"pagecache_folios_order_{k}" for k in range(12)]
        + ["pagecache_conversions", "pagecache_conversion_failures", "pagecache_livelocks_avoided",
           "bounce_bytes", "pagecache_order_conflicts", "pagecache_evictions"])


def test_mapping_init_is_idempotent():
    s = make_system()
    f = s.create_file("/f", 4096)
    mapping_init(s, f.mapping)  # registering twice must not count the folios twice
    filemap_read(s, f, 0, 4096)
    assert pagecache_metrics(s)["pagecache_bytes"] == 4096
