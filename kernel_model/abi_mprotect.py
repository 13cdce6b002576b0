"""mprotect, mlock, mlock2, munlock, mlockall, munlockall in process-page units.

Counterparts: mm/mprotect.c (do_mprotect_pkey(), mprotect_fixup()), mm/mlock.c
(do_mlock(), apply_vma_lock_flags(), mlock_fixup(), apply_mlockall_flags(),
__mlock_posix_error_return()), arch/arm64/include/asm/mman.h (arch_validate_prot()).
Cases: LTP testcases/kernel/syscalls/mprotect/*, mlock/*, mlock2/*, munlock/*;
tools/testing/selftests/mm/mlock2-tests.c, mlock-random-test.c.
"""

from __future__ import annotations

import errno

from . import memory, mprotect
from .abi_common import (MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT, MLOCK_ONFAULT, PROT_BTI, PROT_EXEC,
                         PROT_GROWSDOWN, PROT_GROWSUP, PROT_MTE, PROT_READ, PROT_SEM, PROT_WRITE, U64,
                         calc_vm_prot_bits, offset_in_page, page_align, prot_allowed, u64)
from .mm_types import (VM_ACCESS_FLAGS, VM_ACCOUNT, VM_GROWSDOWN, VM_LOCKED, VM_LOCKONFAULT, VM_NORESERVE,
                       VM_SHARED, VM_WRITE)
from .vma import VM_SPECIAL

VM_LOCKED_MASK = VM_LOCKED | VM_LOCKONFAULT  # include/linux/mm.h

# arch/arm64/include/asm/mman.h arch_validate_prot(): any other bit -> -EINVAL
_VALID_PROT = PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM | PROT_BTI | PROT_MTE


