"""The results directory as a store shared by concurrent sweeps and queries.

Layout (``docs/results-store.md`` has the full design)::

    <dir>/cells/experiment=<name>/date=<YYYY-MM-DD>/<run_id>-<part>.parquet   table cells
    <dir>/runs/date=<YYYY-MM-DD>/<run_id>.parquet                             table runs
    <dir>/quarantine/<path relative to dir>       unreadable files, moved aside
    <dir>/state/claims/<cell_key>                 a cell a live run is computing (sweep.claims)
    <dir>/state/live/<run_id>.json                a live run's lease (sweep.claims)
    <dir>/state/snapshots/<host>-<pid>-<token>/   a query's hard-linked view of the files
    <dir>/state/inputs.json                       input file digests (sweep.inputs)

Rules every writer and reader follows:

* A file appears under a final name only whole: it is written under a hidden temporary
  name (``.<name>.<pid>.<token>.tmp``, never matching ``*.parquet``) in its directory,
  fsynced and renamed into place. Temporary names are never read.
* A cell file is immutable once named. A run's parts ``00001``, ``00002``... are merged
  into part ``00000``, whose Parquet metadata lists the parts it holds
  (``pagesweep.merged_parts``); the parts are unlinked after it is renamed into place.
  ``listing()`` never returns a part that a ``00000`` beside it holds, so a reader sees
  each row once whether it lists the directory before, during or after a compaction.
* Readers snapshot: ``listing()`` for the sweep's own reads (a file that vanishes under
  it means a compaction or quarantine ran: list again), hard links for query
  connections (``Snapshot``), so a query never opens a path that was unlinked since.
* A file that cannot be parsed is moved to ``quarantine/`` with a warning naming it;
  never fatal, never silently dropped.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import secrets
import shutil
import socket
import sys
import weakref
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

CELLS, RUNS, QUARANTINE, STATE = "cells", "runs", "quarantine", "state"
COMPACT_PART = 0
MERGED_KEY = b"pagesweep.merged_parts"
# A listing that keeps changing under a reader (files vanishing) is retried this often.
MAX_RETRIES = 20


class StoreError(Exception):
    """The results directory cannot be used (one line, names the directory)."""


def tmp_name(path: Path) -> Path:
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def write_atomic(table: pa.Table, path: Path, metadata: dict | None = None) -> None:
    """Write ``table`` to ``path``: temporary name, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    tmp = tmp_name(path)
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def split_part(path) -> tuple:
    """(run_id, part number or None) of ``<run_id>-<part>.parquet``."""
    stem = os.path.basename(str(path))[: -len(".parquet")]
    run_id, _, part = stem.rpartition("-")
    return (run_id, int(part)) if run_id and part.isdigit() else (stem, None)


# ---- migration -------------------------------------------------------------------

def migrate(root: Path) -> None:
    """Move ``<root>/experiment=*`` (the layout before ``cells/``) under ``cells/``.

    Every step is a rename that either happens whole or not at all, so concurrent
    migrations (every sweep and query runs this) and readers listing both places
    (``listing`` does) agree. A directory whose target exists is merged file by file.
    """
    root = Path(root)
    try:
        legacy = [p for p in root.iterdir() if p.name.startswith("experiment=") and p.is_dir()]
    except FileNotFoundError:
        return
    for src in legacy:
        try:
            _move_tree(src, root / CELLS / src.name)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                return                  # a read-only store: listing() reads the old layout too
            raise


def _move_tree(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dst)             # fails if dst is a non-empty directory
        return
    except FileNotFoundError:
        return                          # another process moved it
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    try:
        children = sorted(src.iterdir())
    except FileNotFoundError:
        return                          # another process moved or removed it meanwhile
    for child in children:
        if child.is_dir():
            _move_tree(child, dst / child.name)
        elif not (dst / child.name).exists():
            try:
                os.rename(child, dst / child.name)
            except FileNotFoundError:
                pass
    try:
        src.rmdir()
    except OSError:
        pass                            # not empty: a writer of the old layout is still at it


