"""File workloads: a seeded synthetic file set, a real directory tree, real ELF files.

file_set   nr_small_files configuration files, sizes lognormal (median
           small_file_median, sigma small_file_sigma; at least 1 byte), each created
           and read whole with read(); then nr_large_files of large_file_size are
           created, and each is mmapped private read-only as region "large<j>" and
           touched on a seeded sorted sample of round(mmap_fraction * pages) of its 4K
           pages (one load at each page's start). large_folio_fs sets
           CreateFile.large_folios. With mlock_fraction or pin_fraction > 0, a holder
           process at the kernel page size first maps every large file and mlocks /
           long-term pins the first round(fraction * pages) of its pages (see
           holder_phases); the mapping process is then forked and exec'd from it.
file_tree  every regular file under workload.path (no symlink following), in sorted
           walk order, becomes CreateFile(size from lstat) + ReadFile.
elf_tree   every regular file under workload.path that starts with the ELF magic
           becomes LoadElf(path).

Walk order: os.walk top-down with each directory's subdirectories and files sorted by
name, so the phases do not depend on the filesystem's readdir order. max_files caps
the files used (None: all). Entries that cannot be read (lstat or open fails, or a
directory cannot be listed) are skipped and counted in `skipped`; non-ELF files under
elf_tree are counted in `non_elf`.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass

import numpy as np

from kernel_model.mm_types import PROT_READ
from workloads.base import Workload
from workloads.config import WORKLOAD_PAGE
from workloads.phases import (ACCESS_CHUNK, Access, CreateFile, Exec, Fork, LoadElf, Mlock, MmapFile, Pin, ReadFile,
                              TouchTail)

# include/uapi/linux/elf.h: ELFMAG "\177ELF", SELFMAG 4; fs/binfmt_elf.c:
# load_elf_binary() rejects a file whose e_ident does not start with it.
ELFMAG = b"\x7fELF"

SMALL_DIR = "/pagesweep/small"
LARGE_DIR = "/pagesweep/large"


def lognormal_sizes(rng: np.random.Generator, n: int, median: int, sigma: float) -> np.ndarray:
    """n file sizes in bytes: round(exp(N(ln median, sigma))), at least 1."""
    sizes = np.rint(rng.lognormal(mean=math.log(median), sigma=sigma, size=n)).astype(np.int64)
    return np.maximum(sizes, 1)


def fraction_of_pages(size: int, fraction: float) -> int:
    """round-half-up(fraction * pages) of a file of `size` bytes in 4K pages (the last
    page may be partial)."""
    return math.floor(fraction * -(-size // WORKLOAD_PAGE) + 0.5)


def touched_pages(rng: np.random.Generator, size: int, fraction: float) -> np.ndarray:
    """A sorted seeded sample, without repeats, of fraction_of_pages(size, fraction) of
    the 4K pages of a file of `size` bytes."""
    nr_pages = -(-size // WORKLOAD_PAGE)
    nr = fraction_of_pages(size, fraction)
    return np.sort(rng.choice(nr_pages, size=nr, replace=False)).astype(np.int64)


def file_touch_phases(region: str, pages: np.ndarray):
    """Loads at the start of each page, at most ACCESS_CHUNK per phase."""
    for first in range(0, len(pages), ACCESS_CHUNK):
        part = pages[first: first + ACCESS_CHUNK] * WORKLOAD_PAGE
        yield Access(region, part, np.zeros(len(part), dtype=np.bool_))


def small_file_phases(cfg, rng):
    sizes = lognormal_sizes(rng, cfg.nr_small_files, cfg.small_file_median, cfg.small_file_sigma)
    for i, size in enumerate(sizes.tolist()):
        path = f"{SMALL_DIR}/{i:05d}.conf"
        yield CreateFile(path, size, large_folios=cfg.large_folio_fs)
        yield ReadFile(path)


def large_file_paths(cfg) -> list[str]:
    return [f"{LARGE_DIR}/{j:03d}.dat" for j in range(cfg.nr_large_files)]


def has_holder(cfg) -> bool:
    return bool(cfg.nr_large_files) and (cfg.mlock_fraction > 0 or cfg.pin_fraction > 0)


def holder_phases(cfg, paths):
    """The pagecache_policy hazards (David/Jan in the thread): a process at the kernel
    page size maps each large file ("held<j>") and mlocks (mm/mlock.c) and/or
    long-term pins (mm/gup.c, FOLL_LONGTERM) its first fraction of pages, so their
    small folios cannot be dropped when a larger-page process maps the file later.
    The holder stays alive: later processes are forked from it and exec'd, and
    neither fork (dup_mmap() clears VM_LOCKED_MASK, kernel/fork.c) nor exec carries
    the locks, so they stay the holder's."""
    if not has_holder(cfg):
        return
    yield Fork()
    yield Exec("kernel")
    for j, path in enumerate(paths):
        region = f"held{j}"
        yield MmapFile(region, path, PROT_READ, shared=False)
        for fraction, phase in ((cfg.mlock_fraction, Mlock), (cfg.pin_fraction, Pin)):
            nr = fraction_of_pages(cfg.large_file_size, fraction)
            if nr:
                yield phase(region, 0, min(nr * WORKLOAD_PAGE, cfg.large_file_size))


