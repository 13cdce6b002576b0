"""sweep.snapshot capture and workload.kind=snapshot replay, against a child process with a
known memory pattern; the replay at 4K with base folios equals the capture exactly."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sweep.snapshot import ANON, FILE, PAGE, ZERO, Snapshot, SnapshotError, capture, main, parse_smaps
from workloads.snapshot import file_path, page_runs

ANON_WRITTEN = [0, 3, 5, 17, 63]      # pages of the 64-page anonymous mapping the child stores to
ANON_READ = [10]                      # ... and loads from only: the zero page
FILE_READ = [1, 2, 7]                 # pages of the 10-page file it loads from (MAP_PRIVATE)
FILE_WRITTEN = [4]                    # ... and stores to: a private copy; the file page is read to copy it

CHILD = textwrap.dedent("""
    import ctypes, mmap, os, sys
    path = sys.argv[1]
    anon = mmap.mmap(-1, 64 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    anon.madvise(mmap.MADV_NOHUGEPAGE)          # no THP: one 4K page per touch
    for p in %(anon_written)r:
        anon[p * 4096] = 1
    for p in %(anon_read)r:
        anon[p * 4096]
    fd = os.open(path, os.O_RDWR)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)   # drop the file's page cache
    f = mmap.mmap(fd, 10 * 4096, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    f.madvise(mmap.MADV_RANDOM)                 # no readahead: a fault reads only its page
    for p in %(file_read)r:
        f[p * 4096]
    for p in %(file_written)r:
        f[p * 4096] = 1
    addr = lambda m: ctypes.addressof(ctypes.c_char.from_buffer(m))
    print(addr(anon), addr(f), flush=True)
    os.read(0, 1)                               # blocks: no buffer to allocate, memory stays put
""") % {"anon_written": ANON_WRITTEN, "anon_read": ANON_READ, "file_read": FILE_READ, "file_written": FILE_WRITTEN}


def wait_blocked(pid: int) -> None:
    """Until the child sleeps in its read of stdin (state S in /proc/PID/stat): after its
    print it still runs a little, and a page it touched then would race the capture."""
    import time

    for _ in range(1000):
        stat = open(f"/proc/{pid}/stat").read()
        if stat[stat.rindex(")") + 2] == "S":
            return
        time.sleep(0.01)
    raise AssertionError(f"child {pid} never blocked on stdin")


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    """(pid, anon address, file address, file path) of a child waiting on stdin."""
    d = tmp_path_factory.mktemp("child")
    data = d / "data.bin"
    data.write_bytes(bytes(range(256)) * 160)            # 10 pages
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(data)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    assert line, "child failed"
    wait_blocked(proc.pid)
    yield proc.pid, int(line[0]), int(line[1]), data
    proc.stdin.close()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def snap(child, tmp_path_factory):
    out = tmp_path_factory.mktemp("snap") / "child.npz"
    return capture(out, [child[0]], progress=False)


def vma_pages(snap, start):
    a = snap.a
    (v,) = np.flatnonzero(a["vma_start"] == start)
    lo, hi = a["vma_page_lo"][v], a["vma_page_hi"][v]
    return v, {int(p): int(k) for p, k in zip(a["page_vpn"][lo:hi], a["page_kind"][lo:hi])}


def test_capture_sees_the_known_pattern(child, snap):
    pid, anon, fmap, data = child
    assert snap.pids == [pid]
    _, pages = vma_pages(snap, anon)
    assert pages == {**{p: ANON for p in ANON_WRITTEN}, **{p: ZERO for p in ANON_READ}}
    v, pages = vma_pages(snap, fmap)
    assert pages == {**{p: FILE for p in FILE_READ}, **{p: ANON for p in FILE_WRITTEN}}
    a = snap.a
    st = os.stat(data)
    f = int(a["vma_file"][v])
    assert (str(a["file_dev"][f]), int(a["file_inode"][f]), int(a["file_size"][f])) == (
        f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}", st.st_ino, 10 * PAGE)
    assert snap.cached_pages()[f].tolist() == sorted(FILE_READ + FILE_WRITTEN)
    # the smaps fields of the two VMAs: Anonymous counts the stored pages, not the zero page
    (va,) = np.flatnonzero(a["vma_start"] == anon)
    assert int(a["vma_anonymous"][va]) == len(ANON_WRITTEN) * PAGE
    assert int(a["vma_anonymous"][v]) == len(FILE_WRITTEN) * PAGE
    s = snap.summary()
    assert s["anon_bytes"] == s["smaps_anonymous"] == int(a["proc_anonymous"][0])


def _runner(snap_path, kernel="4K", process="kernel", anon="base"):
    from omegaconf import OmegaConf

    import workloads
    from kernel_model.simulate import Runner
    from kernel_model.system import System
    from sweep.app import CONF_DIR

    cfg = {"kernel": {"page_size": kernel}, "process": {"page_size": process}, "folio": {"anon": anon},
           "tlb": OmegaConf.to_container(OmegaConf.load(CONF_DIR / "tlb" / "neoverse_n1.yaml"))}
    system = System.from_config(cfg)
    runner = Runner(system, system.process_page_size(process), cfg["tlb"])
    for phase in workloads.build({"kind": "snapshot", "name": "snapshot", "path": snap_path}, seed=0).phases():
        runner.run(phase)
    return runner


def test_replay_at_4k_equals_the_capture(child, snap):
    runner = _runner(snap.path)
    m = runner.metrics()
    s = snap.summary()
    assert m["anon_bytes"] == s["anon_bytes"] == s["smaps_anonymous"]
    assert m["pagecache_bytes"] == s["pagecache_bytes"]
    assert m["padding_bytes"] == 0
    a = snap.a
    _, _, _, data = child
    st = os.stat(data)
    f = runner.system.files[file_path(f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}", st.st_ino)]
    assert sorted(f.mapping.folios) == sorted(FILE_READ + FILE_WRITTEN)     # exactly, in 4K folios
    assert all(folio.order == 0 for folio in f.mapping.folios.values())
    # one process replayed beside the Runner's initial one, with every non-special VMA that has pages
    assert len(runner.system.processes) == 2
    import workloads
    from workloads.phases import MapRange

    maps = [ph for ph in workloads.build({"kind": "snapshot", "path": snap.path}, seed=0).phases()
            if isinstance(ph, MapRange)]
    assert len(maps) == int(((a["vma_kind"] != 2) & (a["vma_page_hi"] > a["vma_page_lo"])).sum())


def test_replay_64k_process_rounds_to_process_pages(child, snap):
    """A 64K process on a 4K kernel: the 5 stored anon pages fall in 3 process pages (0-15,
    16-31, 48-63): 3 x 64K of that mapping; the zero-page read stays the zero page."""
    full = _runner(snap.path)
    big = _runner(snap.path, process="64K")
    assert big.metrics()["anon_bytes"] > full.metrics()["anon_bytes"]
    pid, anon, _, _ = child
    one = snap.select([pid])
    assert one.summary() == snap.summary()


def test_select_and_page_runs(snap):
    assert page_runs(np.array([1, 2, 4, 7, 8, 9])) == ((1, 2), (4, 1), (7, 3))
    assert page_runs(np.array([], dtype=np.int64)) == ()
    with pytest.raises(SnapshotError, match="no process 1 in the snapshot"):
        snap.select([1])


def test_cli_errors(tmp_path, capsys):
    assert main(["show", str(tmp_path / "nope.npz")]) == 1
    assert capsys.readouterr().err == (f"error: {tmp_path / 'nope.npz'}: no such snapshot file; make one with "
                                       "`python -m sweep.snapshot capture --out FILE`\n")
    (tmp_path / "bad.npz").write_text("x")
    assert main(["show", str(tmp_path / "bad.npz")]) == 1
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'bad.npz'}: not a snapshot file")
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert main(["capture", "--out", str(tmp_path / "x.npz"), "--pid", str(dead.pid), "--no-progress"]) == 1
    assert capsys.readouterr().err.startswith(f"error: --pid {dead.pid}: cannot read /proc/{dead.pid}/smaps")
    assert not (tmp_path / "x.npz").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []


def test_capture_cli_and_show(child, tmp_path, capsys):
    out = tmp_path / "c.npz"
    assert main(["capture", "--out", str(out), "--pid", str(child[0]), "--no-progress"]) == 0
    text = capsys.readouterr().out
    s = Snapshot.load(out).summary()
    assert f"  anon_bytes               {s['anon_bytes']} ({s['anon_bytes'] / 2**20:.1f} MiB)" in text
    assert "PFNs known (zero page told apart)" in text


def test_parse_smaps_errors():
    with pytest.raises(SnapshotError, match=r"smaps:1: a field before the first VMA header"):
        parse_smaps("Rss: 4 kB\n")
    (v,) = parse_smaps("7f00-8f00 rw-s 00001000 08:01 42   /dev/shm/x\nRss:   8 kB\nVmFlags: rd wr sh\n")
    assert (v.start, v.end, v.offset, v.dev, v.inode, v.name, v.fields, v.vmflags, v.kind) == (
        0x7f00, 0x8f00, 0x1000, "8:1", 42, "/dev/shm/x", {"Rss": 8192}, ("rd", "wr", "sh"), 1)


def test_machine_replay_sweep_and_report(snap, tmp_path):
    """The experiment end to end on the child's capture: its 4K cell equals the capture."""
    import io

    from sweep.app import run
    from sweep.query import connect
    from sweep.report import main as report_main

    results = tmp_path / "results"
    out = io.StringIO()
    assert run(["executor=serial", "sweep.progress=false", f"results.dir={results}", "+experiment=machine_replay",
                f"workload.path={snap.path}"], out=out) == 0
    rows = connect(results).execute(
        "SELECT kernel_page_size, process_page_size, folio_anon, anon_bytes, pagecache_bytes, padding_bytes "
        "FROM cells ORDER BY kernel_page_size, process_page_size, folio_anon").fetchall()
    assert [r[:3] for r in rows] == [(4096, 4096, "base"), (4096, 4096, "mthp"), (4096, 16384, "base"),
                                     (4096, 65536, "base"), (16384, 16384, "base"), (65536, 65536, "base")]
    s = snap.summary()
    assert rows[0][3:] == (s["anon_bytes"], s["pagecache_bytes"], 0)
    assert all(r[3] >= s["anon_bytes"] and r[4] >= s["pagecache_bytes"] for r in rows)
    assert report_main(["--experiment", "machine_replay", "--results", str(results), "--out", str(tmp_path / "r")]) == 0
    assert "**Answer:** The captured machine needs" in (tmp_path / "r" / "report.md").read_text()


def test_snapshot_workload_needs_a_path(tmp_path):
    import io

    from sweep.app import run

    err = io.StringIO()
    import contextlib

    with contextlib.redirect_stderr(err):
        code = run(["executor=serial", f"results.dir={tmp_path}", "workload=snapshot", "workload.path=null"],
                   out=io.StringIO())
    assert code == 2
    assert "workload.path: workload.kind=snapshot needs a path" in err.getvalue()


def test_shipped_snapshot_replays_exactly():
    """conf/workload/snapshot.yaml's default capture (tests/data/snapshot_sleep.npz)."""
    from pathlib import Path

    from sweep.app import CONF_DIR

    path = CONF_DIR.parent / "tests" / "data" / "snapshot_sleep.npz"
    snap = Snapshot.load(path)
    s = snap.summary()
    assert (s["processes"], s["anon_bytes"], s["pagecache_bytes"]) == (1, 27 * PAGE, 424 * PAGE)
    m = _runner(str(path)).metrics()
    assert (m["anon_bytes"], m["pagecache_bytes"]) == (s["anon_bytes"], s["pagecache_bytes"])
    assert Path(path).stat().st_size < 64 * 1024
