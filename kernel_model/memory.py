"""The fault path and the PTE-level operations on an mm.

Counterpart: mm/memory.c (handle_mm_fault, do_anonymous_page, do_fault, do_wp_page,
zap_page_range_single), mm/mmap.c (exit_mmap), mm/gup.c (populate, pin_user_pages),
mm/mlock.c (the folios' mlock state). mprotect.py, mremap.py and fork.py hold
change_protection(), move_page_tables() and dup_mmap()/copy_page_range().

Per-process page size (the thread, Dev 2026-02-17): every mapping an mm gets is a whole
number of naturally aligned process pages, each backed by folios of at least the process
order, so every Linux page-table operation covers >= page_size/PAGE_SIZE PTEs.

Units: addresses in bytes; a "process page" is mm.page_size bytes; pfn in kernel frames.
"""

from __future__ import annotations

import errno

import numpy as np

from . import huge_memory
from .arch.arm64.native import NativePageTable
from .filemap import filemap_get_folios
from .filemap_policy import filemap_fault
from .geometry import geometry
from .mm_types import (PROT_EXEC, PROT_READ, PROT_WRITE, VM_FAULT_ERROR, VM_FAULT_RETRY, VM_FAULT_SIGBUS,
                       VM_FAULT_SIGSEGV, VM_PAD_ANON, VM_READ, VM_SHARED, VM_UFFD_MISSING, VM_WRITE, Folio, Mm,
                       OutOfMemory, Vma, is_zero_folio)
from .pgtable import PageTable
from .rmap import folio_mlock_recount, folio_put_if_unused, map_folio_range, rmap_add, unmap_folio_range
from .shmem import shmem_fault
from .userfaultfd import handle_userfault
from .vma import VmaTree

# mm/memory.c: fault_around_bytes = rounddown_pow_of_two(65536) (debugfs knob, 64K default).
FAULT_AROUND_BYTES = 64 << 10

# Below the mmap area: TASK_SIZE less the 128M minimum stack gap (mm/util.c mmap_base(), MIN_GAP).
MIN_GAP = 128 << 20


def vma_prot(vma: Vma) -> int:
    return vma.flags & (PROT_READ | PROT_WRITE | PROT_EXEC)


# -- mm lifetime ------------------------------------------------------------------

