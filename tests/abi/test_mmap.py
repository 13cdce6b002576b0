"""mmap(2) in process pages: LTP mmap01..20, selftests map_fixed_noreplace.c."""

import errno
import os

from kernel_model.abi import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_POPULATE, MAP_PRIVATE,
                              MAP_SHARED, MAP_SHARED_VALIDATE, MAP_SYNC, PROT_NONE, PROT_READ, PROT_WRITE)
from kernel_model.mm_types import VM_PAD_ANON

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def test_anonymous_mapping_is_top_down_and_rounded_to_the_process_page(proc, layout):
    ps = proc.page_size
    top = proc.mm.mmap_base
    addr = proc.mmap(0, 1, RW, ANON)
    assert addr == top - ps
    assert layout(proc) == [(top - ps, top, RW)]
    # a second mapping lands right below and merges (contiguous anon pgoff, same flags)
    addr2 = proc.mmap(0, ps + 1, RW, ANON)
    assert addr2 == top - 3 * ps
    assert layout(proc) == [(top - 3 * ps, top, RW)]


def test_length_and_flags_errors(proc):
    ps = proc.page_size
    assert proc.mmap(0, 0, RW, ANON) == -errno.EINVAL
    assert proc.mmap(0, ps, RW, MAP_ANONYMOUS) == -errno.EINVAL  # neither shared nor private
    assert proc.mmap(0, -1, RW, ANON) == -errno.ENOMEM  # PAGE_ALIGN wraps to 0
    assert proc.mmap(0, 1 << 48, RW, ANON) == -errno.ENOMEM
    assert proc.mmap(0, ps, RW, MAP_PRIVATE, fd=99) == -errno.EBADF
    assert proc.mm.vmas.vmas == []


