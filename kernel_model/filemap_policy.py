"""The file-memory policies of the per-process page size (folio.pagecache) on mmap and fault.

A process of order N (page size PAGE_SIZE << N) must map file memory in folios of at least
order N. The thread (linux-mm, "Per-process page size", Feb 2026) proposes:

- fixed: the page cache keeps min order 0; a larger-page process mapping smaller folios is
  an order conflict (counted): the arm64 native table cannot map them as one entry.
- always_max (Ryan, 02-17): every file's min order is the largest process order; set in
  filemap.mapping_init(), nothing to do here.
- drop_reread (Dev, 02-17/18): on a fault that finds smaller folios, raise the mapping's
  min order, drop them and re-read. Hazards (David, 02-17): a long-term pinned or mlocked
  folio cannot be dropped (conversion failure, counted; the small folios are mapped); a
  fault on a partially populated range after min order was raised loops on -EEXIST in
  __filemap_add_folio (Dev, 02-18): detected, counted, resolved by dropping the range.
- mmap_convert (Willy, 02-20): raise min order to the max process order on the FIRST mmap
  of a file, dropping its small folios: nothing can be mapped, pinned or mlocked before a
  first mmap (David 02-20, Jan Kara 02-23: splice copies; only vmsplice pins, and it needs
  mmap). Files only read() keep small folios.
- bounce (Ryan, 02-17): a filesystem without large folio support serves a larger-page
  process an anonymous copy of the process order (counted in bounce_bytes).

Units: index/pgoff and order in kernel pages.
"""

from __future__ import annotations

from .filemap import (_Fill, eof_pages, fill_holes, filemap_get_folio, filemap_get_folios,
                      filemap_remove_folio, folio_droppable, folio_mark_accessed, range_missing)
from .mm_types import VM_FAULT_SIGBUS, Folio, OutOfMemory, Vma

# mm/readahead.c page_cache_ra_order(): file_ra_state.order starts at 0 for mmap read-around
# (do_sync_mmap_readahead) and grows by 2 per call.
RA_AROUND_ORDER = 2


def filemap_mmap(system, mm, vma: Vma) -> None:
    """The policy hook of mmap() on a file (mm/filemap.c generic_file_mmap()); counts the
    mapping in mapping.nr_mmapped (i_mmap not empty).

    mmap_convert: on the first mmap of a file whose filesystem supports large folios, raise
    its min order to the system's max process order and drop the smaller folios; counts
    pagecache_conversions (one per file) and pagecache_conversion_dropped_bytes. A folio that
    is pinned or mlocked cannot exist before a first mmap; should one, it is kept and
    counted in pagecache_conversion_failures.
    """
    if vma.file is None:
        raise ValueError(f"filemap_mmap: {vma!r} is anonymous; only file VMAs reach the page cache")
    mapping = vma.file.mapping
    if system.policy.pagecache == "mmap_convert" and mapping.nr_mmapped == 0 and mapping.large_folios:
        target = min(system.max_process_order, mapping.max_order)
        if mapping.min_order < target:
            _convert_mapping(system, mapping, target)
    mapping.nr_mmapped += 1


def _convert_mapping(system, mapping, target: int) -> None:
    small = [f for f in filemap_get_folios(mapping, 0, eof_pages(mapping.host, system.kernel_page_size))
             if f.order < target]
    stuck = [f for f in small if not folio_droppable(f)]
    for f in small:
        if folio_droppable(f):
            system.stats.count("pagecache_conversion_dropped_bytes", f.size(system.kernel_page_size))
            filemap_remove_folio(system, f)
    if stuck:
        system.stats.count("pagecache_conversion_failures")
    mapping.min_order = target
    system.stats.count("pagecache_conversions")


