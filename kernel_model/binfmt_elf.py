"""ELF loading in process pages: the rules a per-process page size breaks, and the mapping.

Counterparts: fs/binfmt_elf.c (load_elf_binary(), elf_map(), elf_load(), padzero(),
total_mapping_size(), maximum_alignment(), load_elf_phdrs()) for what execve maps, and
glibc elf/dl-load.c (_dl_map_object_from_fd()) with elf/dl-map-segments.h
(_dl_map_segments()) for what ld.so maps for a shared object.

ELF_MIN_ALIGN is the PROCESS page size here: the proposal makes ELF_EXEC_PAGESIZE (and
AT_PAGESZ) the personality's page size, so ELF_PAGESTART/ELF_PAGEOFFSET/ELF_PAGEALIGN
round to it. Failure rules (ElfCheck.rule):

  enoexec         not an ELF file the kernel accepts: bad magic, e_type neither ET_EXEC
                  nor ET_DYN, e_phentsize/e_phnum out of range, truncated or corrupt
                  headers (load_elf_binary(): retval = -ENOEXEC).
  no_load         no PT_LOAD: total_mapping_size() is 0 -> -EINVAL.
  segment         a PT_LOAD with p_filesz > p_memsz or beyond TASK_SIZE -> -EINVAL.
  congruence      (p_vaddr - p_offset) % page_size != 0: elf_map() maps at
                  ELF_PAGESTART(vaddr) with file offset p_offset - ELF_PAGEOFFSET(vaddr),
                  which is then not page aligned, and vm_mmap() (mm/util.c) returns
                  -EINVAL; exec fails with EINVAL.
  p_align         ld.so, shared object: p_align not a multiple of the page size,
                  "ELF load command alignment not page-aligned" (dl-load.c). binfmt_elf
                  instead raises the alignment (maximum_alignment() returns at least
                  ELF_PAGEALIGN), so executables pass this rule.
  p_align_offset  ld.so, shared object: (p_vaddr - p_offset) & (p_align - 1) != 0,
                  "ELF load command address/offset not properly aligned" (dl-load.c).
  overlap         two PT_LOADs with different permissions share a process page after
                  rounding (a 4K-linked binary under a 16K page: text and data in one
                  page). Linux maps them in order with MAP_FIXED, so the later mapping
                  replaces the earlier one's page and that page gets the wrong
                  permissions (and the wrong file bytes for the earlier segment).
                  exec succeeds; the program faults or runs with the wrong protection.

Which loader: an ET_EXEC, an ET_DYN with DF_1_PIE (a PIE, static or not) or with
PT_INTERP and no DT_SONAME (a PIE linked before DF_1_PIE existed) is mapped by the
kernel; any other ET_DYN is a shared object mapped by ld.so. The
machine (e_machine) is not checked: host binaries stand in for arm64 ones, and the
layout rules do not depend on it. PT_INTERP is not followed.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

import numpy as np
from elftools.elf.elffile import ELFFile

from . import abi

ELFMAG = b"\x7fELF"  # include/uapi/linux/elf.h
ET_EXEC, ET_DYN = 2, 3
PT_LOAD, PT_INTERP, PT_DYNAMIC = 1, 3, 2
PF_X, PF_W, PF_R = 0x1, 0x2, 0x4
DT_NULL, DT_SONAME, DT_FLAGS_1 = 0, 14, 0x6FFFFFFB  # include/uapi/linux/elf.h, glibc elf.h
DF_1_PIE = 0x08000000  # glibc elf.h
PHENTSIZE = {32: 32, 64: 56}  # sizeof(struct elf32_phdr), sizeof(struct elf64_phdr)
U64 = (1 << 64) - 1

RULE_OK = ""
RULE_ENOEXEC = "enoexec"
RULE_NO_LOAD = "no_load"
RULE_SEGMENT = "segment"
RULE_CONGRUENCE = "congruence"
RULE_ALIGN = "p_align"
RULE_ALIGN_OFFSET = "p_align_offset"
RULE_OVERLAP = "overlap"
RULES = (RULE_ENOEXEC, RULE_NO_LOAD, RULE_SEGMENT, RULE_CONGRUENCE, RULE_ALIGN, RULE_ALIGN_OFFSET, RULE_OVERLAP)

LOADER_KERNEL = "kernel"
LOADER_LDSO = "ld.so"


@dataclass(frozen=True)
class LoadSegment:
    """One PT_LOAD program header (bytes; prot in PROT_* bits)."""

    vaddr: int
    offset: int
    filesz: int
    memsz: int
    align: int
    prot: int


@dataclass(frozen=True)
class ElfImage:
    """What the loaders read from an ELF file: type, class, loader and the PT_LOADs."""

    e_type: int
    elfclass: int
    entry: int
    has_interp: bool
    pie_flag: bool
    has_soname: bool
    loads: tuple[LoadSegment, ...]

    @property
    def loader(self) -> str:
        # A PIE has PT_INTERP (or DF_1_PIE when static); libc.so.6 has PT_INTERP too but
        # also a DT_SONAME: it is a library, mapped by ld.so.
        if self.e_type == ET_EXEC or self.pie_flag or (self.has_interp and not self.has_soname):
            return LOADER_KERNEL
        return LOADER_LDSO


@dataclass(frozen=True)
class ElfCheck:
    """The verdict on one file at one page size: ok, or the first rule that failed."""

    ok: bool
    reason: str
    rule: str = RULE_OK
    errno: int = 0  # the errno execve (or dlopen's mmap) returns, 0 when ok or ld.so refuses
    loader: str = ""
    segment: int = -1  # index among the PT_LOADs of the offending one (the later one for overlap)


def _prot(p_flags: int) -> int:
    # fs/binfmt_elf.c make_prot(): PF_R/W/X -> PROT_READ/WRITE/EXEC (same bit values 1/2/4 reversed)
    return (1 if p_flags & PF_R else 0) | (2 if p_flags & PF_W else 0) | (4 if p_flags & PF_X else 0)


class ElfFormatError(Exception):
    """The file is not an ELF image the kernel would accept (ENOEXEC)."""


def _dynamic_flags(data: bytes, elfclass: int, little_endian: bool) -> tuple[bool, bool]:
    """(DF_1_PIE set in DT_FLAGS_1, DT_SONAME present) from the raw PT_DYNAMIC bytes.

    Read as an array of (d_tag, d_val) pairs up to DT_NULL, without the string table,
    so a dynamic segment with a missing or odd DT_STRTAB still parses.
    """
    dtype = np.dtype(f"{'<' if little_endian else '>'}{'i8' if elfclass == 64 else 'i4'}")
    words = np.frombuffer(data[:len(data) // (2 * dtype.itemsize) * 2 * dtype.itemsize], dtype=dtype)
    tags, vals = words[0::2], words[1::2]
    end = np.flatnonzero(tags == DT_NULL)
    if len(end):
        tags, vals = tags[:end[0]], vals[:end[0]]
    pie = bool(np.any((tags == DT_FLAGS_1) & ((vals & DF_1_PIE) != 0)))
    return pie, bool(np.any(tags == DT_SONAME))


def read_elf_image(path: str) -> ElfImage:
    """Parse `path` with pyelftools; raise ElfFormatError (never anything else) when the
    kernel would answer ENOEXEC."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != ELFMAG:
                raise ElfFormatError("no ELF magic (load_elf_binary(): memcmp(elf_ex->e_ident, ELFMAG))")
            f.seek(0)
            elf = ELFFile(f)
            header = elf.header
            e_type = {"ET_EXEC": ET_EXEC, "ET_DYN": ET_DYN}.get(header["e_type"])
            if e_type is None:
                raise ElfFormatError(f"e_type {header['e_type']} is neither ET_EXEC nor ET_DYN")
            # load_elf_phdrs(): e_phentsize must be sizeof(struct elf_phdr); 1 <= size <= 64K.
            if header["e_phentsize"] != PHENTSIZE[elf.elfclass]:
                raise ElfFormatError(f"e_phentsize {header['e_phentsize']} != {PHENTSIZE[elf.elfclass]}")
            nbytes = header["e_phnum"] * header["e_phentsize"]
            if nbytes == 0 or nbytes > 65536:
                raise ElfFormatError(f"program headers of {nbytes} bytes (need 1..65536)")
            loads, has_interp, pie_flag, has_soname = [], False, False, False
            for seg in elf.iter_segments():
                ptype = seg.header["p_type"]
                if ptype == "PT_LOAD":
                    h = seg.header
                    loads.append(LoadSegment(h["p_vaddr"], h["p_offset"], h["p_filesz"], h["p_memsz"],
                                             h["p_align"], _prot(h["p_flags"])))
                elif ptype == "PT_INTERP":
                    has_interp = True
                elif ptype == "PT_DYNAMIC":
                    pie_flag, has_soname = _dynamic_flags(seg.data(), elf.elfclass, elf.little_endian)
            return ElfImage(e_type, elf.elfclass, header["e_entry"], has_interp, pie_flag, has_soname, tuple(loads))
    except ElfFormatError:
        raise
    except Exception as exc:  # any parse failure of untrusted bytes: truncated, corrupt, unreadable
        raise ElfFormatError(f"corrupt or unreadable ELF: {type(exc).__name__}: {exc}") from None


