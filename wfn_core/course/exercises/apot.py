"""Exercises for notebook 01 (additive powers of two): round to a power of two, refine once, build the ladder.

Each ``check_*`` calls the student's function on inputs where :mod:`wfn_core.centres` knows the answer
and compares with it, so the library is the one definition of the rule.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...centres import ZERO_THRESHOLD, _ladder, apot_approx
from .feedback import Feedback, Wrong, as_tensor, expect_close, run_check

__all__ = ["check_round_to_power_of_two", "check_apot_order1", "check_ladder"]

# Magnitudes on both sides of the log-domain midpoint 2^(e+1/2) (0.7071 for e = -1) and of the linear
# midpoint 0.75: 0.72 and 0.74 round up in the log domain but down in the linear one. None lies within
# 1e-5 of a midpoint, so a float64 ``round(log2|w|)`` agrees with the library's exact rule on all of them.
_ROUND_INPUTS = (0.0, 1.0, 0.5, -0.25, 0.3, 0.37, 0.45, 0.7, 0.7071, 0.7072, 0.72, 0.74, 0.76, -0.72,
                 -0.9, 1.5, 2.9, -3.0, 5.7, 0.0107, -0.0043, 0.003, 0.0026, 1e-4, -1e-6)


def _library_round(w: torch.Tensor, e_min: int) -> torch.Tensor:
    """The library's order-0 rule: its exponent floor is ``log2(γ0) − 1``, so γ0 = 2^(e_min+1) gives e_min."""
    return apot_approx(w, order=0, delta=0.5, zero_threshold=2.0 ** (e_min + 1))


def check_round_to_power_of_two(fn: Callable[..., object]) -> Feedback:
    """Check ``fn(w, e_min)``: each entry of ``w`` to the nearest signed power of two in the log domain,
    ``sign(w)·2^max(e_min, round(log2|w|))``, and 0 to 0 (the library's ``apot_approx`` of order 0)."""

    def trial() -> str:
        w = torch.tensor(_ROUND_INPUTS, dtype=torch.float64)
        gen = torch.Generator().manual_seed(0)
        weights = 0.3 * torch.randn(1000, generator=gen, dtype=torch.float64)
        for e_min, x in ((-8, w), (-8, weights), (-3, w)):
            got = fn(x.clone(), e_min)
            expect_close(got, _library_round(x, e_min), f"round_to_power_of_two(w, e_min={e_min})", inputs=x,
                         rtol=1e-12, atol=0.0)
        return f"matches the library on {len(_ROUND_INPUTS)} chosen values (0, negatives, near midpoints, " \
               "below the floor) and 1,000 random weights"

    return run_check(
        "round_to_power_of_two", trial,
        "round the exponent, not the value: e = round(log2|w|), so the midpoint between 2^e and 2^(e+1) is "
        "2^(e+1/2) (0.7071 between 0.5 and 1), never clamp below e_min, keep the sign, and send 0 to 0 "
        "(log2(0) is -inf).")


# Values whose order-1 value subtracts (0.4375 = 0.5 − 0.0625, 0.93 → 1 − 0.0625), adds (0.3 → 0.25 + 0.0625),
# or is a power of two already (0.25: no second term); with δ = 0.2 most values stop after one term.
_ORDER1_INPUTS = (0.0, 0.25, -0.5, 0.4375, 0.3, -0.3, 0.37, 0.45, 0.7, 0.93, -0.93, 0.0107, -0.0043, 0.0026, 2.9)


def check_apot_order1(fn: Callable[..., object]) -> Feedback:
    """Check ``fn(w, delta, e_min)``: the order-1 additive power of two of each entry (one greedy refinement,
    taken only while the residual is at least δ·|w|), as the library's ``apot_approx(w, order=1, …)``."""

    def trial() -> str:
        w = torch.tensor(_ORDER1_INPUTS, dtype=torch.float64)
        gen = torch.Generator().manual_seed(1)
        weights = 0.3 * torch.randn(1000, generator=gen, dtype=torch.float64)
        for delta, x in ((0.001, w), (0.2, w), (0.03, weights)):
            # the library's exponent floor at order 1 is log2(γ0) − 2: e_min = −9 for its γ0 = 2^-7
            want = apot_approx(x, order=1, delta=delta, zero_threshold=2.0**-7)
            expect_close(fn(x.clone(), delta, -9), want, f"apot_order1(w, delta={delta:g}, e_min=-9)", inputs=x,
                         rtol=1e-12, atol=0.0)
        return f"matches the library's order-1 values on {len(_ORDER1_INPUTS)} chosen values at δ = 0.001 and " \
               "0.2, and on 1,000 random weights at δ = 0.03"

    return run_check(
        "apot_order1", trial,
        "work on |w| and put the sign back at the end: first term a = pow2(|w|); residual r = |w| − a (it may be "
        "negative); add pow2(r), sign included, only where |r| ≥ δ·|w|. It uses your round_to_power_of_two: "
        "pass Exercise 1.1 first.")


def check_ladder(fn: Callable[..., object]) -> Feedback:
    """Check ``fn(B, delta, g0)``: the rungs ``g_i = g0·((1+δ)/(1−δ))^i`` with ``g_i < B``, as a 1-d tensor
    (the library's ladder, :func:`wfn_core.centres.candidate_centres` step 1)."""

    def trial() -> str:
        # (B, δ, g0): the digits network's B, a coarse and a fine δ, another γ0, and B = γ0 (no rung below B)
        cases = ((0.343, 0.03, ZERO_THRESHOLD), (0.343, 0.0075, ZERO_THRESHOLD), (1.7, 0.2, 2.0**-4),
                 (0.05, 0.1, ZERO_THRESHOLD), (ZERO_THRESHOLD, 0.03, ZERO_THRESHOLD))
        for b, delta, g0 in cases:
            want = torch.tensor(_ladder(delta, g0).below(b), dtype=torch.float64)
            got = as_tensor(fn(b, delta, g0), f"ladder({b:g}, {delta:g}, {g0:g})").reshape(-1)
            if got.numel() != want.numel():
                raise Wrong(f"ladder(B={b:g}, delta={delta:g}, g0={g0:g}) has {got.numel()} rungs, expected "
                            f"{want.numel()} (from g0 = {g0:g} up to the last rung below B)")
            expect_close(got, want, f"ladder(B={b:g}, delta={delta:g}, g0={g0:g})", rtol=1e-9, atol=0.0)
        return f"matches the library's ladder in {len(cases)} cases (B = g0 included)"

    return run_check(
        "ladder", trial,
        "start at g0 and multiply by (1+δ)/(1−δ), not by 1+δ: rung g serves the magnitudes w with "
        "|w − g|/|w| ≤ δ, that is g/(1+δ) ≤ w ≤ g/(1−δ), and the next rung's range must begin where this one "
        "ends; keep only the rungs strictly below B.")
