"""Seeded synthetic anonymous workloads: sequential, uniform, zipf, strided.

One private anonymous mapping of `working_set` bytes (region "anon"), then `accesses`
loads and stores in Access phases of at most ACCESS_CHUNK each. Every offset is an
8-byte-aligned word inside the region. A store is drawn with probability write_ratio.

The patterns, for access number i (0-based over the whole stream):
  sequential  the i-th word, wrapping:             (i * 8) mod working_set
  strided     every stride bytes, wrapping:        (i * stride) mod working_set
  uniform     a word drawn uniformly from the working set
  zipf        a 4K page of rank k drawn with P(k) proportional to 1 / k**zipf_alpha
              (k = 1..pages, bounded Zipf; alpha 0 is uniform), ranks scattered over
              the working set by a seeded permutation; the word inside the page uniform

Randomness: one numpy Generator(PCG64(seed)); zipf draws its permutation first, then
each chunk draws its offsets and then its store flags, so the stream depends only on
(config, seed).
"""

from __future__ import annotations

from math import gcd

import numpy as np

from workloads.base import Workload
from workloads.config import WORKLOAD_PAGE
from workloads.phases import ACCESS_CHUNK, MAP_ANONYMOUS, MAP_PRIVATE, WORD, Access, Map
from kernel_model.mm_types import PROT_READ, PROT_WRITE

_WORDS_PER_PAGE = WORKLOAD_PAGE // WORD
_INT64_MAX = (1 << 63) - 1


def strided_offsets(first: int, n: int, stride: int, working_set: int) -> np.ndarray:
    """(i * stride) mod working_set for i in [first, first + n), exactly, in int64.

    With g = gcd(stride, working_set), stride = g*t and working_set = g*period, so
    i*stride mod working_set = g * ((i mod period) * t mod period): the products stay
    below period * t, which is checked to fit in int64.
    """
    if stride <= 0 or working_set <= 0:
        raise ValueError(f"strided_offsets: stride and working_set must be positive, got {stride}, {working_set}")
    g = gcd(stride, working_set)
    period, t = working_set // g, (stride // g) % (working_set // g)
    if (period - 1) * t > _INT64_MAX:
        raise ValueError(
            f"workload.stride {stride} over working_set {working_set}: the pattern's period "
            f"is too long to compute exactly in 64 bits; choose a stride sharing more factors of two"
        )
    i = np.arange(first, first + n, dtype=np.int64) % period
    return g * ((i * t) % period)


def zipf_cdf(nr_pages: int, alpha: float) -> np.ndarray:
    """The CDF of the bounded Zipf law over ranks 1..nr_pages, exponent alpha."""
    weights = np.arange(1, nr_pages + 1, dtype=np.float64) ** -alpha
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def zipf_pages(rng: np.random.Generator, n: int, cdf: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """n page numbers: ranks drawn by inverse CDF, mapped through the scatter permutation."""
    rank = np.searchsorted(cdf, rng.random(n), side="right")
    np.minimum(rank, len(cdf) - 1, out=rank)  # cdf[-1] may round just below 1.0
    return perm[rank]


class AccessStream:
    """The access part of a synthetic workload: chunks of (offsets, is_write) in one region.

    Shared by SyntheticWorkload and the mixed workload's processes.
    """

    def __init__(self, *, pattern, working_set, accesses, write_ratio, stride, zipf_alpha):
        self.pattern = pattern
        self.working_set = working_set
        self.accesses = accesses
        self.write_ratio = write_ratio
        self.stride = stride
        self.zipf_alpha = zipf_alpha

    @classmethod
    def from_config(cls, cfg):
        return cls(
            pattern=cfg.pattern, working_set=cfg.working_set, accesses=cfg.accesses,
            write_ratio=cfg.write_ratio, stride=cfg.stride, zipf_alpha=cfg.zipf_alpha,
        )

    def access_phases(self, region: str, rng: np.random.Generator, chunk: int = ACCESS_CHUNK):
        nr_pages = self.working_set // WORKLOAD_PAGE
        if self.pattern == "zipf":
            perm = rng.permutation(nr_pages).astype(np.int64)
            cdf = zipf_cdf(nr_pages, self.zipf_alpha)
        for first in range(0, self.accesses, chunk):
            n = min(chunk, self.accesses - first)
            if self.pattern == "sequential":
                offsets = strided_offsets(first, n, WORD, self.working_set)
            elif self.pattern == "strided":
                offsets = strided_offsets(first, n, self.stride, self.working_set)
            elif self.pattern == "uniform":
                offsets = rng.integers(0, self.working_set // WORD, n, dtype=np.int64) * WORD
            elif self.pattern == "zipf":
                pages = zipf_pages(rng, n, cdf, perm)
                offsets = pages * WORKLOAD_PAGE + rng.integers(0, _WORDS_PER_PAGE, n, dtype=np.int64) * WORD
            else:
                raise ValueError(f"workload.pattern: unknown pattern {self.pattern!r}")
            is_write = rng.random(n) < self.write_ratio
            yield Access(region, offsets, is_write)


class SyntheticWorkload(Workload):
    REGION = "anon"

    def phases(self):
        rng = np.random.Generator(np.random.PCG64(self.seed))
        yield Map(self.REGION, self.cfg.working_set, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        yield from AccessStream.from_config(self.cfg).access_phases(self.REGION, rng)
