"""ELF loading rules at process page sizes 4K/16K/64K: handcrafted images, one per rule.

Each fixture is written byte by byte with struct (Elf64_Ehdr + Elf64_Phdr, little endian)
so the failing field is exactly the one under test. Layouts are drawn in 4K pages:

    # page   0123456789abcdef      (4K pages of the virtual image)
    # text   TT                    R-X
    # data     DD                  RW-
"""

import errno
import struct

import numpy as np
import pytest

from kernel_model.binfmt_elf import (ET_DYN, ET_EXEC, PF_R, PF_W, PF_X, RULE_ALIGN, RULE_ALIGN_OFFSET,
                                     RULE_CONGRUENCE, RULE_ENOEXEC, RULE_NO_LOAD, RULE_OK, RULE_OVERLAP,
                                     RULE_SEGMENT, ElfCheck, check_elf, maximum_alignment, read_elf_image,
                                     total_mapping_size)

K = 1024
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
EM_AARCH64 = 183
DT_SONAME, DT_FLAGS_1, DF_1_PIE = 14, 0x6FFFFFFB, 0x08000000
RX, RW, R = PF_R | PF_X, PF_R | PF_W, PF_R


def build_elf(path, loads, *, e_type=ET_DYN, interp=False, dynamic=(), phentsize=56, body=None):
    """Write an ELF64 file: loads = [(p_offset, p_vaddr, p_filesz, p_memsz, p_flags, p_align)].

    interp adds a PT_INTERP; dynamic = [(d_tag, d_val)] adds a PT_DYNAMIC (DT_NULL appended).
    The file is padded to cover every segment's file bytes.
    """
    phdrs = [(PT_LOAD, flags, off, vaddr, filesz, memsz, align) for off, vaddr, filesz, memsz, flags, align in loads]
    extra = b""
    tail_off = 0x40 + 56 * (len(phdrs) + bool(interp) + bool(dynamic))
    if interp:
        name = b"/lib/ld-linux-aarch64.so.1\0"
        phdrs.append((PT_INTERP, R, tail_off, tail_off, len(name), len(name), 1))
        extra += name
    if dynamic:
        dyn = b"".join(struct.pack("<qQ", t, v) for t, v in list(dynamic) + [(0, 0)])
        off = tail_off + len(extra)
        phdrs.append((PT_DYNAMIC, RW, off, off, len(dyn), len(dyn), 8))
        extra += dyn
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", e_type, EM_AARCH64, 1, 0x1000, 0x40, 0, 0, 64, phentsize,
                               len(phdrs), 64, 0, 0)
    ph = b"".join(struct.pack("<IIQQQQQQ", t, fl, off, va, va, fs, ms, al) for t, fl, off, va, fs, ms, al in phdrs)
    data = body if body is not None else ehdr + ph + extra
    size = max([len(data)] + [off + filesz for off, _, filesz, _, _, _ in loads])
    path.write_bytes(data + bytes(size - len(data)))
    return str(path)


# A PIE laid out for 64K pages: every segment congruent mod 64K and in its own 64K page.
#   page(64K) 0 1 2
#   text      T
#   data        D     (bss to the end of page 2)
GOOD = [(0x0, 0x0, 0x1800, 0x1800, RX, 0x10000), (0x10000, 0x10000, 0x800, 0x12000, RW, 0x10000)]

# A PIE linked for 4K pages: data's p_vaddr - p_offset = 0x1000 (as ld -z max-page-size=4K
# lays out .data after a one-page gap).
#   # page   0123
#   # text   TT
#   # data     DD      vaddr 0x3000, offset 0x2000
INCONGRUENT = [(0x0, 0x0, 0x1800, 0x1800, RX, 0x1000), (0x2000, 0x3000, 0x1000, 0x1000, RW, 0x1000)]

# Congruent (vaddr == offset) but text and data share a 16K page with different permissions.
#   # page   0123
#   # text   TT        R-X
#   # data     DD      RW-    -> at 16K both are in page 0x0000-0x4000
OVERLAPPING = [(0x0, 0x0, 0x1800, 0x1800, RX, 0x1000), (0x2000, 0x2000, 0x1000, 0x1000, RW, 0x1000)]


