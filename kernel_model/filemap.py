"""The page cache: folios of a file indexed by offset, the read() path, reclaim, metrics.

Counterpart: mm/filemap.c (filemap_read, __filemap_add_folio, filemap_fault),
mm/readahead.c (page_cache_ra_order, page_cache_ra_unbounded, get_init_ra_size),
include/linux/pagemap.h (mapping_set_folio_min_order, MAX_PAGECACHE_ORDER,
mapping_align_index), mm/vmscan.c (shrink_folio_list) and mm/truncate.c
(mapping_evict_folio). The per-process-page-size policies (folio.pagecache) that act on
mmap and on faults live in filemap_policy.py (filemap_mmap, filemap_fault).

Invariants of every AddressSpace this module fills:
- a folio caching index i of order k starts at mapping.folios key i, i % (1 << k) == 0;
- folios never overlap, and no folio starts at or past the page holding EOF
  ((size - 1) >> PAGE_SHIFT); a folio may contain EOF (the kernel's "don't allocate
  pages past EOF" rule in page_cache_ra_order() stops shrinking at the minimum order);
- a folio is never smaller than mapping.min_order, except where a conversion failed
  (a pinned or mlocked small folio that could not be dropped; counted).

Units: index/pgoff in kernel pages, order in kernel pages, bytes for sizes.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort

from .mm_types import AddressSpace, File, Folio, OutOfMemory
from .rmap import folio_unmap_all

# Every order 0..max_order is allowed, order 1 included: mm/readahead.c page_cache_ra_order()
# stopped turning order 1 into order 0 once file folios of order 1 were supported.
NO_FOLIO = 1 << 62  # an index past any file: "no next folio"

# mm/readahead.c page_cache_ra_order(): the new order grows by 2 per readahead round.
RA_ORDER_STEP = 2
# mm/readahead.c page_cache_ra_order(): below max(4, min_nrpages) pages of window the
# large-folio path falls back to min-order folios (min_ra_size).
RA_MIN_LARGE_PAGES = 4


def max_pagecache_order(system) -> int:
    """MAX_PAGECACHE_ORDER (include/linux/pagemap.h): min(PMD order, MAX_PAGE_ORDER).

    PMD order = PMD_SHIFT - PAGE_SHIFT = PAGE_SHIFT - 3 on arm64: 9, 11, 13 for 4K, 16K, 64K;
    MAX_PAGE_ORDER (arm64 ARCH_FORCE_MAX_ORDER) is 10, 11, 13. Kernels 6.10-6.15 also capped
    it at MAX_XAS_ORDER = 11 (xas_split_alloc); later kernels dropped that cap.
    """
    page_shift = system.kernel_page_size.bit_length() - 1
    return min(page_shift - 3, system.max_order)


# -- the folio index ------------------------------------------------------------------
# mapping.starts (sorted folio start indices) is the xarray's order; the file LRU
# (system.pagecache_lru) and the registered mappings (system.pagecache_mappings) are the
# System's, as the kernel keeps the LRU per node, not per file.

def _starts(mapping: AddressSpace) -> list[int]:
    """mapping.starts, rebuilt when folios were added to mapping.folios behind our back."""
    if len(mapping.starts) != len(mapping.folios):
        mapping.starts = sorted(mapping.folios)
    return mapping.starts


# -- mapping setup --------------------------------------------------------------------

def mapping_init(system, mapping: AddressSpace) -> None:
    """Set the folio order range of a new file's mapping per folio.pagecache.

    include/linux/pagemap.h mapping_set_folio_order_range()/mapping_set_folio_min_order():
    the filesystem (here: the policy) fixes [min, max] before the inode is used.
    fixed, drop_reread, mmap_convert, bounce: min 0 (the kernel page); always_max: min =
    the largest process page size of the system for every file (Ryan, 2026-02-17).
    A filesystem without large folio support gets min = max = 0.
    """
    if not isinstance(mapping, AddressSpace):
        raise TypeError(f"mapping_init: expected an AddressSpace, got {type(mapping).__name__}")
    if mapping.large_folios:
        mapping.max_order = max_pagecache_order(system)
        mapping.min_order = 0
        if system.policy.pagecache == "always_max":
            mapping.min_order = min(system.max_process_order, mapping.max_order)
    else:
        mapping.min_order = mapping.max_order = 0
    system.pagecache_mappings.setdefault(id(mapping), mapping)


def eof_pages(file: File, kernel_page_size: int) -> int:
    """Pages holding file data: DIV_ROUND_UP(i_size, PAGE_SIZE)."""
    return -(-file.size // kernel_page_size)


# -- the folio index (xarray) ---------------------------------------------------------

def filemap_get_folio(mapping: AddressSpace, index: int) -> Folio | None:
    """The folio caching `index`, or None (__filemap_get_folio() without FGP_CREAT)."""
    starts = _starts(mapping)
    pos = bisect_right(starts, index) - 1
    if pos < 0:
        return None
    folio = mapping.folios[starts[pos]]
    return folio if index < folio.index + folio.nr_pages else None


def _next_start(mapping: AddressSpace, index: int) -> int:
    """The first folio start > index, or NO_FOLIO."""
    starts = _starts(mapping)
    pos = bisect_right(starts, index)
    return starts[pos] if pos < len(starts) else NO_FOLIO


def filemap_get_folios(mapping: AddressSpace, lo: int, hi: int) -> list[Folio]:
    """Folios overlapping indices [lo, hi), in index order (filemap_get_folios())."""
    starts = _starts(mapping)
    first = bisect_right(starts, lo) - 1
    if first < 0 or starts[first] + mapping.folios[starts[first]].nr_pages <= lo:
        first += 1
    last = bisect_left(starts, hi)
    return [mapping.folios[s] for s in starts[max(first, 0):last]]


def range_missing(mapping: AddressSpace, lo: int, hi: int) -> int:
    """Pages of [lo, hi) that no folio caches."""
    cached = 0
    for f in filemap_get_folios(mapping, lo, hi):
        cached += min(hi, f.index + f.nr_pages) - max(lo, f.index)
    return (hi - lo) - cached


def folio_mark_accessed(system, folio: Folio) -> None:
    """Move folio to the young end of the file LRU (mm/swap.c folio_mark_accessed())."""
    lru = system.pagecache_lru
    if folio in lru:
        lru.move_to_end(folio)


def _add_folio(system, mapping: AddressSpace, folio: Folio, index: int) -> None:
    """__filemap_add_folio(): insert a naturally aligned folio at index; read it in."""
    if index % folio.nr_pages:
        raise ValueError(f"filemap_add_folio: index {index} is not aligned to an order-{folio.order} folio")
    folio.anon = False
    folio.mapping = mapping
    folio.index = index
    folio.uptodate = True
    mapping.folios[index] = folio
    insort(_starts(mapping), index)
    system.pagecache_lru[folio] = None
    kps = system.kernel_page_size
    start = index * kps
    system.stats.count("pagecache_readin_bytes", max(0, min(folio.nr_pages * kps, mapping.host.size - start)))
    system.stats.count("pagecache_folios_added")


def filemap_remove_folio(system, folio: Folio) -> None:
    """Drop a folio from its mapping and free it (filemap_remove_folio() + folio_put()).

    A mapped folio is unmapped from every mm first (try_to_unmap(): rmap.folio_unmap_all);
    a pinned or mlocked folio cannot be removed: the caller checks folio_droppable().
    """
    if not folio_droppable(folio):
        raise ValueError(f"filemap_remove_folio: folio at index {folio.index} is pinned or mlocked; "
                         f"check folio_droppable() first")
    if folio.rmap or folio.mapcount:
        folio_unmap_all(folio)
    mapping = folio.mapping
    starts = _starts(mapping)
    del mapping.folios[folio.index]
    pos = bisect_left(starts, folio.index)
    del starts[pos]
    system.pagecache_lru.pop(folio, None)
    if folio.dirty:  # written back before it goes (mm/vmscan.c pageout())
        system.stats.count("pagecache_writeback_bytes", folio.size(system.kernel_page_size))
    folio.mapping = None
    system.folio_free(folio)


def folio_droppable(folio: Folio) -> bool:
    """Neither long-term pinned (folio_maybe_dma_pinned) nor mlocked (folio_test_mlocked)."""
    return folio.pincount == 0 and folio.mlock_count == 0


# -- allocation ---------------------------------------------------------------------

class _Fill:
    """One pass of folio allocation over a page range of a mapping (page_cache_ra_order()).

    pref: the preferred folio order (the readahead order); soft: the order a folio
    containing EOF may keep (the process order on a fault, else the minimum order);
    hard: mapping.min_order, below which no folio is allocated. [req_lo, req_hi) is the
    range the caller needs: there an allocation failure is fatal and a partially
    populated minimum-order block is resolved; outside it, readahead just stops or skips.
    """

    def __init__(self, system, mapping: AddressSpace, *, pref: int, soft: int, req_lo: int, req_hi: int):
        self.system = system
        self.mapping = mapping
        self.hard = mapping.min_order
        self.soft = max(soft, self.hard)
        self.pref = max(pref, self.soft)
        self.req_lo, self.req_hi = req_lo, req_hi

    def run(self, lo: int, hi: int) -> None:
        """Fill the missing pages of [lo, hi) (hi <= the EOF page count)."""
        mapping, hard = self.mapping, self.hard
        limit = hi - 1
        i = lo & ~((1 << hard) - 1)  # mapping_align_index()
        while i <= limit:
            cached = filemap_get_folio(mapping, i)
            if cached is not None:
                i = cached.index + cached.nr_pages
                continue
            nxt = _next_start(mapping, i)
            blk = i & ~((1 << hard) - 1)
            if blk != i or nxt < blk + (1 << hard):
                i = self._partial_block(blk, limit)
                continue
            order = self.pref
            if i & ((1 << order) - 1):  # align with smaller folios if needed
                order = (i & -i).bit_length() - 1
            eof_floor = self.soft if i % (1 << self.soft) == 0 else hard
            while order > eof_floor and i + (1 << order) - 1 > limit:  # don't allocate past EOF
                order -= 1
            while order > hard and i + (1 << order) > nxt:  # fit before the next cached folio
                order -= 1
            folio = self._alloc(i, order)
            if folio is None:
                return  # readahead outside the needed range stops on allocation failure
            _add_folio(self.system, mapping, folio, i)
            i += folio.nr_pages

    def _required(self, lo: int, hi: int) -> bool:
        return lo < self.req_hi and self.req_lo < hi

    def _alloc(self, index: int, order: int) -> Folio | None:
        """filemap_alloc_folio() with reclaim; below `order` only inside the needed range."""
        needed = self._required(index, index + (1 << order))
        lowest = self.hard if needed else order
        for o in range(order, lowest - 1, -1):
            folio = _folio_alloc_reclaim(self.system, o, self.mapping, self.req_lo, self.req_hi)
            if folio is not None:
                return folio
        if not needed:
            return None
        self.system.stats.count("pagecache_alloc_failures")
        raise OutOfMemory(f"page cache: no order-{self.hard}..{order} folio for index {index} of "
                          f"{self.mapping.host.path} after reclaim (memory.size too small?)")

    def _partial_block(self, blk: int, limit: int) -> int:
        """A minimum-order block holds smaller folios and holes: mapping.min_order was raised
        after they were cached (drop_reread). __filemap_add_folio() of a min-order folio there
        returns -EEXIST forever (Dev, 2026-02-18). Readahead skips the block
        (page_cache_ra_unbounded: _index += min_nrpages); a needed block is dropped whole and
        re-read, or, when a folio in it is pinned or mlocked, its holes are filled with the
        largest folios that fit and the failure is counted. Returns where to continue."""
        end = blk + (1 << self.hard)
        if not self._required(blk, end):
            return end
        stats = self.system.stats
        small = filemap_get_folios(self.mapping, blk, end)
        if all(folio_droppable(f) for f in small):
            for f in small:
                filemap_remove_folio(self.system, f)
            stats.count("pagecache_livelocks_avoided")
            return blk
        stats.count("pagecache_conversion_failures")
        fill_holes(self.system, self.mapping, blk, min(end, limit + 1), self.req_lo, self.req_hi)
        return end


def fill_holes(system, mapping: AddressSpace, lo: int, hi: int, req_lo: int, req_hi: int) -> None:
    """Cache the missing pages of [lo, hi) with the largest aligned folios that fit between
    the cached ones, ignoring mapping.min_order (the fallback after a failed conversion)."""
    i = lo
    while i < hi:
        cached = filemap_get_folio(mapping, i)
        if cached is not None:
            i = cached.index + cached.nr_pages
            continue
        nxt = min(_next_start(mapping, i), hi)
        order = (i & -i).bit_length() - 1 if i else mapping.max_order
        order = min(order, mapping.max_order)
        while i + (1 << order) > nxt:
            order -= 1
        folio = _folio_alloc_reclaim(system, order, mapping, req_lo, req_hi)
        if folio is None:
            system.stats.count("pagecache_alloc_failures")
            raise OutOfMemory(f"page cache: no order-{order} folio for index {i} of {mapping.host.path}")
        _add_folio(system, mapping, folio, i)
        i += folio.nr_pages


def _folio_alloc_reclaim(system, order: int, mapping, lo: int, hi: int) -> Folio | None:
    """Allocate a page-cache folio; on failure reclaim once (sparing [lo, hi) of mapping) and retry."""
    folio = system.folio_alloc(order, anon=False)
    if folio is None and _shrink(system, 1 << order, protect=(mapping, lo, hi)):
        folio = system.folio_alloc(order, anon=False)
    return folio


def cache_folios(system, file: File, runs) -> None:
    """Cache file's pages in folios at the given (index, nr_pages) runs: the page cache as a
    kernel's write path filled it (its folio sizes are not modelled; the oracle copies the
    host's layout). Each run must be a naturally aligned power of two, not yet cached."""
    mapping = file.mapping
    for index, nr in runs:
        order = nr.bit_length() - 1
        if nr <= 0 or nr != 1 << order or index % nr or not mapping.min_order <= order <= mapping.max_order:
            raise ValueError(f"cache_folios: ({index}, {nr}) is no aligned folio of order "
                             f"{mapping.min_order}..{mapping.max_order} for {file.path}")
        if range_missing(mapping, index, index + nr) != nr:
            raise ValueError(f"cache_folios: ({index}, {nr}) overlaps cached pages of {file.path}")
        folio = system.folio_alloc(order, anon=False)
        if folio is None:
            raise OutOfMemory(f"cache_folios: no order-{order} folio for {file.path}")
        _add_folio(system, mapping, folio, index)


