"""python -m sweep.advise: a page size per process from a snapshot's replay and sweep results."""

import json

import numpy as np
import pytest

from sweep.advise import Advice, decide, main
from sweep.snapshot import ANON, FORMAT, VMA_ANON, write_atomic
from tests.sweep.test_report import K4, K16, K64, write_cells

DENSE = 4096                                  # pages of the dense process, every one stored to
SPARSE_PAGES, SPARSE_WRITTEN = 64, [0, 3, 5, 17, 63]


def make_snapshot(path, procs):
    """A snapshot file of anonymous VMAs: procs = [(pid, comm, [(pages, written page list)])]."""
    cols = {k: [] for k in ("pid", "comm", "vma_lo", "vma_hi", "anonymous", "rss")}
    vmas = {k: [] for k in ("start", "end", "perms", "offset", "name", "kind", "file", "rss", "anonymous",
                            "page_lo", "page_hi")}
    vpn, kind = [], []
    for pid, comm, vlist in procs:
        cols["pid"].append(pid)
        cols["comm"].append(comm)
        cols["vma_lo"].append(len(vmas["start"]))
        total = 0
        for i, (pages, written) in enumerate(vlist):
            start = 0x7f0000000000 + i * 0x10000000
            vmas["start"].append(start)
            vmas["end"].append(start + pages * 4096)
            vmas["perms"].append("rw-p")
            vmas["offset"].append(0)
            vmas["name"].append("")
            vmas["kind"].append(VMA_ANON)
            vmas["file"].append(-1)
            vmas["rss"].append(len(written) * 4096)
            vmas["anonymous"].append(len(written) * 4096)
            vmas["page_lo"].append(len(vpn))
            vpn += written
            kind += [ANON] * len(written)
            vmas["page_hi"].append(len(vpn))
            total += len(written) * 4096
        cols["vma_hi"].append(len(vmas["start"]))
        cols["anonymous"].append(total)
        cols["rss"].append(total)
    meta = {"format": FORMAT, "page_size": 4096, "host": "test", "kernel": "test", "captured_at": "2026-01-01",
            "pfn_known": True, "skipped": {}}
    empty = np.zeros(0, np.int64)
    arrays = {"meta": np.array(json.dumps(meta)),
              **{f"proc_{k}": np.array(v, dtype=str if k == "comm" else np.int64) for k, v in cols.items()},
              **{f"vma_{k}": np.array(v, dtype=str if k in ("perms", "name") else
                                      (np.uint8 if k == "kind" else np.int64)) for k, v in vmas.items()},
              "page_vpn": np.array(vpn, np.int64), "page_kind": np.array(kind, np.uint8),
              "file_dev": np.zeros(0, str), "file_inode": empty, "file_path": np.zeros(0, str), "file_size": empty,
              "filepage_file": empty, "filepage_index": empty, "cowpage_file": empty, "cowpage_index": empty}
    write_atomic(path, arrays)
    return path


@pytest.fixture
def snapshot(tmp_path):
    return make_snapshot(tmp_path / "s.npz", [(100, "dense", [(DENSE, list(range(DENSE)))]),
                                              (200, "sparse", [(SPARSE_PAGES, SPARSE_WRITTEN)])])


@pytest.fixture
def results(tmp_path):
    results = tmp_path / "results"
    write_cells(results, "page_size_tradeoff", "r1", [
        ({"workload_name": "random", "kernel_page_size": K4, "process_page_size": p}, {"walk_cycles": c}, "ok")
        for p, c in ((K4, 1000), (K16, 600), (K64, 300))] + [
        ({"workload_name": "random", "kernel_page_size": K16, "process_page_size": K16}, {"walk_cycles": 1}, "ok")])
    return results


