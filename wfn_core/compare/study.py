"""The whole-network study: WFN against per-layer quantisers on one preset, over several seeds.

``python -m wfn_core compare --preset mnist1d_resnet --seeds 0 1 2 --out runs/compare`` runs, for every seed,

* WFN with the preset's settings (its checkpoint in ``OUT/seed-S/wfn``, so a stopped study resumes there,
  and the finished model's plain ``state_dict`` as ``OUT/seed-S/wfn/model.pt``);
* uniform and APoT quantisers per layer (one codebook per weight tensor) at 4 and 3 bits;
* k-means per layer and per network, with k set to the 4-bit count (16) and to WFN's count of values (the
  rows named ``k=WFN``);

each quantiser fine-tuned (straight-through, its codebook fixed) for as many epochs as WFN trains, with WFN's
optimiser and batches, at WFN's learning rate and at a tenth of it, keeping the one with the better
validation top-1; everything is then evaluated on the test split. Rows go to ``OUT/comparison.csv``
(:data:`COLUMNS`) as each finishes, atomically, and a rerun skips the rows already there; the trade-off
figure goes to ``OUT/comparison.png``. :func:`targets` turns the rows into the issue's claims (means over seeds).
"""

from __future__ import annotations

import copy
import csv
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from .._validation import check_int, fail
from ..data import ASSETS_DIR
from ..io import atomic_torch_save, atomic_write_csv
from .baselines import default_methods, validate_finetune, wfn_training_epochs

__all__ = ["COLUMNS", "FOUR_BIT_K", "FINETUNE_LR_FACTORS", "PER_LAYER_4BIT", "SHIPPED_COMPARISON", "SHIPPED_WFN_MODEL",
           "run_study", "read_rows", "mean_rows", "format_means", "targets", "study_methods", "load_shipped_wfn"]

#: The CSV's columns: one row per method and seed (``epochs``: what the method trained, WFN's budget for all;
#: ``finetune_lr``: the fine-tuning learning rate chosen on the validation split, 0 where nothing was fine-tuned;
#: ``val_top1``: validation top-1, what that choice was made on; ``seconds``: the method's wall time on this
#: machine: for WFN its whole run, for a quantiser its fine-tunes at every learning rate tried).
COLUMNS = ("method", "seed", "top1", "unique", "unique_nonzero", "entropy_bits", "entropy_bits_nonzero",
           "power_of_two_share", "bytes", "epochs", "finetune_lr", "val_top1", "seconds")
#: The number of values a 4-bit codebook holds: the second k of the k-means rows.
FOUR_BIT_K = 16
#: Each quantiser is fine-tuned at WFN's learning rate times each factor, and the run with the better validation
#: top-1 is kept: at WFN's rate alone (1e-3 on MNIST-1D) uniform 4-bit per tensor fell from 99.13 % before
#: fine-tuning to 98.20 % after it, which would flatter WFN.
FINETUNE_LR_FACTORS = (1.0, 0.1)
WFN_METHOD = "WFN"
#: The shipped study (``python -m wfn_core compare --preset mnist1d_resnet --seeds 0 1 2``): its CSV, and its
#: seed-0 WFN model as an entropy-coded file (``wfn_core.compare.export``), both package data.
SHIPPED_COMPARISON: Path = ASSETS_DIR / "mnist1d_comparison.csv"
SHIPPED_WFN_MODEL: Path = ASSETS_DIR / "mnist1d_wfn_seed0.wfnz"
_NUMERIC = {"seed": int, "unique": int, "unique_nonzero": int, "bytes": int, "epochs": int}


def study_methods(wfn_model: nn.Module, wfn_unique: int, wfn_epochs: int) -> list[tuple[str, Callable[..., nn.Module]]]:
    """fp32, the per-layer uniform and APoT quantisers at 4 and 3 bits, k-means per layer and per network with
    k = 16 and with k = ``wfn_unique`` (named ``k=WFN``, so the rows of every seed share a name whatever WFN's
    count was), then the finished WFN model (``wfn_epochs``: what it trained)."""
    k = check_int("wfn_unique", wfn_unique, low=1)
    methods = default_methods({WFN_METHOD: wfn_model}, kmeans_k=FOUR_BIT_K, uniform_bits=(4, 3), apot_bits=(4, 3),
                              wfn_epochs=wfn_epochs)
    methods = [(name, fn) for name, fn in methods if "per channel" not in name]
    same_k = [(name.replace(f"k={k}", f"k={WFN_METHOD}"), fn)
              for name, fn in default_methods(kmeans_k=k, uniform_bits=(), apot_bits=()) if name.startswith("k-means")]
    return methods[:-1] + same_k + methods[-1:]


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


