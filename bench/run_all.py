"""Run every benchmark and print one summary table: figure, target, measured, the baseline
measured in the same run, their ratio, PASS/MISS.

    python bench/run_all.py                 # quick sizes: a few minutes on 2 cores
    python bench/run_all.py --full          # the sizes the targets are stated for
    python bench/run_all.py --only tlb,pgtable --json summary.json

Each bench runs as its own subprocess (a fresh interpreter: no bench sees another's heap,
numba caches or Ray), its output streamed as it goes. The benches in bench/ write their
figures with --json; bench_engine.py (the sweep engine's, not edited here) is read from
its printed lines. A bench that fails or prints nothing parsable is a MISS row of its own.
The load average is printed at the start and the end: on a shared 2-core machine the
timings, and most of all the 1 -> 2 worker scaling, depend on it.

Exit status: 0 if every judged figure PASSes, 1 if any MISSes (or a bench failed).
Benchmarks are not tests: nothing under tests/ asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

# name -> (script, quick args, full args). Quick sizes keep the whole run to a few minutes
# on 2 cores; --full uses each bench's defaults (the target sizes) plus the larger memory points.
BENCHES = {
    "engine": ("bench_engine.py", ["--cells", "100", "--spin-cells", "12", "--spin-s", "1.0"],
               ["--cells", "200", "--spin-cells", "16", "--spin-s", "1.0"]),
    "tlb": ("bench_tlb.py", ["--n", "20000000", "--naive-n", "500000"], []),
    "pgtable": ("bench_pgtable.py", ["--repeat", "5"], ["--repeat", "9"]),
    "page_alloc": ("bench_page_alloc.py", ["--ops", "50000", "--compact-frames", "524288"], []),
    "memory": ("bench_memory.py", ["--sizes", "8,32", "--cell"], ["--sizes", "16,64,256", "--cell"]),
    "faults": ("bench_faults.py", [], ["--full"]),
    # a recorded sort -n trace (cached under ~/.cache/pagesweep): ~4.6 M accesses quick, ~27 M full
    "trace": ("bench_trace.py", ["--numbers", "4000"], ["--numbers", "20000", "--profile"]),
}
ENGINE_OVERHEAD_MS = 50.0   # target: engine overhead per cell
ENGINE_EFFICIENCY = 0.90    # target: 1 -> 2 worker scaling efficiency


def engine_figures(out: str) -> list[dict]:
    """The figures of bench_engine.py's printed lines (its format, see its main())."""
    serial = re.search(r"^serial\s+trivial x(\d+):\s+([\d.]+) ms/cell", out, re.M)
    ray = re.search(r"^ray\s+trivial x(\d+):\s+([\d.]+) ms/cell.*ray\.init ([\d.]+) s", out, re.M)
    spin = re.search(r"^scaling spin x(\d+) \(([\d.]+) s each\): 1 worker ([\d.]+) s, 2 workers ([\d.]+) s; "
                     r"speedup ([\d.]+), efficiency (\d+)%", out, re.M)
    busy = re.search(r"workers busy: (\d+)% with 1, (\d+)% with 2", out)
    if not (serial and ray and spin):
        raise ValueError("bench_engine.py printed none of the serial / ray / scaling lines expected")
    s_ms, r_ms = float(serial[2]), float(ray[2])
    t1, t2, speedup = float(spin[3]), float(spin[4]), float(spin[5])
    return [
        dict(figure=f"engine overhead per cell, Ray, {ray[1]} trivial cells", target=f"< {ENGINE_OVERHEAD_MS:g} ms",
             measured=f"{r_ms:.2f} ms", baseline=f"serial {s_ms:.2f} ms/cell", ratio=r_ms / s_ms,
             ok=r_ms < ENGINE_OVERHEAD_MS, note=f"ray.init {ray[3]} s apart"),
        dict(figure=f"engine overhead per cell, serial, {serial[1]} trivial cells",
             target=f"< {ENGINE_OVERHEAD_MS:g} ms", measured=f"{s_ms:.2f} ms", baseline="", ratio=None,
             ok=s_ms < ENGINE_OVERHEAD_MS, note="dispatch + result write + compaction"),
        dict(figure=f"engine 1 -> 2 workers, {spin[1]} cells of {spin[2]} s CPU",
             target=f">= {ENGINE_EFFICIENCY:.0%}", measured=f"{speedup / 2:.0%} efficiency",
             baseline=f"1 worker {t1:.2f} s", ratio=speedup, ok=speedup / 2 >= ENGINE_EFFICIENCY,
             note=f"ratio = speedup; 2 workers {t2:.2f} s; needs 2 idle cores"
                  + (f"; workers busy {busy[1]}% with 1, {busy[2]}% with 2 (cell s / workers x wall)" if busy else "")),
    ]


def run_bench(name: str, full: bool, tmp: Path) -> list[dict]:
    script, quick, full_args = BENCHES[name]
    cmd = [sys.executable, str(BENCH / script)] + (full_args if full else quick)
    out_json = tmp / f"{name}.json"
    if name != "engine":
        cmd += ["--json", str(out_json)]
    print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        print(f"  {line}", end="", flush=True)
    code = proc.wait()
    print(f"  ({name}: exit {code}, {time.perf_counter() - t:.1f} s)", flush=True)
    try:
        figures = engine_figures("".join(lines)) if name == "engine" else json.loads(out_json.read_text())
    except (OSError, ValueError) as e:
        return [dict(figure=f"{name}: bench failed", target="runs", measured=f"exit {code}", baseline="",
                     ratio=None, ok=False, note=str(e))]
    # bench_memory exits 1 when memory grows with the VA span: its rows say which.
    if code not in (0, 1) or (code == 1 and name != "memory"):
        figures.append(dict(figure=f"{name}: bench exit status", target="0", measured=str(code), baseline="",
                            ratio=None, ok=False, note="see its output above"))
    return figures


def verdict(ok) -> str:
    return "info" if ok is None else ("PASS" if ok else "MISS")


def table(figures: list[dict]) -> str:
    head = ("figure", "target", "measured", "baseline (same run)", "ratio", "result")
    rows = [(f["figure"], f["target"], f["measured"], f.get("baseline", ""),
             "" if f.get("ratio") is None else f"{f['ratio']:.2f}x", verdict(f.get("ok"))) for f in figures]
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    fmt = "  ".join(f"{{:{'>' if i == 4 else '<'}{w}}}" for i, w in enumerate(widths))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt.format(*head), sep] + [fmt.format(*r) for r in rows])


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="the full sizes (longer: engine 16 x 1 s spin cells, "
                                                        "memory points up to 256 MiB, every bench's defaults)")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHES)}")
    ap.add_argument("--json", help="also write the summary rows to this file")
    args = ap.parse_args(argv)
    names = list(BENCHES) if not args.only else args.only.split(",")
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise SystemExit(f"--only: unknown bench {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    start_load, t = load(), time.perf_counter()
    print(f"bench/run_all.py ({'full' if args.full else 'quick'} sizes); at start: {start_load}", flush=True)
    figures = []
    with tempfile.TemporaryDirectory(prefix="pagesweep-bench-") as tmp:
        for name in names:
            figures += run_bench(name, args.full, Path(tmp))
    print(f"\nSummary ({'full' if args.full else 'quick'} sizes, {time.perf_counter() - t:.0f} s; "
          f"at start: {start_load}; at end: {load()})\n")
    print(table(figures))
    notes = [(f["figure"], f["note"]) for f in figures if f.get("note")]
    if notes:
        print("\nnotes:")
        for fig, note in notes:
            print(f"  {fig}: {note}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 1 if any(f.get("ok") is False for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
