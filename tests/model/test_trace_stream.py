"""A trace is one Access phase however it is read: the cell's metrics do not depend on the
chunk size, nor on the file format (lackey text or the converted .npy); and the TLB over
the page table itself (walking only on an L2 TLB miss) counts exactly what it counts over
a full Lookup of every access."""

import numpy as np
import pytest

import workloads
from kernel_model.simulate import Runner, simulate
from kernel_model.system import System
from kernel_model.tlb import TableMemo, TlbConfig, TlbState, simulate_tlb, simulate_tlb_tables
from workloads.phases import TraceAccess
from workloads.trace import convert

CONFIGS = [
    ("kernel=4k", "folio.anon=mthp", "folio.thp_pmd=true"),
    ("kernel=16k", "folio.anon=mthp", "folio.mthp_sizes=[64K,256K,2M]"),
    ("kernel=4k", "process.page_size=64K", "arch.native_pgtable=on_demand"),
    ("kernel=4k", "process.page_size=16K", "arch.native_pgtable=mirror", "tlb=tiny"),
]


def run_chunked(cfg, chunk):
    system = System.from_config(cfg)
    runner = Runner(system, system.process_page_size(cfg["process"]["page_size"]), cfg["tlb"])
    (phase,) = workloads.build(cfg["workload"], seed=0).phases()
    runner.run(TraceAccess(phase.path, chunk=chunk))
    return runner.metrics()


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda o: ",".join(o))
def test_metrics_do_not_depend_on_chunk_size(cell_config, trace_path, overrides):
    cfg = cell_config(*overrides, "workload=trace", f"workload.path={trace_path}", "memory.size=2G")
    want = simulate(cfg)
    assert want["accesses"] == 59102 and want["faults"] > 0
    for chunk in (997, 20000):
        assert run_chunked(cfg, chunk) == want, chunk


@pytest.mark.parametrize("kernel", ["4k", "64k"])
def test_converted_npy_gives_the_text_metrics(cell_config, trace_path, tmp_path, kernel):
    npy = tmp_path / "t.npy"
    convert(trace_path, npy, progress=False)
    text = simulate(cell_config(f"kernel={kernel}", "workload=trace", f"workload.path={trace_path}"))
    binary = simulate(cell_config(f"kernel={kernel}", "workload=trace", f"workload.path={npy}"))
    assert binary == text


def mapped_runner(cell_config, *overrides):
    cfg = cell_config(*overrides, "workload=random", "workload.working_set=8M", "workload.accesses=20000",
                      "memory.size=1G")
    system = System.from_config(cfg)
    runner = Runner(system, system.process_page_size(cfg["process"]["page_size"]), cfg["tlb"])
    for phase in workloads.build(cfg["workload"], seed=0).phases():
        runner.run(phase)
    return runner, cfg


@pytest.mark.parametrize("overrides", [
    ("kernel=4k", "folio.anon=mthp", "folio.thp_pmd=true"),
    ("kernel=16k", "arch=no_contpte"),
    ("kernel=4k", "process.page_size=64K", "arch.native_pgtable=mirror"),
    ("kernel=4k", "process.page_size=16K", "folio.anon=mthp", "arch.native_pgtable=on_demand"),
], ids=lambda o: ",".join(o))
def test_walk_on_miss_equals_lookup_of_every_access(cell_config, overrides):
    runner, cfg = mapped_runner(cell_config, *overrides)
    mm = runner.proc.mm
    (base, length), = runner.regions.values()
    rng = np.random.default_rng(5)
    # mapped and unmapped pages of the region, and addresses far outside any mapping
    addrs = np.concatenate([base + (rng.integers(0, length + (4 << 20), 30000) & ~7),
                            rng.integers(0, 1 << 47, 2000) & ~7])
    tcfg = TlbConfig.from_cfg(cfg["tlb"])
    ks = runner.system.kgeom.page_shift
    if mm.native is not None:
        mm.native.build_spans(np.unique(addrs >> mm.native.span_shift))
        lookup, tables = mm.native.hw_lookup(addrs), mm.native.hw_tables()
    else:
        lookup, tables = mm.pgtable.lookup(addrs), mm.pgtable.hw_tables()
    assert 0 < np.count_nonzero(lookup.present) < addrs.size
    if mm.native is not None and "mirror" in overrides:
        assert mm.native.fallbacks == 0 or len(mm.native.fallback_pages)
    s1, s2 = TlbState(tcfg), TlbState(tcfg)
    for part in np.array_split(addrs, 3):  # state carried across calls as well
        lk = mm.native.hw_lookup(part) if mm.native is not None else mm.pgtable.lookup(part)
        want = simulate_tlb(part, lk, tcfg, kernel_page_shift=ks, state=s1)
        got = simulate_tlb_tables(part, tables, tcfg, kernel_page_shift=ks, state=s2)
        assert got == want
        assert want["walks"] > 0 and want["tlb_not_present"] > 0



