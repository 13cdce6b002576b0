"""Sweep-engine overhead and scaling, measured in one run.

    python bench/bench_engine.py [--cells 200] [--spin-cells 8] [--spin-s 0.5]

1. Overhead per cell (dispatch + result write + compaction) with a trivial cell, for
   the serial executor and for Ray (Ray already started; its start-up is reported
   apart). Measured from the runs row: started_at -> finished_at of the execute phase,
   divided by the number of cells. Target: < 50 ms per cell.
2. Scaling: a CPU-bound cell (--spin-s seconds of pure Python each) on a local Ray
   with 1 and then 2 CPUs; speedup = t(1) / t(2), efficiency = speedup / 2.
   Target: >= 90 %. Needs 2 idle cores: other load on the machine lowers it, so the
   workers' busy fraction (cell seconds / (workers x wall)) is printed too.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SPIN_S = float(os.environ.get("BENCH_SPIN_S", "0.5"))


def trivial(cfg):
    return {"seed": cfg["seed"]}


def spin(cfg):
    """About BENCH_SPIN_S seconds of CPU (fixed iteration count, calibrated by the driver)."""
    return {"spin": spin_n(int(os.environ.get("BENCH_SPIN_ITERS", "1000000"))) % 7}


def calibrate(seconds: float) -> int:
    n = 200000
    t = time.perf_counter()
    spin_n(n)
    dt = time.perf_counter() - t
    return max(1, int(n * seconds / dt))


def spin_n(n: int) -> int:
    x = 0
    for i in range(n):
        x += i * i
    return x


def execute_seconds(results: Path) -> tuple:
    from sweep.query import connect

    (started, finished, cells), = connect(results).sql(
        "select started_at, finished_at, cells_ok from runs order by started_at desc limit 1").fetchall()
    return (finished - started).total_seconds(), cells


def cell_seconds(results: Path) -> float:
    from sweep.query import connect

    return connect(results).sql("select sum(duration_s) from cells").fetchall()[0][0]


def sweep(results: Path, executor: str, cell: str, nr_cells: int) -> tuple:
    from sweep.app import run

    t = time.perf_counter()
    code = run([f"executor={executor}", f"cell_fn=bench.bench_engine:{cell}", f"results.dir={results}",
                "sweep.progress=false", "sweep.force=true", f'+sweep.grid.seed="range(0,{nr_cells})"'],
               out=io.StringIO())
    wall = time.perf_counter() - t
    if code != 0:
        raise SystemExit(f"sweep exited {code}")
    exec_s, cells = execute_seconds(results)
    return wall, exec_s, cells


def ray_start(num_cpus: int) -> float:
    import ray

    t = time.perf_counter()
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=200)
    ap.add_argument("--spin-cells", type=int, default=8)
    ap.add_argument("--spin-s", type=float, default=SPIN_S)
    args = ap.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    os.environ["BENCH_SPIN_ITERS"] = str(calibrate(args.spin_s))
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wall, exec_s, n = sweep(tmp / "serial", "serial", "trivial", args.cells)
        print(f"serial  trivial x{n}: {1000 * exec_s / n:6.2f} ms/cell execute "
              f"({exec_s:.2f} s), {wall:.2f} s wall incl. plan")
        init_s = ray_start(2)
        try:
            sweep(tmp / "warm", "ray", "trivial", 4)          # workers up, function exported
            wall, exec_s, n = sweep(tmp / "ray", "ray", "trivial", args.cells)
            print(f"ray     trivial x{n}: {1000 * exec_s / n:6.2f} ms/cell execute "
                  f"({exec_s:.2f} s), {wall:.2f} s wall incl. plan; ray.init {init_s:.1f} s")
        finally:
            ray.shutdown()
        times, busy = {}, {}
        for cpus in (1, 2):
            ray_start(cpus)
            try:
                sweep(tmp / f"warm{cpus}", "ray", "trivial", cpus)
                _, times[cpus], _ = sweep(tmp / f"spin{cpus}", "ray", "spin", args.spin_cells)
                busy[cpus] = cell_seconds(tmp / f"spin{cpus}") / (cpus * times[cpus])
            finally:
                ray.shutdown()
        speedup = times[1] / times[2]
        print(f"scaling spin x{args.spin_cells} ({args.spin_s:.2f} s each): 1 worker {times[1]:.2f} s, "
              f"2 workers {times[2]:.2f} s; speedup {speedup:.2f}, efficiency {speedup / 2:.0%}")
        # Busy fraction: the cells' own seconds over workers x wall. It shows whether the
        # engine keeps every worker fed, independent of other load slowing the cells.
        print(f"        workers busy: {busy[1]:.0%} with 1, {busy[2]:.0%} with 2")
        print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
