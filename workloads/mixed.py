"""workload.kind=mixed: a small system of processes with anonymous memory and files.

A "shell" process (the one the simulator starts) reads the small configuration files
of the file set and creates the large files (the shared libraries). Then `processes`
workers run, each forked from the previous process and exec'd (Fork, Exec(None)): the
earlier processes stay alive, as a pipeline's do, so their memory stays counted. Each
worker maps every library private read+exec and touches its seeded sample of pages
(mmap_fraction), maps its own anonymous working set (region "anon") and makes
`accesses` accesses of the configured pattern there. With mlock_fraction or
pin_fraction > 0 the workers are forked from a holder (workloads/files.py:
holder_phases) that locks or pins part of every library first.

Randomness: one Generator(PCG64(seed)) drawn in phase order: the small-file sizes,
then per worker its library samples and its access stream.
"""

from __future__ import annotations

import numpy as np

from kernel_model.mm_types import PROT_EXEC, PROT_READ, PROT_WRITE
from workloads.files import FileSetWorkload, file_touch_phases, holder_phases, touched_pages
from workloads.phases import MAP_ANONYMOUS, MAP_PRIVATE, Exec, Fork, Map, MmapFile
from workloads.synthetic import AccessStream


class MixedWorkload(FileSetWorkload):
    def phases(self):
        cfg = self.cfg
        rng = np.random.Generator(np.random.PCG64(self.seed))
        libs = yield from self.setup_phases(rng)
        yield from holder_phases(cfg, libs)
        stream = AccessStream.from_config(cfg)
        for _ in range(cfg.processes):
            yield Fork()
            yield Exec(None)
            for j, path in enumerate(libs):
                region = f"lib{j}"
                yield MmapFile(region, path, PROT_READ | PROT_EXEC, shared=False)
                yield from file_touch_phases(region, touched_pages(rng, cfg.large_file_size, cfg.mmap_fraction))
            yield Map("anon", cfg.working_set, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
            yield from stream.access_phases("anon", rng)
