"""The batched fault path (kernel_model/fault_batch.py) is a pure optimisation of the
per-fault path: every cell gives the same metrics through both, and the same model state
(page tables entry by entry, folios and their rmap, the buddy allocator's free lists)."""

from contextlib import contextmanager

import numpy as np
import pytest

import kernel_model.fault_batch as fb
import workloads
from kernel_model.access_events import FirstTouch
from kernel_model.fault_batch import fault_in, fault_path
from kernel_model.page_alloc import PageAllocator
from kernel_model.simulate import Runner
from kernel_model.system import System
from workloads.phases import MAP_ANONYMOUS, MAP_PRIVATE, Access, Fork, Map

SMALL = ("workload.working_set=8M", "workload.accesses=30000", "memory.size=1G")
PAGE_SIZES = {
    "4k": ("kernel=4k",),
    "4k_p16k": ("kernel=4k", "process.page_size=16K"),
    "4k_p64k_mirror": ("kernel=4k", "process.page_size=64K", "arch.native_pgtable=mirror"),
    "16k": ("kernel=16k", "folio.mthp_sizes=[64K,256K,2M]"),
    "16k_p64k_mirror": ("kernel=16k", "process.page_size=64K", "arch.native_pgtable=mirror",
                        "folio.mthp_sizes=[64K,256K,2M]"),
    "64k": ("kernel=64k", "folio.mthp_sizes=[2M]"),
}
FOLIOS = ("base", "mthp", "mthp_only")


def table_state(pt) -> dict:
    """A page table's content and its tables' physical addresses, in a comparable form."""
    rows = {t: (int(pt._leaf_phys[s]), pt._pfn[s].tolist(), pt._prot[s].tolist(), pt._folio[s].tolist(),
                pt._cont[s].tolist(), int(pt._nr_present[s])) for t, s in pt._leaf.items()}
    return {"leaf_order": list(pt._leaf), "leaf": rows, "upper": [list(u.items()) for u in pt._upper],
            "blocks": [sorted(b.items()) for b in pt._blocks], "stats": dict(pt.stats)}


def model_state(system: System) -> dict:
    pa = system.page_alloc
    heads = np.flatnonzero(pa.state)
    mms = [p.mm for p in system.processes.values() if getattr(p, "mm", None) is not None]
    mm_no = {id(mm): i for i, mm in enumerate(mms)}
    return {
        "folios": [(pfn, f.order, f.anon, f.mapcount, f.pincount, f.mlock_count, f.padding,
                    [(mm_no.get(id(m)), a, first, nr) for m, a, first, nr in f.rmap])
                   for pfn, f in system.folios.items()],
        "mem_map_head": system.mem_map_head.tolist(),
        "buddy": (heads.tolist(), pa.state[heads].tolist(), pa.order_of[heads].tolist(), pa._nr_free.tolist(),
                  pa._block_free.tolist(), pa._bm.tolist(), pa.stats),
        "events": dict(system.stats.events), "orders": dict(system.stats.folios_by_order),
        "bytes": (system.anon_bytes, system.padding_bytes),
        "tables": [table_state(mm.pgtable) for mm in mms],
        "native": [(table_state(mm.native.table), mm.native.stats, sorted(mm.native._fallback))
                   for mm in mms if mm.native is not None],
    }


def run_cell(cfg: dict, path: str, phases=None):
    system = System.from_config(cfg)
    runner = Runner(system, system.process_page_size(cfg["process"]["page_size"]), cfg["tlb"], fault_path=path)
    for phase in phases if phases is not None else workloads.build(cfg["workload"], seed=0).phases():
        runner.run(phase)
    return runner.metrics(), model_state(system)


@contextmanager
def per_fault_calls():
    """The list of the faults fault_batch hands to handle_mm_fault() one by one."""
    calls = []
    real = fb.handle_mm_fault
    fb.handle_mm_fault = lambda *a: calls.append(a) or real(*a)
    try:
        yield calls
    finally:
        fb.handle_mm_fault = real


def assert_same(cfg: dict, phases=None, *, per_fault=None) -> dict:
    """Both paths give the same metrics and state; per_fault: how many faults the batch
    path may leave to handle_mm_fault() (None: any number)."""
    ref_metrics, ref_state = run_cell(cfg, "reference", phases)
    with per_fault_calls() as calls:
        metrics, state = run_cell(cfg, "batch", phases)
    if per_fault is not None:
        assert len(calls) <= per_fault
    assert metrics == ref_metrics
    for key in ref_state:
        assert state[key] == ref_state[key], f"model state {key!r} differs between the batch and per-fault paths"
    return ref_metrics


@pytest.mark.parametrize("folio", FOLIOS)
@pytest.mark.parametrize("sizes", PAGE_SIZES)
@pytest.mark.parametrize("workload", ("random", "zipf"))
def test_batch_equals_per_fault(cell_config, workload, sizes, folio):
    m = assert_same(cell_config(f"workload={workload}", *SMALL, *PAGE_SIZES[sizes], f"folio.anon={folio}"),
                    per_fault=0)
    assert m["faults"] > 0


