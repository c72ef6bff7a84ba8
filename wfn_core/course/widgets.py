"""ipywidgets explorers for the notebooks: a live δ slider and an α × δ trade-off explorer.

Each explorer is a small class whose ``update``/``run`` methods hold all the logic (tested in plain
pytest); the widgets only call them. Every explorer has a plain-function twin
(:func:`explore_delta`, :func:`plot_tradeoffs`) for VS Code/Colab users and for nbval.

Figures are PNG bytes in an ``ipywidgets.Image`` of fixed height whose ``value`` is replaced: the page
below never jumps while a figure is redrawn. δ is shown everywhere (slider readout, metrics, plot labels)
with :func:`format_delta`, the Python twin of the sliders' d3 readout format ``.4g``.

Stable CSS classes (``_dom_classes``) for browser tests and styling; each names one element:

- ``wfn-delta-explorer``, ``wfn-alpha-delta-explorer``: the explorers' outer boxes;
- ``wfn-delta-slider``: a δ slider (both explorers); ``wfn-alpha-slider``: the α slider;
- ``wfn-run-button``: "Run this point"; ``wfn-choose-button``: "Choose δ";
- ``wfn-run-progress``: the progress bar of a run or search (its ``max`` is the number of WFN iterations);
- ``wfn-metrics``: the δ explorer's metrics line; ``wfn-message``: the α × δ explorer's message line
  (progress while a run trains, then its result or error);
- ``wfn-figure``: a figure (an ``<img>``).
"""

from __future__ import annotations

import copy
import io
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ipywidgets as W
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
from torch import nn

from .._validation import check_number
from ..clustering import DEFAULT_FRACTIONS, cluster_schedule
from ..config import PRESET_MAX_DROP, preset
from ..fixable import fixable_parameters, flat_values, set_flat_values
from ..metrics import summary
from ..training import evaluate
from .plots import FP32_COLOUR, WFN_COLOUR, new_figure, weight_histogram
from .sweep import SWEEP_FIELDS, SWEEP_SPLIT, read_sweep, run_point, summarise_sweep

__all__ = ["explore_delta", "DeltaExplorer", "plot_tradeoffs", "AlphaDeltaExplorer", "delta_slider_range",
           "format_delta", "alpha_colour"]

#: The δ sliders' lowest value and their step in log10 δ.
DELTA_MIN, LOG10_DELTA_STEP = 1e-3, 0.05
#: The δ sliders' readout (d3-format): 4 significant digits, trailing zeros kept; :func:`format_delta` is its twin.
DELTA_READOUT_FORMAT = ".4g"
#: Pixels per inch of the widgets' PNG figures (their fixed heights follow from it).
FIGURE_DPI = 100
#: α slider range: :func:`alpha_colour` spreads its colours over it.
ALPHA_MIN, ALPHA_MAX = 0.0, 2.0
#: Layout of controls: readable labels at a 1024-px window; a row wraps instead of squeezing them.
SLIDER_LAYOUT = {"width": "340px", "min_width": "260px"}
ROW_LAYOUT = {"flex_flow": "row wrap", "align_items": "center", "width": "100%"}
INITIAL_LABEL = {"description_width": "initial"}  # the label's own width, never cut to "…"


def format_delta(delta: float) -> str:
    """δ as the sliders' readout shows it: d3's ``.4g`` is JavaScript's ``toPrecision(4)`` (trailing zeros
    kept), which for 1e-6 ≤ δ < 1000 is Python's ``#.4g``."""
    return f"{delta:#.4g}"


def snap_delta(delta: float) -> float:
    """δ rounded to what :func:`format_delta` shows, so the number a run uses is the number on the screen."""
    return float(format_delta(delta))


def alpha_colour(alpha: float) -> tuple[float, float, float, float]:
    """A fixed colour per α (viridis, dark enough for text): the same α keeps its colour when others are added.

    sqrt spreads the small α values, where the shipped sweep is dense (0, 0.4, 1).
    """
    share = min(max((alpha - ALPHA_MIN) / (ALPHA_MAX - ALPHA_MIN), 0.0), 1.0)
    return tuple(float(c) for c in plt.get_cmap("viridis")(0.8 * math.sqrt(share)))


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
        weight_histogram(before, after, ax=ax, title=f"δ = {format_delta(delta)}: fixed without retraining")
        out["figure"] = fig
    return out


def _figure_widget(width_in: float, height_in: float) -> W.Image:
    """An image of a fixed height for figures of ``width_in`` × ``height_in`` inches: replacing its ``value``
    never collapses the page (an Output cleared and refilled is empty for a moment, and the page jumps)."""
    width, height = round(width_in * FIGURE_DPI), round(height_in * FIGURE_DPI)
    return W.Image(format="png", layout=W.Layout(width="100%", max_width=f"{width}px", height=f"{height}px",
                                                 object_fit="contain", object_position="left top"),
                   _dom_classes=["wfn-figure"])


