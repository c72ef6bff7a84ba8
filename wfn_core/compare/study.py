"""The whole-network study: WFN against per-layer quantisers on one preset, over several seeds.

``python -m wfn_core compare --preset mnist1d_resnet --seeds 0 1 2 --out runs/compare`` runs, for every seed,

* WFN with the preset's settings (its checkpoint in ``OUT/seed-S/wfn``, so a stopped study resumes there);
* uniform and APoT quantisers per layer (one codebook per weight tensor) at 4 and 3 bits;
* k-means per layer and per network, with k set to WFN's count of values and to the 4-bit count (16);

each quantiser fine-tuned (straight-through, its codebook fixed) for as many epochs as WFN trains, with WFN's
optimiser, learning rate and batches, then evaluated on the test split. Rows go to ``OUT/comparison.csv``
(:data:`COLUMNS`) as each finishes, atomically, and a rerun skips the rows already there; the trade-off
figure goes to ``OUT/comparison.png``. :func:`targets` turns the rows into the issue's claims (means over seeds).
"""

from __future__ import annotations

import csv
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from .._validation import check_int, fail
from ..io import atomic_write_csv
from .baselines import compare, default_methods, paper_claim, wfn_training_epochs

__all__ = ["COLUMNS", "FOUR_BIT_K", "run_study", "read_rows", "mean_rows", "targets", "study_methods"]

#: The CSV's columns: one row per method and seed (``epochs``: what the method trained, WFN's budget for all;
#: ``seconds``: the method's wall time on this machine: for WFN its whole run, for a quantiser its fine-tune).
COLUMNS = ("method", "seed", "top1", "unique", "unique_nonzero", "entropy_bits", "entropy_bits_nonzero",
           "power_of_two_share", "bytes", "epochs", "seconds")
#: The number of values a 4-bit codebook holds: the second k of the k-means rows.
FOUR_BIT_K = 16
WFN_METHOD = "WFN"
_NUMERIC = {"seed": int, "unique": int, "unique_nonzero": int, "bytes": int, "epochs": int}
_AS_IS = ("method",)


def study_methods(wfn_model: nn.Module, wfn_unique: int, wfn_epochs: int) -> list[tuple[str, Callable[..., nn.Module]]]:
    """fp32, the per-layer uniform and APoT quantisers at 4 and 3 bits, k-means per layer and per network
    with k = ``wfn_unique`` and k = 16, then the finished WFN model (``wfn_epochs``: what it trained)."""
    ks = sorted({check_int("wfn_unique", wfn_unique, low=1), FOUR_BIT_K})
    methods = default_methods({WFN_METHOD: wfn_model}, kmeans_k=ks, uniform_bits=(4, 3), apot_bits=(4, 3),
                              wfn_epochs=wfn_epochs)
    return [(name, fn) for name, fn in methods if "per channel" not in name]


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a study's CSV, numbers parsed (missing file: no rows)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or tuple(reader.fieldnames) != COLUMNS:
            raise ValueError(f"{path} is not a comparison CSV: its columns are {reader.fieldnames}, "
                             f"expected {', '.join(COLUMNS)}")
        return [{k: _NUMERIC.get(k, float)(v) if k != "method" else v for k, v in row.items()} for row in reader]


def _row(table_row: Mapping[str, Any], seed: int, seconds: float) -> dict[str, Any]:
    return {"method": table_row["method"], "seed": seed, "top1": table_row["top1"], "unique": table_row["unique"],
            "unique_nonzero": table_row["unique_nonzero"], "entropy_bits": table_row["entropy_bits"],
            "entropy_bits_nonzero": table_row["entropy_bits_nonzero"],
            "power_of_two_share": table_row["power_of_two_share"], "bytes": table_row["compressed_bytes"],
            "epochs": table_row["finetune_epochs"], "seconds": round(seconds, 1)}


