"""kill -9 of the driver mid-sweep: flushed rows survive, no Ray process is left, a rerun
computes only what had not finished and leaves exactly one ok row per cell."""

import os
import signal
import subprocess
import sys
import time

from sweep.query import connect
from sweep.reaper import _stat, descendants
from tests.conftest import REPO


def test_kill_9_driver_then_rerun(sweep_run, results):
    env = dict(os.environ, SWEEP_TEST_SLEEP="1.0")
    driver = subprocess.Popen(
        [sys.executable, "-m", "sweep", "+experiment=mthp_gap", "cell_fn=tests.sweep.cells:slow",
         "executor=ray", "ray.num_cpus=2", f"results.dir={results}", "sweep.progress=false"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    part_dir = results / "experiment=mthp_gap"
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        parts = list(part_dir.glob("date=*/*.parquet"))
        if len(parts) >= 2:
            break
        assert driver.poll() is None, "the driver ended before it was killed"
        time.sleep(0.2)
    ray_procs = descendants(driver.pid)
    assert ray_procs, "the driver started no Ray processes"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 15
    alive = ray_procs
    while alive and time.monotonic() < deadline:
        time.sleep(0.25)
        alive = {pid: start for pid, start in ray_procs.items() if (_stat(pid) or (0, None))[1] == start}
    assert alive == {}

    flushed = connect(results).sql("select count(*) from cells where status = 'ok'").fetchall()[0][0]
    assert 2 <= flushed < 18
    # the run row is refreshed at most once a second: it may lag the cell rows
    (status, exit_status, cells_ok), = connect(results).sql(
        "select status, exit_status, cells_ok from runs").fetchall()
    assert (status, exit_status) == ("running", None) and cells_ok <= flushed

    code, out = sweep_run("+experiment=mthp_gap", "sweep.dry_run=true", cell="slow")
    assert out.splitlines()[0] == (f"plan mthp_gap: 18 cells total, {flushed} already done, "
                                   f"{18 - flushed} to run, 3 skipped, 6 excluded")
    os.environ["SWEEP_TEST_SLEEP"] = "0"
    try:
        code, out = sweep_run("+experiment=mthp_gap", cell="slow")
    finally:
        del os.environ["SWEEP_TEST_SLEEP"]
    assert code == 0
    # the killed run's parts were compacted by the rerun: one file per run
    names = sorted(p.name.split("-")[-1] for p in part_dir.glob("date=*/*.parquet"))
    assert names == ["00000.parquet", "00000.parquet"]
    assert connect(results).sql("select status, count(*), count(distinct cell_key) from cells "
                                "group by all").fetchall() == [("ok", 18, 18)]
    assert connect(results).sql("select status, cells_done_before, cells_ok from runs "
                                "order by started_at").fetchall() == [
        ("killed", 0, flushed), ("finished", flushed, 18 - flushed)]
