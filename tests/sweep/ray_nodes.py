"""A real two-node Ray cluster on loopback for the cluster tests, whose nodes cannot see
the project's code.

The cluster lives in a network namespace of its own whose only interface is loopback
(``unshare -n``, held open by a sleeping process; every node, probe and driver enters it
with ``nsenter --net``): Ray turns a loopback node address into the host's own interface
address when it finds one (ray/_private/services.py resolve_ip_for_localhost), and in
this namespace it finds none, so every byte the cluster sends goes to 127.0.0.1.
Each node is its own ``ray start --block`` with its own --temp-dir, bound to
127.0.0.1, in a new session; with ``hide`` it runs under ``unshare -m`` with an empty
tmpfs mounted over every directory a fresh interpreter on this machine would import
the project's packages from (the checkout, the target of an editable install), so its
workers can import the code only if the driver ships it. Teardown stops exactly these
nodes: SIGTERM to each ``ray start``'s process group, then SIGKILL to any process
whose command line names one of this cluster's temp dirs (never Ray processes by name:
other clusters may run on the machine).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGES = ("sweep", "kernel_model", "workloads")
NODE_START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_env(token: str) -> dict:
    """The environment of a node or a driver: no PYTHONPATH (a node knows nothing of the
    checkout), token authentication with this cluster's own token."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_USAGE_STATS_ENABLED="0")
    return env


def code_dirs(env: dict) -> list:
    """Directories from which a fresh interpreter (cwd /, no PYTHONPATH) imports the
    project's packages: what a node must not see."""
    probe = ("import importlib.util, os\n"
             f"for name in {PACKAGES!r}:\n"
             "    spec = importlib.util.find_spec(name)\n"
             "    if spec and spec.submodule_search_locations:\n"
             "        print(os.path.dirname(list(spec.submodule_search_locations)[0]))\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd="/", env=env, capture_output=True, text=True,
                         timeout=60)
    return sorted(set(out.stdout.split()))


def can_isolate_network() -> str | None:
    """None when a loopback-only network namespace can be made here, else why not."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    missing = [t for t in ("unshare", "nsenter", "ip") if shutil.which(t) is None]
    if missing:
        return f"no {', '.join(missing)} (util-linux, iproute2) for a loopback-only network namespace"
    res = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if res.returncode:
        return f"unshare -n not permitted here: {res.stderr.strip()}"
    return None


class NetNamespace:
    """A network namespace with loopback up, alive while its holder process sleeps."""

    def __init__(self):
        self.holder = subprocess.Popen(["unshare", "-n", "sh", "-c", "ip link set lo up && exec sleep 86400"],
                                       start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:      # up once the holder execs sleep inside it
            if self.holder.poll() is not None:
                raise RuntimeError("could not set up the loopback-only network namespace")
            try:
                if os.readlink(f"/proc/{self.holder.pid}/exe").endswith("sleep"):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("timed out setting up the loopback-only network namespace")

    def wrap(self, cmd: list) -> list:
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", *cmd]

    def close(self) -> None:
        _signal_group(self.holder, signal.SIGKILL)
        self.holder.wait()


def can_hide() -> str | None:
    """None when mount namespaces work here, else why not."""
    if not sys.platform.startswith("linux"):
        return "mount namespaces are Linux only"
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    res = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                          "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True, text=True)
    if res.returncode:
        return f"unshare -m / mount tmpfs not permitted here: {res.stderr.strip()}"
    return None


class TwoNodeCluster:
    def __init__(self, hide: bool, repo: Path, dashboard: bool = False):
        self.base = Path(tempfile.mkdtemp(prefix="psc", dir="/tmp"))   # short: Unix socket paths
        self.token = secrets.token_hex(16)
        self.env = node_env(self.token)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.hidden = sorted(set(code_dirs(self.env)) | {str(repo)}) if hide else []
        self.procs: list = []
        self.dashboard = f"http://127.0.0.1:{free_port()}" if dashboard else None
        self.net = NetNamespace()
        self.wrap = self.net.wrap

    def _start(self, name: str, args: list) -> None:
        temp = self.base / name
        temp.mkdir()
        cmd = ["ray", "start", "--block", "--node-ip-address=127.0.0.1", f"--temp-dir={temp}",
               "--num-cpus=1", "--disable-usage-stats",
               f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
               f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}", *args]
        if self.hidden:
            mounts = " && ".join(f"mount -t tmpfs -o size=1m,mode=755 tmpfs '{d}'" for d in self.hidden)
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", f'{mounts} && exec "$@"', "sh", *cmd]
        cmd = self.wrap(cmd)
        log = open(self.base / f"{name}.log", "w")
        self.procs.append(subprocess.Popen(cmd, cwd="/", env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def start(self) -> "TwoNodeCluster":
        dash = (["--include-dashboard=true", "--dashboard-host=127.0.0.1",
                 f"--dashboard-port={self.dashboard.rsplit(':', 1)[1]}"] if self.dashboard
                else ["--include-dashboard=false"])
        self._start("head", ["--head", f"--port={self.port}", f"--ray-client-server-port={free_port()}", *dash])
        self._wait(lambda: (self.base / "head" / "ray_current_cluster").exists(), "the head node")
        self._start("worker", [f"--address={self.address}"])
        self._wait(lambda: self.alive_nodes() == 2, "two alive nodes")
        return self

    def alive_nodes(self) -> int:
        probe = ("import ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
                 "print(sum(n['Alive'] for n in ray.nodes()))" % self.address)
        res = subprocess.run(self.wrap([sys.executable, "-c", probe]), cwd="/", env=self.env, capture_output=True,
                             text=True, timeout=120)
        return int(res.stdout.split()[-1]) if res.returncode == 0 and res.stdout.split() else 0

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + NODE_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a Ray node exited while waiting for {what}: {self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}: {self.logs()}")

    def logs(self) -> str:
        return " | ".join(p.read_text()[-2000:] for p in sorted(self.base.glob("*.log")))

    def _our_pids(self) -> list:
        """Every process whose command line names this cluster's temp dir."""
        mark = str(self.base).encode()
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                try:
                    if mark in Path(f"/proc/{entry}/cmdline").read_bytes():
                        pids.append(int(entry))
                except OSError:
                    pass
        return pids

    def stop(self) -> None:
        for p in reversed(self.procs):             # ray start --block stops its node on SIGTERM
            _signal_group(p, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
                p.wait()
        for _ in range(5):                         # agents and workers reparented to init
            pids = self._our_pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        self.net.close()
        shutil.rmtree(self.base, ignore_errors=True)


def _signal_group(proc, sig) -> None:
    try:
        os.killpg(proc.pid, sig)                   # the node's own session (start_new_session)
    except ProcessLookupError:
        pass
