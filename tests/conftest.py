"""Shared fixtures. Ray takes seconds to start: one local Ray per test session."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def ray_session():
    """A fresh local 2-CPU Ray for the whole session; workers can import tests.* modules.

    address="local" starts a new Ray even when another one runs on this machine or a
    stale ray_current_cluster file in Ray's temp dir names a cluster that is gone (a
    plain ray.init() would join or fail on those). The sweep engine uses a Ray already
    initialised in its process and leaves it running, so every Ray test shares this one.
    """
    ray = pytest.importorskip("ray")
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), path) if p)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    try:
        yield ray
    finally:
        ray.shutdown()
        if path:
            os.environ["PYTHONPATH"] = path
        else:
            os.environ.pop("PYTHONPATH", None)
