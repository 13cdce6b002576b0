import gzip

import numpy as np
import pytest

from workloads import build
from workloads.lackey import parse_lackey_lines, read_lackey
from workloads.phases import Access


def trace_phases(path):
    """The trace as Access phases, one per chunk it is read in (the workload itself is one
    TraceAccess phase over the whole file)."""
    (phase,) = build({"kind": "trace", "path": str(path)}, seed=0).phases()
    return [Access(None, a, w) for a, w in phase.chunks()]


def test_handwritten_lackey_exact(data_dir):
    assert trace_phases(data_dir / "lackey_small.txt") == [
        Access(
            None,
            np.array([0x1FFEFFFD68, 0x1FFEFFFD60, 0x0402A0A8, 0x8, 0xFFFFFFFFFF]),
            np.array([False, True, True, False, True]),
        )
    ]


def test_malformed_line_names_file_and_line(data_dir):
    path = data_dir / "lackey_malformed.txt"
    with pytest.raises(ValueError) as exc:
        trace_phases(path)
    assert str(exc.value).startswith(f"{path}:7: malformed lackey data line ' L 0401zz00,8'")


def test_malformed_line_number_across_read_chunks(tmp_path):
    # 3000 good lines then a bad one: line numbers must carry over buffer boundaries.
    body = "".join(f" L {i:08x},8\n" for i in range(3000)) + " S 12,\n"
    path = tmp_path / "t.txt"
    path.write_text(body)
    with pytest.raises(ValueError, match=r"t\.txt:3001: malformed"):
        for _ in read_lackey(path, read_chunk=1000):
            pass
    # Each line is 14 bytes: the first 1000-byte buffer holds 71 whole lines.
    first, _ = next(read_lackey(path, read_chunk=1000))
    assert first.tolist() == list(range(71))


@pytest.mark.parametrize(
    "line",
    [" L 12g4,8", " L 1234", " L ,8", " L 12,", " L 12,8x", " L", " Lx12,8",
     " L 8000000000000000,8", " L 12345678901234567,8", " M 12,8,9"],
)
def test_each_malformed_shape_rejected(line):
    with pytest.raises(ValueError, match=r"^f:12: malformed lackey data line"):
        parse_lackey_lines(b"I  00,1\n" + line.encode() + b"\n", path="f", first_line=10)


def test_crlf_and_no_final_newline():
    addrs, writes = parse_lackey_lines(b"==1== x\r\n L 10,8\r\n M 20,4")
    assert addrs.tolist() == [0x10, 0x20] and writes.tolist() == [False, True]


def test_chunked_read_equals_whole_read(tmp_path, data_dir):
    whole = gzip.decompress((data_dir / "lackey_arrayscan.txt.gz").read_bytes())
    ref_a, ref_w = parse_lackey_lines(whole)
    parts = list(read_lackey(data_dir / "lackey_arrayscan.txt.gz", read_chunk=100_000))
    assert len(parts) > 10
    assert np.array_equal(np.concatenate([a for a, _ in parts]), ref_a)
    assert np.array_equal(np.concatenate([w for _, w in parts]), ref_w)


def test_recorded_trace_counts_match_an_independent_parse(data_dir):
    # Independent reference: a plain per-line loop over the text.
    addrs, writes = [], []
    with gzip.open(data_dir / "lackey_arrayscan.txt.gz", "rt") as f:
        for line in f:
            if line[:3] in (" L ", " S ", " M "):
                addrs.append(int(line[3:].split(",")[0], 16))
                writes.append(line[1] != "L")
    assert (len(addrs), sum(writes)) == (59102, 28737)  # tests/data/README.md
    phases = trace_phases(data_dir / "lackey_arrayscan.txt.gz")
    got = np.concatenate([p.offsets for p in phases])
    assert all(p.region is None for p in phases)
    assert got.tolist() == addrs
    assert np.concatenate([p.is_write for p in phases]).tolist() == writes


def test_npy_and_npz(tmp_path):
    np.save(tmp_path / "a.npy", np.array([4096, 8192, 4100], dtype=np.uint64))
    assert trace_phases(tmp_path / "a.npy") == [Access(None, np.array([4096, 8192, 4100]), np.zeros(3, bool))]
    np.savez(tmp_path / "b.npz", addr=np.array([1, 2]), is_write=np.array([0, 1]))
    assert trace_phases(tmp_path / "b.npz") == [Access(None, np.array([1, 2]), np.array([False, True]))]


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"addresses": np.array([1])}, "needs an 'addr' array"),
        ({"addr": np.array([1, 2]), "is_write": np.array([1])}, "'is_write' must be a boolean"),
        ({"addr": np.array([1, 2]), "is_write": np.array([0, 2])}, "'is_write' must hold only 0 and 1"),
        ({"addr": np.array([1, -2])}, "address #1 is negative"),
        ({"addr": np.array([[1, 2]])}, "must be a 1-D integer array"),
    ],
)
def test_bad_npz(tmp_path, arrays, message):
    np.savez(tmp_path / "t.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        trace_phases(tmp_path / "t.npz")


def test_missing_trace_file_named(tmp_path):
    missing = tmp_path / "nope.txt.gz"
    with pytest.raises(FileNotFoundError, match=f"trace file '{missing}' does not exist"):
        build({"kind": "trace", "path": str(missing)}, seed=0)


def test_trace_phases_rerun_identical(data_dir):
    w = build({"kind": "trace", "path": str(data_dir / "lackey_arrayscan.txt.gz")}, seed=0)
    assert list(w.phases()) == list(w.phases())
    (p,) = w.phases()
    assert [Access(None, a, b) for a, b in p.chunks()] == [Access(None, a, b) for a, b in p.chunks()]
