"""Command line: ``python -m wfn_core VERB ...`` (also installed as ``wfn``), and running a preset end to end.

``run`` works in one process or under ``torchrun`` (DDP through ``torch.distributed``; backend ``nccl`` on
GPUs, ``gloo`` on the CPU). Under ``torchrun`` the run keeps the single-process schedule: the preset's
batch is the *global* batch (one optimiser step sees that many images over all ranks), so each rank trains
on batch / world size and an epoch makes as many steps as in one process, with the same learning rate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from ._validation import check_choice
from .config import WFNConfig, build_preset, preset
from .io import atomic_torch_save, atomic_write_csv, atomic_write_text
from .pipeline import CHECKPOINT_NAME, WFNResult, run_wfn
from .training import seed_everything

__all__ = [
    "main", "build_parser", "run_preset", "write_run_outputs", "distributed_loader",
    "per_rank_batch", "scaled_config", "SUMMARY_KEYS", "LR_SCALING",
]

SUMMARY_KEYS = (
    "baseline_top1", "final_top1", "unique", "unique_nonzero", "entropy_bits", "entropy_bits_nonzero",
    "power_of_two_share", "seconds",
)
#: How the learning rate follows a global batch other than the preset's: ``none`` keeps it, ``linear``
#: multiplies it by global batch / preset's batch (Goyal et al. 2017, "Accurate, Large Minibatch SGD").
LR_SCALING = ("none", "linear")



def per_rank_batch(batch_size: int, world_size: int) -> int:
    """The batch each of ``world_size`` ranks trains on so that one step sees ``batch_size`` images."""
    if batch_size % world_size:
        below, above = batch_size - batch_size % world_size, batch_size - batch_size % world_size + world_size
        nearest = f"{below} or {above}" if below > 0 else f"{above}"
        raise ValueError(
            f"batch_size={batch_size} is not allowed under torchrun with {world_size} processes: it must divide "
            f"evenly by the world size (each rank trains on batch_size / {world_size} images a step, so that "
            f"a step sees batch_size images, as in one process); choose a multiple of {world_size}, for example "
            f"{nearest}"
        )
    return batch_size // world_size


def distributed_loader(loader: DataLoader, seed: int) -> DataLoader:
    """This rank's share of a training loader whose batch size is the global batch.

    A :class:`DistributedSampler` deals every rank the same number of images per epoch (padding with
    at most world size - 1 repeats), so the ranks' last batches match and DDP's mean of their gradients
    is the gradient of the global batch.
    """
    world = dist.get_world_size()
    sampler = DistributedSampler(loader.dataset, shuffle=True, seed=seed)
    return DataLoader(
        loader.dataset, batch_size=per_rank_batch(loader.batch_size, world), sampler=sampler,
        num_workers=loader.num_workers, pin_memory=loader.pin_memory, drop_last=False,
    )


def scaled_config(name: str, overrides: dict[str, Any] | None = None, lr_scaling: str = "none") -> WFNConfig:
    """The preset with ``overrides``; under ``lr_scaling="linear"`` its learning rate times global batch
    (``overrides["batch_size"]``) / the preset's batch."""
    check_choice("lr_scaling", lr_scaling, LR_SCALING)
    config = preset(name, **(overrides or {}))
    if lr_scaling == "linear":
        config = config.replace(lr=config.lr * config.batch_size / preset(name).batch_size)
    return config


