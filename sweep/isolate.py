"""The serial executor's child process: cells run one after another in a process of
their own, so a cell that kills its process (os._exit, a segfault in compiled code,
the OOM killer) fails that cell instead of ending the sweep.

The child is a fresh interpreter, ``python -m sweep.isolate``, with the driver's
sys.path (so it imports exactly the modules the driver imports), fed over a pair of
pipes with multiprocessing's pickling Connection. It is not a multiprocessing
"spawn" child: those re-import the driver's ``__main__``, which fails for a driver
read from stdin and re-runs a script that calls ``sweep.app.run`` without a
``__name__`` guard. It is kept for the next cell, so imports and JIT compilation
are paid once per child, not once per cell, and runs exactly
``sweep.execute.run_cell``, the function the Ray executor runs, on the same plain-dict
config, so the outcome is the same. A child that dies is replaced for the next attempt.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from multiprocessing.connection import Connection


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG (prctl(2)): SIGKILL this process when the driver dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass


def main(read_fd: int, write_fd: int) -> int:
    """Child side: run every (cell_fn, config, app_retries) received, send the outcome."""
    from sweep.execute import run_cell

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the driver's to handle
    _die_with_parent()
    tasks, outcomes = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    while True:
        try:
            cell_fn, config, app_retries = tasks.recv()
        except EOFError:                           # the driver closed the pipe
            return 0
        outcomes.send(run_cell(cell_fn, config, app_retries))


class CellProcess:
    """Driver side of one child process."""

    def __init__(self):
        task_r, task_w = os.pipe()
        out_r, out_w = os.pipe()
        path = [p or os.getcwd() for p in sys.path]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys(path)))
        self.proc = subprocess.Popen([sys.executable, "-m", "sweep.isolate", str(task_r), str(out_w)],
                                     pass_fds=(task_r, out_w), env=env, stdin=subprocess.DEVNULL)
        os.close(task_r)
        os.close(out_w)
        self.tasks = Connection(task_w, readable=False)
        self.outcomes = Connection(out_r, writable=False)

    def run(self, cell_fn: str, config: dict, app_retries: int):
        """The cell's outcome, or None when the child died running it."""
        try:
            self.tasks.send((cell_fn, config, app_retries))
            return self.outcomes.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            return None

    def death(self) -> str:
        """How the child ended ("exit status 1", "killed by signal 9 (SIGKILL)"); reaps it."""
        self._close_pipes()
        code = self.proc.wait()
        if code < 0:
            try:
                return f"killed by signal {-code} ({signal.Signals(-code).name})"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit status {code}"

    def close(self) -> None:
        """End the child: EOF on its pipe, then SIGTERM if it is still busy with a cell."""
        self._close_pipes()
        try:
            self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait()

    def _close_pipes(self) -> None:
        self.tasks.close()
        self.outcomes.close()


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
