"""``python -m sweep.snapshot``: capture the memory of this running Linux machine, for replay.

    python -m sweep.snapshot capture --out machine.npz [--pid PID ...]
    python -m sweep.snapshot show machine.npz

capture reads, for every process it can read (all of them as root; the capturing
process itself is left out) or the given PIDs:

- its VMAs from /proc/PID/smaps: range, permissions, file identity (dev, inode) and
  offset, and the Rss / Anonymous / Shared_* fields (fs/proc/task_mmu.c show_smap());
- its resident pages from /proc/PID/pagemap: bit 63 present, bit 61 "file page or
  shared anonymous", bits 0-54 the PFN (Documentation/admin-guide/mm/pagemap.rst;
  PFNs read as 0 without CAP_SYS_ADMIN). A present page without bit 61 is anonymous,
  unless its PFN is the zero page: /proc/kpageflags bit KPF_ZERO_PAGE (24,
  include/uapi/linux/kernel-page-flags.h; fs/proc/page.c sets it for the zero page and
  the huge zero page), which smaps does not count (vm_normal_page() is NULL for it);
- the files behind the file VMAs, deduplicated across processes by (dev, inode), with
  their sizes (stat of /proc/PID/map_files/START-END, else of the path), and the file
  pages resident in some process, deduplicated by (dev, inode, offset).

VMAs the replay leaves out, recorded with kind "special": [vdso], [vvar], [vsyscall]
(kernel-provided pages), VM_PFNMAP / VM_IO mappings (VmFlags "pf", "io": device
memory, not RAM pages the MM hands out), and unnamed mappings with no inode that are
shared.

The snapshot is one compressed .npz (numpy arrays, no pickles) written to a temporary
file beside --out and renamed into place. The format is documented on Snapshot.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = "pagesweep-snapshot/1"
PAGE = 4096                      # capture unit: pages of this size (the machine's base page)
PM_PRESENT = 1 << 63             # fs/proc/task_mmu.c: PM_PRESENT
PM_FILE = 1 << 61                # PM_FILE: file-page or shared-anon
PM_PFN_MASK = (1 << 55) - 1      # PM_PFRAME_MASK: bits 0-54
KPF_ZERO_PAGE = 24               # include/uapi/linux/kernel-page-flags.h
CHUNK = 1 << 16                  # pagemap entries read at once (512 KiB)
ANON, FILE, ZERO = 0, 1, 2       # page kinds
VMA_ANON, VMA_FILE, VMA_SPECIAL = 0, 1, 2
SPECIAL_NAMES = ("[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]")
_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) ([0-9a-f]+):([0-9a-f]+) (\d+)\s*(.*)$")


class SnapshotError(Exception):
    """A snapshot that cannot be read or written; the message says what to fix."""


@dataclass
class Vma:
    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    name: str
    fields: dict           # smaps fields in bytes (Rss, Anonymous, ...)
    vmflags: tuple

    @property
    def kind(self) -> int:
        if self.name in SPECIAL_NAMES or "pf" in self.vmflags or "io" in self.vmflags:
            return VMA_SPECIAL
        if self.inode:
            return VMA_FILE
        return VMA_SPECIAL if self.perms[3] == "s" else VMA_ANON


def parse_smaps(text: str, where: str = "smaps") -> list[Vma]:
    """The VMAs of one /proc/PID/smaps text."""
    vmas: list[Vma] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m:
            start, end, perms, off, major, minor, inode, name = m.groups()
            vmas.append(Vma(int(start, 16), int(end, 16), perms, int(off, 16), f"{int(major, 16)}:{int(minor, 16)}",
                            int(inode), name.strip(), {}, ()))
            continue
        key, _, value = line.partition(":")
        if not vmas:
            raise SnapshotError(f"{where}:{lineno}: a field before the first VMA header: {line!r}")
        if key == "VmFlags":
            vmas[-1].vmflags = tuple(value.split())
        elif value.strip().endswith(" kB"):
            vmas[-1].fields[key] = int(value.split()[0]) * 1024
    return vmas


def read_pagemap(fd: int, start: int, end: int) -> np.ndarray:
    """The pagemap entries (uint64) of [start, end), read CHUNK entries at a time."""
    first, n = start // PAGE, (end - start) // PAGE
    parts = []
    for i in range(0, n, CHUNK):
        k = min(CHUNK, n - i)
        buf = os.pread(fd, 8 * k, 8 * (first + i))
        parts.append(np.frombuffer(buf, dtype="<u8"))
    return np.concatenate(parts) if parts else np.zeros(0, dtype="<u8")


class ZeroPages:
    """Which PFNs are the zero page (KPF_ZERO_PAGE in /proc/kpageflags), cached."""

    def __init__(self):
        self.known: dict[int, bool] = {}
        try:
            self.fd = os.open("/proc/kpageflags", os.O_RDONLY)
        except OSError:
            self.fd = None

    def mask(self, pfns: np.ndarray) -> np.ndarray:
        if self.fd is None or pfns.size == 0:
            return np.zeros(pfns.size, bool)
        for pfn in np.unique(pfns).tolist():
            if pfn not in self.known:
                try:
                    flags = int.from_bytes(os.pread(self.fd, 8, 8 * pfn), "little")
                except OSError:
                    flags = 0
                self.known[pfn] = bool(flags >> KPF_ZERO_PAGE & 1)
        return np.fromiter((self.known[p] for p in pfns.tolist()), bool, pfns.size)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)


def _file_size(pid: int, vma: Vma) -> int | None:
    for path in (f"/proc/{pid}/map_files/{vma.start:x}-{vma.end:x}", vma.name.removesuffix(" (deleted)")):
        try:
            return os.stat(path).st_size
        except OSError:
            continue
    return None


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


class Capture:
    """Accumulates processes into the arrays of a Snapshot."""

    def __init__(self):
        self.zero = ZeroPages()
        self.procs, self.vmas, self.pages_vpn, self.pages_kind = [], [], [], []
        self.files: dict[tuple, int] = {}
        self.file_info: list[dict] = []
        self.file_pages: set = set()
        self.cow_pages: set = set()
        self.npages = 0
        self.pfn_known = False
        self.skipped: dict[str, int] = {}

    def add(self, pid: int) -> bool:
        """Capture one process; False when it vanished or cannot be read (counted)."""
        try:
            text = Path(f"/proc/{pid}/smaps").read_text()
            vmas = parse_smaps(text, f"/proc/{pid}/smaps")
            if not vmas:                      # a kernel thread: no mm, no pagemap
                self._skip("kernel_threads")
                return False
            fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
        except (FileNotFoundError, ProcessLookupError):
            self._skip("vanished")
            return False
        except PermissionError:
            self._skip("no_permission")
            return False
        mark = (self.npages, len(self.pages_vpn))
        self._fp, self._cow = set(), set()
        try:
            # [vsyscall] lives in the kernel half (x86-64 0xffffffffff600000): not the process's memory
            rows = [self._vma(pid, fd, v) for v in vmas if v.end <= 1 << 63]
        except OSError:                       # it exited while being read: drop what it added
            self.npages = mark[0]
            del self.pages_vpn[mark[1]:], self.pages_kind[mark[1]:]
            self._skip("vanished")
            return False
        finally:
            os.close(fd)
        self.file_pages |= self._fp
        self.cow_pages |= self._cow
        lo = len(self.vmas)
        self.vmas += rows
        self.procs.append({"pid": pid, "comm": _comm(pid), "vma_lo": lo, "vma_hi": len(self.vmas),
                           "anonymous": sum(v.fields.get("Anonymous", 0) for v in vmas),
                           "rss": sum(v.fields.get("Rss", 0) for v in vmas)})
        return True

    def _skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def _vma(self, pid: int, fd: int, v: Vma) -> dict:
        kind = v.kind
        row = {"start": v.start, "end": v.end, "perms": v.perms, "offset": v.offset, "name": v.name, "kind": kind,
               "file": -1, "rss": v.fields.get("Rss", 0), "anonymous": v.fields.get("Anonymous", 0),
               "page_lo": self.npages}
        if kind == VMA_FILE:
            key = (v.dev, v.inode)
            if key not in self.files:
                self.files[key] = len(self.file_info)
                self.file_info.append({"dev": v.dev, "inode": v.inode, "path": v.name, "size": _file_size(pid, v)})
            row["file"] = self.files[key]
        if kind != VMA_SPECIAL and not (v.perms[:3] == "---" and row["rss"] == 0):
            entries = read_pagemap(fd, v.start, v.end)
            present = np.flatnonzero(entries & np.uint64(PM_PRESENT))
            e = entries[present]
            is_file = (e & np.uint64(PM_FILE)) != 0
            pfn = (e & np.uint64(PM_PFN_MASK)).astype(np.int64)
            self.pfn_known |= bool((pfn != 0).any())
            kinds = np.where(is_file, FILE, ANON).astype(np.uint8)
            anon = ~is_file
            if anon.any():
                kinds[np.flatnonzero(anon)[self.zero.mask(pfn[anon])]] = ZERO
            self.pages_vpn.append(present.astype(np.int64))
            self.pages_kind.append(kinds)
            self.npages += present.size
            if kind == VMA_FILE:
                index = v.offset // PAGE + present
                fid = row["file"]
                self._fp.update((fid, int(i)) for i in index[kinds == FILE])
                self._cow.update((fid, int(i)) for i in index[kinds == ANON])
                info = self.file_info[fid]
                if len(index) and int(index.max()) * PAGE >= (info["size"] or 0):
                    # a resident page at or past the size stat gave (none, or the file was
                    # truncated since): the file reaches at least to that page's end
                    info["size"] = (int(index.max()) + 1) * PAGE
        row["page_hi"] = self.npages
        return row

    def arrays(self, meta: dict) -> dict:
        def col(rows, key, dtype):
            return np.array([r[key] for r in rows], dtype=dtype)

        def pairs(s: set):
            a = np.array(sorted(s), dtype=np.int64).reshape(-1, 2)
            return a[:, 0].copy(), a[:, 1].copy()

        fp_file, fp_index = pairs(self.file_pages)
        cow_file, cow_index = pairs(self.cow_pages)
        for f in self.file_info:
            f["size"] = f["size"] or 0
        self.zero.close()
        meta = {**meta, "format": FORMAT, "page_size": PAGE, "pfn_known": self.pfn_known, "skipped": self.skipped}
        return {
            "meta": np.array(json.dumps(meta, sort_keys=True)),
            "proc_pid": col(self.procs, "pid", np.int64), "proc_comm": col(self.procs, "comm", str),
            "proc_vma_lo": col(self.procs, "vma_lo", np.int64), "proc_vma_hi": col(self.procs, "vma_hi", np.int64),
            "proc_anonymous": col(self.procs, "anonymous", np.int64), "proc_rss": col(self.procs, "rss", np.int64),
            **{f"vma_{k}": col(self.vmas, k, t) for k, t in (
                ("start", np.int64), ("end", np.int64), ("perms", str), ("offset", np.int64), ("name", str),
                ("kind", np.uint8), ("file", np.int64), ("rss", np.int64), ("anonymous", np.int64),
                ("page_lo", np.int64), ("page_hi", np.int64))},
            "page_vpn": np.concatenate(self.pages_vpn) if self.pages_vpn else np.zeros(0, np.int64),
            "page_kind": np.concatenate(self.pages_kind) if self.pages_kind else np.zeros(0, np.uint8),
            **{f"file_{k}": col(self.file_info, k, t) for k, t in (
                ("dev", str), ("inode", np.int64), ("path", str), ("size", np.int64))},
            "filepage_file": fp_file, "filepage_index": fp_index, "cowpage_file": cow_file, "cowpage_index": cow_index,
        }


def all_pids() -> list[int]:
    me = os.getpid()
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me)


def capture(out, pids=None, progress: bool = True) -> "Snapshot":
    """Capture ``pids`` (default: every process but this one) into ``out``; returns it loaded."""
    from tqdm import tqdm

    if os.sysconf("SC_PAGE_SIZE") != PAGE:
        raise SnapshotError(f"this machine's page size is {os.sysconf('SC_PAGE_SIZE')}; capture reads "
                            f"pagemap in {PAGE}-byte pages")
    explicit = pids is not None
    pids = list(pids) if explicit else all_pids()
    cap = Capture()
    for pid in tqdm(pids, desc="capture", unit="proc", disable=not progress, file=sys.stderr):
        if not cap.add(pid) and explicit:
            raise SnapshotError(f"--pid {pid}: cannot read /proc/{pid}/smaps and pagemap "
                                f"({', '.join(cap.skipped)}); is it running, and are you root?")
    if not cap.procs:
        raise SnapshotError("no process could be read; run as root or pass --pid of your own processes")
    meta = {"host": platform.node(), "kernel": platform.release(),
            "captured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    arrays = cap.arrays(meta)
    write_atomic(out, arrays)
    return Snapshot.load(out)


def write_atomic(out, arrays: dict) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


class Snapshot:
    """A loaded capture. Arrays (``s.a[name]``), by table:

    proc_*      pid, comm, vma_lo/vma_hi (its rows of vma_*), anonymous and rss (bytes, smaps sums)
    vma_*       start, end, perms ("rw-p"), offset (bytes), name, kind (0 anon, 1 file, 2 special),
                file (row of file_*, -1), rss, anonymous (bytes), page_lo/page_hi (rows of page_*)
    page_*      vpn (4K page number inside the VMA), kind (0 anonymous, 1 file, 2 zero page)
    file_*      dev ("major:minor"), inode, path, size (bytes)
    filepage_*  file, index: file pages resident in some process, unique by (dev, inode, offset)
    cowpage_*   file, index: file pages a private mapping holds an anonymous copy of
    meta        JSON: format, page_size, host, kernel, captured_at, pfn_known, skipped
    """

    def __init__(self, arrays: dict, path: str = "<memory>"):
        self.a = arrays
        self.path = path
        self.meta = json.loads(str(arrays["meta"]))

    @classmethod
    def load(cls, path) -> "Snapshot":
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise SnapshotError(f"{path}: no such snapshot file; make one with "
                                "`python -m sweep.snapshot capture --out FILE`") from None
        except (OSError, ValueError) as e:
            raise SnapshotError(f"{path}: not a snapshot file ({e})") from None
        if "meta" not in arrays or json.loads(str(arrays["meta"])).get("format") != FORMAT:
            raise SnapshotError(f"{path}: not a {FORMAT} file; capture it again with python -m sweep.snapshot")
        return cls(arrays, str(path))

    @property
    def pids(self) -> list[int]:
        return self.a["proc_pid"].tolist()

    def select(self, pids) -> "Snapshot":
        """The snapshot of only ``pids`` (their VMAs, pages, files and file pages)."""
        a = self.a
        want = [i for i, p in enumerate(self.pids) if p in set(pids)]
        missing = sorted(set(pids) - set(self.pids))
        if missing:
            raise SnapshotError(f"{self.path}: no process {missing[0]} in the snapshot")
        vma_rows = np.concatenate([np.arange(a["proc_vma_lo"][i], a["proc_vma_hi"][i]) for i in want]
                                  or [np.zeros(0, np.int64)]).astype(np.int64)
        page_rows = np.concatenate([np.arange(a["vma_page_lo"][v], a["vma_page_hi"][v]) for v in vma_rows]
                                   or [np.zeros(0, np.int64)]).astype(np.int64)
        out = {k: v for k, v in a.items() if k.startswith(("file_", "meta"))}
        for k in a:
            if k.startswith("proc_"):
                out[k] = a[k][want]
            elif k.startswith("vma_"):
                out[k] = a[k][vma_rows]
            elif k.startswith("page_"):
                out[k] = a[k][page_rows]
        counts_v = a["proc_vma_hi"][want] - a["proc_vma_lo"][want]
        out["proc_vma_hi"] = np.cumsum(counts_v).astype(np.int64)
        out["proc_vma_lo"] = out["proc_vma_hi"] - counts_v
        counts_p = a["vma_page_hi"][vma_rows] - a["vma_page_lo"][vma_rows]
        out["vma_page_hi"] = np.cumsum(counts_p).astype(np.int64)
        out["vma_page_lo"] = out["vma_page_hi"] - counts_p
        # file pages: those the selected processes map (file) or copied (cow)
        fp, cow = set(), set()
        for v in vma_rows.tolist():
            if a["vma_kind"][v] != VMA_FILE:
                continue
            lo, hi = a["vma_page_lo"][v], a["vma_page_hi"][v]
            index = a["vma_offset"][v] // PAGE + a["page_vpn"][lo:hi]
            kinds = a["page_kind"][lo:hi]
            f = int(a["vma_file"][v])
            fp.update((f, int(i)) for i in index[kinds == FILE])
            cow.update((f, int(i)) for i in index[kinds == ANON])
        for name, s in (("filepage", fp), ("cowpage", cow)):
            pairs = np.array(sorted(s), dtype=np.int64).reshape(-1, 2)
            out[f"{name}_file"], out[f"{name}_index"] = pairs[:, 0].copy(), pairs[:, 1].copy()
        return Snapshot(out, self.path)

    def cached_pages(self) -> dict:
        """{file row: sorted unique 4K page indices} the page cache holds in the replay: the
        resident file pages and the sources of the private copies (mm/memory.c
        do_cow_fault() reads the file page it copies)."""
        out: dict = {}
        for name in ("filepage", "cowpage"):
            for f, i in zip(self.a[f"{name}_file"].tolist(), self.a[f"{name}_index"].tolist()):
                out.setdefault(f, set()).add(i)
        return {f: np.array(sorted(s), dtype=np.int64) for f, s in sorted(out.items())}

    def summary(self) -> dict:
        """Totals in bytes: the truth a replay at 4K with base folios must equal."""
        a = self.a
        kinds = a["page_kind"]
        cached = sum(len(v) for v in self.cached_pages().values())
        return {"processes": len(self.pids), "vmas": int(a["vma_start"].size),
                "special_vmas": int((a["vma_kind"] == VMA_SPECIAL).sum()), "files": int(a["file_inode"].size),
                "smaps_anonymous": int(a["proc_anonymous"].sum()), "smaps_rss": int(a["proc_rss"].sum()),
                "anon_pages": int((kinds == ANON).sum()), "zero_pages": int((kinds == ZERO).sum()),
                "file_pages_unique": int(a["filepage_file"].size), "cow_sources_not_mapped":
                    cached - int(a["filepage_file"].size), "pagecache_bytes": cached * PAGE,
                "anon_bytes": int((kinds == ANON).sum()) * PAGE}


def show(snap: Snapshot, out=None) -> None:
    out = out or sys.stdout
    m, s = snap.meta, snap.summary()
    print(f"{snap.path}: {m['host']} (Linux {m['kernel']}), captured {m['captured_at']}; PFNs "
          f"{'known (zero page told apart)' if m['pfn_known'] else 'hidden (not root): zero pages count as anon'}",
          file=out)
    for k, v in s.items():
        shown = f"{v} ({v / 2**20:.1f} MiB)" if k.endswith(("_bytes", "anonymous", "rss")) else v
        print(f"  {k:24s} {shown}", file=out)
    if m.get("skipped"):
        print("  skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(m["skipped"].items())), file=out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sweep.snapshot", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("capture", help="snapshot this machine's processes into FILE")
    c.add_argument("--out", required=True, help="output file (.npz)")
    c.add_argument("--pid", type=int, action="append", help="capture only this process (repeatable)")
    c.add_argument("--no-progress", action="store_true")
    s = sub.add_parser("show", help="print a snapshot's totals")
    s.add_argument("file")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "capture":
            snap = capture(args.out, args.pid, progress=not args.no_progress)
        else:
            snap = Snapshot.load(args.file)
        show(snap)
    except SnapshotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
