"""Step-by-step views of one clustering pass, for teaching (the fast code in ``clustering`` does the
same work without materialising any of this)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_number, fail
from ..centres import ZERO_THRESHOLD, candidate_centres
from ..clustering import cluster, cluster_schedule, relative_distance
from ..freezing import WeightFixer
from ..regulariser import ClusterRegulariser
from ..training import make_optimizer, reseed, train_epoch

__all__ = ["running_mean", "running_mean_prefix", "first_pass", "centres_per_iteration", "retrain_free_weights",
           "codebooks_without_retraining"]


def running_mean(sorted_costs: torch.Tensor) -> torch.Tensor:
    """The running mean of ``sorted_costs`` (float64) where costs that are exactly 0 are free: they add
    nothing to the sum and do not count in the denominator (a leading run of zeros has mean 0)."""
    costs = torch.as_tensor(sorted_costs).detach().reshape(-1).to(torch.float64)
    paid = torch.cumsum((costs != 0).to(torch.float64), 0).clamp(min=1)
    return torch.cumsum(costs, 0) / paid


def running_mean_prefix(sorted_costs: torch.Tensor, a: float) -> int:
    """How many of ``sorted_costs`` (ascending) one pass takes: the longest prefix whose running mean
    (:func:`running_mean`) stays ≤ ``a``, before the cap at the number still needed."""
    a = check_number("a", a, low=0)
    mean = running_mean(sorted_costs)
    # take while the mean stays <= a: ascending costs never lower the mean, so the first miss ends it
    over = (mean > a).nonzero()
    return int(over[0, 0]) if over.numel() else mean.numel()


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
    taken = min(running_mean_prefix(sorted_cost, delta), needed)
    return {
        "candidates": candidates, "votes": votes, "winner": winner.item(), "sorted_costs": sorted_cost,
        "running_mean": running_mean(sorted_cost), "taken": taken, "taken_index": order_idx[:taken],
    }


def centres_per_iteration(
    weights: torch.Tensor, deltas: Sequence[float], **schedule_kwargs: Any
) -> dict[float, list[int]]:
    """For each δ, the number of centres in use (distinct values among the fixed weights) after each
    fixing iteration of :func:`~wfn_core.clustering.cluster_schedule`, without retraining.

    ``schedule_kwargs`` go to ``cluster_schedule`` (``fractions``, ``zero_threshold``, ``recluster_fixed``,
    ``reference``). A call's ``centres`` may list a centre that took no weight, so the count here is of
    the values fixed weights actually hold: the codebook after that iteration.
    """
    if isinstance(deltas, (str, bytes)) or not isinstance(deltas, Sequence) or len(deltas) == 0:
        raise fail("deltas", deltas, "a non-empty sequence of numbers (the δ values to compare)")
    deltas = [check_number("delta", d, low=0, low_open=True) for d in deltas]
    counts: dict[float, list[int]] = {}
    for delta in deltas:
        results = cluster_schedule(weights, delta, **schedule_kwargs)
        counts[delta] = [torch.unique(r.values[r.fixed]).numel() for r in results]
    return counts


def retrain_free_weights(
    model: nn.Module, train_loader: Iterable, config: Any, alpha: float, epochs: int = 3,
    fixed_share: float = 0.6, delta_t: float = 0.18,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The "cosying up" experiment of notebook 03, on a copy of ``model``: fix ``fixed_share`` of its weights
    as the first fixing iteration does (clustering at ``delta_t``), then train the free ones for ``epochs``
    epochs on CE + λ·L_reg at ``alpha`` (α = 0: cross-entropy only) with ``config``'s optimiser, learning
    rate, τ and gradient clipping. Every α sees the same batches. Returns (free weights before, free weights
    after, centres)."""
    net = copy.deepcopy(model)
    fixer = WeightFixer(net)
    fixer.apply(cluster(fixer.flat_values(), fixed_share, delta_t))
    before = fixer.free_values().detach().clone()
    regulariser = ClusterRegulariser(alpha=alpha, tau=config.tau)
    optimiser = make_optimizer([p for p in net.parameters() if p.requires_grad], config.optimizer, config.lr)
    for epoch in range(epochs):
        reseed(train_loader, epoch)  # the same batches for every α
        train_epoch(net, train_loader, optimiser, grad_clip=config.grad_clip, device="cpu",
                    loss_fn=lambda out, target: regulariser.fixer_loss(F.cross_entropy(out, target), fixer))
    return before, fixer.free_values().detach(), fixer.centres


def codebooks_without_retraining(
    model: nn.Module, loader: Iterable, config: Any, deltas: Sequence[float], bits: int = 4,
) -> tuple[list[dict[str, Any]], dict[float, nn.Module]]:
    """One codebook for the network against one per weight tensor, on the *same* trained weights and with
    no training at all (notebook 07): WFN's clustering with the whole δ schedule of ``config`` at each of
    ``deltas``, then uniform, APoT and k-means (k = 2^bits) quantisers per tensor at ``bits`` bits.

    Returns one row per method (``method``, ``top1`` on ``loader``, and the metrics of
    :func:`wfn_core.metrics.summary`) and the clustered models by δ (for a heatmap). Seconds on the CPU."""
    from ..compare.baselines import apot_quantize, kmeans_share, uniform_quantize
    from ..fixable import fixable_parameters, flat_values, set_flat_values
    from ..metrics import summary
    from ..training import evaluate

    before = flat_values(fixable_parameters(model)).detach().cpu()
    rows: list[dict[str, Any]] = []
    clustered: dict[float, nn.Module] = {}

    def add(method: str, net: nn.Module) -> None:
        rows.append({"method": method, "top1": evaluate(net, loader, device="cpu", show_progress=False)["top1"],
                     **summary(net)})

    for delta in deltas:
        values = cluster_schedule(before, delta, config.fractions, zero_threshold=config.zero_threshold,
                                  recluster_fixed=config.recluster_fixed)[-1].values
        net = copy.deepcopy(model)
        set_flat_values(fixable_parameters(net), values)
        clustered[delta] = net
        add(f"one codebook (WFN clustering, δ = {delta:g})", net)
    add(f"uniform {bits}-bit per tensor", uniform_quantize(model, bits))
    add(f"APoT {bits}-bit per tensor", apot_quantize(model, bits))
    add(f"k-means per tensor, k = {2 ** bits}", kmeans_share(model, 2 ** bits, scope="layer"))
    return rows, clustered