def run_study(
    preset_name: str,
    seeds: Sequence[int],
    out: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    device: str | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run the study (module docstring) and return every row of ``out/comparison.csv``; rows already in it
    (same method and seed) are kept, not run again."""
    import torch

    from ..config import build_preset, preset
    from ..metrics import summary
    from ..pipeline import run_wfn
    from ..training import progress, seed_everything

    if isinstance(seeds, (str, bytes)) or not seeds:
        raise fail("seeds", seeds, "a non-empty list of seeds (non-negative integers)")
    seeds = [check_int("seed", s, low=0) for s in seeds]
    out = Path(out)
    csv_path = out / "comparison.csv"
    rows = read_rows(csv_path)
    done = {(r["method"], r["seed"]) for r in rows}
    for seed in seeds:
        config = preset(preset_name, **{**(overrides or {}), "seed": seed})
        epochs = wfn_training_epochs(config)
        seed_everything(seed)
        model, train_loader, test_loader = build_preset(preset_name, config)
        began = time.perf_counter()
        wfn_dir = out / f"seed-{seed}" / "wfn"
        resume = (wfn_dir / "wfn_checkpoint.pt").is_file()
        result = run_wfn(model, train_loader, test_loader, config, checkpoint_dir=wfn_dir, resume=resume,
                         device=device)
        wfn_seconds = time.perf_counter() - began
        log(f"seed {seed}: WFN {100 * result.final['top1']:.2f}% top-1, {result.final['unique']} values "
            f"({wfn_seconds:.0f} s{', resumed' if resume else ''})")
        wfn_model = result.model.cpu()
        methods = study_methods(wfn_model, int(summary(wfn_model)["unique"]), epochs)
        todo = [(name, fn) for name, fn in methods if (name, seed) not in done]
        finetune = {"lr": config.lr, "optimizer": config.optimizer, "weight_decay": config.weight_decay,
                    "momentum": config.momentum, "grad_clip": config.grad_clip, "seed": seed}
        for name, fn in progress(todo, desc=f"seed {seed}: methods"):
            began = time.perf_counter()
            [table_row] = compare(model, [(name, fn)], train_loader, test_loader, finetune_epochs=epochs,
                                  device=device or "cpu", finetune_options=finetune)
            rows.append(_row(table_row, seed, wfn_seconds if name == WFN_METHOD else time.perf_counter() - began))
            done.add((name, seed))
            atomic_write_csv(csv_path, rows, COLUMNS)
            log(f"seed {seed}: {name:<28} {100 * table_row['top1']:6.2f}%  {table_row['unique_nonzero']:>6} "
                f"non-zero values  {table_row['entropy_bits_nonzero']:.2f} bits  ({time.perf_counter() - began:.0f} s)")
        del model
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return rows


def mean_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per method (first-seen order): the mean of each number over the seeds, ``top1_min`` and
    ``top1_max`` (the spread), and ``seeds`` (how many)."""
    by_method: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    out = []
    for method, group in by_method.items():
        mean = {k: statistics.fmean(float(r[k]) for r in group) for k in COLUMNS[2:]}
        out.append({"method": method, **mean, "top1_min": min(r["top1"] for r in group),
                    "top1_max": max(r["top1"] for r in group), "seeds": len(group)})
    return out


def targets(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The issue's targets on a study's rows, means over seeds: WFN's drop below fp32 in points (target ≤ 0.5),
    the best per-layer 4-bit method by accuracy, the ratios of its non-zero values (target ≥ 10) and non-zero
    entropy (target ≥ 1.5) to WFN's, and whether WFN is at least as accurate as it."""
    means = {r["method"]: r for r in mean_rows(rows)}
    for needed in ("fp32", WFN_METHOD):
        if needed not in means:
            raise ValueError(f"the rows have no {needed!r} method: rows for {', '.join(means) or 'nothing'}")
    claim = paper_claim(list(means.values()), WFN_METHOD, bits=4)
    drop = 100 * (means["fp32"]["top1"] - means[WFN_METHOD]["top1"])
    return {**claim, "fp32_top1": means["fp32"]["top1"], "wfn_drop_points": drop,
            "seeds": means[WFN_METHOD]["seeds"],
            "within_half_point": drop <= 0.5, "ten_times_fewer": claim["unique_ratio"] >= 10,
            "entropy_1_5_lower": claim["entropy_ratio"] >= 1.5}
