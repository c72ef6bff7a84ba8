"""Figures for the notebooks: weight histograms, candidate centres, per-iteration curves.

Every function returns the matplotlib ``Figure`` (or draws on a given ``Axes``). Figures have a white
face colour so they stay readable on dark notebook themes; axes are labelled with units.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from .._validation import fail
from ..centres import ZERO_THRESHOLD, candidate_centres
from ..clustering import relative_distance
from ..metrics import order_histogram

__all__ = [
    "new_figure",
    "weight_histogram",
    "plot_candidates",
    "plot_centres_per_iteration",
    "plot_history",
    "nearest_centre_distance",
    "plot_ablation",
    "plot_cosying_up",
    "plot_top_values",
    "plot_terms",
    "plot_layer_value_heatmap",
    "layer_value_shares",
    "top_value_share_per_layer",
    "top_values",
    "plot_comparison",
    "plot_study",
    "plot_signals",
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


def _per_bin(ax: Axes, x: np.ndarray, edges: np.ndarray, log: bool, label: str) -> None:
    """Counts per bin of equal width (a density estimate: fine for fp32, where almost every value differs)."""
    ax.hist(x, bins=edges, color=FP32_COLOUR, alpha=0.6, histtype="stepfilled", label=label)
    ax.set_ylabel(f"{label}: count per bin of width {edges[1] - edges[0]:.2g}" + ("\n(log scale)" if log else ""))


def _per_value(ax: Axes, x: np.ndarray, log: bool, label: str) -> None:
    """Counts per distinct value, one spike each (exact: the right view once weights share a few values)."""
    values, counts = np.unique(x, return_counts=True)
    ax.vlines(values, 0.8 if log else 0, counts, color=WFN_COLOUR, lw=1.5, label=f"{label} ({len(values)} values)")
    ax.set_ylabel(f"{label}: count per distinct value" + ("\n(log scale)" if log else ""))


def weight_histogram(
    before: torch.Tensor | None,
    after: torch.Tensor | None = None,
    *,
    ax: Axes | Sequence[Axes] | None = None,
    bins: int = 200,
    log: bool = True,
    title: str = "Weight values: fp32 spread out, WFN on a few spikes",
) -> Figure:
    """fp32 weights (``before``) as counts per bin, WFN weights (``after``) as counts per distinct value.

    The two counts mean different things, so they never share a count axis: without ``ax`` each gets its
    own panel (same value range); given one ``Axes`` for both, WFN's counts go on a second y axis (right).
    """
    arrays = [a for a in (before, after) if a is not None]
    if not arrays:
        raise ValueError("weight_histogram needs before, after or both (got neither)")
    twin = isinstance(ax, Axes) and len(arrays) == 2
    if ax is None:
        fig, axes = new_figure(len(arrays), width=6.5 if len(arrays) == 2 else 9, height=4.0)
        axes = list(axes)
    elif isinstance(ax, Axes):
        fig, axes = ax.figure, [ax, ax.twinx()] if twin else [ax]
    else:
        axes = list(ax)
        fig = axes[0].figure
    if len(axes) != len(arrays):
        raise ValueError(f"ax: {len(axes)} axes for {len(arrays)} histograms; give one Axes or one per histogram")
    flat = [_np(a) for a in arrays]
    lo, hi = min(a.min() for a in flat), max(a.max() for a in flat)
    slots = iter(zip(axes, flat))
    if before is not None:
        a, x = next(slots)
        _per_bin(a, x, np.linspace(lo, hi, bins + 1), log, "fp32")
    if after is not None:
        a, x = next(slots)
        _per_value(a, x, log, "WFN")
    for a, loc in zip(axes, ("upper left", "upper right")):
        a.set_yscale("log" if log else "linear")
        a.set_xlim(lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo))
        a.set_xlabel("weight value")
        a.legend(loc=loc, fontsize=8)
    if twin:  # one panel, two count axes: the colour of each label says which counts are which
        axes[0].yaxis.label.set_color(FP32_COLOUR)
        axes[1].yaxis.label.set_color(WFN_COLOUR)
        axes[1].grid(False)
        axes[0].set_title(title)
    elif len(axes) == 2:
        axes[0].set_title("fp32: almost every weight its own value", fontsize=10)
        axes[1].set_title("WFN: every weight on one of a few shared values", fontsize=10)
        fig.suptitle(title)
    else:
        axes[0].set_title(title)
    if ax is None:  # a caller's figure is the caller's to lay out (tight_layout draws it: slow in a widget)
        fig.tight_layout()
    return fig


def plot_candidates(
    max_abs: float,
    deltas: Iterable[float],
    orders: Iterable[int] = (0, 1, 2),
    zero_threshold: float = ZERO_THRESHOLD,
) -> Figure:
    """Positive candidate centres C_k for several δ (rows) and orders k (colours; order k allows at most k+1
    terms), log-scaled axis; each row's label gives its number of positive candidates."""
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
                    label=f"order k={k} (at most {k + 1} term{'s' if k else ''})" if row < len(orders) else None)
            labels.append(f"δ={delta:g}, k={k}: {len(c)} positive values")
            row += 1
    ax.set_xscale("log", base=2)
    ax.set_yticks(range(row), labels)
    ax.invert_yaxis()
    ax.set_xlabel("candidate centre value (log2 scale; the negatives mirror these, and 0 is always a candidate)")
    ax.set_title("Candidate centres: larger δ and lower order give fewer, coarser values")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_centres_per_iteration(counts: Mapping[float, Sequence[int]], ax: Axes | None = None) -> Figure:
    """Centres in use after each fixing iteration, one line per δ (from
    :func:`~wfn_core.course.explain.centres_per_iteration`), on a log-count axis."""
    if not counts:
        raise ValueError("counts (an empty mapping) is not allowed: give the counts of at least one δ")
    if ax is None:
        fig, (ax,) = new_figure(width=8, height=4.2)
    else:
        fig = ax.figure
    palette = sns.color_palette("viridis", len(counts))
    for colour, delta in zip(palette, sorted(counts)):
        per_t = list(counts[delta])
        ax.plot(range(len(per_t)), per_t, "o-", color=colour, label=f"δ = {delta:g} (ends with {per_t[-1]})")
    ax.set_yscale("log")
    ax.set_xlabel("fixing iteration t (δ_t falls to δ at the last one)")
    ax.set_ylabel("centres in use = distinct fixed values (log)")
    ax.set_title("A smaller δ adds its centres mainly in the last iterations")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def plot_history(history: Sequence[dict], baseline: dict | None = None) -> Figure:
    """Accuracy, centres and entropy per fixing iteration of one run (its ``WFNResult.history`` rows)."""
    fig, axes = new_figure(3, width=4.4, height=3.4)
    it = [h["iteration"] for h in history]
    # Centres, not unique values: unique = free weights + centres, and the schedule alone sets the free
    # count, so a unique-value curve looks the same for any δ until the last iteration.
    panels = [
        ("top1", "test top-1 (%)", 100.0, "Accuracy holds while weights are fixed"),
        ("centres", "centres picked (distinct fixed values)", 1.0, "Centres: most arrive as δ_t gets small"),
        ("entropy_bits", "entropy, all weights (bits)", 1.0, "Weight-space entropy (zeros included)"),
    ]
    for ax, (key, label, scale, title) in zip(axes, panels):
        ax.plot(it, [scale * h[key] for h in history], "o-", color=WFN_COLOUR, label="WFN")
        if baseline is not None and key in baseline:
            ax.axhline(scale * baseline[key], color=FP32_COLOUR, ls="--", label="fp32 baseline")
        ax.set_xlabel("fixing iteration t")
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def nearest_centre_distance(weights: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Each weight's relative distance to its nearest centre (float64): the minimum over ``centres`` of
    :func:`~wfn_core.clustering.relative_distance` (the clustering's cost, zero-centre rule included)."""
    if centres.numel() == 0:
        raise fail("centres", "an empty tensor", "at least one centre (a nearest centre needs one)")
    return torch.stack([relative_distance(weights, float(c)) for c in centres.reshape(-1)]).min(0).values


def plot_ablation(runs: Mapping[str, Sequence[dict]], baseline: dict) -> Figure:
    """Test top-1 and centres per fixing iteration for runs on the same δ (label -> ``WFNResult.history``):
    the retraining ablation of notebook 03."""
    fig, axes = new_figure(2, width=5.6, height=3.8)
    palette = sns.color_palette("colorblind", len(runs))
    for colour, (label, history) in zip(palette, runs.items()):
        it = [h["iteration"] for h in history]
        final = history[-1]
        axes[0].plot(it, [100 * h["top1"] for h in history], "o-", color=colour,
                     label=f"{label}: {100 * final['top1']:.1f}%")
        axes[1].plot(it, [h["centres"] for h in history], "o-", color=colour,
                     label=f"{label}: {final['centres']} centres, {final['unique']} unique")
    axes[0].axhline(100 * baseline["top1"], color="grey", ls="--", label="fp32 baseline")
    axes[0].set_ylabel("test top-1 (%)")
    axes[0].set_title("Without retraining the network collapses", fontsize=10)
    axes[1].set_ylabel("centres picked (distinct fixed values)")
    axes[1].set_title("The regulariser keeps the codebook small", fontsize=10)
    for ax in axes:
        ax.set_xlabel("fixing iteration t (same δ for every run)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_cosying_up(before: torch.Tensor, after: Mapping[str, torch.Tensor], centres: torch.Tensor,
                    window: float = 0.1) -> Figure:
    """The free weights before and after a few epochs of training (label -> weights after), against the
    centres of the last clustering call: left, the relative distance to the nearest centre (log axis);
    right, the weight values within ``±window``, with the centres marked."""
    fig, axes = new_figure(2, width=5.6, height=3.8)
    series = {"before training": before, **after}
    palette = sns.color_palette("colorblind", len(series))
    edges = np.logspace(-4, 1, 51)
    values = np.linspace(-window, window, 161)
    for colour, (label, w) in zip(palette, series.items()):
        d = nearest_centre_distance(w, centres)
        # clipped: a weight on a centre (distance 0) shows in the first bin, a tiny weight far from every
        # centre (distance up to inf at w = 0) in the last
        axes[0].hist(_np(d).clip(edges[0], edges[-1]), bins=edges, histtype="step", lw=1.6, color=colour,
                     label=f"{label}: median {d.median().item():.3g}")
        axes[1].hist(_np(w), bins=values, histtype="step", lw=1.6, color=colour, label=label)
    for c in _np(centres):
        if abs(c) <= window:
            axes[1].axvline(c, color="black", ls=":", lw=1)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("relative distance to the nearest centre |w − c| / |w|\n"
                       "(log scale; 10 and more in the last bin)")
    axes[0].set_ylabel("free weights per bin")
    axes[0].set_title("Free weights move towards the centres", fontsize=10)
    axes[1].set_xlabel(f"free weight value (dotted: the centres within ±{window:g})")
    axes[1].set_ylabel(f"free weights per bin of width {values[1] - values[0]:.2g}")
    axes[1].set_title("Density piles up at the centres", fontsize=10)
    axes[1].set_xticks(np.linspace(-window, window, 5))  # five readable ticks, not crowded ones
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def top_values(values: torch.Tensor, k: int = 15) -> list[tuple[float, int, float]]:
    """The ``k`` most frequent values as ``(value, count, share of all weights)``."""
    v, counts = torch.unique(values.detach().reshape(-1), return_counts=True)
    order = torch.argsort(counts, descending=True, stable=True)[:k]
    n = values.numel()
    return [(v[i].item(), counts[i].item(), counts[i].item() / n) for i in order.tolist()]


def layer_value_shares(layer_values: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's distinct values (ascending) and, per tensor, the share of its weights on each:
    ``shares[i, j]`` = fraction of tensor ``i``'s entries equal to ``values[j]`` (each row sums to 1)."""
    flat = [v.detach().reshape(-1).to(torch.float64) for v in layer_values]
    if not flat or any(f.numel() == 0 for f in flat):
        raise ValueError("layer_values needs at least one tensor, and no empty tensor")
    values, inverse = torch.unique(torch.cat(flat), return_inverse=True)
    parts = inverse.split([f.numel() for f in flat])
    rows = [torch.bincount(idx, minlength=values.numel()) / idx.numel() for idx in parts]
    return values, torch.stack(rows)


def top_value_share_per_layer(
    names: Sequence[str], layer_values: Sequence[torch.Tensor], k: int = 5
) -> dict[str, tuple[int, float]]:
    """``{tensor name: (its number of weights, share of them on the network's k most common values)}``:
    high in every large tensor when the network shares one codebook, low with per-tensor codebooks."""
    if len(names) != len(layer_values):
        raise ValueError(f"names ({len(names)}) and layer_values ({len(layer_values)}) must have the same length")
    values, shares = layer_value_shares(layer_values)
    flat = torch.cat([v.detach().reshape(-1) for v in layer_values])
    common = torch.tensor([v for v, _, _ in top_values(flat, k)], dtype=torch.float64)
    on_common = shares[:, torch.isin(values, common)].sum(1).tolist()
    return {n: (v.numel(), s) for n, v, s in zip(names, layer_values, on_common)}


def plot_top_values(values: torch.Tensor, k: int = 15, ax: Axes | None = None, log: bool = True) -> Figure:
    """Bar chart of the ``k`` most frequent values and their share of the weights (log scale by default:
    the rarest of the top 15 hold hundredths of a percent, invisible on a linear axis)."""
    if ax is None:
        fig, (ax,) = new_figure(width=8, height=4.2)
    else:
        fig = ax.figure
    rows = top_values(values, k)
    bars = ax.bar(range(len(rows)), [100 * s for _, _, s in rows], color=WFN_COLOUR)
    ax.bar_label(bars, [f"{c:,}" for _, c, _ in rows], fontsize=7, padding=1)  # the count behind each share
    ax.set_xticks(range(len(rows)), [f"{v:.5g}" for v, _, _ in rows], rotation=60, ha="right")
    ax.set_xlabel("weight value (bar label: number of weights)")
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("share of all weights\n(%" + (", log scale)" if log else ")"))
    total = 100 * sum(s for _, _, s in rows)
    ax.set_title(f"The top {len(rows)} values hold {total:.1f}% of the weights")
    fig.tight_layout()
    return fig


def plot_terms(values: torch.Tensor, ax: Axes | None = None, log: bool = True) -> Figure:
    """Share of weights by the number of signed power-of-two terms in their value (0 terms = zero), from
    :func:`~wfn_core.metrics.order_histogram`; log scale by default so the rare 2- and 3-term values show."""
    if ax is None:
        fig, (ax,) = new_figure(width=6)
    else:
        fig = ax.figure
    hist = order_histogram(values)
    n = sum(hist.values())
    keys = sorted(hist)
    bars = ax.bar([str(k) for k in keys], [100 * hist[k] / n for k in keys], color=WFN_COLOUR)
    ax.bar_label(bars, [f"{100 * hist[k] / n:.2g}% ({hist[k]:,})" for k in keys], fontsize=8, padding=1)
    ax.set_xlabel("signed power-of-two terms in the value (0 = zero)")
    if log:
        ax.set_yscale("log")
        ax.set_ylim(top=ax.get_ylim()[1] * 4)  # room for the tallest bar's label under the title
    ax.set_ylabel("share of weights\n(%" + (", log scale)" if log else ")"))
    ax.set_title("Most weights end as a single power of two (one term)")
    fig.tight_layout()
    return fig


def plot_layer_value_heatmap(names: Sequence[str], layer_values: Sequence[torch.Tensor]) -> Figure:
    """Codebook sharing: rows = weight tensors, columns = the network's distinct values, colour = share of
    that tensor's weights on the value (log colour scale; blank = the tensor never uses it)."""
    if len(names) != len(layer_values):
        raise ValueError(f"names ({len(names)}) and layer_values ({len(layer_values)}) must have the same length")
    values, shares = layer_value_shares(layer_values)
    grid = np.ma.masked_equal(shares.numpy(), 0.0)
    fig, (ax,) = new_figure(width=max(8.0, 4.0 + 0.4 * len(values)), height=2.4 + 0.45 * len(names))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", norm=mcolors.LogNorm(vmin=grid.min(), vmax=1.0))
    ax.set_xticks(range(len(values)), [f"{v:.5g}" for v in values.tolist()], rotation=90, fontsize=8)
    used = (shares > 0).sum(1).tolist()
    labels = [f"{n} ({v.numel():,} weights, {u} values)" for n, v, u in zip(names, layer_values, used)]
    ax.set_yticks(range(len(names)), labels, fontsize=8)
    ax.set_xlabel(f"the network's {len(values)} shared values (one codebook)")
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="share of the tensor's weights (log scale)")
    ax.set_title("Each weight tensor uses a subset of one shared codebook")
    fig.tight_layout()
    return fig


def plot_comparison(rows: Sequence[dict]) -> Figure:
    """Accuracy against non-zero unique values (log) and against the entropy of the non-zero weights, one
    point per method, by family: the paper's counting, one definition for both panels (zero excluded)."""
    fig, axes = new_figure(2, width=6.4, height=4.6)
    families = [  # (label, name prefix, colour, marker)
        ("fp32", "fp32", "#555555", "s"), ("uniform per tensor", "uniform", FP32_COLOUR, "o"),
        ("uniform per channel", "uniform", "#8172B3", "D"), ("APoT per tensor", "APoT", "#55A868", "^"),
        ("k-means", "k-means", "#937860", "v"), ("WFN", "WFN", WFN_COLOUR, "*"),
    ]

    def family(name: str) -> int:
        if name.startswith("uniform"):
            return 2 if "per channel" in name else 1
        return next((i for i, (_, prefix, _, _) in enumerate(families) if name.startswith(prefix)), 0)

    for ax, key, label, log in ((axes[0], "unique_nonzero", "unique non-zero values (log scale)", True),
                                (axes[1], "entropy_bits_nonzero", "entropy of the non-zero weights (bits per weight)",
                                 False)):
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
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 100, not 10^2
        ax.set_xlabel(label)
        ax.set_ylabel("test top-1 (%)")
        ax.legend(fontsize=8, loc="lower right")
    # Both titles are checked in notebook 06 (comparison_figure_claims)
    axes[0].set_title("WFN (stars) ≈ k-means per network given WFN's k", fontsize=10)
    axes[1].set_title("Only uniform 2-bit per tensor comes near WFN", fontsize=10)
    fig.tight_layout()
    return fig


def plot_signals(x: torch.Tensor, y: torch.Tensor, per_class: int = 3) -> Figure:
    """MNIST-1D examples: ``per_class`` signals of each digit (``x``: ``(N, 1, L)``, ``y``: labels), one panel
    per digit, position on the horizontal axis as the data set draws them."""
    fig, axes = plt.subplots(2, 5, figsize=(12, 4.2), sharex=True, sharey=True)
    fig.patch.set_facecolor("white")
    for digit, ax in enumerate(axes.ravel()):
        for signal in x[y == digit][:per_class]:
            ax.plot(signal.reshape(-1).numpy(), lw=1.2)
        ax.set_title(f"digit {digit}", fontsize=10)
        ax.set_xticks([0, 20, 39])
    fig.supxlabel("position (40 samples)")
    fig.supylabel("value")
    fig.tight_layout()
    return fig


def _study_style(method: str) -> tuple[str, str]:
    """(colour, marker) of a study method, by family; 3-bit and k = WFN rows are drawn hollow by the caller."""
    for prefix, style in (("fp32", ("#555555", "s")), ("uniform", (FP32_COLOUR, "o")), ("APoT", ("#55A868", "^")),
                          ("k-means per layer", ("#937860", "v")), ("k-means per network", ("#C44E52", "D")),
                          ("WFN", (WFN_COLOUR, "*"))):
        if method.startswith(prefix):
            return style
    return "#999999", "x"


def plot_study(rows: Sequence[Mapping[str, Any]], title: str | None = None) -> Figure:
    """The study's trade-off (``wfn_core.compare.study``): test top-1 against non-zero unique values (log)
    and against the entropy of the non-zero weights, one point per method at its mean over seeds, the bar
    spanning its worst to best seed. Zero is excluded in both panels (the paper's counting)."""
    from ..compare.study import mean_rows

    means = mean_rows(rows)
    if not means:
        raise ValueError("plot_study needs at least one row")
    fig, axes = new_figure(2, width=6.6, height=4.8)
    for ax, key, label, log in ((axes[0], "unique_nonzero", "unique non-zero values (log scale)", True),
                                (axes[1], "entropy_bits_nonzero", "entropy of the non-zero weights (bits per weight)",
                                 False)):
        for r in means:
            colour, marker = _study_style(r["method"])
            y = 100 * r["top1"]
            err = [[y - 100 * r["top1_min"]], [100 * r["top1_max"] - y]]
            big = r["method"].startswith("WFN")
            hollow = "3-bit" in r["method"] or "k=WFN" in r["method"]  # the second member of a family
            ax.errorbar([r[key]], [y], yerr=err, color=colour, marker=marker, ms=16 if big else 7, capsize=3,
                        mfc="white" if hollow else colour, ls="none", zorder=3 if big else 2, label=r["method"])
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(label)
        ax.set_ylabel("test top-1 (%), worst to best seed")
    axes[1].legend(fontsize=7, loc="lower right", ncols=2)
    seeds = max(int(r["seeds"]) for r in means)
    fig.suptitle(title or f"One codebook for the network (WFN) against per-layer codebooks: mean of {seeds} seeds",
                 fontsize=11)
    fig.tight_layout()
    return fig


def plot_delta_search(result: Any) -> Figure:
    """A δ search (:class:`~wfn_core.delta_search.DeltaSearchResult`): validation top-1 against δ (log) and
    against unique values, proxy points (no retraining) hollow, full runs filled (green within budget, red
    not), the chosen δ starred, fp32 and the budget as lines; a full run that collapsed below the axis is
    drawn on its floor as ▼ with its real accuracy written next to it."""
    fig, axes = new_figure(2, width=6.0, height=4.0)
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
        bottom = max(0.0, base - 10)  # the budget region stays readable; a collapse below is written out
        for p in (p for p in points if p["kind"] == "full" and 100 * p["val_top1"] < bottom):
            ax.scatter([p[key]], [bottom + 0.4], color="tab:red", marker="v", s=90, zorder=4)
            ax.annotate(f"▼ below the axis: δ = {p['delta']:.3g}\nat {100 * p['val_top1']:.1f}% "
                        f"({p['unique']} values)", (p[key], bottom + 0.4), textcoords="offset points", fontsize=8,
                        color="tab:red", xytext=(-8 if key == "delta" else 8, 8),
                        ha="right" if key == "delta" else "left")  # away from the panel's edge
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.02, not 2×10^-2
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks([v for v in ((0.005, 0.01, 0.02, 0.03, 0.05, 0.1) if key == "delta" else (2, 5, 10, 20, 50, 100))
                       if min(p[key] for p in points) <= v <= max(p[key] for p in points)])
        ax.set_xlabel(label)
        ax.set_ylabel("validation top-1 (%)")
        ax.set_ylim(bottom, 100.5)
    axes[1].legend(fontsize=8, loc="center left")
    axes[0].set_title("Full runs decide; the proxy only brackets", fontsize=10)
    axes[1].set_title("The chosen δ: fewest values within budget", fontsize=10)
    fig.tight_layout()
    return fig
