"""workload=trace: a recorded trace replayed as absolute virtual addresses.

workload.path, one of:
- valgrind lackey text, plain or .gz (workloads/lackey.py);
- .npy: a 1-D integer array of addresses (all reads), or the compact trace that
  `convert` writes: a 1-D record array of (addr int64, is_write bool), 9 bytes per access;
- .npz: an 'addr' array and an optional 'is_write' array of the same length
  (np.savez or np.savez_compressed).

A trace is read in bounded chunks (read_chunks): an uncompressed array is memory-mapped
one window at a time, a compressed .npz member and lackey text are decoded a buffer at a
time, so nothing proportional to the trace's length stays in memory. The workload is ONE
phase, TraceAccess: the simulator gives the whole trace the semantics of a single Access
phase whatever the chunk size (kernel_model/simulate.py: Runner._trace_access). Its
pages are demand-faulted as anonymous memory. A relative path is taken as given; the
simulator resolves config paths against the original working directory first.

Parsing text is the slowest step of a cell; convert a trace once:

    python -m workloads.trace convert IN OUT.npy     # lackey text (.gz), .npy or .npz in
"""

from __future__ import annotations

import argparse
import contextlib
import os
import struct
import sys
import tempfile
import zipfile

import numpy as np
from numba import njit

from workloads.base import Workload
from workloads.lackey import _check_exists, read_lackey
from workloads.phases import TRACE_CHUNK, TraceAccess

RECORD = np.dtype([("addr", "<i8"), ("is_write", "?")])  # the compact trace: 9 bytes per access
_HEADER_BYTES = 256  # the .npy header convert writes: fixed, so the length can be filled in last
_INT64_MAX = np.iinfo(np.int64).max
_SNIFF = 1 << 16


class TraceWorkload(Workload):
    def __init__(self, cfg, seed):
        super().__init__(cfg, seed)
        check_trace(cfg.path)  # a missing or unreadable file fails here, before any work

    def phases(self):
        yield TraceAccess(self.cfg.path, map_gap=self.cfg.map_gap)


# ---- formats ----------------------------------------------------------------------------

class _Array:
    """One array of a trace file: dtype, length, and where its bytes are (an offset into
    the file for a memory map, or None for a compressed .npz member)."""

    def __init__(self, path, dtype, n, offset, member=None):
        self.path, self.dtype, self.n, self.offset, self.member = path, dtype, n, offset, member


