"""α × δ sweeps on the embedded digits default: accuracy, unique values and entropy per setting.

``python -m wfn_core sweep --out wfn_core/assets/sweep_alpha_delta.csv`` regenerates the shipped results that
``notebooks/05_explore_alpha_delta.ipynb`` plots and that :func:`choose_setting` picks the ``digits``
preset from. Accuracy is measured on the **validation** split (``digits(eval_split="val")``), never on
the test split, so choosing a setting from the sweep does not tune on the numbers the course reports.
"""

from __future__ import annotations

import csv
import itertools
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..centres import ZERO_THRESHOLD
from ..clustering import DEFAULT_FRACTIONS, cluster, delta_schedule
from ..config import PRESET_MAX_DROP, build_preset, preset
from ..data import ASSETS_DIR
from ..io import atomic_write_csv
from ..pipeline import CollapseWarning, run_wfn
from ..training import progress, seed_everything

__all__ = [
    "run_point", "sweep", "write_sweep", "read_sweep", "summarise_sweep", "choose_setting", "SWEEP_FIELDS",
    "SWEEP_ALPHAS", "SWEEP_DELTAS", "SWEEP_SEEDS", "SWEEP_SPLIT", "SHIPPED_SWEEP", "cliff_delta", "early_fixing",
]

SWEEP_ALPHAS = (0.0, 0.4, 1.0)
SWEEP_DELTAS = (0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04)
SWEEP_SEEDS = (0, 1, 2)
#: The split the sweep's accuracies are measured on.
SWEEP_SPLIT = "val"
#: The shipped sweep: package data, so an install without the repository finds it too.
SHIPPED_SWEEP: Path = ASSETS_DIR / "sweep_alpha_delta.csv"
SWEEP_FIELDS = (
    "alpha", "delta", "seed", "split", "baseline_top1", "top1", "unique", "unique_nonzero", "entropy_bits",
    "entropy_bits_nonzero", "power_of_two_share", "seconds",
)


def run_point(alpha: float, delta: float, seed: int = 0, callbacks: Any = (), preset_name: str = "digits",
              **overrides: Any) -> dict[str, Any]:
    """One WFN run of a preset with a validation split (``digits``, ``mnist1d_resnet``) at (α, δ, seed), one
    thread, evaluated on the validation split; returns a row of :data:`SWEEP_FIELDS`. ``callbacks`` go to
    :func:`~wfn_core.pipeline.run_wfn` (called after each WFN iteration: the widgets' progress)."""
    config = preset(preset_name, alpha=alpha, delta=delta, seed=seed, **overrides)
    seed_everything(seed, threads=1)
    model, train, val = build_preset(preset_name, config, eval_split=SWEEP_SPLIT)
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapseWarning)  # a sweep maps where the network collapses, on purpose
        result = run_wfn(model, train, val, config, device="cpu", callbacks=callbacks)
    final = result.final
    return {
        "alpha": alpha, "delta": delta, "seed": seed, "split": SWEEP_SPLIT, "baseline_top1": result.baseline["top1"],
        **{k: final[k] for k in SWEEP_FIELDS[5:-1]}, "seconds": round(time.perf_counter() - began, 2),
    }


def sweep(
    alphas: Iterable[float] = SWEEP_ALPHAS, deltas: Iterable[float] = SWEEP_DELTAS, seeds: Iterable[int] = SWEEP_SEEDS,
    preset_name: str = "digits",
) -> list[dict[str, Any]]:
    """Every (α, δ, seed) combination of a preset, with a progress bar."""
    grid = list(itertools.product(alphas, deltas, seeds))
    return [run_point(a, d, s, preset_name=preset_name) for a, d, s in progress(grid, desc="α × δ sweep", leave=True)]


