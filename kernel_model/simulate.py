"""The cell entry point: one resolved config in, one flat dict of metrics out.

    simulate(cfg) -> {"accesses": ..., "walk_mem_refs": ..., "total_bytes": ...}

It builds a System from the config (the config contract of docs/design.md), starts one process
with the configured personality page size, runs the workload's phases through the
syscall ABI and the fault path, feeds every access stream to the TLB model over the page
table the hardware walks, and reports the metrics of docs/design.md. A pure function of its
input: the same config gives the same dict, serially or in a Ray worker.
"""

from __future__ import annotations

import os
from collections import Counter
from contextlib import contextmanager

import numpy as np

from .access_events import FirstTouch
from .metrics import METRIC_NAMES
from .system import System

TLB_METRICS = ("accesses", "l1_tlb_misses", "l2_tlb_misses", "walks", "walk_mem_refs", "walk_cycles")


def simulate(cfg: dict, *, fault_path: str | None = None) -> dict:
    """Run one cell. `cfg` is the resolved config as plain dicts (OmegaConf.to_container).

    fault_path "reference" takes every fault through handle_mm_fault() one by one instead
    of the batched path (kernel_model/fault_batch.py); None: $PAGESWEEP_FAULT_PATH, else
    "batch". Not part of the config: both give identical results."""
    with collector_paused():
        return _run(cfg, fault_path)


