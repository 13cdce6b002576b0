"""Workloads: seeded phase streams the simulator runs (see workloads/phases.py).

    from workloads import build
    w = build({"kind": "synthetic", "pattern": "zipf", "working_set": "64M"}, seed=1)
    for phase in w.phases(): ...

Same config and seed => the same phases, every time phases() is called.
"""

from __future__ import annotations

from workloads.abi_probe import AbiProbeWorkload
from workloads.base import Workload
from workloads.config import WorkloadConfig, parse_workload_config
from workloads.files import ElfTreeWorkload, FileSetWorkload, FileTreeWorkload
from workloads.mixed import MixedWorkload
from workloads.snapshot import SnapshotWorkload
from workloads.synthetic import SyntheticWorkload

_BY_KIND = {
    "synthetic": SyntheticWorkload,
    "trace": None,  # workloads.trace.TraceWorkload, imported on use (python -m workloads.trace)
    "file_set": FileSetWorkload,
    "file_tree": FileTreeWorkload,
    "elf_tree": ElfTreeWorkload,
    "mixed": MixedWorkload,
    "abi_probe": AbiProbeWorkload,
    "snapshot": SnapshotWorkload,
}


def build(wcfg, *, seed: int) -> Workload:
    """The workload of a config group (dict or DictConfig) and a seed."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    cfg = parse_workload_config(wcfg)
    if cfg.kind == "trace":
        from workloads.trace import TraceWorkload

        return TraceWorkload(cfg, seed)
    return _BY_KIND[cfg.kind](cfg, seed)


__all__ = ["Workload", "WorkloadConfig", "build", "parse_workload_config"]
