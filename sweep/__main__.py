"""``python -m sweep [overrides]``: the Hydra app over conf/ (see sweep/app.py).

A config error Hydra finds while composing (an unknown key or group option, a value of
the wrong type, an unparsable override) exits 2 with one line naming what to fix, as
the validation pass does; Hydra alone would print several lines and exit 1, the status
of a failed cell. HYDRA_FULL_ERROR=1 still shows Hydra's full report.
"""

import os
import sys

import hydra
from omegaconf import DictConfig

from sweep import exit_on_broken_pipe
from sweep.app import CONF_DIR, main_from_hydra
from sweep.schema import describe_compose_error, register_configs

register_configs(CONF_DIR)

_started = False   # the task function ran: an exception after this is not a config error


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    global _started
    _started = True
    try:
        code = main_from_hydra(cfg)
    except BrokenPipeError:
        exit_on_broken_pipe()
    sys.exit(code)


def main() -> None:
    """Console entry: Hydra's app, its composition errors as one line and exit 2."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        hydra_main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"           # Hydra re-raises instead of printing
    try:
        hydra_main()
    except Exception as e:
        if _started:
            raise
        print(f"error: {describe_compose_error(e)}", file=sys.stderr)
        sys.exit(2)
    finally:
        del os.environ["HYDRA_FULL_ERROR"]


if __name__ == "__main__":
    main()