@pytest.fixture
def elf(tmp_path):
    def make(name, loads, **kw):
        return build_elf(tmp_path / name, loads, **kw)
    return make


@pytest.mark.parametrize("page_size", [4 * K, 16 * K, 64 * K])
def test_good_pie_loads_at_every_page_size(elf, page_size):
    assert check_elf(elf("good", GOOD, interp=True), page_size) == ElfCheck(True, "", RULE_OK, 0, "kernel")


def test_congruence_fails_with_einval_above_4k(elf):
    path = elf("incongruent", INCONGRUENT, interp=True)
    assert check_elf(path, 4 * K).ok
    verdict = check_elf(path, 16 * K)
    assert (verdict.ok, verdict.rule, verdict.errno, verdict.segment, verdict.loader) == \
        (False, RULE_CONGRUENCE, errno.EINVAL, 1, "kernel")
    # elf_map(): off = 0x2000 - ELF_PAGEOFFSET(0x3000) = 0x2000 - 0x3000 % 0x4000 = -0x1000: not a page multiple.
    assert "mmap offset -0x1000" in verdict.reason
    assert check_elf(path, 64 * K).rule == RULE_CONGRUENCE


def test_overlap_of_permissions_in_one_process_page(elf):
    path = elf("overlap", OVERLAPPING, interp=True)
    assert check_elf(path, 4 * K).ok
    verdict = check_elf(path, 16 * K)
    assert (verdict.ok, verdict.rule, verdict.errno, verdict.segment) == (False, RULE_OVERLAP, 0, 1)
    assert "[0x0, 0x4000)" in verdict.reason


def test_same_permissions_sharing_a_page_is_not_an_overlap(elf):
    loads = [(0x0, 0x0, 0x1800, 0x1800, R, 0x1000), (0x2000, 0x2000, 0x1000, 0x1000, R, 0x1000)]
    assert check_elf(elf("ro", loads, interp=True), 16 * K).ok


def test_small_p_align_is_raised_by_binfmt_for_an_executable(elf):
    # p_align 4K, but laid out congruent mod 64K with no shared pages: the kernel loads it.
    loads = [(0x0, 0x0, 0x1800, 0x1800, RX, 0x1000), (0x10000, 0x10000, 0x800, 0x800, RW, 0x1000)]
    path = elf("pie4k", loads, interp=True)
    assert check_elf(path, 64 * K).ok
    assert maximum_alignment(read_elf_image(path).loads, 64 * K) == 64 * K


def test_ldso_refuses_a_shared_object_with_p_align_below_the_page(elf):
    loads = [(0x0, 0x0, 0x1800, 0x1800, RX, 0x1000), (0x10000, 0x10000, 0x800, 0x800, RW, 0x1000)]
    path = elf("lib4k.so", loads, dynamic=[(DT_SONAME, 1)])
    assert check_elf(path, 4 * K).ok
    verdict = check_elf(path, 16 * K)
    assert (verdict.ok, verdict.rule, verdict.loader, verdict.segment) == (False, RULE_ALIGN, "ld.so", 0)
    assert "ELF load command alignment not page-aligned" in verdict.reason


def test_ldso_refuses_vaddr_offset_not_aligned_to_p_align(elf):
    # p_align 64K is page aligned at 16K, but p_vaddr - p_offset = 0x4000 is not a multiple of it.
    loads = [(0x0, 0x0, 0x1800, 0x1800, RX, 0x10000), (0x10000, 0x14000, 0x800, 0x800, RW, 0x10000)]
    path = elf("libmis.so", loads)
    verdict = check_elf(path, 16 * K)
    assert (verdict.ok, verdict.rule, verdict.loader, verdict.segment) == (False, RULE_ALIGN_OFFSET, "ld.so", 1)
    assert "ELF load command address/offset not properly aligned" in verdict.reason


