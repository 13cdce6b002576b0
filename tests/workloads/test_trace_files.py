"""Trace files read in bounded chunks: every format gives the same accesses, chunking does
not change them, `convert` writes the compact .npy atomically, and bad input is one error
naming the file (and the line, for lackey text)."""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workloads import build
from workloads.lackey import parse_lackey_lines
from workloads.trace import RECORD, convert, read_chunks

ROOT = Path(__file__).resolve().parents[2]


def whole(path, chunk=1 << 20):
    parts = list(read_chunks(path, chunk=chunk))
    assert all(a.size <= chunk for a, _ in parts)
    return np.concatenate([a for a, _ in parts]), np.concatenate([w for _, w in parts])


@pytest.fixture
def arrayscan(data_dir):
    a, w = parse_lackey_lines(gzip.decompress((data_dir / "lackey_arrayscan.txt.gz").read_bytes()))
    assert a.size == 59102
    return a, w


@pytest.mark.parametrize("chunk", [1, 1000, 59101, 1 << 20])
def test_every_format_and_chunk_size_gives_the_same_accesses(tmp_path, data_dir, arrayscan, chunk):
    a, w = arrayscan
    np.savez(tmp_path / "stored.npz", addr=a, is_write=w)
    np.savez_compressed(tmp_path / "deflated.npz", addr=a.astype(np.uint64), is_write=w.astype(np.uint8))
    convert(data_dir / "lackey_arrayscan.txt.gz", tmp_path / "compact.npy", progress=False)
    if chunk == 1:  # one access per chunk: the binary formats only (text: 4-byte buffers)
        names = ["stored.npz", "deflated.npz", "compact.npy"]
    else:
        names = ["stored.npz", "deflated.npz", "compact.npy", str(data_dir / "lackey_arrayscan.txt.gz")]
    for name in names:
        got_a, got_w = whole(tmp_path / name, chunk=chunk)
        assert np.array_equal(got_a, a) and np.array_equal(got_w, w), name


def test_plain_npy_is_all_reads(tmp_path):
    np.save(tmp_path / "a.npy", np.array([4096, 8192, 4100], dtype=np.uint64))
    a, w = whole(tmp_path / "a.npy", chunk=2)
    assert a.tolist() == [4096, 8192, 4100] and w.tolist() == [False, False, False]


def test_compact_trace_is_9_bytes_per_access_and_loads_with_numpy(tmp_path, data_dir, arrayscan):
    out = tmp_path / "t.npy"
    assert convert(data_dir / "lackey_arrayscan.txt.gz", out, progress=False) == 59102
    assert os.path.getsize(out) == 256 + 9 * 59102
    rec = np.load(out)
    assert rec.dtype == RECORD
    assert np.array_equal(rec["addr"], arrayscan[0]) and np.array_equal(rec["is_write"], arrayscan[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.npy"]  # no temporary left


def test_convert_cli_and_atomic_failure(tmp_path, data_dir):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = tmp_path / "ok.npy"
    r = subprocess.run([sys.executable, "-m", "workloads.trace", "convert", str(data_dir / "lackey_small.txt"),
                        str(out)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{out}: 5 accesses"
    assert "RuntimeWarning" not in r.stderr
    assert np.load(out)["addr"].tolist() == [0x1FFEFFFD68, 0x1FFEFFFD60, 0x0402A0A8, 0x8, 0xFFFFFFFFFF]
    bad = tmp_path / "bad.npy"
    r = subprocess.run([sys.executable, "-m", "workloads.trace", "convert", "--quiet",
                        str(data_dir / "lackey_malformed.txt"), str(bad)], capture_output=True, text=True, env=env)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: {data_dir / 'lackey_malformed.txt'}:7: malformed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.npy"]  # neither bad.npy nor a temporary


def test_read_chunks_without_data_lines_then_data(tmp_path):
    # 1.3 M instruction lines then data: many whole read buffers hold no data line
    path = tmp_path / "t.txt"
    with open(path, "w") as f:
        f.write("==1== Lackey, an example Valgrind tool\n")
        f.write("I  04001090,3\n" * 1_300_000)
        f.write(" L 1000,8\n S 2008,4\n")
    a, w = whole(path, chunk=1 << 16)
    assert a.tolist() == [0x1000, 0x2008] and w.tolist() == [False, True]


def test_gz_without_data_lines_then_data(tmp_path):
    path = tmp_path / "t.txt.gz"
    with gzip.open(path, "wt") as f:
        f.write("==1== banner\n" + "I  04001090,3\n" * 50_000 + " M 10,8\n")
    assert whole(path, chunk=1 << 12)[0].tolist() == [0x10]


def test_banner_only_lackey_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "banner.txt"
    path.write_text("==1== Lackey, an example Valgrind tool\n==1== Command: ./a\n")
    with pytest.raises(ValueError, match=rf"^{path}: no data accesses in this trace"):
        whole(path)


@pytest.mark.parametrize("name, content", [
    ("garbage.npy", b"\x00\x01this is not numpy at all" * 10),
    ("garbage.npz", b"PK\x03\x04 definitely not a zip archive" * 10),
    ("pickled.npy", None),
    ("text.npy", b"I  04001090,3\n L 10,8\n"),
    ("truncated.npy", "truncated"),
    ("binary.txt", b"\x93NUMPY\x01\x00" + b"\0" * 100),
    ("notgzip.txt.gz", b"I  04001090,3\n L 10,8\n"),
])
def test_garbage_trace_is_one_error_naming_the_file(tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif content == "truncated":
        np.save(path, np.arange(1000, dtype=np.int64))
        path.write_bytes(path.read_bytes()[:500])
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError) as exc:
        build({"kind": "trace", "path": str(path)}, seed=0)
    msg = str(exc.value)
    assert msg.startswith(str(path)) and "\n" not in msg
    assert "pickle" not in msg.lower() or "objects" in msg


def test_malformed_line_number_in_compressed_text(tmp_path):
    path = tmp_path / "t.txt.gz"
    with gzip.open(path, "wt") as f:
        f.write("I  04001090,3\n" * 100_000 + " L 10,8\n L zz,8\n")
    with pytest.raises(ValueError, match=rf"^{path}:100002: malformed lackey data line ' L zz,8'"):
        whole(path, chunk=1 << 12)


def test_pickled_npz_member_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, addr=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match=rf"^{path}\[addr.npy\]: holds Python objects"):
        build({"kind": "trace", "path": str(path)}, seed=0)