def test_offset_must_be_aligned_to_the_process_page(proc):
    ps, kps = proc.page_size, proc.system.kernel_page_size
    proc.system.create_file("/f", 4 * ps)
    fd = proc.open("/f")
    assert proc.mmap(0, ps, PROT_READ, MAP_PRIVATE, fd, ps // 2) == -errno.EINVAL
    # one kernel page: fine when the process page is the kernel page, -EINVAL otherwise
    expect_ok = ps == kps
    got = proc.mmap(0, ps, PROT_READ, MAP_PRIVATE, fd, kps)
    # the first mapping of this mm lands top-down, one process page below mmap_base
    assert got == (proc.mm.mmap_base - ps if expect_ok else -errno.EINVAL)
    addr = proc.mmap(0, ps, PROT_READ, MAP_PRIVATE, fd, 2 * ps)
    assert proc.mm.vmas.find(addr).pgoff == 2 * ps // kps  # vm_pgoff in kernel pages


def test_map_fixed_alignment_and_min_addr(proc, reserve):
    ps, kps = proc.page_size, proc.system.kernel_page_size
    base = reserve(proc, 4)
    bad = base + (kps if ps > kps else 1)
    assert proc.mmap(bad, ps, RW, ANON | MAP_FIXED) == -errno.EINVAL
    assert proc.mmap(ps, ps, RW, ANON | MAP_FIXED) == (-errno.EPERM if ps < 65536 else ps)
    assert proc.mmap(0, ps, RW, ANON | MAP_FIXED) == -errno.EPERM  # below vm.mmap_min_addr
    assert proc.mmap(base, ps, RW, ANON | MAP_FIXED) == base


def test_hint_is_used_when_free_and_rounded_down(proc, reserve):
    ps, kps = proc.page_size, proc.system.kernel_page_size
    base = reserve(proc, 8)
    assert proc.mmap(base + 2 * ps, ps, RW, ANON) == base + 2 * ps
    # an unaligned hint is rounded down to its process page (mm/mmap.c round_hint_to_min())
    assert proc.mmap(base + 4 * ps + (kps if ps > kps else 1), ps, RW, ANON) == base + 4 * ps
    # a taken hint falls back to the top-down search
    assert proc.mmap(base + 2 * ps, ps, RW, ANON) != base + 2 * ps


def test_map_fixed_replaces_and_zaps(proc, layout, reserve):
    ps = proc.page_size
    base = reserve(proc, 3)
    # 012
    # AAA   read-write, every page touched
    #  *    MAP_FIXED PROT_READ over the middle
    # ABC
    assert proc.mmap(base, 3 * ps, RW, ANON | MAP_FIXED) == base
    assert [proc.touch(base + i * ps, write=True) for i in range(3)] == [0, 0, 0]
    assert proc.mmap(base + ps, ps, PROT_READ, ANON | MAP_FIXED) == base + ps
    assert layout(proc) == [(base, base + ps, RW), (base + ps, base + 2 * ps, PROT_READ),
                            (base + 2 * ps, base + 3 * ps, RW)]
    assert proc.mincore(base, 3 * ps) == [1, 0, 1]


def test_map_fixed_noreplace(proc, layout, reserve):
    # tools/testing/selftests/mm/map_fixed_noreplace.c: every overlap -> EEXIST, adjacency is fine
    ps = proc.page_size
    base = reserve(proc, 9)
    NR = ANON | MAP_FIXED_NOREPLACE
    # 012345678
    #   AAAAA     the existing mapping
    assert proc.mmap(base + 2 * ps, 5 * ps, RW, NR) == base + 2 * ps
    assert proc.mmap(base + ps, 2 * ps, RW, NR) == -errno.EEXIST       # overlaps the start
    assert proc.mmap(base + 6 * ps, 2 * ps, RW, NR) == -errno.EEXIST   # overlaps the end
    assert proc.mmap(base + 4 * ps, ps, RW, NR) == -errno.EEXIST       # inside
    assert proc.mmap(base + ps, 7 * ps, RW, NR) == -errno.EEXIST       # covers it
    assert layout(proc) == [(base + 2 * ps, base + 7 * ps, RW)]
    # adjacent on both sides: succeeds and merges
    assert proc.mmap(base + ps, ps, RW, NR) == base + ps
    assert proc.mmap(base + 7 * ps, ps, RW, NR) == base + 7 * ps
    assert layout(proc) == [(base + ps, base + 8 * ps, RW)]


def test_file_access_modes(proc):
    ps = proc.page_size
    proc.system.create_file("/ro", 2 * ps)
    ro = proc.open("/ro", os.O_RDONLY)
    wo = proc.open("/ro", os.O_WRONLY)
    assert proc.mmap(0, ps, RW, MAP_SHARED, ro, 0) == -errno.EACCES        # LTP mmap06
    assert proc.mmap(0, ps, PROT_READ, MAP_PRIVATE, wo, 0) == -errno.EACCES  # LTP mmap07
    # the mappings that succeed stack top-down below mmap_base, one process page each
    top = proc.mm.mmap_base
    assert proc.mmap(0, ps, RW, MAP_PRIVATE, ro, 0) == top - ps  # private write is COW: allowed
    assert proc.mmap(0, ps, PROT_READ, MAP_SHARED_VALIDATE | MAP_SYNC, ro, 0) == -errno.EOPNOTSUPP
    assert proc.mmap(0, ps, PROT_READ, MAP_SHARED | MAP_SYNC, ro, 0) == top - 2 * ps  # legacy mask drops MAP_SYNC
    assert proc.open("/nope") == -errno.ENOENT
    assert proc.close(ro) == 0 and proc.close(ro) == -errno.EBADF


def test_map_populate_faults_every_process_page(proc):
    ps = proc.page_size
    addr = proc.mmap(0, 3 * ps, RW, ANON | MAP_POPULATE)
    assert proc.mincore(addr, 3 * ps) == [1, 1, 1]
    plain = proc.mmap(0, 3 * ps, RW, ANON)
    assert proc.mincore(plain, 3 * ps) == [0, 0, 0]


def test_prot_none_mapping(proc, layout):
    ps = proc.page_size
    addr = proc.mmap(0, 2 * ps, PROT_NONE, ANON)
    assert layout(proc) == [(addr, addr + 2 * ps, PROT_NONE)]


# -- EOF overhang: a 12K file mapped by a 64K process (the thread, Kalesh/Dev) -------------

def test_overhang_anon_vma_adds_one_52k_vma(make_proc):
    p = make_proc("4K", "64K", overhang="anon_vma")
    p.system.create_file("/small", 12 * 1024)
    fd = p.open("/small")
    addr = p.mmap(0, 65536, PROT_READ, MAP_PRIVATE, fd, 0)
    vmas = [(v.start - addr, v.end - addr, v.anon, bool(v.flags & VM_PAD_ANON)) for v in p.mm.vmas.vmas]
    assert vmas == [(0, 12 * 1024, False, False), (12 * 1024, 65536, True, True)]
    assert p.mm.vmas.vmas[1].length == 52 * 1024
    # munmap of the process page removes both
    assert p.munmap(addr, 65536) == 0
    assert p.mm.vmas.vmas == []


def test_overhang_anon_vma_with_a_tail_beyond_the_eof_page(make_proc):
    p = make_proc("4K", "16K", overhang="anon_vma")
    p.system.create_file("/small", 12 * 1024)
    fd = p.open("/small")
    addr = p.mmap(0, 3 * 16384, PROT_READ, MAP_PRIVATE, fd, 0)
    kinds = [(v.start - addr, v.end - addr, v.anon, v.pgoff) for v in p.mm.vmas.vmas]
    # file [0,12K) + pad [12K,16K) + the whole process pages past EOF stay file-backed (SIGBUS)
    assert kinds == [(0, 12288, False, 0), (12288, 16384, True, (addr + 12288) // 4096),
                     (16384, 49152, False, 4)]


def test_overhang_other_policies_map_one_vma(make_proc):
    for policy in ("anon_fault", "sigbus"):
        p = make_proc("4K", "64K", overhang=policy)
        p.system.create_file("/small", 12 * 1024)
        addr = p.mmap(0, 65536, PROT_READ, MAP_PRIVATE, p.open("/small"), 0)
        assert [(v.start - addr, v.end - addr) for v in p.mm.vmas.vmas] == [(0, 65536)]


def test_overhang_anon_vma_not_needed_when_eof_is_process_aligned(make_proc):
    p = make_proc("4K", "64K", overhang="anon_vma")
    p.system.create_file("/exact", 65536)
    addr = p.mmap(0, 65536, PROT_READ, MAP_PRIVATE, p.open("/exact"), 0)
    assert [(v.start - addr, v.end - addr) for v in p.mm.vmas.vmas] == [(0, 65536)]


def test_overhang_pair_follows_range_syscalls(make_proc):
    import signal

    from kernel_model.abi import MADV_DONTNEED, MREMAP_MAYMOVE
    from kernel_model.mm_types import VM_LOCKED

    p = make_proc("4K", "64K", overhang="anon_vma")
    p.system.create_file("/small", 12 * 1024)
    a = p.mmap(0, 3 * 65536, PROT_READ, MAP_PRIVATE, p.open("/small"), 0)
    # 0   1   2        (64K process pages)
    # AB  CCCCCCCC     A file [0,12K), B pad [12K,64K), C file pages wholly past EOF
    assert [(v.start - a, v.end - a, v.flags & 7, v.anon) for v in p.mm.vmas.vmas] == [
        (0, 12288, PROT_READ, False), (12288, 65536, PROT_READ, True), (65536, 196608, PROT_READ, False)]
    assert p.mprotect(a, 3 * 65536, RW) == 0
    assert [v.flags & 7 for v in p.mm.vmas.vmas] == [RW, RW, RW]
    assert p.mlock(a, 65536) == 0
    assert [bool(v.flags & VM_LOCKED) for v in p.mm.vmas.vmas] == [True, True, False]
    assert p.mincore(a, 65536) == [1]
    assert p.madvise(a, 65536, MADV_DONTNEED) == -errno.EINVAL  # locked
    assert p.mremap(a, 65536, 2 * 65536, MREMAP_MAYMOVE) == -errno.EFAULT  # spans two VMAs
    assert p.touch(a + 65536) == signal.SIGBUS
    assert p.munmap(a, 3 * 65536) == 0 and p.mm.vmas.vmas == [] and p.mm.locked_vm == 0
