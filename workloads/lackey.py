"""Read recorded memory traces: valgrind lackey text (plain or .gz) and NumPy arrays.

Lackey (`valgrind --tool=lackey --trace-mem=yes`, valgrind lackey/lk_main.c) writes
one line per access:
    "I  04001090,3"     an instruction fetch        -> ignored
    " L 1ffefffd68,8"   a data load                 -> one access, read
    " S 1ffefffd68,8"   a data store                -> one access, write
    " M 0402a0a8,4"     a modify (load then store)  -> one access, write
The address is hexadecimal without 0x, the size decimal. Every other line (the
"==pid== ..." banner and summary, program output) is skipped. A line that starts
like a data line (" L", " S", " M") but does not match " X <hex>,<decimal>" is an
error naming the file and 1-based line number.

The parser is vectorised over a buffer of whole lines (numpy over the bytes, then over
a matrix of the data lines); there is no Python work per line. Buffers are READ_CHUNK bytes, so a
chunk holds at most READ_CHUNK // 7 data lines (the shortest, " L 0,0\\n", is 7 bytes)
so a buffer never holds more than ACCESS_CHUNK accesses. workloads/trace.py reads
every trace format through read_chunks().
"""

from __future__ import annotations

import gzip
import os

import numpy as np

from workloads.phases import ACCESS_CHUNK

READ_CHUNK = 16 << 20
_MAX_HEX_DIGITS = 16  # a 64-bit address
_MAX_LINE = 64  # " X " + 16 hex digits + "," + a size: longer is not a lackey data line
_INT64_MAX = np.uint64((1 << 63) - 1)

# Byte classes for the vectorised parser.
_HEX = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i
_NOT_DIGIT = np.ones(256, dtype=np.uint8)
_NOT_DIGIT[ord("0"): ord("9") + 1] = 0
_KIND = np.zeros(256, dtype=np.uint8)  # 1 load, 2 store or modify
_KIND[ord("L")] = 1
_KIND[ord("S")] = 2
_KIND[ord("M")] = 2


def _check_exists(path) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"workload.path: trace file {path!r} does not exist (or is not a file)")
    return path


def parse_lackey_lines(buf: bytes, *, path: str = "<buffer>", first_line: int = 0):
    """Parse whole lackey lines; return (addrs int64, is_write bool) of the data lines.

    `buf` holds complete lines (a final line without newline is accepted);
    `first_line` is the number of lines of the file before it, for error messages.

    Byte-wide passes find the line ends and the data-line starts (a newline, a space,
    then L, S or M); only the data lines are then gathered into an (n, width) byte
    matrix, width = the longest data line (at most _MAX_LINE), and checked and decoded
    column by column.
    """
    if not buf:
        return np.empty(0, np.int64), np.empty(0, np.bool_)
    if not buf.endswith(b"\n"):
        buf += b"\n"
    # a[0] is a sentinel newline so that every line start follows a newline; two bytes
    # of padding keep a[start + 1] in range.
    a = np.frombuffer(b"\n" + buf + b"\0\0", dtype=np.uint8)
    is_nl = a == ord("\n")
    newlines = np.flatnonzero(is_nl)  # newlines[k] ends line k - 1 (k >= 1)
    head = is_nl[:-2] & (a[1:-1] == ord(" ")) & (_KIND[a[2:]] != 0)
    s = np.flatnonzero(head) + 1  # data line starts
    if s.size == 0:  # a buffer of banner or instruction lines only
        return np.empty(0, np.int64), np.empty(0, np.bool_)
    line = np.searchsorted(newlines, s) - 1  # 0-based line number in buf
    e = newlines[line + 1]
    e -= (a[e - 1] == ord("\r")) & (e - 1 > s)  # CRLF files
    is_write = _KIND[a[s + 1]] == 2
    length = e - s
    width = int(min(length.max(initial=0), _MAX_LINE))
    col = np.arange(width)
    inline = col < length[:, None]
    m = a.take(s[:, None] + col, mode="clip")  # (n, width) bytes of the data lines
    m *= inline  # zero past each line's end

    is_comma = m == ord(",")
    comma = np.where(is_comma.any(axis=1), is_comma.argmax(axis=1), width)
    hexval = _HEX[m]
    in_addr = (col >= 3) & (col < comma[:, None])
    in_size = (col > comma[:, None]) & inline
    ndigits = comma - 3
    ok = (
        (length <= _MAX_LINE)
        & (length > comma + 1)  # at least one size digit
        & (ndigits >= 1)
        & (ndigits <= _MAX_HEX_DIGITS)
        & (m[:, 2] == ord(" ") if width > 2 else False)
        & ~(in_addr & (hexval == 255)).any(axis=1)
        & ~(in_size & (_NOT_DIGIT[m] != 0)).any(axis=1)
    )
    value = np.zeros(len(s), dtype=np.uint64)
    for j in range(3, min(width, 3 + _MAX_HEX_DIGITS)):  # Horner over the address columns
        take = ok & in_addr[:, j]
        value = np.where(take, (value << np.uint64(4)) | hexval[:, j].astype(np.uint64), value)
    ok &= value <= _INT64_MAX

    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        text = buf[int(s[bad]) - 1: int(e[bad]) - 1].decode("latin-1")
        raise ValueError(
            f"{path}:{first_line + int(line[bad]) + 1}: malformed lackey data line {text!r}; "
            f"expected ' L|S|M <hex address>,<decimal size>' with an address below 2**63"
        )
    return value.astype(np.int64), is_write


def read_lackey(path, *, read_chunk: int = READ_CHUNK, on_read=None):
    """Yield (addrs, is_write) arrays per buffer of whole lines of a lackey file (empty
    arrays for a buffer without data lines). on_read(n): called with the bytes of the
    file (compressed bytes for .gz) consumed so far, for a progress bar."""
    path = _check_exists(path)
    if read_chunk > 7 * ACCESS_CHUNK:
        raise ValueError(f"read_lackey: read_chunk {read_chunk} could exceed ACCESS_CHUNK data lines")
    lines_before = 0
    carry = b""
    with open(path, "rb") as raw, (gzip.open(raw, "rb") if path.endswith(".gz") else raw) as f:
        while True:
            try:
                block = f.read(read_chunk)
            except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
                raise ValueError(f"{path}: cannot read the gzip stream after line {lines_before}: {e}") from None
            if on_read is not None:
                on_read(raw.tell())
            if not block:
                break
            block = carry + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:  # no line end yet: keep reading
                carry = block
                continue
            whole, carry = block[:cut], block[cut:]
            yield parse_lackey_lines(whole, path=path, first_line=lines_before)
            lines_before += whole.count(b"\n")
    if carry:
        yield parse_lackey_lines(carry, path=path, first_line=lines_before)
