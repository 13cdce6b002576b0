"""madvise(2) in process-page units.

Counterpart: mm/madvise.c (madvise_validate(), do_madvise(), madvise_walk_vmas(),
madvise_vma_behavior(), madvise_dontneed_free(), madvise_free_single_vma(),
madvise_cold_or_pageout_pte_range(), madvise_remove(), madvise_willneed(),
madvise_populate()) and mm/gup.c (__get_user_pages() with FOLL_MADV_POPULATE:
no VMA -> -ENOMEM, check_vma_flags() failing -> -EINVAL, a SIGBUS/SIGSEGV fault ->
-EFAULT). Cases: tools/testing/selftests/mm/madv_populate.c, LTP madvise01..11.

Rules: an unaligned start -> -EINVAL; the length rounds up to the process page; a zero
length -> 0; an unknown advice -> -EINVAL. Holes: the advice is applied to every mapped
part and the call returns -ENOMEM (madvise_walk_vmas()); MADV_POPULATE_* stops at the
first hole instead.

State the model keeps for MADV_FREE: the folios marked lazy-free (folio_mark_lazyfree())
are in self.lazyfree; a later write through touch() re-dirties them; MADV_PAGEOUT (or the
reclaim it stands for) discards a lazy-free folio, while any other anonymous folio stays
(no swap is modelled) and is counted.
"""

from __future__ import annotations

import errno

import numpy as np

from . import memory
from .abi_common import (MADV_COLD, MADV_DODUMP, MADV_DOFORK, MADV_DONTDUMP, MADV_DONTFORK, MADV_DONTNEED,
                         MADV_FREE, MADV_HUGEPAGE, MADV_KEEPONFORK, MADV_NOHUGEPAGE, MADV_NORMAL, MADV_PAGEOUT,
                         MADV_POPULATE_READ, MADV_POPULATE_WRITE, MADV_RANDOM, MADV_REMOVE, MADV_SEQUENTIAL,
                         MADV_WILLNEED, MADV_WIPEONFORK, U64, VM_DONTDUMP, VM_RAND_READ, VM_SEQ_READ,
                         VM_WIPEONFORK, offset_in_page, page_align, u64)
from .filemap import (eof_pages, filemap_get_folios, filemap_remove_folio, folio_droppable,
                      page_cache_readahead)
from .mm_types import (VM_DONTCOPY, VM_HUGEPAGE, VM_IO, VM_LOCKED, VM_MAYWRITE, VM_NOHUGEPAGE, VM_PFNMAP,
                       VM_READ, VM_SHARED, VM_WRITE, Vma, is_zero_folio)
from .rmap import folio_put_if_unused, folio_unmap_all
from .vma import VM_SPECIAL

# advice -> (set bits, clear bits) for the advices that only change vm_flags
# (mm/madvise.c madvise_vma_behavior(), mm/khugepaged.c hugepage_madvise()).
_FLAG_ADVICE = {
    MADV_NORMAL: (0, VM_RAND_READ | VM_SEQ_READ),
    MADV_RANDOM: (VM_RAND_READ, VM_SEQ_READ),
    MADV_SEQUENTIAL: (VM_SEQ_READ, VM_RAND_READ),
    MADV_DONTFORK: (VM_DONTCOPY, 0),
    MADV_DOFORK: (0, VM_DONTCOPY),
    MADV_DONTDUMP: (VM_DONTDUMP, 0),
    MADV_DODUMP: (0, VM_DONTDUMP),
    MADV_WIPEONFORK: (VM_WIPEONFORK, 0),
    MADV_KEEPONFORK: (0, VM_WIPEONFORK),
    MADV_HUGEPAGE: (VM_HUGEPAGE, VM_NOHUGEPAGE),
    MADV_NOHUGEPAGE: (VM_NOHUGEPAGE, VM_HUGEPAGE),
}
_RANGE_ADVICE = {MADV_WILLNEED, MADV_DONTNEED, MADV_FREE, MADV_REMOVE, MADV_COLD, MADV_PAGEOUT}
_POPULATE = {MADV_POPULATE_READ, MADV_POPULATE_WRITE}
VALID_ADVICE = frozenset(_FLAG_ADVICE) | _RANGE_ADVICE | _POPULATE


