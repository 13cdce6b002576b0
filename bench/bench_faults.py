"""The fault path against the kernel it imitates: one access sequence replayed on this
machine's Linux and through simulate().

    python bench/bench_faults.py [--working-set 512M] [--accesses 1000000] [--write-ratio 0.3]
                                 [--full] [--no-reference] [--json OUT]

The sequence is the `random` workload's (uniform 8-byte words over --working-set, a
store with probability --write-ratio, seed 0), taken from workloads.build() so both
sides see exactly the same accesses.

1. Kernel: bench/fault_replay.c, compiled with `cc -O2` at run time, mmaps a private
   anonymous region with MADV_NOHUGEPAGE (base pages only), replays the loads and
   stores in order and reports the replay's wall time, its minor faults (getrusage) and
   the growth of Anonymous in /proc/self/smaps_rollup; its CPU time (user + sys) is the
   child's (getrusage RUSAGE_CHILDREN around it): the whole process, start, reading the
   access file and exit (freeing the region) included. Skipped, with a message, when the
   host is not Linux or there is no `cc`.
2. Model: simulate() of the same workload with kernel=4k, folio.anon=base (numba
   compiled beforehand by a small cell), timed whole and split into faults
   (Runner._fault_in), TLB model (Runner._run_tlb) and the rest, in wall and CPU time
   (process_time).
3. The per-fault reference path (simulate(fault_path="reference")) on the same cell,
   for the speed-up of the batch (--no-reference skips it).

Figures: model time / kernel time in wall time (target <= 1.0) and in CPU time (info:
steadier on a shared machine, but the kernel's CPU time covers its whole process, more
than the timed replay); the faults alone / kernel time (info); reference / batch (info). The model's `faults` and `anon_bytes` must equal the
kernel's minor faults and Anonymous growth exactly, or the bench exits 1.
--full: 1 GiB, 2 M accesses, 30% stores.
"""

from __future__ import annotations

import argparse
import json
import platform
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


def cell_config(working_set: str, accesses: int, write_ratio: float) -> dict:
    from tests.golden.cells import compose

    return compose("kernel=4k", "process=kernel", "folio=base", "workload=random",
                   f"workload.working_set={working_set}", f"workload.accesses={accesses}",
                   f"workload.write_ratio={write_ratio}", "seed=0")


def accesses_of(cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    """The workload's Access phases, concatenated: (offsets, is_write)."""
    import workloads
    from workloads.phases import Access

    offs, writes = [], []
    for phase in workloads.build(cfg["workload"], seed=int(cfg["seed"])).phases():
        if isinstance(phase, Access):
            offs.append(phase.offsets)
            writes.append(phase.is_write)
    return np.concatenate(offs), np.concatenate(writes)


def run_kernel(offsets: np.ndarray, writes: np.ndarray, working_set: int) -> dict | str:
    """The replay on the running kernel: {seconds, minflt, anon_bytes}, or why it was skipped."""
    if platform.system() != "Linux":
        return f"host is {platform.system()}, not Linux"
    cc = shutil.which("cc")
    if cc is None:
        return "no C compiler (`cc`) on PATH"
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        exe, data = Path(tmp) / "fault_replay", Path(tmp) / "accesses.bin"
        subprocess.run([cc, "-O2", "-o", str(exe), str(Path(__file__).with_name("fault_replay.c"))], check=True)
        (offsets.astype(np.uint64) | writes.astype(np.uint64)).astype("<u8").tofile(data)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run([str(exe), str(data), str(working_set), "1"], check=True, capture_output=True,
                             text=True).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    got = dict(kv.split("=") for kv in out.split())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": float(got["seconds"]), "cpu": cpu, "minflt": int(got["minflt"]),
            "anon_bytes": int(got["anon_kb"]) * 1024}


def run_model(cfg: dict, fault_path: str = "batch") -> tuple[dict, dict]:
    """simulate(cfg) timed whole and per part: (metrics, seconds by part); wall time under
    the part's name, CPU time (process_time) under "cpu_" + name."""
    from kernel_model import simulate as sim

    spent = {"faults": 0.0, "tlb": 0.0, "cpu_faults": 0.0, "cpu_tlb": 0.0}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] += time.perf_counter() - t
                spent["cpu_" + name] += time.process_time() - c
        return wrapper

    runner = sim.Runner
    orig = runner._fault_in, runner._run_tlb
    runner._fault_in, runner._run_tlb = timed("faults", orig[0]), timed("tlb", orig[1])
    try:
        t, c = time.perf_counter(), time.process_time()
        metrics = sim.simulate(cfg, fault_path=fault_path)
        spent["total"], spent["cpu_total"] = time.perf_counter() - t, time.process_time() - c
    finally:
        runner._fault_in, runner._run_tlb = orig
    for p in ("", "cpu_"):
        spent[p + "other"] = spent[p + "total"] - spent[p + "faults"] - spent[p + "tlb"]
    return metrics, spent


