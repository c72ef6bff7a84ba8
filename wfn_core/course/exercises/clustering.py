"""Exercises for notebook 02 (relative-distance clustering): the cost of a weight to a centre, and the
running-mean prefix one pass takes.

Each ``check_*`` calls the student's function on inputs where the library knows the answer and compares
with it (:func:`wfn_core.clustering.relative_distance`, :func:`wfn_core.course.explain.running_mean_prefix`,
the rule :func:`~wfn_core.course.explain.first_pass` and the clustering use), so the library is the one
definition of the rule.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...centres import ZERO_THRESHOLD
from ...clustering import relative_distance
from ..explain import first_pass, running_mean_prefix
from .feedback import Feedback, expect_close, expect_equal, run_check

__all__ = ["check_relative_distance", "check_running_mean_prefix"]

# Hand-picked weights: zero, ± γ0 and just below it, both signs, a weight on the centre 0.0625 and one
# twice its size (cost 0.5 from either side), large and tiny magnitudes.
_WEIGHTS = (0.0, ZERO_THRESHOLD, -ZERO_THRESHOLD, 0.9 * ZERO_THRESHOLD, -0.005, 0.0625, 0.125, 0.03125, -0.0625,
            0.07, -0.2, 0.5, 1e-4, -0.9)
# Centres: positive, negative, the zero centre, and one that is not a power of two
_CENTRES = (0.0625, -0.03125, 0.0, 0.4375)


def check_relative_distance(fn: Callable[..., object]) -> Feedback:
    """Check ``fn(w, c)``: the cost ``|w − c| / |w|`` of each weight to centre ``c``; for ``c = 0``: 0 where
    ``|w| < γ0`` (2^-7), else 1 (the library's :func:`~wfn_core.clustering.relative_distance`)."""

    def trial() -> str:
        hand = torch.tensor(_WEIGHTS, dtype=torch.float64)
        gen = torch.Generator().manual_seed(0)
        weights = 0.1 * torch.randn(1000, generator=gen, dtype=torch.float64)
        for w in (hand, weights):
            for c in _CENTRES:
                got = fn(w.clone(), c)
                expect_close(got, relative_distance(w, c), f"relative_distance(w, c={c:g})", inputs=w,
                             rtol=1e-12, atol=0.0)
        return f"matches the library on {len(_WEIGHTS)} chosen weights (0, ±γ0, both signs) and 1,000 random " \
               f"weights, for {len(_CENTRES)} centres (the zero centre included)"

    return run_check(
        "relative_distance", trial,
        "divide the absolute move |w − c| by the weight's own magnitude |w| (not by |c|, and keep the absolute "
        "value: a cost is never negative); the zero centre is the exception: cost 0 when |w| < γ0 = 2^-7, "
        "else 1. A zero weight costs inf to any non-zero centre.")


def check_running_mean_prefix(fn: Callable[..., object]) -> Feedback:
    """Check ``fn(sorted_costs, a)``: how many of the ascending costs one pass takes, the longest prefix whose
    running mean stays ≤ ``a`` where exact-zero costs are free (the library's
    :func:`~wfn_core.course.explain.running_mean_prefix`, as used by :func:`~wfn_core.course.explain.first_pass`)."""

    def trial() -> str:
        # (costs, a): empty; all free; the first cost too large; zeros then costs (zeros must not dilute the
        # mean); single costs above a but the mean below; a mean landing exactly on a (taken: the bound is <=)
        hand = (([], 0.1), ([0.0, 0.0, 0.0], 0.1), ([0.3, 0.4], 0.25), ([0.0, 0.0, 0.0, 0.3, 0.3], 0.25),
                ([0.1, 0.3, 0.5], 0.25), ([0.5], 0.5), ([0.0, 0.25, 0.25, 0.5], 0.25),
                ([0.0, 0.05, 0.1, 0.45, 0.6, 0.9], 0.2))
        for costs, a in hand:
            c = torch.tensor(costs, dtype=torch.float64)
            expect_equal(fn(c.clone(), a), running_mean_prefix(c, a), f"running_mean_prefix({costs}, a={a:g})")
        gen = torch.Generator().manual_seed(0)
        weights = 0.1 * torch.randn(5000, generator=gen, dtype=torch.float64)
        for delta_t in (0.25, 0.1, 0.025):
            step = first_pass(weights, weights.numel(), delta_t)
            got = fn(step["sorted_costs"].clone(), delta_t)
            expect_equal(got, step["taken"], f"the prefix a first pass takes from 5,000 weights at a = {delta_t:g}")
        return f"matches the library in {len(hand)} chosen cases (empty, all free, none taken, a mean exactly " \
               "on a) and on 3 first passes over 5,000 weights"

    return run_check(
        "running_mean_prefix", trial,
        "walk the sorted costs keeping a running sum and a count of the costs that are not exactly 0 (zeros are "
        "free: they count in neither); the mean after m weights is sum / max(1, count); return the number of "
        "weights taken before the first mean above a (a mean equal to a is still taken), not an index.")
