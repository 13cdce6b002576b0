"""The arithmetic of gap_attribution (kernel_model/attribution.py): subset names and the
exact Shapley split."""

from fractions import Fraction
from itertools import product

import pytest

from kernel_model.attribution import (ALL, FEATURES, NR_SUBSETS, metric_name, saved_shares, shapley, subset_mask,
                                      subset_name)


def test_subset_names_round_trip():
    assert NR_SUBSETS == 32 and ALL == 31
    assert metric_name(0) == "ablate_walk_cycles_none"
    assert metric_name(ALL) == "ablate_walk_cycles_reach__contpte__levels__walk_cache__pt_lines"
    assert subset_name(1 << FEATURES.index("walk_cache") | 1) == "reach__walk_cache"
    assert [subset_mask(subset_name(m)) for m in range(NR_SUBSETS)] == list(range(NR_SUBSETS))
    with pytest.raises(ValueError, match="'tlb' is not a feature"):
        subset_mask("reach__tlb")


def test_additive_values_give_each_feature_its_constant():
    const = [7, -3, 11, 0, 5]
    v = {m: 100 + sum(c for i, c in enumerate(const) if m >> i & 1) for m in range(NR_SUBSETS)}
    assert shapley(v) == [Fraction(c) for c in const]


def test_a_pure_interaction_is_split_evenly():
    # v(S) = 9 when features 0 and 3 are both in S, else 0: each gets 9/2, the rest 0
    v = {m: 9 if (m & 1 and m & 8) else 0 for m in range(NR_SUBSETS)}
    assert shapley(v) == [Fraction(9, 2), 0, 0, Fraction(9, 2), 0]


def test_three_way_interaction_is_split_in_thirds_exactly():
    v = {m: 10 if (m & 0b10110) == 0b10110 else 0 for m in range(NR_SUBSETS)}
    assert shapley(v) == [0, Fraction(10, 3), Fraction(10, 3), 0, Fraction(10, 3)]
    assert sum(shapley(v)) == 10


def test_efficiency_is_exact_on_arbitrary_values():
    # 32 unrelated values: the shares still sum to v(all) - v(none) exactly, not to rounding
    v = {m: (m * 7919) % 1013 - 500 + m * m for m in range(NR_SUBSETS)}
    phi = shapley(v)
    assert sum(phi) == v[ALL] - v[0]
    assert any(p.denominator > 1 for p in phi)  # a real fraction: float rounding would show
    gap, shares = saved_shares(v)
    assert gap == v[0] - v[ALL] and shares == [-p for p in phi] and sum(shares) == gap


def test_two_players_by_hand():
    # n = 2: phi_0 = 1/2 (v(1) - v(0)) + 1/2 (v(3) - v(2))
    v = {0: 0, 1: 10, 2: 4, 3: 20}
    assert shapley(v, n=2) == [Fraction(13), Fraction(7)]
    for a, b in product(range(3), repeat=2):  # symmetry: swapping the players swaps the shares
        w = {0: 0, 1: a, 2: b, 3: a + b + 1}
        assert shapley(w, n=2)[::-1] == shapley({0: 0, 1: b, 2: a, 3: a + b + 1}, n=2)


def test_a_missing_subset_is_refused():
    with pytest.raises(ValueError, match=r"no value for subsets \[5\]"):
        shapley({m: 0 for m in range(NR_SUBSETS) if m != 5})
