"""workload=trace: a recorded trace replayed as absolute virtual addresses.

workload.path: valgrind lackey text (plain or .gz) or a NumPy .npy/.npz (see
workloads/lackey.py). Access phases have region None: every page touched is
demand-faulted as anonymous memory by the simulator. A relative path is taken as
given (relative to the current directory); the simulator resolves config paths
against the original working directory before building the workload.
"""

from __future__ import annotations

import os

from workloads.base import Workload
from workloads.lackey import read_trace


class TraceWorkload(Workload):
    def __init__(self, cfg, seed):
        super().__init__(cfg, seed)
        if not os.path.isfile(cfg.path):
            raise FileNotFoundError(f"workload.path: trace file {cfg.path!r} does not exist (or is not a file)")

    def phases(self):
        yield from read_trace(self.cfg.path)
