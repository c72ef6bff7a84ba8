"""Candidate centres: APoT approximation, term counts, candidate sets, the zero threshold."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_centres import reference_apot, reference_candidates

import wfn_core.centres as centres
from wfn_core._validation import check_zero_threshold
from wfn_core.centres import (
    _SQRT_HALF,
    ZERO_THRESHOLD,
    apot_approx,
    apot_terms,
    candidate_centres,
)

FAST = settings(max_examples=150, deadline=None)


# ------------------------------------------------------------------ the zero threshold
@pytest.mark.parametrize("z", [2.0**-7, 1.0, 2.0**-20, 8.0])
def test_validate_zero_threshold_accepts_powers_of_two(z):
    assert check_zero_threshold(z) == z


@pytest.mark.parametrize("z", [0.0, -(2.0**-7), 0.01, 3.0, 0.75, math.nan, math.inf, "abc", None])
def test_validate_zero_threshold_rejects_the_rest(z):
    with pytest.raises(ValueError, match=r"zero_threshold=.* is not allowed: it must be a positive power of two"):
        check_zero_threshold(z)


def test_default_zero_threshold():
    assert ZERO_THRESHOLD == 2.0**-7


def test_sqrt_half_constant_is_just_above_one_over_sqrt2():
    # f >= _SQRT_HALF must mean f > 1/sqrt(2) exactly for every double f.
    assert Fraction(_SQRT_HALF) ** 2 > Fraction(1, 2)
    below = math.nextafter(_SQRT_HALF, 0.0)
    assert Fraction(below) ** 2 < Fraction(1, 2)


# ------------------------------------------------------------------ APoT approximation
def test_apot_hand_examples():
    # 0.4375 = 0.5 - 0.0625: order 0 gives the nearest power of two, order 1 adds -2^-4.
    assert apot_approx(torch.tensor([0.4375]), 0, 0.001).item() == 0.5
    assert apot_approx(torch.tensor([0.4375]), 1, 0.001).item() == 0.5 - 0.0625
    # 0.75: log2 0.75 = -0.415 rounds to 0, so 1; then 1 - 0.25.
    assert apot_approx(torch.tensor([0.75]), 0, 0.001).item() == 1.0
    assert apot_approx(torch.tensor([0.75]), 1, 0.001).item() == 0.75
    # 0.3: 0.25, residual 0.05 -> log2 = -4.32 -> 2^-4 = 0.0625, so 0.3125.
    assert apot_approx(torch.tensor([0.3]), 1, 0.001).item() == 0.3125
    # Refinement stops once |r| < d|g|: 0.26 -> 0.25 (|0.01| < 0.1 * 0.26).
    assert apot_approx(torch.tensor([0.26]), 3, 0.1).item() == 0.25
    # Sign is symmetric and zero stays zero.
    out = apot_approx(torch.tensor([-0.4375, 0.0, 0.4375]), 1, 0.001)
    assert out.tolist() == [-0.4375, 0.0, 0.4375]


def test_apot_floor_exponent():
    # e_min = log2(γ0) - k - 1: with γ0 = 2^-7, order 0 never goes below 2^-8.
    assert apot_approx(torch.tensor([1e-6]), 0, 0.01).item() == 2.0**-8
    assert apot_approx(torch.tensor([1e-6]), 0, 0.01, zero_threshold=2.0**-10).item() == 2.0**-11


def test_apot_has_at_most_k_plus_one_terms():
    g = torch.linspace(0.001, 3.0, 2000, dtype=torch.float64)
    for k in range(5):
        terms = apot_terms(apot_approx(g, k, 0.0075))
        assert int(terms.max()) <= k + 1


@FAST
@given(
    st.floats(min_value=-100, max_value=100, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=6),
    st.floats(min_value=1e-4, max_value=0.9999),
)
def test_apot_matches_the_reference(value, order, delta):
    fast = apot_approx(torch.tensor([value], dtype=torch.float64), order, delta).item()
    assert fast == reference_apot(value, order, delta, ZERO_THRESHOLD)


def test_apot_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"order=-1 is not allowed: it must be an integer >= 0"):
        apot_approx(torch.tensor([0.5]), -1, 0.01)
    with pytest.raises(ValueError, match=r"delta=0.0 is not allowed: it must be a number > 0"):
        apot_approx(torch.tensor([0.5]), 1, 0.0)
    with pytest.raises(ValueError, match=r"values holds nan at index 1: it must hold finite values only"):
        apot_approx(torch.tensor([0.5, math.nan]), 1, 0.01)
    with pytest.raises(ValueError, match="zero_threshold"):
        apot_approx(torch.tensor([0.5]), 1, 0.01, zero_threshold=0.01)


# ------------------------------------------------------------------ counting terms
@pytest.mark.parametrize(
    "value, terms",
    [(0.0, 0), (-0.0, 0), (1.0, 1), (-0.5, 1), (2.0**-30, 1), (0.75, 2), (0.4375, 2), (3.0, 2),
     (11.0, 3), (0.3125, 2), (5.0, 2), (7.0, 2), (0.6875, 3)],
)
def test_apot_terms_hand_examples(value, terms):
    # 0.4375 = 0.5 - 0.0625; 0.75 = 1 - 0.25; 11 = 16 - 4 - 1; 0.6875 = 0.5 + 0.25 - 0.0625.
    assert apot_terms(torch.tensor([value], dtype=torch.float32)).item() == terms


def _naf_weight(n: int) -> int:
    """Non-zero digits of the non-adjacent form, the textbook way."""
    count = 0
    while n:
        if n & 1:
            n -= 2 - (n & 3)  # digit +1 or -1
            count += 1
        n >>= 1
    return count


def _min_signed_terms(x: float) -> int:
    if x == 0:
        return 0
    numerator = abs(Fraction(x)).numerator  # odd part of the mantissa
    return _naf_weight(numerator)


@FAST
@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=50))
def test_apot_terms_is_the_naf_weight(values):
    got = apot_terms(torch.tensor(values, dtype=torch.float32)).tolist()
    assert got == [_min_signed_terms(v) for v in values]


def test_naf_weight_is_minimal_for_small_integers():
    # Brute force: the fewest signed powers of two summing to n, for n < 256.
    best = {0: 0}
    frontier = {0}
    powers = [1 << i for i in range(10)]
    for depth in range(1, 6):
        frontier = {v + s * p for v in frontier for p in powers for s in (1, -1)} - best.keys()
        for v in frontier:
            best[v] = depth
    for n in range(1, 256):
        assert _naf_weight(n) == best[n]
        assert apot_terms(torch.tensor([float(n)])).item() == best[n]


def test_apot_terms_rejects_non_finite():
    with pytest.raises(ValueError, match="finite"):
        apot_terms(torch.tensor([math.inf]))


# ------------------------------------------------------------------ candidate sets
def test_candidate_set_order_zero_is_the_powers_of_two():
    c = candidate_centres(0.3, 0.0075, 0)
    powers = [2.0**e for e in range(-7, -1)]  # 2^-7 .. 2^-2 (rungs below 0.3 round to at most 0.25)
    assert c.tolist() == sorted([-p for p in powers] + [0.0] + powers)


def test_candidate_set_basic_properties():
    for k in range(4):
        c = candidate_centres(0.7, 0.015, k)
        assert c.dtype == torch.float64
        assert torch.all(c[1:] > c[:-1])  # sorted, no duplicates
        assert 0.0 in c.tolist()
        assert torch.equal(c, -c.flip(0))  # symmetric
        assert int(apot_terms(c).max()) <= k + 1


def test_candidate_set_below_the_threshold_is_zero_only():
    assert candidate_centres(0.0, 0.01, 0).tolist() == [0.0]
    assert candidate_centres(2.0**-7, 0.01, 3).tolist() == [0.0]  # rungs must be < B


def test_candidate_set_uses_d_capped_at_0_9999():
    assert candidate_centres(1.0, 0.99999, 0).tolist() == candidate_centres(1.0, 0.9999, 0).tolist()


def test_candidate_sets_are_cached_but_each_caller_gets_its_own_copy():
    first = candidate_centres(0.5, 0.02, 1)
    expected = first.clone()
    first.mul_(2)  # a caller that writes into its result ...
    assert torch.equal(candidate_centres(0.5, 0.02, 1), expected)  # ... does not change the next call's
    assert (centres._candidates_cached(0.02, 1, 0.5, ZERO_THRESHOLD)
            is centres._candidates_cached(0.02, 1, 0.5, ZERO_THRESHOLD))


@FAST
@given(
    st.floats(min_value=0.0, max_value=50.0),
    st.floats(min_value=1e-3, max_value=0.9999),
    st.integers(min_value=0, max_value=5),
    st.sampled_from([2.0**-7, 2.0**-4, 2.0**-10]),
)
def test_candidate_set_matches_the_reference(bound, delta, order, z):
    assert candidate_centres(bound, delta, order, z).tolist() == reference_candidates(bound, delta, order, z)


def test_candidate_centres_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_abs"):
        candidate_centres(-1.0, 0.01, 0)
    with pytest.raises(ValueError, match="order"):
        candidate_centres(1.0, 0.01, 1.5)
    with pytest.raises(ValueError, match="zero_threshold"):
        candidate_centres(1.0, 0.01, 0, zero_threshold=0.3)
