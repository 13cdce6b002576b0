"""pagesweep's sweep engine: Hydra configs -> cells -> Ray/serial -> Parquet -> DuckDB.

``python -m sweep +experiment=NAME`` runs an experiment; ``python -m sweep.query SQL``
queries the results; ``python -m sweep.nightly`` compares the last two runs.
"""

import os
import sys


def exit_on_broken_pipe() -> None:
    """stdout closed early (``| head``): end quietly, as a shell tool does (128 + SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(141)