def _npy_header(f, where: str):
    """(dtype, n) of the .npy header at f's position, f left at the data."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        raise ValueError(f"{where}: not a NumPy .npy array ({e})") from None
    if dtype.hasobject:
        raise ValueError(f"{where}: holds Python objects (dtype {dtype}); a trace is numbers only")
    if len(shape) != 1:
        raise ValueError(f"{where}: addresses must be a 1-D integer array, got dtype {dtype} shape {shape}")
    return dtype, shape[0]


def _npy(path: str) -> dict:
    with open(path, "rb") as f:
        dtype, n = _npy_header(f, path)
        offset = f.tell()
    if os.path.getsize(path) < offset + n * dtype.itemsize:
        raise ValueError(f"{path}: truncated: its header announces {n} entries of {dtype.itemsize} bytes")
    if dtype.names:
        if set(dtype.names) != {"addr", "is_write"}:
            raise ValueError(f"{path}: a record-array trace needs fields 'addr' and 'is_write', "
                             f"it has {list(dtype.names)}")
        return {"records": _Array(path, dtype, n, offset)}
    return {"addr": _Array(path, dtype, n, offset)}


def _npz_member(zf: zipfile.ZipFile, path: str, name: str) -> _Array:
    info = zf.getinfo(name)
    where = f"{path}[{name}]"
    with zf.open(name) as m:
        dtype, n = _npy_header(m, where)
        header = m.tell() if info.compress_type == zipfile.ZIP_STORED else None
    if header is None:
        return _Array(path, dtype, n, None, name)
    with open(path, "rb") as f:  # a stored member: map its bytes in place
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ValueError(f"{where}: bad zip local header")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
    return _Array(path, dtype, n, info.header_offset + 30 + name_len + extra_len + header)


def _npz(path: str) -> dict:
    try:
        with zipfile.ZipFile(path) as zf:
            names = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
            if "addr" not in names:
                raise ValueError(f"{path}: an .npz trace needs an 'addr' array; it has {sorted(names)}")
            arrays = {k: _npz_member(zf, path, names[k]) for k in ("addr", "is_write") if k in names}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
        raise ValueError(f"{path}: not a NumPy .npz archive ({e})") from None
    w = arrays.get("is_write")
    if w is not None and (w.n != arrays["addr"].n or w.dtype.kind not in "biu"):
        raise ValueError(f"{path}: 'is_write' must be a boolean or 0/1 array of the same length as 'addr' "
                         f"({arrays['addr'].n},), got dtype {w.dtype} shape ({w.n},)")
    return arrays


def _arrays(path: str) -> dict:
    arrays = _npz(path) if path.endswith(".npz") else _npy(path)
    a = arrays.get("addr")
    if a is not None and a.dtype.kind not in "iu":
        raise ValueError(f"{path}: addresses must be a 1-D integer array, got dtype {a.dtype} shape ({a.n},)")
    return arrays


def check_trace(path) -> str:
    """Open a trace far enough to know it is one: the file exists; an array's header is
    a trace's; lackey text is text (no NUL byte in its first 64 KiB). Returns the path."""
    path = _check_exists(path)
    if path.endswith((".npy", ".npz")):
        _arrays(path)
        return path
    import gzip

    try:
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
            head = f.read(_SNIFF)
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot read it as {'gzip' if path.endswith('.gz') else 'text'} ({e})") from None
    if b"\0" in head:
        raise ValueError(f"{path}: binary data, not valgrind lackey text (a NumPy trace must be named .npy or .npz)")
    return path


# ---- chunked reading ----------------------------------------------------------------------

def _windows(arr: _Array, chunk: int):
    """The array's values, `chunk` at a time: a memory-mapped window of the file dropped
    after use, or the next bytes of a compressed member."""
    if arr.offset is not None:
        for first in range(0, arr.n, chunk):
            k = min(chunk, arr.n - first)
            win = np.memmap(arr.path, dtype=arr.dtype, mode="r", offset=arr.offset + first * arr.dtype.itemsize,
                            shape=(k,))
            yield win
            del win
        return
    with zipfile.ZipFile(arr.path) as zf, zf.open(arr.member) as m:
        _npy_header(m, f"{arr.path}[{arr.member}]")
        for first in range(0, arr.n, chunk):
            k = min(chunk, arr.n - first)
            buf = m.read(k * arr.dtype.itemsize)
            if len(buf) != k * arr.dtype.itemsize:
                raise ValueError(f"{arr.path}[{arr.member}]: truncated after {first} entries")
            yield np.frombuffer(buf, dtype=arr.dtype)


def _addresses(part: np.ndarray, first: int, path: str) -> np.ndarray:
    if part.dtype.kind == "u" and part.size and part.max() > _INT64_MAX:
        raise ValueError(f"{path}: addresses must be below 2**63")
    out = np.array(part, dtype=np.int64)  # a copy: never a read-only view of the mapped file
    if out.size and out.min() < 0:
        bad = int(np.flatnonzero(out < 0)[0])
        raise ValueError(f"{path}: address #{first + bad} is negative ({int(out[bad])})")
    return out


def _writes(part: np.ndarray, path: str) -> np.ndarray:
    if part.dtype.kind != "b" and not np.isin(part, (0, 1)).all():
        raise ValueError(f"{path}: 'is_write' must hold only 0 and 1")
    return np.array(part, dtype=np.bool_)


@njit(cache=True)
def _unpack_records(raw, addrs, writes):
    """RECORD bytes (uint8[k, 9]) -> addrs int64[k], writes bool[k] in one pass (numpy's
    copy of a field of 9-byte records is a strided, unaligned gather: several times
    slower). Returns the index of the first record with a negative address or a write
    byte other than 0/1, else -1."""
    for i in range(raw.shape[0]):
        v = np.int64(0)
        for b in range(8):
            v |= np.int64(raw[i, b]) << (8 * b)
        w = raw[i, 8]
        if v < 0 or w > 1:
            return i
        addrs[i] = v
        writes[i] = w != 0
    return -1


