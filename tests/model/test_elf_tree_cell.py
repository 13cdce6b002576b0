"""abi_compat: a workload=elf_tree cell over /usr/bin reports the binaries that cannot load
at a 16K process page size; its counts equal an independent readelf -l count."""

import os
import shutil
import subprocess

import pytest

from kernel_model.simulate import simulate


def readelf_cannot_load(path: str, page_size: int) -> tuple[int, int]:
    """(ELF files, files with a PT_LOAD whose p_vaddr - p_offset is not a multiple of the
    page, or sharing a page with the previous PT_LOAD under other permissions, or - for a
    shared object - a p_align below the page): the rules of fs/binfmt_elf.c and glibc's
    dl-load.c, applied to `readelf -lhdW` text rather than to parsed structures."""
    files = failed = 0
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.islink(full) or not os.path.isfile(full):
            continue
        with open(full, "rb") as f:
            if f.read(4) != b"\x7fELF":
                continue
        files += 1
        out = subprocess.run(["readelf", "-lhdW", full], capture_output=True, text=True).stdout
        loads = [ln.split() for ln in out.splitlines() if ln.strip().startswith("LOAD ")]
        shared = ("DYN (Shared object file)" in out and "PIE" not in out.split("Flags:")[-1][:200]
                  and "Requesting program interpreter" not in out) or (
                  "DYN" in out and "(SONAME)" in out and "Requesting program interpreter" not in out)
        bad, prev = False, None
        for f in loads:
            off, vaddr, memsz, flags, align = int(f[1], 16), int(f[2], 16), int(f[5], 16), " ".join(f[6:-1]), int(f[-1], 16)
            if (vaddr - off) % page_size:
                bad = True
            if shared and align < page_size:
                bad = True
            if prev is not None and prev[0] // page_size == vaddr // page_size and prev[1] != flags:
                bad = True
            prev = ((vaddr + memsz - 1), flags)
        failed += bad
    return files, failed


@pytest.mark.skipif(shutil.which("readelf") is None or not os.path.isdir("/usr/bin"), reason="needs readelf and /usr/bin")
def test_elf_tree_cell_counts_match_readelf(cell_config):
    m = simulate(cell_config("workload=elf_tree", "workload.path=/usr/bin", "workload.max_files=null",
                                 "process.page_size=16K"))
    files, failed = readelf_cannot_load("/usr/bin", 16384)
    assert (m["elf_files"], m["elf_failed"]) == (files, failed)
    assert m["elf_ok"] == files - failed
