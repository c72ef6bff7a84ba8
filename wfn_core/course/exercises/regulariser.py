"""Exercises for notebook 03 (regularised retraining): the regulariser's term for each weight, its weight
λ from α, and the relative distance of a weight to its nearest centre.

Each ``check_*`` calls the student's function on inputs where the library knows the answer and compares
with it (:func:`wfn_core.regulariser.penalty_reference`, :class:`wfn_core.regulariser.ClusterRegulariser`,
:func:`wfn_core.clustering.relative_distance`), so the library stays the one definition.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...centres import ZERO_THRESHOLD
from ...clustering import relative_distance
from ...regulariser import ClusterRegulariser, penalty_reference
from .feedback import Feedback, Wrong, as_tensor, expect_close, run_check

__all__ = ["check_regulariser_term", "check_regulariser_lambda", "check_nearest_distance"]

# Hand-picked weights: zero, ± γ0 and just below it (absolute distance, no pull to zero), both signs, weights
# on a centre, half-way between two centres (a tie: both get the same soft weight), large and tiny magnitudes.
_WEIGHTS = (0.0, ZERO_THRESHOLD, -ZERO_THRESHOLD, 0.9 * ZERO_THRESHOLD, -0.005, 0.0625, 0.09375, -0.03125,
            0.07, -0.2, 0.5, 1e-4, -0.9, 0.3)
# Centres: positive, negative, the zero centre, and one that is not a power of two
_CENTRES = (0.0625, -0.03125, 0.0, 0.125, 0.4375)


def _random_weights(n: int = 1000) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)


def check_regulariser_term(fn: Callable[..., object]) -> Feedback:
    """Check ``fn(w, centres, tau)``: each weight's term ``Σ_j softmin_j(d_ij / τ) d_ij`` (a vector, one entry
    per weight), whose mean is the library's :func:`~wfn_core.regulariser.penalty_reference`."""

    def trial() -> str:
        hand = torch.tensor(_WEIGHTS, dtype=torch.float64)
        everything = torch.tensor(_CENTRES, dtype=torch.float64)
        for centres in (everything, everything[everything != 0], everything[:1]):  # with and without zero; one
            for tau in (0.05, 0.5):
                # one weight at a time: the library's penalty of a single weight is that weight's term
                want = torch.stack([penalty_reference(hand[i:i + 1], centres, tau) for i in range(hand.numel())])
                got = fn(hand.clone(), centres.clone(), tau)
                expect_close(got, want, f"the term (τ = {tau:g}, {centres.numel()} centres)", inputs=hand,
                             rtol=1e-9, atol=1e-12)
        weights = _random_weights()
        got = as_tensor(fn(weights.clone(), everything.clone(), 0.05), "the terms")
        if got.shape != weights.shape:
            raise Wrong(f"the terms have shape {tuple(got.shape)} for {weights.numel()} weights: return one per weight")
        expect_close(got.mean(), penalty_reference(weights, everything, 0.05), "the mean term L_reg of 1,000 weights",
                     rtol=1e-9, atol=1e-12)
        return f"matches penalty_reference on {len(_WEIGHTS)} chosen weights (0, ±γ0, ties) for 3 centre sets and " \
               "2 temperatures, and L_reg of 1,000 random weights"

    return run_check(
        "regulariser term", trial,
        "d_ij = |w_i − c_j| / |w_i| when |w_i| > γ0 = 2^-7, else |w_i − c_j| (absolute), and d = 0 to the zero "
        "centre below γ0; the soft assignment is a softMIN over the centres: softmax of −d_ij / τ (mind the "
        "sign); the term is Σ_j s_ij d_ij, one number per weight.")


def check_regulariser_lambda(fn: Callable[..., object]) -> Feedback:
    """Check ``fn(alpha, ce, reg)``: the weight ``λ`` of the regulariser, which makes ``λ · L_reg = α · CE``
    (``ClusterRegulariser(alpha).loss(ce, w, c) = ce + λ · reg``; 0 when ``reg`` is 0)."""

    def trial() -> str:
        weights, centres = _random_weights(200), torch.tensor(_CENTRES, dtype=torch.float64)
        # every weight on the only centre: L_reg = 0 exactly, the guard (with several centres each weight keeps
        # a soft pull of about e^(-d/τ) towards the others, so L_reg is small but not 0)
        on_centre = torch.full((5,), 0.0625, dtype=torch.float64)
        cases = 0
        for w, c in ((weights, centres), (0.3 * weights, centres), (on_centre, centres[:1])):
            reg = penalty_reference(w, c)
            for alpha in (0.0, 0.4, 1.0, 2.5):
                for ce in (0.05, 2.3):
                    ce_t = torch.tensor(ce, dtype=torch.float64)
                    total = ClusterRegulariser(alpha=alpha).loss(ce_t, w, c)
                    want = (total - ce_t) / reg if reg > 0 else torch.zeros((), dtype=torch.float64)
                    got = fn(alpha, ce, float(reg))
                    expect_close(got, want, f"λ for α = {alpha:g}, CE = {ce:g}, L_reg = {float(reg):.4g}",
                                 rtol=1e-9, atol=1e-12)
                    cases += 1
        return f"matches ClusterRegulariser.loss in {cases} cases (α = 0, L_reg = 0 included)"

    return run_check(
        "regulariser λ", trial,
        "choose λ so that the regulariser adds the fraction α of the cross-entropy: λ · L_reg = α · CE. "
        "When L_reg is 0 (every free weight on a centre) there is nothing to pull: return 0, not a division by 0.")


def check_nearest_distance(fn: Callable[..., object]) -> Feedback:
    """Check ``fn(w, centres)``: each weight's relative distance to its nearest centre, ``min_j |w − c_j| / |w|``
    with the clustering's zero-centre rule (the minimum over centres of
    :func:`~wfn_core.clustering.relative_distance`)."""

    def trial() -> str:
        hand = torch.tensor(_WEIGHTS, dtype=torch.float64)
        weights = _random_weights()
        everything = torch.tensor(_CENTRES, dtype=torch.float64)
        nonzero = everything[everything != 0]
        for w in (hand, weights):
            for centres in (everything, nonzero):
                want = torch.stack([relative_distance(w, float(c)) for c in centres]).min(0).values
                got = fn(w.clone(), centres.clone())
                label = "with" if (centres == 0).any() else "without"
                expect_close(got, want, f"the nearest-centre distance ({label} the zero centre)", inputs=w,
                             rtol=1e-12, atol=0.0)
        return f"matches the library on {len(_WEIGHTS)} chosen weights (0, ±γ0, both signs) and 1,000 random " \
               "weights, with and without the zero centre"

    return run_check(
        "nearest-centre distance", trial,
        "compute |w − c_j| / |w| for every centre at once (a centres x weights matrix, by broadcasting), then "
        "take the minimum over the centres; for the zero centre the cost is 0 when |w| < γ0 = 2^-7, else 1 "
        "(the same rule as wfn_core.clustering.relative_distance).")