# -- read() ---------------------------------------------------------------------------

def _init_ra_size(req: int, max_pages: int) -> int:
    """mm/readahead.c get_init_ra_size(): the first window for a request of req pages."""
    size = 1 << max(0, (req - 1).bit_length())  # roundup_pow_of_two
    if size <= max_pages // 32:
        return size * 4
    if size <= max_pages // 4:
        return size * 2
    return max_pages


def _next_ra_size(cur: int, max_pages: int) -> int:
    """mm/readahead.c get_next_ra_size(): x4 while small, x2 up to the maximum."""
    if cur < max_pages // 16:
        return 4 * cur
    if cur <= max_pages // 2:
        return 2 * cur
    return max_pages


def page_cache_readahead(system, mapping: AddressSpace, index: int, req: int, *, soft: int | None = None,
                         req_lo: int | None = None, req_hi: int | None = None) -> None:
    """page_cache_sync_ra() + page_cache_ra_order(): read one window from index (never past
    EOF) in folios whose order grows by 2 per sequential window, up to ilog2(window).

    folio.readahead = 0 disables readahead: only the requested pages are read, in
    min-order folios (force_page_cache_ra -> page_cache_ra_unbounded)."""
    kps = system.kernel_page_size
    end = eof_pages(mapping.host, kps)
    if index >= end or req <= 0:
        return
    ra_pages = system.policy.readahead // kps
    req_lo = index if req_lo is None else req_lo
    req_hi = min(index + req, end) if req_hi is None else req_hi
    hard = mapping.min_order
    soft = hard if soft is None else soft
    if ra_pages == 0:
        size, order = req, hard
    else:
        # A read larger than the window is read window by window: filemap_read() meets the
        # PG_readahead mark of each window and page_cache_async_ra() starts the next one,
        # modelled as a sequential miss at ra_next.
        sequential = index == mapping.ra_next and mapping.ra_size > 0
        size = _next_ra_size(mapping.ra_size, ra_pages) if sequential else _init_ra_size(req, ra_pages)
        order = mapping.ra_order if sequential else 0
        if mapping.large_folios and size >= max(RA_MIN_LARGE_PAGES, 1 << hard):
            order = min(order + RA_ORDER_STEP, mapping.max_order, size.bit_length() - 1)
        order = max(order, hard)
    hi = min(index + size, end)
    _Fill(system, mapping, pref=order, soft=soft, req_lo=req_lo, req_hi=req_hi).run(index, hi)
    mapping.ra_next, mapping.ra_size, mapping.ra_order = hi, size, order


