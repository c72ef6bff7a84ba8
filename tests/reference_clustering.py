"""A plain, dense reference of the WFN clustering rule (sections 2 and 3 of the algorithm doc).

Written straight from the text, for small inputs: a K×N distance matrix for the vote and a full
sort of the unassigned weights in every pass. It shares no code with ``wfn_core``. Float semantics
(the fast implementation documents the same ones): float64 arithmetic on the weights' exact float64
images; candidates rounded to the weights' dtype; the running mean is the sequential float64
cumulative sum in cost order divided by the number of non-zero costs so far, and weights are taken
while it stays ≤ a (a prefix whose running mean never exceeded a).
"""

from __future__ import annotations

import math

import torch


def reference_apot(g: float, order: int, delta: float, zero_threshold: float) -> float:
    """Order-``order`` additive-powers-of-two approximation of one value (section 2, step 3)."""
    if g == 0:
        return 0.0
    d = min(delta, 0.9999)
    e_min = round(math.log2(zero_threshold)) - order - 1

    def nearest_power(x: float) -> float:  # signed power of two nearest to x in the log domain
        return math.copysign(2.0 ** max(e_min, round(math.log2(abs(x)))), x)

    approx = nearest_power(g)
    for _ in range(order):
        r = g - approx
        if abs(r) >= d * abs(g):
            approx += nearest_power(r)
        else:
            break
    return approx


def reference_candidates(max_abs: float, delta: float, order: int, zero_threshold: float) -> list[float]:
    """C_k: 0 and ± the approximations of every ladder rung g_i < max_abs, sorted, deduplicated."""
    d = min(delta, 0.9999)
    ratio = (1 + d) / (1 - d)
    rungs = []
    g = zero_threshold
    while g < max_abs:
        rungs.append(g)
        g = g * ratio
    values = {0.0}
    for g in rungs:
        a = reference_apot(g, order, delta, zero_threshold)
        values.update({a, -a})
    return sorted(values)


def _lexsort(*keys: torch.Tensor) -> torch.Tensor:
    """Permutation sorting by keys[0], then keys[1], ... (stable sorts from the last key)."""
    order = torch.arange(keys[0].numel())
    for key in reversed(keys):
        order = order[torch.argsort(key[order], stable=True)]
    return order


def reference_cluster(
    weights: torch.Tensor,
    fraction: float,
    delta: float,
    zero_threshold: float = 2.0**-7,
    fixed: torch.Tensor | None = None,
    recluster_fixed: bool = True,
) -> dict:
    """Dense clustering call; returns a dict with the fields of ``ClusterResult``."""
    shape, dtype = weights.shape, weights.dtype
    x = weights.detach().reshape(-1).clone()
    w = x.to(torch.float64)
    n = w.numel()
    quota = math.floor(n * fraction)
    prev = None if fixed is None else fixed.reshape(-1).clone().bool()
    assigned = prev.clone() if (prev is not None and not recluster_fixed) else torch.zeros(n, dtype=torch.bool)
    values = x.clone()
    k, a = 0, delta
    picked: set[float] = set()
    taken_by_order: list[int] = []
    while int(assigned.sum()) < quota:
        if len(taken_by_order) <= k:
            taken_by_order.append(0)
        free = (~assigned).nonzero().squeeze(1)  # ascending flat index
        wf = w[free]
        # 1. candidates from the unassigned weights, rounded to the weights' dtype
        cands = reference_candidates(float(wf.abs().max()), delta, k, zero_threshold)
        cand = torch.unique(torch.tensor(cands, dtype=torch.float64).to(dtype).to(torch.float64))
        cand = cand[torch.isfinite(cand)]
        # 2. vote: nearest candidate by absolute distance; argmin/argmax return the first (smaller) on ties
        nearest = torch.cat([(chunk[None, :] - cand[:, None]).abs().argmin(0) for chunk in wf.split(4096)])
        votes = torch.bincount(nearest, minlength=cand.numel())
        centre = float(cand[int(torch.argmax(votes))])
        # 3. costs
        if centre == 0:
            cost = (wf.abs() >= zero_threshold).to(torch.float64)
        else:
            cost = (wf - centre).abs() / wf.abs()
        # 4. cost ascending, then smaller |w|, then lower flat index
        order = _lexsort(cost, wf.abs(), free)
        c_sorted = cost[order]
        # 5. running mean, exact zeros free
        sums = torch.cumsum(c_sorted, 0)
        counts = torch.cumsum((c_sorted != 0).to(torch.float64), 0)
        mean = torch.where(counts > 0, sums / counts.clamp_min(1), torch.zeros_like(sums))
        over = (mean > a).nonzero()
        prefix = int(over[0, 0]) if over.numel() else c_sorted.numel()
        took = min(prefix, quota - int(assigned.sum()))
        # 6. assign
        chosen = free[order[:took]]
        values[chosen] = centre
        assigned[chosen] = True
        picked.add(centre)
        taken_by_order[k] += took
        if took == 0:
            k += 1
            if k > 20:
                a *= 2
        else:
            a = delta
    moved = released = 0
    if prev is not None and recluster_fixed:
        released = int((prev & ~assigned).sum())
        moved = int((prev & (values != x)).sum())
    return {
        "values": values.reshape(shape),
        "fixed": assigned.reshape(shape),
        "centres": torch.tensor(sorted(picked), dtype=dtype),
        "taken_by_order": tuple(taken_by_order),
        "moved": moved,
        "released": released,
    }
