"""``python -m sweep [overrides]``: the Hydra app over conf/ (see sweep/app.py)."""

import sys

import hydra
from omegaconf import DictConfig

from sweep import exit_on_broken_pipe
from sweep.app import CONF_DIR, main_from_hydra
from sweep.schema import register_configs

register_configs(CONF_DIR)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        code = main_from_hydra(cfg)
    except BrokenPipeError:
        exit_on_broken_pipe()
    sys.exit(code)


if __name__ == "__main__":
    main()
