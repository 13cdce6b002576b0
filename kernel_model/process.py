"""A process: pid, mm, personality page size; execve, fork, exit.

Counterparts: fs/exec.c (do_execve(): a new mm replaces the old one, exec_mmap(),
the personality survives exec), kernel/fork.c (copy_process(), dup_mm(): the child
inherits the parent's page size, its VMAs and COW-shared anonymous memory),
kernel/exit.c (do_exit() -> exit_mm() -> mmput() -> exit_mmap()).

The process page size (the thread, "Pagesize selection"): chosen at execve through the
personality (a setarch-like wrapper), fixed until the next execve, inherited by fork,
and never below the kernel page size (System.process_page_size() refuses that).
"""

from __future__ import annotations

import errno
import os
import weakref

from . import fork, memory
from .abi import AT_PAGESZ, Syscalls
from .binfmt_elf import load_elf_binary
from .pagemap import PagemapOps
from .userfaultfd import UserfaultfdOps


class Process(Syscalls, UserfaultfdOps, PagemapOps):
    """One task with its own mm. `page_size` is the process page size in bytes;
    `personality_page_size` the value an execve without an explicit size inherits."""

    def __init__(self, system, pid: int, page_size: int):
        self.system = system
        self.pid = pid
        self.page_size = page_size
        self.personality_page_size = page_size
        self.mm = None
        self.fdtable: dict = {}
        self.def_flags = 0  # mm->def_flags (VM_LOCKED after mlockall(MCL_FUTURE))
        self.lazyfree = weakref.WeakSet()  # folios marked by MADV_FREE (see abi_madvise)
        self.auxv: dict[int, int] = {}
        self.exited = False
        self.elf = None  # the binfmt_elf.ElfLoadResult of the last exec with a path

    def __repr__(self) -> str:
        return f"Process(pid={self.pid}, page_size={self.page_size:#x})"

    # -- execve ---------------------------------------------------------------------
    @classmethod
    def spawn(cls, system, page_size="kernel", path: str | None = None) -> "Process":
        """A new process execve'd with personality page size `page_size` (raises ValueError
        below the kernel's page size) and, when `path` is given, that ELF file loaded
        (OSError with the loader's errno when one of its rules fails)."""
        size = system.process_page_size(page_size)
        proc = cls(system, system.alloc_pid(), size)
        system.processes[proc.pid] = proc
        try:
            proc._exec_mm(size, path)
        except BaseException:
            proc.exit()
            raise
        return proc

    def execve(self, page_size=None, path: str | None = None) -> "Process":
        """Replace the mm (fs/exec.c exec_mmap()), keeping the pid. page_size None keeps the
        personality's page size (the personality survives exec); a new value becomes the
        personality. fds stay open (no O_CLOEXEC modelled); userfaultfd contexts of the
        old mm are dead with it."""
        self._check_alive("execve")
        size = self.personality_page_size if page_size is None else self.system.process_page_size(page_size)
        self._exec_mm(size, path)
        return self

    def _exec_mm(self, size: int, path: str | None) -> None:
        old = self.mm
        self.mm = memory.mm_alloc(self.system, size)
        self.page_size = self.personality_page_size = size
        self.def_flags = 0
        self.lazyfree = weakref.WeakSet()
        self.auxv = {AT_PAGESZ: size}
        if old is not None:
            memory.exit_mmap(old)
        if path is not None:
            result = load_elf_binary(self, path)
            self.elf = result
            if not result.ok:
                code = getattr(result, "errno", None) or errno.ENOEXEC
                raise OSError(code, f"execve({path!r}) at page size {size // 1024}K: {result.reason}")

    # -- fork / exit -------------------------------------------------------------------
    def fork(self) -> "Process":
        """kernel/fork.c: a child with the parent's page size, personality and fds, and a
        copy of the mm (dup_mm: VMAs, COW-shared anonymous folios). mlock and MCL_FUTURE are
        not inherited (mm_init() keeps only VM_INIT_DEF_MASK of def_flags)."""
        self._check_alive("fork")
        system = self.system
        child = Process(system, system.alloc_pid(), self.page_size)
        child.personality_page_size = self.personality_page_size
        child.fdtable = dict(self.fdtable)
        child.auxv = dict(self.auxv)
        child.mm = memory.mm_alloc(system, self.page_size)
        system.processes[child.pid] = child
        fork.dup_mm(self.mm, child.mm)
        child._account_locked()
        return child

    def exit(self) -> None:
        """do_exit(): tear down the mm (exit_mmap) and leave the process table."""
        if self.exited:
            return
        self.exited = True
        if self.mm is not None:
            memory.exit_mmap(self.mm)
        self.mm = None
        self.fdtable.clear()
        self.system.processes.pop(self.pid, None)

    def _check_alive(self, what: str) -> None:
        if self.exited:
            raise ValueError(f"{what}: process {self.pid} has exited")


__all__ = ["Process", "os"]