def mm_alloc(system, page_size: int) -> Mm:
    """mm_alloc() + the arch context: a Linux table in the kernel geometry and, when the
    process page is larger than the kernel's and arch.native_pgtable is not off, the
    native table in the process geometry."""
    policy = system.policy
    pgtable = PageTable(system.kgeom, table_alloc=system.table_alloc, table_free=system.table_free,
                        contpte=policy.contpte)
    native = None
    if policy.native_pgtable != "off" and page_size > system.kernel_page_size:
        native = NativePageTable(pgtable, geometry(page_size, system.va_bits), mode=policy.native_pgtable,
                                 table_alloc=system.table_alloc, table_free=system.table_free,
                                 contpte=policy.contpte)
    task_size = 1 << system.va_bits
    vmas = VmaTree(page_size, kernel_page_size=system.kernel_page_size, va_bits=system.va_bits)
    mm = Mm(system=system, page_size=page_size, vmas=vmas, pgtable=pgtable, native=native)
    mm.mmap_base = (task_size - MIN_GAP) & ~(page_size - 1)
    # arm64 ELF_ET_DYN_BASE is 2/3 of TASK_SIZE (arch/arm64/include/asm/elf.h); brk follows the image.
    mm.start_brk = mm.brk = ((task_size // 3) * 2) & ~(page_size - 1)
    return mm


def exit_mmap(mm: Mm) -> None:
    """exit_mmap(): unmap everything and free the page tables."""
    for vma in list(mm.vmas.vmas):
        zap_range(mm, vma.start, vma.end)
    mm.vmas.unmap(0, 1 << mm.system.va_bits)
    mm.pgtable.free_empty_tables()
    if mm.native is not None:
        mm.native.free_empty_tables()


# -- faults ---------------------------------------------------------------------------

def _present(mm: Mm, addr: int) -> tuple[bool, int, int]:
    pfn, prot, _ = mm.pgtable.pte_get(addr)
    return pfn >= 0, pfn, prot


def handle_mm_fault(mm: Mm, addr: int, write: bool) -> int:
    """The access path (arch/arm64/mm/fault.c do_page_fault -> handle_mm_fault).

    Returns 0 when the access can complete, else a VM_FAULT_* code.
    """
    vma = mm.vmas.find(addr)
    if vma is None:
        return VM_FAULT_SIGSEGV
    # arch/arm64/mm/fault.c do_page_fault(): a write needs VM_WRITE; a read is allowed by
    # VM_READ or VM_WRITE ("Write implies read"; with EPAN, exec-only does not imply read).
    if write and not vma.flags & VM_WRITE:
        return VM_FAULT_SIGSEGV
    if not write and not vma.flags & (VM_READ | VM_WRITE):
        return VM_FAULT_SIGSEGV
    pfn, prot, shift = mm.pgtable.pte_get(addr)
    if pfn >= 0:
        if not write or prot & PROT_WRITE:
            return 0  # spurious: another fault already mapped it
        return do_wp_page(mm, vma, addr, pfn, leaf_shift=shift)
    if vma.flags & VM_UFFD_MISSING and vma.anon:
        return handle_userfault(mm, vma, addr, write)
    if vma.anon:
        return do_anonymous_page(mm, vma, addr, write)
    return do_fault(mm, vma, addr, write)


def _proc_page(mm: Mm, addr: int) -> int:
    return addr & ~(mm.page_size - 1)


def _alloc_anon(mm: Mm, vma: Vma, addr: int) -> Folio | None:
    """alloc_anon_folio(): the highest allowed order whose PTE range is empty and that can be allocated."""
    system = mm.system
    kps = system.kernel_page_size
    orders, may_fall_back = huge_memory.anon_fault_orders(mm, vma, addr)
    for i, order in enumerate(orders):
        size = kps << order
        start = addr & ~(size - 1)
        if order > mm.order and _range_populated(mm, start, size):
            continue  # pte_range_none() failed for this order
        folio = system.anon_folio_alloc(order)
        if folio is not None:
            if i:
                system.stats.count("anon_fault_fallback")
            return folio
    if not may_fall_back:
        raise OutOfMemory(f"folio.anon=mthp_only: no {kps << orders[-1]}-byte folio for a fault at {addr:#x}")
    raise OutOfMemory(f"no folio of the process order {mm.order} for a fault at {addr:#x} "
                      f"(memory.size={system.memory_size})")


def _range_populated(mm: Mm, start: int, size: int) -> bool:
    return not mm.pgtable.range_none(start, size // mm.system.kernel_page_size)


def do_anonymous_page(mm: Mm, vma: Vma, addr: int, write: bool) -> int:
    """mm/memory.c do_anonymous_page(): a read fault maps the zero page (when allowed),
    a write fault allocates a folio of the chosen order (never below the process order)."""
    system = mm.system
    kps = system.kernel_page_size
    if vma.flags & VM_PAD_ANON:
        return _pad_fault(mm, vma, addr)
    if vma.shmem is not None:
        return shmem_fault(mm, vma, addr, write)
    if not write and huge_memory.do_huge_zero_read_fault(mm, vma, addr):
        system.stats.count("faults")
        return 0
    if not write and not vma.flags & VM_SHARED and system.zero_folio is not None:
        # The zero page for a whole process page (or mthp_only granule): read-only, shared,
        # never counted as anon.
        size = kps << huge_memory.anon_granule_order(mm, vma, addr)
        start = addr & ~(size - 1)
        nr = size // kps
        if size > mm.page_size and _range_populated(mm, start, size):
            size, start, nr = mm.page_size, _proc_page(mm, addr), mm.page_size // kps
        zf = system.zero_folio
        for off in range(0, nr, zf.nr_pages):  # the zero folio repeats over a larger granule
            map_folio_range(mm, vma, start + off * kps, zf, 0, min(zf.nr_pages, nr - off), writable=False)
        system.stats.count("faults")
        system.stats.count("zero_page_faults")
        return 0
    folio = _alloc_anon(mm, vma, addr)
    size = folio.size(kps)
    start = addr & ~(size - 1)
    if folio.order == huge_memory.pmd_order(mm) and folio.order > mm.order:
        # mm/huge_memory.c do_huge_pmd_anonymous_page() -> map_anon_folio_pmd()
        mm.pgtable.set_pmd(start, folio.pfn, vma_prot(vma), folio_pfn=folio.pfn, folio_nr=folio.nr_pages)
        rmap_add(vma, folio, mm, start, 0, folio.nr_pages)
        system.stats.count("thp_pmd_faults")
    else:
        map_folio_range(mm, vma, start, folio, 0, folio.nr_pages, writable=True)
    system.stats.count("faults")
    return 0


def _pad_fault(mm: Mm, vma: Vma, addr: int) -> int:
    """A fault in the anonymous VMA that covers a file's EOF overhang (abi.overhang=anon_vma):
    kernel pages of anonymous memory, as the padding VMA is smaller than a process page."""
    system = mm.system
    kps = system.kernel_page_size
    start = addr & ~(kps - 1)
    folio = system.anon_folio_alloc(0, padding=True)
    if folio is None:
        raise OutOfMemory(f"no page for the EOF padding VMA at {addr:#x}")
    map_folio_range(mm, vma, start, folio, 0, 1, writable=True)
    system.stats.count("faults")
    return 0


def do_wp_page(mm: Mm, vma: Vma, addr: int, pfn: int, *, leaf_shift: int | None = None) -> int:
    """mm/memory.c do_wp_page(): a write to a present read-only page of a writable VMA.

    The unit is the process page around addr, clipped to the VMA (a kernel page in the
    anon_vma overhang VMA). A PMD block goes to do_huge_pmd_wp_page() first. A shared
    mapping is made writable in place (wp_page_shared(): never copied). A private folio
    this mm maps alone is reused (wp_can_reuse_anon_folio(); since 6.15 large folios too,
    __wp_can_reuse_large_anon_folio(), one fault's range at a time). Otherwise
    wp_page_copy() puts a new folio of the process order (the mthp_only granule over the
    zero page) in place of the process page.
    """
    system = mm.system
    kps = system.kernel_page_size
    system.stats.count("faults")
    # leaf_shift (from the caller's pte_get) >= PMD_SHIFT: the address is under a block
    if (mm.pgtable.pmd_blocks_in(addr, addr + 1) if leaf_shift is None
            else leaf_shift >= system.kgeom.pmd_shift):
        if huge_memory.do_huge_pmd_wp_page(mm, vma, addr):
            return 0
    folio = system.pfn_folio(pfn)
    order = 0 if vma.flags & VM_PAD_ANON else mm.order
    if vma.anon and folio is not None and not vma.flags & VM_PAD_ANON:
        order = huge_memory.anon_granule_order(mm, vma, addr)
        if order > mm.order:
            heads = mm.pgtable.read_ptes(addr & ~((kps << order) - 1), 1 << order)[2]
            if not (heads == folio.pfn).all():
                order = mm.order  # the granule is not wholly this folio (or the zero page)
    size = kps << order
    start = max(addr & ~(size - 1), vma.start)
    end = min((addr & ~(size - 1)) + size, vma.end)
    nr = (end - start) // kps
    if vma.flags & VM_SHARED:
        mm.pgtable.modify_prot(start, nr, vma_prot(vma))
        system.stats.count("wp_shared")
        return 0
    if huge_memory.folio_exclusive(mm, folio):
        for _, eaddr, _, enr in folio.rmap:
            lo, hi = max(eaddr, start), min(eaddr + enr * kps, end)
            if lo < hi:
                mm.pgtable.modify_prot(lo, (hi - lo) // kps, vma_prot(vma))
        system.stats.count("cow_reuse")
        return 0
    new = system.anon_folio_alloc(order, padding=bool(vma.flags & VM_PAD_ANON))
    if new is None:
        raise OutOfMemory(f"no order-{order} folio for a copy-on-write fault at {addr:#x}")
    _unmap_page_range(mm, start, end)
    map_folio_range(mm, vma, start, new, 0, nr, writable=True)
    system.stats.count("cow_copies")
    return 0


def do_fault(mm: Mm, vma: Vma, addr: int, write: bool) -> int:
    """mm/memory.c do_fault() for a file mapping, with the EOF overhang policies.

    A process page [start, start+page_size) of the VMA covers kernel-page file indices
    [idx, idx+nr). Pages below EOF come from the page cache (filemap_fault). The rest is
    the overhang (the thread, Kalesh 2026-02-26 and Dev's reply): `sigbus` leaves it
    unmapped so that touching it raises SIGBUS as a 4K kernel does; `anon_fault` fills it
    with anonymous kernel pages (VM_FAULT_NEED_ANONPAGE -> do_anonymous_page); `anon_vma`
    was handled at mmap time by an extra anonymous VMA. A process page wholly past EOF is
    SIGBUS under every policy (filemap_fault: index >= max_idx).
    """
    system = mm.system
    kps = system.kernel_page_size
    f = vma.file
    start = max(_proc_page(mm, addr), vma.start)
    end = min(start + mm.page_size, vma.end)
    idx = vma.pgoff + (start - vma.start) // kps
    nr = (end - start) // kps
    eof_pages = -(-f.size // kps)
    fault_idx = vma.pgoff + (addr - vma.start) // kps
    if idx >= eof_pages:
        system.stats.count("sigbus")
        return VM_FAULT_SIGBUS
    in_file = min(nr, eof_pages - idx)
    if fault_idx >= eof_pages and system.policy.overhang == "sigbus":
        system.stats.count("sigbus")
        return VM_FAULT_SIGBUS
    private_write = write and not vma.flags & VM_SHARED
    if private_write:
        return _do_cow_fault(mm, vma, start, nr, idx, in_file)
    if not write and FAULT_AROUND_BYTES > mm.page_size and _do_fault_around(mm, vma, addr, eof_pages):
        system.stats.count("faults")
        return 0
    got = filemap_fault(system, mm, vma, idx, in_file)
    if isinstance(got, int):
        if got & VM_FAULT_SIGBUS:
            system.stats.count("sigbus")
        return got
    writable = bool(vma.flags & VM_SHARED)
    for folio, _ in got:
        _map_file_folio(mm, vma, folio, idx, in_file, writable)
    if in_file < nr and system.policy.overhang == "anon_fault":
        _fill_overhang(mm, vma, start + in_file * kps, nr - in_file)
    system.stats.count("faults")
    return 0


def _do_fault_around(mm: Mm, vma: Vma, addr: int, eof_pages: int) -> bool:
    """mm/memory.c do_read_fault() -> do_fault_around() -> mm/filemap.c filemap_map_pages():
    before reading anything, map the page-cache folios already cached around addr.

    The window is fault_around_bytes (64K) aligned down, clipped to the VMA and to the PTE
    table (from_pte/to_pte); pages at or past the EOF page and present PTEs are skipped.
    Per-process page size: only whole process pages below EOF, in folios of at least the
    process order (a smaller folio or the EOF page is left to filemap_fault() and its
    policy). A large folio is mapped whole where possible (filemap_map_folio_range(), since
    6.18): it lies within the VMA, does not cross a PMD (page-table) boundary and ends
    before the file's last page (file_end >= folio_next_index(), file_end the index of the
    page holding EOF); else only its pages inside the window. Returns whether the page at
    addr is mapped now (else __do_fault() runs)."""
    system = mm.system
    kps = system.kernel_page_size
    pmd = system.kgeom.pmd_size
    lo = max(addr & ~(FAULT_AROUND_BYTES - 1), vma.start)
    hi = min(lo + FAULT_AROUND_BYTES, (addr & ~(pmd - 1)) + pmd, vma.end)
    ppn = mm.page_size // kps
    first = vma.pgoff + (lo - vma.start) // kps
    last = min(first + (hi - lo) // kps, eof_pages // ppn * ppn)
    writable = bool(vma.flags & VM_SHARED)
    hit, mapped = False, 0
    for folio in filemap_get_folios(vma.file.mapping, first, last) if first < last else ():
        if folio.order < mm.order or not folio.uptodate:
            continue
        i0, i1 = max(first, folio.index), min(last, folio.index + folio.nr_pages)
        f0 = vma.start + (folio.index - vma.pgoff) * kps
        f1 = f0 + folio.nr_pages * kps
        if (eof_pages - 1 >= folio.index + folio.nr_pages and vma.start <= f0 and f1 <= vma.end
                and f0 // pmd == (f1 - 1) // pmd):
            i0, i1 = folio.index, folio.index + folio.nr_pages
        a0 = vma.start + (i0 - vma.pgoff) * kps
        spans = [(a0, i1 - i0)] if mm.pgtable.range_none(a0, i1 - i0) else \
            [(a, ppn) for a in range(a0, a0 + (i1 - i0) * kps, mm.page_size) if mm.pgtable.range_none(a, ppn)]
        for a, n in spans:
            map_folio_range(mm, vma, a, folio, vma.pgoff + (a - vma.start) // kps - folio.index, n, writable)
            mapped += n
            hit = hit or a <= addr < a + n * kps
    if mapped:
        system.stats.count("fault_around_pages", mapped)
    return hit


def _map_file_folio(mm: Mm, vma: Vma, folio: Folio, idx: int, nr: int, writable: bool) -> None:
    """Map the part of folio that caches file indices [idx, idx+nr) at its place in vma."""
    kps = mm.system.kernel_page_size
    lo = max(idx, folio.index)
    hi = min(idx + nr, folio.index + folio.nr_pages)
    if hi <= lo:
        return
    addr = vma.start + (lo - vma.pgoff) * kps
    map_folio_range(mm, vma, addr, folio, lo - folio.index, hi - lo, writable)


def _fill_overhang(mm: Mm, vma: Vma, addr: int, nr: int) -> None:
    """VM_FAULT_NEED_ANONPAGE: anonymous kernel pages behind EOF, counted as padding."""
    system = mm.system
    for i in range(nr):
        folio = system.anon_folio_alloc(0, padding=True)
        if folio is None:
            raise OutOfMemory(f"no page for EOF padding at {addr:#x}")
        map_folio_range(mm, vma, addr + i * system.kernel_page_size, folio, 0, 1, writable=True)


def _do_cow_fault(mm: Mm, vma: Vma, start: int, nr: int, idx: int, in_file: int) -> int:
    """mm/memory.c do_cow_fault(): a private write copies the file process page into a
    new anonymous folio of the process order (bytes past EOF read as zero in the copy)."""
    system = mm.system
    got = filemap_fault(system, mm, vma, idx, in_file)
    if isinstance(got, int):
        return got
    folio = system.anon_folio_alloc(mm.order)
    if folio is None:
        raise OutOfMemory(f"no folio for a private file write fault at {start:#x}")
    _unmap_page_range(mm, start, start + nr * system.kernel_page_size)
    map_folio_range(mm, vma, start, folio, 0, nr, writable=True)
    system.stats.count("faults")
    system.stats.count("cow_copies")
    return 0


# -- ranges -------------------------------------------------------------------------

def populate(mm: Mm, start: int, end: int, write: bool) -> int:
    """populate_vma_page_range()/faultin_page(): fault in every process page of [start, end).

    Returns 0, or -EFAULT when a page cannot be faulted (SIGBUS/SIGSEGV), -ENOMEM on holes.
    """
    ps = mm.page_size
    addr = start & ~(ps - 1)
    while addr < end:
        vma = mm.vmas.find(addr)
        if vma is None:
            return -errno.ENOMEM
        stop = min(end, vma.end)
        while addr < stop:
            present, _, prot = _present(mm, addr)
            if not present or (write and not prot & PROT_WRITE):
                ret = handle_mm_fault(mm, addr, write)
                if ret & VM_FAULT_ERROR:
                    return -errno.EFAULT
                if ret & VM_FAULT_RETRY:
                    return -errno.EFAULT
            addr += ps
    return 0


def _unmap_page_range(mm: Mm, start: int, end: int) -> None:
    """zap_pte_range(): clear the PTEs of [start, end) (no PMD block inside) and drop the
    folios' mappings; an anonymous folio nobody maps any more is freed."""
    system = mm.system
    kps = system.kernel_page_size
    nr = (end - start) // kps
    if nr <= 0:
        return
    _, pfns = mm.pgtable.zap_ptes(start, nr)
    if pfns.size == 0:
        return
    heads = system.folio_heads(pfns)
    h0 = int(heads[0])
    if h0 == heads[-1] and (heads == h0).all():  # the common case: one folio (or the zero page)
        uniq = [h0] if h0 >= 0 else []
    else:
        uniq = np.unique(heads[heads >= 0]).tolist()
    for head in uniq:
        folio = system.folios.get(head)
        if folio is None or is_zero_folio(system, folio):
            continue
        unmap_folio_range(mm, folio, start, end)
        folio_put_if_unused(system, folio)


def pte_spans(mm: Mm, lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi) less the PMD blocks inside it (the caller split the straddling ones)."""
    spans, cur = [], lo
    size = mm.system.kgeom.pmd_size
    for a in mm.pgtable.pmd_blocks_in(lo, hi):
        if a > cur:
            spans.append((cur, a))
        cur = a + size
    if cur < hi:
        spans.append((cur, hi))
    return spans


def zap_range(mm: Mm, start: int, end: int) -> None:
    """zap_page_range_single() over every VMA [start, end) overlaps (munmap, MADV_DONTNEED):
    a PMD block inside is unmapped whole (zap_huge_pmd()); one straddling an edge is split
    first (__split_huge_pmd()), its folio kept until its last page is unmapped."""
    system = mm.system
    for vma in mm.vmas.find_intersection(start, end):
        lo, hi = max(start, vma.start), min(end, vma.end)
        huge_memory.split_huge_pmds(mm, lo, hi)
        for a, pfn, _ in huge_memory.pmd_blocks(mm, lo, hi):
            folio = system.pfn_folio(pfn)
            mm.pgtable.clear_pmd(a)
            unmap_folio_range(mm, folio, a, a + system.kgeom.pmd_size)
            folio_put_if_unused(system, folio)
        for s0, s1 in pte_spans(mm, lo, hi):
            _unmap_page_range(mm, s0, s1)


def _folios_in(mm: Mm, start: int, end: int) -> list[Folio]:
    """The distinct folios mapped in [start, end) of mm, in address order (the zero page excluded)."""
    kps = mm.system.kernel_page_size
    lo = start & ~(kps - 1)
    heads = mm.pgtable.read_ptes(lo, -(-(end - lo) // kps))[2]
    heads = heads[heads >= 0]
    _, first = np.unique(heads, return_index=True)
    folios = [mm.system.folios.get(h) for h in heads[np.sort(first)].tolist()]
    return [f for f in folios if f is not None and not is_zero_folio(mm.system, f)]


def pin_user_pages(mm: Mm, start: int, end: int) -> int:
    """mm/gup.c pin_user_pages(FOLL_LONGTERM): fault in [start, end) and take a pin on every
    folio mapped there (folio_maybe_dma_pinned() is then true). Returns 0 or -errno."""
    ret = populate(mm, start, end, write=False)
    if ret < 0:
        return ret
    for folio in _folios_in(mm, start, end):
        folio.pincount += 1
    return 0


def mlock_range(mm: Mm, start: int, end: int) -> None:
    """mm/mlock.c mlock_vma_pages_range(): the VMAs of [start, end) are VM_LOCKED now:
    recount the mapped folios' mlock_count."""
    for folio in _folios_in(mm, start, end):
        folio_mlock_recount(folio)


def munlock_range(mm: Mm, start: int, end: int) -> None:
    """mm/mlock.c munlock_folio() for every folio mapped in [start, end) (VM_LOCKED cleared)."""
    for folio in _folios_in(mm, start, end):
        folio_mlock_recount(folio)


def folio_runs(idx: np.ndarray, pfn: np.ndarray, heads: np.ndarray, prot: np.ndarray | None = None):
    """Split present pages (indices idx, ascending) into runs of consecutive pages of one
    folio with consecutive pfns (and one prot): (first position, length) per run."""
    cut = (np.diff(idx) != 1) | (np.diff(pfn) != 1) | (np.diff(heads) != 0)
    if prot is not None:
        cut |= np.diff(prot) != 0
    brk = np.flatnonzero(cut) + 1
    return zip(np.r_[0, brk].tolist(), np.diff(np.r_[0, brk, idx.size]).tolist())
