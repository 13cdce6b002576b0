"""mremap(2) in process-page units.

Counterpart: mm/mremap.c (SYSCALL_DEFINE5(mremap), mremap_to(), vma_to_resize(),
vma_expandable(), move_vma()). Cases: tools/testing/selftests/mm/mremap_test.c,
mremap_dontunmap.c, LTP mremap01..06.
"""

from __future__ import annotations

import errno
from dataclasses import replace

from . import mremap
from .abi_common import MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE, offset_in_page, page_align, u64
from .mm_types import VM_DONTEXPAND, VM_LOCKED, VM_LOCKONFAULT, VM_MAYSHARE, VM_PFNMAP, Vma

_VALID = MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP


class MremapOps:
    """mremap of a Process (needs the MmapOps helpers)."""

    def mremap(self, old_addr: int, old_size: int, new_size: int, flags: int, new_addr: int = 0) -> int:
        """mremap(2): the (possibly new) address, or -errno."""
        ps = self.page_size
        addr, old_len, new_len, flags, new_addr = (u64(old_addr), u64(old_size), u64(new_size), u64(flags),
                                                   u64(new_addr))
        if flags & ~_VALID:
            return -errno.EINVAL
        if flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE:
            return -errno.EINVAL
        # MREMAP_DONTUNMAP is always a move and does not allow resizing
        if flags & MREMAP_DONTUNMAP and (not flags & MREMAP_MAYMOVE or old_len != new_len):
            return -errno.EINVAL
        if offset_in_page(addr, ps):
            return -errno.EINVAL
        old_len, new_len = page_align(old_len, ps), page_align(new_len, ps)
        if not new_len:
            return -errno.EINVAL
        vma = self.mm.vmas.find(addr)
        if vma is None:
            return -errno.EFAULT
        if old_len == 0:
            # duplicating a shared mapping (old_len 0) is a legacy feature; private -> -EINVAL
            if not vma.flags & VM_MAYSHARE:
                return -errno.EINVAL
            if not flags & MREMAP_MAYMOVE:
                return -errno.ENOMEM
        if flags & (MREMAP_FIXED | MREMAP_DONTUNMAP):
            return self._mremap_to(addr, old_len, new_addr, new_len, flags)
        # always allow a shrinking remap: it unmaps the tail
        if old_len >= new_len:
            if old_len > new_len:
                self._do_munmap(addr + new_len, addr + old_len)
            return addr
        err = self._vma_to_resize(addr, old_len, new_len, flags)
        if err:
            return err
        vma = self.mm.vmas.find(addr)
        # old_len exactly to the end of the area: can it grow in place?
        if old_len and old_len == vma.end - addr and self._vma_expandable(vma, new_len - old_len):
            delta_start = vma.end
            self.mm.vmas.map(replace(vma, start=vma.end, end=vma.end + new_len - old_len,
                                     pgoff=vma.pgoff + (vma.end - vma.start) // self.system.kernel_page_size))
            self._account_locked()
            if vma.flags & VM_LOCKED and not vma.flags & VM_LOCKONFAULT:
                self._mm_populate(delta_start, addr + new_len, ignore_errors=True)
            return addr
        if not flags & MREMAP_MAYMOVE:
            return -errno.ENOMEM
        target = self.mm.vmas.get_unmapped_area(new_len, high_limit=self.mm.mmap_base or None)
        if target < 0:
            return target
        return self._move_vma(addr, old_len, new_len, target, flags)

    def _vma_to_resize(self, addr: int, old_len: int, new_len: int, flags: int) -> int:
        """mm/mremap.c vma_to_resize(): the old range must lie in one VMA; growing is refused
        for VM_DONTEXPAND/VM_PFNMAP VMAs."""
        vma = self.mm.vmas.find(addr)
        if vma is None:
            return -errno.EFAULT
        if old_len > vma.end - addr:
            return -errno.EFAULT
        if new_len == old_len:
            return 0
        if vma.flags & (VM_DONTEXPAND | VM_PFNMAP):
            return -errno.EFAULT
        return 0

    def _vma_expandable(self, vma: Vma, delta: int) -> bool:
        """Nothing mapped in [vma.end, vma.end + delta) and the end stays inside TASK_SIZE."""
        end = vma.end + delta
        if end > self.task_size or end < vma.end:
            return False
        return not self.mm.vmas.find_intersection(vma.end, end)

    def _mremap_to(self, addr: int, old_len: int, new_addr: int, new_len: int, flags: int) -> int:
        ps = self.page_size
        if flags & MREMAP_FIXED:
            if offset_in_page(new_addr, ps):
                return -errno.EINVAL
            if new_len > self.task_size or new_addr > self.task_size - new_len:
                return -errno.EINVAL
            # the old and new ranges must not overlap
            if addr + old_len > new_addr and new_addr + new_len > addr:
                return -errno.EINVAL
            if new_addr < self.mm.vmas.mmap_min_addr:
                return -errno.EPERM  # security_mmap_addr() in the MAP_FIXED get_unmapped_area()
            self._do_munmap(new_addr, new_addr + new_len)
        if old_len > new_len:
            self._do_munmap(addr + new_len, addr + old_len)
            old_len = new_len
        err = self._vma_to_resize(addr, old_len, new_len, flags)
        if err:
            return err
        vma = self.mm.vmas.find(addr)
        if flags & MREMAP_DONTUNMAP and vma.flags & (VM_DONTEXPAND | VM_PFNMAP):
            return -errno.EINVAL
        if flags & MREMAP_FIXED:
            target = new_addr
        else:
            target = self.mm.vmas.get_unmapped_area(new_len, hint=new_addr, high_limit=self.mm.mmap_base or None)
            if target < 0:
                return target
        return self._move_vma(addr, old_len, new_len, target, flags)

    def _move_vma(self, addr: int, old_len: int, new_len: int, new_addr: int, flags: int) -> int:
        """mm/mremap.c move_vma(): copy the VMA to new_addr, move the page tables, then unmap
        the old range (MREMAP_DONTUNMAP keeps the old VMA, empty and unlocked). A grown
        mapping extends the moved VMA; a VM_LOCKED one is populated over the growth."""
        mm = self.mm
        kps = self.system.kernel_page_size
        vma = mm.vmas.find(addr)
        if old_len == 0:  # shared duplicate: a new VMA over the same file pages
            mm.vmas.map(replace(vma, start=new_addr, end=new_addr + new_len,
                                pgoff=vma.pgoff + (addr - vma.start) // kps))
            return new_addr
        # vma_to_resize() confined the source to one VMA (a range spanning the EOF-overhang
        # pair crosses two VMAs and was refused with -EFAULT, as for any two VMAs)
        moved = replace(vma, start=new_addr, end=new_addr + new_len,
                        pgoff=vma.pgoff + (addr - vma.start) // kps)
        mremap.move_range(mm, addr, new_addr, old_len)
        if flags & MREMAP_DONTUNMAP:
            # the old VMA stays, its pages gone; it is no longer locked
            mm.vmas.set_flags(addr, addr + old_len, 0, vma.flags & (VM_LOCKED | VM_LOCKONFAULT))
        else:
            mm.vmas.unmap(addr, addr + old_len)
        mm.vmas.map(moved)
        self._account_locked()
        if new_len > old_len and vma.flags & VM_LOCKED and not vma.flags & VM_LOCKONFAULT:
            self._mm_populate(new_addr + old_len, new_addr + new_len, ignore_errors=True)
        return new_addr
