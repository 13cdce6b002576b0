"""One emulated machine: a kernel page size, physical memory, files and processes.

The System owns what the kernel keeps globally: the page allocator (mem_map and the
buddy lists), the folio of every allocated frame (pfn_folio()), the files and their page
caches, the policy knobs of the run, and the event counters that become the metrics.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .choices import AnonPolicy, NativePgtable, Overhang, PagecachePolicy, check_choice
from .filemap import mapping_init, shrink
from .folio_table import FolioTable
from .geometry import geometry
from .mm_types import AddressSpace, File, Folio
from .page_alloc import MAX_ORDER_FOR, PageAllocator
from .process import Process
from .rmap import folio_remap
from .units import parse_page_size, parse_size

ANON_POLICIES = AnonPolicy.values()
PAGECACHE_POLICIES = PagecachePolicy.values()
NATIVE_MODES = NativePgtable.values()
OVERHANG_POLICIES = Overhang.values()

# The process page sizes the proposal allows: 4K, 16K, 64K, each >= PAGE_SIZE.
MAX_PROCESS_PAGE_SIZE = 65536


@dataclass
class Policy:
    """The knobs of one cell that the MM code consults (config names in comments)."""

    anon: str = "base"  # folio.anon
    mthp_sizes: tuple[int, ...] = (16384, 32768, 65536)  # folio.mthp_sizes, bytes
    thp_pmd: bool = False  # folio.thp_pmd
    pagecache: str = "fixed"  # folio.pagecache
    readahead: int = 128 * 1024  # folio.readahead, bytes
    contpte: bool = True  # arch.contpte
    native_pgtable: str = "off"  # arch.native_pgtable
    overhang: str = "anon_fault"  # abi.overhang
    zero_page: bool = True  # folio.zero_page: read faults on private anon map the shared zero page
    # folio.huge_zero_page (/sys/kernel/mm/transparent_hugepage/use_zero_page): a read fault
    # in an empty PMD range that may get a PMD THP maps the huge zero page
    huge_zero_page: bool = True

    def __post_init__(self):
        # plain strings from here on, whether given a str or an Enum member
        self.anon = check_choice(self.anon, AnonPolicy, "folio.anon")
        self.pagecache = check_choice(self.pagecache, PagecachePolicy, "folio.pagecache")
        self.native_pgtable = check_choice(self.native_pgtable, NativePgtable, "arch.native_pgtable")
        self.overhang = check_choice(self.overhang, Overhang, "abi.overhang")
        for size in self.mthp_sizes:
            if size <= 0 or size & (size - 1):
                raise ValueError(f"folio.mthp_sizes: {size} is not a power of two")


@dataclass
class Stats:
    """Event counters of a run; simulate() turns them into metrics."""

    events: Counter = field(default_factory=Counter)
    folios_by_order: Counter = field(default_factory=Counter)  # allocated anon folios, by order

    def count(self, name: str, n: int = 1) -> None:
        self.events[name] += n


class System:
    def __init__(self, kernel_page_size="4K", memory_size="8G", *, va_bits: int = 48,
                 fragmentation: float = 0.0, fragmentation_order: int | None = None, seed: int = 0,
                 policy: Policy | None = None, **knobs):
        self.kernel_page_size = parse_page_size(kernel_page_size, what="kernel.page_size")
        self.va_bits = va_bits
        self.kgeom = geometry(self.kernel_page_size, va_bits)
        self.memory_size = parse_size(memory_size, what="memory.size")
        if self.memory_size < self.kernel_page_size << MAX_ORDER_FOR[self.kernel_page_size]:
            raise ValueError(f"memory.size: {memory_size!r} is smaller than one max-order block")
        if not 0.0 <= float(fragmentation) <= 1.0:
            raise ValueError(f"memory.fragmentation: {fragmentation!r} is out of range 0.0..1.0")
        self.policy = policy if policy is not None else Policy(**knobs)
        self.seed = seed
        self.max_order = MAX_ORDER_FOR[self.kernel_page_size]
        self.page_alloc = PageAllocator(self.memory_size // self.kernel_page_size, max_order=self.max_order,
                                        fragmentation=float(fragmentation), seed=seed,
                                        page_size=self.kernel_page_size, fragmentation_order=fragmentation_order)
        self.page_alloc.set_migrate_hook(self._folio_migrated)
        self.stats = Stats()
        self.folios = FolioTable()  # head pfn -> folio (pfn_folio() for heads), in allocation order
        # mem_map's folio links: the head pfn of the folio holding each frame, -1 when none.
        self.mem_map_head = np.full(self.memory_size // self.kernel_page_size, -1,
                                    dtype=np.int32 if self.memory_size // self.kernel_page_size < 2**31 else np.int64)
        self.anon_bytes = 0
        self.padding_bytes = 0
        self.zero_folio: Folio | None = None
        if self.policy.zero_page:
            # ZERO_PAGE, sized to the largest process page so any process maps a whole page of zeroes.
            self.zero_folio = self.folio_alloc(self.max_process_order, anon=True, movable=False)
        self.files: dict[str, File] = {}
        # the page cache's file LRU (mm/vmscan.c, per node): folio -> None, oldest first;
        # and the mappings filemap.mapping_init() registered: id(mapping) -> mapping, in order
        self.pagecache_lru: OrderedDict[Folio, None] = OrderedDict()
        self.pagecache_mappings: dict[int, AddressSpace] = {}
        self.processes: dict = {}
        self._next_pid = 1

    # -- configuration ----------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: dict) -> "System":
        """Build from a resolved config dict (the config contract of docs/design.md)."""
        # Only the keys present are passed on: an absent key takes the default of Policy
        # or of System(), the one place each default is written (equal to sweep/schema.py's,
        # which tests/kernel_model/test_system_config.py checks).
        def present(section: dict, keys: dict) -> dict:
            return {arg: conv(section[key]) for key, (arg, conv) in keys.items() if key in section}

        def same(v):
            return v

        def sizes(v):
            return tuple(parse_size(s, what="folio.mthp_sizes") for s in v)

        policy = Policy(
            **present(cfg.get("folio", {}), {
                "anon": ("anon", same), "mthp_sizes": ("mthp_sizes", sizes), "thp_pmd": ("thp_pmd", bool),
                "pagecache": ("pagecache", same),
                "readahead": ("readahead", lambda v: parse_size(v, what="folio.readahead")),
                "zero_page": ("zero_page", bool), "huge_zero_page": ("huge_zero_page", bool)}),
            **present(cfg.get("arch", {}), {"contpte": ("contpte", bool),
                                            "native_pgtable": ("native_pgtable", same)}),
            **present(cfg.get("abi", {}), {"overhang": ("overhang", same)}))
        return cls(policy=policy,
                   **present(cfg.get("kernel", {}), {"page_size": ("kernel_page_size", same),
                                                      "va_bits": ("va_bits", int)}),
                   **present(cfg.get("memory", {}), {"size": ("memory_size", same),
                                                      "fragmentation": ("fragmentation", float),
                                                      "fragmentation_order": ("fragmentation_order", same)}),
                   **present(cfg, {"seed": ("seed", int)}))

    def process_page_size(self, value) -> int:
        """Resolve process.page_size ("kernel", "16K", ...) against this kernel; refuse below PAGE_SIZE."""
        if value in (None, "kernel"):
            return self.kernel_page_size
        size = parse_page_size(value, what="process.page_size")
        if size < self.kernel_page_size:
            raise ValueError(f"process.page_size: {value!r} is below the kernel page size "
                             f"{self.kernel_page_size // 1024}K; a process page size must be >= the kernel's")
        return size

    @property
    def max_process_order(self) -> int:
        """Order of the largest process page size allowed on this system (always_max policy)."""
        return (MAX_PROCESS_PAGE_SIZE // self.kernel_page_size).bit_length() - 1

    # -- processes and files ----------------------------------------------------
    def alloc_pid(self) -> int:
        pid = self._next_pid
        self._next_pid += 1
        return pid

    def execve(self, page_size="kernel", path: str | None = None):
        """A new process running with the personality page size `page_size`."""
        return Process.spawn(self, page_size=page_size, path=path)

    def create_file(self, path: str, size: int, *, large_folios: bool = True) -> File:
        if size < 0:
            raise ValueError(f"create_file: size must be >= 0, got {size}")
        f = File(path=path, size=int(size), large_folios=large_folios)
        mapping_init(self, f.mapping)
        self.files[path] = f
        return f

    # -- folios -------------------------------------------------------------------
    def folio_alloc(self, order: int, *, anon: bool = True, movable: bool = True) -> Folio | None:
        """Allocate a folio of `order` kernel pages, or None (counted by the allocator)."""
        pfn = self.page_alloc.alloc(order, movable=movable)
        if pfn is None:
            return None
        folio = Folio(pfn=pfn, order=order, anon=anon)
        self.folios[pfn] = folio
        self.mem_map_head[pfn:pfn + folio.nr_pages] = pfn
        return folio

    def folio_free(self, folio: Folio) -> None:
        del self.folios[folio.pfn]
        self.mem_map_head[folio.pfn:folio.pfn + folio.nr_pages] = -1
        self.page_alloc.free(folio.pfn, folio.order)

    def anon_folio_alloc(self, order: int, *, padding: bool = False) -> Folio | None:
        """An anonymous folio for a fault; reclaims page cache once when memory is short."""
        folio = self.folio_alloc(order, anon=True)
        if folio is None:
            if shrink(self, 1 << order):
                folio = self.folio_alloc(order, anon=True)
        if folio is None and self.reclaim_native_tables(self.kernel_page_size << order):
            folio = self.folio_alloc(order, anon=True)
        if folio is None:
            return None
        size = self.kernel_page_size << order
        if padding:
            folio.padding = True
            self.padding_bytes += size
        else:
            self.anon_bytes += size
            self.stats.folios_by_order[order] += 1
        return folio

    def reclaim_native_tables(self, nbytes: int) -> int:
        """Under memory pressure, discard on-demand native page tables: they are rebuilt from
        the Linux table on the next walk (the thread: Pedro and David, 2026-02-23, "freely
        reclaim arm64 MMU page tables once memory pressure hits"). Returns the bytes freed."""
        freed = 0
        for proc in self.processes.values():
            native = getattr(getattr(proc, "mm", None), "native", None)
            if native is not None and native.mode == "on_demand" and freed < nbytes:
                freed += native.reclaim(nbytes - freed)
        if freed:
            self.stats.count("native_reclaims")
        return freed

    def anon_folio_free(self, folio: Folio) -> None:
        size = folio.size(self.kernel_page_size)
        if folio.padding:
            self.padding_bytes -= size
        else:
            self.anon_bytes -= size
        self.folio_free(folio)

    def pfn_folio(self, pfn: int) -> Folio | None:
        """pfn_folio(): the folio holding frame pfn, or None."""
        head = int(self.mem_map_head[pfn])
        return self.folios.get(head) if head >= 0 else None

    def folio_heads(self, pfns: np.ndarray) -> np.ndarray:
        """Vectorised pfn -> head pfn (-1 where no folio), in the order given, deduplicated
        only by the caller."""
        heads = self.mem_map_head[np.asarray(pfns, dtype=np.int64)].astype(np.int64)
        return heads

    def _folio_migrated(self, old_pfn: int, new_pfn: int, order: int) -> None:
        """Compaction moved a movable allocation: move the folio and its PTEs (remove_migration_ptes)."""
        folio = self.folios.pop(old_pfn, None)
        if folio is None:  # a page table or other movable kernel allocation without a folio
            return
        folio.pfn = new_pfn
        self.folios[new_pfn] = folio
        self.mem_map_head[old_pfn:old_pfn + folio.nr_pages] = -1
        self.mem_map_head[new_pfn:new_pfn + folio.nr_pages] = new_pfn
        folio_remap(folio, old_pfn)

    def table_alloc(self, nbytes: int) -> int:
        """Physical address for a new page-table page of `nbytes` (pagetable_alloc())."""
        order = max(0, (max(nbytes, self.kernel_page_size) // self.kernel_page_size - 1).bit_length())
        pfn = self.page_alloc.alloc(order, movable=False)
        if pfn is None:
            raise MemoryError(f"out of memory allocating a {nbytes}-byte page table "
                              f"(memory.size={self.memory_size})")
        return pfn * self.kernel_page_size

    def table_free(self, phys: int, nbytes: int) -> None:
        order = max(0, (max(nbytes, self.kernel_page_size) // self.kernel_page_size - 1).bit_length())
        self.page_alloc.free(phys // self.kernel_page_size, order)