def elf_pagestart(v: int, page_size: int) -> int:
    return v & ~(page_size - 1)


def elf_pageoffset(v: int, page_size: int) -> int:
    return v & (page_size - 1)


def elf_pagealign(v: int, page_size: int) -> int:
    return (v + page_size - 1) & ~(page_size - 1)


def total_mapping_size(loads, page_size: int) -> int:
    """fs/binfmt_elf.c total_mapping_size(): max(vaddr + memsz) - min(ELF_PAGESTART(vaddr))."""
    if not loads:
        return 0
    lo = min(elf_pagestart(s.vaddr, page_size) for s in loads)
    return max(s.vaddr + s.memsz for s in loads) - lo


def maximum_alignment(loads, page_size: int) -> int:
    """fs/binfmt_elf.c maximum_alignment(): the largest power-of-two p_align, at least a page."""
    align = 0
    for s in loads:
        if s.align > 0 and not s.align & (s.align - 1):  # is_power_of_2()
            align = max(align, s.align)
    return elf_pagealign(align, page_size)


def _page_ranges(loads, page_size: int) -> list[tuple[int, int]]:
    return [(elf_pagestart(s.vaddr, page_size), elf_pagealign(s.vaddr + s.memsz, page_size)) for s in loads]


def check_image(image: ElfImage, page_size: int, task_size: int = 1 << 48) -> ElfCheck:
    """The rules of the module docstring applied to a parsed image, in the loaders' order."""
    if page_size <= 0 or page_size & (page_size - 1):
        raise ValueError(f"check_elf: page_size must be a power of two, got {page_size!r}")
    loader = image.loader
    loads = image.loads
    if not loads:
        return ElfCheck(False, "no PT_LOAD segment: total_mapping_size() is 0", RULE_NO_LOAD, errno.EINVAL, loader)
    if loader == LOADER_LDSO:
        # elf/dl-load.c _dl_map_object_from_fd(): checked for every PT_LOAD before mapping.
        for i, s in enumerate(loads):
            if s.align % page_size:
                return ElfCheck(False, f"PT_LOAD {i}: ELF load command alignment not page-aligned "
                                f"(p_align {s.align:#x}, page {page_size:#x})", RULE_ALIGN, 0, loader, i)
            if (s.vaddr - s.offset) & ((s.align - 1) & U64):
                return ElfCheck(False, f"PT_LOAD {i}: ELF load command address/offset not properly aligned "
                                f"(p_vaddr {s.vaddr:#x} - p_offset {s.offset:#x} vs p_align {s.align:#x})",
                                RULE_ALIGN_OFFSET, 0, loader, i)
    for i, s in enumerate(loads):
        # load_elf_binary(): p_filesz > p_memsz, or the segment past TASK_SIZE -> -EINVAL.
        if s.filesz > s.memsz or s.memsz > task_size or s.vaddr + s.memsz > task_size:
            return ElfCheck(False, f"PT_LOAD {i}: p_filesz {s.filesz:#x} > p_memsz {s.memsz:#x} or beyond TASK_SIZE",
                            RULE_SEGMENT, errno.EINVAL, loader, i)
        # elf_map(): off = p_offset - ELF_PAGEOFFSET(p_vaddr) must be page aligned for vm_mmap().
        if s.filesz and (s.vaddr - s.offset) % page_size:
            return ElfCheck(False, f"PT_LOAD {i}: p_vaddr {s.vaddr:#x} and p_offset {s.offset:#x} are not congruent "
                            f"modulo the {page_size // 1024}K page: mmap offset "
                            f"{s.offset - elf_pageoffset(s.vaddr, page_size):#x} is unaligned -> EINVAL",
                            RULE_CONGRUENCE, errno.EINVAL, loader, i)
    ranges = _page_ranges(loads, page_size)
    for j in range(1, len(loads)):
        for i in range(j):
            (a0, a1), (b0, b1) = ranges[i], ranges[j]
            if a0 < b1 and b0 < a1 and loads[i].prot != loads[j].prot:
                lo, hi = max(a0, b0), min(a1, b1)
                return ElfCheck(False, f"PT_LOAD {i} and {j} share the {page_size // 1024}K page(s) "
                                f"[{lo:#x}, {hi:#x}) with different permissions; the later MAP_FIXED mapping "
                                f"replaces the earlier one's page", RULE_OVERLAP, 0, loader, j)
    return ElfCheck(True, "", RULE_OK, 0, loader)


