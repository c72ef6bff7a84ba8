"""Figures for the notebooks: weight histograms, candidate centres, per-iteration curves.

Every function returns the matplotlib ``Figure`` (or draws on a given ``Axes``). Figures have a white
face colour so they stay readable on dark notebook themes; axes are labelled with units.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..centres import ZERO_THRESHOLD, candidate_centres
from ..metrics import order_histogram

__all__ = [
    "new_figure",
    "weight_histogram",
    "plot_candidates",
    "plot_history",
    "plot_top_values",
    "plot_orders",
    "plot_per_layer",
    "top_values",
    "plot_comparison",
    "plot_delta_search",
]

FP32_COLOUR, WFN_COLOUR = "#4C72B0", "#DD8452"


def new_figure(ncols: int = 1, width: float = 6.0, height: float = 3.6, **kwargs) -> tuple[Figure, np.ndarray]:
    """A white-faced figure with ``ncols`` axes side by side (returned as a flat array)."""
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False, **kwargs)
    fig.patch.set_facecolor("white")
    return fig, axes.ravel()


def _np(x: torch.Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().reshape(-1).double().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def weight_histogram(
    before: torch.Tensor | None,
    after: torch.Tensor | None = None,
    *,
    ax: Axes | None = None,
    bins: int = 200,
    log: bool = True,
    title: str = "Weight values: fp32 spread out, WFN on a few spikes",
) -> Figure:
    """Histogram of flat weight values, fp32 (``before``) against WFN (``after``); log-count scale."""
    if ax is None:
        fig, (ax,) = new_figure(width=9)
    else:
        fig = ax.figure
    arrays = [a for a in (_np(before) if before is not None else None, _np(after) if after is not None else None)
              if a is not None]
    lo, hi = min(a.min() for a in arrays), max(a.max() for a in arrays)
    edges = np.linspace(lo, hi, bins + 1)
    if before is not None:
        sns.histplot(_np(before), bins=edges, ax=ax, color=FP32_COLOUR, alpha=0.5, label="fp32", element="step")
    if after is not None:
        values, counts = np.unique(_np(after), return_counts=True)
        ax.vlines(values, 0.8 if log else 0, counts, color=WFN_COLOUR, lw=1.5, label=f"WFN ({len(values)} values)")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("weight value")
    ax.set_ylabel("number of weights" + (" (log scale)" if log else ""))
    ax.set_title(title)
    ax.legend()
    return fig


def plot_candidates(
    max_abs: float,
    deltas: Iterable[float],
    orders: Iterable[int] = (0, 1, 2),
    zero_threshold: float = ZERO_THRESHOLD,
) -> Figure:
    """Positive candidate centres C_k for several δ (rows) and orders k (colours), log-scaled axis."""
    deltas, orders = list(deltas), list(orders)
    fig, (ax,) = new_figure(width=9, height=0.9 + 0.7 * len(deltas) * len(orders))
    palette = sns.color_palette("deep", len(orders))
    row = 0
    labels = []
    for delta in deltas:
        for colour, k in zip(palette, orders):
            c = candidate_centres(max_abs, delta, k, zero_threshold)
            c = c[c > 0].double().numpy()
            ax.plot(c, np.full_like(c, row), "|", ms=14, color=colour,
                    label=f"order k={k}" if row < len(orders) else None)
            labels.append(f"δ={delta:g}, k={k}: {len(c)}")
            row += 1
    ax.set_xscale("log", base=2)
    ax.set_yticks(range(row), labels)
    ax.invert_yaxis()
    ax.set_xlabel("candidate centre value (log2 scale; the negatives mirror these, and 0 is always a candidate)")
    ax.set_title("Candidate centres: larger δ and lower order give fewer, coarser values")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_history(history: Sequence[dict], baseline: dict | None = None) -> Figure:
    """Accuracy, unique values and entropy per fixing iteration."""
    fig, axes = new_figure(3, width=4.4, height=3.4)
    it = [h["iteration"] for h in history]
    panels = [
        ("top1", "test top-1 (%)", 100.0, "Accuracy holds while weights are fixed"),
        ("unique", "unique values (log scale)", 1.0, "Unique values collapse as δ_t falls"),
        ("entropy_bits", "entropy (bits per weight)", 1.0, "Weight-space entropy"),
    ]
    for ax, (key, label, scale, title) in zip(axes, panels):
        ax.plot(it, [scale * h[key] for h in history], "o-", color=WFN_COLOUR, label="WFN")
        if baseline is not None and key in baseline:
            ax.axhline(scale * baseline[key], color=FP32_COLOUR, ls="--", label="fp32 baseline")
        ax.set_xlabel("fixing iteration t")
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    axes[1].set_yscale("log")
    fig.tight_layout()
    return fig


def top_values(values: torch.Tensor, k: int = 15) -> list[tuple[float, int, float]]:
    """The ``k`` most frequent values as ``(value, count, share of all weights)``."""
    v, counts = torch.unique(values.detach().reshape(-1), return_counts=True)
    order = torch.argsort(counts, descending=True, stable=True)[:k]
    n = values.numel()
    return [(v[i].item(), counts[i].item(), counts[i].item() / n) for i in order.tolist()]


def plot_top_values(values: torch.Tensor, k: int = 15, ax: Axes | None = None) -> Figure:
    """Bar chart of the ``k`` most frequent values and their share of the weights."""
    if ax is None:
        fig, (ax,) = new_figure(width=8)
    else:
        fig = ax.figure
    rows = top_values(values, k)
    ax.bar(range(len(rows)), [100 * s for _, _, s in rows], color=WFN_COLOUR)
    ax.set_xticks(range(len(rows)), [f"{v:.5g}" for v, _, _ in rows], rotation=60, ha="right")
    ax.set_xlabel("weight value")
    ax.set_ylabel("share of all weights (%)")
    total = 100 * sum(s for _, _, s in rows)
    ax.set_title(f"The top {len(rows)} values hold {total:.1f}% of the weights")
    fig.tight_layout()
    return fig


def plot_orders(values: torch.Tensor, ax: Axes | None = None) -> Figure:
    """How many signed power-of-two terms each weight needs (0 = zero)."""
    if ax is None:
        fig, (ax,) = new_figure(width=6)
    else:
        fig = ax.figure
    hist = order_histogram(values)
    n = sum(hist.values())
    keys = sorted(hist)
    ax.bar([str(k) for k in keys], [100 * hist[k] / n for k in keys], color=WFN_COLOUR)
    ax.set_xlabel("number of signed power-of-two terms in the value (0 = zero)")
    ax.set_ylabel("share of weights (%)")
    ax.set_title("Most weights end as a single power of two")
    return fig


def plot_per_layer(names: Sequence[str], layer_values: Sequence[torch.Tensor]) -> Figure:
    """Unique values per layer: the shared codebook means each layer uses a subset of it."""
    fig, (ax,) = new_figure(width=8)
    uniques = [torch.unique(v).numel() for v in layer_values]
    sizes = [v.numel() for v in layer_values]
    ax.barh(range(len(names)), uniques, color=WFN_COLOUR)
    ax.set_yticks(range(len(names)), [f"{n} ({s:,})" for n, s in zip(names, sizes)], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("unique values in the layer")
    ax.set_title("Per layer: each layer draws on the one shared codebook")
    fig.tight_layout()
    return fig


def plot_comparison(rows: Sequence[dict]) -> Figure:
    """Accuracy against unique values (log) and against entropy, one point per method, by family."""
    fig, axes = new_figure(2, width=5.6, height=4.2)
    families = [  # (label, name prefix, colour, marker)
        ("fp32", "fp32", "#555555", "s"), ("uniform per tensor", "uniform", FP32_COLOUR, "o"),
        ("uniform per channel", "uniform", "#8172B3", "D"), ("APoT per tensor", "APoT", "#55A868", "^"),
        ("k-means", "k-means", "#937860", "v"), ("WFN", "WFN", WFN_COLOUR, "*"),
    ]

    def family(name: str) -> int:
        if name.startswith("uniform"):
            return 2 if "per channel" in name else 1
        return next((i for i, (_, prefix, _, _) in enumerate(families) if name.startswith(prefix)), 0)

    for ax, key, label, log in ((axes[0], "unique", "unique values (log scale)", True),
                                (axes[1], "entropy_bits", "entropy (bits per weight)", False)):
        for i, (name, _, colour, marker) in enumerate(families):
            pts = [r for r in rows if family(r["method"]) == i]
            if pts:
                ax.scatter([r[key] for r in pts], [100 * r["top1"] for r in pts], color=colour, marker=marker,
                           s=220 if name == "WFN" else 50, label=name, zorder=3 if name == "WFN" else 2)
        for j, r in enumerate(r for r in rows if r["method"].startswith("WFN")):
            ax.annotate(r["method"].removeprefix("WFN "), (r[key], 100 * r["top1"]), fontsize=8,
                        xytext=(-10, -16 if j % 2 == 0 else 9), textcoords="offset points")
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test top-1 (%)")
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_title("WFN (stars): fewest values at full accuracy", fontsize=10)
    axes[1].set_title("and the lowest entropy", fontsize=10)
    fig.tight_layout()
    return fig


def plot_delta_search(result: Any) -> Figure:
    """A δ search (:class:`~wfn_core.delta_search.DeltaSearchResult`): validation top-1 against δ (log) and
    against unique values, proxy points (no retraining) hollow, full runs filled (green within budget, red
    not), the chosen δ starred, fp32 and the budget as lines."""
    fig, axes = new_figure(2, width=5.2, height=3.8)
    base = 100 * result.baseline_top1
    points = result.points
    for ax, key, label in zip(axes, ("delta", "unique"), ("δ (log scale)", "unique values (log scale)")):
        proxy = [p for p in points if p["kind"] == "proxy"]
        ax.plot([p[key] for p in proxy], [100 * p["val_top1"] for p in proxy], "o--", mfc="none", color="0.55",
                label="proxy: no retraining")
        for passed, colour, name in ((True, "tab:green", "full run, within budget"),
                                     (False, "tab:red", "full run, over budget")):
            full = [p for p in points if p["kind"] == "full" and p["passed"] == passed]
            if full:
                ax.scatter([p[key] for p in full], [100 * p["val_top1"] for p in full], color=colour, zorder=3,
                           label=name)
        if result.chosen is not None:
            ax.plot([result.chosen[key]], [100 * result.chosen["top1"]], "*", ms=16, color=WFN_COLOUR, label="chosen")
        ax.axhline(base, color=FP32_COLOUR, ls="--", label="fp32")
        ax.axhline(base - result.max_drop, color="k", ls=":", label=f"budget: -{result.max_drop:g} points")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("validation top-1 (%)")
        ax.set_ylim(max(0.0, base - 10), 100.5)  # the budget region; collapsed proxy points sit below
    axes[0].legend(fontsize=7, loc="lower left")
    axes[0].set_title("Full runs decide; the proxy only brackets", fontsize=10)
    axes[1].set_title("The chosen δ: fewest values within budget", fontsize=10)
    fig.tight_layout()
    return fig
