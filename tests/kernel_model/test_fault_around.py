"""Read-fault fault-around over large page-cache folios (mm/memory.c do_fault_around(),
mm/filemap.c filemap_map_pages() / filemap_map_folio_range() since 6.18): a large folio is
mapped whole where it lies within the VMA, within one PMD and before the file's last page;
otherwise only its pages in the 64K window. tests/oracle compares the same on the live kernel."""

from kernel_model.abi import MADV_NOHUGEPAGE, MAP_FIXED, MAP_PRIVATE, PROT_READ
from kernel_model.filemap import cache_folios
from tests.kernel_model.mmdraw import proc

K = 4096
BASE = 0x40000000  # 1G: PMD-aligned
RUNS = [(0, 512), (512, 256), (768, 128), (896, 64), (960, 32), (992, 16), (1008, 8), (1016, 4), (1020, 2),
        (1022, 1), (1023, 1), (1024, 2), (1026, 1)]
SIZE = 1027 * K - 100  # EOF inside page 1026


def _setup(offset=0):
    s, p = proc("4K", "4K", memory="256M")
    f = s.create_file("/f", SIZE)
    cache_folios(s, f, RUNS)
    fd = p.open("/f")
    length = SIZE - offset
    assert p.mmap(BASE, length, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, offset) == BASE
    assert p.madvise(BASE, length, MADV_NOHUGEPAGE) == 0
    return s, p


def _mapped(p, first, nr):
    pfn, _, _ = p.mm.pgtable.read_ptes(BASE + first * K, nr)
    return int((pfn >= 0).sum())


def test_a_large_folio_is_mapped_whole():
    s, p = _setup()
    assert p.touch(BASE, write=False) == 0
    assert _mapped(p, 0, 1027) == 512  # the whole 2M folio, not only the 64K window
    assert p.touch(BASE + 700 * K, write=False) == 0
    assert _mapped(p, 512, 256) == 256
    assert s.stats.events["faults"] == 2


def test_the_folios_at_eof():
    s, p = _setup()
    assert p.touch(BASE + 1025 * K, write=False) == 0
    # window [1024, 1040) clipped at the EOF page: (1024, 2) ends before page 1026 (whole);
    # (1026, 1) holds EOF (only inside the window; it is inside), nothing past it
    assert _mapped(p, 1016, 11) == 3
    assert _mapped(p, 1024, 3) == 3


def test_a_folio_crossing_a_pmd_in_the_address_space_maps_only_the_window():
    s, p = _setup(offset=4 * K)  # file page i at BASE + (i - 4) * 4K
    assert p.touch(BASE + (600 - 4) * K, write=False) == 0
    # folio (512, 256) spans addresses of pages 508..763: across the PMD at 512
    a0 = (600 - 4) & ~15
    assert _mapped(p, 0, 1023) == 16 and _mapped(p, a0, 16) == 16
    # folio (0, 512) starts before the VMA (offset 4 pages): never whole
    assert p.touch(BASE + 100 * K, write=False) == 0
    assert _mapped(p, 0, 508) == 16