def filemap_read(system, file: File, offset: int, length: int) -> int:
    """read(2) of length bytes at offset through the page cache (mm/filemap.c filemap_read()).

    Returns the bytes read: min(length, size - offset), 0 at or past EOF. Missing folios are
    read with readahead (page_cache_sync_ra); every folio used is marked accessed.
    """
    if offset < 0 or length < 0:
        raise ValueError(f"filemap_read: offset and length must be >= 0, got offset={offset} length={length}")
    count = max(0, min(length, file.size - offset))
    system.stats.count("pagecache_reads")
    if count == 0:
        return 0
    kps = system.kernel_page_size
    mapping = file.mapping
    first, last = offset // kps, (offset + count - 1) // kps
    i = first
    while i <= last:
        folio = filemap_get_folio(mapping, i)
        if folio is None:
            nxt = min(_next_start(mapping, i), last + 1)
            page_cache_readahead(system, mapping, i, nxt - i)
            folio = filemap_get_folio(mapping, i)
            if folio is None:
                raise RuntimeError(f"filemap_read: readahead left index {i} of {file.path} uncached")
        folio_mark_accessed(system, folio)
        i = folio.index + folio.nr_pages
    system.stats.count("pagecache_read_bytes", count)
    return count


# -- reclaim -------------------------------------------------------------------------