def _show(image: W.Image, fig) -> None:
    """Replace what ``image`` shows by ``fig`` (PNG bytes at :data:`FIGURE_DPI`, not cropped: the size stays
    fixed), then free the figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, facecolor="white")
    plt.close(fig)
    image.value = buffer.getvalue()


class _ExplorerBox(W.VBox):
    """A VBox whose plain-text stand-in (what a saved notebook shows before the cell runs) says what to do."""

    def __repr__(self) -> str:
        return "Interactive widget: run this cell to show it (it needs a running kernel)."


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Training's own progress bars off (``WFN_NO_PROGRESS``): the widget shows its own progress, and bars
    drawn from a widget callback land in JupyterLab's log console."""
    before = os.environ.get("WFN_NO_PROGRESS")
    os.environ["WFN_NO_PROGRESS"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["WFN_NO_PROGRESS"]
        else:
            os.environ["WFN_NO_PROGRESS"] = before


def run_point_with_progress(alpha: float, delta: float, on_iteration: Callable[[dict[str, Any]], None],
                            seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """:func:`~wfn_core.course.sweep.run_point` (same run, same row) with ``on_iteration`` called with each
    WFN iteration's history record and training's progress bars off."""
    with _no_progress_bars():
        return run_point(alpha, delta, seed=seed, callbacks=on_iteration, **overrides)


def _error(text: str) -> str:
    return f"<span style='color:#c44'>{text}</span>"


def _metrics_html(m: dict[str, Any]) -> str:
    return (
        f"<b>δ = {format_delta(m['delta'])}</b>: test top-1 <b>{100 * m['top1']:.1f}%</b> (no retraining), "
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
            readout_format=DELTA_READOUT_FORMAT, style=INITIAL_LABEL, layout=W.Layout(**SLIDER_LAYOUT),
            _dom_classes=["wfn-delta-slider"],
        )
        self.info = W.HTML(_dom_classes=["wfn-metrics"])
        self.figure = _figure_widget(9, 3.4)  # explore_delta's figure size
        self.last: dict[str, Any] | None = None
        self.seconds = 0.0
        self.slider.observe(lambda change: self.update(change["new"]), names="value")
        self.widget = _ExplorerBox([self.slider, self.info, self.figure], _dom_classes=["wfn-delta-explorer"])

    def update(self, delta: float) -> dict[str, Any] | None:
        """Re-cluster at ``delta`` (rounded to the readout's digits); shows a message (no traceback) when it cannot."""
        began = time.perf_counter()
        try:
            m = explore_delta(self.model, self.test_loader, snap_delta(float(delta)))
        except ValueError as exc:
            self.info.value = _error(f"Cannot fix at δ = {delta}: {exc}")
            return None
        self.seconds = time.perf_counter() - began
        fig = m.pop("figure")
        self.last = m
        self.info.value = _metrics_html(m) + f" <i>({self.seconds:.2f} s)</i>"
        _show(self.figure, fig)
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
    for i, alpha in enumerate(alphas):
        colour = alpha_colour(alpha)
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
        self.n_iterations = len(run_overrides.get("fractions", preset("digits").fractions))
        self.alpha = W.FloatSlider(value=0.4, min=ALPHA_MIN, max=ALPHA_MAX, step=0.1, description="α",
                                   style=INITIAL_LABEL, layout=W.Layout(**SLIDER_LAYOUT),
                                   _dom_classes=["wfn-alpha-slider"])
        low, high = delta_slider_range(self.n_iterations)
        self.delta = W.FloatLogSlider(value=0.01, base=10, min=low, max=high, step=LOG10_DELTA_STEP, description="δ",
                                      readout_format=DELTA_READOUT_FORMAT, style=INITIAL_LABEL,
                                      layout=W.Layout(**SLIDER_LAYOUT), _dom_classes=["wfn-delta-slider"])
        self.button = W.Button(description="Run this point", icon="play",
                               layout=W.Layout(width="auto", min_width="160px"), _dom_classes=["wfn-run-button"])
        self.choose_button = W.Button(description=f"Choose δ (≤ {PRESET_MAX_DROP:g} points)", icon="search",
                                      tooltip="search the largest δ within the budget at this α (validation split)",
                                      layout=W.Layout(width="auto", min_width="220px"),
                                      _dom_classes=["wfn-choose-button"])
        self.bar = W.IntProgress(value=0, min=0, max=1, description="run", style=INITIAL_LABEL,
                                 layout=W.Layout(width="220px", min_width="160px"), _dom_classes=["wfn-run-progress"])
        self.info = W.HTML(_dom_classes=["wfn-message"])
        self.figure = _figure_widget(2 * 6.4, 4.8)  # plot_tradeoffs' figure size
        #: points this explorer ran, by (α, δ as shown): a second click on the same point does not train again
        self.measured: dict[tuple[float, str], dict[str, Any]] = {}
        self.button.on_click(lambda _: self.run())
        self.choose_button.on_click(lambda _: self.choose())
        controls = W.Box([self.alpha, self.delta, self.button, self.choose_button, self.bar],
                         layout=W.Layout(**ROW_LAYOUT))
        self.widget = _ExplorerBox([controls, self.info, self.figure], _dom_classes=["wfn-alpha-delta-explorer"])

    def redraw(self, highlight: dict[str, Any] | None = None) -> None:
        _show(self.figure, plot_tradeoffs(self.rows, highlight))

    def _busy(self, busy: bool) -> None:
        self.button.disabled = self.choose_button.disabled = busy

    def _ticked(self, alpha: float, delta: float, began: float) -> Callable[[dict[str, Any]], None]:
        """The run's callback: one step of the bar and a message per WFN iteration (its epochs just trained)."""
        def tick(record: dict[str, Any]) -> None:
            top1 = "" if record["top1"] is None else f", validation top-1 {100 * record['top1']:.1f}%"
            self.info.value = (f"Running α = {alpha:g}, δ = {format_delta(delta)}: iteration "
                               f"{record['iteration'] + 1}/{self.n_iterations} done{top1}, {record['unique']} unique "
                               f"values ({time.perf_counter() - began:.0f} s)")
            self.bar.value = record["iteration"] + 1
        return tick

    def run(self) -> dict[str, Any] | None:
        """Run WFN at the sliders' (α, δ); add the point to the curves; a message instead of a traceback.

        A point this explorer already ran is not run again (a second click queued during a run lands here
        once the run is over): the message says so and shows its result.
        """
        alpha, delta = float(self.alpha.value), snap_delta(float(self.delta.value))
        key = (alpha, format_delta(delta))
        if key in self.measured:
            row = self.measured[key]
            self.info.value = (f"α = {alpha:g}, δ = {format_delta(delta)} is already on the curves (not run again): "
                               f"validation top-1 <b>{100 * row['top1']:.1f}%</b>, <b>{row['unique']}</b> unique "
                               "values. Move a slider for a new point.")
            return None
        began = time.perf_counter()
        self.bar.value, self.bar.max, self.bar.description = 0, self.n_iterations, "run"
        self.info.value = f"Running α = {alpha:g}, δ = {format_delta(delta)}: iteration 0/{self.n_iterations}…"
        self._busy(True)
        try:
            row = run_point_with_progress(alpha, delta, self._ticked(alpha, delta, began), **self.run_overrides)
        except ValueError as exc:
            self.info.value = _error(f"Cannot run α = {alpha:g}, δ = {format_delta(delta)}: {exc}")
            return None
        finally:
            self._busy(False)
        self.measured[key] = row
        self.rows.append({k: row[k] for k in SWEEP_FIELDS})
        self.info.value = (
            f"α = {alpha:g}, δ = {format_delta(delta)}: validation top-1 <b>{100 * row['top1']:.1f}%</b>, "
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
        self.info.value = f"Searching δ at α = {alpha:g}…"  # an old message (even an error) would stay otherwise
        self._busy(True)

        def moved(point: dict[str, Any]) -> None:
            if point["stage"] == "full":  # one tick per full run: those are what cost time
                self.bar.max, self.bar.value = point["max_runs"], point["index"]

        try:
            with _no_progress_bars():  # the bar above shows the search's progress
                found = search_preset("digits", overrides={"alpha": alpha, **self.run_overrides}, max_drop=max_drop,
                                      callback=moved)
        except ValueError as exc:
            self.info.value = _error(f"Cannot search at α = {alpha:g}: {exc}")
            return None
        finally:
            self._busy(False)
            self.bar.description = "run"
        if found.delta is None:
            self.info.value = _error(f"No δ found at α = {alpha:g}: {found.reason}")
            return None
        chosen = found.chosen
        row = {"alpha": alpha, "seed": found.extra["seed"], "split": SWEEP_SPLIT, **chosen}
        self.rows.append({k: row[k] for k in SWEEP_FIELDS})
        self.delta.value = found.delta
        self.info.value = (
            f"α = {alpha:g}: chose δ = <b>{format_delta(found.delta)}</b> in {found.full_runs} full runs "
            f"({found.new_runs} new): validation top-1 <b>{100 * chosen['top1']:.1f}%</b> "
            f"({chosen['drop']:+.2f} points), <b>{chosen['unique']}</b> unique values"
        )
        self.redraw(highlight=row)
        return row

    def show(self) -> W.VBox:
        self.redraw()
        return self.widget
