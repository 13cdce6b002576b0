"""Shared fixtures. Ray takes seconds to start: one local Ray per test session."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def ray_session():
    """A local 2-CPU Ray for the whole session; workers can import tests.* modules.

    The sweep engine uses a Ray already initialised in its process and leaves it
    running, so every Ray test shares this one.
    """
    ray = pytest.importorskip("ray")
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), path) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield ray
    finally:
        ray.shutdown()
        if path:
            os.environ["PYTHONPATH"] = path
        else:
            os.environ.pop("PYTHONPATH", None)