@pytest.mark.parametrize("overrides", [
    ("workload=sequential", "folio.anon=mthp", *SMALL),
    ("workload=strided", "kernel=16k", *SMALL),
    ("workload=trace", "kernel=4k", "folio.anon=mthp"),
    ("workload=mixed", "folio.anon=mthp", "workload.accesses=20000", "workload.working_set=8M",
     "workload.nr_small_files=20", "memory.size=1G"),
    ("workload=random", "arch=no_contpte", "folio.anon=mthp", *SMALL),
    # fragmented memory: mTHP allocations fail, compaction runs, the fault falls back
    ("workload=random", "folio.anon=mthp", "memory=fragmented_64k", "workload.working_set=64M",
     "workload.accesses=30000", "memory.size=128M"),
    ("workload=random", "folio.anon=mthp_only", "folio.mthp_sizes=[64K]", "memory=fragmented_64k",
     "workload.working_set=32M", "workload.accesses=30000", "memory.size=1G"),
], ids=lambda o: ",".join(o[:3]))
def test_batch_equals_per_fault_other_workloads(cell_config, overrides):
    m = assert_same(cell_config(*overrides))
    if "memory=fragmented_64k" in overrides and "folio.anon=mthp" in overrides:
        assert m["alloc_failures"] > 0 and m["ev_anon_fault_fallback"] > 0


def test_batch_equals_per_fault_without_zero_page(cell_config):
    cfg = cell_config("workload=random", "folio.anon=mthp", *SMALL)
    cfg["folio"]["zero_page"] = False  # a Policy knob the config schema does not expose
    m = assert_same(cfg)
    assert "ev_zero_page_faults" not in m and m["anon_folios_order_4"] > 0


