"""Minimalist relative-distance clustering, one call per fixing iteration (section 3 of the algorithm doc).

A call fixes ``floor(N·p_t)`` of the N weights to additive-powers-of-two (APoT) centres. It repeats
*passes* until enough weights are fixed; a pass works on the weights not yet assigned in this call:

1. **Candidates** ``C_k``: 0 and ± the order-``k`` APoT approximations of a geometric ladder of
   magnitudes from γ0 up to the largest unassigned ``|w|`` (section 2, :mod:`wfn_core.centres`).
2. **The vote**: every unassigned weight votes for its nearest candidate; the candidate with the most
   votes is the pass's centre ``c*`` (ties to the smaller, for the weight and for the count).
3. **Relative distance**: a weight costs ``|w − c*| / |w|`` to ``c*``: a relative, scale-free
   distance, so a large weight may sit further from its centre than a small one. The zero centre
   costs 0 below γ0 and 1 elsewhere (:func:`relative_distance`).
4. **The running-mean acceptance**: in cost order (then smaller |w|, then lower flat index), the pass
   takes the longest prefix whose *mean* cost stays ≤ ``a`` (starting at ``a = δ_t``), at most the
   number still needed. Costs that are exactly 0 (weights already on ``c*``) are free: they do not
   count in the mean. The mean is bounded, not each cost, so a single weight may move further.
5. **Order escalation**: a pass that takes nothing raises the APoT order ``k`` by one (more terms, so
   candidates closer to the weights); once ``k > MAX_ORDER_BEFORE_RELAXING`` every empty pass also
   doubles ``a``, which guarantees termination. A pass that takes something resets ``a = δ_t``.

``recluster_fixed=True`` (the released models' behaviour) re-clusters every weight, those fixed
earlier included: they sit exactly on their old centre and are normally re-taken at zero cost, but
may move. ``recluster_fixed=False`` keeps them where they are; they count toward the quota.

Two implementations compute the same result, bit for bit (the tests check it):

- :func:`cluster_reference` follows the steps above literally, with K×N distance matrices and full
  sorts: read it next to the paper. It is for small inputs.
- :func:`cluster` is the fast engine (``wfn_core._fast_clustering``: one sort per call, the vote as a
  histogram, the cost order as a walk outward from ``c*``), for whole networks.

Float semantics, shared by both:

- all arithmetic is float64 on the exact float64 images of the weights; the cost of ``w`` to ``c``
  is ``fl(|w − c|) / |w|``; the running sum is the sequential float64 sum in cost order;
- "the longest prefix whose running mean ≤ a" is *take while the running mean ≤ a* (the same thing
  mathematically, since the mean of ascending costs never decreases; this stays well defined if
  rounding makes a computed mean wobble by an ulp);
- "nearest candidate, ties to the smaller" uses the floating-point distances ``fl(|w − c|)``;
- candidates are rounded to the weights' dtype (exact for every realistic centre), so a fixed
  weight sits exactly on its centre.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from . import _fast_clustering
from ._validation import (
    InvalidParameterError,
    check_bool,
    check_int,
    check_number,
    check_tensor,
    check_zero_threshold,
    fail,
)
from .centres import ZERO_THRESHOLD, candidate_centres

DEFAULT_FRACTIONS: tuple[float, ...] = (0.30, 0.60, 0.80, 0.90, 0.95, 0.975, 0.99, 0.9975, 0.999, 1.0)
"""Cumulative fractions fixed after each of the T = 10 default iterations."""

MAX_ORDER_BEFORE_RELAXING = 20
"""Once the order ``k`` exceeds this, every pass that takes nothing also doubles ``a``."""


@dataclass(frozen=True, eq=False)
class ClusterResult:
    """What one clustering call decided.

    ``values``: new values (shape and dtype of the input weights); ``fixed``: bool mask of fixed
    weights; ``centres``: picked centres, unique and sorted (dtype of the input; a centre may have
    taken no weight); ``taken_by_order``: ``taken_by_order[k]`` weights taken at APoT order ``k``
    (length = highest order reached + 1, empty when no pass ran); ``moved``: previously fixed weights
    whose value changed; ``released``: previously fixed weights no longer fixed.
    """

    values: torch.Tensor
    fixed: torch.Tensor
    centres: torch.Tensor
    taken_by_order: tuple[int, ...]
    moved: int
    released: int


def delta_schedule(delta: float, n_iterations: int) -> list[float]:
    """Allowed distance per iteration: ``δ_t = δ · max(1, T − t)`` for ``t = 0..T−1`` (falls from Tδ to δ)."""
    d = check_number("delta", delta, low=0, low_open=True)
    t_max = check_int("n_iterations", n_iterations, low=1)
    return [d * max(1, t_max - t) for t in range(t_max)]


def relative_distance(
    weights: torch.Tensor, centre: float, zero_threshold: float = ZERO_THRESHOLD
) -> torch.Tensor:
    """Clustering cost of each weight to ``centre`` (float64): ``|w − c| / |w|``.

    For ``centre == 0``: 0 where ``|w| < γ0``, else 1. A zero weight costs ``inf`` to a non-zero centre.
    """
    zero_threshold = check_zero_threshold(zero_threshold)
    c = check_number("centre", centre)
    w = torch.as_tensor(weights).detach().to(torch.float64)
    if c == 0:
        return (w.abs() >= zero_threshold).to(torch.float64)
    return (w - c).abs() / w.abs()


# =============================================================================== shared by both versions
def _check_call(
    weights: torch.Tensor, fraction: float, delta: float, zero_threshold: float, fixed: torch.Tensor | None,
    recluster_fixed: bool,
) -> tuple[torch.Tensor, float, float, float, torch.Tensor | None]:
    """The arguments of a call, checked: ``(flat CPU weights, fraction, delta, γ0, flat CPU fixed mask)``."""
    check_tensor("weights", weights)
    fraction = check_number("fraction", fraction, low=0, high=1, low_open=True)
    delta = check_number("delta", delta, low=0, high=1, low_open=True, high_open=True,
                         why="it is δ_t = δ·max(1, T−t): keep δ·T below 1")
    zero_threshold = check_zero_threshold(zero_threshold)
    check_bool("recluster_fixed", recluster_fixed)
    flat = weights.detach().reshape(-1).cpu()
    lowest, highest = torch.aminmax(flat)  # NaN propagates; one pass, no N-sized temporary
    if not (math.isfinite(lowest) and math.isfinite(highest)):
        raise InvalidParameterError("weights (a tensor holding NaN or inf) is not allowed: it must hold finite values")
    prev = None
    if fixed is not None:
        shaped = f"a bool tensor of shape {tuple(weights.shape)} (that of weights)"
        if not isinstance(fixed, torch.Tensor):
            raise fail("fixed", fixed, shaped)
        if fixed.dtype != torch.bool or fixed.shape != weights.shape:
            raise InvalidParameterError(
                f"fixed (a {fixed.dtype} tensor of shape {tuple(fixed.shape)}) is not allowed: it must be {shaped}")
        prev = fixed.detach().reshape(-1).cpu()
    return flat, fraction, delta, zero_threshold, prev


def _result(
    weights: torch.Tensor, flat: torch.Tensor, values: torch.Tensor, fixed: torch.Tensor, centres: Iterable[float],
    taken_by_order: Sequence[int], prev: torch.Tensor | None,
) -> ClusterResult:
    """The call's outcome shaped like ``weights``; ``prev`` (the previous mask when every weight was
    re-clustered, else None) counts ``moved`` and ``released``."""
    moved = released = 0
    if prev is not None:  # one N-sized scratch mask: this also runs on whole networks
        scratch = torch.logical_not(fixed)
        released = int(torch.count_nonzero(scratch.logical_and_(prev)))
        torch.ne(values, flat, out=scratch)
        moved = int(torch.count_nonzero(scratch.logical_and_(prev)))
    shape, device = weights.shape, weights.device
    return ClusterResult(
        values=values.reshape(shape).to(device),
        fixed=fixed.reshape(shape).to(device),
        centres=torch.tensor(sorted(centres), dtype=flat.dtype, device=device),
        taken_by_order=tuple(taken_by_order),
        moved=moved,
        released=released,
    )


# =============================================================================== the readable version
def cluster_reference(
    weights: torch.Tensor,
    fraction: float,
    delta: float,
    *,
    zero_threshold: float = ZERO_THRESHOLD,
    fixed: torch.Tensor | None = None,
    recluster_fixed: bool = True,
) -> ClusterResult:
    """One fixing iteration written straight from section 3 of the algorithm doc: dense and obviously correct.

    Same arguments, checks, float semantics and result as :func:`cluster`, which is tested equal to it
    bit for bit. Every pass builds K×N distances for the vote and sorts all unassigned weights, so use
    it to read, teach and test, on small inputs (up to some 10^5 weights); use :func:`cluster` for networks.
    """
    flat, fraction, delta, zero_threshold, prev = _check_call(
        weights, fraction, delta, zero_threshold, fixed, recluster_fixed)
    w = flat.to(torch.float64)  # exact for every float dtype
    quota = math.floor(w.numel() * fraction)
    locked = prev is not None and not recluster_fixed
    assigned = prev.clone() if locked else torch.zeros(w.numel(), dtype=torch.bool)
    values = flat.clone()
    k, a = 0, delta  # APoT order and the running-mean threshold
    picked: set[float] = set()
    taken_by_order: list[int] = []
    while int(assigned.sum()) < quota:
        if k == len(taken_by_order):
            taken_by_order.append(0)
        free = (~assigned).nonzero().squeeze(1)  # the unassigned weights, by flat index
        wf = w[free]
        # Step 1: C_k for the boundary B = max |w| over the unassigned weights, in the weights' dtype.
        candidates = candidate_centres(float(wf.abs().max()), delta, k, zero_threshold)
        candidates = candidates.to(flat.dtype).to(torch.float64)
        candidates = torch.unique(candidates[torch.isfinite(candidates)])  # float16 may overflow to inf
        # Step 2: the vote. argmin and argmax return the first of equals: ties go to the smaller candidate.
        nearest = torch.cat([(part[:, None] - candidates[None, :]).abs().argmin(1)
                             for part in wf.split(1024)])  # 1024×K distances at a time
        votes = torch.bincount(nearest, minlength=candidates.numel())
        centre = float(candidates[int(torch.argmax(votes))])
        # Step 3: the cost of each unassigned weight to c*.
        cost = relative_distance(wf, centre, zero_threshold)
        # Step 4: by cost, then |w|, then flat index (stable sorts, the last key first; free is ascending).
        order = torch.argsort(wf.abs(), stable=True)
        order = order[torch.argsort(cost[order], stable=True)]
        sorted_cost = cost[order]
        # Step 5: the running mean, where exact-zero costs are free; take while it stays <= a.
        paid = torch.cumsum((sorted_cost != 0).to(torch.float64), 0)
        mean = torch.cumsum(sorted_cost, 0) / paid.clamp_min(1)  # before the first paid cost the sum is 0
        over = (mean > a).nonzero()
        prefix = int(over[0, 0]) if over.numel() else sorted_cost.numel()
        took = min(prefix, quota - int(assigned.sum()))
        # Step 6: fix them to c*; an empty pass raises the order, and past MAX_ORDER_BEFORE_RELAXING doubles a.
        chosen = free[order[:took]]
        values[chosen] = centre
        assigned[chosen] = True
        picked.add(centre)
        taken_by_order[k] += took
        if took == 0:
            k += 1
            if k > MAX_ORDER_BEFORE_RELAXING:
                a *= 2
        else:
            a = delta
    return _result(weights, flat, values, assigned, picked, taken_by_order, None if locked else prev)


# =============================================================================== the fast version
def cluster(
    weights: torch.Tensor,
    fraction: float,
    delta: float,
    *,
    zero_threshold: float = ZERO_THRESHOLD,
    fixed: torch.Tensor | None = None,
    recluster_fixed: bool = True,
) -> ClusterResult:
    """One fixing iteration: fix ``floor(N·fraction)`` weights to APoT centres (section 3).

    ``delta`` is already δ_t (see :func:`delta_schedule`). With ``recluster_fixed=True`` (default)
    every weight is re-clustered and ``fixed`` (the previous mask) only serves to count ``moved`` and
    ``released``; with ``recluster_fixed=False`` the weights under ``fixed`` keep their values, count
    toward the quota, and only the rest is clustered. Deterministic; no K×N matrices: this is the fast
    engine, equal bit for bit to :func:`cluster_reference`.
    """
    flat, fraction, delta, zero_threshold, prev = _check_call(
        weights, fraction, delta, zero_threshold, fixed, recluster_fixed)
    quota = math.floor(flat.numel() * fraction)
    locked = prev if (prev is not None and not recluster_fixed) else None
    values, mask, centres, taken_by_order = _fast_clustering.cluster_fast(
        flat, quota, delta, zero_threshold, locked, MAX_ORDER_BEFORE_RELAXING)
    return _result(weights, flat, values, mask, centres, taken_by_order, None if locked is not None else prev)


def cluster_schedule(
    weights: torch.Tensor,
    delta: float,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    *,
    zero_threshold: float = ZERO_THRESHOLD,
    recluster_fixed: bool = True,
    reference: bool = False,
) -> list[ClusterResult]:
    """The whole fixing schedule without retraining: one :func:`cluster` call per fraction, each fed
    the previous call's values and mask, with ``δ_t`` from :func:`delta_schedule`.

    ``reference=True`` runs :func:`cluster_reference` instead (small inputs only)."""
    call = cluster_reference if check_bool("reference", reference) else cluster
    results: list[ClusterResult] = []
    values, fixed = weights, None
    for fraction, delta_t in zip(fractions, delta_schedule(delta, len(fractions))):
        result = call(values, fraction, delta_t, zero_threshold=zero_threshold, fixed=fixed,
                      recluster_fixed=recluster_fixed)
        results.append(result)
        values, fixed = result.values, result.fixed
    return results
