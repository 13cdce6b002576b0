"""The sweep driver: plan, print, execute, write, summarise.

``run_sweep`` is shared by the Hydra app (``python -m sweep``, sweep/__main__.py) and
by ``run(overrides)``, the in-process entry for tests and benchmarks. Exit codes:
0 all ran cells ok (or nothing to run), 1 some cell failed, 2 the config is invalid
or the Ray cluster cannot run it (nothing written), 3 the sweep could not go on (its
results could not be written: the runs row says why), 130 interrupted (Ctrl-C),
143 terminated (SIGTERM). The runs row's status says the same: finished, failed,
interrupted, terminated.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, open_dict

from sweep.cluster import RaySession, job_carries_code, preflight, runtime_env
from sweep.execute import error_text, execute_inprocess, execute_ray, execute_serial, import_cell_fn
from sweep.plan import Plan, expand
from sweep.claims import Claims, RunLease, Settler, clear_dead
from sweep.inputs import InputDigests
from sweep.results import (CellIndex, CellWriter, flatten_config, mark_dead_runs, repair, reused_rows, to_json,
                           utcnow, write_run)
from sweep.schema import ConfigError, describe_compose_error, register_configs

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
# The runs row of a running sweep is refreshed at most this often (cell rows are
# flushed on every completion regardless).
RUN_ROW_INTERVAL_S = 1.0
PACKAGES = ("pagesweep", "numpy", "numba", "ray", "pyarrow", "duckdb", "hydra-core", "omegaconf")


def model_version() -> str:
    """kernel_model.MODEL_VERSION, else the pagesweep distribution's version."""
    try:
        import kernel_model

        version = getattr(kernel_model, "MODEL_VERSION", None)
        if version:
            return str(version)
    except ImportError:
        pass
    try:
        return importlib.metadata.version("pagesweep")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@functools.lru_cache(maxsize=1)
