"""One results.dir shared by concurrent sweeps and queries: every cell is computed once,
nothing a live reader may open is deleted, queries never fail or double count because a
run compacted its parts."""

import os
import subprocess
import sys
import textwrap
import threading
import time


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
            assert n >= max(seen, default=0), f"{n} rows after {max(seen)}: rows went missing"
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


# ---- claims -----------------------------------------------------------------------

def claims_of(root, run_id, host=None, pid=None):
    """The Claims (and lease) of a run other than the caller's, as another process has them."""
    from sweep.claims import Claims, RunLease

    lease = RunLease(root, run_id)
    lease.info.update(host=host or lease.info["host"], pid=pid or lease.info["pid"])
    return Claims(root, lease), lease


def test_claims_are_exclusive_and_dead_holders_are_taken_over(tmp_path):
    import socket

    from sweep import claims as cl

    root = tmp_path / "results"
    mine, _ = claims_of(root, "mine")
    live, _ = claims_of(root, "live")                     # this very process: alive
    assert live.claim("k1") is None
    assert mine.claim("k1")["run_id"] == "live"
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                            text=True, check=True)
    gone, _ = claims_of(root, "gone", pid=int(exited.stdout))
    assert gone.claim("k2") is None
    assert mine.claim("k2") is None                        # its pid is gone: taken over
    gone.release(["k2"])                                   # no longer its claim: left alone
    assert mine.read("k2")["run_id"] == "mine"
    # another host: alive while its lease is fresh, dead once older than STALE_AFTER_S
    remote, lease = claims_of(root, "remote", host="not-" + socket.gethostname(), pid=1)
    lease.__enter__()
    try:
        assert remote.claim("k3") is None
        assert mine.claim("k3")["run_id"] == "remote"
        old = time.time() - cl.STALE_AFTER_S - 1
        os.utime(lease.path, (old, old))
        assert mine.claim("k3") is None
    finally:
        lease.__exit__(None, None, None)
    for c in (live, mine, gone, remote):
        c.close()
    assert sorted(p.name for p in (root / "state" / "claims").iterdir()) == []


def test_a_sweep_waits_for_a_cell_another_run_is_computing(sweep_run, results, conf_dir, monkeypatch):
    """A live run holds one cell's claim: the sweep computes the other cell, waits, finds
    the other run's row and counts the cell as done by it."""
    import sweep.claims
    from sweep.app import model_version
    from tests.sweep.test_sweep_plan import plan_for

    key = plan_for(conf_dir, "+experiment=tiny", "kernel.page_size=4K", "cell_fn=tests.sweep.cells:trivial",
                   model_version=model_version()).cells[0].cell_key
    holder, _ = claims_of(results, "holder")
    assert holder.claim(key) is None
    waiting = threading.Event()
    real_wait = sweep.claims.Settler.wait
    monkeypatch.setattr(sweep.claims.Settler, "wait", lambda self: waiting.set() or real_wait(self))

    def finish():                    # the other run finishes the cell once the sweep waits
        assert waiting.wait(120)
        time.sleep(0.3)
        CellWriter(results, "tiny", "holder", "2026-01-01").write([sample_row(key)])
        holder.release([key])

    t = threading.Thread(target=finish)
    t.start()
    try:
        code, out = sweep_run("+experiment=tiny", "kernel.page_size=4K")
    finally:
        waiting.set()
        t.join()
    assert code == 0
    assert "waiting for 1 cell(s) claimed by run holder" in out
    assert "run " in out and ": 1 ok, 0 failed, 0 already done, 1 done by another run meanwhile" in out
    assert ok_rows(results) == (2, 2)


def test_concurrent_migrations_and_readers_see_every_file_once(tmp_path):
    """Four migrations of an old layout at once, while readers list: every file ends under
    cells/ exactly once, and every listing meanwhile holds each file exactly once."""
    from sweep import store

    root = tmp_path / "results"
    names = set()
    for e in range(3):
        for d in range(2):
            for r in range(4):
                w = CellWriter(root, f"e{e}", f"r{r}", f"2026-01-0{d + 1}")
                w.write([sample_row(f"{e}{d}{r}")])
                names.add(f"experiment=e{e}/date=2026-01-0{d + 1}/r{r}-00001.parquet")
    for e in range(3):
        (root / "cells" / f"experiment=e{e}").rename(root / f"experiment=e{e}")
    # e2 also has a new-layout directory already: merged file by file
    CellWriter(root, "e2", "new", "2026-01-01").write([sample_row("new")])
    names.add("experiment=e2/date=2026-01-01/new-00001.parquet")
    seen, errors = [], []
    barrier = threading.Barrier(5)

    def reader():
        barrier.wait()
        for _ in range(30):
            seen.append(sorted(str(p.relative_to(p.parents[2])) for p in store.listing(root)))

    def migrator():
        barrier.wait()
        try:
            store.migrate(root)
        except Exception as e:               # noqa: BLE001 - any error is a failure here
            errors.append(e)

    threads = [threading.Thread(target=reader)] + [threading.Thread(target=migrator) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(s == sorted(names) for s in seen), [len(s) for s in seen]
    assert sorted(p.name for p in root.iterdir()) == ["cells"]
    assert sorted(str(p.relative_to(root / "cells")) for p in (root / "cells").rglob("*.parquet")) == sorted(names)
