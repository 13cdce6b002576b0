"""The driver's Ray: a fresh local Ray of its own, or a cluster that gets the project's code.

ray.address null starts a new local Ray for the run with ``ray.init(address="local")``:
never a cluster that happens to run on the machine, nor the one a stale
``ray_current_cluster`` file in Ray's temp dir names (both would be joined by a plain
``ray.init()``). Inside ``ray job submit`` the entrypoint's RAY_ADDRESS names the job's
cluster, and an exported RAY_ADDRESS is honoured the same way.

On a cluster (ray.address set, or RAY_ADDRESS) the nodes may have neither the checkout
nor the installed package, so the driver ships its own code with the job as Ray
``runtime_env`` py_modules: the packages sweep, kernel_model, workloads and the cell
function's top-level package, from wherever the driver imported them (so every node
runs exactly the driver's code). Not when ray.ship_code=false, and not when the job
already carries code (``ray job submit --working-dir`` or ``--runtime-env`` with
py_modules): shipping twice would only put a second copy on sys.path. Data a cell
reads by path (workload.path) is not shipped: it must exist at the same absolute path
on every node. ``preflight`` checks both on every node before anything runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import sys
import tempfile
from pathlib import Path

from sweep.reaper import Reaper
from sweep.schema import PATH_KINDS, ConfigError

# The packages every cell imports (the model and its workloads) and the engine itself.
SHIPPED_PACKAGES = ("sweep", "kernel_model", "workloads")
# Set by Ray's job manager in a ``ray job submit`` entrypoint's environment.
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
RAY_INIT_KWARGS = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")


def cluster_address(address) -> str | None:
    """The cluster to join, or None for a fresh local Ray."""
    if address is None:
        address = os.environ.get("RAY_ADDRESS") or None
    return None if address in (None, "local") else str(address)


def job_carries_code() -> bool:
    """True inside a ``ray job submit`` whose runtime_env ships a working_dir or py_modules."""
    raw = os.environ.get(JOB_CONFIG_ENV)
    if not raw:
        return False
    try:
        env = json.loads(raw).get("runtime_env") or {}
    except (ValueError, AttributeError):
        return False
    return bool(env.get("working_dir") or env.get("py_modules"))


def _is_installed(path: str) -> bool:
    return any(part in ("site-packages", "dist-packages") for part in Path(path).parts)


def code_paths(cell_fn: str) -> list[str]:
    """Directories (or single-module files) of the packages to ship, as the driver imports them.

    A package installed in site-packages is left out: a node gets it from its own
    environment (as it gets numpy and Ray).
    """
    names = list(SHIPPED_PACKAGES)
    top = cell_fn.partition(":")[0].split(".")[0]
    if top and top not in names:
        names.append(top)
    paths = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        if spec.submodule_search_locations:
            locations = [str(p) for p in spec.submodule_search_locations]
            path = locations[0]
        elif spec.origin and spec.origin.endswith(".py"):
            path = spec.origin
        else:
            continue
        if not _is_installed(path):
            paths.append(path)
    return paths


def runtime_env(cell_fn: str, ship_code: bool) -> dict | None:
    """The job's runtime_env for a cluster: the driver's code as py_modules, or None."""
    if not ship_code or job_carries_code():
        return None
    paths = code_paths(cell_fn)
    if not paths:
        return None
    return {"py_modules": paths, "excludes": ["__pycache__", "*.pyc"]}


class RaySession:
    """ray.init for the run; shuts Ray down afterwards only if it started or joined it.

    A Ray already initialised in this process (a test session, a notebook) is used
    as is and left running.
    """

    def __init__(self, address=None, num_cpus=None, *, ship_code: bool = True,
                 cell_fn: str = "kernel_model.simulate:simulate"):
        self.address = cluster_address(address)
        self.num_cpus, self.ship_code, self.cell_fn = num_cpus, ship_code, cell_fn
        self.owned = False
        self.reaper = None

    @property
    def local(self) -> bool:
        return self.address is None

    def __enter__(self):
        import ray

        if ray.is_initialized():
            return self
        if self.local:
            self._init_local(ray)
        else:
            # Ray's C++ client logs every failed connection attempt to stderr (fd 2); a
            # failure is reported in one line instead, a success replays what it logged.
            with _captured_stderr() as captured:
                try:
                    ray.init(address=self.address, runtime_env=runtime_env(self.cell_fn, self.ship_code),
                             **RAY_INIT_KWARGS)
                except (ConnectionError, ValueError, RuntimeError) as e:
                    captured.discard = True
                    hint = ("" if os.environ.get("RAY_AUTH_MODE") else
                            " (a cluster started with `ray start` uses token authentication: export "
                            "RAY_AUTH_MODE=token, and RAY_AUTH_TOKEN if ~/.ray/auth_token is not its token)")
                    raise ConfigError("ray.address", f"cannot join the Ray cluster at {self.address}: "
                                      f"{_first_line(e)}{hint}") from None
        self.owned = True
        return self

    def _init_local(self, ray) -> None:
        # Workers inherit the driver's environment: let them import what the driver
        # imports from its working directory (python -m semantics).
        path = os.environ.get("PYTHONPATH", "")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), path) if p)
        # The local Ray's processes must not outlive a driver killed with -9.
        self.reaper = Reaper().__enter__()
        try:
            ray.init(address="local", num_cpus=self.num_cpus or os.cpu_count(), **RAY_INIT_KWARGS)
        except BaseException:
            self.reaper.__exit__(None, None, None)
            raise
        finally:
            if path:
                os.environ["PYTHONPATH"] = path
            else:
                del os.environ["PYTHONPATH"]

    def __exit__(self, *exc):
        if self.owned:
            import ray

            try:
                ray.shutdown()
            finally:
                if self.reaper is not None:
                    self.reaper.__exit__(*exc)


class _captured_stderr:
    """Redirect file descriptor 2 to a temporary file; on exit restore it and copy the
    text back, unless ``discard`` was set."""

    def __enter__(self):
        self.discard = False
        sys.stderr.flush()
        self.file = tempfile.TemporaryFile()
        self.saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.file.seek(0)
        text = self.file.read()
        self.file.close()
        if text and not self.discard:
            os.write(2, text)


# ---- preflight: can every node run the cells? -------------------------------------

def node_check(cell_fn: str, paths: list) -> tuple:
    """Runs on one node: (host, [problem, ...])."""
    from sweep.execute import import_cell_fn

    problems = []
    try:
        import_cell_fn(cell_fn)
    except ConfigError as e:
        problems.append(str(e))
    problems += [f"workload.path: {p} does not exist there" for p in paths if not os.path.exists(p)]
    return socket.gethostname(), problems


def cell_paths(cells) -> list:
    """The distinct workload.path values the cells read."""
    return sorted({c.config["workload"]["path"] for c in cells
                   if c.config["workload"]["kind"] in PATH_KINDS and c.config["workload"]["path"]})


def preflight(cell_fn: str, cells, shipped: bool) -> int:
    """Run ``node_check`` on every alive node; raise ConfigError naming the first node
    that cannot import the cell function or lacks a workload.path. Returns the number
    of nodes checked."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    paths = cell_paths(cells)
    refs = []
    for node in ray.nodes():
        if node.get("Alive"):
            strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
            check = ray.remote(node_check).options(num_cpus=0, max_retries=0, scheduling_strategy=strategy)
            refs.append((node["NodeManagerAddress"], check.remote(cell_fn, paths)))
    hint = ("" if shipped else "; install pagesweep on every node, submit with "
            "`ray job submit --working-dir .`, or leave ray.ship_code=true")
    for ip, ref in refs:
        try:
            host, problems = ray.get(ref)
        except Exception as e:  # the node cannot even import sweep.cluster
            raise ConfigError("ray", f"node {ip} cannot run the sweep's code: {_first_line(e)}{hint}") from None
        if problems:
            what = problems[0] + (hint if not problems[0].startswith("workload.path") else
                                  " (data given by path must be at that path on every node)")
            raise ConfigError("ray", f"node {ip} ({host}): {what}")
    return len(refs)


def _first_line(e: BaseException) -> str:
    """The line of a (Ray) error text that says what went wrong: the last "SomeError: ..."
    line of a remote traceback (ModuleNotFoundError: No module named 'sweep'), else the
    first line."""
    from sweep.execute import error_text

    lines = [ln.strip() for ln in error_text(str(e)).splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    named = [ln for ln in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception): ", ln)]
    return named[-1] if named else lines[0]
