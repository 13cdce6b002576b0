"""What the oracle replays: seeded access patterns, scenarios of memory operations, and the
model's side of a replay (kernel_model.oracle runs the kernel's side).

A scenario is a list of steps, the same for the kernel harness and the model:
    Step("map", rid, kind=anon|shared|file, length=, path=)   a PMD-aligned region
    Step("madvise", rid, offset, length, advice=hugepage|nohugepage|dontneed)
    Step("mprotect", rid, offset, length, prot=r|rw|none)
    Step("access", rid, offsets=int64[], is_write=bool[])      one-byte loads/stores in order
    Step("fork")                                               the child continues
    Step("report", rid)                                        measure the region
Region metrics follow /proc/self/smaps (fs/proc/task_mmu.c smaps_pte_entry/smaps_pmd_entry):
rss counts mapped pages except the zero page and the huge zero page (vm_normal_page() is
NULL for them); anon the pages of anonymous folios in private mappings (a shmem page is
not PageAnon); anonhuge the anonymous pages mapped by a PMD.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from workloads.phases import Access, Fork
from workloads.synthetic import zipf_cdf, zipf_pages

from . import huge_memory
from .abi_common import (MADV_DONTNEED, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE,
                         MAP_PRIVATE, MAP_SHARED, PROT_NONE, PROT_READ, PROT_WRITE)
from .filemap import cache_folios, filemap_read
from .mm_types import VM_SHARED
from .simulate import Runner
from .system import System

PAGE = 4096
PMD = 2 << 20

PATTERNS = {
    "uniform": "random bytes of the region, write_ratio of them stores",
    "seqwrite": "every page written in address order, eight stores per page",
    "readall_writealt": "every page read in order, then every other page written",
    "zipf": "Zipf(1.2) over scattered pages, a random byte in the page, write_ratio stores",
    "strided": "every 3rd page (12K stride) in order, wrapping, write_ratio stores",
    "reverse": "pages from the last to the first, write_ratio stores",
    "sparse": "uniform over a random quarter of the 64K blocks (holes elsewhere), write_ratio stores",
    "write_then_read": "every 4th page written, then every page read",
    "read_then_write": "each page read then written (zero page, then the write fault on it)",
}
SCENARIOS = {
    "file_seq": "a cached 4M+12K file mapped private, read page by page (fault-around)",
    "file_strided": "the same file read at a 36K stride, then every page",
    "file_large_seq": "file_seq on a disk filesystem with large folios (the host's folio layout copied)",
    "file_large_strided": "file_strided on a disk filesystem with large folios (the host's folio layout copied)",
    "fork_cow": "the parent writes the region; the child reads it all, then writes a pattern",
    "shmem_fork": "MAP_SHARED anonymous: the parent writes half, forks, the child touches all",
    "dontneed": "the region written, MADV_DONTNEED on pieces of it, then touched again",
    "mprotect": "the region written, mprotect(PROT_READ) inside large folios and back, written again",
}


@dataclass
class Step:
    op: str
    rid: int = 0
    offset: int = 0
    length: int = 0
    kind: str = "anon"
    path: str | None = None
    advice: str = ""
    prot: str = ""
    layout: list | None = None  # map of a file: the page-cache folios [(index, nr_pages)] to copy
    offsets: np.ndarray | None = field(default=None, repr=False)
    is_write: np.ndarray | None = field(default=None, repr=False)


def pattern(name: str, size: int, accesses: int, seed: int, write_ratio: float = 0.3):
    """(offsets int64, is_write bool) of a named pattern over a region of `size` bytes."""
    if name not in PATTERNS:
        raise ValueError(f"--pattern: unknown pattern {name!r}; known: {', '.join(PATTERNS)}")
    if size <= 0 or size % PAGE:
        raise ValueError(f"--size: must be a positive multiple of 4K, got {size}")
    rng = np.random.Generator(np.random.PCG64(seed))
    pages = size // PAGE
    first = np.arange(pages, dtype=np.int64) * PAGE

    def stores(n):
        return rng.random(n) < write_ratio

    if name == "uniform":
        off = rng.integers(0, size, accesses, dtype=np.int64)
        return off, stores(accesses)
    if name == "seqwrite":
        off = np.arange(0, size, PAGE // 8, dtype=np.int64)
        return off, np.ones(off.size, bool)
    if name == "readall_writealt":
        off = np.concatenate([first, first[::2]])
        return off, np.r_[np.zeros(pages, bool), np.ones(first[::2].size, bool)]
    if name == "zipf":
        perm = rng.permutation(pages).astype(np.int64)
        pg = zipf_pages(rng, accesses, zipf_cdf(pages, 1.2), perm)
        off = pg * PAGE + rng.integers(0, PAGE, accesses, dtype=np.int64)
        return off, stores(accesses)
    if name == "strided":
        off = (np.arange(accesses, dtype=np.int64) * 3 * PAGE) % size
        return off, stores(accesses)
    if name == "reverse":
        off = first[::-1] + rng.integers(0, PAGE, pages, dtype=np.int64)
        return off, stores(pages)
    if name == "sparse":
        blocks = size // (64 << 10)
        chosen = np.sort(rng.choice(blocks, max(1, blocks // 4), replace=False)).astype(np.int64)
        off = chosen[rng.integers(0, chosen.size, accesses)] * (64 << 10) + rng.integers(0, 64 << 10, accesses)
        return off.astype(np.int64), stores(accesses)
    if name == "write_then_read":
        off = np.concatenate([first[::4], first])
        return off, np.r_[np.ones(first[::4].size, bool), np.zeros(pages, bool)]
    # read_then_write
    off = np.repeat(first, 2)
    return off, np.tile(np.array([False, True]), pages)


def anon_steps(offsets: np.ndarray, is_write: np.ndarray, length: int, advice: str | None) -> list[Step]:
    """One private anonymous region, an optional madvise over all of it, the accesses, a report."""
    steps = [Step("map", 0, kind="anon", length=length)]
    if advice:
        steps.append(Step("madvise", 0, 0, length, advice=advice))
    steps += [Step("access", 0, offsets=offsets, is_write=is_write), Step("report", 0)]
    return steps


def scenario_steps(name: str, size: int, seed: int, advice: str | None, file_path: str,
                   layout: list | None = None) -> list[Step]:
    """The steps of a named scenario (SCENARIOS); file scenarios map `file_path`, which the
    caller creates (FILE_SIZE bytes) and caches before the replay; `layout` (file_large_*):
    the host's page-cache folios of it, [(index, nr_pages)], which the model's cache copies."""
    if name not in SCENARIOS:
        raise ValueError(f"--scenario: unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    rng = np.random.Generator(np.random.PCG64(seed))
    pages = np.arange(size // PAGE, dtype=np.int64) * PAGE
    mad = [Step("madvise", 0, 0, size, advice=advice)] if advice else []

    def acc(off, wr):
        return Step("access", 0, offsets=np.asarray(off, np.int64), is_write=np.asarray(wr, bool))

    if name.startswith("file"):
        fpages = np.arange(FILE_SIZE // PAGE, dtype=np.int64) * PAGE
        # MADV_NOHUGEPAGE: no PMD mapping of a large page-cache folio (mm/memory.c
        # do_set_pmd() refuses when vma_thp_disabled()), so only fault-around is compared.
        steps = [Step("map", 0, kind="file", length=FILE_SIZE, path=file_path, layout=layout),
                 Step("madvise", 0, 0, FILE_SIZE, advice="nohugepage")]
        if name.endswith("seq"):
            steps.append(acc(fpages, np.zeros(fpages.size, bool)))
        else:
            stride = fpages[::9]
            steps += [acc(stride, np.zeros(stride.size, bool)), acc(fpages, np.zeros(fpages.size, bool))]
        return steps + [Step("report", 0)]
    if name == "fork_cow":
        off, wr = pattern("uniform", size, size // PAGE, seed, 0.5)
        return [Step("map", 0, length=size), *mad, acc(pages, np.ones(pages.size, bool)), Step("fork"),
                acc(pages, np.zeros(pages.size, bool)), acc(off, wr), Step("report", 0)]
    if name == "shmem_fork":
        half = pages[: pages.size // 2]
        return [Step("map", 0, kind="shared", length=size), acc(half, np.ones(half.size, bool)), Step("fork"),
                acc(pages, rng.random(pages.size) < 0.5), Step("report", 0)]
    if name == "dontneed":
        steps = [Step("map", 0, length=size), *mad, acc(pages, np.ones(pages.size, bool))]
        for lo, n in ((0, PMD), (PMD + 5 * PAGE, 7 * PAGE), (size - 20 * PAGE, 3 * PAGE)):
            if lo + n <= size:
                steps.append(Step("madvise", 0, lo, n, advice="dontneed"))
        off, wr = pattern("uniform", size, size // PAGE * 2, seed, 0.5)
        return steps + [acc(off, wr), Step("report", 0)]
    # mprotect
    steps = [Step("map", 0, length=size), *mad, acc(pages, np.ones(pages.size, bool))]
    for lo, n in ((5 * PAGE, 3 * PAGE), (PMD + 17 * PAGE, 40 * PAGE)):
        if lo + n <= size:
            steps += [Step("mprotect", 0, lo, n, prot="r"), Step("mprotect", 0, lo, n, prot="rw")]
    return steps + [acc(pages, np.ones(pages.size, bool)), Step("report", 0)]


FILE_SIZE = (4 << 20) + 3 * PAGE


# -- the model's side -------------------------------------------------------------------

MODEL_BASE = 0x700000000000  # PMD-aligned; regions 64 GiB apart
_TINY_TLB = {"name": "oracle", "replacement": "lru", "coalesce_contig": True,
             "l1": {"entries": 4, "ways": 4, "latency": 1}, "l2": {"entries": 16, "ways": 4, "latency": 3},
             "walk_cache": {"entries": 4, "ways": 2, "latency": 1}, "l1d": {"size": "512", "ways": 2, "latency": 4},
             "l2d": {"size": "2K", "ways": 4, "latency": 11}, "line_size": 64, "mem_latency": 100}


def run_model(steps: list[Step], policy, *, memory_size: str = "4G") -> dict:
    """Replay steps in the model with `policy` (a system.Policy); returns what the harness
    prints: {"access": [faults per access step], "report": {rid: metrics}}."""
    class FaultRunner(Runner):
        """simulate()'s phase interpreter without the TLB model: only the fault path runs."""

        def _run_tlb(self, *args):
            return None

    system = System("4K", memory_size, policy=policy)
    runner = FaultRunner(system, PAGE, _TINY_TLB)
    advice = {"hugepage": MADV_HUGEPAGE, "nohugepage": MADV_NOHUGEPAGE, "dontneed": MADV_DONTNEED}
    prots = {"r": PROT_READ, "rw": PROT_READ | PROT_WRITE, "none": PROT_NONE}
    out = {"access": [], "report": {}}
    for st in steps:
        proc = runner.proc
        name = f"r{st.rid}"
        if st.op == "map":
            addr = MODEL_BASE + st.rid * (64 << 30)
            fd, flags = -1, MAP_FIXED_NOREPLACE
            if st.kind == "file":
                f = system.files.get(st.path)
                if f is None and st.layout is None:
                    # a tmpfs file (huge=never): order-0 page-cache folios, all cached
                    f = system.create_file(st.path, st.length, large_folios=False)
                    filemap_read(system, f, 0, f.size)
                elif f is None:
                    f = system.create_file(st.path, st.length)
                    cache_folios(system, f, st.layout)
                fd, flags = proc.open(st.path), flags | MAP_PRIVATE
            else:
                flags |= MAP_ANONYMOUS | (MAP_SHARED if st.kind == "shared" else MAP_PRIVATE)
            got = proc.mmap(addr, st.length, PROT_READ | PROT_WRITE, flags, fd, 0)
            if got != addr:
                raise RuntimeError(f"model mmap of region {st.rid} returned {got}")
            runner.regions[name] = (addr, st.length)
        elif st.op in ("madvise", "mprotect"):
            addr = runner.regions[name][0] + st.offset
            ret = (proc.madvise(addr, st.length, advice[st.advice]) if st.op == "madvise"
                   else proc.mprotect(addr, st.length, prots[st.prot]))
            if ret:
                raise RuntimeError(f"model {st.op} of region {st.rid} failed: {ret}")
        elif st.op == "access":
            before = system.stats.events["faults"]
            runner.run(Access(name, st.offsets, st.is_write))
            out["access"].append(int(system.stats.events["faults"] - before))
        elif st.op == "fork":
            runner.run(Fork())
        elif st.op == "layout":
            continue  # a host-side probe
        elif st.op == "report":
            addr, length = runner.regions[name]
            out["report"][st.rid] = region_metrics(runner.proc.mm, addr, length)
        else:
            raise ValueError(f"unknown step {st.op!r}")
    return out