def _measure(
    net: nn.Module, name: str, seed: int, val_loader: Any, test_loader: Any, device: str, epochs: int, lr: float,
    val_top1: float | None, seconds: float,
) -> dict[str, Any]:
    from ..metrics import summary
    from ..training import evaluate
    from .baselines import compressed_bytes

    s = summary(net)
    if val_top1 is None:
        val_top1 = evaluate(net, val_loader, device=device, show_progress=False)["top1"]
    top1 = evaluate(net, test_loader, device=device, show_progress=False)["top1"]
    return {"method": name, "seed": seed, "top1": top1,
            "unique": s["unique"], "unique_nonzero": s["unique_nonzero"], "entropy_bits": s["entropy_bits"],
            "entropy_bits_nonzero": s["entropy_bits_nonzero"], "power_of_two_share": s["power_of_two_share"],
            "bytes": compressed_bytes(net), "epochs": epochs, "finetune_lr": lr, "val_top1": val_top1,
            "seconds": round(seconds, 1)}


def _finetuned(
    model: nn.Module, fn: Callable[..., nn.Module], spec: Mapping[str, Any], lrs: Sequence[float], val_loader: Any,
    device: str,
) -> tuple[nn.Module, float, float]:
    """The quantiser ``fn`` fine-tuned at each learning rate of ``lrs`` (same batches each time); returns the
    model with the best validation top-1, that top-1 and its learning rate (ties: the first)."""
    from ..training import evaluate

    best: tuple[nn.Module, float, float] | None = None
    for lr in lrs:
        net = fn(copy.deepcopy(model).to(device), finetune=validate_finetune({**spec, "lr": lr})).to(device)
        val = evaluate(net, val_loader, device=device, show_progress=False)["top1"]
        if best is None or val > best[1]:
            best = (net, val, lr)
    assert best is not None
    return best


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
    where = device or "cpu"
    for seed in seeds:
        config = preset(preset_name, **{**(overrides or {}), "seed": seed})
        epochs = wfn_training_epochs(config)
        seed_everything(seed)
        model, train_loader, test_loader = build_preset(preset_name, config)
        val_loader = build_preset(preset_name, config, eval_split="val")[2]
        began = time.perf_counter()
        wfn_dir = out / f"seed-{seed}" / "wfn"
        resume = (wfn_dir / "wfn_checkpoint.pt").is_file()
        result = run_wfn(model, train_loader, test_loader, config, checkpoint_dir=wfn_dir, resume=resume,
                         device=device)
        wfn_seconds = time.perf_counter() - began
        log(f"seed {seed}: WFN {100 * result.final['top1']:.2f}% top-1, {result.final['unique']} values "
            f"({wfn_seconds:.0f} s{', resumed' if resume else ''})")
        wfn_model = result.model.cpu()
        atomic_torch_save({k: v.detach().clone() for k, v in wfn_model.state_dict().items()}, wfn_dir / "model.pt")
        methods = study_methods(wfn_model, int(summary(wfn_model)["unique"]), epochs)
        todo = [(name, fn) for name, fn in methods if (name, seed) not in done]
        spec = {"train_loader": train_loader, "epochs": epochs, "device": where, "optimizer": config.optimizer,
                "weight_decay": config.weight_decay, "momentum": config.momentum, "grad_clip": config.grad_clip,
                "seed": seed}
        lrs = [config.lr * f for f in FINETUNE_LR_FACTORS]
        for name, fn in progress(todo, desc=f"seed {seed}: methods"):
            began = time.perf_counter()
            if name in ("fp32", WFN_METHOD):  # evaluated as they are: fp32 trains nothing, WFN already trained
                net, val, lr, trained = fn(copy.deepcopy(model)).to(where), None, 0.0, epochs * (name == WFN_METHOD)
            else:
                net, val, lr = _finetuned(model, fn, spec, lrs, val_loader, where)
                trained = epochs
            row = _measure(net, name, seed, val_loader, test_loader, where, trained, lr, val,
                           wfn_seconds if name == WFN_METHOD else time.perf_counter() - began)
            rows.append(row)
            done.add((name, seed))
            atomic_write_csv(csv_path, rows, COLUMNS)
            log(f"seed {seed}: {name:<28} {100 * row['top1']:6.2f}%  {row['unique_nonzero']:>6} non-zero values  "
                f"{row['entropy_bits_nonzero']:.2f} bits  lr {lr:g}  ({time.perf_counter() - began:.0f} s)")
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