def git_sha() -> str | None:
    """HEAD of the checkout holding this package, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=CONF_DIR.parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def package_versions() -> str:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return to_json(versions)


def new_run_id(now: dt.datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def run_sweep(cfg: DictConfig, overrides: Sequence[str], compose, *, experiment: str,
              is_group, config_loader=None, choices=None, out=sys.stdout) -> int:
    """Plan, validate and run every cell of ``cfg``; return the exit code."""
    root = Path(str(cfg.results.dir))
    sw = cfg.sweep
    inputs = InputDigests(root)
    try:
        import_cell_fn(str(cfg.cell_fn))
        plan = expand(cfg, overrides, compose, experiment=experiment, model_version=model_version(),
                      is_group=is_group, config_loader=config_loader, choices=choices, inputs=inputs)
    except ConfigError as e:
        _err(str(e))
        return 2
    index = CellIndex(root)
    if plan.cells:
        repair(root)                            # also moves an old layout under cells/
    if not sw.force and plan.cells:
        wanted = {c.cell_key for c in plan.cells}
        plan.done = index.refresh().ok_keys(wanted)
        plan.reuse = plan.done - index.ok_keys(wanted, experiment=plan.experiment)
    print(plan.summary(), file=out, flush=True)
    if sw.dry_run:
        for cell in plan.cells:
            state = "done" if cell.cell_key in plan.done else "run "
            print(f"  {state} {cell.cell_key[:12]} {cell.label}", file=out)
        return 0
    inputs.save()
    session = None
    if cfg.executor == "ray" and plan.to_run:
        # Join (or start) Ray and check the nodes before the run writes anything.
        session = RaySession(cfg.ray.address, cfg.ray.num_cpus, ship_code=cfg.ray.ship_code,
                             cell_fn=str(cfg.cell_fn))
        try:
            session.__enter__()
            if not session.local:
                env = runtime_env(str(cfg.cell_fn), cfg.ray.ship_code)
                nodes = preflight(str(cfg.cell_fn), plan.to_run, env is not None or job_carries_code())
                code = ("carried by the job" if job_carries_code() else
                        "shipped: " + ", ".join(Path(m).name for m in env["py_modules"]) if env else
                        "not shipped (ray.ship_code=false)")
                print(f"ray: cluster {session.address}, {nodes} nodes; code {code}", file=out, flush=True)
        except ConfigError as e:
            session.__exit__(None, None, None)
            _err(str(e))
            return 2
    try:
        return _execute(cfg, plan, list(overrides), root, out, index)
    finally:
        if session is not None:
            session.__exit__(None, None, None)


class Terminated(BaseException):
    """SIGTERM arrived: end the run like Ctrl-C, but say so (exit 143 = 128 + SIGTERM)."""


def _raise_terminated(signum, frame):
    raise Terminated()


# How a run ended: (runs row status, exit code) per exception class.
ENDINGS = ((KeyboardInterrupt, "interrupted", 130), (Terminated, "terminated", 143))


def _execute(cfg: DictConfig, plan: Plan, overrides: list, root: Path, out, index: CellIndex) -> int:
    started = utcnow()
    run_id = new_run_id(started)
    date = started.strftime("%Y-%m-%d")
    to_run = plan.to_run
    record = dict(run_id=run_id, experiment=plan.experiment, overrides=to_json(overrides),
                  executor=str(cfg.executor), cells_planned=len(plan.cells),
                  cells_done_before=len(plan.cells) - len(to_run), cells_to_run=len(to_run),
                  cells_reused=len(plan.reuse),
                  cells_ok=0, cells_failed=0, cells_by_others=0, cells_skipped=len(plan.skipped),
                  cells_excluded=plan.excluded, status="running", exit_status=None,
                  started_at=started, finished_at=None, git_sha=git_sha(),
                  model_version=model_version(), host=socket.gethostname(), pid=os.getpid())
    writer = CellWriter(root, plan.experiment, run_id, date)
    common = dict(run_id=run_id, git_sha=git_sha(), model_version=model_version(),
                  package_versions=package_versions())
    failed = []
    status, code, error = "failed", 3, None
    # Cells not yet ok in this experiment: computed, or copied from another experiment,
    # by whichever live run claims them first (sweep/claims.py).
    pending = [c for c in plan.cells if cfg.sweep.force or c.cell_key not in plan.done - plan.reuse]
    batches = iter(())
    last_run_write = time.monotonic()
    in_main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _raise_terminated) if in_main else None
    lease = claims = settler = None
    copied = 0
    try:
        mark_dead_runs(root, record["host"])
        write_run(root, date, record)
        clear_dead(root)
        lease = RunLease(root, run_id).__enter__()
        claims = Claims(root, lease)
        settler = Settler(claims, index, plan.experiment, bool(cfg.sweep.force), out)
        lazy = cfg.executor in ("serial", "inprocess")   # claim each cell just before it runs
        with _progress(len(to_run), cfg.sweep.progress and bool(to_run)) as bar:
            while pending:
                cells = settler.claimable(pending)
                if not lazy:
                    cells = list(cells)          # claimed up front for the Ray tasks
                batches = _batches(cfg, cells) if lazy or cells else iter(())
                for batch in batches:
                    rows = [_row(cell, outcome, common) for cell, outcome in batch]
                    writer.write(rows)
                    claims.release([row["cell_key"] for row in rows])
                    for row in rows:
                        record["cells_ok" if row["status"] == "ok" else "cells_failed"] += 1
                        if row["status"] != "ok":
                            failed.append(row)
                    if time.monotonic() - last_run_write >= RUN_ROW_INTERVAL_S:
                        write_run(root, date, record)   # counts so far, for a run that dies
                        last_run_write = time.monotonic()
                    bar.update(len(rows))
                if settler.copies:
                    table = reused_rows(root, plan.experiment, set(settler.copies), run_id, index.refresh())
                    writer.write_table(table)
                    copied += table.num_rows
                    claims.release(settler.copies)
                    settler.copies = []
                pending = settler.wait()
        writer.compact()
        status, code = "finished", (1 if failed else 0)
    except (KeyboardInterrupt, Terminated) as e:
        status, code = next((s, c) for cls, s, c in ENDINGS if isinstance(e, cls))
        _compact_quietly(writer)
        print(f"{status}: finished cells are saved; rerun the same command to continue", file=out)
    except OSError as e:                        # results cannot be written: disk full, ulimit -f
        error = error_text(f"{type(e).__name__}: {e}")
        _err(f"cannot write results: {e}")
        _compact_quietly(writer)
    except BaseException as e:                  # a bug: record it, then show the traceback
        code, error = 1, error_text(f"{type(e).__name__}: {e}")
        raise
    finally:
        if hasattr(batches, "close"):
            batches.close()                     # ends the executor's processes and tasks
        if claims is not None:
            claims.close()
        if lease is not None:
            lease.__exit__(None, None, None)
        if in_main:
            signal.signal(signal.SIGTERM, old_term)
        record.update(status=status, exit_status=code, error=error, finished_at=utcnow(),
                      cells_by_others=settler.by_others if settler else 0, cells_reused=copied)
        try:
            write_run(root, date, record)
        except OSError as e:
            _err(f"cannot write the runs row: {e}")
    for row in failed:
        print(f"FAILED {row['cell']}: {next(iter((row['error'] or '').splitlines()), '')}", file=out)
    elapsed = (record["finished_at"] - started).total_seconds()
    print(f"run {run_id}: {record['cells_ok']} ok, {record['cells_failed']} failed, "
          f"{record['cells_done_before']} already done"
          + (f" ({copied} copied from other experiments)" if copied else "")
          + (f", {settler.by_others} done by another run meanwhile" if settler and settler.by_others else "")
          + f", {len(plan.skipped)} skipped "
          f"in {elapsed:.1f}s -> {writer.dir}", file=out, flush=True)
    return code


def _compact_quietly(writer: CellWriter) -> None:
    """Compact the parts written so far; a failure leaves them for the next run's repair."""
    try:
        writer.compact()
    except OSError:
        pass


