import pathlib

import pytest

DATA = pathlib.Path(__file__).resolve().parent.parent / "data"


@pytest.fixture
def data_dir():
    return DATA


def collect(workload):
    """All phases of a workload, as a list."""
    return list(workload.phases())
