"""ipywidgets explorers for the notebooks: a live δ slider and an α × δ trade-off explorer.

Each explorer is a small class whose ``update``/``run`` methods hold all the logic (tested in plain
pytest); the widgets only call them. Every explorer has a plain-function twin
(:func:`explore_delta`, :func:`plot_tradeoffs`) for VS Code/Colab users and for nbval.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as W
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import torch
from torch import nn

from .._validation import check_number
from ..clustering import DEFAULT_FRACTIONS, cluster_schedule
from ..config import PRESET_MAX_DROP, preset
from ..fixable import fixable_parameters, flat_values, set_flat_values
from ..metrics import summary
from ..training import evaluate
from .plots import FP32_COLOUR, WFN_COLOUR, new_figure, weight_histogram
from .sweep import SWEEP_FIELDS, SWEEP_SPLIT, read_sweep, run_point, summarise_sweep

__all__ = ["explore_delta", "DeltaExplorer", "plot_tradeoffs", "AlphaDeltaExplorer", "delta_slider_range"]

#: The δ sliders' lowest value and their step in log10 δ.
DELTA_MIN, LOG10_DELTA_STEP = 1e-3, 0.05


def delta_slider_range(n_iterations: int = len(DEFAULT_FRACTIONS)) -> tuple[float, float]:
    """``(min, max)`` of log10 δ for a slider: from :data:`DELTA_MIN` to the last slider step below 1/T.

    δ_0 = δ·T must stay below 1 (``WFNConfig`` refuses the rest), so a slider offers only values that run.
    """
    low = math.log10(DELTA_MIN)
    steps = math.floor((math.log10(1 / n_iterations) - low) / LOG10_DELTA_STEP - 1e-9)  # strictly below 1/T
    return low, round(low + steps * LOG10_DELTA_STEP, 10)


def explore_delta(
    model: nn.Module, test_loader, delta: float, fractions: Sequence[float] = DEFAULT_FRACTIONS, plot: bool = True
) -> dict[str, Any]:
    """Fix ``model``'s weights with the whole δ schedule and no retraining; return metrics (and a figure).

    The model itself is left untouched: the fixed values go into a copy.
    """
    T = len(fractions)
    check_number("delta", delta, low=0, high=1 / T, low_open=True, high_open=True,
                 why=f"δ_0 = δ·T must stay below 1 with T = {T} fixing iterations")
    before = flat_values(fixable_parameters(model))
    results = cluster_schedule(before, delta, fractions)
    after = results[-1].values
    fixed_model = copy.deepcopy(model)
    set_flat_values(fixable_parameters(fixed_model), after)
    out = {"delta": delta, "top1": evaluate(fixed_model, test_loader, device="cpu", show_progress=False)["top1"],
           **summary(after)}
    if plot:
        fig, (ax,) = new_figure(width=9, height=3.4)
        weight_histogram(before, after, ax=ax, title=f"δ = {delta:.4g}: fixed without retraining")
        out["figure"] = fig
    return out


def _show(output: W.Output, fig) -> None:
    """Replace what ``output`` shows by ``fig`` through the widget's state (no output capture: capturing
    display messages races with notebook runners such as nbclient), then free the figure."""
    output.outputs = ()
    output.append_display_data(fig)
    plt.close(fig)


def _metrics_html(m: dict[str, Any]) -> str:
    return (
        f"<b>δ = {m['delta']:.4g}</b>: test top-1 <b>{100 * m['top1']:.1f}%</b> (no retraining), "
        f"<b>{m['unique']}</b> unique values, entropy <b>{m['entropy_bits']:.2f}</b> bits, "
        f"{100 * m['power_of_two_share']:.0f}% single powers of two"
    )


class DeltaExplorer:
    """A δ slider (log scale) that re-clusters the trained network and redraws histogram and metrics."""

    def __init__(self, model: nn.Module, test_loader, delta: float = 0.01) -> None:
        self.model, self.test_loader = model, test_loader
        low, high = delta_slider_range(len(DEFAULT_FRACTIONS))
        self.slider = W.FloatLogSlider(
            value=delta, base=10, min=low, max=high, step=LOG10_DELTA_STEP, description="δ", continuous_update=False,
            readout_format=".4f",
        )
        self.info = W.HTML()
        self.output = W.Output()
        self.last: dict[str, Any] | None = None
        self.seconds = 0.0
        self.slider.observe(lambda change: self.update(change["new"]), names="value")
        self.widget = W.VBox([self.slider, self.info, self.output])

    def update(self, delta: float) -> dict[str, Any] | None:
        """Re-cluster at ``delta``; shows a message (no traceback) when it cannot."""
        began = time.perf_counter()
        try:
            m = explore_delta(self.model, self.test_loader, float(delta))
        except ValueError as exc:
            self.info.value = f"<span style='color:#c44'>Cannot fix at δ = {delta}: {exc}</span>"
            return None
        self.seconds = time.perf_counter() - began
        fig = m.pop("figure")
        self.last = m
        self.info.value = _metrics_html(m) + f" <i>({self.seconds:.2f} s)</i>"
        _show(self.output, fig)
        return m

    def show(self) -> W.VBox:
        self.update(self.slider.value)
        return self.widget


#: The trade-off plots' accuracy axis never starts above this (%), and never below :data:`TRADEOFF_FLOOR`:
#: a point below that is drawn on the floor as ▼ with its real value written next to it.
TRADEOFF_TOP_FLOOR, TRADEOFF_FLOOR = 95.0, 80.0


def plot_tradeoffs(rows: Sequence[dict[str, Any]], highlight: dict[str, Any] | None = None):
    """Accuracy against unique values (log) and against entropy, one curve per α: the mean over seeds,
    error bars from the worst to the best seed on both axes, each point labelled with its δ. The accuracy
    axis reaches down to the worst seed (a collapse below :data:`TRADEOFF_FLOOR` is written out)."""
    fig, axes = new_figure(2, width=6.4, height=4.8)
    means = summarise_sweep(rows)
    lowest = min(100 * m["top1_min"] for m in means)
    floor = max(TRADEOFF_FLOOR, min(TRADEOFF_TOP_FLOOR, math.floor(lowest - 0.5)))
    alphas = sorted({m["alpha"] for m in means})
    palette = plt.get_cmap("viridis")(torch.linspace(0, 0.75, max(1, len(alphas))).numpy())  # dark enough for text
    for i, (colour, alpha) in enumerate(zip(palette, alphas)):
        pts = [m for m in means if m["alpha"] == alpha]
        acc = [max(100 * m["top1"], floor) for m in pts]
        err_y = [[a - max(100 * m["top1_min"], floor) for a, m in zip(acc, pts)],
                 [100 * m["top1_max"] - a for a, m in zip(acc, pts)]]
        for ax, key in zip(axes, ("unique", "entropy_bits")):
            x = [m[key] for m in pts]
            err_x = [[xi - m[f"{key}_min"] for xi, m in zip(x, pts)], [m[f"{key}_max"] - xi for xi, m in zip(x, pts)]]
            ax.errorbar(x, acc, xerr=err_x, yerr=err_y, fmt="o-", color=colour, ms=5, lw=1.5, elinewidth=0.8,
                        capsize=2, alpha=0.9, label=f"α = {alpha:g}")
            for xi, a, m in zip(x, acc, pts):  # δ labels, staggered by α so the curves' labels do not collide
                low = 100 * m["top1"] < floor
                text = f"{m['delta']:g}" + (f": {100 * m['top1']:.0f}%" if low else "")
                ax.annotate(text, (xi, a), xytext=(4, (-12, 5, 14)[i % 3]), textcoords="offset points",
                            fontsize=8, color=colour)
                if low:
                    ax.scatter([xi], [floor], color=colour, marker="v", s=80, zorder=4)
    base = 100 * sum(r["baseline_top1"] for r in rows) / len(rows)
    split = "validation" if all(r.get("split", "val") == "val" for r in rows) else "test"
    for ax, (label, log) in zip(axes, (("unique values, zero included (log scale)", True),
                                       ("entropy of all weights, zero included (bits per weight)", False))):
        ax.axhline(base, color=FP32_COLOUR, ls="--", label="fp32 baseline")
        if highlight is not None:
            key = "unique" if log else "entropy_bits"
            ax.plot([highlight[key]], [max(100 * highlight["top1"], floor)], "*", ms=16, color=WFN_COLOUR,
                    label="new point")
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(mticker.ScalarFormatter())  # plain counts, not 2×10^1
            ax.xaxis.set_minor_formatter(mticker.NullFormatter())
            ax.set_xticks([15, 20, 30, 40, 60, 100])
        ax.set_xlabel(label)
        ax.set_ylabel(f"{split} top-1 (%): mean, bars = seed range")
        ax.set_ylim(floor - 0.3, 100.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_title("Labels: δ. Fewer values cost accuracy only past a point", fontsize=10)
    axes[1].set_title("Lower entropy, same story: larger δ moves left", fontsize=10)
    fig.tight_layout()
    return fig


class AlphaDeltaExplorer:
    """Trade-off curves from a shipped sweep, with a Run button that computes one new (α, δ) point."""

    def __init__(self, sweep_csv: str | Path, **run_overrides: Any) -> None:
        self.rows = read_sweep(sweep_csv)
        self.run_overrides = run_overrides
        self.alpha = W.FloatSlider(value=0.4, min=0.0, max=2.0, step=0.1, description="α")
        n_iterations = len(run_overrides.get("fractions", preset("digits").fractions))
        low, high = delta_slider_range(n_iterations)
        self.delta = W.FloatLogSlider(value=0.01, base=10, min=low, max=high, step=LOG10_DELTA_STEP, description="δ",
                                      readout_format=".4f")
        self.button = W.Button(description="Run this point", icon="play")
        self.choose_button = W.Button(description=f"Choose δ (≤ {PRESET_MAX_DROP:g} points)", icon="search",
                                      tooltip="search the largest δ within the budget at this α (validation split)")
        self.bar = W.IntProgress(value=0, min=0, max=1, description="run")
        self.info = W.HTML()
        self.output = W.Output()
        self.button.on_click(lambda _: self.run())
        self.choose_button.on_click(lambda _: self.choose())
        self.widget = W.VBox([W.HBox([self.alpha, self.delta, self.button, self.choose_button, self.bar]),
                              self.info, self.output])

    def redraw(self, highlight: dict[str, Any] | None = None) -> None:
        _show(self.output, plot_tradeoffs(self.rows, highlight))

    def run(self) -> dict[str, Any] | None:
        """Run WFN at the sliders' (α, δ); add the point to the curves; a message instead of a traceback."""
        alpha, delta = float(self.alpha.value), float(self.delta.value)
        self.bar.value, self.button.disabled = 0, True
        try:
            row = run_point(alpha, delta, **self.run_overrides)
        except ValueError as exc:
            self.info.value = f"<span style='color:#c44'>Cannot run α = {alpha}, δ = {delta}: {exc}</span>"
            return None
        finally:
            self.button.disabled = False
        self.bar.value = 1
        self.rows.append({k: row[k] for k in SWEEP_FIELDS})
        self.info.value = (
            f"α = {alpha:g}, δ = {delta:.4g}: validation top-1 <b>{100 * row['top1']:.1f}%</b>, "
            f"<b>{row['unique']}</b> unique "
            f"values, <b>{row['entropy_bits']:.2f}</b> bits ({row['seconds']:.1f} s)"
        )
        self.redraw(highlight=row)
        return row

    def choose(self, max_drop: float = PRESET_MAX_DROP) -> dict[str, Any] | None:
        """Let the library choose δ at the slider's α (:func:`~wfn_core.delta_search.search_preset`, on the
        validation split); move the δ slider there and add the chosen run to the curves."""
        from ..delta_search import search_preset

        alpha = float(self.alpha.value)
        self.bar.value, self.bar.max, self.bar.description = 0, 1, "search"
        self.button.disabled = self.choose_button.disabled = True

        def moved(point: dict[str, Any]) -> None:
            if point["stage"] == "full":  # one tick per full run: those are what cost time
                self.bar.max, self.bar.value = point["max_runs"], point["index"]

        try:
            found = search_preset("digits", overrides={"alpha": alpha, **self.run_overrides}, max_drop=max_drop,
                                  callback=moved)
        except ValueError as exc:
            self.info.value = f"<span style='color:#c44'>Cannot search at α = {alpha}: {exc}</span>"
            return None
        finally:
            self.button.disabled = self.choose_button.disabled = False
            self.bar.description = "run"
        if found.delta is None:
            self.info.value = f"<span style='color:#c44'>No δ found at α = {alpha:g}: {found.reason}</span>"
            return None
        chosen = found.chosen
        row = {"alpha": alpha, "seed": found.extra["seed"], "split": SWEEP_SPLIT, **chosen}
        self.rows.append({k: row[k] for k in SWEEP_FIELDS})
        self.delta.value = found.delta
        self.info.value = (
            f"α = {alpha:g}: chose δ = <b>{found.delta:.4g}</b> in {found.full_runs} full runs "
            f"({found.new_runs} new): validation top-1 <b>{100 * chosen['top1']:.1f}%</b> "
            f"({chosen['drop']:+.2f} points), <b>{chosen['unique']}</b> unique values"
        )
        self.redraw(highlight=row)
        return row

    def show(self) -> W.VBox:
        self.redraw()
        return self.widget