def _batches(cfg: DictConfig, cells):
    sw, cell_fn = cfg.sweep, str(cfg.cell_fn)
    if cfg.executor == "inprocess":
        return execute_inprocess(cells, cell_fn, sw.app_retries)
    if cfg.executor == "serial":
        return execute_serial(cells, cell_fn, sw.app_retries, sw.max_retries)
    return execute_ray(cells, cell_fn, sw.app_retries, sw.max_retries)


def _row(cell, outcome: dict, common: dict) -> dict:
    row = dict(common)
    row.update(cell_key=cell.cell_key, config_key=cell.config_key, cell=cell.label,
               status=outcome["status"], error=outcome["error"], attempts=outcome["attempts"],
               duration_s=outcome["duration_s"], host=outcome["host"],
               started_at=outcome["started_at"], config_json=to_json(cell.config),
               inputs_digest=cell.inputs_digest, metrics=outcome["metrics"])
    row.update(flatten_config(cell.config))
    return row


class _progress:
    """tqdm bar with ETA on stderr; a no-op when disabled."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.bar = total, enabled, None

    def __enter__(self):
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="cell", file=sys.stderr, dynamic_ncols=True)
        return self

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


# ---- in-process entry (tests, benchmarks) ----------------------------------------

def run(overrides: Sequence[str] = (), *, config_dir: Path | str = CONF_DIR, out=sys.stdout) -> int:
    """``python -m sweep OVERRIDES...`` without a subprocess; returns the exit code."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs(config_dir)
    overrides = list(overrides)
    with initialize_config_dir(version_base="1.3", config_dir=str(Path(config_dir).resolve()),
                               job_name="sweep"):
        loader = GlobalHydra.instance().config_loader()
        try:
            full = compose("config", overrides=overrides, return_hydra_config=True)
        except Exception as e:  # hydra composition error
            _err(describe_compose_error(e))
            return 2
        choices = dict(full.hydra.runtime.choices)
        experiment = choices.get("experiment") or "default"
        with open_dict(full):
            del full["hydra"]
        return run_sweep(full, overrides, lambda ovs: compose("config", overrides=list(ovs)),
                         experiment=experiment, is_group=group_test(loader),
                         config_loader=loader, choices=choices, out=out)


def group_test(loader):
    """key -> True when the key names a config group (``kernel``, ``+experiment``)."""
    cache = {}

    def is_group(key: str) -> bool:
        name = key.lstrip("+~").split("@")[0]
        if name not in cache:
            try:
                cache[name] = bool(loader.get_group_options(name))
            except Exception:
                cache[name] = False
        return cache[name]

    return is_group


def main_from_hydra(cfg: DictConfig) -> int:
    """Body of the Hydra app: the composed cfg plus the overrides Hydra recorded."""
    import hydra
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    experiment = hc.runtime.choices.get("experiment") or "default"
    loader = GlobalHydra.instance().config_loader()
    config_name = hc.job.config_name

    def compose(ovs):
        return hydra.compose(config_name=config_name, overrides=list(ovs))

    return run_sweep(cfg, overrides, compose, experiment=experiment, is_group=group_test(loader),
                     config_loader=loader, choices=dict(hc.runtime.choices))

