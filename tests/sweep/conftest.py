"""Fixtures for the sweep engine's tests: a private conf dir and an in-process runner."""

import io
import shutil
from pathlib import Path

import pytest

from sweep.app import CONF_DIR, run

# A small grid over the page sizes mthp_gap sweeps. Value axes only: one Hydra
# composition per run (test_sweep_plan covers config-group axes).
TINY = """\
# @package _global_
workload:
  accesses: 1000
sweep:
  grid:
    kernel.page_size: 4K,16K,64K
    process.page_size: kernel,16K
"""


@pytest.fixture
def conf_dir(tmp_path):
    """A copy of conf/ with the test experiments of this file added."""
    d = tmp_path / "conf"
    shutil.copytree(CONF_DIR, d)
    (d / "experiment" / "tiny.yaml").write_text(TINY)
    return d


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results"


@pytest.fixture
def sweep_run(conf_dir, results):
    """run(overrides) in-process with the serial executor; returns (exit code, stdout)."""

    def _run(*overrides, executor="serial", cell="trivial"):
        out = io.StringIO()
        code = run([f"executor={executor}", f"cell_fn=tests.sweep.cells:{cell}",
                    f"results.dir={results}", "sweep.progress=false", *overrides],
                   config_dir=conf_dir, out=out)
        return code, out.getvalue()

    return _run


def write_experiment(conf_dir: Path, name: str, text: str) -> None:
    (conf_dir / "experiment" / f"{name}.yaml").write_text(text)
