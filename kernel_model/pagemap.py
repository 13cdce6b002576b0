"""/proc/pid/pagemap: one 64-bit entry per page of the READER's page size.

Counterpart: fs/proc/task_mmu.c (pagemap_read(), pagemap_pmd_range(), pte_to_pagemap_entry(),
pagemap_pte_hole()) and Documentation/admin-guide/mm/pagemap.rst.

The per-process-page-size mismatch (the linux-mm thread, Kalesh Singh: "Userspace tools
reading /proc/pid/pagemap ... calculate offsets based on the userspace page size ABI"):
the reader indexes the file by ITS page size, so it gets one entry per reader page, but
the PFN field is a KERNEL frame number (physical address >> PAGE_SHIFT). A 64K reader on
a 4K kernel gets one entry per 64K carrying the PFN of the first 4K kernel page of that
64K; multiplying it by the reader's 64K page size gives a wrong physical address. Each
entry that carries a PFN in units other than the reader's page is counted in
system.stats as "pagemap_pfn_unit_mismatch".

Entry layout (task_mmu.c PM_* and pagemap.rst):
  bits 0-54  PFN if present (kernel frames)      bit 55  soft-dirty
  bit 56     page exclusively mapped             bit 57  uffd-wp write-protected
  bit 61     file page or shared anon            bit 62  swapped
  bit 63     present
arm64 does not select HAVE_ARCH_SOFT_DIRTY (arch/arm64/Kconfig), so bit 55 stays 0; the
model has no swap or uffd-wp, so bits 57 and 62 stay 0. The reader is modelled as
privileged (CAP_SYS_ADMIN): pagemap_open() records file_ns_capable() and an unprivileged
reader would see PFN 0 (pagemap_read(): pm.show_pfn).
"""

from __future__ import annotations

import errno

import numpy as np

# fs/proc/task_mmu.c
PM_ENTRY_BYTES = 8
PM_PFRAME_BITS = 55
PM_PFRAME_MASK = (1 << PM_PFRAME_BITS) - 1  # GENMASK_ULL(PM_PFRAME_BITS - 1, 0)
PM_SOFT_DIRTY = 1 << 55
PM_MMAP_EXCLUSIVE = 1 << 56
PM_UFFD_WP = 1 << 57
PM_FILE = 1 << 61
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63

PAGEMAP_STAT_MISMATCH = "pagemap_pfn_unit_mismatch"


def _rmap_intervals(system, heads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted starts and ends (kernel pfns) of every rmap entry of the folios at `heads`.

    Folio.rmap entries are (mm, addr, first, nr): pages first..first+nr-1 mapped once.
    Folios never share frames, so counting the intervals that contain a pfn gives that
    page's mapcount (folio_precise_page_mapcount()).
    """
    starts, ends = [], []
    for head in heads.tolist():  # once per folio mapping, not per entry
        for _mm, _addr, first, nr in system.folios[head].rmap:
            starts.append(head + first)
            ends.append(head + first + nr)
    return np.sort(np.array(starts, dtype=np.int64)), np.sort(np.array(ends, dtype=np.int64))


def pagemap_entries(mm, addrs: np.ndarray) -> np.ndarray:
    """uint64 pagemap entries for the pages of `mm` at `addrs` (each the start of a reader page).

    The PFN is the kernel frame mapped at the address itself: for a reader page larger
    than PAGE_SIZE, the first kernel page of that reader page.
    """
    system = mm.system
    addrs = np.asarray(addrs, dtype=np.int64)
    entries = np.zeros(len(addrs), dtype=np.uint64)
    if len(addrs) == 0:
        return entries
    look = mm.pgtable.lookup(addrs)
    present = np.asarray(look.present, dtype=bool)
    pfn = np.asarray(look.pfn, dtype=np.int64)
    entries[present] = PM_PRESENT | (pfn[present].astype(np.uint64) & np.uint64(PM_PFRAME_MASK))
    if not present.any():
        return entries
    # pte_to_pagemap_entry(): page = vm_normal_page(); !folio_test_anon() -> PM_FILE;
    # folio_precise_page_mapcount(folio, page) == 1 -> PM_MMAP_EXCLUSIVE (the per-page rule
    # of v6.12; later kernels ask !folio_maybe_mapped_shared(folio), folio-wide). The zero
    # page (vm_normal_page() is NULL for it) and a pfn without a folio get neither bit.
    heads = np.full(len(addrs), -1, dtype=np.int64)
    heads[present] = system.folio_heads(pfn[present])
    zero = system.zero_folio.pfn if system.zero_folio is not None else -2
    normal = (heads >= 0) & (heads != zero)
    uniq, inv = np.unique(heads[normal], return_inverse=True)
    anon = np.array([system.folios[h].anon for h in uniq.tolist()], dtype=bool)
    file_flag = np.zeros(len(addrs), dtype=bool)
    file_flag[normal] = ~anon[inv]
    starts, ends = _rmap_intervals(system, uniq)
    mapcount = np.searchsorted(starts, pfn, side="right") - np.searchsorted(ends, pfn, side="right")
    exclusive = normal & (mapcount == 1)
    entries[file_flag] |= np.uint64(PM_FILE)
    entries[exclusive] |= np.uint64(PM_MMAP_EXCLUSIVE)
    return entries


class PagemapOps:
    """The pagemap reader side of a Process (mixed into process.Process).

    Needs `self.system` (System) and `self.page_size` (the reader's process page size).
    """

    def read_pagemap(self, pid: int, addr: int, count: int):
        """Read `count` entries of /proc/`pid`/pagemap starting at virtual address `addr`.

        The file offset is (addr / reader page size) * 8, so `addr` must be aligned to the
        reader's page size: an unaligned one is an offset pagemap_read() rejects with
        -EINVAL ("*ppos % PM_ENTRY_BYTES"). Returns a list of ints, or -errno: -EINVAL for
        an unaligned addr or a negative count, -ESRCH for no such pid. Reading stops at the
        end of the user address space (pagemap_read(): end_vaddr = mm->task_size), so a
        read past it returns fewer entries, as read() would.
        """
        system = self.system
        reader = self.page_size
        if not isinstance(addr, (int, np.integer)) or not isinstance(count, (int, np.integer)):
            raise TypeError(f"read_pagemap: addr and count must be ints, got {addr!r}, {count!r}")
        if addr < 0 or addr % reader or count < 0:
            return -errno.EINVAL
        target = system.processes.get(pid)
        if target is None:
            return -errno.ESRCH
        mm = target.mm
        if mm is None:  # pagemap_read(): !mm || !mmget_not_zero(mm) -> 0 bytes
            return []
        task_size = 1 << system.va_bits
        nr = int(max(0, min(count, (task_size - addr) // reader)))
        addrs = addr + np.arange(nr, dtype=np.int64) * reader
        entries = pagemap_entries(mm, addrs)
        if reader != system.kernel_page_size:
            system.stats.count(PAGEMAP_STAT_MISMATCH, int(np.count_nonzero(entries & np.uint64(PM_PRESENT))))
        return [int(e) for e in entries]


def pagemap_pfn(entry: int) -> int:
    """The PFN field of an entry (kernel frames), as tools do: entry & ((1 << 55) - 1)."""
    return entry & PM_PFRAME_MASK
