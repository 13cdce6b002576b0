"""Compile every numba kernel of the model once, into numba's on-disk cache.

    python -m kernel_model.warmup          # after an install or an upgrade; ~0.5-1 min once

The kernels are @njit(cache=True): the first process that calls one compiles it and
writes the machine code to the cache, every later process (a sweep's Ray workers, the
next sweep) loads it in a fraction of a second. Without this step the first cells of
the first sweep each compile the kernels themselves, in every worker at once.

Where the cache lives is numba's choice: the package's __pycache__ when writable, else
a per-user cache directory; NUMBA_CACHE_DIR overrides both (e.g. for a read-only,
non-editable install shared by several users, or a cluster's shared filesystem). Numba
keys a cached kernel on its own source file only, so every kernel here keeps what it
inlines in its own file; --force drops the cached kernels first anyway.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time


# One cell's config, written out (the warm-up needs no Hydra and no conf/ directory):
# a 4K kernel, mTHP and PMD THP on fragmented memory, the Neoverse N1 TLB.
_CELL = {
    "seed": 0,
    "kernel": {"page_size": "4K", "va_bits": 48},
    "process": {"page_size": "kernel"},
    "folio": {"anon": "mthp", "mthp_sizes": ["16K", "64K"], "thp_pmd": True, "pagecache": "fixed",
              "readahead": "128K"},
    "arch": {"contpte": True, "native_pgtable": "off"},
    "memory": {"size": "256M", "fragmentation": 0.5, "fragmentation_order": None},
    "abi": {"overhang": "anon_fault"},
    "tlb": {"name": "neoverse_n1", "replacement": "lru", "coalesce_contig": True,
            "l1": {"entries": 48, "ways": 48, "latency": 1}, "l2": {"entries": 1280, "ways": 5, "latency": 3},
            "walk_cache": {"entries": 64, "ways": 4, "latency": 1}, "l1d": {"size": "64K", "ways": 4, "latency": 4},
            "l2d": {"size": "1M", "ways": 8, "latency": 11}, "line_size": 64, "mem_latency": 208,
            "model_data_lines": True},
    "workload": {"name": "warmup", "kind": "synthetic", "pattern": "uniform", "working_set": "8M",
                 "accesses": 4000, "write_ratio": 0.3},
}


def warm() -> float:
    """Run two small cells that reach every kernel (both table walks: Linux, and native
    with fallbacks; the TLB loop; the fault-event scan; the buddy allocator with
    compaction) and the trace readers' unpacker. Returns the seconds it took."""
    import numpy as np

    t = time.perf_counter()
    from kernel_model.simulate import simulate
    from workloads.trace import RECORD, _records

    simulate(_CELL)
    simulate(dict(_CELL, process={"page_size": "64K"}, arch={"contpte": True, "native_pgtable": "on_demand"}))
    _records(np.zeros(4, RECORD), 0, "warmup")
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kernel_model.warmup", description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="drop the cached kernels of kernel_model and workloads "
                                                         "first, then compile them again")
    args = ap.parse_args(argv)
    if args.force:
        _drop_caches()
    where = os.environ.get("NUMBA_CACHE_DIR") or "the package's __pycache__ (or numba's per-user cache)"
    print(f"compiling the model's numba kernels into {where} ...", flush=True)
    print(f"done in {warm():.1f} s; later processes load them from the cache")
    return 0


def _drop_caches() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    dirs = [root / "kernel_model", root / "kernel_model" / "arch" / "arm64", root / "workloads"]
    if os.environ.get("NUMBA_CACHE_DIR"):
        shutil.rmtree(os.environ["NUMBA_CACHE_DIR"], ignore_errors=True)
    for d in dirs:
        for f in list((d / "__pycache__").glob("*.nbi")) + list((d / "__pycache__").glob("*.nbc")):
            f.unlink()


if __name__ == "__main__":
    sys.exit(main())
