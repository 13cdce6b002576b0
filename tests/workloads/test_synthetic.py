import numpy as np
import pytest

from kernel_model.mm_types import PROT_READ, PROT_WRITE
from workloads import build
from workloads.phases import MAP_ANONYMOUS, MAP_PRIVATE, Access, Map
from workloads.synthetic import strided_offsets, zipf_cdf

ANON_RW = (PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)


def synth(seed=0, **kw):
    return list(build({"kind": "synthetic", **kw}, seed=seed).phases())


def test_sequential_wraps_over_words():
    # 8K working set = 1024 words; accesses 1020..1027 wrap to word 0.
    phases = synth(pattern="sequential", working_set="8K", accesses=1030, write_ratio=0.0)
    assert phases[0] == Map("anon", 8192, *ANON_RW)
    (acc,) = phases[1:]
    assert acc.region == "anon"
    assert acc.offsets[1020:1030].tolist() == [8160, 8168, 8176, 8184, 0, 8, 16, 24, 32, 40]
    assert acc.is_write.tolist() == [False] * 1030


def test_strided_wraps_and_all_writes():
    phases = synth(pattern="strided", working_set="16K", stride="4K", accesses=6, write_ratio=1.0)
    assert phases == [
        Map("anon", 16384, *ANON_RW),
        Access("anon", np.array([0, 4096, 8192, 12288, 0, 4096]), np.ones(6, bool)),
    ]


def test_strided_offsets_odd_stride_exact():
    # 24-byte stride over 64 bytes: gcd 8, period 8 -> 0,24,48,8,32,56,16,40,0
    assert strided_offsets(0, 9, 24, 64).tolist() == [0, 24, 48, 8, 32, 56, 16, 40, 0]
    # Exact for huge indices where the naive product would overflow int64.
    first = (1 << 62) // 4096
    got = strided_offsets(first, 3, 4096 * 3, 1 << 36).tolist()
    assert got == [(i * 4096 * 3) % (1 << 36) for i in range(first, first + 3)]


def test_uniform_exact_for_seed():
    rng = np.random.Generator(np.random.PCG64(7))
    words = rng.integers(0, 1024, 5, dtype=np.int64) * 8
    writes = rng.random(5) < 0.5
    (m, acc) = synth(seed=7, pattern="uniform", working_set="8K", accesses=5, write_ratio=0.5)
    assert acc == Access("anon", words, writes)


def test_zipf_alpha_zero_is_uniform_over_pages_and_skew_grows_with_alpha():
    def top_page_share(alpha):
        (m, acc) = synth(seed=3, pattern="zipf", working_set="4M", accesses=200_000, zipf_alpha=alpha)
        counts = np.bincount(acc.offsets // 4096, minlength=1024)
        return counts.max() / counts.sum()

    assert top_page_share(0.0) < 0.002  # 1/1024 plus noise
    # Bounded Zipf over 1024 ranks, alpha 1.2: P(rank 1) = 1 / sum(k**-1.2)
    expected = 1 / (np.arange(1, 1025) ** -1.2).sum()
    assert abs(top_page_share(1.2) - expected) < 0.01


def test_zipf_cdf_ends_at_one():
    cdf = zipf_cdf(4, 1.0)
    assert np.allclose(cdf, np.cumsum([1, 1 / 2, 1 / 3, 1 / 4]) / (25 / 12))
    assert cdf[-1] == 1.0


@pytest.mark.parametrize("pattern", ["sequential", "uniform", "zipf", "strided"])
def test_offsets_are_aligned_words_inside_region(pattern):
    (m, acc) = synth(seed=1, pattern=pattern, working_set="64K", accesses=50_000, stride="24")
    assert acc.offsets.min() >= 0 and acc.offsets.max() <= 65536 - 8
    assert (acc.offsets % 8 == 0).all()


def test_write_ratio_observed():
    (m, acc) = synth(seed=5, pattern="uniform", working_set="64K", accesses=100_000, write_ratio=0.25)
    assert abs(acc.is_write.mean() - 0.25) < 0.01


def test_chunks_bounded_and_total_exact():
    import workloads.synthetic as synthetic

    w = build({"pattern": "uniform", "working_set": "8K", "accesses": 10}, seed=2)
    stream = synthetic.AccessStream.from_config(w.cfg)
    rng = np.random.Generator(np.random.PCG64(2))
    sizes = [len(a) for a in stream.access_phases("anon", rng, chunk=4)]
    assert sizes == [4, 4, 2]


@pytest.mark.parametrize("pattern", ["sequential", "uniform", "zipf", "strided"])
def test_deterministic_same_seed_and_rerun(pattern):
    cfg = {"pattern": pattern, "working_set": "1M", "accesses": 1000}
    a = build(cfg, seed=11)
    assert list(a.phases()) == list(a.phases())
    assert list(a.phases()) == list(build(cfg, seed=11).phases())


def test_different_seed_differs():
    cfg = {"pattern": "zipf", "working_set": "1M", "accesses": 1000}
    assert list(build(cfg, seed=1).phases()) != list(build(cfg, seed=2).phases())


def test_zero_accesses_is_only_the_map():
    assert synth(pattern="uniform", working_set="4K", accesses=0) == [Map("anon", 4096, *ANON_RW)]