def test_libc_style_library_with_interp_and_soname_goes_to_ldso(elf):
    loads = [(0x0, 0x0, 0x1800, 0x1800, RX, 0x1000)]
    assert read_elf_image(elf("libc.so.6", loads, interp=True, dynamic=[(DT_SONAME, 1)])).loader == "ld.so"
    assert read_elf_image(elf("static-pie", loads, dynamic=[(DT_FLAGS_1, DF_1_PIE)])).loader == "kernel"
    assert read_elf_image(elf("exec", loads, e_type=ET_EXEC)).loader == "kernel"


def test_no_pt_load_is_einval(elf):
    assert check_elf(elf("empty", [], interp=True), 16 * K) == ElfCheck(
        False, "no PT_LOAD segment: total_mapping_size() is 0", RULE_NO_LOAD, errno.EINVAL, "kernel")


def test_filesz_above_memsz_is_einval(elf):
    verdict = check_elf(elf("seg", [(0x0, 0x0, 0x2000, 0x1000, RX, 0x1000)], interp=True), 4 * K)
    assert (verdict.rule, verdict.errno, verdict.segment) == (RULE_SEGMENT, errno.EINVAL, 0)


@pytest.mark.parametrize("body", [b"", b"\x7fELF", b"#!/bin/sh\necho hi\n", bytes(range(256)) * 4,
                                  b"\x7fELF\x02\x01\x01" + bytes(9) + b"\xff" * 48])
def test_garbage_is_enoexec_never_an_exception(tmp_path, body):
    path = tmp_path / "junk"
    path.write_bytes(body)
    verdict = check_elf(str(path), 16 * K)
    assert (verdict.ok, verdict.rule, verdict.errno) == (False, RULE_ENOEXEC, errno.ENOEXEC)


def test_wrong_type_and_phentsize_are_enoexec(elf):
    assert check_elf(elf("rel", GOOD, e_type=1), 4 * K).rule == RULE_ENOEXEC  # ET_REL
    assert check_elf(elf("phent", GOOD, phentsize=48), 4 * K).rule == RULE_ENOEXEC
    assert check_elf("/nonexistent/file", 4 * K).rule == RULE_ENOEXEC


def test_bad_page_size_is_a_clear_error(elf):
    with pytest.raises(ValueError, match="power of two"):
        check_elf(elf("good", GOOD), 12 * K)


def test_total_mapping_size_rounds_the_start_down():
    image_loads = [type("S", (), {"vaddr": 0x1234, "memsz": 0x100})(), type("S", (), {"vaddr": 0x5000, "memsz": 0x10})()]
    # fs/binfmt_elf.c total_mapping_size(): 0x5010 - ELF_PAGESTART(0x1234)
    assert total_mapping_size(image_loads, 4 * K) == 0x5010 - 0x1000
    assert total_mapping_size(image_loads, 16 * K) == 0x5010


# -- load_elf_binary: the mappings execve makes, through the process's own mmap ----------

from kernel_model.binfmt_elf import MappedSegment, elf_et_dyn_base, load_elf_binary  # noqa: E402
from kernel_model.mm_types import PROT_EXEC, PROT_READ, PROT_WRITE  # noqa: E402
from kernel_model.system import System  # noqa: E402
from test_pagemap import _pgtable  # noqa: E402,F401  (real pgtable, or a double until it exists)

PR, PRW, PRX = PROT_READ, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC


def vma_layout(proc, bias):
    return [(v.start - bias, v.end - bias, v.flags & 7, v.file is not None) for v in proc.mm.vmas]


@pytest.fixture
def system():
    return System(kernel_page_size="4K", memory_size="256M")


