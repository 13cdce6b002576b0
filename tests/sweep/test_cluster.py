"""Sweeps on Ray clusters: a fresh local Ray whatever else runs on the machine, and a
real two-node cluster whose nodes can see neither the checkout nor the installed
package (tests/sweep/ray_nodes.py), joined by address and through ``ray job submit``.

The cluster and the drivers that join it run in a loopback-only network namespace
(ray_nodes.NetNamespace): every byte they send goes to 127.0.0.1.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sweep.query import connect
from tests.conftest import REPO
from tests.sweep.ray_nodes import TwoNodeCluster, can_hide, can_isolate_network

# Three cells of the real model, small enough for two busy cores.
REAL = ("+experiment=mthp_gap", "folio.anon=base", "kernel=4k", "workload.working_set=8M",
        "workload.accesses=2000", "memory.size=512M")
ROWS = ("select cell_key, status, attempts, faults, l2_tlb_misses, walk_mem_refs, total_bytes from cells "
        "order by cell_key")


def sweep_cli(*args, env, cwd=REPO, timeout=600, wrap=list):
    return subprocess.run(wrap([sys.executable, "-m", "sweep", "sweep.progress=false", *args]), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_local_ray_ignores_a_stale_cluster_file(tmp_path):
    """ray.address=null starts a Ray of its own even when Ray's temp dir names a cluster
    (ray_current_cluster, left by a `ray start` never stopped): a plain ray.init()
    would try to join it and fail on num_cpus."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="psl", dir="/tmp"))    # short: Unix socket paths
    try:
        (ray_tmp / "ray").mkdir()
        (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:1")
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_TMPDIR=str(ray_tmp), PYTHONPATH=str(REPO))
        res = sweep_cli("+experiment=mthp_gap", "folio.anon=base", "kernel=4k", "executor=ray",
                        "ray.num_cpus=1", "cell_fn=tests.sweep.cells:trivial", f"results.dir={tmp_path}/r", env=env)
        assert res.returncode == 0, res.stderr
        assert connect(tmp_path / "r").sql("select status, count(*) from cells group by all").fetchall() == [
            ("ok", 3)]
        assert [p.name for p in (ray_tmp / "ray").iterdir() if p.name.startswith("session_2")]  # its own
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    why = can_hide()
    if why:
        pytest.skip(f"cannot hide the code from Ray nodes: {why}")
    why = can_isolate_network()
    if why:
        pytest.skip(f"cannot keep the cluster's traffic on loopback: {why}")
    c = TwoNodeCluster(hide=True, repo=REPO, dashboard=True)
    try:
        yield c.start()
    finally:
        c.stop()


def test_cluster_gets_the_drivers_code(cluster, tmp_path):
    env = dict(cluster.env, PYTHONPATH=str(REPO))        # the driver sees the checkout
    # ray.ship_code=false: the nodes cannot import the code; one line, exit 2, nothing written
    res = sweep_cli(*REAL, f"ray.address={cluster.address}", "ray.ship_code=false",
                    f"results.dir={tmp_path}/none", env=env, wrap=cluster.wrap)
    assert res.returncode == 2, res.stderr
    last = res.stderr.splitlines()[-1]
    assert last.startswith("error: ray: node ") and last.endswith(
        "cannot run the sweep's code: ModuleNotFoundError: No module named 'sweep'; install pagesweep on every "
        "node, submit with `ray job submit --working-dir .`, or leave ray.ship_code=true"), res.stderr
    assert not (tmp_path / "none").exists()

    # the default ships sweep, kernel_model and workloads: the same rows as a serial run
    res = sweep_cli(*REAL, f"ray.address={cluster.address}", f"results.dir={tmp_path}/cluster", env=env,
                    wrap=cluster.wrap)
    assert res.returncode == 0, res.stderr
    assert (f"ray: cluster {cluster.address}, 2 nodes; code shipped: sweep, kernel_model, workloads"
            in res.stdout.splitlines())
    res = sweep_cli(*REAL, "executor=serial", f"results.dir={tmp_path}/serial", env=env)
    assert res.returncode == 0, res.stderr
    rows = connect(tmp_path / "cluster").sql(ROWS).fetchall()
    assert len(rows) == 3 and {r[1:3] for r in rows} == {("ok", 1)}
    assert rows == connect(tmp_path / "serial").sql(ROWS).fetchall()


def test_cluster_needs_token_auth(cluster, tmp_path):
    """Without RAY_AUTH_MODE=token the driver cannot join: one line says what to set."""
    env = {k: v for k, v in cluster.env.items() if k != "RAY_AUTH_MODE"}
    res = sweep_cli(*REAL, f"ray.address={cluster.address}", f"results.dir={tmp_path}/r",
                    env=dict(env, PYTHONPATH=str(REPO)), wrap=cluster.wrap)
    assert res.returncode == 2
    (line,) = res.stderr.splitlines()
    assert line.startswith(f"error: ray.address: cannot join the Ray cluster at {cluster.address}: ")
    assert line.endswith(" (a cluster started with `ray start` uses token authentication: export "
                         "RAY_AUTH_MODE=token, and RAY_AUTH_TOKEN if ~/.ray/auth_token is not its token)")
    assert not (tmp_path / "r").exists()


def test_ray_job_submit_with_working_dir(cluster, tmp_path):
    """The job's working_dir already carries the code: the driver on the head does not
    ship it again, and every node runs it."""
    results = tmp_path / "results"
    res = subprocess.run(cluster.wrap(
        ["ray", "job", "submit", f"--address={cluster.dashboard}", f"--working-dir={REPO}", "--",
         "python", "-m", "sweep", *REAL, "sweep.progress=false", f"results.dir={results}"]),
        cwd=tmp_path, env=cluster.env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "3 ok, 0 failed" in res.stdout
    # the entrypoint's RAY_ADDRESS is the cluster's GCS: joined, not a local Ray of its own
    assert [ln for ln in res.stdout.splitlines() if ln.startswith("ray: cluster ")] == [
        f"ray: cluster {res.stdout.split('ray: cluster ')[1].split(',')[0]}, 2 nodes; code carried by the job"]
    assert connect(results).sql("select status, count(*) from cells group by all").fetchall() == [("ok", 3)]
