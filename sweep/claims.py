"""Who computes a cell: atomic per-cell claims in a shared results directory.

A run that is about to compute a cell creates ``state/claims/<cell_key>`` with
link(2) -- atomic and exclusive (EEXIST) on local filesystems and NFS alike -- from a
file naming the run (run_id, host, pid, the pid's start time). It unlinks the claim
once the cell's row is in a named Parquet file, so a run that finds no claim and no ok
row may compute the cell, and no two live runs ever compute it at once.

A claim whose holder is dead is taken over: on the same host when the pid is gone or
now belongs to another process (its start time differs); on another host when the
run's lease ``state/live/<run_id>.json`` has not been refreshed for STALE_AFTER_S
(a live run touches it every HEARTBEAT_S). Clocks of hosts sharing a store must agree
to well within STALE_AFTER_S. Takeovers and releases hold ``state/claims.lock``
(flock), so a claim is never unlinked by anyone but its holder or a run that proved
the holder dead.

A run that finds a cell claimed by a live run computes its other cells first, then
waits for the claim to go and checks again: usually the other run's ok row is there
and the cell counts as done by another run (copied first if that run is of another
experiment); if the holder died or the cell failed, this run claims and computes it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from sweep.store import STATE, write_text_atomic

HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0
POLL_S = 0.1
# A directory modified less than this long ago may be modified again within the same
# timestamp granule (a jiffy): its mtime does not prove that nothing changed.
RACY_S = 2.0
HAVE_PROC = os.path.exists("/proc/self/stat")   # else (macOS) kill(pid, 0), without start times


def proc_start(pid: int):
    """The start time of ``pid`` (clock ticks after boot, /proc/<pid>/stat field 22),
    None if there is no such live process (gone, or a zombie)."""
    if not HAVE_PROC:
        return _kill0(pid)
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return _kill0(pid)
    fields = text[text.rindex(")") + 2:].split()      # after "pid (comm) "; see man 5 proc
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _kill0(pid: int):
    """-1 (alive, start time unknown) or None."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return -1


def pid_alive(pid: int, start) -> bool:
    """``pid`` on this host is running and, if ``start`` is known, is the same process."""
    now = proc_start(pid)
    return now is not None and (start is None or now == -1 or now == start)


def identity(run_id: str) -> dict:
    pid = os.getpid()
    return dict(run_id=run_id, host=socket.gethostname(), pid=pid, pid_start=proc_start(pid))


class RunLease:
    """``state/live/<run_id>.json`` for the life of a run, its mtime refreshed every
    HEARTBEAT_S by a daemon thread: how runs on other hosts tell this one is alive."""

    def __init__(self, root: Path, run_id: str):
        self.info = identity(run_id)
        self.path = Path(root) / STATE / "live" / f"{run_id}.json"
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        write_text_atomic(json.dumps(self.info), self.path)
        self._thread = threading.Thread(target=self._beat, name="sweep-lease", daemon=True)
        self._thread.start()
        return self

    def _beat(self):
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.path.unlink(missing_ok=True)


def holder_alive(root: Path, info: dict) -> bool:
    if info.get("host") == socket.gethostname():
        return pid_alive(info["pid"], info.get("pid_start"))
    try:
        age = time.time() - (Path(root) / STATE / "live" / f"{info['run_id']}.json").stat().st_mtime
    except FileNotFoundError:
        return False
    return age < STALE_AFTER_S


