"""Emulated Linux MM stack with per-process page size (see README.md beside this file).

    from kernel_model import System, simulate
"""

# Bumped whenever a change alters what simulate() returns for some config: it is part of
# every cell_key, so results of an older model are never mistaken for current ones.
MODEL_VERSION = "0.2.0"  # 0.2: huge zero page, shmem, fault-around of large folios, trace map_gap

__all__ = ["MODEL_VERSION", "System", "simulate"]


def __getattr__(name):  # lazy: importing the package pulls in no numba/numpy-heavy modules
    if name == "System":
        from .system import System

        return System
    if name == "simulate":
        from .simulate import simulate

        return simulate
    raise AttributeError(name)
