"""α × δ sweeps on the embedded digits default: accuracy, unique values and entropy per setting.

``python -m wfn_core sweep --out data/sweep_alpha_delta.csv`` regenerates the shipped results that
``notebooks/05_explore_alpha_delta.ipynb`` plots.
"""

from __future__ import annotations

import csv
import itertools
import time
from pathlib import Path
from typing import Any, Iterable

from .config import preset
from .data import digits
from .io import atomic_write_csv
from .models import load_pretrained_digits
from .pipeline import run_wfn
from .training import progress, seed_everything

__all__ = ["run_point", "sweep", "write_sweep", "read_sweep", "SWEEP_FIELDS", "SWEEP_ALPHAS", "SWEEP_DELTAS", "SWEEP_SEEDS", "summarise_sweep"]

SWEEP_ALPHAS = (0.0, 0.4, 1.0)
SWEEP_DELTAS = (0.0075, 0.015, 0.025, 0.04)
SWEEP_SEEDS = (0, 1, 2)
SWEEP_FIELDS = (
    "alpha", "delta", "seed", "baseline_top1", "top1", "unique", "unique_nonzero", "entropy_bits",
    "entropy_bits_nonzero", "power_of_two_share", "seconds",
)


def run_point(alpha: float, delta: float, seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """One WFN run of the digits preset at (α, δ, seed); returns a row of :data:`SWEEP_FIELDS`."""
    config = preset("digits", alpha=alpha, delta=delta, seed=seed, **overrides)
    seed_everything(seed, threads=1)
    train, test = digits(batch_size=config.batch_size, seed=seed)
    began = time.perf_counter()
    result = run_wfn(load_pretrained_digits(), train, test, config, device="cpu")
    final = result.final
    return {
        "alpha": alpha, "delta": delta, "seed": seed, "baseline_top1": result.baseline["top1"],
        **{k: final[k] for k in SWEEP_FIELDS[4:-1]}, "seconds": round(time.perf_counter() - began, 2),
    }


def sweep(
    alphas: Iterable[float] = SWEEP_ALPHAS, deltas: Iterable[float] = SWEEP_DELTAS, seeds: Iterable[int] = SWEEP_SEEDS
) -> list[dict[str, Any]]:
    """Every (α, δ, seed) combination, with a progress bar."""
    grid = list(itertools.product(alphas, deltas, seeds))
    return [run_point(a, d, s) for a, d, s in progress(grid, desc="α × δ sweep", leave=True)]


def write_sweep(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write sweep rows as CSV, atomically."""
    return atomic_write_csv(path, rows, SWEEP_FIELDS)


def summarise_sweep(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Means over seeds for each (α, δ): ``alpha``, ``delta``, ``n``, ``top1``, ``unique``, ``entropy_bits``,
    ``baseline_top1``; sorted by α then δ."""
    groups: dict[tuple[float, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["alpha"], r["delta"]), []).append(r)
    keys = ("top1", "unique", "entropy_bits", "baseline_top1")
    return [
        {"alpha": a, "delta": d, "n": len(g), **{k: sum(r[k] for r in g) / len(g) for k in keys}}
        for (a, d), g in sorted(groups.items())
    ]


def read_sweep(path: str | Path) -> list[dict[str, Any]]:
    """Read a sweep CSV back (numbers as numbers)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    ints = {"seed", "unique", "unique_nonzero"}
    return [{k: (int(v) if k in ints else float(v)) for k, v in row.items()} for row in rows]
