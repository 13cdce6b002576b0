import numpy as np

from kernel_model.mm_types import PROT_EXEC, PROT_READ, PROT_WRITE
from workloads import build
from workloads.phases import MAP_ANONYMOUS, MAP_PRIVATE, Access, CreateFile, Exec, Fork, Map, MmapFile, ReadFile

CFG = {
    "kind": "mixed", "pattern": "strided", "stride": "4K", "working_set": "8K", "accesses": 3,
    "write_ratio": 1.0, "nr_small_files": 1, "small_file_sigma": 0.0, "nr_large_files": 1,
    "large_file_size": "8K", "mmap_fraction": 1.0, "processes": 2,
}


def test_mixed_exact_story():
    lib = "/pagesweep/large/000.dat"
    worker = [
        Fork(),
        Exec(None),
        MmapFile("lib0", lib, PROT_READ | PROT_EXEC, shared=False),
        Access("lib0", np.array([0, 4096]), np.zeros(2, bool)),
        Map("anon", 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS),
        Access("anon", np.array([0, 4096, 0]), np.ones(3, bool)),
    ]
    # sigma 0: every small file is exactly the median (2K)
    assert list(build(CFG, seed=0).phases()) == [
        CreateFile("/pagesweep/small/00000.conf", 2048), ReadFile("/pagesweep/small/00000.conf"),
        CreateFile(lib, 8192),
    ] + worker + worker


def test_mixed_deterministic_and_seed_sensitive():
    cfg = {**CFG, "pattern": "zipf", "accesses": 100, "working_set": "1M", "mmap_fraction": 0.5, "nr_small_files": 5,
           "small_file_sigma": 1.0, "large_file_size": "1M"}
    assert list(build(cfg, seed=1).phases()) == list(build(cfg, seed=1).phases())
    assert list(build(cfg, seed=1).phases()) != list(build(cfg, seed=2).phases())
