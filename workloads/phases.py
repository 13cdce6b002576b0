"""The phases a workload yields; the simulator (kernel_model.simulate) interprets them.

A phase is a frozen dataclass. Sizes, offsets and addresses are bytes. A region is a
name the workload gives a mapping (Map, MmapFile); later Access phases address it by
name with offsets inside it, so the workload never needs to know where mmap placed it.

Process semantics the simulator implements: the phases run in one current process,
created by the simulator with the configured process page size. Fork() forks the
current process and the child becomes current (kernel/fork.c); Exec(page_size)
replaces the current process image with a fresh mm (fs/exec.c: begin_new_exec()),
with that personality page size, or the configured one when None. Regions are per
process: a child inherits its parent's regions across Fork and loses them at Exec.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# mmap flag values, Linux UAPI (include/uapi/linux/mman.h,
# include/uapi/asm-generic/mman-common.h); kernel_model.abi uses the same numbers.
MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_ANONYMOUS = 0x20
MAP_POPULATE = 0x8000

# Offsets and addresses in an Access phase are kept 8-byte aligned by the synthetic
# generators: one access is one aligned 64-bit word load or store.
WORD = 8

# Maximum accesses in one Access phase, so that a workload of any length streams in
# bounded memory: 4 Mi accesses = 32 MiB of offsets + 4 MiB of flags.
ACCESS_CHUNK = 1 << 22

# Accesses per chunk of a recorded trace (TraceAccess): results do not depend on it; the
# memory a cell keeps per chunk does (about 9 bytes per access read, plus what the
# parser of lackey text needs per 4 MiB buffer).
TRACE_CHUNK = 1 << 20


@dataclass(frozen=True)
class Map:
    """mmap(NULL, length, prot, flags, fd, offset); anonymous when path is None."""

    region: str
    length: int
    prot: int
    flags: int
    path: str | None = None
    offset: int = 0


@dataclass(frozen=True, eq=False)
class Access:
    """Loads and stores, in order: offsets[i] inside `region`, a store when is_write[i].

    region None: offsets are absolute virtual addresses (recorded traces); every page
    they touch is demand-faulted as anonymous memory. Both arrays are read-only and of
    equal length.
    """

    region: str | None
    offsets: np.ndarray
    is_write: np.ndarray

    def __post_init__(self):
        offsets = np.ascontiguousarray(self.offsets, dtype=np.int64)
        is_write = np.ascontiguousarray(self.is_write, dtype=np.bool_)
        if offsets.ndim != 1 or is_write.shape != offsets.shape:
            raise ValueError(
                f"Access: offsets and is_write must be 1-D arrays of equal length, "
                f"got shapes {offsets.shape} and {is_write.shape}"
            )
        offsets.flags.writeable = False
        is_write.flags.writeable = False
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "is_write", is_write)

    def __len__(self) -> int:
        return len(self.offsets)

    def __eq__(self, other):
        if not isinstance(other, Access):
            return NotImplemented
        return (
            self.region == other.region
            and np.array_equal(self.offsets, other.offsets)
            and np.array_equal(self.is_write, other.is_write)
        )

    __hash__ = None

    def __repr__(self) -> str:
        return (
            f"Access(region={self.region!r}, offsets={self.offsets.tolist()!r}, "
            f"is_write={self.is_write.tolist()!r})"
            if len(self) <= 16
            else f"Access(region={self.region!r}, n={len(self)}, writes={int(self.is_write.sum())})"
        )


@dataclass(frozen=True)
class TraceAccess:
    """A recorded trace file (workloads/trace.py) as ONE Access phase with region None,
    read in chunks of at most `chunk` accesses: chunks() yields (addrs int64, is_write
    bool) and may be called again to re-read the file. The simulator gives it exactly
    the semantics of one Access phase of all its accesses (faults in trace order, then
    the TLB over the table they leave), whatever `chunk` is."""

    path: str
    chunk: int = TRACE_CHUNK
    # A trace records accesses, not mappings: touched process pages at most `map_gap`
    # bytes apart are mapped as one anonymous VMA, as the program's own mmap() or heap
    # would have covered them (a 64K mTHP or a PMD THP can then fit across untouched
    # pages, as in the kernel); 0 maps only the runs of touched pages.
    map_gap: int = 1 << 30

    def chunks(self):
        from workloads.trace import read_chunks

        return read_chunks(self.path, chunk=self.chunk)


@dataclass(frozen=True)
class CreateFile:
    """A file of `size` bytes exists in the emulated filesystem.

    large_folios False: its filesystem does not support large folios
    (mapping_set_large_folios() never called; include/linux/pagemap.h).
    """

    path: str
    size: int
    large_folios: bool = True


@dataclass(frozen=True)
class ReadFile:
    """read() of [offset, offset + length) of the file; all of it when length is None."""

    path: str
    offset: int = 0
    length: int | None = None


@dataclass(frozen=True)
class MmapFile:
    """mmap() of the whole file as `region`: MAP_SHARED when shared, else MAP_PRIVATE."""

    region: str
    path: str
    prot: int
    shared: bool = False


@dataclass(frozen=True)
class Mlock:
    """mlock(2) of [offset, offset + length) of `region` (all of it when length is None):
    its pages are faulted in and stay resident while mapped (mm/mlock.c)."""

    region: str
    offset: int = 0
    length: int | None = None


@dataclass(frozen=True)
class Pin:
    """A long-term pin of the pages of [offset, offset + length) of `region` (all of it
    when length is None), as pin_user_pages(FOLL_LONGTERM) takes for DMA or io_uring
    fixed buffers (mm/gup.c); the folios stay pinned while the process lives."""

    region: str
    offset: int = 0
    length: int | None = None


@dataclass(frozen=True)
class TouchTail:
    """Read every kernel page of `region`'s last process page that lies past the end of
    the file (the overhang a larger process page leaves behind EOF: the thread, Kalesh
    and Dev 2026-02-26). Empty when the file ends on a process-page boundary. What it
    hits depends on abi.overhang: SIGBUS, anonymous padding, or the padding VMA."""

    region: str


@dataclass(frozen=True)
class ReadPagemap:
    """The current process reads its own /proc/self/pagemap over `region`: one 8-byte
    entry per page of ITS page size, carrying kernel-page PFNs (fs/proc/task_mmu.c) - the
    unit mismatch the thread names (Kalesh, 2026-02-26)."""

    region: str


@dataclass(frozen=True)
class UffdFill:
    """Register `region` with userfaultfd (MISSING mode) and fill it one process page at
    a time with UFFDIO_COPY, as a userfaultfd-based allocator or live migration does: on a
    4K kernel a 64K process's copy installs 16 kernel pages (the thread: Dev, 2026-02-26)."""

    region: str