@pytest.mark.parametrize("replacement", ["lru", "fifo"])
@pytest.mark.parametrize("data_lines, line_size", [(True, 64), (False, 64), (True, 8192)])
def test_walk_on_miss_equals_lookup_on_repeated_lines(cell_config, replacement, data_lines, line_size):
    """Runs of accesses to one line (which table mode skips after the first, unless its
    page is not present), interleaved with other pages, mapped or not; a line of 8K spans
    two 4K pages, so a repeat of the line is not a repeat of the page."""
    runner, cfg = mapped_runner(cell_config, "kernel=4k", "arch=no_contpte")
    mm = runner.proc.mm
    (base, length), = runner.regions.values()
    rng = np.random.default_rng(7)
    starts = base + (rng.integers(-(1 << 20), length + (1 << 20), 4000) & ~7)
    runs = rng.integers(1, 6, starts.size)
    addrs = np.repeat(starts, runs) + (rng.integers(0, 8, runs.sum()) << 3)
    addrs = addrs[addrs >= 0]
    lk = mm.pgtable.lookup(addrs)
    assert 0 < np.count_nonzero(lk.present) < addrs.size
    tcfg = TlbConfig.from_cfg(dict(cfg["tlb"], replacement=replacement, model_data_lines=data_lines,
                                   line_size=line_size,
                                   l1d=dict(cfg["tlb"]["l1d"], size="256K"), l2d=dict(cfg["tlb"]["l2d"], size="4M")))
    ks = runner.system.kgeom.page_shift
    want = simulate_tlb(addrs, lk, tcfg, kernel_page_shift=ks)
    got = simulate_tlb_tables(addrs, mm.pgtable.hw_tables(), tcfg, kernel_page_shift=ks)
    assert got == want and want["tlb_not_present"] > 0 and want["walks"] > 0

@pytest.mark.parametrize("l1", [{"entries": 48, "ways": 48}, {"entries": 4, "ways": 4}, {"entries": 16, "ways": 4}])
def test_one_memo_for_many_calls_leaves_the_hardware_as_lookup_does(cell_config, l1):
    """Table mode over one TableMemo kept across calls (a small one: pages share its rows)
    counts what a Lookup of every access counts, and leaves every structure's rows (L1 in
    recency order, L2, walk cache, L1D, L2D) exactly as that run does, call after call."""
    runner, cfg = mapped_runner(cell_config, "kernel=4k", "arch=no_contpte")
    mm = runner.proc.mm
    (base, length), = runner.regions.values()
    rng = np.random.default_rng(11)
    hot = base + (rng.integers(0, 64, 40000) << 12) + (rng.integers(0, 512, 40000) << 3)  # locality
    cold = base + (rng.integers(0, length + (1 << 20), 8000) & ~7)  # misses, unmapped pages too
    addrs = np.where(rng.random(40000) < 0.2, np.resize(cold, 40000), hot)
    tcfg = TlbConfig.from_cfg(dict(cfg["tlb"], l1=dict(l1, latency=1)))
    ks = runner.system.kgeom.page_shift
    tables = mm.pgtable.hw_tables()
    memo = TableMemo(tables, tcfg, 64)
    s1, s2 = TlbState(tcfg), TlbState(tcfg)
    for part in np.split(addrs, [3, 10000, 20000, 30000]):  # the first call leaves the L1 part-filled
        want = simulate_tlb(part, mm.pgtable.lookup(part), tcfg, kernel_page_shift=ks, state=s1)
        got = simulate_tlb_tables(part, tables, tcfg, kernel_page_shift=ks, state=s2, memo=memo)
        assert got == want and (part.size == 3 or want["l1_tlb_misses"] > 1000 and want["tlb_not_present"] > 0)
        np.testing.assert_array_equal(s2.arrays.rows, s1.arrays.rows)
    with pytest.raises(ValueError, match="another table or TlbConfig"):
        simulate_tlb_tables(addrs[:10], mm.pgtable.hw_tables(), tcfg, kernel_page_shift=ks, memo=memo)
    with pytest.raises(ValueError, match="another table or TlbConfig"):
        simulate_tlb_tables(addrs[:10], tables, TlbConfig.from_cfg(cfg["tlb"]), kernel_page_shift=ks, memo=memo)