class Claims:
    """This run's claims in ``<root>/state/claims``."""

    def __init__(self, root: Path, lease: RunLease):
        self.root = Path(root)
        self.dir = self.root / STATE / "claims"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.info = lease.info
        self.mine: set = set()
        self._template = None

    def _lock(self):
        return _Flock(self.root / STATE / "claims.lock")

    def _new_template(self) -> Path:
        path = self.dir / f".{self.info['run_id']}.{len(self.mine)}.tmpl"
        write_text_atomic(json.dumps(self.info), path)
        return path

    def _link(self, key: str) -> bool:
        if self._template is None:
            self._template = self._new_template()
        try:
            os.link(self._template, self.dir / key)
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno != errno.EMLINK:                # too many links to one file: a new one
                raise
            self._template.unlink(missing_ok=True)
            self._template = self._new_template()
            return self._link(key)
        self.mine.add(key)
        return True

    def read(self, key: str):
        try:
            return json.loads((self.dir / key).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def claim(self, key: str):
        """None when this run now holds ``key``; else the live holder's info."""
        if key in self.mine:
            return None
        if self._link(key):
            return None
        with self._lock():
            while True:
                if self._link(key):
                    return None
                holder = self.read(key)
                if holder is None:
                    continue                            # released meanwhile
                if holder.get("run_id") == self.info["run_id"]:
                    self.mine.add(key)
                    return None
                if holder_alive(self.root, holder):
                    return holder
                (self.dir / key).unlink(missing_ok=True)  # its run is dead: take it over

    def release(self, keys) -> None:
        keys = [k for k in keys if k in self.mine]
        if not keys:
            return
        with self._lock():
            for key in keys:
                holder = self.read(key)
                if holder is not None and holder.get("run_id") == self.info["run_id"]:
                    (self.dir / key).unlink(missing_ok=True)
                self.mine.discard(key)

    def wait(self, key: str, holder: dict) -> None:
        """Until ``key`` is released or its holder is dead."""
        while True:
            now = self.read(key)
            if now is None or now.get("run_id") != holder.get("run_id") or not holder_alive(self.root, now):
                return
            time.sleep(POLL_S)

    def close(self) -> None:
        self.release(list(self.mine))
        if self._template is not None:
            self._template.unlink(missing_ok=True)
            self._template = None


def clear_dead(root: Path) -> int:
    """Unlink the leases, claims and claim templates of runs that are provably dead (a
    driver killed with -9 leaves them); returns how many. Their cells would be taken
    over anyway; this keeps ``state/`` from growing and lets a solo run skip re-checks."""
    root = Path(root)
    removed = 0
    with _Flock(root / STATE / "claims.lock"):
        for d in (root / STATE / "live", root / STATE / "claims"):
            if not d.is_dir():
                continue
            for path in d.iterdir():
                if path.name.endswith(".tmp"):
                    continue                      # being written
                try:
                    info = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                if isinstance(info, dict) and "run_id" in info and not holder_alive(root, info):
                    path.unlink(missing_ok=True)
                    removed += 1
    return removed


class _Flock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)                                # closing drops the lock


class Settler:
    """Decides, cell by cell, whether this run computes it (see the module doc).

    ``claimable(cells)`` yields the cells this run now holds and must compute; a cell
    found done in this experiment since planning is released and counted in
    ``by_others``; one done only in another experiment is kept claimed in ``copies``
    (the caller copies its row, then releases it); one a live run holds goes to
    ``waiting``. With ``force`` every claimed cell is computed again.
    """

    def __init__(self, claims: Claims, index, experiment: str, force: bool, out=sys.stdout):
        self.claims, self.index, self.experiment, self.force, self.out = claims, index, experiment, force, out
        self.by_others = 0
        self.copies: list = []
        self.waiting: list = []        # (cell, holder info)
        self._live = claims.root / STATE / "live"
        self._own_lease = f"{claims.info['run_id']}.json"
        self._stamp = None

    def _refresh(self) -> None:
        """Bring the index up to date before deciding about a claimed cell.

        Only a run holding a lease writes cell rows, so when no other lease exists and
        the lease directory is as it was before the last refresh (no run started or
        ended since), no row can have appeared but this run's own: skip the re-read.
        """
        try:
            stamp = os.stat(self._live).st_mtime_ns
            others = [n for n in os.listdir(self._live) if n != self._own_lease]
        except FileNotFoundError:
            stamp, others = None, []
        if (not others and stamp is not None and stamp == self._stamp
                and time.time_ns() - stamp > RACY_S * 1e9):
            return
        self._stamp = stamp
        self.index.refresh()

    def claimable(self, cells):
        for cell in cells:
            key = cell.cell_key
            holder = self.claims.claim(key)
            if holder is not None:
                self.waiting.append((cell, holder))
                continue
            if not self.force:
                self._refresh()
                if self.index.ok(key, self.experiment):
                    self.claims.release([key])
                    self.by_others += 1
                    continue
                if self.index.ok(key):
                    self.copies.append(key)
                    continue
            yield cell

    def wait(self) -> list:
        """Wait for every claim in ``waiting`` to go; return those cells to try again."""
        cells, announced = [], set()
        for cell, holder in self.waiting:
            run = holder.get("run_id")
            if run not in announced:
                n = sum(h.get("run_id") == run for _, h in self.waiting)
                print(f"waiting for {n} cell(s) claimed by run {run} (host {holder.get('host')}, "
                      f"pid {holder.get('pid')})", file=self.out, flush=True)
                announced.add(run)
            self.claims.wait(cell.cell_key, holder)
            cells.append(cell)
        self.waiting = []
        return cells
