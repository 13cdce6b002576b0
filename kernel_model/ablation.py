"""gap_attribution: the walk-cycle gap between two kernel page sizes, split into its causes.

The thread credits a 64K (or 16K) kernel's lower translation cost to several things at
once. This module runs one access stream on two systems, A (the cell's own kernel, say
4K) and B (``ablation.against``, say 64K), then replays the stream through the TLB model
once per subset S of five *features*, each taken from B when it is in S and from A
otherwise:

    reach       the base size of a TLB entry (the key addr >> base_shift)
    contpte     entries larger than a base page: folded contiguous runs and blocks
                (a translation whose leaf_shift exceeds its base_shift)
    levels      how many descriptors a walk reads (4 on a 48-bit 4K kernel, 3 on 64K)
    walk_cache  what the walk cache files each table descriptor under, so which walks
                share an entry (a PMD-level entry covers 2M on 4K, 512M on 64K)
    pt_lines    the physical layout: where each descriptor and each data line sits in
                L1D/L2D, so the cache lines page tables take from data

With no feature from B the run is exactly A's own cell, with all five exactly B's
(simulate_ablation checks both, so every cell proves its end points). v(S) is the
walk_cycles of subset S, and the Shapley value of each feature splits v(all) - v(none)
exactly (shapley(): Fractions, the efficiency property).

Mixing two systems' walks needs one rule for levels one side has and the other lacks:
descriptor reads are aligned deepest first (the leaf read with the leaf read). The reads
are those of the `levels` source; read k at depth d (0 = the last read) takes its cache
line from the `pt_lines` source's read at depth d and its walk-cache key from the
`walk_cache` source's, and where that source has no read at depth d (a 3-level B under a
4-level A), the `levels` source's own descriptor address with bit 62 set: a line or key
that cannot equal any real one, so it neither hits nor evicts what it should not.
Data lines and descriptor lines always come from one system (pt_lines), because one
system's page-table pages may be the other's data pages.

The stream is recorded per chunk as it reaches the TLB, with each distinct 4K page's
translation at that moment (a translation is constant over a 4K page on every granule),
so a cell holds 16 bytes per access per system (the address and its page's row) plus the
pages' walks: unlike simulate(), it is not bounded by the footprint, since the 32 replays
need both systems' whole stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from .attribution import ALL, FEATURES, NR_SUBSETS, metric_name
from .simulate import Runner, collector_paused, release, run_workload
from .units import parse_page_size

TAG = np.int64(1) << np.int64(62)  # marks an address from the other system (see the module docstring)
GRANULE_SHIFT = 12  # the finest page any kernel has: a translation is constant over it


@dataclass
class Walks:
    """One system's translation of each distinct 4K page of a chunk: the Lookup fields
    (kernel_model/hw_walk.py) per page, desc top first, -1 below the walk."""

    present: np.ndarray
    pfn: np.ndarray
    base_shift: np.ndarray
    leaf_shift: np.ndarray
    desc: np.ndarray

    @property
    def reads(self) -> np.ndarray:
        """Descriptors each page's walk reads (a prefix of desc's columns)."""
        return (self.desc >= 0).sum(axis=1)


@dataclass
class Chunk:
    addrs: np.ndarray      # int64[n]: the accesses, in order
    inverse: np.ndarray    # intp[n]: each access's row in walks
    walks: Walks


FLUSH = None  # a log entry: the core switched address space (TLBs and walk cache emptied)


class RecordingRunner(Runner):
    """A Runner that also logs what its TLB model sees: each chunk of accesses with the
    walks of its pages in the table's state at that moment, and each address-space switch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log: list = []
        self._table = None

    def _switch_mm(self) -> None:
        super()._switch_mm()
        self.log.append(FLUSH)

    def _walked_table(self, bad, seen):
        self._table = super()._walked_table(bad, seen)
        return self._table

    def _run_tlb(self, chunks, bad, seen) -> None:
        super()._run_tlb(self._recorded(chunks, bad), bad, seen)

    def _recorded(self, chunks, bad):
        from workloads.trace import RecordWindow

        for chunk in chunks:
            addrs = (chunk.decode() if isinstance(chunk, RecordWindow) else chunk)[0]
            if bad.size:
                addrs = addrs[~np.isin(addrs >> self._page_shift, bad)]
            if addrs.size:
                self.log.append(self._walks_of(np.array(addrs, dtype=np.int64)))
            yield chunk

    def _walks_of(self, addrs: np.ndarray) -> Chunk:
        pages, inverse = np.unique(addrs >> GRANULE_SHIFT, return_inverse=True)
        table = self._table
        look = table.hw_lookup if hasattr(table, "hw_lookup") else table.lookup
        lk = look(pages << GRANULE_SHIFT)
        desc = np.ascontiguousarray(lk.desc_addr, dtype=np.int64)
        walks = Walks(np.asarray(lk.present, np.bool_), np.asarray(lk.pfn, np.int64),
                      np.asarray(lk.base_shift, np.int64), np.asarray(lk.leaf_shift, np.int64), desc)
        reads = walks.reads
        if (desc[np.arange(desc.shape[1]) >= reads[:, None]] >= 0).any() or \
                (desc[np.arange(desc.shape[1]) < reads[:, None]] < 0).any():
            raise AssertionError("ablation: a walk's descriptor reads are not a prefix of desc_addr")
        return Chunk(addrs, inverse.astype(np.intp), walks)


def _at_depth(src: Walks, reads_v: np.ndarray, k: int, fallback: np.ndarray) -> np.ndarray:
    """Per page, the address ``src`` read at the depth of read k of a walk of reads_v
    reads (depth 0 = the last read); fallback | TAG where src's walk is not that deep;
    -1 where the walk has no read k."""
    depth = reads_v - 1 - k
    col = src.reads - 1 - depth
    have = col >= 0
    got = np.take_along_axis(src.desc, np.clip(col, 0, src.desc.shape[1] - 1)[:, None], axis=1)[:, 0]
    out = np.where(have, got, fallback | TAG)
    return np.where(k < reads_v, out, -1)