def check_elf(path: str, page_size: int, task_size: int = 1 << 48) -> ElfCheck:
    """Would the ELF file at `path` load at process page size `page_size`? Pure; never raises
    for a bad file (ENOEXEC reason instead); ValueError for a bad page_size."""
    if page_size <= 0 or page_size & (page_size - 1):
        raise ValueError(f"check_elf: page_size must be a power of two, got {page_size!r}")
    try:
        image = read_elf_image(path)
    except ElfFormatError as exc:
        return ElfCheck(False, str(exc), RULE_ENOEXEC, errno.ENOEXEC)
    return check_image(image, page_size, task_size)


# -- mapping ------------------------------------------------------------------------

@dataclass(frozen=True)
class MappedSegment:
    start: int
    end: int
    prot: int
    kind: str  # "file" (offset is the file offset) or "bss" (anonymous zero fill)
    offset: int = 0


@dataclass
class ElfLoadResult:
    ok: bool
    reason: str
    segments: list = field(default_factory=list)  # MappedSegment, in mapping order
    rule: str = RULE_OK
    errno: int = 0
    load_bias: int = 0
    entry: int = 0
    brk: int = 0


def elf_et_dyn_base(va_bits: int) -> int:
    """arch/arm64/include/asm/elf.h: ELF_ET_DYN_BASE = 2 * DEFAULT_MAP_WINDOW_64 / 3."""
    return (2 * (1 << va_bits)) // 3


