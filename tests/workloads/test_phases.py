import numpy as np
import pytest

from workloads.phases import Access, Exec, Map, ReadFile


def test_access_arrays_normalised_and_read_only():
    a = Access("r", [8, 16], [1, 0])
    assert a.offsets.dtype == np.int64 and a.is_write.dtype == np.bool_
    assert a.is_write.tolist() == [True, False]
    with pytest.raises(ValueError):
        a.offsets[0] = 0
    assert len(a) == 2


def test_access_equality_by_content():
    assert Access(None, np.array([1]), np.array([True])) == Access(None, [1], [True])
    assert Access(None, [1], [True]) != Access(None, [1], [False])
    assert Access("x", [1], [True]) != Access("y", [1], [True])


def test_access_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="equal length"):
        Access("r", [8, 16], [True])


def test_simple_phases_frozen_and_defaults():
    assert ReadFile("/f") == ReadFile("/f", 0, None)
    assert Exec() == Exec(None)
    m = Map("a", 4096, 3, 0x22)
    with pytest.raises(AttributeError):
        m.length = 1
