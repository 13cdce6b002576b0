"""A real program's trace through a whole cell: time against a naive C TLB simulator, and
peak memory against the trace's length.

    python bench/bench_trace.py [--numbers 20000] [--json OUT] [--profile]

The trace: valgrind lackey (`valgrind --tool=lackey --trace-mem=yes`) of `sort -n` over
--numbers seeded random integers (20000 numbers: ~27 M data accesses, 1.6 GB of text),
recorded once and kept outside git under ~/.cache/pagesweep (PAGESWEEP_CACHE overrides),
then converted to the compact .npy with `python -m workloads.trace convert` (its time is
the text-parse figure, info).

(a) time: simulate() of one cell on the .npy (base folios, no contpte, no native table,
no PMD THP, the Neoverse N1 TLB: a 48-entry fully associative L1, 1280 x 5 L2) in a fresh
process after the numba kernels are loaded, against bench/naive_tlb.c (compiled here with
cc -O2: the same L1/L2, LRU by timestamps, a linear scan per access, no page table and no
data caches) over the same file; their L1/L2 miss counts must be equal or the bench
stops. CPU time of each (the machine is shared), best of --repeat; at 4K and 64K pages.
Target: model <= C (ratio model / C <= 1).
(b) memory: VmHWM of a fresh process running the cell on the first 2 M accesses, and on
the whole trace; (whole - prefix) / (accesses between them) <= 1 byte per access.
--json OUT writes the summary figures for bench/run_all.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workloads.trace import _HEADER_BYTES, RECORD, _record_header  # noqa: E402

CACHE = Path(os.environ.get("PAGESWEEP_CACHE", Path.home() / ".cache" / "pagesweep"))
PREFIX = 2_000_000

# The cell, run in a fresh interpreter: prints one JSON line.
_CELL = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from kernel_model.warmup import _CELL
from kernel_model.simulate import simulate
def cfg(path, kernel):
    return dict(_CELL, kernel={"page_size": kernel, "va_bits": 48}, memory={"size": "2G", "fragmentation": 0.0,
                "fragmentation_order": None}, folio=dict(_CELL["folio"], anon="base", thp_pmd=False),
                arch={"contpte": False, "native_pgtable": "off"},
                workload={"name": "trace", "kind": "trace", "path": path})
path, kernel, warm, profile = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
if warm != "-":
    simulate(cfg(warm, kernel))  # load the numba kernels (a sweep worker does this once)
c0, w0 = time.process_time(), time.perf_counter()
if profile:
    import cProfile, pstats, io
    pr = cProfile.Profile(); pr.enable(); m = simulate(cfg(path, kernel)); pr.disable()
    s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(12); print(s.getvalue(), file=sys.stderr)
else:
    m = simulate(cfg(path, kernel))
cpu, wall = time.process_time() - c0, time.perf_counter() - w0
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0] * 1024
print(json.dumps(dict(cpu=cpu, wall=wall, hwm=hwm, accesses=m["accesses"], l1=m["l1_tlb_misses"],
                      l2=m["l2_tlb_misses"])))
"""