def load_elf_binary(process, path: str) -> ElfLoadResult:
    """Map the PT_LOADs of `path` into `process` with its own mmap, in process pages.

    fs/binfmt_elf.c load_elf_binary()/elf_load()/elf_map() for an executable; the same
    MAP_PRIVATE|MAP_FIXED sequence for a shared object (elf/dl-map-segments.h), after
    ld.so's checks. The first mapping reserves total_mapping_size() and the tail beyond
    the first segment is unmapped (elf_map()); each later segment is mapped MAP_FIXED at
    ELF_PAGESTART(bias + p_vaddr) with file offset p_offset - ELF_PAGEOFFSET(p_vaddr);
    p_memsz > p_filesz gets padzero() (a write fault on the partial last page, when
    writable) and an anonymous mapping from ELF_PAGEALIGN(end of file data) to
    ELF_PAGEALIGN(end of memory) (vm_brk_flags(): read/write, exec if PF_X). A
    congruence failure is not short-circuited: it is the mmap() that returns -EINVAL.
    ok is False for every failed rule; on "overlap" the mappings stay in place as Linux
    leaves them.
    """
    ps = process.page_size
    system = process.system
    task_size = 1 << system.va_bits
    try:
        image = read_elf_image(path)
    except ElfFormatError as exc:
        return ElfLoadResult(False, str(exc), rule=RULE_ENOEXEC, errno=errno.ENOEXEC)
    verdict = check_image(image, ps, task_size)
    if verdict.rule in (RULE_NO_LOAD, RULE_SEGMENT, RULE_ALIGN, RULE_ALIGN_OFFSET):
        return ElfLoadResult(False, verdict.reason, rule=verdict.rule, errno=verdict.errno)
    if path not in system.files:
        system.create_file(path, os.path.getsize(path))
    fd = process.open(path)
    if fd < 0:
        return ElfLoadResult(False, f"open({path}) failed: {errno.errorcode.get(-fd, fd)}", rule=RULE_ENOEXEC,
                             errno=-fd)
    try:
        return _map_image(process, image, verdict, fd, abi)
    finally:
        process.close(fd)


