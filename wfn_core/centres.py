"""Candidate centres: additive powers of two on a geometric ladder (section 2 of the algorithm doc).

A rung ``g`` of the ladder ``g_0 = γ0, g_{i+1} = g_i·(1+d)/(1−d)`` is approximated by at most
``k + 1`` signed powers of two; ``C_k`` is ``{0} ∪ {±approx(g_i) : g_i < B}``. The ratio makes the
rungs' ranges ``[g/(1+d), g/(1−d)]`` (relative distance at most d) meet end to end.

Words (as in the algorithm document): the **order** k is the parameter of this construction only;
the **terms** of a value are the signed powers of two it is made of (order k: at most k + 1 terms;
order 0: single powers of two, which the paper calls order 1).

"Rounding in the log domain" (``round(log2 |x|)``) is computed exactly with ``frexp``: writing
``|x| = f·2^E`` with ``f ∈ [0.5, 1)``, the nearest power of two is ``2^E`` when ``f ≥ 1/√2`` and
``2^(E−1)`` otherwise. ``1/√2`` is irrational, so no value is ever exactly half way and no
transcendental function (whose last bit may differ between libraries) is involved.
"""

from __future__ import annotations

import bisect
import math
from functools import lru_cache

import torch

from ._validation import check_finite, check_int, check_number, check_zero_threshold

ZERO_THRESHOLD: float = 2.0**-7
"""Default γ0: weights below it are "zero" for the zero centre and the ladder starts there."""

# The double nearest to 1/sqrt(2) is above it, so ``f >= _SQRT_HALF`` is exactly ``f > 1/sqrt(2)``
# for every double f (f == _SQRT_HALF included).
_SQRT_HALF = 0.7071067811865476


def _check_values(name: str, values: torch.Tensor) -> torch.Tensor:
    return check_finite(name, torch.as_tensor(values).to(torch.float64))


def _nearest_power_exponent(mag: torch.Tensor, e_min: int) -> torch.Tensor:
    """``max(e_min, round(log2 mag))`` for positive float64 magnitudes, exactly (see module doc)."""
    frac, exp = torch.frexp(mag)
    exp = exp.to(torch.int64) - (frac < _SQRT_HALF).to(torch.int64)
    return exp.clamp_min(e_min)


def apot_approx(values: torch.Tensor, order: int, delta: float, zero_threshold: float = ZERO_THRESHOLD) -> torch.Tensor:
    """Additive-powers-of-two approximation of order ``order`` of each value (section 2, step 3).

    First term ``2^max(e_min, round(log2|g|))`` with ``e_min = log2(γ0) − order − 1``; then up to
    ``order`` refinements: with residual ``r = g − approx``, if ``|r| ≥ d·|g|`` (``d = min(delta,
    0.9999)``) add the signed power of two nearest to ``r`` (same rounding and floor), else stop.
    Zero maps to zero. Returns float64 with the shape of ``values``.
    """
    order = check_int("order", order, low=0)
    d = min(check_number("delta", delta, low=0, low_open=True), 0.9999)
    zero_threshold = check_zero_threshold(zero_threshold)
    e_min = math.frexp(zero_threshold)[1] - 1 - order - 1  # log2(γ0) - order - 1
    v = _check_values("values", values)
    g = v.abs()
    nonzero = g > 0
    one = torch.ones_like(g)
    approx = torch.ldexp(one, _nearest_power_exponent(torch.where(nonzero, g, one), e_min))
    approx = torch.where(nonzero, approx, torch.zeros_like(g))
    active = nonzero
    tol = d * g
    for _ in range(order):
        r = g - approx
        active = active & (r.abs() >= tol)
        if not bool(active.any()):
            break
        step = torch.ldexp(one, _nearest_power_exponent(torch.where(active, r.abs(), one), e_min))
        approx = torch.where(active, approx + torch.sign(r) * step, approx)
    return torch.sign(v) * approx


# ------------------------------------------------------------------------------ counting terms
_M1, _M2, _M4 = 0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F


def _popcount64(x: torch.Tensor) -> torch.Tensor:
    """Number of set bits of non-negative int64 values (SWAR, shifts and adds only)."""
    x = x - ((x >> 1) & _M1)
    x = (x & _M2) + ((x >> 2) & _M2)
    x = (x + (x >> 4)) & _M4
    x = x + (x >> 8)
    x = x + (x >> 16)
    x = x + (x >> 32)
    return x & 0x7F


def apot_terms(values: torch.Tensor) -> torch.Tensor:
    """Number of signed power-of-two terms in each value's shortest signed-binary form (0 for zero).

    The non-adjacent form (NAF) of the integer mantissa is minimal; its number of non-zero digits
    is ``popcount(n XOR 3n)``. Works for any float dtype (mantissas of up to 53 bits).
    """
    v = _check_values("values", values)
    frac, _ = torch.frexp(v.abs())
    n = (frac * 2.0**53).to(torch.int64)  # exact integer mantissa, < 2**53
    return _popcount64(n ^ (3 * n))


# ------------------------------------------------------------------------------ candidate sets
class _Ladder:
    """The rungs ``g_i`` for one (d, γ0), grown on demand by repeated multiplication."""

    def __init__(self, d: float, zero_threshold: float) -> None:
        self.ratio = (1.0 + d) / (1.0 - d)
        self.rungs = [zero_threshold]

    def count_below(self, bound: float) -> int:
        """Number of rungs ``< bound`` (the ladder is grown past ``bound``)."""
        rungs, ratio = self.rungs, self.ratio
        while rungs[-1] < bound:
            rungs.append(rungs[-1] * ratio)
        return bisect.bisect_left(rungs, bound)

    def below(self, bound: float) -> list[float]:
        return self.rungs[: self.count_below(bound)]


@lru_cache(maxsize=64)
def _ladder(d: float, zero_threshold: float) -> _Ladder:
    return _Ladder(d, zero_threshold)


@lru_cache(maxsize=4096)
def _candidates_cached(delta: float, order: int, bound: float, zero_threshold: float) -> torch.Tensor:
    """Cached :func:`candidate_centres` (callers must not modify the tensor it returns)."""
    d = min(delta, 0.9999)
    rungs = _ladder(d, zero_threshold).below(bound)
    if not rungs:
        return torch.zeros(1, dtype=torch.float64)
    approx = apot_approx(torch.tensor(rungs, dtype=torch.float64), order, delta, zero_threshold)
    both = torch.cat([-approx, torch.zeros(1, dtype=torch.float64), approx])
    return torch.unique(both)  # sorted


def candidate_centres(
    max_abs: float, delta: float, order: int, zero_threshold: float = ZERO_THRESHOLD
) -> torch.Tensor:
    """The sorted, deduplicated candidate set ``C_k`` (float64, 0 included) for boundary ``B = max_abs``.

    Rungs ``g_i < B`` of the ladder from γ0 with ratio ``(1+d)/(1−d)``, ``d = min(delta, 0.9999)``,
    each replaced by ±its order-``order`` APoT approximation. Cached per (delta, order, B, γ0); the
    caller gets its own copy, free to modify.
    """
    zero_threshold = check_zero_threshold(zero_threshold)
    delta = check_number("delta", delta, low=0, low_open=True)
    order = check_int("order", order, low=0)
    bound = check_number("max_abs", max_abs, low=0)
    return _candidates_cached(delta, order, bound, zero_threshold).clone()