# ---- quarantine ------------------------------------------------------------------

def quarantine(root: Path, path: Path, reason: str) -> Path | None:
    """Move an unreadable file to ``<root>/quarantine/<its relative path>``; warn naming it.

    Returns the new path, or None when the file is already gone (another process moved it).
    """
    root = Path(root)
    rel = Path(path).relative_to(root)
    dest = root / QUARANTINE / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while dest.exists():
        dest = root / QUARANTINE / rel.parent / f"{rel.name}.{n}"
        n += 1
    try:
        os.rename(path, dest)
    except FileNotFoundError:
        return None
    print(f"warning: unreadable results file {path} ({reason}): moved to {dest}", file=sys.stderr, flush=True)
    return dest


def unparseable(e: BaseException) -> bool:
    """An error about a file's bytes (quarantine it), not about reaching it: pyarrow's
    parse errors (ArrowInvalid, OSError "Couldn't deserialize thrift") carry no errno;
    EACCES, EMFILE, EIO... do and are raised as they are."""
    return isinstance(e, (pa.ArrowException, ValueError, OSError)) and getattr(e, "errno", None) is None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def verify(root: Path, paths) -> int:
    """Read each file whole; quarantine those that fail. Returns how many were moved."""
    moved = 0
    for path in paths:
        try:
            pq.read_table(path)
        except FileNotFoundError:
            continue
        except (pa.ArrowException, OSError, ValueError) as e:
            if not unparseable(e):
                raise
            moved += quarantine(root, Path(path), _first_line(e)) is not None
    return moved


# ---- listing ---------------------------------------------------------------------

# (path, inode, size, mtime_ns) -> PLAIN, or the frozenset of parts a 00000 holds.
# Named files never change in place, so a footer is read once per process.
_footers: dict = {}
PLAIN, GONE = "plain", "gone"


