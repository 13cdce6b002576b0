"""The Workload interface: a named, re-iterable stream of phases."""

from __future__ import annotations

from collections.abc import Iterator

from workloads.config import WorkloadConfig


class Workload:
    """A workload built from one config and one seed.

    phases() may be called any number of times; every call yields the same phases
    (equal values, equal array contents), generated lazily so memory stays bounded.
    """

    def __init__(self, cfg: WorkloadConfig, seed: int):
        self.cfg = cfg
        self.seed = seed

    @property
    def name(self) -> str:
        return self.cfg.name

    def phases(self) -> Iterator:
        raise NotImplementedError(f"{type(self).__name__} must implement phases()")

    def describe(self) -> dict:
        """A JSON-able summary: the config fields that shape this workload, and the seed."""
        return {**self.cfg.describe(), "seed": self.seed}