#: The per-layer 4-bit methods WFN is held against: 4-bit uniform and APoT grids per tensor, and k-means with
#: 16 centres per tensor (a 4-bit index per weight too: the paper's "per-layer codebooks").
PER_LAYER_4BIT = ("uniform 4-bit per tensor", "APoT 4-bit", f"k-means per layer k={FOUR_BIT_K}")


def targets(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The issue's targets on a study's rows, means over seeds: WFN's drop below fp32 in points (target ≤ 0.5),
    the best per-layer 4-bit method (:data:`PER_LAYER_4BIT`; best = highest mean top-1, ties: fewer values), the
    ratios of its non-zero values (target ≥ 10) and non-zero entropy (target ≥ 1.5) to WFN's, and whether WFN
    is at least as accurate as it."""
    means = {r["method"]: r for r in mean_rows(rows)}
    for needed in ("fp32", WFN_METHOD):
        if needed not in means:
            raise ValueError(f"the rows have no {needed!r} method: rows for {', '.join(means) or 'nothing'}")
    candidates = [means[m] for m in PER_LAYER_4BIT if m in means]
    if not candidates:
        raise ValueError(f"the rows have no per-layer 4-bit method ({', '.join(PER_LAYER_4BIT)})")
    best = max(candidates, key=lambda r: (r["top1"], -r["unique_nonzero"]))
    wfn = means[WFN_METHOD]
    unique_ratio = best["unique_nonzero"] / max(1.0, wfn["unique_nonzero"])
    entropy_ratio = (best["entropy_bits_nonzero"] / wfn["entropy_bits_nonzero"] if wfn["entropy_bits_nonzero"]
                     else float("inf"))
    drop = 100 * (means["fp32"]["top1"] - wfn["top1"])
    return {"wfn": WFN_METHOD, "baseline": best["method"], "wfn_top1": wfn["top1"], "baseline_top1": best["top1"],
            "fp32_top1": means["fp32"]["top1"], "wfn_drop_points": drop, "seeds": wfn["seeds"],
            "wfn_unique_nonzero": wfn["unique_nonzero"], "baseline_unique_nonzero": best["unique_nonzero"],
            "unique_ratio": unique_ratio, "entropy_ratio": entropy_ratio,
            "wfn_at_least_as_accurate": wfn["top1"] >= best["top1"], "within_half_point": drop <= 0.5,
            "ten_times_fewer": unique_ratio >= 10, "entropy_1_5_lower": entropy_ratio >= 1.5}


def load_shipped_wfn() -> nn.Module:
    """The shipped study's seed-0 WFN model (an ``MNIST1DResNet``), decoded from :data:`SHIPPED_WFN_MODEL`
    (the file's checksum is verified), in eval mode."""
    from ..models import MNIST1DResNet
    from .export import load_compressed

    return load_compressed(SHIPPED_WFN_MODEL, MNIST1DResNet()).eval()


def format_means(rows: Sequence[Mapping[str, Any]]) -> str:
    """A text table of :func:`mean_rows`: mean and worst-seed test top-1, non-zero values, non-zero entropy,
    power-of-two share, export bytes, epochs trained and seconds, one line per method."""
    lines = [f"{'method (mean over seeds)':<28} {'top-1 %':>8} {'worst':>6} {'unique≠0':>9} {'H≠0 bits':>9} "
             f"{'PoT %':>6} {'bytes':>7} {'epochs':>6} {'seconds':>7}"]
    for r in mean_rows(rows):
        lines.append(f"{r['method']:<28} {100 * r['top1']:8.2f} {100 * r['top1_min']:6.2f} {r['unique_nonzero']:9.1f} "
                     f"{r['entropy_bits_nonzero']:9.2f} {100 * r['power_of_two_share']:6.1f} {r['bytes']:7.0f} "
                     f"{r['epochs']:6.0f} {r['seconds']:7.0f}")
    return "\n".join(lines)
