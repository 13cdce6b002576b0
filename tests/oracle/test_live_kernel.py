"""Differential tests: the model against the running kernel, exact faults and bytes.

Each case replays one seeded pattern or scenario on the host (kernel_model/oracle_harness.c)
and in the model under the config matching the host's THP knobs, and asserts equal minor
faults per replay step, Rss, Anonymous and AnonHugePages of the region (and the folio
sizes mapped there when /proc/kpageflags is readable). Skipped off Linux, without a C
compiler, or when the host cannot show the mode.
"""

import pytest

from kernel_model import oracle
from kernel_model.oracle_scenarios import PATTERNS, PMD, anon_steps, pattern, scenario_steps

SIZE = 8 << 20
ACCESSES = 20_000
SCENARIOS = ("fork_cow", "shmem_fork", "dontneed", "mprotect")


def _check(row):
    k, m = row["kernel"], row["model"]
    assert k["step_faults"] == m["step_faults"], f"{row['label']}: minor faults per step, kernel vs model"
    for key in ("anon", "anonhuge", "rss"):
        assert k[key] == m[key], f"{row['label']}: {key} kernel {k[key]} model {m[key]}"
    if k["folios"] is not None:
        assert k["folios"] == m["folios"], f"{row['label']}: folios kernel {k['folios']} model {m['folios']}"


def _pattern_row(name, host, work, advice, seed=1):
    off, wr = pattern(name, SIZE, ACCESSES, seed, 0.3)
    return oracle.compare(name, anon_steps(off, wr, SIZE, advice), host, advice, work)


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_pattern_thp_off(live, name):
    host, work = live
    _check(_pattern_row(name, host, work, "nohugepage"))


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_pattern_pmd_thp_madvise(pmd_host, name):
    host, work = pmd_host
    row = _pattern_row(name, host, work, "hugepage")
    _check(row)
    assert row["kernel"]["anonhuge"] > 0  # the mode was really PMD THP


@pytest.mark.parametrize("mode", ["nohugepage", "hugepage"])
@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(live, pmd_host, name, mode):
    host, work = pmd_host if mode == "hugepage" else live
    _check(oracle.compare(name, scenario_steps(name, SIZE, 3, mode, ""), host, mode, work))


@pytest.mark.parametrize("name", ["file_seq", "file_strided"])
def test_file_fault_around(live, name):
    host, work = live
    if not oracle.TMPFS.is_dir():
        pytest.skip(f"no tmpfs at {oracle.TMPFS} for an order-0 page cache")
    path = oracle.TMPFS / f"pagesweep-oracle-test-{name}"
    oracle.make_file(path)
    try:
        row = oracle.compare(name, scenario_steps(name, SIZE, 0, None, str(path)), host, "nohugepage", work)
    finally:
        path.unlink()
    _check(row)
    assert row["kernel"]["faults"] < row["kernel"]["rss"] // 4096  # fault-around mapped several pages per fault


@pytest.mark.parametrize("name", ["uniform", "zipf", "seqwrite", "reverse", "sparse"])
def test_pattern_mthp_as_configured(live, name):
    host, work = live
    sizes = [s for s in host["sizes"] if s < PMD and oracle.size_enabled(host, s, None)]
    if not sizes:
        pytest.skip(f"no mTHP size is enabled for plain mappings on this host ({oracle.describe_host(host)})")
    _check(_pattern_row(name, host, work, None))


@pytest.mark.parametrize("name", ["file_large_seq", "file_large_strided"])
def test_file_fault_around_large_folios(live, name):
    """A file on the work directory's filesystem (large folios on ext4 and xfs): the model's
    page cache copies the host's folio layout, then both replay the reads."""
    host, work = live
    path = work / f"large-{name}"
    oracle.make_file(path)
    try:
        layout = oracle.host_file_layout(path, work)
        if layout is None:
            pytest.skip("the host's page-cache folios need readable PFNs (root)")
        row = oracle.compare(name, scenario_steps(name, SIZE, 0, None, str(path), layout), host, "nohugepage",
                             work)
    finally:
        path.unlink()
    _check(row)


@pytest.mark.parametrize("mode", ["nohugepage", "hugepage"])
def test_trace_replay(live, pmd_host, mode):
    """A real program's lackey trace (heap and stack: two regions), replayed on both."""
    from pathlib import Path

    host, work = pmd_host if mode == "hugepage" else live
    trace = Path(__file__).resolve().parents[1] / "data" / "lackey_arrayscan.txt.gz"
    _check(oracle.compare("trace", oracle.trace_steps(str(trace), mode), host, mode, work))


@pytest.mark.parametrize("mode", ["nohugepage", "hugepage"])
@pytest.mark.parametrize("name", ["zipf", "sparse", "uniform"])
def test_trace_workload_cell_equals_the_kernel(live, pmd_host, tmp_path, name, mode):
    """A `workload=trace` cell (simulate(), the sweep's own path) against the kernel replaying
    the same trace in one region: a trace records accesses, not mappings, so the model must
    cover the untouched pages between touched ones with the VMA, as the traced program's
    mmap() did (workload.map_gap); else an mTHP or PMD THP range holding an untouched page
    would not fit the VMA and fault in base pages where the kernel maps a large folio."""
    import numpy as np

    from kernel_model.simulate import simulate
    from tests.golden.cells import compose

    host, work = pmd_host if mode == "hugepage" else live
    off, wr = pattern(name, SIZE, ACCESSES, 3, 0.5)
    off = np.concatenate([[0], off, [SIZE - 1]])            # the region's first and last page
    wr = np.concatenate([[False], wr, [False]])
    rec = np.zeros(off.size, dtype=[("addr", "<i8"), ("is_write", "?")])
    rec["addr"], rec["is_write"] = (1 << 32) + off, wr   # a 2 MiB-aligned region
    path = tmp_path / f"{name}.npy"
    np.save(path, rec)
    kernel = oracle.run_kernel(oracle.trace_steps(str(path), mode), work)
    k_faults = sum(kernel["access"])
    k_anon = sum(r["anon"] for r in kernel["report"].values())
    policy = ("folio.anon=base", f"folio.thp_pmd={'true' if mode == 'hugepage' else 'false'}")
    cell = simulate(compose("kernel=4k", "workload=trace", f"workload.path={path}", *policy))
    assert (cell["faults"], cell["anon_bytes"]) == (k_faults, k_anon)
