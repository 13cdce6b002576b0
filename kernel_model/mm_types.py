"""The objects the MM code passes around: Folio, Vma, AddressSpace, File, Mm, and the
definitions every MM module shares (prot and vm_flags bits, VM_FAULT_* codes, OutOfMemory).

Counterpart: include/linux/mm_types.h, include/linux/mm.h, include/linux/fs.h (struct
address_space).
Units: addresses and lengths in bytes; `pfn` in kernel-page frames; `index`/`pgoff`
in kernel pages, as the kernel keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # annotations only: these modules import this one
    from .arch.arm64.native import NativePageTable
    from .pgtable import PageTable
    from .shmem import ShmemObject
    from .system import System
    from .userfaultfd import UserfaultfdCtx
    from .vma import VmaTree

# Protection bits (include/uapi/asm-generic/mman-common.h).
PROT_NONE = 0x0
PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4

# vm_flags (include/linux/mm.h). Low bits mirror PROT_* as VM_READ/WRITE/EXEC do.
VM_READ = 0x00000001
VM_WRITE = 0x00000002
VM_EXEC = 0x00000004
VM_SHARED = 0x00000008
VM_MAYREAD = 0x00000010
VM_MAYWRITE = 0x00000020
VM_MAYEXEC = 0x00000040
VM_MAYSHARE = 0x00000080
VM_GROWSDOWN = 0x00000100
VM_UFFD_MISSING = 0x00000200
VM_PFNMAP = 0x00000400
VM_UFFD_WP = 0x00001000
VM_LOCKED = 0x00002000
VM_IO = 0x00004000
VM_DONTCOPY = 0x00020000
VM_DONTEXPAND = 0x00040000
VM_LOCKONFAULT = 0x00080000
VM_ACCOUNT = 0x00100000
VM_NORESERVE = 0x00200000
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000
VM_MERGEABLE = 0x80000000
VM_PAD_ANON = 0x1_00000000  # model-only: the anonymous VMA covering an EOF overhang (abi.overhang=anon_vma)

VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC

# include/linux/mm_types.h: enum vm_fault_reason
VM_FAULT_OOM = 0x000001
VM_FAULT_SIGBUS = 0x000002
VM_FAULT_SIGSEGV = 0x000040
VM_FAULT_RETRY = 0x000400
VM_FAULT_ERROR = VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV


class OutOfMemory(MemoryError):
    """The allocator could not provide a folio the fault may not fall back from (the OOM killer's case)."""


def prot_to_vm_flags(prot: int) -> int:
    return prot & (PROT_READ | PROT_WRITE | PROT_EXEC)  # calc_vm_prot_bits() for these three


class RmapEntry(NamedTuple):
    """One entry of Folio.rmap: kernel pages first .. first+nr-1 of the folio are mapped at
    addr in mm (by PTEs, or by one PMD block when the folio has the PMD order and nr covers
    it). A tuple: it compares equal to (mm, addr, first, nr)."""

    mm: "Mm"
    addr: int
    first: int
    nr: int


@dataclass(eq=False, init=False)
class Folio:
    """A naturally aligned power-of-two run of kernel pages: 1 << order pages from `pfn`.

    Invariant (include/linux/mm_types.h, struct folio): pfn % (1 << order) == 0.
    Anonymous folios have mapping None; file folios belong to one AddressSpace at `index`
    (in kernel pages, aligned to the folio's size).

    A new folio sets only pfn, order and rmap (and anon, mapcount when not the default):
    every other field reads its class default until first assigned. A fault batch makes
    ~10^5 folios, and setting all thirteen fields was most of their construction.
    """

    pfn: int
    order: int
    anon: bool = True
    mapping: "AddressSpace | None" = None
    index: int = 0
    mapcount: int = 0  # PTE/PMD mappings over all mms (folio_mapcount)
    pincount: int = 0  # long-term GUP pins (folio_maybe_dma_pinned)
    mlock_count: int = 0  # VM_LOCKED mappings (folio->mlock_count)
    dirty: bool = False
    uptodate: bool = True
    padding: bool = False  # an anonymous folio standing in for bytes past EOF
    shmem: bool = False  # a page of a MAP_SHARED|MAP_ANONYMOUS object (shmem.py): unmapping never frees it
    rmap: list[RmapEntry] = field(default_factory=list)  # where the folio is mapped (rmap.py keeps it)

    def __init__(self, pfn: int, order: int, anon: bool = True, mapcount: int = 0,
                 rmap: list[RmapEntry] | None = None):
        self.pfn = pfn
        self.order = order
        self.rmap = [] if rmap is None else rmap
        if not anon:
            self.anon = anon
        if mapcount:
            self.mapcount = mapcount

    @property
    def nr_pages(self) -> int:
        return 1 << self.order

    def size(self, kernel_page_size: int) -> int:
        return kernel_page_size << self.order


@dataclass(eq=False)
class AddressSpace:
    """struct address_space: one file's page cache, and its struct file_ra_state.

    `folios` maps a kernel-page index to the Folio starting there; every folio is
    naturally aligned (index % nr_pages == 0). `starts` is the sorted list of those
    indices (the xarray's order; filemap.py keeps it). `min_order` is
    mapping_min_folio_order().
    """

    host: "File"
    min_order: int = 0
    max_order: int = 0
    large_folios: bool = True  # mapping_large_folio_support(): the filesystem supports them
    folios: dict[int, Folio] = field(default_factory=dict)
    starts: list[int] = field(default_factory=list)  # sorted(folios): the folio index
    nr_mmapped: int = 0  # mappings ever made (i_mmap is not empty once this is > 0)
    ra_next: int = -1  # file_ra_state: the index after the last readahead window (sequential detection)
    ra_size: int = 0  # file_ra_state.size: pages in the last window
    ra_order: int = 0  # file_ra_state.order: folio order of the last window


@dataclass(eq=False)
class File:
    path: str
    size: int
    large_folios: bool = True
    mapping: AddressSpace = None  # type: ignore[assignment]

    def __post_init__(self):
        if self.mapping is None:
            self.mapping = AddressSpace(host=self, large_folios=self.large_folios)


@dataclass(eq=False)
class Vma:
    """struct vm_area_struct: [start, end) with vm_flags; file-backed when `file` is set.

    Boundaries are aligned to the owning mm's process page size. `pgoff` is the file
    offset of `start` in kernel pages (vm_pgoff), kept for anonymous VMAs too as
    start >> PAGE_SHIFT so that merging follows vma_merge()'s pgoff rule.
    """

    start: int
    end: int
    flags: int
    file: File | None = None
    pgoff: int = 0
    name: str = ""
    shmem: "ShmemObject | None" = None  # shmem.ShmemObject of a MAP_SHARED|MAP_ANONYMOUS VMA (its vm_file)

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def anon(self) -> bool:
        return self.file is None

    def contains(self, addr: int) -> bool:
        return self.start <= addr < self.end

    def __repr__(self) -> str:
        kind = f" {self.file.path}+{self.pgoff}" if self.file else ""
        return f"Vma({self.start:#x}-{self.end:#x} {self.flags:#x}{kind}{' ' + self.name if self.name else ''})"


@dataclass(eq=False)
class Mm:
    """struct mm_struct: one address space with its process page size.

    `page_size` is the process page size (the personality's ABI page size, fixed at
    execve); `system.kernel_page_size` is PAGE_SIZE. `pgtable` is the Linux page table in
    the kernel geometry; `native` the arm64 native table in the process geometry, or None
    (arch.native_pgtable=off). `vmas` is a vma.VmaTree aligned to `page_size`.
    """

    system: "System"
    page_size: int
    vmas: "VmaTree"
    pgtable: "PageTable"
    native: "NativePageTable | None" = None
    mmap_base: int = 0
    start_brk: int = 0
    brk: int = 0
    locked_vm: int = 0  # bytes of VM_LOCKED mappings
    users: int = 1
    # the userfaultfd contexts registered on this mm (vma->vm_userfaultfd_ctx, kept per mm)
    uffd_ctxs: "list[UserfaultfdCtx]" = field(default_factory=list)

    @property
    def order(self) -> int:
        """The process order: the hard minimum folio order of this mm, in kernel pages."""
        return (self.page_size // self.system.kernel_page_size).bit_length() - 1


def is_zero_folio(system: "System", folio: Folio | None) -> bool:
    """The zero page or the huge zero page (include/linux/mm.h is_zero_folio(),
    include/linux/huge_mm.h is_huge_zero_folio()): vm_normal_page() returns NULL for both,
    so they are never rmapped, counted or freed."""
    return folio is not None and (folio is system.zero_folio or folio is getattr(system, "huge_zero_folio", None))
