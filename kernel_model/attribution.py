"""The arithmetic of gap_attribution: the five causes, the names of their ablation
subsets, and the Shapley split of a gap (the model runs are kernel_model/ablation.py;
the report, sweep/report, reads only this module).

A subset is a bit mask over FEATURES (bit i: FEATURES[i] taken from system B, the kernel
compared with); its walk cycles are the metric ablate_walk_cycles_<subset name>.
"""

from __future__ import annotations

from fractions import Fraction
from math import factorial

FEATURES = ("reach", "contpte", "levels", "walk_cache", "pt_lines")
NR_SUBSETS = 1 << len(FEATURES)
ALL = NR_SUBSETS - 1
METRIC_PREFIX = "ablate_walk_cycles_"


def subset_name(mask: int) -> str:
    """The features of subset ``mask`` joined by "__" (feature names hold single
    underscores), or "none"."""
    names = [f for i, f in enumerate(FEATURES) if mask >> i & 1]
    return "__".join(names) if names else "none"


def metric_name(mask: int) -> str:
    return METRIC_PREFIX + subset_name(mask)


def subset_mask(name: str) -> int:
    """The inverse of subset_name()."""
    if name == "none":
        return 0
    mask = 0
    for f in name.split("__"):
        if f not in FEATURES:
            raise ValueError(f"ablation subset {name!r}: {f!r} is not a feature; features: {', '.join(FEATURES)}")
        mask |= 1 << FEATURES.index(f)
    return mask


def shapley(value: dict, n: int = len(FEATURES)) -> list:
    """The Shapley value of each of n players, as Fractions, from value[mask] for all 2**n
    subsets (bit i: player i is in). They sum to value[all] - value[0] exactly (the
    efficiency property), whatever the interactions:

        phi_i = sum over S not containing i of |S|! (n - |S| - 1)! / n! * (v(S + i) - v(S))
    """
    missing = [m for m in range(1 << n) if m not in value]
    if missing:
        raise ValueError(f"shapley: no value for subsets {missing[:4]}{'...' if len(missing) > 4 else ''}")
    weight = [Fraction(factorial(k) * factorial(n - k - 1), factorial(n)) for k in range(n)]
    phi = []
    for i in range(n):
        bit = 1 << i
        phi.append(sum((weight[bin(m).count("1")] * (Fraction(value[m | bit]) - Fraction(value[m]))
                        for m in range(1 << n) if not m & bit), Fraction(0)))
    return phi


def saved_shares(value: dict) -> tuple:
    """(gap, shares): the walk cycles B saves over A, value[0] - value[ALL], and each
    feature's Shapley share of it (Fractions, in FEATURES order, summing to the gap)."""
    shares = [-p for p in shapley(value)]
    gap = Fraction(value[0]) - Fraction(value[ALL])
    if sum(shares) != gap:  # efficiency: exact by construction; a failure is a bug here
        raise AssertionError(f"Shapley shares sum to {sum(shares)}, not the gap {gap}")
    return gap, shares