def can_madv_lru_vma(vma: Vma) -> bool:
    """mm/madvise.c: DONTNEED, FREE, COLD and PAGEOUT refuse locked and PFN-mapped VMAs."""
    return not vma.flags & (VM_LOCKED | VM_PFNMAP)


class MadviseOps:
    """madvise of a Process (needs self.mm, self.system, self.page_size, self.lazyfree)."""

    def madvise(self, addr: int, length: int, advice: int) -> int:
        ps = self.page_size
        start, len_in = u64(addr), u64(length)
        # madvise_validate()
        if advice not in VALID_ADVICE:
            return -errno.EINVAL
        if offset_in_page(start, ps):
            return -errno.EINVAL
        length = page_align(len_in, ps)
        if len_in and not length:
            return -errno.EINVAL
        end = start + length
        if end > U64:
            return -errno.EINVAL
        if end == start:
            return 0
        if advice in _POPULATE:
            return self._madvise_populate(start, end, advice == MADV_POPULATE_WRITE)
        return self._madvise_walk_vmas(start, end, advice)

    def _madvise_walk_vmas(self, start: int, end: int, advice: int) -> int:
        """Apply to each mapped part of [start, end) in order; a hole -> -ENOMEM at the end,
        an error from a VMA -> that error at once (what was done before it stays done)."""
        unmapped_error = 0
        pieces = [(v.start, v.end, v.flags, v) for v in self.mm.vmas.find_intersection(start, end)]
        if not pieces:
            return -errno.ENOMEM
        cur = start
        for vs, ve, vf, vma in pieces:
            if vs > cur:
                unmapped_error = -errno.ENOMEM
            lo, hi = max(cur, vs), min(end, ve)
            err = self._madvise_vma(vma, vf, lo, hi, advice)
            if err:
                return err
            cur = hi
        if cur < end:
            unmapped_error = -errno.ENOMEM
        return unmapped_error

    def _madvise_vma(self, vma: Vma, vf: int, lo: int, hi: int, advice: int) -> int:
        mm = self.mm
        if advice in _FLAG_ADVICE:
            set_bits, clear_bits = _FLAG_ADVICE[advice]
            if advice == MADV_DOFORK and vf & VM_IO:
                return -errno.EINVAL
            if advice == MADV_WIPEONFORK and (vma.file is not None or vf & VM_SHARED):
                return -errno.EINVAL
            if advice == MADV_DODUMP and vf & VM_SPECIAL:
                return -errno.EINVAL
            if (vf & ~clear_bits) | set_bits != vf:
                mm.vmas.set_flags(lo, hi, set_bits & ~vf, clear_bits & vf)
            return 0
        if advice == MADV_WILLNEED:
            return self._madvise_willneed(vma, lo, hi)
        if advice == MADV_REMOVE:
            return self._madvise_remove(vma, vf, lo, hi)
        if not can_madv_lru_vma(vma):
            return -errno.EINVAL
        if advice == MADV_DONTNEED:
            memory.zap_range(mm, lo, hi)
            self.lazyfree.difference_update(self._folios_mapped(lo, hi))
            return 0
        if advice == MADV_FREE:
            # madvise_free_single_vma(): only private anonymous memory (shmem is not)
            if vma.file is not None or vf & VM_SHARED:
                return -errno.EINVAL
            for folio in self._folios_mapped(lo, hi):
                if folio.anon and self._exclusive(folio) and not folio.padding:
                    self.lazyfree.add(folio)
                    folio.dirty = False
            return 0
        if advice == MADV_COLD:
            return 0  # deactivate_page(): moves folios to the inactive LRU; no LRU age is modelled
        return self._madvise_pageout(lo, hi)

    # -- helpers ----------------------------------------------------------------------
    def _folios_mapped(self, lo: int, hi: int) -> list:
        """The distinct folios with a PTE in [lo, hi) of this mm, in address order (no zero page)."""
        system = self.system
        kps = system.kernel_page_size
        addrs = np.arange(lo, hi, kps, dtype=np.int64)
        if addrs.size == 0:
            return []
        look = self.mm.pgtable.lookup(addrs)
        pfns = look.pfn[look.present]
        if pfns.size == 0:
            return []
        heads = system.folio_heads(pfns)
        heads = heads[heads >= 0]
        _, first = np.unique(heads, return_index=True)
        out = [system.folios.get(int(h)) for h in heads[np.sort(first)]]
        return [f for f in out if f is not None and not is_zero_folio(system, f)]

    def _exclusive(self, folio) -> bool:
        """Mapped by this mm only (!folio_maybe_mapped_shared())."""
        return all(entry.mm is self.mm for entry in folio.rmap)

    def _within(self, folio, lo: int, hi: int) -> bool:
        """Every mapping of folio in this mm lies inside [lo, hi) (no split needed)."""
        kps = self.system.kernel_page_size
        return all(lo <= addr and addr + nr * kps <= hi for _, addr, _, nr in folio.rmap)

    # -- advices with effects -----------------------------------------------------------
    def _madvise_pageout(self, lo: int, hi: int) -> int:
        """madvise_cold_or_pageout_pte_range() + reclaim_pages(): reclaim the folios only this
        mm maps and that lie inside the range. A lazy-free clean anonymous folio is discarded;
        a file folio is written back if dirty and dropped from the page cache; any other
        anonymous folio stays (no swap) and is counted in madv_pageout_kept_pages."""
        system = self.system
        for folio in self._folios_mapped(lo, hi):
            if not self._exclusive(folio) or not self._within(folio, lo, hi) or folio.padding:
                system.stats.count("madv_pageout_skipped_pages", folio.nr_pages)
                continue
            if folio.anon:
                if folio in self.lazyfree and not folio.dirty:
                    self.lazyfree.discard(folio)
                    folio_unmap_all(folio)
                    folio_put_if_unused(system, folio)
                    system.stats.count("madv_pageout_reclaimed_pages", folio.nr_pages)
                else:
                    system.stats.count("madv_pageout_kept_pages", folio.nr_pages)
            elif folio_droppable(folio):
                system.stats.count("madv_pageout_reclaimed_pages", folio.nr_pages)
                filemap_remove_folio(system, folio)
            else:
                system.stats.count("madv_pageout_kept_pages", folio.nr_pages)
        return 0

    def _madvise_willneed(self, vma: Vma, lo: int, hi: int) -> int:
        """madvise_willneed(): file -> readahead of the range (vfs_fadvise WILLNEED); anonymous
        memory has no swap to read back, so nothing happens."""
        if vma.file is None:
            return 0
        kps = self.system.kernel_page_size
        index = vma.pgoff + (lo - vma.start) // kps
        nr = min((hi - lo) // kps, eof_pages(vma.file, kps) - index)
        if nr > 0:
            page_cache_readahead(self.system, vma.file.mapping, index, nr)
        return 0

    def _madvise_remove(self, vma: Vma, vf: int, lo: int, hi: int) -> int:
        """madvise_remove(): punch a hole in a shared writable file mapping: the pages leave
        every mm and the page cache (fallocate(FALLOC_FL_PUNCH_HOLE))."""
        if vf & VM_LOCKED:
            return -errno.EINVAL
        if vma.file is None:
            return -errno.EINVAL
        if (vf & (VM_SHARED | VM_MAYWRITE)) != (VM_SHARED | VM_MAYWRITE):
            return -errno.EACCES
        kps = self.system.kernel_page_size
        first = vma.pgoff + (lo - vma.start) // kps
        last = first + (hi - lo) // kps
        memory.zap_range(self.mm, lo, hi)
        for folio in filemap_get_folios(vma.file.mapping, first, last):
            # truncate_inode_pages_range(): whole folios go; partial ones keep their pages
            if first <= folio.index and folio.index + folio.nr_pages <= last and folio_droppable(folio):
                filemap_remove_folio(self.system, folio)
        return 0

    def _madvise_populate(self, start: int, end: int, write: bool) -> int:
        """mm/madvise.c madvise_populate() via faultin_page_range(): stops at the first error."""
        cur = start
        while cur < end:
            vma = self.mm.vmas.find(cur)
            if vma is None:
                return -errno.ENOMEM
            # mm/gup.c check_vma_flags(): VM_IO/VM_PFNMAP, or no VM_WRITE/VM_READ for the access
            if vma.flags & (VM_IO | VM_PFNMAP) or not vma.flags & (VM_WRITE if write else VM_READ):
                return -errno.EINVAL
            hi = min(end, vma.end)
            err = memory.populate(self.mm, cur, hi, write)
            if err:
                return err
            if write:
                self.lazyfree.difference_update(self._folios_mapped(cur, hi))
            cur = hi
        return 0
