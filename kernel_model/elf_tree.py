"""The elf_tree workload's kernel side: every ELF file under a directory, loaded as execve would.

`scan_elf_tree()` answers "which files of this tree cannot load at this process page
size, and why" with binfmt_elf.check_elf() alone (no System). `load_elf_phase()` is what
simulate() calls for one workloads.phases.LoadElf: it maps the file into a fresh mm of
the given process page size and counts the verdict in system.stats.

Files: regular files only (lstat: symlinks are not followed, so a tree never counts a
file twice or leaves its root), whose first four bytes are the ELF magic; the walk is in
sorted path order so max_files takes the same files every time.
"""

from __future__ import annotations

import os
import stat
from collections import Counter

from .binfmt_elf import ELFMAG, check_elf, load_elf_binary

STAT_FILES = "elf_files"
STAT_OK = "elf_ok"
STAT_FAILED = "elf_failed"
STAT_RULE_PREFIX = "elf_failed_"  # + rule: one counter per failure rule


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == ELFMAG
    except OSError:
        return False


def iter_elf_files(root: str, max_files: int | None = None):
    """Paths of the regular ELF files under `root`, at most max_files.

    Order: by path, comparing component by component (a directory's entries sorted by
    name, a subdirectory's files where its name sorts), so the order never depends on
    the filesystem's readdir order. Symlinks (to files or directories) are skipped.
    """
    if max_files is not None and max_files < 0:
        raise ValueError(f"elf_tree: max_files must be >= 0 or None, got {max_files}")
    if not os.path.isdir(root):
        raise ValueError(f"elf_tree: workload.path {root!r} is not a directory")
    found = 0
    stack = [root]
    while stack:
        top = stack.pop()
        if not isinstance(top, str):  # a file entry queued in order
            if max_files is not None and found >= max_files:
                return
            if _is_elf(top.path):
                found += 1
                yield top.path
            continue
        try:
            with os.scandir(top) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        queued = []
        for entry in entries:
            try:
                if entry.is_symlink():
                    continue
                if entry.is_dir(follow_symlinks=False):
                    queued.append(entry.path)
                elif stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                    queued.append(entry)
            except OSError:
                continue
        stack.extend(reversed(queued))


def scan_elf_tree(path: str, page_size: int, max_files: int | None = None) -> dict:
    """Check every ELF file under `path` at process page size `page_size`.

    Returns dict(elf_files, elf_ok, elf_failed, reasons: Counter(rule -> files),
    failures: [(path, rule)] in path order).
    """
    reasons: Counter = Counter()
    failures: list[tuple[str, str]] = []
    files = ok = 0
    for elf in iter_elf_files(path, max_files):
        files += 1
        verdict = check_elf(elf, page_size)
        if verdict.ok:
            ok += 1
        else:
            reasons[verdict.rule] += 1
            failures.append((elf, verdict.rule))
    return {"elf_files": files, "elf_ok": ok, "elf_failed": files - ok, "reasons": reasons, "failures": failures}


def load_elf_phase(system, page_size, path: str):
    """Run one LoadElf phase: execve-style load of `path` into a new process of `page_size`.

    Counts elf_files / elf_ok / elf_failed and elf_failed_<rule> in system.stats, then
    exits the process so the next file starts from a fresh mm (one execve each). Returns
    the binfmt_elf.ElfLoadResult.
    """
    process = system.execve(page_size=page_size)
    try:
        result = load_elf_binary(process, path)
    finally:
        process.exit()
    system.stats.count(STAT_FILES)
    if result.ok:
        system.stats.count(STAT_OK)
    else:
        system.stats.count(STAT_FAILED)
        system.stats.count(STAT_RULE_PREFIX + result.rule)
    return result