def _records(win: np.ndarray, first: int, path: str):
    k = len(win)
    addrs, writes = np.empty(k, np.int64), np.empty(k, np.bool_)
    bad = _unpack_records(win.view(np.uint8).reshape(k, RECORD.itemsize), addrs, writes)
    if bad >= 0:
        _bad_record(win, bad, first, path)
    return addrs, writes


def _bad_record(win: np.ndarray, bad: int, first: int, path: str):
    rec = win[bad]
    what = "is negative" if int(rec["addr"]) < 0 else "has an is_write byte other than 0 or 1"
    raise ValueError(f"{path}: access #{first + bad} {what} ({int(rec['addr'])}, {int(win.view(np.uint8)[bad * RECORD.itemsize + 8])})")


class RecordWindow:
    """Accesses #first.. of a compact record trace, not decoded: `raw` is their bytes,
    uint8[k, 9] (little-endian int64 address, then the is_write byte), for a compiled pass
    that decodes them as it goes instead of reading two decoded arrays
    (read_chunks(raw=True)). decode() gives read_chunks()'s (addrs, is_write); refuse(i)
    raises the error read_chunks() gives for the window's access i."""

    def __init__(self, win: np.ndarray, first: int, path: str):
        self.win, self.first, self.path = win, first, path
        self.raw = win.view(np.uint8).reshape(len(win), RECORD.itemsize)

    def __len__(self) -> int:
        return len(self.win)

    def decode(self):
        return _records(self.win, self.first, self.path)

    def decode_at(self, idx: np.ndarray):
        """(addrs int64, is_write bool) of the window's accesses idx (records already
        validated, as by a compiled pass over raw)."""
        sub = self.raw[idx]
        addrs = np.ascontiguousarray(sub[:, :8]).view("<i8")[:, 0].astype(np.int64)
        return addrs, sub[:, 8] != 0

    def refuse(self, bad: int):
        _bad_record(self.win, bad, self.first, self.path)


def read_numpy_trace(path, *, chunk: int = TRACE_CHUNK, raw: bool = False):
    """Yield (addrs int64, is_write bool) chunks of at most `chunk` accesses of a .npy or
    .npz trace (see the module docstring for the layouts); with raw, a chunk of the compact
    record layout is yielded as its RecordWindow instead."""
    path = _check_exists(path)
    arrays = _arrays(path)
    if "records" in arrays:
        first = 0
        for win in _windows(arrays["records"], chunk):
            if win.dtype == RECORD:
                yield RecordWindow(win, first, path) if raw else _records(win, first, path)
            else:  # the same fields in another order or byte order
                yield _addresses(win["addr"], first, path), _writes(win["is_write"], path)
            first += len(win)
        return
    addr = arrays["addr"]
    writes = _windows(arrays["is_write"], chunk) if "is_write" in arrays else None
    first = 0
    for win in _windows(addr, chunk):
        a = _addresses(win, first, path)
        yield a, (np.zeros(a.size, np.bool_) if writes is None else _writes(next(writes), path))
        first += a.size


def read_chunks(path, *, chunk: int = TRACE_CHUNK, on_read=None, raw: bool = False):
    """Yield (addrs int64, is_write bool) of any trace format, at most `chunk` accesses
    each (lackey text is read in buffers of 4 * chunk bytes: a data line is >= 7 bytes),
    skipping empty ones. A trace with no access at all is an error naming the file.
    raw: a chunk of a compact record trace comes as its RecordWindow (read_numpy_trace)."""
    name = os.fspath(path)
    if name.endswith((".npy", ".npz")):
        reader = read_numpy_trace(name, chunk=chunk, raw=raw)
    else:
        reader = read_lackey(name, read_chunk=4 * chunk, on_read=on_read)
    total = 0
    for item in reader:
        k = len(item) if isinstance(item, RecordWindow) else item[0].size
        if k:
            total += k
            yield item
    if total == 0:
        raise ValueError(f"{name}: no data accesses in this trace (lackey: no ' L', ' S' or ' M' line; "
                         f"record it with valgrind --tool=lackey --trace-mem=yes)")


