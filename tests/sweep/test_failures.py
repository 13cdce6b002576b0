"""Sweeps and cells that fail: a cell that kills its process, worker deaths and their
attempts, error texts without terminal codes, SIGTERM and a results write failure in
the runs row."""

import os
import resource
import signal
import subprocess
import sys

import pytest

from sweep.query import connect
from tests.conftest import REPO
from tests.sweep.test_sweep_kill import wait_for_two_parts

CELLS = "select kernel_page_size, process_page_size, status, attempts from cells order by all"


def driver(results, *overrides, env=None, **popen):
    """``python -m sweep`` as a subprocess, as a user runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "sweep", f"results.dir={results}", "sweep.progress=false", *overrides],
        cwd=REPO, env=dict(os.environ, **(env or {})), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, **popen)


def test_serial_cell_that_kills_its_process_fails_only_that_cell(results):
    """os._exit in a cell: the serial driver survives, records the failed cell with how
    its process ended, runs every other cell and ends its runs row."""
    proc = driver(results, "+experiment=mthp_gap", "folio.anon=base", "executor=serial", "sweep.max_retries=1",
                  "cell_fn=tests.sweep.cells:die_on_64k")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    error = "WorkerCrashedError: the cell's process died: exit status 1"
    assert (f"FAILED process.page_size=kernel kernel=64k folio.mthp_sizes=[2M]: {error}") in out.splitlines()
    got = connect(results).sql("select kernel_page_size, process_page_size, status, attempts, error from cells "
                               "order by all").fetchall()
    assert got == [(4096, 4096, "ok", 1, None), (4096, 16384, "ok", 1, None), (4096, 65536, "ok", 1, None),
                   (16384, 16384, "ok", 1, None), (16384, 65536, "ok", 1, None),
                   (65536, 65536, "failed", 2, error)]
    assert connect(results).sql("select status, exit_status, cells_ok, cells_failed, error from runs").fetchall() \
        == [("finished", 1, 5, 1, None)]


def test_serial_death_then_success_counts_attempts(sweep_run, results, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    code, _ = sweep_run("+experiment=tiny", "kernel.page_size=4K", "sweep.max_retries=1",
                        f"workload.path={markers}", cell="die_once")
    assert code == 0
    assert connect(results).sql(CELLS).fetchall() == [(4096, 4096, "ok", 2), (4096, 16384, "ok", 2)]


def test_ray_death_then_success_counts_attempts(ray_session, sweep_run, results, tmp_path):
    """Each cell's first worker dies; the retry succeeds: attempts = 2, as serially."""
    markers = tmp_path / "markers"
    markers.mkdir()
    code, _ = sweep_run("+experiment=tiny", "kernel.page_size=4K", "sweep.max_retries=2",
                        f"workload.path={markers}", executor="ray", cell="die_once")
    assert code == 0
    assert connect(results).sql(CELLS).fetchall() == [(4096, 4096, "ok", 2), (4096, 16384, "ok", 2)]


def test_app_retries_and_deaths_add_up(sweep_run, results, tmp_path):
    """attempts counts every run of the cell function: one death, then a success."""
    markers = tmp_path / "markers"
    markers.mkdir()
    code, _ = sweep_run("+experiment=tiny", "kernel.page_size=4K", "process.page_size=kernel",
                        "sweep.max_retries=1", "sweep.app_retries=2", f"workload.path={markers}", cell="die_once")
    assert code == 0
    assert connect(results).sql(CELLS).fetchall() == [(4096, 4096, "ok", 2)]


def test_error_texts_carry_no_terminal_codes(ray_session, sweep_run, results):
    code, out = sweep_run("+experiment=tiny", "kernel.page_size=4K", "process.page_size=kernel",
                          executor="ray", cell="coloured_error")
    assert code == 1
    (error,), = connect(results).sql("select error from cells").fetchall()
    assert error.splitlines()[0] == "RuntimeError: ray::run_cell() failed in red"
    assert "FAILED (single cell): RuntimeError: ray::run_cell() failed in red" in out.splitlines()
    code, _ = sweep_run("+experiment=tiny", "kernel.page_size=64K", "sweep.max_retries=0",
                        f"results.dir={results}-died", executor="ray", cell="die_on_64k")
    assert code == 1
    (error,), = connect(f"{results}-died").sql("select error from cells").fetchall()
    assert error.startswith("WorkerCrashedError") and "\x1b" not in error


def test_sigterm_ends_the_run_as_terminated(results):
    proc = driver(results, "+experiment=mthp_gap", "executor=serial", "cell_fn=tests.sweep.cells:slow",
                  env={"SWEEP_TEST_SLEEP": "0.5"})
    try:
        wait_for_two_parts(results, proc, "SIGTERM")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated: finished cells are saved; rerun the same command to continue" in out
    (status, exit_status, ok), = connect(results).sql("select status, exit_status, cells_ok from runs").fetchall()
    assert (status, exit_status) == ("terminated", 143)
    assert ok == connect(results).sql("select count(*) from cells where status = 'ok'").fetchall()[0][0] >= 2


def _small_files():
    # The runs row (~7 KB) fits, a part of cell rows (~30 KB) does not: EFBIG.
    resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))


def test_results_write_failure_is_recorded_as_failed(results):
    proc = driver(results, "+experiment=mthp_gap", "kernel=4k", "executor=serial",
                  "cell_fn=tests.sweep.cells:trivial", preexec_fn=_small_files)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 3
    last = err.splitlines()[-1]             # pyarrow's text: "[Errno 27] Error writing bytes ... File too large"
    assert last.startswith("error: cannot write results: [Errno 27] ") and "File too large" in last
    (status, exit_status, error), = connect(results).sql("select status, exit_status, error from runs").fetchall()
    assert (status, exit_status) == ("failed", 3)
    assert error.startswith("OSError: [Errno 27] ") and "File too large" in error
    assert not list(results.glob("cells/experiment=*/date=*/*.parquet"))   # nothing half-written
    # without the limit, the rerun computes every cell
    proc = driver(results, "+experiment=mthp_gap", "kernel=4k", "executor=serial",
                  "cell_fn=tests.sweep.cells:trivial")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert connect(results).sql("select count(*) from cells where status = 'ok'").fetchall() == [(9,)]


def test_serial_child_does_not_rerun_the_drivers_main(results):
    """A driver script read from stdin, calling run() without a __name__ guard: the
    serial executor's child process must not import (or re-run) it."""
    script = ("import sys\nfrom sweep.app import run\n"
              f"sys.exit(run(['+experiment=mthp_gap', 'kernel=4k', 'folio.anon=base', 'executor=serial', "
              f"'cell_fn=tests.sweep.cells:trivial', 'results.dir={results}', 'sweep.progress=false']))\n")
    res = subprocess.run([sys.executable, "-"], input=script, cwd=REPO, capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("plan mthp_gap: ") == 1
    assert connect(results).sql("select status, attempts, count(*) from cells group by all").fetchall() == [
        ("ok", 1, 3)]