class MprotectOps:
    """Protection and memory-lock syscalls of a Process (needs the MmapOps helpers)."""

    # -- mprotect -----------------------------------------------------------------------
    def mprotect(self, addr: int, length: int, prot: int) -> int:
        """mprotect(2): 0 or -errno, with Linux's partial effect up to a hole or an -EACCES VMA."""
        mm, ps = self.mm, self.page_size
        start, length, prot = u64(addr), u64(length), u64(prot)
        grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP)
        prot &= ~(PROT_GROWSDOWN | PROT_GROWSUP)
        if grows == PROT_GROWSDOWN | PROT_GROWSUP:
            return -errno.EINVAL
        if offset_in_page(start, ps):
            return -errno.EINVAL
        if not length:
            return 0
        length = page_align(length, ps)
        end = start + length
        if length == 0 or end > U64 or end <= start:
            return -errno.ENOMEM
        if prot & ~_VALID_PROT:
            return -errno.EINVAL
        vmas = mm.vmas.find_intersection(start, end)
        if not vmas:
            return -errno.ENOMEM
        if grows & PROT_GROWSDOWN:
            if not vmas[0].flags & VM_GROWSDOWN:
                return -errno.EINVAL
            start = vmas[0].start  # the change extends down to the VMA's start
        elif vmas[0].start > start:
            return -errno.ENOMEM
        if grows & PROT_GROWSUP:
            return -errno.EINVAL  # no VM_GROWSUP VMAs on arm64
        bits = calc_vm_prot_bits(prot)
        tmp = start
        for vs, ve, vf in [(v.start, v.end, v.flags) for v in vmas]:
            if vs > tmp:
                return -errno.ENOMEM  # a hole: what was changed before it stays changed
            newflags = bits | (vf & ~VM_ACCESS_FLAGS)
            if not prot_allowed(newflags):
                return -errno.EACCES  # e.g. PROT_WRITE on a MAP_SHARED mapping of an O_RDONLY fd
            lo, hi = max(start, vs), min(end, ve)
            self._mprotect_fixup(lo, hi, vf, newflags)
            tmp = hi
        if tmp < end:
            return -errno.ENOMEM
        return 0

    def _mprotect_fixup(self, lo: int, hi: int, oldflags: int, newflags: int) -> None:
        """mm/mprotect.c mprotect_fixup(): account newly writable private memory, change the
        VMA flags (split/merge) and the PTEs; a locked VMA made writable is re-populated."""
        mm = self.mm
        if newflags & VM_WRITE and not oldflags & (VM_ACCOUNT | VM_WRITE | VM_SHARED | VM_NORESERVE):
            newflags |= VM_ACCOUNT
        if newflags == oldflags:
            return
        mm.vmas.set_flags(lo, hi, newflags & ~oldflags, oldflags & ~newflags)
        mprotect.change_protection(mm, lo, hi, newflags & VM_ACCESS_FLAGS)
        if (oldflags & (VM_WRITE | VM_SHARED | VM_LOCKED)) == VM_LOCKED and newflags & VM_WRITE:
            memory.populate(mm, lo, hi, True)

    # -- mlock ----------------------------------------------------------------------------
    def mlock(self, addr: int, length: int) -> int:
        return self._do_mlock(addr, length, VM_LOCKED)

    def mlock2(self, addr: int, length: int, flags: int = 0) -> int:
        """mlock2(2): MLOCK_ONFAULT locks pages as they fault in instead of populating."""
        if u64(flags) & ~MLOCK_ONFAULT:
            return -errno.EINVAL
        vm_flags = VM_LOCKED | (VM_LOCKONFAULT if flags & MLOCK_ONFAULT else 0)
        return self._do_mlock(addr, length, vm_flags)

    def munlock(self, addr: int, length: int) -> int:
        start, length = self._mlock_range(addr, length)
        return self._apply_vma_lock_flags(start, length, 0)

    def _mlock_range(self, addr: int, length: int) -> tuple[int, int]:
        """mm/mlock.c: mlock does not fail on an unaligned start: it aligns the start down
        and the length up, in process pages."""
        ps = self.page_size
        addr, length = u64(addr), u64(length)
        length = page_align(length + offset_in_page(addr, ps), ps)
        return addr & ~(ps - 1), length

    def _do_mlock(self, addr: int, length: int, vm_flags: int) -> int:
        start, length = self._mlock_range(addr, length)
        err = self._apply_vma_lock_flags(start, length, vm_flags)
        if err:
            return err
        if vm_flags & VM_LOCKONFAULT:
            return 0
        err = self._mm_populate(start, start + length, ignore_errors=False)
        # mm/mlock.c __mlock_posix_error_return(): EFAULT -> ENOMEM, ENOMEM -> EAGAIN
        if err == -errno.EFAULT:
            return -errno.ENOMEM
        if err == -errno.ENOMEM:
            return -errno.EAGAIN
        return err

    def _apply_vma_lock_flags(self, start: int, length: int, flags: int) -> int:
        """mm/mlock.c apply_vma_lock_flags(): lock or unlock every VMA of the range; a hole
        (at the start or inside) -> -ENOMEM, keeping what was applied before it."""
        end = start + length
        if end > U64:
            return -errno.EINVAL
        if end == start:
            return 0
        if self.mm.vmas.find(start) is None:
            return -errno.ENOMEM
        tmp = start
        for vs, ve, vf in [(v.start, v.end, v.flags) for v in self.mm.vmas.find_intersection(start, end)]:
            if vs > tmp:
                return -errno.ENOMEM
            lo, hi = max(start, vs), min(end, ve)
            self._mlock_fixup(lo, hi, vf, (vf & ~VM_LOCKED_MASK) | flags)
            tmp = hi
        if tmp < end:
            return -errno.ENOMEM
        return 0

    def _mlock_fixup(self, lo: int, hi: int, oldflags: int, newflags: int) -> None:
        """mm/mlock.c mlock_fixup(): VM_SPECIAL VMAs are never locked; lock/unlock the folios."""
        if newflags == oldflags or oldflags & VM_SPECIAL:
            return
        self.mm.vmas.set_flags(lo, hi, newflags & ~oldflags & VM_LOCKED_MASK, oldflags & ~newflags & VM_LOCKED_MASK)
        if newflags & VM_LOCKED and not oldflags & VM_LOCKED:
            memory.mlock_range(self.mm, lo, hi)
        elif oldflags & VM_LOCKED and not newflags & VM_LOCKED:
            memory.munlock_range(self.mm, lo, hi)
        self._account_locked()

    # -- mlockall -------------------------------------------------------------------------
    def mlockall(self, flags: int) -> int:
        """mlockall(2): MCL_CURRENT locks every VMA now, MCL_FUTURE every later mapping."""
        flags = u64(flags)
        if not flags or flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) or flags == MCL_ONFAULT:
            return -errno.EINVAL
        self._apply_mlockall_flags(flags)
        if flags & MCL_CURRENT and not flags & MCL_ONFAULT:
            self._mm_populate(0, self.task_size, ignore_errors=True)
        return 0

    def munlockall(self) -> int:
        self._apply_mlockall_flags(0)
        return 0

    def _apply_mlockall_flags(self, flags: int) -> None:
        """mm/mlock.c apply_mlockall_flags(): mm->def_flags for MCL_FUTURE, every VMA for MCL_CURRENT."""
        onfault = VM_LOCKONFAULT if flags & MCL_ONFAULT else 0
        self.def_flags &= ~VM_LOCKED_MASK
        if flags & MCL_FUTURE:
            self.def_flags |= VM_LOCKED | onfault
            if not flags & MCL_CURRENT:
                return
        to_add = VM_LOCKED | onfault if flags & MCL_CURRENT else 0
        for vs, ve, vf in [(v.start, v.end, v.flags) for v in self.mm.vmas.vmas]:
            self._mlock_fixup(vs, ve, vf, (vf & ~VM_LOCKED_MASK) | to_add)