# ---- convert ------------------------------------------------------------------------------

def _record_header(n: int) -> bytes:
    """A .npy (format 1.0) header for n RECORDs, always _HEADER_BYTES long."""
    body = repr({"descr": np.lib.format.dtype_to_descr(RECORD), "fortran_order": False, "shape": (n,)})
    head = b"\x93NUMPY\x01\x00" + struct.pack("<H", _HEADER_BYTES - 10)
    return head + body.encode("latin1").ljust(_HEADER_BYTES - 10 - 1) + b"\n"


class _RecordWriter:
    """Appends (addrs, is_write) chunks to an open binary file as a compact .npy trace;
    finish() fills in the length."""

    def __init__(self, f):
        self.f, self.n = f, 0
        f.write(_record_header(0))

    def write(self, addrs: np.ndarray, writes: np.ndarray) -> None:
        rec = np.empty(addrs.size, RECORD)
        rec["addr"], rec["is_write"] = addrs, writes
        self.f.write(rec.tobytes())
        self.n += addrs.size

    def finish(self) -> int:
        self.f.seek(0)
        self.f.write(_record_header(self.n))
        self.f.flush()
        return self.n


@contextlib.contextmanager
def two_passes(path, *, chunk: int = TRACE_CHUNK, raw: bool = False):
    """(first, again) for reading a trace twice: `first` yields its chunks, `again()` yields
    them once more after `first` is exhausted. A NumPy trace is read from its file both
    times; lackey text is parsed once, its chunks spooled to a temporary compact trace
    (9 bytes per access, in TMPDIR) that `again()` reads and the context removes.
    raw: compact record chunks come as RecordWindows (read_chunks)."""
    name = os.fspath(path)
    if name.endswith((".npy", ".npz")):
        yield read_chunks(name, chunk=chunk, raw=raw), lambda: read_chunks(name, chunk=chunk, raw=raw)
        return
    with tempfile.NamedTemporaryFile(prefix="pagesweep-trace-", suffix=".npy") as spool:
        writer = _RecordWriter(spool)

        def first():
            for addrs, writes in read_chunks(name, chunk=chunk):
                writer.write(addrs, writes)
                yield addrs, writes
            writer.finish()

        yield first(), lambda: read_chunks(spool.name, chunk=chunk, raw=raw)


def convert(src, dst, *, chunk: int = TRACE_CHUNK, progress: bool = True) -> int:
    """Write trace `src` (any format) to `dst` as the compact .npy record trace; returns the
    number of accesses. dst appears only when complete (a temporary name, then rename)."""
    from tqdm import tqdm

    src, dst = check_trace(src), os.fspath(dst)
    if not dst.endswith(".npy"):
        raise ValueError(f"convert: the output must be named .npy, got {dst!r}")
    tmp = os.path.join(os.path.dirname(os.path.abspath(dst)), f".{os.path.basename(dst)}.{os.getpid()}.tmp")
    bar = tqdm(total=os.path.getsize(src), unit="B", unit_scale=True, desc=os.path.basename(src),
               disable=not progress, file=sys.stderr)
    pos = [0]

    def on_read(at):
        bar.update(at - pos[0])
        pos[0] = at

    try:
        with open(tmp, "wb") as out:
            writer = _RecordWriter(out)
            for addrs, writes in read_chunks(src, chunk=chunk, on_read=on_read):
                writer.write(addrs, writes)
            n = writer.finish()
            os.fsync(out.fileno())
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        bar.update(bar.total - pos[0])
        bar.close()
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workloads.trace", description="Trace file tools.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="lackey text (.gz), .npy or .npz -> the compact .npy trace "
                                       "(addr int64, is_write bool), 9 bytes per access")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        n = convert(args.src, args.dst, progress=not args.quiet)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.dst}: {n} accesses")
    return 0


if __name__ == "__main__":
    sys.exit(main())