def _map_image(process, image: ElfImage, verdict: ElfCheck, fd: int, abi) -> ElfLoadResult:
    ps = process.page_size
    loads = image.loads
    first = loads[0]
    total = elf_pagealign(total_mapping_size(loads, ps), ps)
    if image.e_type == ET_EXEC:
        bias, fixed = 0, abi.MAP_FIXED_NOREPLACE
    elif image.loader == LOADER_KERNEL and image.has_interp:
        # load_elf_binary(): load_bias = ELF_ET_DYN_BASE aligned down to maximum_alignment(),
        # then ELF_PAGESTART(load_bias - vaddr); no randomisation (deterministic runs).
        base = elf_et_dyn_base(process.system.va_bits) & ~(maximum_alignment(loads, ps) - 1)
        bias, fixed = elf_pagestart(base - first.vaddr, ps), abi.MAP_FIXED_NOREPLACE
    else:
        bias, fixed = None, 0  # a static PIE or a shared object: mmap() picks the place
    segments: list[MappedSegment] = []
    result = ElfLoadResult(True, "", segments, entry=image.entry)
    elf_brk = 0
    for i, s in enumerate(loads):
        vaddr = s.vaddr + (bias or 0)
        addr = elf_pagestart(vaddr, ps)
        off = s.offset - elf_pageoffset(s.vaddr, ps)
        size = elf_pagealign(s.filesz + elf_pageoffset(s.vaddr, ps), ps)
        if s.filesz:
            flags = abi.MAP_PRIVATE | (fixed if i == 0 else abi.MAP_FIXED)
            length = total if i == 0 else size
            map_addr = process.mmap(addr if bias is not None else 0, length, s.prot, flags, fd, off)
            if map_addr < 0:
                result.ok, result.errno = False, -map_addr
                result.rule = verdict.rule if verdict.rule else RULE_SEGMENT
                result.reason = verdict.reason or f"mmap of PT_LOAD {i} failed: {errno.errorcode.get(-map_addr)}"
                return result
            if i == 0:
                if total > size:
                    process.munmap(map_addr + size, total - size)  # elf_map(): unmap the reservation's tail
                if bias is None:
                    bias = map_addr - elf_pagestart(s.vaddr, ps)
                    vaddr = s.vaddr + bias
            segments.append(MappedSegment(map_addr, map_addr + size, s.prot, "file", off))
            zero_start = map_addr + elf_pageoffset(s.vaddr, ps) + s.filesz
            if s.memsz > s.filesz and elf_pageoffset(zero_start, ps) and s.prot & abi.PROT_WRITE:
                process.touch(zero_start, write=True)  # padzero(): clear_user() on the last file page
        else:
            if bias is None:  # a first segment without file data: reserve like elf_map() would
                bias = 0
                vaddr = s.vaddr
            zero_start = elf_pagestart(vaddr, ps)
        zero_end = vaddr + s.memsz
        if s.memsz > s.filesz:
            lo, hi = elf_pagealign(zero_start, ps), elf_pagealign(zero_end, ps)
            if hi > lo:
                prot = abi.PROT_READ | abi.PROT_WRITE | (s.prot & abi.PROT_EXEC)
                ret = process.mmap(lo, hi - lo, prot, abi.MAP_PRIVATE | abi.MAP_ANONYMOUS | abi.MAP_FIXED)
                if ret < 0:
                    result.ok, result.errno, result.rule = False, -ret, RULE_SEGMENT
                    result.reason = f"bss of PT_LOAD {i}: mmap failed: {errno.errorcode.get(-ret)}"
                    return result
                segments.append(MappedSegment(lo, hi, prot, "bss"))
        elf_brk = max(elf_brk, vaddr + s.memsz)
    result.load_bias = bias or 0
    result.brk = elf_pagealign(elf_brk, ps)
    # load_elf_binary(): mm->start_brk = mm->brk = ELF_PAGEALIGN(elf_brk).
    process.mm.start_brk = process.mm.brk = result.brk
    if not verdict.ok:
        result.ok, result.rule, result.reason, result.errno = False, verdict.rule, verdict.reason, verdict.errno
    return result