def test_advice_from_replay_and_profile(snapshot, results, tmp_path, capsys):
    """Anonymous memory, by hand: the sparse process's stores at pages 0, 3, 5, 17, 63 cost
    5 x 4K at 4K, 4 x 16K (granules 0, 1, 4, 15), 3 x 64K (granules 0, 1, 3). The dense
    process (16 MiB, all stored) costs 16 MiB at every size; with the random profile
    (walk_cycles 1000, 600, 300: savings 40% and 70%) and its small page-table overhead
    it gets 64K. The sparse one, without a profile, is not free at 16K: 4K."""
    from sweep.advise import advise

    advice = advise(str(snapshot), results, profiles={"dense": "random"}, progress=False)
    dense, sparse = advice
    assert sparse.anon == {K4: 5 * 4096, K16: 4 * 16384, K64: 3 * 65536}
    assert dense.anon == {K4: DENSE * 4096, K16: DENSE * 4096, K64: DENSE * 4096}
    assert (dense.choice, dense.basis, dense.profile) == (K64, "profile", "random")
    assert dense.saving(K16) == pytest.approx(0.4) and dense.saving(K64) == pytest.approx(0.7)
    assert 0 <= dense.overhead(K64) <= 0.10
    assert (sparse.choice, sparse.basis, sparse.profile) == (K4, "memory only", None)
    assert sparse.overhead(K16) > 0.01

    out = tmp_path / "advice"
    assert main(["--snapshot", str(snapshot), "--results", str(results), "--profile", "dense=random",
                 "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].split() == ["process", "pid", "total", "4K", "(KiB)", "16K", "memory", "64K", "memory", "16K",
                               "walk_cycles", "64K", "walk_cycles", "profile", "recommend", "basis"]
    assert text[1].split()[0:2] == ["dense", "100"] and text[1].split()[5:] == ["-40.0%", "-70.0%", "random", "64K",
                                                                              "profile"]
    assert text[2].split()[0:2] == ["sparse", "200"] and text[2].split()[5:] == ["n/a", "n/a", "none", "4K", "memory",
                                                                               "only"]
    assert sorted(p.name for p in out.iterdir()) == ["advice.csv", "advice.md", "advice.png"]
    assert (out / "advice.png").read_bytes()[:4] == b"\x89PNG"


def test_decide_rule():
    a = Advice(1, "x", total={K4: 100, K16: 105, K64: 120}, cycles={K4: 1000, K16: 600, K64: 300})
    decide(a, max_memory=0.10, min_saving=0.05, free=0.01)
    assert (a.choice, a.basis) == (K16, "profile")          # 64K costs 20% > 10%
    decide(a, max_memory=0.25, min_saving=0.05, free=0.01)
    assert a.choice == K64
    decide(a, max_memory=0.25, min_saving=0.80, free=0.01)
    assert a.choice == K4                                    # 70% is not enough
    b = Advice(2, "y", total={K4: 100, K16: 105, K64: 120})
    decide(b, max_memory=0.10, min_saving=0.05, free=0.06)
    assert (b.choice, b.basis) == (K16, "memory only")
    decide(b, max_memory=0.10, min_saving=0.05, free=0.01)
    assert b.choice == K4


def test_errors(snapshot, results, tmp_path, capsys):
    assert main(["--snapshot", str(snapshot), "--profile", "dense"]) == 1
    assert capsys.readouterr().err == ("error: --profile 'dense': write COMM=WORKLOAD or PID=WORKLOAD, "
                                       "e.g. --profile postgres=zipf\n")
    assert main(["--snapshot", str(snapshot), "--profile", "dense=zipf", "--results", str(results)]) == 1
    assert capsys.readouterr().err == ("error: workload 'zipf' has no 4K-kernel walk_cycles in the latest "
                                       f"page_size_tradeoff run under {results}; its workloads: random\n")
    assert main(["--snapshot", str(snapshot), "--profile", "nginx=random", "--results", str(results)]) == 1
    assert capsys.readouterr().err == (f"error: --profile nginx=...: no process named or numbered 'nginx' in "
                                       f"{snapshot}\n")
    assert main(["--snapshot", str(snapshot), "--default-profile", "random"]) == 1
    assert "need --results DIR" in capsys.readouterr().err
    assert main(["--snapshot", str(tmp_path / "none.npz")]) == 1
    assert "no such snapshot file" in capsys.readouterr().err
