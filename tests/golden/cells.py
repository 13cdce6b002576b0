"""The golden cells: a representative set of model configurations whose metrics are pinned.

Every optimisation of the model (a batched fault path, a compiled walk, streamed traces)
must leave each of these cells' metric dicts exactly as recorded in golden_metrics.json.
The set covers each kernel page size, each folio policy, PMD THP, a process page larger
than the kernel's with the native table (mirror and on demand), contpte off, fragmented
memory with compaction, every page-cache policy, every EOF overhang policy, fork in a
mixed process tree, the ABI probe and a real lackey trace.

Regenerate (only when a metric is meant to change, and say why in the commit):
    python -m tests.golden.cells > tests/golden/golden_metrics.json
"""

from __future__ import annotations

import json
import sys

RANDOM = ("workload=random", "workload.working_set=64M", "workload.accesses=100000", "memory.size=2G")
ZIPF = ("workload=zipf", "workload.working_set=64M", "workload.accesses=200000", "memory.size=2G")
SEQ = ("workload=sequential", "workload.working_set=16M", "workload.accesses=200000", "memory.size=2G")
STRIDED = ("workload=strided", "workload.working_set=64M", "workload.accesses=100000", "memory.size=2G")
FILES = ("workload=small_files", "workload.nr_small_files=200", "workload.nr_large_files=2",
         "workload.large_file_size=2M", "memory.size=2G")
MIXED = ("workload=mixed", "workload.accesses=100000", "workload.working_set=16M",
         "workload.nr_small_files=50", "memory.size=2G")