class FileSetWorkload(Workload):
    def __init__(self, cfg, seed):
        super().__init__(cfg, seed)
        if cfg.nr_large_files and cfg.large_file_size == 0:
            raise ValueError("workload.large_file_size: must be at least 1 byte when nr_large_files > 0")

    def setup_phases(self, rng):
        """The small files read, the large files created: shared with workload.kind=mixed.
        Returns (via StopIteration's value, i.e. `paths = yield from ...`) the large files."""
        cfg = self.cfg
        yield from small_file_phases(cfg, rng)
        paths = large_file_paths(cfg)
        for path in paths:
            yield CreateFile(path, cfg.large_file_size, large_folios=cfg.large_folio_fs)
        return paths

    def phases(self):
        cfg = self.cfg
        rng = np.random.Generator(np.random.PCG64(self.seed))
        paths = yield from self.setup_phases(rng)
        if has_holder(cfg):
            yield from holder_phases(cfg, paths)
            yield Fork()
            yield Exec(None)
        if cfg.read_before_mmap:
            # Cached by read() first (readahead's folios, small ones included), then mapped:
            # the case where a larger process page meets smaller folios (Dev's drop and re-read).
            for path in paths:
                yield ReadFile(path)
        for j, path in enumerate(paths):
            region = f"large{j}"
            yield MmapFile(region, path, PROT_READ, shared=False)
            yield from file_touch_phases(region, touched_pages(rng, cfg.large_file_size, cfg.mmap_fraction))
            if cfg.touch_tail:
                yield TouchTail(region)


def _probe(path: str, nbytes: int) -> bytes:
    """The first nbytes of a file (b"" to only check it opens); OSError if unreadable."""
    with open(path, "rb") as f:
        return f.read(nbytes)


@dataclass(frozen=True)
class TreeScan:
    files: tuple  # ((absolute path, size), ...) in walk order
    skipped: int  # unreadable entries
    non_elf: int  # regular readable files without the ELF magic (elf scans only)


def scan_tree(top: str, *, max_files: int | None, elf_only: bool) -> TreeScan:
    """The regular files under `top` in sorted walk order, as the module doc says."""
    if not os.path.isdir(top):
        raise FileNotFoundError(f"workload.path: directory {top!r} does not exist (or is not a directory)")
    top = os.path.abspath(top)
    errors = []
    files, non_elf = [], 0
    for root, dirs, names in os.walk(top, onerror=errors.append, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode):
                    continue
                head = _probe(path, len(ELFMAG) if elf_only else 0)
            except OSError as exc:
                errors.append(exc)
                continue
            if elf_only and head != ELFMAG:
                non_elf += 1
                continue
            files.append((path, st.st_size))
            if max_files is not None and len(files) == max_files:
                return TreeScan(tuple(files), len(errors), non_elf)
    return TreeScan(tuple(files), len(errors), non_elf)


class _TreeWorkload(Workload):
    ELF_ONLY = False

    def __init__(self, cfg, seed):
        super().__init__(cfg, seed)
        if not os.path.isdir(cfg.path):
            raise FileNotFoundError(
                f"workload.path: directory {cfg.path!r} does not exist (or is not a directory)"
            )
        self._scan = None

    @property
    def scan(self) -> TreeScan:
        if self._scan is None:  # walked once, on first use, then fixed for every phases() call
            self._scan = scan_tree(self.cfg.path, max_files=self.cfg.max_files, elf_only=self.ELF_ONLY)
        return self._scan

    @property
    def skipped(self) -> int:
        return self.scan.skipped

    def describe(self) -> dict:
        scan = self.scan
        out = {**super().describe(), "files": len(scan.files), "skipped": scan.skipped}
        if self.ELF_ONLY:
            out["non_elf"] = scan.non_elf
        return out


class FileTreeWorkload(_TreeWorkload):
    def phases(self):
        for path, size in self.scan.files:
            yield CreateFile(path, size, large_folios=self.cfg.large_folio_fs)
            yield ReadFile(path)


class ElfTreeWorkload(_TreeWorkload):
    ELF_ONLY = True

    @property
    def non_elf(self) -> int:
        return self.scan.non_elf

    def phases(self):
        for path, _ in self.scan.files:
            yield LoadElf(path)
