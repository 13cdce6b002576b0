"""elf_tree: every ELF file under a directory, checked at a process page size.

The /usr/bin test recomputes the verdicts from `readelf -hldW` text with an independent
implementation of the same rules (binutils' parser, not pyelftools) and compares.
"""

import os
import shutil
import subprocess
from collections import Counter

import pytest

from kernel_model.elf_tree import iter_elf_files, scan_elf_tree
from test_elf import GOOD, INCONGRUENT, OVERLAPPING, build_elf
from test_pagemap import _pgtable  # noqa: F401  (real pgtable, or a double until it exists)

K = 1024
READELF = shutil.which("readelf")


def test_tree_counts_rules_in_sorted_order_without_following_symlinks(tmp_path):
    # tmp/
    #   a_good        ok
    #   b/overlap     overlap at 16K
    #   b/c/incongr   congruence at 16K
    #   link -> b     symlinked directory: not followed
    #   lnk_good      symlink to a_good: not a regular file
    #   script.sh     no ELF magic: not counted
    (tmp_path / "b" / "c").mkdir(parents=True)
    build_elf(tmp_path / "a_good", GOOD, interp=True)
    build_elf(tmp_path / "b" / "overlap", OVERLAPPING, interp=True)
    build_elf(tmp_path / "b" / "c" / "incongr", INCONGRUENT, interp=True)
    (tmp_path / "script.sh").write_text("#!/bin/sh\n")
    os.symlink(tmp_path / "b", tmp_path / "link")
    os.symlink(tmp_path / "a_good", tmp_path / "lnk_good")
    result = scan_elf_tree(str(tmp_path), 16 * K)
    assert result == {
        "elf_files": 3, "elf_ok": 1, "elf_failed": 2,
        "reasons": Counter({"overlap": 1, "congruence": 1}),
        "failures": [(str(tmp_path / "b" / "c" / "incongr"), "congruence"),
                     (str(tmp_path / "b" / "overlap"), "overlap")],
    }
    assert scan_elf_tree(str(tmp_path), 4 * K)["elf_ok"] == 3
    assert list(iter_elf_files(str(tmp_path), max_files=2)) == [str(tmp_path / "a_good"),
                                                                str(tmp_path / "b" / "c" / "incongr")]


def test_bad_arguments_say_what_to_fix(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        scan_elf_tree(str(tmp_path / "missing"), 16 * K)
    with pytest.raises(ValueError, match="max_files"):
        scan_elf_tree(str(tmp_path), 16 * K, max_files=-1)


# -- the independent count ---------------------------------------------------------

def _readelf_verdicts(paths, page_size):
    """path -> failed? from `readelf -hldW`, re-implementing the loaders' rules."""
    out = subprocess.run([READELF, "-hldW", *paths], capture_output=True, text=True, errors="replace").stdout
    chunks = {}
    if len(paths) == 1:
        chunks[paths[0]] = out
    else:
        current = None
        for line in out.splitlines():
            if line.startswith("File: "):
                current = line[len("File: "):].strip()
                chunks[current] = []
            elif current is not None:
                chunks[current].append(line)
        chunks = {p: "\n".join(lines) for p, lines in chunks.items()}
    return {p: _fails(chunks.get(p, ""), page_size) for p in paths}


def _fails(text, ps):
    if "Program Headers:" not in text:
        return True  # readelf could not read it: not loadable
    etype = next((ln.split(":", 1)[1].split()[0] for ln in text.splitlines() if ln.strip().startswith("Type:")), "")
    if etype not in ("EXEC", "DYN"):
        return True
    pie_label = "Position-Independent Executable" in text
    has_interp = any(ln.split()[:1] == ["INTERP"] for ln in text.splitlines())
    soname = "(SONAME)" in text
    by_kernel = etype == "EXEC" or pie_label or (has_interp and not soname)
    loads = []
    for ln in text.splitlines():
        tok = ln.split()
        if tok[:1] == ["LOAD"]:
            off, va, _pa, fs, ms = (int(t, 16) for t in tok[1:6])
            loads.append((off, va, fs, ms, "".join(tok[6:-1]), int(tok[-1], 16)))
    if not loads:
        return True
    for off, va, fs, ms, flags, align in loads:
        if not by_kernel and (align % ps or (va - off) & ((align - 1) % 2**64)):
            return True  # ld.so: p_align not page-aligned, or vaddr/offset not aligned to it
        if fs > ms or (fs and (va - off) % ps):
            return True  # kernel: filesz > memsz; offset relationship not congruent
    spans = [(va // ps * ps, -(-(va + ms) // ps) * ps, flags) for off, va, fs, ms, flags, align in loads]
    for j in range(len(spans)):
        for i in range(j):
            if spans[i][0] < spans[j][1] and spans[j][0] < spans[i][1] and spans[i][2] != spans[j][2]:
                return True  # two permissions in one process page
    return False


@pytest.mark.skipif(READELF is None, reason="binutils readelf is not installed")
def test_usr_bin_failures_at_16k_match_an_independent_readelf_count():
    if not os.path.isdir("/usr/bin"):
        pytest.skip("no /usr/bin on this machine")
    paths = list(iter_elf_files("/usr/bin"))
    if not paths:
        pytest.skip("no ELF files under /usr/bin")
    expected = {}
    for i in range(0, len(paths), 200):  # keep the command line short
        expected.update(_readelf_verdicts(paths[i:i + 200], 16 * K))
    result = scan_elf_tree("/usr/bin", 16 * K)
    mine = {p for p, _ in result["failures"]}
    theirs = {p for p, failed in expected.items() if failed}
    assert result["elf_files"] == len(paths)
    assert mine == theirs
    assert result["elf_failed"] == len(theirs)
    assert result["elf_ok"] + result["elf_failed"] == result["elf_files"]


def test_load_elf_phase_counts_each_verdict_and_exits_the_process(tmp_path):
    from kernel_model.elf_tree import load_elf_phase
    from kernel_model.system import System

    system = System(kernel_page_size="4K", memory_size="256M")
    good = build_elf(tmp_path / "good", GOOD, interp=True)
    bad = build_elf(tmp_path / "overlap", OVERLAPPING, interp=True)
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF")
    results = [load_elf_phase(system, "16K", p) for p in (good, bad, str(junk))]
    assert [(r.ok, r.rule) for r in results] == [(True, ""), (False, "overlap"), (False, "enoexec")]
    events = system.stats.events
    assert (events["elf_files"], events["elf_ok"], events["elf_failed"]) == (3, 1, 2)
    assert (events["elf_failed_overlap"], events["elf_failed_enoexec"]) == (1, 1)
    assert system.processes == {}