def _footer(root: Path, path: Path):
    """PLAIN, or the parts a merged file holds; GONE if it vanished; None if it was
    quarantined."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return GONE
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _footers:
        try:
            meta = pq.read_schema(path).metadata or {}
        except FileNotFoundError:
            return GONE
        except (pa.ArrowException, OSError, ValueError) as e:
            if not unparseable(e):
                raise
            quarantine(root, path, _first_line(e))
            return None
        if len(_footers) > 100_000:
            _footers.clear()
        merged = meta.get(MERGED_KEY)
        _footers[key] = PLAIN if merged is None else frozenset(json.loads(merged))
    return _footers[key]


def _files(root: Path, table: str) -> list:
    """Candidate final names (the old cells layout included), sorted by their place
    under the new layout. glob.glob, unlike Path.glob, skips a directory that vanishes
    while it walks (a migration renaming it)."""
    found = {}
    patterns = ([("experiment=*", "date=*", "*.parquet"), (CELLS, "experiment=*", "date=*", "*.parquet")]
                if table == CELLS else [(RUNS, "date=*", "*.parquet")])
    for parts in patterns:                      # the old layout first: a file moved meanwhile
        for name in glob.glob(os.path.join(glob.escape(str(root)), *parts)):   # is seen in the new one
            p = Path(name)
            rel = p.relative_to(root)
            if rel.parts[0] != table:
                rel = Path(CELLS, *rel.parts)
            found.setdefault(rel, p)
    return [found[r] for r in sorted(found)]


def listing(root: Path, table: str = CELLS) -> list:
    """The files of ``table`` (CELLS or RUNS) a reader should read, as Paths.

    Unparseable files are quarantined; parts held by a ``00000`` beside them are left
    out (a 00000 without the merged-parts list, written before it existed, holds every
    numbered part of its run). A file that vanishes between the directory walk and its
    check (compacted, migrated, quarantined by another process) makes the listing start
    again, so it never misses rows that moved.
    """
    root = Path(root)
    for _ in range(MAX_RETRIES):
        files = [(p, _footer(root, p)) for p in _files(root, table)]
        if any(info is GONE for _, info in files):
            continue
        files = [(p, info) for p, info in files if info is not None]
        merged = {(p.parent, split_part(p)[0]): info for p, info in files if split_part(p)[1] == COMPACT_PART}
        out = []
        for p, _ in files:
            run_id, part = split_part(p)
            held = merged.get((p.parent, run_id))
            if part not in (None, COMPACT_PART) and held is not None and (held == PLAIN or part in held):
                continue
            out.append(p)
        return out
    raise StoreError(f"results directory {root}: files keep vanishing while listed; try again")


def read_each(root: Path, table: str, read, files=None) -> list:
    """[read(path) for each file of listing()], retried from a fresh listing when a file
    vanishes under it (a compaction or quarantine by another process); a file that
    fails to parse is quarantined and the read retried without it."""
    for _ in range(MAX_RETRIES):
        paths = listing(root, table) if files is None else files(listing(root, table))
        try:
            return [read(p) for p in paths]
        except FileNotFoundError:
            continue
        except (pa.ArrowException, OSError, ValueError):
            if not verify(root, paths):
                raise
    raise StoreError(f"results directory {root}: files keep vanishing while read; try again")


# ---- query snapshots -------------------------------------------------------------

def _holder_alive(host: str, pid: int) -> bool:
    from sweep.claims import pid_alive

    return host != socket.gethostname() or pid_alive(pid, None)


class Snapshot:
    """Hard links to one consistent listing, under ``state/snapshots/``: files a query
    reads stay readable even if a compaction unlinks their names meanwhile. Removed
    when the object is collected or the process exits; those of dead processes are
    removed by the next snapshot on the same host. ``self.root`` is None where links
    cannot be made (a read-only store): read the listed paths in place."""

    def __init__(self, results: Path):
        self.results = Path(results)
        base = self.results / STATE / "snapshots"
        self.root = None
        self.cells, self.runs = [], []
        for _ in range(MAX_RETRIES):
            try:
                self._sweep_dead(base)
                snap = base / f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
                snap.mkdir(parents=True)
            except OSError as e:
                if e.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
                    raise
                self.cells, self.runs = listing(self.results, CELLS), listing(self.results, RUNS)
                return
            self.root = snap
            self._finalizer = weakref.finalize(self, shutil.rmtree, str(snap), True)
            try:
                self.cells = self._link(listing(self.results, CELLS))
                self.runs = self._link(listing(self.results, RUNS))
                return
            except FileNotFoundError:
                self._finalizer()                    # a file went between listing and link
        raise StoreError(f"results directory {results}: files keep vanishing while read; try again")

    def _link(self, paths) -> list:
        out = []
        for p in paths:
            rel = p.relative_to(self.results)
            if rel.parts[0] not in (CELLS, RUNS):
                rel = Path(CELLS, *rel.parts)        # the old layout
            dst = self.root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(p, dst)
            out.append(dst)
        return out

    def original(self, path) -> Path:
        """The store path a snapshot file links to."""
        path = Path(path)
        if self.root is None or self.root not in path.parents:
            return path
        rel = path.relative_to(self.root)
        moved = self.results / rel
        legacy = self.results / Path(*rel.parts[1:])
        return moved if moved.exists() or not legacy.exists() else legacy

    def close(self) -> None:
        if self.root is not None:
            self._finalizer()

    @staticmethod
    def _sweep_dead(base: Path) -> None:
        if not base.is_dir():
            return
        for d in base.iterdir():
            host, _, rest = d.name.rpartition("-")[0].rpartition("-")
            if rest.isdigit() and host == socket.gethostname() and not _holder_alive(host, int(rest)):
                shutil.rmtree(d, ignore_errors=True)


def require_dir(results) -> Path:
    root = Path(results)
    if not root.is_dir():
        raise StoreError(f"results directory {results} does not exist; pass --results DIR")
    return root
