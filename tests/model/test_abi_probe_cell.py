"""abi_compat's abi_probe cells: pagemap read in process pages with kernel-page PFNs, and
a userfaultfd fill whose every UFFDIO_COPY installs page_size / PAGE_SIZE kernel pages."""

import pytest

from kernel_model.simulate import simulate

M = 1 << 20


@pytest.mark.parametrize("kernel,page,kps,pps", [("4k", "kernel", 4096, 4096), ("4k", "16K", 4096, 16384),
                                                 ("4k", "64K", 4096, 65536), ("16k", "64K", 16384, 65536)])
def test_abi_probe_counts(cell_config, kernel, page, kps, pps):
    m = simulate(cell_config(f"kernel={kernel}", f"process.page_size={page}", "workload=abi_probe"))
    assert (m["pagemap_entries"], m["pagemap_present"]) == (4 * M // pps, 4 * M // pps)
    assert m["pagemap_pfn_unit_mismatch"] == (0 if pps == kps else 4 * M // pps)
    assert (m["uffd_copies"], m["uffd_kernel_pages"]) == (4 * M // pps, 4 * M // kps)