CELLS: dict[str, tuple[str, ...]] = {
    # kernel x anon folio policy (mthp_gap's matrix, smaller)
    "rand_4k_base": ("kernel=4k", "folio.anon=base", *RANDOM),
    "rand_4k_mthp": ("kernel=4k", "folio.anon=mthp", *RANDOM),
    "rand_4k_mthp_only": ("kernel=4k", "folio.anon=mthp_only", "folio.mthp_sizes=[64K]", *RANDOM),
    "rand_4k_thp_pmd": ("kernel=4k", "folio.anon=mthp", "folio.thp_pmd=true", *RANDOM),
    "rand_4k_base_thp_pmd": ("kernel=4k", "folio.anon=base", "folio.thp_pmd=true", *RANDOM),
    "rand_16k_base": ("kernel=16k", "folio.anon=base", *RANDOM),
    "rand_16k_mthp": ("kernel=16k", "folio.anon=mthp", "folio.mthp_sizes=[64K,256K,2M]", *RANDOM),
    "rand_64k_base": ("kernel=64k", "folio.anon=base", *RANDOM),
    "rand_64k_mthp": ("kernel=64k", "folio.anon=mthp", "folio.mthp_sizes=[2M]", *RANDOM),
    # a process page larger than the kernel's, with and without the native table
    "rand_4k_p64k_mirror": ("kernel=4k", "process.page_size=64K", "arch.native_pgtable=mirror", *RANDOM),
    "rand_4k_p16k_ondemand": ("kernel=4k", "process.page_size=16K", "folio.anon=mthp",
                              "arch.native_pgtable=on_demand", *RANDOM),
    "rand_4k_p64k_off": ("kernel=4k", "process.page_size=64K", *RANDOM),
    "rand_16k_p64k_mirror": ("kernel=16k", "process.page_size=64K", "arch.native_pgtable=mirror", *RANDOM),
    # other access patterns
    "zipf_4k_mthp": ("kernel=4k", "folio.anon=mthp", *ZIPF),
    "zipf_16k_base_nocontpte": ("kernel=16k", "arch=no_contpte", *ZIPF),
    "seq_4k_mthp": ("kernel=4k", "folio.anon=mthp", *SEQ),
    "seq_64k_base": ("kernel=64k", *SEQ),
    "strided_4k_base": ("kernel=4k", *STRIDED),
    "strided_16k_p64k_mirror": ("kernel=16k", "process.page_size=64K", "arch.native_pgtable=mirror", *STRIDED),
    # fragmented memory: allocation fallbacks and compaction
    "frag_4k_mthp": ("kernel=4k", "folio.anon=mthp", "memory=fragmented", *RANDOM),
    "frag64_4k_mthp_only": ("kernel=4k", "folio.anon=mthp_only", "folio.mthp_sizes=[64K]",
                            "memory=fragmented_64k", *RANDOM),
    "frag64_small_4k_mthp_pmd": ("kernel=4k", "folio.anon=mthp", "folio.thp_pmd=true", "memory=fragmented_64k",
                                 *RANDOM[:3], "memory.size=128M"),
    # a real program's trace
    "trace_4k": ("kernel=4k", "workload=trace"),
    "trace_16k_mthp": ("kernel=16k", "folio.anon=mthp", "folio.mthp_sizes=[64K,256K,2M]", "workload=trace"),
    "trace_64k": ("kernel=64k", "workload=trace"),
    "trace_4k_tiny_tlb": ("kernel=4k", "tlb=tiny", "workload=trace"),
    # page cache policies under a larger process page
    "files_4k_p64k_fixed": ("kernel=4k", "process.page_size=64K", "folio.pagecache=fixed", *FILES),
    "files_4k_p64k_always_max": ("kernel=4k", "process.page_size=64K", "folio.pagecache=always_max", *FILES),
    "files_4k_p64k_drop_reread": ("kernel=4k", "process.page_size=64K", "folio.pagecache=drop_reread", *FILES),
    "files_4k_p64k_mmap_convert": ("kernel=4k", "process.page_size=64K", "folio.pagecache=mmap_convert",
                                   *FILES),
    "files_4k_p64k_bounce": ("kernel=4k", "process.page_size=64K", "folio.pagecache=bounce", *FILES),
    "files_16k_base": ("kernel=16k", *FILES),
    "rtm_4k_p64k_drop_reread": ("kernel=4k", "process.page_size=64K", "folio.pagecache=drop_reread",
                                "workload=read_then_map", "workload.nr_large_files=2", "memory.size=2G"),
    # EOF overhang policies
    "eof_4k_p64k_sigbus": ("kernel=4k", "process.page_size=64K", "abi=sigbus", "workload=eof_files",
                           "memory.size=2G"),
    "eof_4k_p64k_anon_fault": ("kernel=4k", "process.page_size=64K", "abi=anon_fault", "workload=eof_files",
                               "memory.size=2G"),
    "eof_4k_p64k_anon_vma": ("kernel=4k", "process.page_size=64K", "abi=anon_vma", "workload=eof_files",
                             "memory.size=2G"),
    # fork and a process tree
    "mixed_4k_mthp": ("kernel=4k", "folio.anon=mthp", *MIXED),
    "mixed_4k_p16k_mirror": ("kernel=4k", "process.page_size=16K", "arch.native_pgtable=mirror", *MIXED),
    # pagemap and userfaultfd through the ABI
    "abi_probe_4k_p64k": ("kernel=4k", "process.page_size=64K", "workload=abi_probe", "memory.size=2G"),
}


def compose(*overrides: str) -> dict:
    """The resolved cell config dict for these overrides of the real conf/ tree (also the
    model tests' cell_config fixture)."""
    from pathlib import Path

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from sweep.schema import register_configs

    conf = Path(__file__).resolve().parents[2] / "conf"
    register_configs(conf)
    with initialize_config_dir(str(conf), version_base=None):
        cfg = hydra_compose("config", overrides=list(overrides))
    out = OmegaConf.to_container(cfg, resolve=True)
    out.pop("hydra", None)
    return out


def run(name: str) -> dict:
    from kernel_model.simulate import simulate

    return simulate(compose(*CELLS[name]))


def main() -> None:
    json.dump({name: run(name) for name in CELLS}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
