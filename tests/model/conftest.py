"""Fixtures for whole-model tests: cell configs composed from the real conf/ tree."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[2] / "conf"
DATA = Path(__file__).resolve().parents[1] / "data"


def _compose(*overrides) -> dict:
    from sweep.schema import register_configs

    register_configs(CONF)
    with initialize_config_dir(str(CONF), version_base=None):
        cfg = compose("config", overrides=list(overrides))
    out = OmegaConf.to_container(cfg, resolve=True)
    out.pop("hydra", None)
    return out


@pytest.fixture
def cell_config():
    """cell_config("kernel=16k", "workload=trace", ...) -> the resolved cell config dict."""
    return _compose


@pytest.fixture
def trace_path():
    return str(DATA / "lackey_arrayscan.txt.gz")
