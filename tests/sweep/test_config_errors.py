"""Every config error exits 2 with one line naming what to fix, before anything runs:
Hydra's own (caught while composing, which Hydra alone reports in several lines with
exit 1, the status of a failed cell) and the value bounds of the validation pass."""

import os
import subprocess
import sys

import pytest

from sweep.schema import MEMORY_SIZE_MAX
from tests.conftest import REPO
from tests.sweep.conftest import write_experiment

HYDRA_ERRORS = [
    ("kernal=4k", "kernal: not in the config; check the spelling (or prefix + to add a new key)"),
    ("workload.accesses=abc", "workload.accesses: Value 'abc' of type 'str' could not be converted to Integer"),
    ("seed=1.5", "seed: Value '1.5' of type 'float' could not be converted to Integer"),
    ("+experiment=nope", "experiment: no config named 'nope'; allowed values: abi_compat, eof_overhang, "
                         "gap_attribution, machine_replay, mthp_gap, native_pgtable, page_size_tradeoff, pagecache_policy"),
]


@pytest.mark.parametrize("override,message", HYDRA_ERRORS, ids=[o for o, _ in HYDRA_ERRORS])
def test_cli_composition_error_exits_2_with_one_line(tmp_path, override, message):
    res = subprocess.run([sys.executable, "-m", "sweep", override, f"results.dir={tmp_path}/results"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (res.returncode, res.stdout, res.stderr.splitlines()) == (2, "", [f"error: {message}"])
    assert list(tmp_path.iterdir()) == []


BAD_VALUES = [
    (("workload.working_set=0",), "workload.working_set: '0' is not allowed; it must be a positive multiple of 4K"),
    (("workload.working_set=6K",), "workload.working_set: '6K' is not allowed; it must be a positive multiple of 4K"),
    (("workload.stride=3",), "workload.stride: '3' is not allowed; it must be a positive multiple of 8"),
    (("memory.size=0",), "memory.size: '0' is too small; it must be at least 288M "
                         "(workload.working_set 256M plus 1/8 for page tables)"),
    (("memory.size=1M", "workload.working_set=64K"),
     "memory.size: '1M' is too small; it must be at least 4M (one max-order block of the 4K kernel)"),
    (("kernel=64k", "memory.size=256M", "workload.working_set=64K"),
     "memory.size: '256M' is too small; it must be at least 512M (one max-order block of the 64K kernel)"),
    (("kernel=16k", "memory.size=64M", "workload.working_set=64M"),
     "memory.size: '64M' is too small; it must be at least 72M (workload.working_set 64M plus 1/8 for page tables)"),
    (("workload=abi_probe", "memory.size=8M"),
     "memory.size: '8M' is too small; it must be at least 9M "
     "(workload.working_set 4M twice plus 1/8 for page tables)"),
    (("ablation.against=32K",), "ablation.against: '32K' is not allowed; allowed values: null, 4K, 16K, 64K"),
    (("ablation.against=4K",), "ablation.against: 4K is the cell's own kernel.page_size; compare with another"),
    (("ablation.against=64K", "process=16k"),
     "process.page_size: '16K'; an ablation cell compares two kernels at their own page sizes, so it must be "
     "kernel"),
    (("memory.size=8T",), "memory.size: '8T' is too large; at most 1T (host memory grows with memory.size: "
                          "about 1.5 MiB per GiB at a 4K kernel)"),
]


@pytest.mark.parametrize("overrides,message", BAD_VALUES, ids=[" ".join(o) for o, _ in BAD_VALUES])
def test_bad_value_exits_2_before_any_cell(sweep_run, results, capsys, overrides, message):
    assert sweep_run(*overrides) == (2, "")
    assert capsys.readouterr().err.splitlines() == [f"error: {message}"]
    assert not results.exists()


def test_memory_size_bounds_are_inclusive(sweep_run, results):
    assert MEMORY_SIZE_MAX == 1 << 40
    for overrides in (("memory.size=1T",), ("kernel=16k", "memory.size=72M", "workload.working_set=64M"),
                      ("kernel=64k", "memory.size=512M", "workload.working_set=64K")):
        code, out = sweep_run(*overrides, "sweep.dry_run=true")
        assert (code, out.splitlines()[0]) == (0, "plan default: 1 cells total, 0 already done, 1 to run")


def test_a_bad_grid_cell_stops_the_plan(sweep_run, conf_dir, results, capsys):
    """One grid value out of bounds: exit 2 before the first cell, nothing written."""
    write_experiment(conf_dir, "big", "# @package _global_\nsweep:\n  grid:\n    memory.size: 8G,2T\n")
    assert sweep_run("+experiment=big") == (2, "")
    assert capsys.readouterr().err.splitlines() == [
        "error: memory.size: '2T' is too large; at most 1T (host memory grows with memory.size: "
        "about 1.5 MiB per GiB at a 4K kernel)"]
    assert not results.exists()


BAD_REPORTS = [
    ("metric: walk_cycle", "report.metric: 'walk_cycle' is not in the metric registry (kernel_model/metrics.py); "
                           "name a metric simulate() returns"),
    ("metric: walk_cycles\n  also: [total_bytes, total_byte]",
     "report.also[1]: 'total_byte' is not in the metric registry (kernel_model/metrics.py); "
     "name a metric simulate() returns"),
    ("metric: walk_cycles\n  better: higher",
     "report.better: 'higher' contradicts the metric registry: walk_cycles is better lower "
     "(kernel_model/metrics.py); drop the key or write lower"),
    ("metric: elf_ok\n  better: lower",
     "report.better: 'lower' contradicts the metric registry: elf_ok is better higher "
     "(kernel_model/metrics.py); drop the key or write higher"),
    ("metric: accesses", "report.metric: accesses is fixed by the workload (better: exact in "
                         "kernel_model/metrics.py); a report ranks by a metric with a better direction"),
    ("better: lower", "report.better: 'lower' given without report.metric; it is that metric's direction"),
    ("metric: faults\n  better: up", "report.better: 'up' is not one of lower, higher"),
]


@pytest.mark.parametrize("node,message", BAD_REPORTS, ids=[n for n, _ in BAD_REPORTS])
def test_a_report_node_contradicting_the_metric_registry_stops_the_sweep(sweep_run, conf_dir, results, capsys,
                                                                        node, message):
    """The report node's metrics and direction are checked against kernel_model/metrics.py
    when the sweep loads its config: exit 2 before any cell, nothing written."""
    write_experiment(conf_dir, "rep", f"# @package _global_\nreport:\n  {node}\n")
    assert sweep_run("+experiment=rep") == (2, "")
    assert capsys.readouterr().err.splitlines() == [f"error: {message}"]
    assert not results.exists()


def test_a_report_direction_agreeing_with_the_registry_or_left_out_is_accepted(sweep_run, conf_dir):
    for node in ("metric: elf_ok\n  better: higher", "metric: walk_cycles", "question: no metric"):
        write_experiment(conf_dir, "rep", f"# @package _global_\nreport:\n  {node}\n")
        code, out = sweep_run("+experiment=rep", "sweep.dry_run=true")
        assert (code, out.splitlines()[0]) == (0, "plan rep: 1 cells total, 0 already done, 1 to run")
