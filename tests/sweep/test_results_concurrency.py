"""One results.dir shared by concurrent sweeps and queries: every cell is computed once,
nothing a live reader may open is deleted, queries never fail or double count because a
run compacted its parts."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from sweep.query import connect, main as query_main
from sweep.results import CellWriter
from tests.conftest import REPO
from tests.sweep.cells import sample_row
from tests.sweep.conftest import write_experiment

# 12 cells: 3 kernel page sizes x 4 seeds
GRID12 = """\
# @package _global_
workload:
  accesses: 1000
sweep:
  grid:
    kernel.page_size: 4K,16K,64K
    seed: range(0,4)
"""


def sweep_proc(conf_dir, results, *overrides, sleep="0.3"):
    """``python -m sweep`` in a subprocess over a copy of conf/ (the stress experiment)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), SWEEP_TEST_SLEEP=sleep)
    return subprocess.Popen(
        [sys.executable, "-m", "sweep", f"--config-dir={conf_dir}", "executor=serial",
         "cell_fn=tests.sweep.cells:slow", f"results.dir={results}", "sweep.progress=false", *overrides],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ok_rows(results):
    return connect(results).sql("select count(*), count(distinct cell_key) from cells "
                                "where status = 'ok'").fetchall()[0]


def test_two_identical_sweeps_compute_each_cell_once(conf_dir, results):
    procs = [sweep_proc(conf_dir, results, "+experiment=tiny") for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert ok_rows(results) == (5, 5)
    # between them the two runs account for every cell exactly once
    runs = connect(results).sql("select cells_ok, cells_done_before + cells_ok + cells_by_others "
                                "from runs").fetchall()
    assert sum(ok for ok, _ in runs) == 5 and [n for _, n in runs] == [5, 5]


def test_sweep_starting_while_another_compacts(sweep_run, results, monkeypatch):
    """A sweep that starts between a run's merged file landing and its parts' unlink."""
    import sweep.results

    w = CellWriter(results, "tiny", "r1", "2026-01-01")
    w.write([sample_row("a")])
    w.write([sample_row("b")])
    real = sweep.results.write_atomic
    started = []

    def write_then_start_a_sweep(table, path, *args, **kwargs):
        real(table, path, *args, **kwargs)
        if path.name == "r1-00000.parquet" and not started:
            started.append(sweep_run("+experiment=tiny", "kernel.page_size=4K"))

    monkeypatch.setattr(sweep.results, "write_atomic", write_then_start_a_sweep)
    w.compact()
    assert started[0][0] == 0
    got = connect(results).sql("select cell_key from cells where cell_key in ('a', 'b') order by 1").fetchall()
    assert got == [("a",), ("b",)]
    assert sorted(p.name for p in w.dir.iterdir()) == ["r1-00000.parquet"]
    assert ok_rows(results) == (4, 4)


COMPACTOR = textwrap.dedent("""
    import os, sys
    from sweep.results import CellWriter
    from tests.sweep.cells import sample_row
    root, stop = sys.argv[1], sys.argv[2]
    i = 0
    while not os.path.exists(stop):
        w = CellWriter(root, "x", f"r{i:05d}", "2026-01-01")
        w.write([sample_row(f"{i}-a")])
        w.write([sample_row(f"{i}-b"), sample_row(f"{i}-c")])
        w.compact()
        i += 1
""")


def test_queries_during_compactions_never_fail_or_double_count(tmp_path, capsys):
    results = tmp_path / "results"
    CellWriter(results, "x", "seed", "2026-01-01").write([sample_row("seed")])
    stop = tmp_path / "stop"
    comp = subprocess.Popen([sys.executable, "-c", COMPACTOR, str(results), str(stop)], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    failures, seen = [], set()
    try:
        deadline = time.monotonic() + 120
        while len(seen) < 25 and time.monotonic() < deadline:
            code = query_main(["select count(*) - count(distinct cell_key) as dup, count(*) as n from cells",
                               "--results", str(results), "--format", "csv"])
            out = capsys.readouterr()
            if code != 0:
                failures.append(out.err)
                continue
            dup, n = map(int, out.out.splitlines()[1].split(","))
            assert dup == 0, f"{n} rows, {dup} counted twice"
            seen.add(n)
    finally:
        stop.touch()
        comp.wait(timeout=60)
    assert failures == []
    assert len(seen) >= 25                     # the store changed under every query


STRESS_CELLS = 12


def test_stress_four_sweeps_and_queries(conf_dir, results, capsys):
    write_experiment(conf_dir, "grid12", GRID12)
    results.mkdir()
    procs = [sweep_proc(conf_dir, results, "+experiment=grid12", sleep="0.15") for _ in range(4)]
    failures, queries = [], 0
    while any(p.poll() is None for p in procs) or queries < 5:
        code = query_main(["select count(*) - count(distinct cell_key) as dup from cells where status = 'ok'",
                           "--results", str(results), "--format", "csv"])
        out = capsys.readouterr()
        queries += 1
        if code != 0 or out.out != "dup\n0\n":
            failures.append((code, out.out, out.err))
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    assert failures == []
    assert all("Traceback" not in err and "warning" not in err for _, err in outs), outs
    assert ok_rows(results) == (STRESS_CELLS, STRESS_CELLS)
    # each run accounts for every cell: done before it started, computed by it, or by another
    runs = connect(results).sql("select status, cells_done_before + cells_ok + cells_by_others, cells_ok "
                                "from runs").fetchall()
    assert [r[:2] for r in runs] == [("finished", STRESS_CELLS)] * 4
    assert sum(r[2] for r in runs) == STRESS_CELLS                  # and each was computed once
    assert connect(results).sql("select count(*) from cells").fetchall() == [(STRESS_CELLS,)]
    # nothing left behind: no claims, no leases, no snapshots, one file per run that computed cells
    state = results / "state"
    assert [p for p in state.rglob("*") if p.is_file() and p.name != "claims.lock"] == []
