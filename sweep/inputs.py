"""Digests of the files a cell's workload reads, for its cell_key.

A workload that reads files (workload.kind trace, snapshot, file_tree, elf_tree; sweep/schema.py
PATH_KINDS) computes different results when those files change, even at the same
path. Its cell key therefore includes the sha256 of a manifest of its inputs: for a
trace, the file's size and content digest; for a tree, the sorted relative path, size
and content digest of every file the workload reads (workloads/files.py scan_tree:
the same walk, max_files and ELF filter). Cells that read no file get no digest, so
their keys are what they always were.

Content digests are cached in ``<results>/state/inputs.json`` by path, size, mtime_ns,
ctime_ns and inode (a rewrite in place changes ctime even when size and mtime are put
back), so a large tree is hashed once, not on every run. The cache is rewritten whole
and atomically; two runs saving at once lose at most some entries, never correctness.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from sweep.store import STATE, write_text_atomic

CACHE_VERSION = 1
CHUNK = 1 << 20


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class InputDigests:
    """Content digests with a persistent cache; ``results=None`` keeps it in memory."""

    def __init__(self, results: Path | str | None = None):
        self.path = Path(results) / STATE / "inputs.json" if results is not None else None
        self.entries: dict = {}
        self.dirty = False
        self.manifests: dict = {}            # (kind, path, max_files) -> digest, this process
        if self.path is not None:
            try:
                data = json.loads(self.path.read_text())
                if data.get("version") == CACHE_VERSION:
                    self.entries = data["files"]
            except (OSError, ValueError, KeyError, AttributeError):
                pass                          # no cache yet, or unreadable: rebuilt

    def file(self, path: str) -> tuple:
        """(size, sha256) of one file, from the cache when it is unchanged."""
        st = os.stat(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        hit = self.entries.get(path)
        if hit is not None and hit[:4] == stamp:
            return st.st_size, hit[4]
        digest = file_sha256(path)
        self.entries[path] = stamp + [digest]
        self.dirty = True
        return st.st_size, digest

    def workload(self, workload: dict) -> str | None:
        """The inputs digest of a resolved workload config, None if it reads no file."""
        from sweep.schema import PATH_KINDS

        kind, path = workload.get("kind"), workload.get("path")
        if kind not in PATH_KINDS or not path:
            return None
        key = (kind, path, workload.get("max_files"))
        if key not in self.manifests:
            self.manifests[key] = hashlib.sha256(json.dumps(self._manifest(kind, path, workload),
                                                            separators=(",", ":")).encode()).hexdigest()
        return self.manifests[key]

    def _manifest(self, kind: str, path: str, workload: dict) -> list:
        from sweep.schema import FILE_KINDS
        from workloads.files import scan_tree

        if kind in FILE_KINDS:  # one input file (a trace, a snapshot capture)
            return [["", *self.file(path)]]

        scan = scan_tree(path, max_files=workload.get("max_files"), elf_only=kind == "elf_tree")
        out = []
        for file, _ in scan.files:
            try:
                out.append([os.path.relpath(file, path), *self.file(file)])
            except OSError:
                out.append([os.path.relpath(file, path), None, None])   # unreadable now: as the workload finds it
        return out

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        live = {p: e for p, e in self.entries.items() if os.path.exists(p)}
        write_text_atomic(json.dumps({"version": CACHE_VERSION, "files": live}, separators=(",", ":")), self.path)
        self.dirty = False
