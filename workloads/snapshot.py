"""Replay a captured machine (sweep.snapshot): workload.kind=snapshot, workload.path=FILE.

The phases rebuild the capture's memory under the configured page-size design:

1. every file behind a captured file VMA is created (CreateFile, /snapshot/<dev>/<inode>,
   its captured size; large_folios = workload.large_folio_fs);
2. the page cache is filled with exactly the captured file pages, deduplicated across
   processes by (dev, inode, offset), plus the file pages behind private copies
   (CachePages: no readahead window);
3. each captured process becomes a process of its own (Spawn, the configured
   process.page_size), and each VMA with resident pages is mapped (MapRange, read-write:
   the prot does not change what memory a page costs, and a private copy must be
   writable to be made) and touched on exactly its resident pages: a store on an
   anonymous page (in a private file VMA: the copy-on-write of mm/memory.c
   do_cow_fault()), a load on a file page and on a zero page (the zero page again,
   mm/memory.c do_anonymous_page()).

VMAs are placed by the emulated mmap, not at their captured addresses: a process page
larger than the captured one could not keep 4K-aligned neighbours apart. VMAs without
resident pages and the capture's special VMAs (vdso, PFN maps) are left out. Anonymous
pages shared by fork between captured processes are replayed once per process, as
smaps' Anonymous counts them.

Truth (tests/workloads/test_snapshot.py): with kernel=4k, process=kernel and base
folios, anon_bytes is the captured anonymous pages (smaps Anonymous of a quiet
process) and pagecache_bytes the captured page-cache pages (Snapshot.summary()).
"""

from __future__ import annotations

import numpy as np

from kernel_model.mm_types import PROT_READ, PROT_WRITE
from workloads.base import Workload
from workloads.phases import (ACCESS_CHUNK, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, Access, CachePages, CreateFile,
                              MapRange, Spawn)

PAGE = 4096  # the capture's page (sweep.snapshot.PAGE)


def file_path(dev: str, inode: int) -> str:
    return f"/snapshot/{dev}/{inode}"


def page_runs(pages: np.ndarray) -> tuple:
    """((first, count), ...) of the consecutive runs in sorted unique page numbers."""
    if pages.size == 0:
        return ()
    brk = np.flatnonzero(np.diff(pages) != 1) + 1
    firsts = pages[np.r_[0, brk]]
    counts = np.diff(np.r_[0, brk, pages.size])
    return tuple(zip(firsts.tolist(), counts.tolist()))


class SnapshotWorkload(Workload):
    def __init__(self, cfg, seed):
        from sweep.snapshot import Snapshot

        super().__init__(cfg, seed)
        self.snapshot = Snapshot.load(cfg.path)  # SnapshotError names the file when it is not one

    def describe(self) -> dict:
        return {**super().describe(), **{k: v for k, v in self.snapshot.summary().items()
                                         if k in ("processes", "vmas", "files")}}

    def phases(self):
        from sweep.snapshot import ANON, VMA_FILE, VMA_SPECIAL

        a = self.snapshot.a
        paths = [file_path(d, i) for d, i in zip(a["file_dev"].tolist(), a["file_inode"].tolist())]
        for path, size in zip(paths, a["file_size"].tolist()):
            yield CreateFile(path, size, large_folios=self.cfg.large_folio_fs)
        for f, pages in self.snapshot.cached_pages().items():
            yield CachePages(paths[f], page_runs(pages))
        prot = PROT_READ | PROT_WRITE
        for p, (lo, hi) in enumerate(zip(a["proc_vma_lo"].tolist(), a["proc_vma_hi"].tolist())):
            yield Spawn()
            for v in range(lo, hi):
                kind, plo, phi = int(a["vma_kind"][v]), int(a["vma_page_lo"][v]), int(a["vma_page_hi"][v])
                if kind == VMA_SPECIAL or plo == phi:
                    continue
                region = f"p{p}v{v}"
                length = int(a["vma_end"][v] - a["vma_start"][v])
                if kind == VMA_FILE:
                    flags = MAP_SHARED if str(a["vma_perms"][v])[3] == "s" else MAP_PRIVATE
                    yield MapRange(region, length, prot, flags, paths[int(a["vma_file"][v])], int(a["vma_offset"][v]))
                else:
                    yield MapRange(region, length, prot, MAP_PRIVATE | MAP_ANONYMOUS)
                offsets = a["page_vpn"][plo:phi] * PAGE
                writes = a["page_kind"][plo:phi] == ANON
                for i in range(0, offsets.size, ACCESS_CHUNK):
                    yield Access(region, offsets[i:i + ACCESS_CHUNK], writes[i:i + ACCESS_CHUNK])
