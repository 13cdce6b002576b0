import math
import os
import shutil

import numpy as np
import pytest

import workloads.files as files
from kernel_model.mm_types import PROT_READ
from workloads import build
from workloads.phases import Access, CreateFile, LoadElf, MmapFile, ReadFile


def test_file_set_exact():
    cfg = {
        "kind": "file_set", "nr_small_files": 3, "small_file_median": "2K", "small_file_sigma": 0.5,
        "nr_large_files": 1, "large_file_size": "40K", "mmap_fraction": 0.25, "large_folio_fs": False,
    }
    rng = np.random.Generator(np.random.PCG64(9))
    sizes = np.maximum(np.rint(rng.lognormal(math.log(2048), 0.5, 3)).astype(int), 1).tolist()
    # 40K = 10 pages; round(0.25 * 10) = round-half-up(2.5) = 3 pages
    pages = sorted(rng.choice(10, size=3, replace=False).tolist())
    small = [f"/pagesweep/small/{i:05d}.conf" for i in range(3)]
    assert list(build(cfg, seed=9).phases()) == [
        CreateFile(small[0], sizes[0], large_folios=False), ReadFile(small[0]),
        CreateFile(small[1], sizes[1], large_folios=False), ReadFile(small[1]),
        CreateFile(small[2], sizes[2], large_folios=False), ReadFile(small[2]),
        CreateFile("/pagesweep/large/000.dat", 40960, large_folios=False),
        MmapFile("large0", "/pagesweep/large/000.dat", PROT_READ, shared=False),
        Access("large0", np.array(pages) * 4096, np.zeros(3, bool)),
    ]


def test_lognormal_sizes_median():
    sizes = files.lognormal_sizes(np.random.Generator(np.random.PCG64(1)), 20001, 2048, 1.0)
    assert abs(np.median(sizes) / 2048 - 1) < 0.05
    assert files.lognormal_sizes(np.random.Generator(np.random.PCG64(1)), 5, 1, 3.0).min() == 1


def test_touched_pages_counts_partial_last_page_and_fraction_bounds():
    rng = np.random.Generator(np.random.PCG64(0))
    assert files.touched_pages(rng, 4097, 1.0).tolist() == [0, 1]
    assert files.touched_pages(rng, 8192, 0.0).tolist() == []
    assert len(files.touched_pages(rng, 10 * 4096, 0.05)) == 1  # 0.5 rounds up


def test_file_set_deterministic():
    cfg = {"kind": "file_set", "nr_small_files": 20, "nr_large_files": 2, "large_file_size": "1M"}
    w = build(cfg, seed=3)
    assert list(w.phases()) == list(w.phases()) == list(build(cfg, seed=3).phases())


@pytest.fixture
def tree(tmp_path):
    """
    root/
      b.txt (5 B)   a.txt (0 B)   link -> b.txt   fifo
      sub/z.bin (4097 B)   sub/deep/y (1 B)
      asub/x (3 B)
    """
    root = tmp_path / "root"
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "asub").mkdir()
    (root / "b.txt").write_bytes(b"hello")
    (root / "a.txt").write_bytes(b"")
    (root / "sub" / "z.bin").write_bytes(b"\0" * 4097)
    (root / "sub" / "deep" / "y").write_bytes(b"1")
    (root / "asub" / "x").write_bytes(b"abc")
    os.symlink(root / "b.txt", root / "link")
    os.mkfifo(root / "fifo")
    return root


def test_file_tree_sorted_regular_files_only(tree):
    w = build({"kind": "file_tree", "path": str(tree)}, seed=0)
    r = str(tree)
    assert list(w.phases()) == [
        CreateFile(f"{r}/a.txt", 0), ReadFile(f"{r}/a.txt"),
        CreateFile(f"{r}/b.txt", 5), ReadFile(f"{r}/b.txt"),
        CreateFile(f"{r}/asub/x", 3), ReadFile(f"{r}/asub/x"),
        CreateFile(f"{r}/sub/z.bin", 4097), ReadFile(f"{r}/sub/z.bin"),
        CreateFile(f"{r}/sub/deep/y", 1), ReadFile(f"{r}/sub/deep/y"),
    ]
    assert w.skipped == 0
    assert w.describe()["files"] == 5


