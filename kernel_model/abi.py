"""The syscall ABI adapter: Linux syscalls in the process's page size.

The proposal's layer 1 (the thread, "1. ABI adapter"): "enforcing alignment requirements
for addresses passed to syscalls and ensuring that quantities passed as 'number of pages'
are interpreted relative to the process page size". Every method is named after its
syscall, takes its arguments and returns what the raw syscall returns: a non-negative
result, or minus an errno from Python's errno module. Alignment and rounding use
self.page_size; the MM code below (memory.py, vma.py, filemap.py) works in kernel pages.

The syscall families live in abi_mmap (mmap, munmap, brk, open, close), abi_mprotect
(mprotect, mlock, mlock2, munlock, mlockall, munlockall), abi_madvise, abi_mremap and
abi_mincore (mincore, msync, touch); the flag constants in abi_common, re-exported here.
"""

from __future__ import annotations

from .abi_common import *  # noqa: F401,F403  (PROT_*, MAP_*, MADV_*, MREMAP_*, MLOCK_*, MCL_*, MS_*, AT_PAGESZ)
from .abi_common import AT_PAGESZ
from .abi_common import __all__ as _UAPI
from .abi_madvise import MadviseOps
from .abi_mincore import MincoreOps
from .abi_mmap import MmapOps, OpenFile
from .abi_mprotect import MprotectOps
from .abi_mremap import MremapOps


class Syscalls(MmapOps, MprotectOps, MadviseOps, MremapOps, MincoreOps):
    """The syscalls of a process. Needs self.system, self.mm, self.page_size, self.fdtable,
    self.def_flags and self.lazyfree (process.Process provides them)."""

    def getpagesize(self) -> int:
        """getpagesize(): the process page size (the personality's), not PAGE_SIZE."""
        return self.page_size

    def getauxval(self, key: int) -> int:
        """getauxval(3): AT_PAGESZ is the process page size (fs/binfmt_elf.c create_elf_tables()
        puts ELF_EXEC_PAGESIZE there, which the proposal makes per process); 0 when absent."""
        return self.auxv.get(key, 0)


__all__ = ["Syscalls", "OpenFile", *_UAPI]