def record_trace(numbers: int) -> Path:
    """The lackey text of `sort -n` over `numbers` seeded integers, recorded once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    out = CACHE / f"sort_n_{numbers}.lackey.txt"
    if out.exists():
        return out
    for tool in ("valgrind", "sort"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench_trace: {tool} is needed to record the trace (apt-get install valgrind)")
    rng = random.Random(1)
    data = CACHE / f"sort_n_{numbers}.input"
    data.write_text("".join(f"{rng.randrange(10 ** 9)}\n" for _ in range(numbers)))
    tmp = out.with_name(out.name + ".tmp")
    print(f"recording {out} (valgrind lackey of sort -n over {numbers} numbers) ...", flush=True)
    t = time.perf_counter()
    subprocess.run(["valgrind", "--tool=lackey", "--trace-mem=yes", f"--log-file={tmp}", "sort", "-n", str(data)],
                   check=True, stdout=subprocess.DEVNULL)
    os.replace(tmp, out)
    print(f"  recorded in {time.perf_counter() - t:.0f} s, {out.stat().st_size / 1e9:.2f} GB", flush=True)
    return out


def convert_trace(text: Path) -> tuple[Path, float, float]:
    """The .npy of the text trace; returns it and the wall and CPU seconds the conversion took."""
    npy = text.with_suffix(".npy")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "workloads.trace", "convert", "--quiet", str(text), str(npy)],
                       env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"bench_trace: convert failed: {r.stderr}")
    wall = time.perf_counter() - t
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return npy, wall, ru.ru_utime + ru.ru_stime - before.ru_utime - before.ru_stime


def prefix_npy(npy: Path, n: int) -> Path:
    """The first n accesses of a compact trace, as a compact trace (cached)."""
    out = npy.with_name(f"{npy.stem}.prefix{n}.npy")
    if not out.exists():
        rec = np.load(npy, mmap_mode="r")
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(_record_header(min(n, len(rec))))
            f.write(np.ascontiguousarray(rec[:n]).tobytes())
        os.replace(tmp, out)
    return out


def run_cell(path: Path, kernel: str, warm: str, profile=False) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", _CELL, str(ROOT), str(path), kernel, warm, "1" if profile else "0"],
                       env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"bench_trace: the cell failed:\n{r.stderr}")
    if profile:
        print(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_c(exe: Path, npy: Path, shift: int) -> dict:
    t = time.perf_counter()
    proc = subprocess.Popen([str(exe), str(npy), str(_HEADER_BYTES), str(RECORD.itemsize), str(shift)],
                            stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, ru = os.wait4(proc.pid, 0)
    proc.stdout.close()
    if status:
        raise SystemExit(f"bench_trace: naive_tlb failed ({status})")
    n, l1, l2 = map(int, out.split())
    return dict(cpu=ru.ru_utime + ru.ru_stime, wall=time.perf_counter() - t, accesses=n, l1=l1, l2=l2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--numbers", type=int, default=20000, help="numbers sort -n sorts (20000: ~27 M accesses)")
    ap.add_argument("--repeat", type=int, default=2, help="best of this many runs of each timing")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of the 4K cell")
    ap.add_argument("--json", help="write the summary figures to this file (bench/run_all.py)")
    args = ap.parse_args(argv)

    text = record_trace(args.numbers)
    npy, conv_wall, conv_cpu = convert_trace(text)
    nacc = len(np.load(npy, mmap_mode="r"))
    print(f"trace {text.name}: {nacc:,d} data accesses; convert to .npy: {conv_wall:.1f} s wall, "
          f"{conv_cpu:.1f} s cpu ({text.stat().st_size / 1e6 / conv_wall:.0f} MB/s of text)", flush=True)
    figures = [dict(figure=f"trace text -> .npy convert, {nacc / 1e6:.1f} M accesses", target="info",
                    measured=f"{conv_cpu:.1f} s cpu", baseline="", ratio=None, ok=None,
                    note=f"{conv_wall:.1f} s wall, {text.stat().st_size / 1e9:.2f} GB of lackey text")]

    tmp = Path(tempfile.mkdtemp(prefix="bench-trace-"))
    try:
        exe = tmp / "naive_tlb"
        subprocess.run(["cc", "-O2", "-o", str(exe), str(ROOT / "bench" / "naive_tlb.c")], check=True)
        warm = prefix_npy(npy, 10000)
        for kernel, shift in (("4K", 12), ("64K", 16)):
            cells = [run_cell(npy, kernel, str(warm)) for _ in range(args.repeat)]
            cs = [run_c(exe, npy, shift) for _ in range(args.repeat)]
            cell, c = min(cells, key=lambda r: r["cpu"]), min(cs, key=lambda r: r["cpu"])
            if (cell["accesses"], cell["l1"], cell["l2"]) != (c["accesses"], c["l1"], c["l2"]):
                raise SystemExit(f"bench_trace: the model and naive_tlb disagree at {kernel}: "
                                 f"{cell} vs {c}")
            ratio = cell["cpu"] / c["cpu"]
            print(f"{kernel:>3} cell {cell['cpu']:.2f} s cpu ({cell['wall']:.2f} s wall)  naive C {c['cpu']:.2f} s cpu "
                  f"({c['wall']:.2f} s wall)  ratio {ratio:.2f}  misses l1 {c['l1']:,d} l2 {c['l2']:,d} (equal)",
                  flush=True)
            figures.append(dict(figure=f"trace cell on .npy, {kernel}, {nacc / 1e6:.1f} M accesses (sort -n)",
                                target="<= naive C", measured=f"{cell['cpu']:.2f} s cpu",
                                baseline=f"naive C {c['cpu']:.2f} s cpu", ratio=ratio, ok=ratio <= 1.0,
                                note=f"walls: cell {cell['wall']:.2f} s, C {c['wall']:.2f} s; "
                                     f"l1 {c['l1']:,d} l2 {c['l2']:,d} misses, equal"))
        if args.profile:
            run_cell(npy, "4K", str(warm), profile=True)

        pre = prefix_npy(npy, PREFIX)
        npre = len(np.load(pre, mmap_mode="r"))
        a, b = run_cell(pre, "4K", "-"), run_cell(npy, "4K", "-")
        per = (b["hwm"] - a["hwm"]) / max(1, nacc - npre)
        print(f"peak RSS: {a['hwm'] / 2**20:.0f} MiB for {npre:,d} accesses, {b['hwm'] / 2**20:.0f} MiB for "
              f"{nacc:,d}: {per:.3f} bytes per access", flush=True)
        figures.append(dict(figure=f"trace cell peak RSS growth, {npre / 1e6:.0f} M -> {nacc / 1e6:.1f} M accesses",
                            target="<= 1 B/access", measured=f"{per:.3f} B/access",
                            baseline=f"{a['hwm'] / 2**20:.0f} MiB at {npre / 1e6:.0f} M", ratio=None, ok=per <= 1.0,
                            note=f"VmHWM {b['hwm'] / 2**20:.0f} MiB for the whole trace (fresh process each)"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