def region_metrics(mm, addr: int, length: int) -> dict:
    """smaps-style bytes and the folios mapped in [addr, addr + length) of a model mm."""
    system = mm.system
    n = length // PAGE
    pfn, _, heads = mm.pgtable.read_ptes(addr, n)
    present = pfn >= 0
    zero = system.zero_folio.pfn if system.zero_folio is not None else -2
    hz = huge_memory.huge_zero_folio(system, alloc=False)
    hzero = hz.pfn if hz is not None else -2
    is_zero, is_hzero = present & (heads == zero), present & (heads == hzero)
    real = present & ~is_zero & ~is_hzero
    in_block = np.zeros(n, bool)
    for a in mm.pgtable.pmd_blocks_in(addr, addr + length):
        in_block[(a - addr) // PAGE:(a - addr) // PAGE + PMD // PAGE] = True
    private = np.zeros(n, bool)
    for vma in mm.vmas.find_intersection(addr, addr + length):
        if not vma.flags & VM_SHARED:
            lo, hi = max(vma.start, addr), min(vma.end, addr + length)
            private[(lo - addr) // PAGE:(hi - addr) // PAGE] = True
    anon_page = np.zeros(n, bool)
    folios = Counter()
    for h in np.unique(heads[real]).tolist():
        folio = system.folios[h]
        folios[folio.nr_pages * PAGE] += 1
        if folio.anon:
            anon_page |= real & (heads == h) & private
    return {"rss": int(real.sum()) * PAGE, "anon": int(anon_page.sum()) * PAGE,
            "anonhuge": int((anon_page & in_block).sum()) * PAGE,
            "folios": {"pages": int(present.sum()), "zero": int(is_zero.sum()), "hugezero": int(is_hzero.sum()),
                       "sizes": dict(sorted(folios.items()))}}
