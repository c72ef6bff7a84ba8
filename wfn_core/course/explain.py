"""Step-by-step views of one clustering pass, for teaching (the fast code in ``clustering`` does the
same work without materialising any of this)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..centres import ZERO_THRESHOLD, candidate_centres
from ..clustering import relative_distance

__all__ = ["first_pass"]


def first_pass(weights: torch.Tensor, needed: int, delta: float, order: int = 0,
               zero_threshold: float = ZERO_THRESHOLD) -> dict[str, Any]:
    """The first pass of a clustering call over unassigned ``weights``, spelled out.

    Returns the candidates ``C_k``, each candidate's votes, the winner ``c*``, the sorted costs to it,
    the running mean (exact-zero costs are free) and how many weights the pass takes (at most ``needed``).
    """
    w = weights.detach().reshape(-1).double()
    candidates = candidate_centres(w.abs().max().item(), delta, order, zero_threshold).double()
    # nearest candidate by absolute distance, ties to the smaller one: cells split at the midpoints
    midpoints = (candidates[1:] + candidates[:-1]) / 2
    nearest = torch.bucketize(w, midpoints, right=False)
    votes = torch.bincount(nearest, minlength=candidates.numel())
    winner = candidates[int(torch.argmax(votes))]  # argmax returns the first maximum: the smaller value
    cost = relative_distance(w, winner.item(), zero_threshold)
    # cost ascending, then smaller |w|, then lower index (np.lexsort sorts by the last key first)
    order_idx = torch.from_numpy(np.lexsort((np.arange(w.numel()), w.abs().numpy(), cost.numpy())))
    sorted_cost = cost[order_idx]
    paid = torch.cumsum((sorted_cost != 0).double(), 0).clamp(min=1)
    running_mean = torch.cumsum(sorted_cost, 0) / paid
    ok = running_mean <= delta  # sorted ascending, so the mean only grows: the first miss ends it
    taken = int(torch.nonzero(~ok)[0]) if (~ok).any() else w.numel()
    taken = min(taken, needed)
    return {
        "candidates": candidates, "votes": votes, "winner": winner.item(), "sorted_costs": sorted_cost,
        "running_mean": running_mean, "taken": taken, "taken_index": order_idx[:taken],
    }
