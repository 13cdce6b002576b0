"""kill -9 of the driver mid-sweep: flushed rows survive, a rerun computes only what had
not finished and leaves exactly one ok row per cell; the reaper kills what a dead
driver's local Ray leaves behind."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from sweep.query import connect
from sweep.reaper import _stat, descendants
from tests.conftest import REPO


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_two_parts(results, proc, how: str) -> None:
    """Wait until the mthp_gap run of ``proc`` has flushed two cell parts, and check that
    it is still running (it is about to be stopped ``how``)."""
    parts = results / "cells" / "experiment=mthp_gap"
    wait_for(lambda: len(list(parts.glob("date=*/*.parquet"))) >= 2 or proc.poll() is not None,
             120, "two flushed parts")
    assert proc.poll() is None, f"the driver ended before {how}"


def test_kill_9_driver_then_rerun(ray_session, sweep_run, results):
    """The driver joins the session's Ray (Ray starts once per test session)."""
    address = ray_session.get_runtime_context().gcs_address
    env = dict(os.environ, SWEEP_TEST_SLEEP="0.5")
    driver = subprocess.Popen(
        [sys.executable, "-m", "sweep", "+experiment=mthp_gap", "cell_fn=tests.sweep.cells:slow",
         "executor=ray", f"ray.address={address}", f"results.dir={results}", "sweep.progress=false"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    part_dir = results / "cells" / "experiment=mthp_gap"
    try:
        wait_for_two_parts(results, driver, "it was killed")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()

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
    # the killed driver's lease and cell claims were cleared by the rerun
    assert [p.name for p in (results / "state" / "live").iterdir()] == []
    assert [p.name for p in (results / "state" / "claims").iterdir()] == []


# A driver that, like ray.init(), starts a server child which starts an agent
# grandchild; the agent survives its parent's death, as ray::DashboardAgent does.
FAKE_DRIVER = textwrap.dedent("""
    import subprocess, sys, time
    from sweep.reaper import Reaper
    agent = "import time; time.sleep(120)"
    server = ("import subprocess, sys, time; "
              f"subprocess.Popen([sys.executable, '-c', {agent!r}]); time.sleep(120)")
    with Reaper():
        subprocess.Popen([sys.executable, "-c", server])
        print("up", flush=True)
        time.sleep(120)
""")


def test_reaper_kills_what_a_killed_driver_left():
    driver = subprocess.Popen([sys.executable, "-c", FAKE_DRIVER], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert driver.stdout.readline() == "up\n"
        wait_for(lambda: len(descendants(driver.pid)) == 3, 30, "reaper, server and agent")
        time.sleep(1.0)                          # two reaper polls see the whole tree
        tree = descendants(driver.pid)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    # the reaper ends once it has killed the server and the agent
    wait_for(lambda: all((_stat(pid) or (0, None))[1] != start for pid, start in tree.items()),
             15, "the driver's processes to go")


def test_reaper_leaves_a_clean_driver_alone():
    # the driver leaves its Reaper block (a clean shutdown) when told on stdin
    clean = FAKE_DRIVER.replace("    time.sleep(120)\n", "    sys.stdin.readline()\n")
    driver = subprocess.Popen([sys.executable, "-c", clean], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert driver.stdout.readline() == "up\n"
    wait_for(lambda: len(descendants(driver.pid)) == 3, 30, "reaper, server and agent")
    tree = descendants(driver.pid)
    driver.stdin.write("done\n")
    driver.stdin.close()
    assert driver.wait(timeout=30) == 0
    time.sleep(1.0)
    alive = [pid for pid, start in tree.items() if (_stat(pid) or (0, None))[1] == start]
    assert len(alive) == 2                       # server and agent: not the reaper's to kill
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