def write_run_outputs(
    result: WFNResult, out: Path, seconds: float, setup: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``model.pt`` (plain state_dict), ``history.csv`` and ``summary.json``, each written atomically;
    ``setup`` (world size, batches, learning rate) is added to the summary."""
    atomic_torch_save({k: v.detach().cpu() for k, v in result.model.state_dict().items()}, out / "model.pt")
    atomic_write_csv(out / "history.csv", result.history, list(result.history[0]))
    final = result.final
    summary = {
        "baseline_top1": result.baseline["top1"],
        "final_top1": final["top1"],
        **{k: final[k] for k in SUMMARY_KEYS[2:-1]},
        "seconds": seconds,
        **(setup or {}),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary



def _search_first(
    name: str, config: WFNConfig, out: Path, weights: Path | None, data_root: Path | None, device: str | None,
    search: dict[str, Any],
) -> tuple[WFNConfig, dict[str, Any]]:
    """Search δ on the validation split for ``config`` (its other settings as given); write
    ``out/search.json``; return the config with that δ and what ``summary.json`` records about it."""
    from .delta_search import search_preset, write_search

    found = search_preset(name, config=config, weights=weights, data_root=data_root, device=device, **search)
    write_search(found, out / "search.json")
    if found.delta is None:
        raise ValueError(f"--delta auto found no δ: {found.reason} (details in {out / 'search.json'})")
    chosen = found.chosen
    print(found.table())
    print(f"δ = {found.delta:g} chosen on the validation split ({chosen['drop']:.2f} points below fp32, "
          f"{found.full_runs} full runs, {found.new_runs} new); now the run, evaluated on the test split")
    record = {
        "delta": found.delta, "delta_source": "search",
        "delta_search": {"split": found.split, "max_drop": found.max_drop, "max_runs": found.max_runs,
                         "full_runs": found.full_runs, "new_runs": found.new_runs,
                         "val_baseline_top1": found.baseline_top1, "val_top1": chosen["top1"],
                         "val_drop": chosen["drop"], "bracket": list(found.bracket), "reason": found.reason,
                         "file": "search.json"},
    }
    return config.replace(delta=found.delta), record


def run_preset(
    name: str,
    out: str | Path,
    overrides: dict[str, Any] | None = None,
    weights: Path | None = None,
    data_root: Path | None = None,
    resume: bool = False,
    device: str | None = None,
    lr_scaling: str = "none",
    delta_search: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Run WFN with a preset and write its outputs to ``out``; returns the summary on rank 0.

    ``overrides["batch_size"]`` is the global batch (default: the preset's); under ``torchrun`` each
    rank trains on global batch / world size. ``lr_scaling`` (:data:`LR_SCALING`) says how the learning
    rate follows a global batch other than the preset's.

    ``delta_search`` (keyword arguments of :func:`wfn_core.delta_search.search_delta`, ``{}`` for its
    defaults) chooses δ first, on the validation split (``--delta auto``): the search goes to
    ``search.json`` and ``summary.json`` records ``delta``, ``delta_source`` and ``delta_search``.
    """
    config = scaled_config(name, overrides, lr_scaling)
    out = Path(out)
    if (out / CHECKPOINT_NAME).exists() and not resume:
        raise ValueError(f"{out} already holds a WFN run; pass --resume to continue it, or choose another --out")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    batch = per_rank_batch(config.batch_size, world)  # refused here, before any process group or data
    chosen: dict[str, Any] = {}
    if delta_search is not None:
        if world > 1:
            raise ValueError(
                "--delta auto is not supported under torchrun: run `python -m wfn_core search` in one process "
                "first, then pass the δ it prints with --delta"
            )
        config, chosen = _search_first(name, config, out, weights, data_root, device, delta_search)
    distributed = world > 1
    if distributed and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device != "cpu" else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank() if distributed else 0
    if device is None and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if distributed else "cuda"
    if device is not None and device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    try:
        seed_everything(config.seed)
        model, train_loader, test_loader = build_preset(name, config, weights, data_root)
        if distributed:
            train_loader = distributed_loader(train_loader, config.seed)
        began = time.perf_counter()
        result = run_wfn(model, train_loader, test_loader, config, checkpoint_dir=out, resume=resume, device=device)
        seconds = time.perf_counter() - began
        if rank != 0:
            return None
        setup = {"world_size": world, "batch_per_rank": batch, "global_batch": config.batch_size,
                 "lr": config.lr, "lr_scaling": lr_scaling, **chosen}
        summary = write_run_outputs(result, out, seconds, setup)
        print(result.table())
        spread = f"; {world} processes x batch {batch} = global batch {config.batch_size}" if distributed else ""
        print(
            f"{name}: top-1 {100 * summary['baseline_top1']:.2f}% -> {100 * summary['final_top1']:.2f}%, "
            f"{summary['unique']} unique values ({summary['unique_nonzero']} non-zero), "
            f"{summary['entropy_bits']:.2f} bits, {summary['seconds']:.1f} s{spread}; wrote {out}"
        )
        return summary
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()


# ----------------------------------------------------------------------------- command line


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _delta_arg(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'auto'") from None


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a number >= 0")
    return value


def _add_setting_options(p: argparse.ArgumentParser) -> None:
    """What ``run`` and ``search`` both take: overrides of the preset, its starting weights, device, threads."""
    p.add_argument("--alpha", type=float, default=None, help="regularisation ratio α >= 0 (default: preset's)")
    p.add_argument("--seed", type=int, default=None, help="seed (default: preset's)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per fixing iteration (default: preset's)")
    p.add_argument("--weights", type=Path, default=None, help="starting state_dict (default: the preset's model)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch CPU threads (default: torch's choice; results on the CPU depend on it)")


def _overrides(args: argparse.Namespace, **extra: object) -> dict:
    """The preset fields the command line sets (α, seed, epochs and ``extra``), leaving out those not given."""
    given = {"alpha": args.alpha, "seed": args.seed, "epochs_per_iteration": args.epochs, **extra}
    return {k: v for k, v in given.items() if v is not None}


def _add_search_options(p: argparse.ArgumentParser, prefix: str = "") -> None:
    from .config import PRESET_MAX_DROP
    from .delta_search import DEFAULT_MAX_RUNS

    p.add_argument("--max-drop", type=_non_negative_float, default=None,
                   help=f"{prefix}accuracy budget: validation top-1 points below fp32 (default {PRESET_MAX_DROP})")
    p.add_argument("--max-runs", type=_positive_int, default=None,
                   help=f"{prefix}most full WFN runs the search may use, cached ones included "
                        f"(default {DEFAULT_MAX_RUNS})")
    p.add_argument("--cache", type=Path, default=None,
                   help=f"{prefix}folder caching the search's runs "
                        "(default: $WFN_CACHE/delta_search, else ~/.cache/wfn/delta_search)")
    p.add_argument("--no-cache", action="store_true", help=f"{prefix}neither read nor write the cache")


#: The data sets with a shipped fp32 model: ``train-baseline`` and ``evaluate`` take them.
DATASETS = ("digits", "mnist1d")


def _recipes() -> dict[str, dict[str, Any]]:
    from .models import DIGITS_BASELINE_RECIPE, MNIST1D_BASELINE_RECIPE

    return {"digits": DIGITS_BASELINE_RECIPE, "mnist1d": MNIST1D_BASELINE_RECIPE}


def _dataset(name: str, batch_size: int, seed: int):
    """``(fresh model, train loader, test loader)`` of a data set with a shipped model."""
    from . import data, models

    if name == "mnist1d":
        return models.MNIST1DResNet(), *data.mnist1d(batch_size=batch_size, seed=seed)
    return models.DigitsCNN(), *data.digits(batch_size=batch_size, seed=seed)


def build_parser() -> argparse.ArgumentParser:
    RECIPES = _recipes()
    parser = argparse.ArgumentParser(prog="python -m wfn_core", description="Weight Fixing Networks")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("train-baseline", help="train the fp32 model WFN starts from",
                         description="Train a data set's fp32 model on its training split and write its state_dict. "
                         "Defaults are the recipe of the shipped checkpoint: " + "; ".join(
                             f"{d}: {', '.join(f'{k}={v}' for k, v in r.items())}" for d, r in RECIPES.items()))
    p.add_argument("--dataset", choices=list(DATASETS), default="digits", help="data set (default: digits)")
    p.add_argument("--out", type=Path, required=True,
                   help="where to write the state_dict (.pt; shipped: wfn_core/assets/digits_cnn.pt, "
                        "wfn_core/assets/mnist1d_resnet.pt)")
    p.add_argument("--epochs", type=_positive_int, default=None, help="epochs (default: the data set's recipe)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the recipe's)")
    p.add_argument("--weight-decay", type=float, default=None, help="Adam weight decay (default: the recipe's)")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="batch size (default: the recipe's)")
    p.add_argument("--seed", type=int, default=None, help="seed (default: the recipe's)")

    p = verbs.add_parser("evaluate", help="evaluate a model on its test split")
    p.add_argument("--dataset", choices=list(DATASETS), default="digits", help="data set (default: digits)")
    p.add_argument(
        "--weights", type=Path, default=None, help="state_dict to evaluate (default: the data set's shipped model)"
    )
    p = verbs.add_parser(
        "run",
        help="run Weight Fixing on a preset (also under torchrun for DDP)",
        description="Run WFN: writes model.pt (plain state_dict), history.csv and summary.json to --out. "
        "Under `torchrun --nproc_per_node=N` it trains with DistributedDataParallel.",
    )
    p.add_argument("--preset", required=True, help="named settings: " + ", ".join(_preset_names()))
    p.add_argument("--delta", type=_delta_arg, default=None,
                   help="base relative distance δ in (0, 1), or auto: search it on the validation split first "
                        "(see the search verb; writes search.json and records it in summary.json) (default: preset's)")
    _add_setting_options(p)
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="global batch: images per optimiser step over all torchrun processes, each of which "
                        "trains on batch-size / processes (default: preset's)")
    p.add_argument("--lr-scaling", choices=["none", "linear"], default="none",
                   help="learning rate for a batch other than the preset's: none keeps the preset's, linear "
                        "multiplies it by batch-size / preset's batch (default: none)")
    p.add_argument("--data-root", type=Path, default=None, help="data set root (CIFAR-10/ImageNet presets)")
    p.add_argument("--out", type=Path, required=True, help="output folder (checkpoint, model, history, summary)")
    p.add_argument("--resume", action="store_true", help="continue from the last complete iteration in --out")
    _add_search_options(p, prefix="with --delta auto: ")
    p = verbs.add_parser(
        "search",
        help="search the largest δ within an accuracy budget on the validation split",
        description="Bracket δ with the no-retraining proxy, then bisect on log δ with at most --max-runs full "
        "WFN runs, each evaluated on the validation split (never the test split). "
        "Writes search.json and search.png to --out; "
        "runs are cached, so the same search again finishes in seconds.",
    )
    p.add_argument("--preset", required=True, help="named settings with a validation split: digits, mnist1d_resnet")
    _add_setting_options(p)
    p.add_argument("--out", type=Path, required=True, help="output folder (search.json, search.png)")
    _add_search_options(p)
    p = verbs.add_parser("sweep", help="α × δ sweep of a preset on the validation split "
                                       "(the notebooks' trade-off curves; one thread)")
    p.add_argument("--preset", default="digits", help="a preset with a validation split: digits (default), "
                                                      "mnist1d_resnet")
    p.add_argument("--alphas", type=float, nargs="+", default=None, help="α values (default: 0 0.4 1)")
    p.add_argument("--deltas", type=float, nargs="+", default=None,
                   help="δ values (default: 0.0075 0.01 0.015 0.02 0.025 0.03 0.04)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: 0 1 2)")
    p.add_argument("--out", type=Path, required=True,
                   help="CSV to write (shipped: wfn_core/assets/sweep_alpha_delta.csv)")
    p = verbs.add_parser(
        "compare", help="WFN against per-layer and per-network quantisers over several seeds (CSV + figure)",
        description="For each seed: a WFN run with the preset's settings, then uniform and APoT per layer at 4 and "
        "3 bits and k-means per layer and per network (k = WFN's count and 16), each fine-tuned for as many epochs "
        "as WFN trains, all evaluated on the test split. Writes OUT/comparison.csv (one row per method and seed, "
        "written as each finishes: a rerun continues where it stopped) and OUT/comparison.png.",
    )
    p.add_argument("--preset", required=True, help="named settings: " + ", ".join(_preset_names()))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    p.add_argument("--out", type=Path, required=True, help="output folder (comparison.csv, comparison.png, runs)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=_positive_int, default=None, help="CPU threads (default: torch's)")
    p = verbs.add_parser("export", help="write a finished run's model as one entropy-coded file")
    p.add_argument("run_dir", type=Path, help="finished run folder (model.pt, wfn_checkpoint.pt)")
    p.add_argument("out", type=Path, help="compressed file to write (for example model.wfnz)")

    p = verbs.add_parser("notebooks", help="execute the notebook sequence (what `make run` does)")
    p.add_argument("--src", type=Path, default=Path("notebooks"), help="folder of NN_*.ipynb (default: notebooks)")
    p.add_argument("--out", type=Path, default=None, help="folder for the executed copies (default: in place)")

    p = verbs.add_parser("student", help="write the student version of the notebooks (solutions removed)",
                         description="Copy the notebooks with every solution between ### BEGIN SOLUTION and "
                         "### END SOLUTION replaced by raise NotImplementedError() (nbgrader's convention), "
                         "predict-then-run answers hidden and outputs cleared.")
    p.add_argument("--src", type=Path, default=Path("notebooks"), help="folder of NN_*.ipynb (default: notebooks)")
    p.add_argument("--out", type=Path, required=True, help="folder to write the student notebooks to")
    return parser


def _preset_names() -> list[str]:
    from .config import PRESETS

    return list(PRESETS)


def _train_baseline(args: argparse.Namespace) -> int:
    from .models import sha256_file
    from .training import train_baseline

    recipe = {k: v if getattr(args, k) is None else getattr(args, k) for k, v in _recipes()[args.dataset].items()}
    seed_everything(recipe["seed"], threads=1)  # one thread: the shipped file's SHA is reproducible per CPU kind
    model, train_loader, test_loader = _dataset(args.dataset, recipe["batch_size"], recipe["seed"])
    metrics = train_baseline(
        model, train_loader, test_loader, epochs=recipe["epochs"], lr=recipe["lr"],
        weight_decay=recipe["weight_decay"], device="cpu", out=args.out,
    )
    print(f"{args.dataset} baseline: test top-1 {100 * metrics['top1']:.2f}%  loss {metrics['loss']:.4f}")
    print(f"wrote {args.out}  sha256 {sha256_file(args.out)}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .models import load_pretrained_digits, load_pretrained_mnist1d, load_state_dict_file
    from .training import evaluate

    model, _, test_loader = _dataset(args.dataset, 256, 0)
    if args.weights is None:
        model = load_pretrained_mnist1d() if args.dataset == "mnist1d" else load_pretrained_digits()
    else:
        model.load_state_dict(load_state_dict_file(args.weights))
    metrics = evaluate(model, test_loader, device="cpu")
    print(json.dumps({k: round(v, 4) for k, v in metrics.items()}))
    print(f"{args.dataset} test top-1: {100 * metrics['top1']:.2f}%")
    return 0


def _search_kwargs(args: argparse.Namespace) -> dict:
    """The search options given on the command line, as :func:`~wfn_core.delta_search.search_delta` keywords."""
    kwargs: dict = {k: v for k, v in (("max_drop", args.max_drop), ("max_runs", args.max_runs)) if v is not None}
    if args.no_cache and args.cache is not None:
        raise ValueError("--cache and --no-cache contradict each other: give one of them")
    if args.no_cache or args.cache is not None:
        kwargs["cache"] = False if args.no_cache else args.cache
    return kwargs


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> int:
    auto = args.delta == "auto"
    search = _search_kwargs(args)
    if search and not auto:
        raise ValueError("--max-drop, --max-runs, --cache and --no-cache apply only with --delta auto")
    overrides = _overrides(args, delta=None if auto else args.delta, batch_size=args.batch_size)
    _set_threads(args.threads)
    run_preset(args.preset, args.out, overrides=overrides, weights=args.weights, data_root=args.data_root,
               resume=args.resume, device=args.device, lr_scaling=args.lr_scaling,
               delta_search=search if auto else None)
    return 0


def _search(args: argparse.Namespace) -> int:
    from .delta_search import search_preset, write_search

    overrides = _overrides(args)
    _set_threads(args.threads)
    found = search_preset(args.preset, overrides=overrides, weights=args.weights, device=args.device,
                          **_search_kwargs(args))
    path = write_search(found, args.out / "search.json")
    print(found.table())
    if found.delta is None:
        print(f"error: no δ found: {found.reason}; the runs are in {path}", file=sys.stderr)
        return 1
    chosen, seed = found.chosen, found.extra["seed"]
    print(
        f"{args.preset}: δ = {found.delta:g} within {found.max_drop:g} validation points of fp32 "
        f"(drop {chosen['drop']:.2f}, {chosen['unique']} unique values, {chosen['entropy_bits']:.2f} bits); "
        f"{found.full_runs} full runs ({found.new_runs} new), {found.seconds:.1f} s; wrote {path}"
    )
    print(f"run it (evaluated on the test split): python -m wfn_core run --preset {args.preset} "
          f"--delta {found.delta:g} --seed {seed} --out runs/{args.preset}-delta-{found.delta:g}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from .config import VALIDATED_PRESETS
    from .course import sweep as S

    check_choice("preset", args.preset, VALIDATED_PRESETS)
    rows = S.sweep(args.alphas or S.SWEEP_ALPHAS, args.deltas or S.SWEEP_DELTAS, args.seeds or S.SWEEP_SEEDS,
                   preset_name=args.preset)
    S.write_sweep(rows, args.out)
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")  # the command writes a PNG; it never needs a window
    import matplotlib.pyplot as plt

    from .compare.study import format_means, run_study, targets
    from .course.plots import plot_study

    _set_threads(args.threads)
    began = time.perf_counter()
    rows = run_study(args.preset, args.seeds, args.out, device=args.device)
    fig = plot_study(rows)
    tmp = args.out / ".comparison.png.tmp"
    fig.savefig(tmp, dpi=150, bbox_inches="tight", format="png")
    os.replace(tmp, args.out / "comparison.png")
    plt.close(fig)
    chosen = [r for r in rows if r["seed"] in set(args.seeds)]
    print(format_means(chosen))
    t = targets(chosen)
    print(f"mean of {t['seeds']} seeds: WFN {100 * t['wfn_top1']:.2f}% against fp32 {100 * t['fp32_top1']:.2f}% "
          f"({t['wfn_drop_points']:+.2f} points below; target ≤ 0.5); best per-layer 4-bit: {t['baseline']} "
          f"{100 * t['baseline_top1']:.2f}%: {t['unique_ratio']:.1f}x the non-zero values (target ≥ 10) and "
          f"{t['entropy_ratio']:.2f}x the non-zero entropy (target ≥ 1.5); WFN at least as accurate: "
          f"{t['wfn_at_least_as_accurate']}")
    seconds = time.perf_counter() - began
    print(f"wrote {args.out / 'comparison.csv'} and {args.out / 'comparison.png'} in {seconds:.0f} s")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .compare.export import export_cli

    return export_cli(args.run_dir, args.out)


def _notebooks(args: argparse.Namespace) -> int:
    import os

    from .course.notebook import execute_notebooks

    report = execute_notebooks(args.src, args.out)
    for r in report:
        print(f"{r['name']:<40} {r['seconds']:6.1f} s  (slowest cell {r['max_cell_seconds']:.1f} s)")
    total = sum(float(r["seconds"]) for r in report)
    where = args.out if args.out is not None else args.src
    print(f"{len(report)} notebooks in {total:.0f} s; executed notebooks in {where}", end="")
    print(f", figures in {os.environ['WFN_FIGURES']}" if os.environ.get("WFN_FIGURES") else "")
    return 0


def _student(args: argparse.Namespace) -> int:
    from .course.student import list_exercises, make_student_version

    written = make_student_version(args.src, args.out)
    exercises = [e for path in written for e in list_exercises(args.src / path.name)]
    for e in exercises:
        print(f"{e.notebook}  {e.title}")
    print(f"{len(written)} student notebooks with {len(exercises)} exercises in {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train-baseline": _train_baseline, "evaluate": _evaluate, "run": _run, "search": _search,
                "sweep": _sweep, "notebooks": _notebooks, "export": _export, "compare": _compare,
                "student": _student}
    try:
        return handlers[args.verb](args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