def main(argv=None) -> int:
    from kernel_model.simulate import simulate
    from kernel_model.units import parse_size

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--working-set", default="512M")
    ap.add_argument("--accesses", type=int, default=1_000_000)
    ap.add_argument("--write-ratio", type=float, default=0.3)
    ap.add_argument("--full", action="store_true", help="1 GiB, 2 M accesses, 30%% stores")
    ap.add_argument("--no-reference", action="store_true", help="skip the per-fault reference path")
    ap.add_argument("--json", help="write the summary figures to this file (bench/run_all.py)")
    args = ap.parse_args(argv)
    if args.full:
        args.working_set, args.accesses, args.write_ratio = "1G", 2_000_000, 0.3
    ws = parse_size(args.working_set, what="--working-set")
    cfg = cell_config(args.working_set, args.accesses, args.write_ratio)
    label = f"{args.working_set} uniform, {args.accesses:,} accesses, {args.write_ratio:.0%} stores, 4K base pages"
    print(f"bench_faults: {label}", flush=True)
    offsets, writes = accesses_of(cfg)

    kernel = run_kernel(offsets, writes, ws)
    figures, failed = [], False
    if isinstance(kernel, str):
        print(f"kernel replay skipped: {kernel}")
        figures.append(dict(figure=f"simulate() / kernel replay, {label}", target="<= 1.0", measured="skipped",
                            baseline="", ratio=None, ok=None, note=f"kernel replay skipped: {kernel}"))
    else:
        print(f"kernel ({platform.release()}): {kernel['seconds']:.2f} s wall (replay), {kernel['cpu']:.2f} s cpu "
              f"(process), {kernel['minflt']:,} minor faults, "
              f"Anonymous {kernel['anon_bytes']:,} bytes", flush=True)

    simulate(cell_config("4M", 2000, 0.3))  # numba compiles (and caches) its kernels here, untimed
    metrics, spent = run_model(cfg)
    print(f"model (batch): {spent['total']:.2f} s = faults {spent['faults']:.2f} s + TLB {spent['tlb']:.2f} s "
          f"+ other {spent['other']:.2f} s wall; {metrics['faults']:,} faults, anon {metrics['anon_bytes']:,} bytes",
          flush=True)
    print(f"model (batch): {spent['cpu_total']:.2f} s = faults {spent['cpu_faults']:.2f} s + TLB "
          f"{spent['cpu_tlb']:.2f} s + other {spent['cpu_other']:.2f} s cpu", flush=True)
    if not isinstance(kernel, str):
        same = metrics["faults"] == kernel["minflt"] and metrics["anon_bytes"] == kernel["anon_bytes"]
        if not same:
            failed = True
            print(f"MISMATCH: model faults {metrics['faults']:,} anon {metrics['anon_bytes']:,} vs kernel "
                  f"{kernel['minflt']:,} / {kernel['anon_bytes']:,}")
        ratio = spent["total"] / kernel["seconds"]
        cpu_ratio = spent["cpu_total"] / kernel["cpu"] if kernel["cpu"] > 0 else float("inf")
        figures += [
            dict(figure=f"simulate() / kernel replay, {label}", target="<= 1.0", measured=f"{spent['total']:.2f} s",
                 baseline=f"kernel {kernel['seconds']:.2f} s", ratio=ratio, ok=ratio <= 1.0 and same,
                 note=f"faults {metrics['faults']:,} and anon bytes {'equal' if same else 'DIFFER'}; "
                      f"TLB {spent['tlb']:.2f} s, other {spent['other']:.2f} s"),
            dict(figure="fault path alone (Runner._fault_in) / kernel replay", target="info",
                 measured=f"{spent['faults']:.2f} s", baseline=f"kernel {kernel['seconds']:.2f} s",
                 ratio=spent["faults"] / kernel["seconds"], ok=None,
                 note=f"{spent['faults'] / max(metrics['faults'], 1) * 1e6:.2f} us per fault"),
            dict(figure=f"simulate() / kernel replay, CPU time, {label}", target="info",
                 measured=f"{spent['cpu_total']:.2f} s cpu", baseline=f"kernel process {kernel['cpu']:.2f} s cpu",
                 ratio=cpu_ratio, ok=None,
                 note=f"faults {spent['cpu_faults']:.2f} s, TLB {spent['cpu_tlb']:.2f} s, other "
                      f"{spent['cpu_other']:.2f} s cpu; the kernel's whole process (start, file read, exit)"),
        ]
        print(f"model / kernel: {ratio:.2f}x wall (faults alone {spent['faults'] / kernel['seconds']:.2f}x), "
              f"{cpu_ratio:.2f}x cpu (faults alone {spent['cpu_faults'] / max(kernel['cpu'], 1e-9):.2f}x)")
    if not args.no_reference:
        ref, rspent = run_model(cfg, "reference")
        if ref != metrics:
            failed = True
            print("MISMATCH: the per-fault reference path gives other metrics than the batch")
        print(f"model (per-fault reference): {rspent['total']:.2f} s = faults {rspent['faults']:.2f} s + "
              f"TLB {rspent['tlb']:.2f} s + other {rspent['other']:.2f} s")
        figures.append(dict(figure="per-fault reference path / batch, whole simulate()", target="info",
                            measured=f"{spent['total']:.2f} s", baseline=f"reference {rspent['total']:.2f} s",
                            ratio=rspent["total"] / spent["total"], ok=None if ref == metrics else False,
                            note=f"faults alone: {rspent['faults']:.2f} s vs {spent['faults']:.2f} s"))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