@contextmanager
def collector_paused():
    """Run a cell with the cyclic collector paused, then collect its garbage.

    The model allocates many small long-lived objects (folios, rmap tuples): the cyclic
    collector's generation scans would cost about a quarter of a cell and free nothing
    until the cell ends, so it is paused for the run and the cell's garbage collected
    after it; the caller runs the cell in a function of its own, so that its frame (which
    holds the System) is gone by then. Everything the cell allocated is then in the
    youngest generation (the collector never ran), so collecting that one frees the cell
    without traversing the older generations (the imported modules: numba alone is ~10^5
    objects)."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.collect(0)


def _run(cfg: dict, fault_path: str | None) -> dict:
    if (cfg.get("ablation") or {}).get("against") is not None:
        raise ValueError("ablation: an ablation cell runs with cell_fn=kernel_model.ablation:simulate_ablation "
                         "(conf/experiment/gap_attribution.yaml), not simulate()")
    runner = run_workload(cfg, fault_path)
    try:
        return runner.metrics()
    finally:
        release(runner.system)


def run_workload(cfg: dict, fault_path: str | None = None, runner_cls=None) -> "Runner":
    """The System of ``cfg`` after its workload: every phase run by a ``runner_cls``
    (Runner, or a subclass that observes the run)."""
    import workloads

    system = System.from_config(cfg)
    page_size = system.process_page_size(cfg.get("process", {}).get("page_size", "kernel"))
    workload = workloads.build(_absolute_paths(cfg.get("workload", {})), seed=int(cfg.get("seed", 0)))
    runner = (runner_cls or Runner)(system, page_size, cfg.get("tlb", {}), fault_path=fault_path)
    for phase in workload.phases():
        runner.run(phase)
    return runner


def release(system: System) -> None:
    """Free a finished cell's folios. Each folio's rmap refers to its mm, which refers back
    to the System: a cycle that only the collector's traversal (simulate()'s gc.collect)
    would free, at several times the cost of freeing the folios by reference count here,
    once the dict holding them is emptied (a large cell makes ~10^5 folios)."""
    system.folios.clear()


def _absolute_paths(wcfg: dict) -> dict:
    """workload.path relative to where the user ran the sweep (Hydra may change cwd)."""
    path = wcfg.get("path")
    if path and not os.path.isabs(path):
        base = os.environ.get("PAGESWEEP_ORIG_CWD") or os.getcwd()
        wcfg = dict(wcfg, path=os.path.normpath(os.path.join(base, path)))
    return wcfg


class _Whole:
    """A whole region, for _region_range()."""

    def __init__(self, region: str):
        self.region, self.offset, self.length = region, 0, None


class Runner:
    """Interprets workload phases against one System (see workloads/phases.py)."""

    def __init__(self, system: System, page_size: int, tlb_cfg: dict, *, fault_path: str | None = None):
        from .fault_batch import fault_path as resolve_fault_path
        from .tlb import TlbConfig, TlbState

        self.system = system
        self.page_size = page_size
        self.fault_path = resolve_fault_path(fault_path)  # "batch" or "reference" (handle_mm_fault each)
        self.tlb_cfg = TlbConfig.from_cfg(tlb_cfg)
        # One core's translation hardware for the whole run: the access phases of one
        # process continue where the last left off; a switch to another mm (fork, exec)
        # empties the TLBs and walk cache and keeps the data caches.
        self.tlb_state = TlbState(self.tlb_cfg)
        self.proc = system.execve(page_size=page_size)
        self.regions: dict[str, tuple[int, int]] = {}  # name -> (addr, length), for the current process
        self.tlb = Counter()
        self.signals = Counter()
        self.elf = Counter()
        self.elf_reasons = Counter()
        self.abi = Counter()  # pagemap and userfaultfd probe counts
        self.exited_native_fallbacks = 0
        self.exited_native = Counter()  # native-table stats of mms that were replaced by execve

    # -- phases ---------------------------------------------------------------------
    def run(self, phase) -> None:
        from workloads import phases as ph

        handler = {
            ph.Map: self._map, ph.Access: self._access, ph.CreateFile: self._create_file,
            ph.ReadFile: self._read_file, ph.MmapFile: self._mmap_file, ph.Fork: self._fork,
            ph.Exec: self._exec, ph.LoadElf: self._load_elf, ph.Mlock: self._mlock, ph.Pin: self._pin,
            ph.TouchTail: self._touch_tail, ph.ReadPagemap: self._read_pagemap, ph.UffdFill: self._uffd_fill,
            ph.Spawn: self._spawn, ph.MapRange: self._map_range, ph.CachePages: self._cache_pages,
            ph.TraceAccess: self._trace_access,
        }.get(type(phase))
        if handler is None:
            raise TypeError(f"simulate: unknown workload phase {phase!r}")
        handler(phase)

    def _map(self, phase, head: int = 0) -> None:
        """mmap the region; with a head, `head` bytes before the file offset are mapped too
        and the region starts after them (MapRange)."""
        fd = -1
        if phase.path is not None:
            fd = self.proc.open(phase.path)
            if fd < 0:
                raise FileNotFoundError(f"workload maps {phase.path!r}, which no CreateFile phase created")
        addr = self.proc.mmap(0, phase.length + head, phase.prot, phase.flags, fd, phase.offset - head)
        if addr < 0:
            raise OSError(-addr, f"mmap of region {phase.region!r} ({phase.length} bytes) failed: {os.strerror(-addr)}")
        self.regions[phase.region] = (addr + head, phase.length)

    def _map_range(self, phase) -> None:
        self._map(phase, head=phase.offset % self.proc.page_size if phase.path is not None else 0)

    def _spawn(self, phase) -> None:
        size = self.page_size if phase.page_size is None else phase.page_size
        self.proc = self.system.execve(page_size=size)
        self.regions = {}
        self._switch_mm()

    def _cache_pages(self, phase) -> None:
        """Read each run of 4K pages with readahead off (folio.readahead=0 for the call)."""
        from dataclasses import replace

        from .filemap import filemap_read

        f = self.system.files.get(phase.path)
        if f is None:
            raise FileNotFoundError(f"workload caches {phase.path!r}, which no CreateFile phase created")
        policy = self.system.policy
        self.system.policy = replace(policy, readahead=0)
        try:
            for first, count in phase.runs:
                offset = first * 4096
                filemap_read(self.system, f, offset, max(0, min(count * 4096, f.size - offset)))
        finally:
            self.system.policy = policy

    def _mmap_file(self, phase) -> None:
        from .abi import MAP_PRIVATE, MAP_SHARED

        f = self.system.files.get(phase.path)
        if f is None:
            raise FileNotFoundError(f"workload maps {phase.path!r}, which no CreateFile phase created")
        fd = self.proc.open(phase.path)
        flags = MAP_SHARED if phase.shared else MAP_PRIVATE
        length = max(f.size, 1)
        addr = self.proc.mmap(0, length, phase.prot, flags, fd, 0)
        if addr < 0:
            raise OSError(-addr, f"mmap of {phase.path!r} failed: {os.strerror(-addr)}")
        self.regions[phase.region] = (addr, length)

    def _region_range(self, phase) -> tuple[int, int]:
        if phase.region not in self.regions:
            raise KeyError(f"workload uses region {phase.region!r} before mapping it")
        base, length = self.regions[phase.region]
        n = length - phase.offset if phase.length is None else phase.length
        return base + phase.offset, n

    def _mlock(self, phase) -> None:
        addr, n = self._region_range(phase)
        ret = self.proc.mlock(addr, n)
        if ret < 0:
            raise OSError(-ret, f"mlock of region {phase.region!r}: {os.strerror(-ret)}")

    def _pin(self, phase) -> None:
        from .memory import pin_user_pages

        addr, n = self._region_range(phase)
        ret = pin_user_pages(self.proc.mm, addr, addr + n)
        if ret < 0:
            raise OSError(-ret, f"pinning region {phase.region!r}: {os.strerror(-ret)}")

    def _touch_tail(self, phase) -> None:
        """Read each kernel page between the kernel-page-rounded EOF and the end of the
        region's last process page; count the signals (SIGBUS in `sigbus`, via the fault path)."""
        import signal

        if phase.region not in self.regions:
            raise KeyError(f"workload uses region {phase.region!r} before mapping it")
        base, length = self.regions[phase.region]
        kps, ps = self.system.kernel_page_size, self.page_size
        start = base + -(-length // kps) * kps
        end = base + -(-length // ps) * ps
        for addr in range(start, end, kps):
            ret = self.proc.touch(addr, write=False)
            if ret == signal.SIGSEGV:
                self.signals["sigsegv"] += 1
            elif ret == signal.SIGBUS:
                self.signals["sigbus_accesses"] += 1
            self.signals["tail_touches"] += 1

    def _read_pagemap(self, phase) -> None:
        """/proc/self/pagemap over the region, one entry per process page (pagemap.py
        counts the entries whose PFN is in kernel pages of another size)."""
        from .pagemap import PM_PRESENT

        addr, length = self._region_range(_Whole(phase.region))
        entries = self.proc.read_pagemap(self.proc.pid, addr, length // self.page_size)
        if isinstance(entries, int):
            raise OSError(-entries, f"reading pagemap of region {phase.region!r}: {os.strerror(-entries)}")
        self.abi["pagemap_entries"] += len(entries)
        self.abi["pagemap_present"] += sum(1 for e in entries if e & PM_PRESENT)

    def _uffd_fill(self, phase) -> None:
        """Register the region (MISSING) and fill it by UFFDIO_COPY, one process page each."""
        addr, length = self._region_range(_Whole(phase.region))
        fd = self.proc.userfaultfd()
        ret = self.proc.uffdio_register(fd, addr, length)
        if ret < 0:
            raise OSError(-ret, f"UFFDIO_REGISTER of region {phase.region!r}: {os.strerror(-ret)}")
        ps, kps = self.page_size, self.system.kernel_page_size
        for a in range(addr, addr + length - length % ps, ps):
            ret = self.proc.uffdio_copy(fd, a, bytes(ps), ps)
            if ret < 0:
                raise OSError(-ret, f"UFFDIO_COPY at {a:#x}: {os.strerror(-ret)}")
            self.abi["uffd_copies"] += 1
            self.abi["uffd_kernel_pages"] += ps // kps

    def _create_file(self, phase) -> None:
        self.system.create_file(phase.path, phase.size, large_folios=phase.large_folios)

    def _read_file(self, phase) -> None:
        from .filemap import filemap_read

        f = self.system.files.get(phase.path)
        if f is None:
            raise FileNotFoundError(f"workload reads {phase.path!r}, which no CreateFile phase created")
        length = f.size - phase.offset if phase.length is None else phase.length
        filemap_read(self.system, f, phase.offset, max(0, length))

    def _fork(self, phase) -> None:
        self.proc = self.proc.fork()
        self._switch_mm()

    def _exec(self, phase) -> None:
        self._account_exit(self.proc.mm)
        size = self.page_size if phase.page_size is None else phase.page_size
        self.proc.execve(page_size=size)
        self.regions = {}
        self._switch_mm()

    def _load_elf(self, phase) -> None:
        from .binfmt_elf import check_elf

        result = check_elf(phase.path, self.page_size)
        self.elf["elf_files"] += 1
        self.elf["elf_ok" if result.ok else "elf_failed"] += 1
        if not result.ok:
            self.elf_reasons[result.rule] += 1

    def _account_exit(self, mm) -> None:
        if mm.native is not None:
            self.exited_native_fallbacks += mm.native.fallbacks
            self.exited_native.update(mm.native.stats)

    def _switch_mm(self) -> None:
        """The core now runs another address space: its TLBs and walk cache are emptied."""
        self.tlb_state.flush_tlb()

    # -- accesses -------------------------------------------------------------------
    def _access(self, phase) -> None:
        if len(phase) == 0:
            return
        if phase.region is None:
            addrs = phase.offsets
            self._check_va(addrs)
        else:
            if phase.region not in self.regions:
                raise KeyError(f"workload accesses region {phase.region!r} before mapping it")
            base, length = self.regions[phase.region]
            if int(phase.offsets.max()) >= length or int(phase.offsets.min()) < 0:
                raise ValueError(f"workload accesses region {phase.region!r} outside its {length} bytes")
            addrs = phase.offsets + base
        seen = FirstTouch(self._page_shift)
        ev = seen.events(addrs, phase.is_write)
        if phase.region is None:
            self._map_trace_pages(seen.pages())
        bad = self._fault_in(addrs[ev], phase.is_write[ev])
        self._run_tlb([(addrs, phase.is_write)], bad, seen)

    def _trace_access(self, phase) -> None:
        """A whole recorded trace as ONE Access phase (region None), read twice in bounded
        chunks (lackey text is parsed once: workloads.trace.two_passes spools it): pass 1 finds each page's fault events (first touch, first write) over the
        whole trace; then every page it touches is mapped, the events are faulted in trace
        order, and pass 2 runs the TLB over the table as the faults left it. So a trace gives
        the same result as one Access phase of all its accesses, whatever the chunk size;
        what outlives a chunk is proportional to the footprint (the pages, <= 2 events each)."""
        from workloads.trace import RecordWindow, two_passes

        seen = FirstTouch(self._page_shift)
        ev_addrs, ev_writes = [], []
        # compact record chunks come undecoded: the compiled passes read their bytes
        with two_passes(phase.path, chunk=phase.chunk, raw=True) as (first, again):
            for chunk in first:
                if isinstance(chunk, RecordWindow):
                    ev, bad = seen.record_events(chunk.raw)
                    if bad >= 0:
                        chunk.refuse(bad)
                    if seen.negative or seen.hi_page >= self._va_pages:
                        self._check_va(chunk.decode()[0])
                    addrs, is_write = chunk.decode_at(ev)
                    ev = slice(None)
                else:
                    addrs, is_write = chunk
                    ev = seen.events(addrs, is_write)
                    if seen.negative or seen.hi_page >= self._va_pages:
                        self._check_va(addrs)
                ev_addrs.append(addrs[ev])
                ev_writes.append(is_write[ev])
            if not ev_addrs or not sum(a.size for a in ev_addrs):
                return
            self._map_trace_pages(seen.pages(), phase.map_gap)
            bad = self._fault_in(np.concatenate(ev_addrs), np.concatenate(ev_writes))
            self._run_tlb(again(), bad, seen)

    @property
    def _page_shift(self) -> int:
        return self.page_size.bit_length() - 1

    def _check_va(self, addrs: np.ndarray) -> None:
        limit = 1 << self.system.va_bits
        if addrs.size and (int(addrs.max()) >= limit or int(addrs.min()) < 0):
            raise ValueError(f"trace address {int(addrs.max()):#x} does not fit the {self.system.va_bits}-bit VA "
                             f"(kernel.va_bits)")

    @property
    def _va_pages(self) -> int:
        """Process pages in the VA: a page number at or above it lies outside."""
        return (1 << self.system.va_bits) >> self._page_shift

    def _map_trace_pages(self, pages: np.ndarray, map_gap: int = 0) -> None:
        """Cover every process page a trace touches (`pages`: sorted page numbers) with
        anonymous read-write memory; pages at most `map_gap` bytes apart (the untouched
        bytes between them) are covered by one mapping, gap included."""
        from .abi import MAP_ANONYMOUS, MAP_FIXED_NOREPLACE, MAP_PRIVATE, PROT_READ, PROT_WRITE

        ps = self.page_size
        brk = np.flatnonzero(np.diff(pages) > 1 + map_gap // ps) + 1
        vmas = self.proc.mm.vmas
        for run in np.split(pages, brk):
            start, end = int(run[0]) * ps, (int(run[-1]) + 1) * ps
            a = start
            for vma in vmas.find_intersection(start, end) + [None]:
                gap_end = end if vma is None else vma.start
                if gap_end > a:
                    ret = self.proc.mmap(a, gap_end - a, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE)
                    if ret < 0:
                        raise OSError(-ret, f"mapping trace range {a:#x}-{gap_end:#x}: {os.strerror(-ret)}")
                if vma is not None:
                    a = max(a, vma.end)

    def _fault_in(self, addrs: np.ndarray, is_write: np.ndarray) -> np.ndarray:
        """Take the faults of the event accesses addrs/is_write in order: each process page's
        first touch, and its first write after a read (the write-protect fault on the zero
        page or a COW page), as FirstTouch finds them over the whole stream, so these are
        exactly the faults the stream takes. Returns the sorted pages that raised a signal."""
        from .fault_batch import fault_in
        from .memory import VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV

        rets = fault_in(self.proc.mm, addrs, is_write, self.fault_path)
        sigbus = (rets & VM_FAULT_SIGBUS) != 0
        sigsegv = ~sigbus & ((rets & VM_FAULT_SIGSEGV) != 0)
        self.signals["sigbus_accesses"] += int(sigbus.sum())
        self.signals["sigsegv"] += int(sigsegv.sum())
        return np.unique(addrs[sigbus | sigsegv] >> self._page_shift)

    def _run_tlb(self, chunks, bad: np.ndarray, seen) -> None:
        """The TLB over the stream (chunks of (addrs, is_write)), skipping the accesses to
        pages that raised a signal; the hardware walks the table in its current state, only
        on an L2 TLB miss (tlb.simulate_tlb_tables)."""
        from workloads.trace import RecordWindow

        from .tlb import TableMemo, simulate_tlb_records, simulate_tlb_tables

        tables = self._walked_table(bad, seen).hw_tables()
        kps = self.system.kgeom.page_shift
        # one memo for every chunk: the table does not change during the stream
        memo = TableMemo(tables, self.tlb_cfg, 16 * (len(seen) << (self._page_shift - kps)))
        for chunk in chunks:
            if isinstance(chunk, RecordWindow) and not bad.size:  # validated by pass 1
                counts = simulate_tlb_records(chunk.raw, tables, self.tlb_cfg, kernel_page_shift=kps,
                                              state=self.tlb_state, memo=memo)
            else:
                addrs, is_write = chunk.decode() if isinstance(chunk, RecordWindow) else chunk
                if bad.size:
                    ok = ~np.isin(addrs >> self._page_shift, bad)
                    addrs, is_write = addrs[ok], is_write[ok]
                if addrs.size == 0:
                    continue
                counts = simulate_tlb_tables(addrs, tables, self.tlb_cfg, is_write=is_write,
                                             kernel_page_shift=kps, state=self.tlb_state, memo=memo)
            for k, v in counts.items():
                self.tlb[k] += int(v)

    def _walked_table(self, bad: np.ndarray, seen):
        """The table the MMU walks for this stream: the native table (its spans over the
        touched pages built) when the process has one, else the Linux table."""
        mm = self.proc.mm
        if mm.native is None:
            return mm.pgtable
        pages = seen.pages()
        if bad.size:
            pages = pages[~np.isin(pages, bad)]
        mm.native.build_spans(np.unique(pages >> (mm.native.span_shift - self._page_shift)))
        return mm.native

    # -- results ----------------------------------------------------------------------
    def metrics(self) -> dict:
        from .filemap import pagecache_metrics

        system = self.system
        mms = [p.mm for p in system.processes.values() if getattr(p, "mm", None) is not None]
        pt_linux = sum(mm.pgtable.bytes for mm in mms)
        pt_native = sum(mm.native.bytes for mm in mms if mm.native is not None)
        native_fallbacks = self.exited_native_fallbacks + sum(mm.native.fallbacks for mm in mms if mm.native is not None)
        pc = pagecache_metrics(system)
        alloc = system.page_alloc.stats
        ev = system.stats.events
        out = {k: 0 for k in METRIC_NAMES}
        out.update({k: int(v) for k, v in sorted(self.tlb.items())})
        out.update(
            faults=int(ev["faults"]),
            pgtable_bytes_linux=int(pt_linux),
            pgtable_bytes_native=int(pt_native),
            anon_bytes=int(system.anon_bytes),
            pagecache_bytes=int(pc["pagecache_bytes"]),
            padding_bytes=int(system.padding_bytes),
            sigbus=int(ev["sigbus"]),
            native_fallbacks=int(native_fallbacks),
            compaction_migrated_pages=int(alloc["compaction_migrated_pages"]),
            alloc_failures=int(alloc["alloc_failures"]),
            elf_files=int(self.elf["elf_files"]),
            elf_ok=int(self.elf["elf_ok"]),
            elf_failed=int(self.elf["elf_failed"]),
        )
        out["total_bytes"] = (out["anon_bytes"] + out["pagecache_bytes"] + out["pgtable_bytes_linux"]
                              + out["pgtable_bytes_native"] + out["padding_bytes"])
        out["pagemap_pfn_unit_mismatch"] = int(ev["pagemap_pfn_unit_mismatch"])
        # Extras: event counters and folio orders, prefixed so they never clash with the contract.
        for k, v in sorted(ev.items()):
            if k not in out:
                out[f"ev_{k}"] = int(v)
        for order, n in sorted(system.stats.folios_by_order.items()):
            out[f"anon_folios_order_{order}"] = int(n)
        for k, v in pc.items():
            if k not in out:
                out[k] = int(v)
        native = Counter(self.exited_native)
        for mm in mms:
            if mm.native is not None:
                native.update(mm.native.stats)
        for k in ("native_rebuilds", "native_invalidations", "native_reclaimed_bytes"):
            out[k] = int(native[k])
        out["sigsegv"] = int(self.signals["sigsegv"])
        out["tail_touches"] = int(self.signals["tail_touches"])
        for k in ("pagemap_entries", "pagemap_present", "uffd_copies", "uffd_kernel_pages"):
            out[k] = int(self.abi[k])
        for rule, n in sorted(self.elf_reasons.items()):
            out[f"elf_failed_{rule}"] = int(n)
        return out
