"""Kill the local Ray a driver started when the driver dies without shutting it down.

A local ``ray.init()`` starts gcs_server and raylet as children of the driver; they
die with it, but the raylet's agents (ray::DashboardAgent, ray::RuntimeEnvAgent) are
reparented to init and stay. ``python -m sweep.reaper`` is started by the driver with
a pipe on its stdin; every POLL_S it records the driver's descendants (from /proc).
The driver writes ``exit`` when it shut Ray down itself; EOF without ``exit`` means the
driver died (kill -9), and the reaper SIGKILLs every recorded process that still has
the start time it was recorded with (so a reused pid is never hit). Linux only.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

POLL_S = 0.5


def _stat(pid: int):
    """(ppid, starttime) from /proc/<pid>/stat, or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()   # after "pid (comm) "
    return int(fields[1]), int(fields[19])         # ppid, starttime (man 5 proc)


def descendants(root: int) -> dict:
    """{pid: starttime} of every process below ``root``."""
    children: dict = {}
    starts = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                children.setdefault(st[0], []).append(int(entry))
                starts[int(entry)] = st[1]
    out, stack = {}, [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in out:
                out[child] = starts[child]
                stack.append(child)
    return out


def kill_recorded(recorded: dict) -> int:
    killed = 0
    for pid, start in recorded.items():
        st = _stat(pid)
        if st is not None and st[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the driver handles Ctrl-C
    driver = int(sys.argv[1])
    me = os.getpid()
    recorded: dict = {}
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], POLL_S)
        if ready:
            line = sys.stdin.readline()
            if line.strip() == "exit":
                return 0
            if line == "":                        # EOF: the driver is gone
                kill_recorded(recorded)
                return 0
        current = descendants(driver)
        current.pop(me, None)
        recorded.update(current)


class Reaper:
    """Context manager in the driver: starts the reaper, tells it ``exit`` on a clean end."""

    def __init__(self):
        self.proc = None

    def __enter__(self):
        if sys.platform.startswith("linux"):
            self.proc = subprocess.Popen([sys.executable, "-m", "sweep.reaper", str(os.getpid())],
                                         stdin=subprocess.PIPE, text=True, start_new_session=True)
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            try:
                self.proc.stdin.write("exit\n")
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
