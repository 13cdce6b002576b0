"""Run cells: in-process (serial) or one Ray task per cell.

Both executors call the same ``run_cell`` with the same plain-dict config and yield
(cell, outcome) pairs as cells finish, so results do not depend on the executor.
Application errors are retried inside ``run_cell`` (sweep.app_retries); a Ray worker
that dies is retried by Ray (sweep.max_retries); what still fails is an outcome with
status "failed" and the error text.
"""

from __future__ import annotations

import copy
import functools
import importlib
import math
import numbers
import os
import socket
import time
import traceback
from typing import Iterator

from sweep.reaper import Reaper
from sweep.results import utcnow
from sweep.schema import ConfigError

ERROR_MAX_CHARS = 4000


@functools.lru_cache(maxsize=16)
def import_cell_fn(path: str):
    """``"package.module:function"`` -> the function."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError("cell_fn", f"{path!r} is not an import path; write module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError("cell_fn", f"cannot import {module_name}: {e}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError("cell_fn", f"{module_name} has no function {attr}")
    return fn


def _check_metrics(metrics) -> dict:
    """A flat dict of scalar metrics (numpy scalars become Python ones)."""
    if not isinstance(metrics, dict):
        raise TypeError(f"cell function returned {type(metrics).__name__}, expected a flat dict of metrics")
    out = {}
    for name, value in metrics.items():
        if hasattr(value, "item") and getattr(value, "shape", None) == ():
            value = value.item()
        if not (value is None or isinstance(value, (bool, str, numbers.Integral, numbers.Real))):
            raise TypeError(f"metric {name!r} is a {type(value).__name__}; metrics must be scalars")
        if isinstance(value, float) and math.isnan(value):
            value = None
        out[str(name)] = value
    return out


def run_cell(cell_fn: str, config: dict, app_retries: int = 0) -> dict:
    """Call the cell function, retrying application errors; never raises.

    Returns status, metrics, error, attempts, duration_s, host, started_at.
    """
    started = utcnow()
    t0 = time.perf_counter()
    error = None
    attempts = 0
    for attempts in range(1, app_retries + 2):
        try:
            fn = import_cell_fn(cell_fn)
            metrics = _check_metrics(fn(copy.deepcopy(config)))
            return dict(status="ok", metrics=metrics, error=None, attempts=attempts,
                        duration_s=time.perf_counter() - t0, host=socket.gethostname(),
                        started_at=started)
        except Exception as e:  # the cell's own failure, recorded in its row
            tb = "".join(traceback.format_tb(e.__traceback__)[-3:])
            error = f"{type(e).__name__}: {e}\n{tb}"[:ERROR_MAX_CHARS]
    return dict(status="failed", metrics=None, error=error, attempts=attempts,
                duration_s=time.perf_counter() - t0, host=socket.gethostname(), started_at=started)


def execute_serial(cells, cell_fn: str, app_retries: int) -> Iterator[list]:
    """Yield [(cell, outcome)] one cell at a time, in plan order."""
    for cell in cells:
        yield [(cell, run_cell(cell_fn, cell.config, app_retries))]


class RaySession:
    """ray.init for the run; shuts Ray down afterwards only if it started it.

    A Ray already initialised in this process (a test session, a notebook) is used
    as is and left running.
    """

    def __init__(self, address, num_cpus):
        self.address, self.num_cpus = address, num_cpus
        self.owned = False
        self.reaper = None

    def __enter__(self):
        import ray

        if ray.is_initialized():
            return self
        kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        if self.address is None:
            # Workers inherit the driver's environment: let them import what the
            # driver imports from its working directory (python -m semantics).
            path = os.environ.get("PYTHONPATH", "")
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), path) if p)
            # The local Ray's processes must not outlive a driver killed with -9.
            self.reaper = Reaper().__enter__()
            try:
                ray.init(num_cpus=self.num_cpus or os.cpu_count(), **kwargs)
            except BaseException:
                self.reaper.__exit__(None, None, None)
                raise
            finally:
                if path:
                    os.environ["PYTHONPATH"] = path
                else:
                    del os.environ["PYTHONPATH"]
        else:
            ray.init(address=self.address, **kwargs)
        self.owned = True
        return self

    def __exit__(self, *exc):
        if self.owned:
            import ray

            try:
                ray.shutdown()
            finally:
                if self.reaper is not None:
                    self.reaper.__exit__(*exc)


def execute_ray(cells, cell_fn: str, app_retries: int, max_retries: int) -> Iterator[list]:
    """One Ray task per cell; yield [(cell, outcome), ...] batches as tasks finish.

    Each batch is everything ray.wait() reports ready at that moment, so the caller
    flushes one small part per batch and loses at most the batch in flight.
    """
    import ray

    task = ray.remote(run_cell).options(max_retries=max_retries, num_cpus=1)
    pending = {}
    for cell in cells:
        pending[task.remote(cell_fn, cell.config, app_retries)] = cell
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        rest = [r for r in pending if r not in ready]
        more = ray.wait(rest, num_returns=len(rest), timeout=0)[0] if rest else []
        batch = []
        for ref in ready + more:
            cell = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as e:  # the worker died max_retries + 1 times
                outcome = dict(status="failed", metrics=None,
                               error=f"{type(e).__name__}: {e}"[:ERROR_MAX_CHARS],
                               attempts=max_retries + 1, duration_s=None, host=None,
                               started_at=None)
            batch.append((cell, outcome))
        yield batch
