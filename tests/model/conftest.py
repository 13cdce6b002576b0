"""Fixtures for whole-model tests: cell configs composed from the real conf/ tree."""

from pathlib import Path

import pytest

from tests.golden.cells import compose as _compose

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def cell_config():
    """cell_config("kernel=16k", "workload=trace", ...) -> the resolved cell config dict."""
    return _compose


@pytest.fixture
def trace_path():
    return str(DATA / "lackey_arrayscan.txt.gz")