def write_sweep(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write sweep rows as CSV, atomically."""
    return atomic_write_csv(path, rows, SWEEP_FIELDS)


def summarise_sweep(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Means over seeds for each (α, δ): ``alpha``, ``delta``, ``n``, ``top1``, ``unique``, ``entropy_bits``,
    ``baseline_top1``, and the spread over seeds as ``<key>_min`` / ``<key>_max`` for ``top1``, ``unique``
    and ``entropy_bits`` (error bars that show the worst seed); sorted by α then δ."""
    groups: dict[tuple[float, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["alpha"], r["delta"]), []).append(r)
    keys, spread = ("top1", "unique", "entropy_bits", "baseline_top1"), ("top1", "unique", "entropy_bits")
    return [
        {"alpha": a, "delta": d, "n": len(g), **{k: sum(r[k] for r in g) / len(g) for k in keys},
         **{f"{k}_{f.__name__}": f(r[k] for r in g) for k in spread for f in (min, max)}}
        for (a, d), g in sorted(groups.items())
    ]


def cliff_delta(rows: Iterable[dict[str, Any]], alpha: float, max_drop: float = 1.0) -> float | None:
    """The smallest swept δ at ``alpha`` where some seed loses more than ``max_drop`` accuracy points
    against its fp32 baseline (the foot of the accuracy cliff); ``None`` if no seed does."""
    lost = [r["delta"] for r in rows if r["alpha"] == alpha and 100 * (r["baseline_top1"] - r["top1"]) > max_drop]
    return min(lost, default=None)


def early_fixing(weights: torch.Tensor, delta: float, iterations: int = 2,
                 fractions: Sequence[float] = DEFAULT_FRACTIONS) -> list[dict[str, float | int]]:
    """What the first ``iterations`` fixing steps of δ's schedule do to trained ``weights``, without
    retraining: per step ``t``, ``delta_t``, the share of weights fixed, the centres in use, and the mean
    and largest relative move ``|w' − w| / |w|`` of the fixed weights with ``|w| ≥ γ0`` (the weights
    clustering may move; smaller ones go to zero at cost 0)."""
    flat = weights.detach().flatten()
    w = flat.to(torch.float64)  # the moves in float64; the clustering on the weights as the run sees them
    movable = w.abs() >= ZERO_THRESHOLD
    out, values, fixed = [], flat, None
    for t, (fraction, delta_t) in enumerate(zip(fractions[:iterations], delta_schedule(delta, len(fractions)))):
        result = cluster(values, fraction, delta_t, fixed=fixed)  # δ_t of the whole T-step schedule
        values, fixed = result.values, result.fixed.flatten()
        move = ((result.values.flatten().to(torch.float64) - w).abs() / w.abs())[fixed & movable]
        out.append({"t": t, "delta_t": delta_t,
                    "fixed_share": float(fixed.double().mean()), "centres": int(result.centres.numel()),
                    "mean_move": float(move.mean()), "max_move": float(move.max())})
    return out


def read_sweep(path: str | Path = SHIPPED_SWEEP) -> list[dict[str, Any]]:
    """Read a sweep CSV back (numbers as numbers); by default the shipped one."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    ints, texts = {"seed", "unique", "unique_nonzero"}, {"split"}
    return [{k: (v if k in texts else int(v) if k in ints else float(v)) for k, v in row.items()} for row in rows]


def choose_setting(rows: Iterable[dict[str, Any]], max_drop: float = PRESET_MAX_DROP) -> dict[str, Any]:
    """The (α, δ) a preset should use, with margin: among settings whose every seed stays within
    ``max_drop`` validation points of fp32 **and** whose next larger δ (same α) does too, the one with the
    fewest mean unique values (ties: larger δ, then larger α). Requiring the next δ up to pass as well keeps
    the choice one grid step away from the accuracy cliff, so other CPUs and thread counts, which train
    slightly different networks, do not push it over. Returns the :func:`summarise_sweep` row with
    ``worst_drop`` (points) added."""
    rows = list(rows)
    if any(r.get("split", SWEEP_SPLIT) != "val" for r in rows):
        raise ValueError("choose_setting needs validation-split rows (split='val'); "
                         "refusing to choose on the test split")
    worst: dict[tuple[float, float], float] = {}
    for r in rows:
        key = (r["alpha"], r["delta"])
        worst[key] = max(worst.get(key, 0.0), 100 * (r["baseline_top1"] - r["top1"]))
    means = {(m["alpha"], m["delta"]): m for m in summarise_sweep(rows)}
    ok = []
    for (alpha, delta), drop in worst.items():
        larger = sorted(d for a, d in worst if a == alpha and d > delta)
        if drop <= max_drop and larger and worst[alpha, larger[0]] <= max_drop:
            ok.append({**means[alpha, delta], "worst_drop": drop})
    if not ok:
        raise ValueError(f"no swept setting keeps every seed within max_drop={max_drop} points with a δ step to spare")
    return min(ok, key=lambda m: (m["unique"], -m["delta"], -m["alpha"]))
