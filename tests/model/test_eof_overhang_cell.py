"""eof_overhang cells (Kalesh's case, docs/design.md): 12K files mapped by a process and
read to the end of their last process page. On a 4K kernel a 64K process has 52K = 13 kernel pages of
overhang behind each EOF: sigbus raises SIGBUS on each of them; anon_fault pads them with
13 anonymous 4K pages; anon_vma covers them with one extra anonymous VMA (padded on fault)."""

import pytest

from kernel_model.simulate import simulate

FILES = 4
K = 1024


@pytest.mark.parametrize("page,policy,sigbus,padding", [
    ("kernel", "sigbus", 0, 0),
    ("16K", "sigbus", FILES * 1, 0),
    ("16K", "anon_fault", 0, FILES * 4 * K),
    ("64K", "sigbus", FILES * 13, 0),
    ("64K", "anon_fault", 0, FILES * 52 * K),
    ("64K", "anon_vma", 0, FILES * 52 * K),
])
def test_overhang_per_policy(cell_config, page, policy, sigbus, padding):
    m = simulate(cell_config("kernel=4k", "workload=eof_files", f"workload.nr_large_files={FILES}",
                             f"process.page_size={page}", f"abi.overhang={policy}"))
    assert (m["sigbus"], m["padding_bytes"]) == (sigbus, padding)
    overhang_pages = {"kernel": 0, "16K": 1, "64K": 13}[page]
    assert m["tail_touches"] == FILES * overhang_pages