def shrink(system, nr_pages: int) -> int:
    """Evict the least recently used unmapped, unpinned, unlocked page-cache folios until
    nr_pages kernel pages are freed or none is left; returns the pages freed.

    One LRU by folio, oldest first (mm/vmscan.c shrink_folio_list() over the file LRU).
    Mlocked folios sit on the unevictable LRU (mm/mlock.c); a pinned folio cannot be freed
    (folio_maybe_dma_pinned). Mapped folios are skipped as mm/truncate.c
    mapping_evict_folio() skips them: this model does not try_to_unmap() during reclaim.
    Dirty folios are written back first (counted in pagecache_writeback_bytes)."""
    if isinstance(nr_pages, bool) or not isinstance(nr_pages, int) or nr_pages < 0:
        raise ValueError(f"shrink: nr_pages must be a non-negative integer, got {nr_pages!r}")
    return _shrink(system, nr_pages, protect=None)


def _shrink(system, nr_pages: int, *, protect) -> int:
    freed = 0
    victims = []
    for folio in system.pagecache_lru:
        if freed >= nr_pages:
            break
        if folio.mapcount or folio.rmap or not folio_droppable(folio):
            continue
        if protect is not None:
            mapping, lo, hi = protect
            if folio.mapping is mapping and folio.index < hi and lo < folio.index + folio.nr_pages:
                continue
        victims.append(folio)
        freed += folio.nr_pages
    for folio in victims:
        system.stats.count("pagecache_evicted_bytes", folio.size(system.kernel_page_size))
        filemap_remove_folio(system, folio)
    system.stats.count("pagecache_evictions", len(victims))
    return freed


