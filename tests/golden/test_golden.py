"""Golden metrics: every model optimisation leaves these cells' results exactly as they were.

The cells are listed in tests/golden/cells.py; their metric dicts, recorded from the
reference model, are in golden_metrics.json. A cell must return exactly the same keys
and exactly the same values (floats included: the model is deterministic).
"""

import json
from pathlib import Path

import pytest

from tests.golden.cells import CELLS, run

GOLDEN = json.loads((Path(__file__).parent / "golden_metrics.json").read_text())


def test_golden_covers_every_cell():
    assert sorted(GOLDEN) == sorted(CELLS)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_golden_cell(name):
    got = run(name)
    want = GOLDEN[name]
    assert sorted(got) == sorted(want), f"{name}: metric names changed"
    diff = {k: (want[k], got[k]) for k in want if got[k] != want[k]}
    assert not diff, f"{name}: metrics changed (golden, now): {diff}"
