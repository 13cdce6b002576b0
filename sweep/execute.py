"""Run cells: one at a time in a child process (serial), in the driver itself
(inprocess, for a debugger), or one Ray task per cell.

Every executor calls the same ``run_cell`` with the same plain-dict config and yields
(cell, outcome) pairs as cells finish, so results do not depend on the executor.
Application errors are retried inside ``run_cell`` (sweep.app_retries); a cell whose
process dies (os._exit, a signal, a crashed Ray worker) is run again by the driver up
to sweep.max_retries times, and ``attempts`` counts every run of the cell function;
what still fails is an outcome with status "failed" and the error text.
"""

from __future__ import annotations

import copy
import functools
import importlib
import math
import numbers
import re
import socket
import time
import traceback
from typing import Iterator

from sweep.results import utcnow
from sweep.schema import ConfigError

ERROR_MAX_CHARS = 4000
# SGR and other CSI escape sequences: Ray colours its error texts (ray::run_cell()).
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def error_text(text: str) -> str:
    """An error text as stored in a row: no terminal escape codes, bounded length."""
    return _ANSI.sub("", text)[:ERROR_MAX_CHARS]


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


def died(attempts: int, error: str) -> dict:
    """The outcome of a cell whose process died on every one of ``attempts`` runs."""
    return dict(status="failed", metrics=None, error=error_text(error), attempts=attempts,
                duration_s=None, host=None, started_at=None)


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
            error = error_text(f"{type(e).__name__}: {e}\n{tb}")
    return dict(status="failed", metrics=None, error=error, attempts=attempts,
                duration_s=time.perf_counter() - t0, host=socket.gethostname(), started_at=started)


def with_deaths(outcome: dict, deaths: int) -> dict:
    """``outcome`` of the run that finished, after ``deaths`` runs whose process died."""
    if deaths:
        outcome = dict(outcome, attempts=outcome["attempts"] + deaths)
    return outcome


def execute_inprocess(cells, cell_fn: str, app_retries: int) -> Iterator[list]:
    """Yield [(cell, outcome)] one cell at a time, in plan order, calling the cell
    function in this process (a breakpoint in it stops here; a crash ends the sweep)."""
    for cell in cells:
        yield [(cell, run_cell(cell_fn, cell.config, app_retries))]


def execute_serial(cells, cell_fn: str, app_retries: int, max_retries: int) -> Iterator[list]:
    """Yield [(cell, outcome)] one cell at a time, in plan order; each cell runs in a
    child process (sweep/isolate.py) that a dying cell takes down instead of the driver."""
    from sweep.isolate import CellProcess

    proc = None
    try:
        for cell in cells:
            deaths = 0
            while True:
                if proc is None:
                    proc = CellProcess()
                outcome = proc.run(cell_fn, cell.config, app_retries)
                if outcome is not None:
                    break
                deaths += 1
                death, proc = proc.death(), None
                if deaths > max_retries:
                    outcome = died(deaths, f"WorkerCrashedError: the cell's process died: {death}")
                    deaths = 0
                    break
            yield [(cell, with_deaths(outcome, deaths))]
    finally:
        if proc is not None:
            proc.close()


def execute_ray(cells, cell_fn: str, app_retries: int, max_retries: int) -> Iterator[list]:
    """One Ray task per cell; yield [(cell, outcome), ...] batches as tasks finish.

    Each batch is everything ray.wait() reports ready at that moment, so the caller
    flushes one small part per batch and loses at most the batch in flight. Ray does
    not retry a task itself (max_retries=0): run_cell never raises, so an error from
    ray.get is the task's process or node dying, and the driver resubmits the cell,
    counting the attempts.
    """
    import ray

    task = ray.remote(run_cell).options(max_retries=0, retry_exceptions=False, num_cpus=1)
    pending = {}                                 # ref -> (cell, deaths so far)
    for cell in cells:
        pending[task.remote(cell_fn, cell.config, app_retries)] = (cell, 0)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            rest = [r for r in pending if r not in ready]
            more = ray.wait(rest, num_returns=len(rest), timeout=0)[0] if rest else []
            batch = []
            for ref in ready + more:
                cell, deaths = pending.pop(ref)
                try:
                    outcome = with_deaths(ray.get(ref), deaths)
                except Exception as e:  # the worker (or its node) died
                    deaths += 1
                    if deaths <= max_retries:
                        pending[task.remote(cell_fn, cell.config, app_retries)] = (cell, deaths)
                        continue
                    outcome = died(deaths, f"{type(e).__name__}: {e}")
                batch.append((cell, outcome))
            if batch:
                yield batch
    finally:
        for ref in pending:                      # an interrupted sweep leaves no tasks behind
            try:
                ray.cancel(ref, force=True)
            except Exception:  # Ray already gone: so are its tasks
                pass