def test_l1_through_local_and_missing_phases_as_lookup_leaves_it(cell_config):
    """Table mode keeps a fully associative LRU L1 as stamps while the stream has locality
    and on its row while it misses (tlb_cache.L1_WINDOW): phases of each, a call cut in
    the middle of one, give a Lookup's counts and leave every structure's rows as it does."""
    from kernel_model.tlb_cache import L1_WINDOW

    runner, cfg = mapped_runner(cell_config, "kernel=4k", "arch=no_contpte")
    mm = runner.proc.mm
    (base, length), = runner.regions.values()
    rng = np.random.default_rng(12)
    n = 5 * L1_WINDOW

    def local():  # 32 pages: hits, past the first two ranks too
        return base + (rng.integers(0, 32, n) << 12) + (rng.integers(0, 512, n) << 3)

    missing = base + (rng.integers(0, length, n) & ~7)  # 2048 pages: the L1 misses most
    addrs = np.concatenate([local(), missing, local(), missing[::-1], local()])
    tcfg = TlbConfig.from_cfg(cfg["tlb"])
    ks = runner.system.kgeom.page_shift
    tables = mm.pgtable.hw_tables()
    memo = TableMemo(tables, tcfg, 4096)
    s1, s2 = TlbState(tcfg), TlbState(tcfg)
    for part in np.split(addrs, [n // 2, 3 * n, 4 * n + 7]):
        want = simulate_tlb(part, mm.pgtable.lookup(part), tcfg, kernel_page_shift=ks, state=s1)
        got = simulate_tlb_tables(part, tables, tcfg, kernel_page_shift=ks, state=s2, memo=memo)
        assert got == want
        np.testing.assert_array_equal(s2.arrays.rows, s1.arrays.rows)
    assert s1.arrays.l1[0, -1] != -1  # full


def test_walk_on_miss_with_native_fallback_pages_and_blocks():
    # A 64K-process native table on a 4K kernel: 2M of 64K folios, one process page turned
    # into a fallback page (4 kernel PTEs cleared in it), a native PMD block (512M folio)
    # and a Linux PMD block elsewhere; every kind of walk, with its descriptors.
    from kernel_model.arch.arm64.native import NativePageTable
    from kernel_model.geometry import geometry
    from kernel_model.pgtable import PageTable

    KB, M, G = 1 << 10, 1 << 20, 1 << 30
    lp = PageTable(geometry("4K"), contpte=True)
    nt = NativePageTable(lp, geometry("64K"), "mirror", contpte=True)
    for i in range(32):
        lp.set_ptes(G + i * 64 * KB, 16 * i, 16, 3, folio_pfn=16 * i, folio_nr=16)
    lp.clear_ptes(G + 2 * 64 * KB + 4 * 4096, 4)
    lp.set_pmd(2 * G, 1 << 17, 3, folio_pfn=1 << 17, folio_nr=512)  # not native-translatable alone
    assert nt.fallback_pages
    rng = np.random.default_rng(1)
    addrs = np.concatenate([G + (rng.integers(0, 4 * M, 20000) & ~7), 2 * G + (rng.integers(0, 4 * M, 5000) & ~7)])
    tcfg = TlbConfig.from_cfg({"name": "t", "replacement": "lru", "coalesce_contig": True,
                               "l1": {"entries": 4, "ways": 4, "latency": 1}, "l2": {"entries": 16, "ways": 2, "latency": 3},
                               "walk_cache": {"entries": 8, "ways": 2, "latency": 1},
                               "l1d": {"size": "4K", "ways": 4, "latency": 4}, "l2d": {"size": "32K", "ways": 8,
                                                                                       "latency": 11},
                               "line_size": 64, "mem_latency": 208})
    look = nt.hw_lookup(addrs)
    assert set(look.base_shift.tolist()) == {12, 16} and not look.present.all()
    want = simulate_tlb(addrs, look, tcfg, kernel_page_shift=12)
    got = simulate_tlb_tables(addrs, nt.hw_tables(), tcfg, kernel_page_shift=12)
    assert got == want and want["walks"] > 1000


def test_text_is_parsed_once_and_its_spool_removed(cell_config, trace_path, tmp_path, monkeypatch):
    import tempfile

    import workloads.trace as wt

    spool_dir = tmp_path / "tmp"
    spool_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool_dir))
    parsed = []
    real = wt.read_lackey
    monkeypatch.setattr(wt, "read_lackey", lambda *a, **k: parsed.append(a) or real(*a, **k))
    cfg = cell_config("kernel=4k", "workload=trace", f"workload.path={trace_path}")
    assert simulate(cfg)["accesses"] == 59102
    assert len(parsed) == 1
    assert list(spool_dir.iterdir()) == []