@dataclass(frozen=True)
class Fork:
    """fork(): the child becomes the current process."""


@dataclass(frozen=True)
class Exec:
    """execve() in the current process with this personality page size ("4K", "16K",
    "64K", or "kernel" for the kernel's page size), or the configured
    process.page_size when None."""

    page_size: str | None = None


@dataclass(frozen=True)
class LoadElf:
    """execve()-style load of the real ELF file at `path` (fs/binfmt_elf.c)."""

    path: str


@dataclass(frozen=True)
class Spawn:
    """A new process, execve'd from a fresh fork (fs/exec.c), with this personality page
    size ("4K", "16K", "64K", "kernel") or the configured process.page_size when None. It
    becomes current; the processes before it keep running with their mms, so a replayed
    machine's processes live side by side. Regions start empty."""

    page_size: str | None = None


@dataclass(frozen=True)
class MapRange(Map):
    """mmap(NULL, length, prot, flags, fd, offset) of a captured VMA whose file offset is
    in the capture's pages: the offset is aligned down to the process page (mmap takes
    offsets in process pages; mm/mmap.c do_mmap() rejects an unaligned one) and the
    mapping grows by that head, so `region` still names the captured range from its
    first byte. Anonymous when path is None. The fields are Map's."""


@dataclass(frozen=True)
class CachePages:
    """The page cache holds exactly the 4K pages of `path` listed in `runs`
    ((first page, count) pairs): each run is read as one request without a readahead
    window (mm/readahead.c force_page_cache_ra() with ra_pages 0: folios of the
    mapping's minimum order), so a replay caches what the capture found resident and no
    more."""

    path: str
    runs: tuple


PHASE_TYPES = (Map, Access, TraceAccess, CreateFile, ReadFile, MmapFile, Mlock, Pin, TouchTail, ReadPagemap, UffdFill,
               Fork, Exec, LoadElf, Spawn, MapRange, CachePages)