def mix(a: Walks, b: Walks, mask: int) -> tuple:
    """The walks of subset ``mask`` (bit i: FEATURES[i] from b): (Lookup-like fields per
    page, walk-cache keys per page, whether the data layout is b's)."""
    def src(feature):
        return b if mask >> FEATURES.index(feature) & 1 else a

    if not np.array_equal(a.present, b.present):
        raise ValueError("ablation: the two systems disagree on which pages are present; the workload must "
                         "fault the same bytes in on both (no signals, no allocation failures)")
    reach, cont, lev, wc, lay = (src(f) for f in FEATURES)
    base = reach.base_shift
    folded = cont.leaf_shift > cont.base_shift
    leaf = np.where(folded, np.maximum(base, cont.leaf_shift), base)
    reads = lev.reads
    width = max(a.desc.shape[1], b.desc.shape[1])
    desc = np.full((a.present.size, width), -1, np.int64)
    keys = np.full_like(desc, -1)
    for k in range(width):
        own = (lev.desc[:, k] if k < lev.desc.shape[1] else np.full(reads.size, -1, np.int64))
        desc[:, k] = _at_depth(lay, reads, k, own)
        keys[:, k] = _at_depth(wc, reads, k, own)
    fields = SimpleNamespace(present=a.present, pfn=lay.pfn, base_shift=base.astype(np.int8),
                             leaf_shift=leaf.astype(np.int8), desc_addr=desc)
    return fields, keys, lay is b


def replay(log_a: list, log_b: list, tlb_cfg, kps_a: int, kps_b: int, masks=range(NR_SUBSETS)) -> dict:
    """The TLB counts of every subset in ``masks`` over the two recorded runs: {mask: counts}."""
    from collections import Counter

    from .tlb import TlbState, simulate_tlb

    if len(log_a) != len(log_b) or any((x is FLUSH) != (y is FLUSH) for x, y in zip(log_a, log_b)):
        raise ValueError("ablation: the two systems' runs do not have the same access chunks and "
                         "address-space switches; the workload must run the same phases on both")
    states = {m: TlbState(tlb_cfg) for m in masks}
    totals = {m: Counter() for m in masks}
    for x, y in zip(log_a, log_b):
        if x is FLUSH:
            for st in states.values():
                st.flush_tlb()
            continue
        if not np.array_equal(x.addrs, y.addrs):
            raise ValueError("ablation: the two systems' access streams differ; the workload must address "
                             "the same bytes on both (a region's place in the VA may depend on the page size)")
        for m in masks:
            fields, keys, on_b = mix(x.walks, y.walks, m)
            per_access = SimpleNamespace(**{k: v[x.inverse] for k, v in vars(fields).items()})
            counts = simulate_tlb(x.addrs, per_access, tlb_cfg, kernel_page_shift=kps_b if on_b else kps_a,
                                  state=states[m], walk_cache_keys=keys[x.inverse])
            totals[m].update(counts)
    return {m: dict(t) for m, t in totals.items()}


def system_b(cfg: dict) -> dict:
    """The config of system B: cfg with kernel.page_size = ablation.against (the process
    at its kernel's page size on both)."""
    import copy

    against = (cfg.get("ablation") or {}).get("against")
    if against is None:
        raise ValueError("ablation.against: not set; give the kernel page size to compare with (4K, 16K or 64K)")
    parse_page_size(against, what="ablation.against")
    proc = str(cfg.get("process", {}).get("page_size", "kernel"))
    if proc != "kernel":
        raise ValueError(f"process.page_size: {proc!r}; an ablation cell compares two kernels' own page sizes, "
                         "so it must be 'kernel'")
    out = copy.deepcopy(cfg)
    out["kernel"] = dict(out.get("kernel", {}), page_size=against)
    out.pop("ablation", None)
    return out


def simulate_ablation(cfg: dict) -> dict:
    """The cell function of gap_attribution: cfg's own metrics (system A, its kernel) plus
    ablate_walk_cycles_<subset> for all 32 subsets of FEATURES taken from system B
    (kernel.page_size = ablation.against). Raises if the all-A run differs from A's own
    TLB counts or the all-B run from B's: the ablation must reproduce both cells."""
    with collector_paused():
        return _ablate(cfg)


def _ablate(cfg: dict) -> dict:
    cfg_b = system_b(cfg)
    cfg_a = {k: v for k, v in cfg.items() if k != "ablation"}
    run_a = run_workload(cfg_a, runner_cls=RecordingRunner)
    run_b = run_workload(cfg_b, runner_cls=RecordingRunner)
    try:
        counts = replay(run_a.log, run_b.log, run_a.tlb_cfg, run_a.system.kgeom.page_shift,
                        run_b.system.kgeom.page_shift)
        for name, run, mask in (("A", run_a, 0), ("B", run_b, ALL)):
            own = {k: int(v) for k, v in run.tlb.items() if k != "tlb_write_accesses"}  # replays count no writes
            got = {k: int(counts[mask].get(k, 0)) for k in own}
            if got != own:
                diff = {k: (own[k], got[k]) for k in own if own[k] != got[k]}
                raise AssertionError(f"ablation: the all-{name} replay differs from system {name}'s own run: {diff}")
        out = run_a.metrics()
        for m in range(NR_SUBSETS):
            out[metric_name(m)] = int(counts[m].get("walk_cycles", 0))
        return out
    finally:
        release(run_a.system)
        release(run_b.system)
