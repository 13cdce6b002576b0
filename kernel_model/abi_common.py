"""The syscall ABI's constants and the adapter's unit helpers.

Values are Linux's for arm64: include/uapi/asm-generic/mman-common.h, mman.h,
arch/arm64/include/uapi/asm/mman.h, include/uapi/linux/mman.h, include/uapi/linux/auxvec.h.
kernel_model.abi re-exports every name here.

The adapter's rule (the thread, "1. ABI adapter"): every alignment check and rounding a
syscall does with PAGE_SIZE is done with the process page size, and "number of pages"
quantities are in process pages; the MM code below works in kernel pages.
"""

from __future__ import annotations

from .mm_types import (PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE, VM_ACCESS_FLAGS, VM_MAYEXEC, VM_MAYREAD,
                       VM_MAYSHARE, VM_MAYWRITE, VM_SHARED)

__all__ = ["PROT_NONE", "PROT_READ", "PROT_WRITE", "PROT_EXEC"]  # extended below

# include/uapi/asm-generic/mman-common.h
PROT_SEM = 0x8
PROT_GROWSDOWN = 0x01000000
PROT_GROWSUP = 0x02000000
# arch/arm64/include/uapi/asm/mman.h
PROT_BTI = 0x10
PROT_MTE = 0x20

MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_SHARED_VALIDATE = 0x03
MAP_DROPPABLE = 0x08
MAP_TYPE = 0x0F
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_POPULATE = 0x008000
MAP_NONBLOCK = 0x010000
MAP_STACK = 0x020000
MAP_HUGETLB = 0x040000
MAP_SYNC = 0x080000
MAP_FIXED_NOREPLACE = 0x100000
MAP_UNINITIALIZED = 0x4000000
# include/uapi/asm-generic/mman.h
MAP_GROWSDOWN = 0x0100
MAP_DENYWRITE = 0x0800
MAP_EXECUTABLE = 0x1000
MAP_LOCKED = 0x2000
MAP_NORESERVE = 0x4000
# include/linux/mman.h: the flags MAP_SHARED keeps for compatibility (LEGACY_MAP_MASK)
LEGACY_MAP_MASK = (MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_DENYWRITE | MAP_EXECUTABLE
                   | MAP_UNINITIALIZED | MAP_GROWSDOWN | MAP_LOCKED | MAP_NORESERVE | MAP_POPULATE
                   | MAP_NONBLOCK | MAP_STACK | MAP_HUGETLB)

MLOCK_ONFAULT = 0x01
MCL_CURRENT = 1
MCL_FUTURE = 2
MCL_ONFAULT = 4

MS_ASYNC = 1
MS_INVALIDATE = 2
MS_SYNC = 4

MADV_NORMAL = 0
MADV_RANDOM = 1
MADV_SEQUENTIAL = 2
MADV_WILLNEED = 3
MADV_DONTNEED = 4
MADV_FREE = 8
MADV_REMOVE = 9
MADV_DONTFORK = 10
MADV_DOFORK = 11
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MADV_DONTDUMP = 16
MADV_DODUMP = 17
MADV_WIPEONFORK = 18
MADV_KEEPONFORK = 19
MADV_COLD = 20
MADV_PAGEOUT = 21
MADV_POPULATE_READ = 22
MADV_POPULATE_WRITE = 23

# include/uapi/linux/mman.h
MREMAP_MAYMOVE = 1
MREMAP_FIXED = 2
MREMAP_DONTUNMAP = 4

# include/uapi/linux/auxvec.h
AT_PAGESZ = 6

# include/linux/mm.h vm_flags used by madvise that mm_types does not name
VM_SEQ_READ = 0x00008000
VM_RAND_READ = 0x00010000
VM_DONTDUMP = 0x04000000
VM_WIPEONFORK = 0x02000000

# open(2) access modes (include/uapi/asm-generic/fcntl.h)
O_RDONLY = 0o0
O_WRONLY = 0o1
O_RDWR = 0o2
O_ACCMODE = 0o3

U64 = (1 << 64) - 1  # unsigned long: syscall arguments wrap as the kernel's do

__all__ += [n for n in list(globals()) if n.isupper() and not n.startswith("_")]

VM_MAY_ALL = VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC


def u64(value: int) -> int:
    """An argument as the kernel sees it: an unsigned 64-bit value (-1 is 2**64 - 1)."""
    if not isinstance(value, int):
        raise TypeError(f"syscall argument must be an int, got {type(value).__name__} {value!r}")
    return value & U64


def page_align(length: int, page_size: int) -> int:
    """PAGE_ALIGN() in the process page size, wrapping at 2**64 as unsigned long does."""
    return (length + page_size - 1) & ~(page_size - 1) & U64


def offset_in_page(addr: int, page_size: int) -> int:
    return addr & (page_size - 1)


def calc_vm_prot_bits(prot: int) -> int:
    """include/linux/mman.h calc_vm_prot_bits() for READ/WRITE/EXEC."""
    return prot & (PROT_READ | PROT_WRITE | PROT_EXEC)


def prot_allowed(vm_flags: int) -> bool:
    """mm/mprotect.c: (newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS must be 0:
    every VM_READ/WRITE/EXEC needs its VM_MAY* bit."""
    return not (vm_flags & ~(vm_flags >> 4)) & VM_ACCESS_FLAGS


__all__ += ["u64", "page_align", "offset_in_page", "calc_vm_prot_bits", "prot_allowed",
            "VM_SHARED", "VM_MAYSHARE", "VM_MAY_ALL"]