def test_file_tree_max_files_and_large_folio_flag(tree):
    w = build({"kind": "file_tree", "path": str(tree), "max_files": 2, "large_folio_fs": False}, seed=0)
    r = str(tree)
    assert list(w.phases()) == [
        CreateFile(f"{r}/a.txt", 0, large_folios=False), ReadFile(f"{r}/a.txt"),
        CreateFile(f"{r}/b.txt", 5, large_folios=False), ReadFile(f"{r}/b.txt"),
    ]


def test_file_tree_unreadable_skipped_and_counted(tree, monkeypatch):
    real_probe = files._probe

    def probe(path, nbytes):  # as root, chmod 000 would not stop open(); fail it here
        if path.endswith(("b.txt", "z.bin")):
            raise PermissionError(13, "Permission denied", path)
        return real_probe(path, nbytes)

    monkeypatch.setattr(files, "_probe", probe)
    w = build({"kind": "file_tree", "path": str(tree)}, seed=0)
    assert [p.path for p in w.phases() if isinstance(p, ReadFile)] == [
        f"{tree}/a.txt", f"{tree}/asub/x", f"{tree}/sub/deep/y",
    ]
    assert w.skipped == 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files")
def test_file_tree_unreadable_by_mode(tree):
    os.chmod(tree / "b.txt", 0)
    os.chmod(tree / "sub" / "deep", 0)
    w = build({"kind": "file_tree", "path": str(tree)}, seed=0)
    assert [p.path for p in w.phases() if isinstance(p, ReadFile)] == [
        f"{tree}/a.txt", f"{tree}/asub/x", f"{tree}/sub/z.bin",
    ]
    assert w.skipped == 2


def test_missing_directory_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"directory '{tmp_path}/none' does not exist"):
        build({"kind": "file_tree", "path": str(tmp_path / "none")}, seed=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build({"kind": "elf_tree", "path": str(tmp_path / "none")}, seed=0)


def test_elf_tree_loads_elf_files_only(tree):
    shutil.copy(shutil.which("true"), tree / "sub" / "true")
    (tree / "asub" / "fake").write_bytes(b"\x7fEL")  # truncated magic: not ELF
    w = build({"kind": "elf_tree", "path": str(tree)}, seed=0)
    assert list(w.phases()) == [LoadElf(f"{tree}/sub/true")]
    assert (w.non_elf, w.skipped) == (6, 0)
    assert w.describe()["non_elf"] == 6


def test_file_set_holder_mlocks_and_pins_before_the_mapping_process():
    from workloads.phases import Exec, Fork, Mlock, Pin

    cfg = {
        "kind": "file_set", "nr_large_files": 2, "large_file_size": "10K", "mmap_fraction": 1.0,
        "mlock_fraction": 0.5, "pin_fraction": 0.2,
    }
    a, b = "/pagesweep/large/000.dat", "/pagesweep/large/001.dat"
    # 10K = 3 pages (last partial): mlock round(1.5) = 2 pages = 8K; pin round(0.6) = 1 page
    assert list(build(cfg, seed=0).phases()) == [
        CreateFile(a, 10240), CreateFile(b, 10240),
        Fork(), Exec("kernel"),
        MmapFile("held0", a, PROT_READ), Mlock("held0", 0, 8192), Pin("held0", 0, 4096),
        MmapFile("held1", b, PROT_READ), Mlock("held1", 0, 8192), Pin("held1", 0, 4096),
        Fork(), Exec(None),
        MmapFile("large0", a, PROT_READ), Access("large0", [0, 4096, 8192], [False] * 3),
        MmapFile("large1", b, PROT_READ), Access("large1", [0, 4096, 8192], [False] * 3),
    ]


def test_holder_lock_length_clipped_to_file_size():
    from workloads.phases import Mlock

    cfg = {"kind": "file_set", "nr_large_files": 1, "large_file_size": 5000, "mlock_fraction": 1.0}
    locks = [p for p in build(cfg, seed=0).phases() if isinstance(p, Mlock)]
    assert locks == [Mlock("held0", 0, 5000)]


def test_no_holder_without_large_files():
    cfg = {"kind": "file_set", "nr_small_files": 1, "small_file_sigma": 0.0, "pin_fraction": 1.0}
    assert list(build(cfg, seed=0).phases()) == [
        CreateFile("/pagesweep/small/00000.conf", 2048), ReadFile("/pagesweep/small/00000.conf"),
    ]