@pytest.mark.parametrize("folio", FOLIOS)
def test_batch_over_earlier_chunks_and_fork(cell_config, folio):
    """Chunks that meet the zero page, mTHP and writable pages of earlier chunks, a region
    whose size fits no mTHP at its end, and a fork whose child writes to COW-shared folios
    (those faults go through the per-fault path in the middle of the batches)."""
    rng = np.random.default_rng(1)
    size = (4 << 20) + (36 << 10)
    phases = [Map("a", size, 3, MAP_PRIVATE | MAP_ANONYMOUS), Map("b", 1 << 20, 3, MAP_PRIVATE | MAP_ANONYMOUS)]
    for ratio in (0.0, 0.2, 0.9):
        offs = rng.integers(0, size // 8, 5000) * 8
        phases.append(Access("a", offs, rng.random(5000) < ratio))
    phases.append(Fork())
    for region, n in (("a", size), ("b", 1 << 20)):
        offs = rng.integers(0, n // 8, 5000) * 8
        phases.append(Access(region, offs, rng.random(5000) < 0.5))
    m = assert_same(cell_config("kernel=4k", f"folio.anon={folio}", "memory.size=1G"), phases)
    assert m["ev_cow_copies"] > 0


def fault_events(pages, writes, chunk=None):
    """FirstTouch's event indices of a page stream, fed in chunks of `chunk` accesses."""
    seen, out = FirstTouch(12), []
    step = chunk or max(pages.size, 1)
    for i in range(0, pages.size, step):
        out.append(seen.events(pages[i:i + step] << 12, writes[i:i + step]) + i)
    return np.concatenate(out) if out else np.zeros(0, np.int64)


@pytest.mark.parametrize("chunk", [None, 1, 7, 500])
def test_fault_events_are_first_touches_and_first_writes_after_a_read(chunk):
    rng = np.random.default_rng(3)
    for pages in (rng.integers(0, 50, 2000), rng.integers(0, 1 << 30, 300) * 7, np.array([5, 5, 5]),
                  rng.integers(0, 5000, 20000)):  # the last grows the page set past its first size
        writes = rng.random(pages.size) < 0.3
        want, state = [], {}
        for i, (p, w) in enumerate(zip(pages.tolist(), writes.tolist())):
            s = state.get(p)
            if s is None or (s == "r" and w):
                want.append(i)
                state[p] = "w" if w else "r"
        assert fault_events(pages, writes, chunk).tolist() == want


def test_alloc_bulk_gives_the_pfns_of_alloc_and_undoes_a_failed_group():
    orders = [0, 3, 0, 1, 2, 0, 4, 0, 2, 5]
    movable = [True, False, True, True, False, True, True, False, True, True]
    a = PageAllocator(1 << 10, max_order=5, fragmentation=0.3, seed=2)
    b = PageAllocator(1 << 10, max_order=5, fragmentation=0.3, seed=2)
    for _ in range(8):
        want = [a.alloc(o, movable=m, compact=False) for o, m in zip(orders, movable)]
        got, n = b.alloc_bulk(orders, movable, np.arange(len(orders)))
        assert n == len(orders) and got.tolist() == want
    # more max-order blocks than are free: the group that does not fit is undone, nothing counted for it
    before = (b.state.copy(), b._bm.copy(), b._nr_free.copy(), b.stats)
    big = [0] + [5] * (b.nr_free(5) + 1)
    got, n = b.alloc_bulk(big, [True] * len(big), [0] * len(big))
    assert n == 0 and got.size == 0
    assert (b.state == before[0]).all() and (b._bm == before[1]).all() and (b._nr_free == before[2]).all()
    assert b.stats == before[3]
    got, n = b.alloc_bulk([0, 0] + big, [True] * (len(big) + 2), [0, 1] + [2] * len(big))
    assert n == 2 and got.tolist() == [a.alloc(0), a.alloc(0)] and b.stats == a.stats


def test_fault_path_switch(monkeypatch):
    assert fault_path() == "batch"
    monkeypatch.setenv("PAGESWEEP_FAULT_PATH", "reference")
    assert fault_path() == "reference" and fault_path("batch") == "batch"
    monkeypatch.setenv("PAGESWEEP_FAULT_PATH", "fast")
    with pytest.raises(ValueError, match="PAGESWEEP_FAULT_PATH"):
        fault_path()


def test_batch_takes_signals_in_place(cell_config):
    """A fault outside any VMA or against the VMA's protection is SIGSEGV in both paths."""
    from kernel_model.memory import VM_FAULT_SIGSEGV

    cfg = cell_config("kernel=4k", "folio.anon=mthp", "memory.size=1G")
    results = []
    for path in ("reference", "batch"):
        system = System.from_config(cfg)
        runner = Runner(system, 4096, cfg["tlb"], fault_path=path)
        runner.run(Map("a", 1 << 20, 1, MAP_PRIVATE | MAP_ANONYMOUS))  # PROT_READ only
        base = runner.regions["a"][0]
        addrs = np.r_[base + np.arange(0, 1 << 20, 4096), base + (1 << 20) + np.arange(0, 64 << 10, 4096)]
        writes = np.arange(addrs.size) % 3 == 0
        rets = fault_in(runner.proc.mm, addrs.astype(np.int64), writes, path)
        results.append((rets.tolist(), model_state(system)))
        assert ((rets == VM_FAULT_SIGSEGV) == (writes | (addrs >= base + (1 << 20)))).all()
    assert results[0] == results[1]


@pytest.mark.parametrize("folio", FOLIOS)
def test_batch_over_mixed_vmas(cell_config, folio):
    """One batch of faults over VMAs the batch takes differently or not at all: a
    MADV_NOHUGEPAGE range (process order only), a read-only one (writes SIGSEGV), a
    MAP_SHARED anonymous one and an mlocked one (per fault), regions whose ends fit no
    mTHP, and addresses outside every VMA."""
    from kernel_model.abi import (MADV_NOHUGEPAGE, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ,
                                  PROT_WRITE)

    cfg = cell_config("kernel=4k", f"folio.anon={folio}", "memory.size=1G")
    results = []
    for path in ("reference", "batch"):
        rng = np.random.default_rng(7)
        system = System.from_config(cfg)
        proc = system.execve(page_size=4096)
        rw = PROT_READ | PROT_WRITE
        regions = [proc.mmap(0, (2 << 20) + (20 << 10), rw, MAP_PRIVATE | MAP_ANONYMOUS),
                   proc.mmap(0, 1 << 20, rw, MAP_PRIVATE | MAP_ANONYMOUS),
                   proc.mmap(0, 1 << 20, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS),
                   proc.mmap(0, 256 << 10, rw, MAP_SHARED | MAP_ANONYMOUS),
                   proc.mmap(0, 256 << 10, rw, MAP_PRIVATE | MAP_ANONYMOUS)]
        assert proc.madvise(regions[0] + (1 << 20), 1 << 20, MADV_NOHUGEPAGE) == 0
        assert proc.mlock(regions[4], 128 << 10) == 0
        # runs of 500 accesses to one region, interleaved: batches between the per-fault ones
        addrs = np.concatenate([r + rng.integers(0, 1 << 18, (6, 500)) * 8 for r in regions], axis=1).ravel()
        addrs = np.r_[addrs, 4096, 1 << 46]
        writes = rng.random(addrs.size) < 0.4
        idx = fault_events(addrs // 4096, writes)
        with per_fault_calls() as calls:
            rets = fault_in(proc.mm, addrs[idx], writes[idx], path)
        results.append((rets.tolist(), model_state(system)))
    assert results[0] == results[1]
    assert len(calls) < idx.size * 2 // 3  # the batch took a good part of them
    assert any(results[0][0]) and results[0][1]["events"]["faults"] > 500


def test_group_is_unique_with_inverse():
    from kernel_model.pgtable_bulk import group

    rng = np.random.default_rng(5)
    for keys in (rng.integers(100, 400, 1000), rng.integers(0, 1 << 50, 1000), np.zeros(0, np.int64)):
        uniq, inv = group(keys)
        want_uniq, want_inv = np.unique(keys, return_inverse=True)
        assert uniq.tolist() == want_uniq.tolist() and inv.tolist() == want_inv.tolist()
