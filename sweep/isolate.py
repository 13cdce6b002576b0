"""The serial executor's child process: cells run one after another in a process of
their own, so a cell that kills its process (os._exit, a segfault in compiled code,
the OOM killer) fails that cell instead of ending the sweep.

The child is started with multiprocessing's "spawn" method (a fresh interpreter: no
driver threads or locks copied into it, the same sys.path) and kept for the next cell,
so imports and JIT compilation are paid once per child, not once per cell. It runs
exactly ``sweep.execute.run_cell``, the function the Ray executor runs, on the same
plain-dict config, so the outcome is the same. A child that dies is replaced by a new
one for the next attempt.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG (prctl(2)): SIGKILL this process when the driver dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass


def serve(conn) -> None:
    """Child side: run every (cell_fn, config, app_retries) received, send the outcome."""
    from sweep.execute import run_cell

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the driver's to handle
    _die_with_parent()
    while True:
        try:
            cell_fn, config, app_retries = conn.recv()
        except EOFError:                           # the driver closed the pipe
            return
        conn.send(run_cell(cell_fn, config, app_retries))


class CellProcess:
    """Driver side of one child process."""

    def __init__(self):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(child,), name="sweep-cell", daemon=True)
        self.proc.start()
        child.close()

    def run(self, cell_fn: str, config: dict, app_retries: int):
        """The cell's outcome, or None when the child died running it."""
        try:
            self.conn.send((cell_fn, config, app_retries))
            return self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            return None

    def death(self) -> str:
        """How the child ended ("exit status 1", "killed by signal 9 (SIGKILL)"); reaps it."""
        self.conn.close()
        self.proc.join()
        code = self.proc.exitcode
        if code is not None and code < 0:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        return f"exit status {code}"

    def close(self) -> None:
        """End the child: EOF on its pipe, then SIGTERM if it is still busy with a cell."""
        self.conn.close()
        self.proc.join(timeout=1)
        if self.proc.exitcode is None:
            self.proc.terminate()
            self.proc.join()
