"""The Ray executor on the session's local Ray: same rows as serial, failures, worker deaths."""

import pytest

from sweep.query import connect
from tests.conftest import REPO

METRICS = "select cell_key, config_key, status, pps_over_kps, digest, accesses from cells order by cell_key"


@pytest.fixture
def both(sweep_run, results):
    """Run the same experiment under both executors into two results dirs."""
    def _both(*overrides, cell="trivial"):
        serial = sweep_run(*overrides, cell=cell)
        ray = sweep_run(*overrides, f"results.dir={results}-ray", executor="ray", cell=cell)
        return serial, ray
    return _both


def test_ray_rows_equal_serial_rows(ray_session, both, results):
    (code_s, _), (code_r, out_r) = both("+experiment=tiny")
    assert (code_s, code_r) == (0, 0)
    serial = connect(results).sql(METRICS).fetchall()
    ray = connect(f"{results}-ray").sql(METRICS).fetchall()
    assert len(serial) == 5
    assert ray == serial
    assert connect(f"{results}-ray").sql("select executor, cells_ok from runs").fetchall() == [("ray", 5)]


def test_ray_failed_cell_row_and_exit_1(ray_session, sweep_run, results):
    code, out = sweep_run("+experiment=tiny", "sweep.app_retries=1", executor="ray", cell="fail_on_64k")
    assert code == 1
    assert "FAILED kernel.page_size=64K process.page_size=kernel: ValueError: no 64K model here" in out
    assert connect(results).sql(
        "select kernel_page_size, status, attempts, split_part(error, chr(10), 1) from cells "
        "order by kernel_page_size, process_page_size").fetchall() == [
        (4096, "ok", 1, None), (4096, "ok", 1, None), (16384, "ok", 1, None), (16384, "ok", 1, None),
        (65536, "failed", 2, "ValueError: no 64K model here")]


def test_ray_worker_death_is_retried(ray_session, sweep_run, results, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    # every cell's first worker dies; Ray's max_retries re-runs it on a new worker
    code, _ = sweep_run("+experiment=tiny", "kernel.page_size=4K", "sweep.max_retries=1", f"workload.path={markers}",
                        executor="ray", cell="die_once")
    assert code == 0
    assert connect(results).sql("select process_page_size, status from cells order by all").fetchall() == [
        (4096, "ok"), (16384, "ok")]
    assert len(list(markers.iterdir())) == 2


def test_ray_worker_that_always_dies_fails_its_cell_only(ray_session, sweep_run, results):
    code, out = sweep_run("+experiment=tiny", "sweep.max_retries=1", executor="ray", cell="die_on_64k")
    assert code == 1
    got = connect(results).sql("select kernel_page_size, status, attempts from cells "
                               "order by all").fetchall()
    assert got == [(4096, "ok", 1), (4096, "ok", 1), (16384, "ok", 1), (16384, "ok", 1),
                   (65536, "failed", 2)]
    err = connect(results).sql("select error from cells where status = 'failed'").fetchall()[0][0]
    assert err.startswith(("WorkerCrashedError", "RayTaskError", "OutOfMemoryError"))


def test_ray_session_starts_and_stops_only_its_own_ray(monkeypatch):
    """Without a running Ray: a fresh local one (address="local", so neither a cluster
    running on the machine nor a stale ray_current_cluster file is joined) with no
    dashboard, all cores by default, PYTHONPATH restored, a reaper for kill -9, and
    shutdown at the end. A cluster address: joined with the code shipped, no num_cpus.
    With a Ray running in the process (the test session's, a notebook's): used as is."""
    import os

    import ray

    import sweep.cluster as cluster

    calls = []

    class FakeReaper:
        def __enter__(self):
            calls.append("reaper start")
            return self

        def __exit__(self, *exc):
            calls.append("reaper exit")

    def fake_init(**kwargs):
        calls.append(("init", kwargs, os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]))

    monkeypatch.setattr(cluster, "Reaper", FakeReaper)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    monkeypatch.setenv("PYTHONPATH", "/x")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(cluster.JOB_CONFIG_ENV, raising=False)
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    with cluster.RaySession(None, None):
        calls.append("body")
    assert calls == ["reaper start",
                     ("init", dict(address="local", num_cpus=os.cpu_count(), **quiet), os.getcwd()),
                     "body", "shutdown", "reaper exit"]
    assert os.environ["PYTHONPATH"] == "/x"

    calls.clear()
    with cluster.RaySession("auto", 3, cell_fn="tests.sweep.cells:trivial"):
        calls.append("body")
    shipped = [str(REPO / name) for name in ("sweep", "kernel_model", "workloads", "tests")]
    assert calls == [("init", dict(address="auto", runtime_env={"py_modules": shipped,
                                                                "excludes": ["__pycache__", "*.pyc"]},
                                   **quiet), "/x"), "body", "shutdown"]

    calls.clear()
    with cluster.RaySession("10.0.0.1:6379", None, ship_code=False):
        calls.append("body")
    assert calls == [("init", dict(address="10.0.0.1:6379", runtime_env=None, **quiet), "/x"),
                     "body", "shutdown"]

    calls.clear()
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    with cluster.RaySession(None, 2):
        calls.append("body")
    assert calls == ["body"]