def filemap_fault(system, mm, vma: Vma, index: int, nr: int):
    """The folios caching kernel-page indices [index, index+nr) of vma.file, after the policy.

    mm/filemap.c filemap_fault(): index at or past the EOF page count is VM_FAULT_SIGBUS;
    the caller clips a process page at EOF (the overhang is memory.py's), so index + nr must
    not pass the EOF page count. Missing pages are read with mmap read-around
    (do_sync_mmap_readahead: a window of folio.readahead centred on index) in folios of at
    least the process order where the mapping allows. Returns [(folio, folio.index)] in
    index order; under bounce the folios are anonymous copies, one per process page, whose
    index is the process page's first file index.
    """
    if vma.file is None:
        raise ValueError(f"filemap_fault: {vma!r} is anonymous")
    if index < 0 or nr <= 0:
        raise ValueError(f"filemap_fault: need index >= 0 and nr > 0, got index={index} nr={nr}")
    mapping = vma.file.mapping
    end = eof_pages(vma.file, system.kernel_page_size)
    if index >= end:
        return VM_FAULT_SIGBUS
    if index + nr > end:
        raise ValueError(f"filemap_fault: [{index}, {index + nr}) passes EOF page {end} of {vma.file.path}; "
                         f"clip the range at EOF and handle the overhang in the caller")
    policy = system.policy.pagecache
    order = mm.order
    target = min(order, mapping.max_order)
    if policy == "bounce" and not mapping.large_folios and order > 0:
        return _bounce_fault(system, mm, mapping, index, nr)
    failed = False
    if policy == "drop_reread" and target > 0:
        failed = _drop_reread(system, mapping, index, nr, target)
    if failed:
        fill_holes(system, mapping, index, index + nr, index, index + nr)
    else:
        _fault_around(system, mapping, index, nr, soft=target)
    folios = filemap_get_folios(mapping, index, index + nr)
    conflicts = 0
    for f in folios:
        folio_mark_accessed(system, f)
        conflicts += f.order < order
    if conflicts:
        system.stats.count("pagecache_order_conflicts", conflicts)
    return [(f, f.index) for f in folios]


def _fault_around(system, mapping, index: int, nr: int, *, soft: int) -> None:
    """Read the missing pages of [index, index+nr) and, on a miss, the read-around window."""
    if all(filemap_get_folio(mapping, i) is not None for i in _range_starts(mapping, index, index + nr)):
        return
    kps = system.kernel_page_size
    end = eof_pages(mapping.host, kps)
    ra_pages = system.policy.readahead // kps
    lo, hi = index, index + nr
    pref = soft
    if ra_pages:
        lo = min(lo, max(0, index - ra_pages // 2))  # ra->start = pgoff - ra_pages / 2
        hi = min(max(hi, lo + ra_pages), end)
        if mapping.large_folios and hi - lo >= 4:
            pref = min(RA_AROUND_ORDER, mapping.max_order, (hi - lo).bit_length() - 1)
    _Fill(system, mapping, pref=pref, soft=soft, req_lo=index, req_hi=index + nr).run(lo, hi)


def _range_starts(mapping, lo: int, hi: int):
    """Indices of [lo, hi) to probe for holes: each folio start and each gap start."""
    i = lo
    while i < hi:
        yield i
        folio = filemap_get_folio(mapping, i)
        if folio is None:
            return
        i = folio.index + folio.nr_pages


def _drop_reread(system, mapping, index: int, nr: int, target: int) -> bool:
    """Dev's drop-and-re-read over the process pages holding [index, index+nr).

    Returns True when a pinned or mlocked small folio made the conversion fail (the small
    folios stay and are mapped). Otherwise raises mapping.min_order to `target` and drops
    the small folios (unmapping them from every mm), counting a conversion, or, when the
    range was only partly cached after min order had already been raised, the -EEXIST
    livelock it avoids.
    """
    step = 1 << target
    end = eof_pages(mapping.host, system.kernel_page_size)
    r0 = index & ~(step - 1)
    r1 = min(-(-(index + nr) // step) * step, end)
    small = [f for f in filemap_get_folios(mapping, r0, r1) if f.order < target]
    if not small:
        return False
    stats = system.stats
    if not all(folio_droppable(f) for f in small):
        stats.count("pagecache_conversion_failures")
        return True
    if mapping.min_order >= target and range_missing(mapping, r0, r1):
        stats.count("pagecache_livelocks_avoided")
    else:
        stats.count("pagecache_conversions")
    mapping.min_order = max(mapping.min_order, target)
    for f in small:
        stats.count("pagecache_conversion_dropped_bytes", f.size(system.kernel_page_size))
        filemap_remove_folio(system, f)
    return False


def _bounce_fault(system, mm, mapping, index: int, nr: int) -> list[tuple[Folio, int]]:
    """Ryan's fallback adapter: cache [index, index+nr) in the filesystem's small folios,
    then copy each process page into an anonymous folio of the process order."""
    _fault_around(system, mapping, index, nr, soft=0)
    for f in filemap_get_folios(mapping, index, index + nr):
        folio_mark_accessed(system, f)
    kps = system.kernel_page_size
    step = 1 << mm.order
    out = []
    b = index & ~(step - 1)
    while b < index + nr:
        lo, hi = max(b, index), min(b + step, index + nr)
        bounce = system.anon_folio_alloc(mm.order)
        if bounce is None:
            raise OutOfMemory(f"bounce: no order-{mm.order} folio for index {b} of {mapping.host.path}")
        bounce.index = b
        system.stats.count("bounce_bytes", (hi - lo) * kps)
        system.stats.count("bounce_folios")
        out.append((bounce, b))
        b += step
    return out