def test_load_pie_at_64k_maps_text_data_and_bss(system, elf):
    # page(64K)  0  1  2
    # text       T            R-X, file offset 0
    # data          D         RW-, file offset 0x10000, 0x800 bytes, then bss to 0x22000
    # bss              B      anonymous: ELF_PAGEALIGN(0x10800) .. ELF_PAGEALIGN(0x22000)
    p = system.execve(page_size="64K")
    result = load_elf_binary(p, elf("good", GOOD, interp=True))
    bias = elf_et_dyn_base(48) & ~0xFFFF
    assert (result.ok, result.rule, result.load_bias, result.brk) == (True, "", bias, bias + 0x30000)
    assert result.segments == [MappedSegment(bias, bias + 0x10000, PRX, "file", 0),
                               MappedSegment(bias + 0x10000, bias + 0x20000, PRW, "file", 0x10000),
                               MappedSegment(bias + 0x20000, bias + 0x30000, PRW, "bss")]
    assert vma_layout(p, bias) == [(0, 0x10000, PRX, True), (0x10000, 0x20000, PRW, True),
                                   (0x20000, 0x30000, PRW, False)]
    assert (p.mm.start_brk, p.mm.brk) == (bias + 0x30000, bias + 0x30000)
    # padzero(): the partial last data page was written, so that 64K process page is mapped.
    look = p.mm.pgtable.lookup(np.arange(bias + 0x10000, bias + 0x20000, 4096, dtype=np.int64))
    assert list(look.present) == [True] * 16


def test_load_incongruent_pie_fails_at_the_mmap_with_einval(system, elf):
    p = system.execve(page_size="16K")
    result = load_elf_binary(p, elf("incongruent", INCONGRUENT, interp=True))
    assert (result.ok, result.rule, result.errno) == (False, RULE_CONGRUENCE, errno.EINVAL)
    assert len(result.segments) == 1  # the text was mapped; the data mmap returned -EINVAL
    p4 = system.execve(page_size="4K")
    assert load_elf_binary(p4, elf("incongruent", INCONGRUENT, interp=True)).ok


def test_load_overlap_leaves_the_later_segment_in_the_shared_page(system, elf):
    path = elf("overlap", OVERLAPPING, interp=True)
    p4 = system.execve(page_size="4K")
    ok = load_elf_binary(p4, path)
    assert ok.ok
    assert vma_layout(p4, ok.load_bias) == [(0, 0x2000, PRX, True), (0x2000, 0x3000, PRW, True)]
    p16 = system.execve(page_size="16K")
    bad = load_elf_binary(p16, path)
    assert (bad.ok, bad.rule) == (False, RULE_OVERLAP)
    # The data mapping (MAP_FIXED) replaced the text's only page: no executable page is left.
    assert vma_layout(p16, bad.load_bias) == [(0, 0x4000, PRW, True)]


def test_et_exec_maps_at_its_link_address(system, elf):
    loads = [(0x0, 0x400000, 0x1800, 0x1800, RX, 0x10000), (0x10000, 0x410000, 0x100, 0x100, R, 0x10000)]
    p = system.execve(page_size="16K")
    result = load_elf_binary(p, elf("exec", loads, e_type=ET_EXEC))
    assert (result.ok, result.load_bias) == (True, 0)
    assert vma_layout(p, 0) == [(0x400000, 0x404000, PRX, True), (0x410000, 0x414000, PR, True)]


def test_ldso_refusal_maps_nothing(system, elf):
    loads = [(0x0, 0x0, 0x1800, 0x1800, RX, 0x1000), (0x10000, 0x10000, 0x800, 0x800, RW, 0x1000)]
    p = system.execve(page_size="16K")
    result = load_elf_binary(p, elf("lib4k.so", loads, dynamic=[(DT_SONAME, 1)]))
    assert (result.ok, result.rule, result.segments) == (False, RULE_ALIGN, [])
    assert list(p.mm.vmas) == []


def test_load_garbage_is_enoexec(system, tmp_path):
    path = tmp_path / "junk"
    path.write_bytes(b"\x7fELF garbage")
    p = system.execve(page_size="16K")
    result = load_elf_binary(p, str(path))
    assert (result.ok, result.rule, result.errno) == (False, RULE_ENOEXEC, errno.ENOEXEC)
    assert list(p.mm.vmas) == []
