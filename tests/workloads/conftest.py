import pathlib

import pytest

DATA = pathlib.Path(__file__).resolve().parent.parent / "data"


@pytest.fixture
def data_dir():
    """tests/data: recorded and handwritten traces (see its README.md)."""
    return DATA