# -- metrics -------------------------------------------------------------------------

COUNTERS = ("pagecache_conversions", "pagecache_conversion_failures", "pagecache_livelocks_avoided",
            "bounce_bytes", "pagecache_order_conflicts", "pagecache_evictions")


def pagecache_metrics(system) -> dict:
    """The page-cache metrics of a run: gauges over the cached folios now, and the counters.

    pagecache_bytes: sum of cached folio sizes; pagecache_folios_order_<k> for k in
    0..MAX_PAGECACHE_ORDER; pagecache_eof_waste_bytes: bytes of cached folios past their
    file's EOF; the COUNTERS from system.stats.
    """
    kps = system.kernel_page_size
    top = max_pagecache_order(system)
    by_order = [0] * (top + 1)
    total = waste = 0
    for mapping in system.pagecache_mappings.values():
        size = mapping.host.size
        for folio in mapping.folios.values():
            nbytes = folio.nr_pages * kps
            total += nbytes
            by_order[folio.order] += 1
            waste += max(0, (folio.index * kps + nbytes) - max(size, folio.index * kps))
    out = {"pagecache_bytes": total, "pagecache_eof_waste_bytes": waste}
    out.update({f"pagecache_folios_order_{k}": n for k, n in enumerate(by_order)})
    out.update({name: int(system.stats.events.get(name, 0)) for name in COUNTERS})
    return out


__all__ = ["mapping_init", "filemap_read", "shrink", "pagecache_metrics", "filemap_get_folio",
           "filemap_get_folios", "max_pagecache_order"]
