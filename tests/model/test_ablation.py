"""gap_attribution's model runs (kernel_model/ablation.py): the mixing rules, and whole
cells whose end points must be the two kernels' own cells exactly."""

import numpy as np
import pytest

from kernel_model.ablation import TAG, Walks, mix, simulate_ablation, system_b
from kernel_model.attribution import ALL, FEATURES, METRIC_PREFIX, NR_SUBSETS, metric_name
from kernel_model.simulate import simulate

ABLATE = ("cell_fn=kernel_model.ablation:simulate_ablation",)


def bit(*features):
    return sum(1 << FEATURES.index(f) for f in features)


def walks_4k():
    """Two pages on a 4-level 4K table: page 0 base pages, page 1 in a 64K contpte run."""
    return Walks(present=np.array([True, True]), pfn=np.array([100, 101]), base_shift=np.array([12, 12]),
                 leaf_shift=np.array([12, 16]),
                 desc=np.array([[1000, 2000, 3000, 4000], [1000, 2000, 3000, 4008]], np.int64))


def walks_64k():
    """The same two 4K pages on a 3-level 64K table: one 64K page, no contpte."""
    return Walks(present=np.array([True, True]), pfn=np.array([7, 7]), base_shift=np.array([16, 16]),
                 leaf_shift=np.array([16, 16]),
                 desc=np.array([[50000, 60000, 70000], [50000, 60000, 70000]], np.int64))


def test_mix_end_points_are_each_system_unchanged():
    a, b = walks_4k(), walks_64k()
    f, keys, on_b = mix(a, b, 0)
    assert not on_b and f.pfn.tolist() == [100, 101] and f.base_shift.tolist() == [12, 12]
    assert f.leaf_shift.tolist() == [12, 16]
    assert f.desc_addr.tolist() == a.desc.tolist() and keys.tolist() == a.desc.tolist()
    f, keys, on_b = mix(a, b, ALL)
    assert on_b and f.pfn.tolist() == [7, 7] and f.base_shift.tolist() == [16, 16] and f.leaf_shift.tolist() == [16, 16]
    assert f.desc_addr.tolist() == [[50000, 60000, 70000, -1]] * 2 and keys.tolist() == f.desc_addr.tolist()


def test_mix_reach_and_contpte():
    a, b = walks_4k(), walks_64k()
    f, _, _ = mix(a, b, bit("reach"))        # 64K entries; A's 64K run folds to no more than that
    assert f.base_shift.tolist() == [16, 16] and f.leaf_shift.tolist() == [16, 16]
    f, _, _ = mix(a, b, bit("contpte"))      # B folds nothing: A's run loses its fold
    assert f.base_shift.tolist() == [12, 12] and f.leaf_shift.tolist() == [12, 12]


def test_mix_levels_aligns_reads_deepest_first():
    a, b = walks_4k(), walks_64k()
    # B's three reads, lines and keys from A at the same depth (A's PUD, PMD, PTE)
    f, keys, on_b = mix(a, b, bit("levels"))
    assert not on_b
    assert f.desc_addr.tolist() == [[2000, 3000, 4000, -1], [2000, 3000, 4008, -1]]
    assert keys.tolist() == f.desc_addr.tolist()
    # A's four reads with B's lines: B has no read at A's top depth, so that line is A's
    # own descriptor tagged (it can match no real line); keys stay A's
    f, keys, on_b = mix(a, b, bit("pt_lines"))
    assert on_b and f.pfn.tolist() == [7, 7]
    assert f.desc_addr.tolist() == [[1000 | int(TAG), 50000, 60000, 70000]] * 2
    assert keys.tolist() == a.desc.tolist()
    # A's reads, B's walk-cache keys
    f, keys, _ = mix(a, b, bit("walk_cache"))
    assert f.desc_addr.tolist() == a.desc.tolist()
    assert keys.tolist() == [[1000 | int(TAG), 50000, 60000, 70000]] * 2


def test_mix_refuses_different_present_pages():
    a, b = walks_4k(), walks_64k()
    b.present = np.array([True, False])
    with pytest.raises(ValueError, match="disagree on which pages are present"):
        mix(a, b, 1)


def _walk_cycles(out):
    return {int(k != METRIC_PREFIX + "none"): v for k, v in out.items() if k.startswith(METRIC_PREFIX)}


@pytest.mark.parametrize("overrides,against", [
    (("workload.working_set=32M", "workload.accesses=60000"), "64K"),
    (("workload=zipf", "workload.working_set=32M", "workload.accesses=60000", "folio=mthp",
      "folio.mthp_sizes=[64K,2M]"), "64K"),
    (("kernel=16k", "workload.working_set=32M", "workload.accesses=60000"), "4K"),
    (("workload=random", "workload.processes=2", "workload.working_set=16M", "workload.accesses=40000"), "16K"),
])
def test_cell_end_points_are_the_two_kernels_cells(cell_config, overrides, against):
    """No feature from B: the cell's own metrics and walk cycles are A's simulate(); all
    five: B's simulate() walk cycles. (The cell checks every TLB counter itself too.)"""
    cfg = cell_config(*ABLATE, *overrides, f"ablation.against={against}")
    out = simulate_ablation(cfg)
    own_a = simulate(cell_config(*overrides))
    own_b = simulate(system_b(cfg))
    assert {k: v for k, v in out.items() if not k.startswith(METRIC_PREFIX)} == own_a
    assert sorted(k for k in out if k.startswith(METRIC_PREFIX)) == sorted(metric_name(m) for m in range(NR_SUBSETS))
    assert out[metric_name(0)] == own_a["walk_cycles"]
    assert out[metric_name(ALL)] == own_b["walk_cycles"]
    assert own_a["walk_cycles"] != own_b["walk_cycles"]


def test_trace_cell_and_contpte_share(cell_config, trace_path):
    """A real trace, with mTHP folios on both kernels so contpte folds runs on both."""
    ov = ("workload=trace", f"workload.path={trace_path}", "folio=mthp", "folio.mthp_sizes=[64K,2M]")
    out = simulate_ablation(cell_config(*ABLATE, *ov, "ablation.against=64K"))
    own_a = simulate(cell_config(*ov))
    assert out[metric_name(0)] == own_a["walk_cycles"]
    assert out["anon_folios_order_4"] == own_a["anon_folios_order_4"] > 0  # 64K folios on the 4K kernel


def test_bad_ablation_configs_are_refused_before_work(cell_config):
    with pytest.raises(ValueError, match="process.page_size: '64K'; an ablation cell compares"):
        simulate_ablation(cell_config(*ABLATE, "process=64k", "ablation.against=64K"))
    with pytest.raises(ValueError, match="ablation.against: not set"):
        simulate_ablation(cell_config(*ABLATE))
    with pytest.raises(ValueError, match="runs with cell_fn=kernel_model.ablation:simulate_ablation"):
        simulate(cell_config("ablation.against=64K"))
