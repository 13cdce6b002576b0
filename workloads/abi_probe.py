"""workload.kind=abi_probe: the ABI interfaces the thread names as rough edges, driven once.

The current process maps `working_set` of anonymous memory ("data"), writes one word in
every 4K page (so every page is present whatever the process page size), reads its own
pagemap over it (ReadPagemap), then maps a second `working_set` ("uffd") and fills it
through userfaultfd, one process page per UFFDIO_COPY (UffdFill). The simulator counts
the pagemap entries and their PFN-unit mismatch, and the copies and kernel pages installed.
"""

from __future__ import annotations

import numpy as np

from kernel_model.mm_types import PROT_READ, PROT_WRITE
from workloads.base import Workload
from workloads.config import WORKLOAD_PAGE
from workloads.phases import MAP_ANONYMOUS, MAP_PRIVATE, Access, Map, ReadPagemap, UffdFill


class AbiProbeWorkload(Workload):
    def phases(self):
        size = self.cfg.working_set
        if size < WORKLOAD_PAGE:
            raise ValueError(f"workload.working_set: abi_probe needs at least {WORKLOAD_PAGE} bytes, got {size}")
        yield Map("data", size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        offsets = np.arange(0, size - size % WORKLOAD_PAGE, WORKLOAD_PAGE, dtype=np.int64)
        yield Access("data", offsets, np.ones(offsets.size, bool))
        yield ReadPagemap("data")
        yield Map("uffd", size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        yield UffdFill("uffd")
