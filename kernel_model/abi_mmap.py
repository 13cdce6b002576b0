"""mmap, munmap, brk, open, close in process-page units.

Counterparts: arch/arm64/kernel/sys.c (sys_mmap: offset must be page aligned),
mm/mmap.c (ksys_mmap_pgoff(), do_mmap(), __get_unmapped_area(), brk), mm/util.c
(vm_mmap_pgoff(): populate after the mmap lock is dropped), mm/vma.c (do_vmi_munmap(),
__mmap_region()), security/commoncap.c (cap_mmap_addr()). Cases: LTP
testcases/kernel/syscalls/mmap/*, munmap/*, tools/testing/selftests/mm/map_fixed_noreplace.c.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from . import memory
from .abi_common import (LEGACY_MAP_MASK, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_GROWSDOWN,
                         MAP_HUGETLB, MAP_LOCKED, MAP_NONBLOCK, MAP_NORESERVE, MAP_POPULATE, MAP_PRIVATE,
                         MAP_SHARED, MAP_SHARED_VALIDATE, MAP_TYPE, O_ACCMODE, O_RDONLY, O_RDWR, O_WRONLY,
                         PROT_WRITE, VM_MAY_ALL, calc_vm_prot_bits, offset_in_page, page_align, u64)
from .filemap_policy import filemap_mmap
from .mm_types import (VM_ACCOUNT, VM_GROWSDOWN, VM_LOCKED, VM_LOCKONFAULT, VM_MAYSHARE, VM_MAYWRITE,
                       VM_NORESERVE, VM_READ, VM_SHARED, VM_WRITE, File, Vma)
from .shmem import shmem_zero_setup

# include/linux/mm.h: DEFAULT_MAX_MAP_COUNT (vm.max_map_count)
MAX_MAP_COUNT = 65530


@dataclass(eq=False)
class OpenFile:
    """struct file: an open file description with its access mode (f_mode)."""

    file: File
    readable: bool
    writable: bool


class MmapOps:
    """mmap/munmap/brk/open/close of a Process. Needs self.system, self.mm, self.page_size,
    self.fdtable (fd -> object) and self.def_flags (mm->def_flags: VM_LOCKED after MCL_FUTURE)."""

    # -- files ------------------------------------------------------------------------
    def open(self, path: str, flags: int = O_RDWR) -> int:
        """open(2) of a file made with System.create_file(); the lowest free fd >= 3, or -ENOENT."""
        f = self.system.files.get(path)
        if f is None:
            return -errno.ENOENT
        acc = flags & O_ACCMODE
        if acc not in (O_RDONLY, O_WRONLY, O_RDWR):
            return -errno.EINVAL
        fd = 3  # fs/file.c: alloc_fd() takes the lowest free descriptor; 0..2 are stdio
        while fd in self.fdtable:
            fd += 1
        self.fdtable[fd] = OpenFile(f, readable=acc != O_WRONLY, writable=acc != O_RDONLY)
        return fd

    def close(self, fd: int) -> int:
        if self.fdtable.pop(fd, None) is None:
            return -errno.EBADF
        return 0

    # -- helpers shared by the syscall families ------------------------------------------
    @property
    def task_size(self) -> int:
        return 1 << self.system.va_bits

    def _account_locked(self) -> None:
        """mm->locked_vm: bytes of VM_LOCKED mappings."""
        self.mm.locked_vm = sum(v.length for v in self.mm.vmas.vmas if v.flags & VM_LOCKED)

    def _do_munmap(self, start: int, end: int) -> None:
        """mm/vma.c do_vmi_align_munmap(): zap the pages, then drop the VMAs (splitting)."""
        mm = self.mm
        if not mm.vmas.find_intersection(start, end):
            return
        memory.zap_range(mm, start, end)
        if any(v.flags & VM_LOCKED for v in mm.vmas.unmap(start, end)):
            self._account_locked()

    @staticmethod
    def _populate_write(vm_flags: int) -> bool:
        """mm/gup.c populate_vma_page_range(): FOLL_WRITE for private writable mappings (break COW)."""
        return (vm_flags & (VM_WRITE | VM_SHARED)) == VM_WRITE

    # -- mmap -------------------------------------------------------------------------
    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
        """mmap(2): the mapped address, or -errno."""
        ps, kps = self.page_size, self.system.kernel_page_size
        mm = self.mm
        addr, length, offset, flags = u64(addr), u64(length), u64(offset), u64(flags)
        # arch/arm64/kernel/sys.c sys_mmap(): an offset not aligned to the (process) page -> -EINVAL
        if offset_in_page(offset, ps):
            return -errno.EINVAL
        pgoff = offset // kps  # vm_pgoff is in kernel pages below the adapter
        # mm/mmap.c ksys_mmap_pgoff(): a file mapping needs a valid fd
        of = None
        if not flags & MAP_ANONYMOUS:
            of = self.fdtable.get(fd)
            if not isinstance(of, OpenFile):
                return -errno.EBADF
        elif flags & MAP_HUGETLB:
            return -errno.ENOMEM  # hugetlb_file_setup() with vm.nr_hugepages = 0 (not modelled)
        # mm/mmap.c do_mmap()
        if length == 0:
            return -errno.EINVAL
        if flags & MAP_FIXED_NOREPLACE:
            flags |= MAP_FIXED  # force MAP_FIXED handling in get_unmapped_area
        if not flags & MAP_FIXED:
            addr = self._round_hint_to_min(addr)
        length = page_align(length, ps)
        if length == 0:
            return -errno.ENOMEM
        if pgoff + length // kps > (1 << 64) - 1:
            return -errno.EOVERFLOW
        if len(mm.vmas) > MAX_MAP_COUNT:
            return -errno.ENOMEM
        vm_flags = calc_vm_prot_bits(prot) | self.def_flags | VM_MAY_ALL
        if flags & MAP_GROWSDOWN:
            vm_flags |= VM_GROWSDOWN  # calc_vm_flag_bits()
        if flags & MAP_LOCKED:
            vm_flags |= VM_LOCKED
        addr = self._get_unmapped_area(addr, length, flags)
        if addr < 0:
            return addr
        if flags & MAP_FIXED_NOREPLACE and mm.vmas.find_intersection(addr, addr + length):
            return -errno.EEXIST
        file = None
        mtype = flags & MAP_TYPE
        if of is not None:
            file = of.file
            if mtype in (MAP_SHARED, MAP_SHARED_VALIDATE):
                if mtype == MAP_SHARED:
                    flags &= LEGACY_MAP_MASK
                # file->f_op->mmap_supported_flags is 0 for our (non-DAX) files: MAP_SYNC etc.
                if flags & ~LEGACY_MAP_MASK:
                    return -errno.EOPNOTSUPP
                if prot & PROT_WRITE and not of.writable:
                    return -errno.EACCES
                vm_flags |= VM_SHARED | VM_MAYSHARE
                if not of.writable:
                    vm_flags &= ~(VM_MAYWRITE | VM_SHARED)
            elif mtype != MAP_PRIVATE:
                return -errno.EINVAL
            if not of.readable:
                return -errno.EACCES
        else:
            if mtype == MAP_SHARED:
                if vm_flags & VM_GROWSDOWN:
                    return -errno.EINVAL
                pgoff = 0
                vm_flags |= VM_SHARED | VM_MAYSHARE
            elif mtype == MAP_PRIVATE:
                pgoff = addr // kps
            else:
                return -errno.EINVAL
        # mm/mmap.c accountable_mapping(): private writable memory is charged unless NORESERVE
        if flags & MAP_NORESERVE:
            vm_flags |= VM_NORESERVE
        elif (vm_flags & (VM_SHARED | VM_WRITE)) == VM_WRITE:
            vm_flags |= VM_ACCOUNT
        # mm/vma.c __mmap_region(): MAP_FIXED replaces whatever was there
        self._do_munmap(addr, addr + length)
        vma = Vma(start=addr, end=addr + length, flags=vm_flags, file=file, pgoff=pgoff)
        if file is None and vm_flags & VM_SHARED:
            shmem_zero_setup(self.system, vma)  # mm/mmap.c __mmap_region(): shared anonymous is shmem
        self._map_vma(vma)
        if vm_flags & VM_LOCKED:
            self._account_locked()
        # mm/util.c vm_mmap_pgoff(): mm_populate() for MAP_POPULATE (without MAP_NONBLOCK)
        # or VM_LOCKED (not VM_LOCKONFAULT); its errors are ignored.
        if ((flags & (MAP_POPULATE | MAP_NONBLOCK)) == MAP_POPULATE
                or (vm_flags & VM_LOCKED and not vm_flags & VM_LOCKONFAULT)):
            self._mm_populate(addr, addr + length, ignore_errors=True)
        return addr

    def _round_hint_to_min(self, hint: int) -> int:
        """mm/mmap.c round_hint_to_min(): a hint below mmap_min_addr is raised to it."""
        hint &= ~(self.page_size - 1)
        if hint and hint < self.mm.vmas.mmap_min_addr:
            return self.mm.vmas.mmap_min_addr
        return hint

    def _get_unmapped_area(self, addr: int, length: int, flags: int) -> int:
        """mm/mmap.c __get_unmapped_area() + generic_get_unmapped_area_topdown()."""
        task = self.task_size
        vmas = self.mm.vmas
        if length > task or length > task - vmas.mmap_min_addr:
            return -errno.ENOMEM
        if flags & MAP_FIXED:
            if addr > task - length:
                return -errno.ENOMEM
            if offset_in_page(addr, self.page_size):
                return -errno.EINVAL
            # security/commoncap.c cap_mmap_addr(): below mmap_min_addr needs CAP_SYS_RAWIO
            if addr < vmas.mmap_min_addr:
                return -errno.EPERM
            return addr
        high = self.mm.mmap_base or None
        return vmas.get_unmapped_area(length, hint=addr, high_limit=high)

    def _map_vma(self, vma: Vma) -> None:
        """Insert a new VMA; a file mapping with an EOF overhang gets the abi.overhang=anon_vma
        treatment; file mappings run the page-cache policy hook."""
        mm = self.mm
        ps, kps = self.page_size, self.system.kernel_page_size
        if vma.file is not None and self.system.policy.overhang == "anon_vma" and ps > kps:
            file_off = vma.pgoff * kps
            eof = -(-vma.file.size // kps) * kps  # end of the file's last kernel page
            if file_off < eof < file_off + vma.length and (eof - file_off) % ps:
                eof_addr = vma.start + (eof - file_off)
                pad_end = -(-eof_addr // ps) * ps
                tail_len = vma.end - pad_end
                end = vma.end
                vma.end = pad_end
                mm.vmas.map_overhang(vma, eof_addr)
                if tail_len:
                    mm.vmas.map(Vma(start=pad_end, end=end, flags=vma.flags, file=vma.file,
                                    pgoff=vma.pgoff + (pad_end - vma.start) // kps))
                self.system.stats.count("overhang_vmas")
                self._filemap_mmap(vma)
                return
        mapped = mm.vmas.map(vma)
        if vma.file is not None:
            self._filemap_mmap(mapped)

    def _filemap_mmap(self, vma: Vma) -> None:
        filemap_mmap(self.system, self.mm, vma)

    def _mm_populate(self, start: int, end: int, *, ignore_errors: bool) -> int:
        """mm/gup.c __mm_populate(): fault in the VMAs of [start, end); holes end the walk;
        VM_LOCKONFAULT VMAs are skipped (populate_vma_page_range())."""
        for vma in self.mm.vmas.find_intersection(start, end):
            if vma.flags & VM_LOCKONFAULT:
                continue
            lo, hi = max(start, vma.start), min(end, vma.end)
            ret = memory.populate(self.mm, lo, hi, self._populate_write(vma.flags))
            if ret < 0 and not ignore_errors:
                return ret
        return 0

    # -- munmap -----------------------------------------------------------------------
    def munmap(self, addr: int, length: int) -> int:
        """munmap(2). mm/vma.c do_vmi_munmap(): unaligned start, a range past TASK_SIZE or a
        length that rounds to 0 -> -EINVAL; unmapping nothing is success."""
        addr, length = u64(addr), u64(length)
        task = self.task_size
        if offset_in_page(addr, self.page_size) or addr > task or length > task - addr:
            return -errno.EINVAL
        end = addr + page_align(length, self.page_size)
        if end == addr:
            return -errno.EINVAL
        self._do_munmap(addr, end)
        return 0

    # -- brk --------------------------------------------------------------------------
    def brk(self, brk: int) -> int:
        """brk(2): the new break, or the old one when the request cannot be met (mm/mmap.c)."""
        mm, ps = self.mm, self.page_size
        brk = u64(brk)
        if brk < mm.start_brk:
            return mm.brk
        newbrk, oldbrk = page_align(brk, ps), page_align(mm.brk, ps)
        if newbrk == oldbrk:
            mm.brk = brk
            return brk
        if brk <= mm.brk:  # always allow shrinking
            mm.brk = brk
            self._do_munmap(newbrk, oldbrk)
            return brk
        # check against existing mappings: one page stays free below the next VMA's
        # vm_start_gap() (which adds the stack guard gap below a VM_GROWSDOWN VMA)
        nxt = mm.vmas.find_vma(oldbrk)
        if newbrk > self.task_size or (nxt is not None and newbrk + ps > mm.vmas.vm_start_gap(nxt)):
            return mm.brk
        flags = VM_READ | VM_WRITE | VM_MAY_ALL | VM_ACCOUNT | self.def_flags  # do_brk_flags()
        mm.vmas.map(Vma(start=oldbrk, end=newbrk, flags=flags, pgoff=oldbrk // self.system.kernel_page_size))
        mm.brk = brk
        self._account_locked()
        if flags & VM_LOCKED:
            self._mm_populate(oldbrk, newbrk, ignore_errors=True)
        return brk
