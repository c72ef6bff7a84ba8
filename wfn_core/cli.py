"""Command line: ``python -m wfn_core VERB ...`` (also installed as ``wfn``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]


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
    from .delta_search import DEFAULT_MAX_RUNS
    from .sweep import PRESET_MAX_DROP

    p.add_argument("--max-drop", type=_non_negative_float, default=None,
                   help=f"{prefix}accuracy budget: validation top-1 points below fp32 (default {PRESET_MAX_DROP})")
    p.add_argument("--max-runs", type=_positive_int, default=None,
                   help=f"{prefix}most full WFN runs the search may use, cached ones included "
                        f"(default {DEFAULT_MAX_RUNS})")
    p.add_argument("--cache", type=Path, default=None,
                   help=f"{prefix}folder caching the search's runs "
                        "(default: $WFN_CACHE/delta_search, else ~/.cache/wfn/delta_search)")
    p.add_argument("--no-cache", action="store_true", help=f"{prefix}neither read nor write the cache")


def build_parser() -> argparse.ArgumentParser:
    from .pretrain import DIGITS_BASELINE_RECIPE as R

    parser = argparse.ArgumentParser(prog="python -m wfn_core", description="Weight Fixing Networks")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("train-baseline", help="train the fp32 model WFN starts from")
    p.add_argument("--dataset", choices=["digits"], default="digits", help="data set (default: digits)")
    p.add_argument("--out", type=Path, required=True, help="where to write the state_dict (.pt)")
    p.add_argument("--epochs", type=_positive_int, default=R["epochs"], help=f"epochs (default {R['epochs']})")
    p.add_argument("--lr", type=float, default=R["lr"], help=f"Adam learning rate (default {R['lr']})")
    p.add_argument("--weight-decay", type=float, default=R["weight_decay"], help="Adam weight decay")
    p.add_argument("--batch-size", type=_positive_int, default=R["batch_size"], help="batch size")
    p.add_argument("--seed", type=int, default=R["seed"], help=f"seed (default {R['seed']})")

    p = verbs.add_parser("evaluate", help="evaluate a model on its test split")
    p.add_argument("--dataset", choices=["digits"], default="digits", help="data set (default: digits)")
    p.add_argument(
        "--weights", type=Path, default=None, help="state_dict to evaluate (default: the shipped digits model)"
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
        "WFN runs, each evaluated on the validation split (never the test split). Writes search.json and search.png to --out; "
        "runs are cached, so the same search again finishes in seconds.",
    )
    p.add_argument("--preset", required=True, help="named settings with a validation split: digits")
    _add_setting_options(p)
    p.add_argument("--out", type=Path, required=True, help="output folder (search.json, search.png)")
    _add_search_options(p)
    p = verbs.add_parser("sweep", help="α × δ sweep of the digits preset on the validation split (the notebooks' trade-off curves)")
    p.add_argument("--alphas", type=float, nargs="+", default=None, help="α values (default: 0 0.4 1)")
    p.add_argument("--deltas", type=float, nargs="+", default=None, help="δ values (default: 0.0075 0.01 0.015 0.02 0.025 0.03 0.04)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: 0 1 2)")
    p.add_argument("--out", type=Path, required=True, help="CSV to write (data/sweep_alpha_delta.csv ships)")
    p = verbs.add_parser("export", help="write a finished run's model as one entropy-coded file")
    p.add_argument("run_dir", type=Path, help="finished run folder (model.pt, wfn_checkpoint.pt)")
    p.add_argument("out", type=Path, help="compressed file to write (for example model.wfnz)")

    p = verbs.add_parser("notebooks", help="execute the notebook sequence (what `make run` does)")
    p.add_argument("--src", type=Path, default=Path("notebooks"), help="folder of NN_*.ipynb (default: notebooks)")
    p.add_argument("--out", type=Path, default=None, help="folder for the executed copies (default: in place)")
    return parser


def _preset_names() -> list[str]:
    from .config import PRESETS

    return list(PRESETS)


def _train_baseline(args: argparse.Namespace) -> int:
    from .data import digits
    from .models import DigitsCNN, sha256_file
    from .pretrain import train_baseline
    from .training import seed_everything

    seed_everything(args.seed, threads=1)
    train_loader, test_loader = digits(batch_size=args.batch_size, seed=args.seed)
    metrics = train_baseline(
        DigitsCNN(), train_loader, test_loader, epochs=args.epochs, lr=args.lr,
        weight_decay=args.weight_decay, device="cpu", out=args.out,
    )
    print(f"digits baseline: test top-1 {100 * metrics['top1']:.2f}%  loss {metrics['loss']:.4f}")
    print(f"wrote {args.out}  sha256 {sha256_file(args.out)}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .data import digits
    from .models import DigitsCNN, load_pretrained_digits, load_state_dict_file
    from .training import evaluate

    if args.weights is None:
        model = load_pretrained_digits()
    else:
        model = DigitsCNN()
        model.load_state_dict(load_state_dict_file(args.weights))
    _, test_loader = digits()
    metrics = evaluate(model, test_loader, device="cpu")
    print(json.dumps({k: round(v, 4) for k, v in metrics.items()}))
    print(f"digits test top-1: {100 * metrics['top1']:.2f}%")
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
    from .runner import run_preset

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
    from . import sweep as S

    rows = S.sweep(args.alphas or S.SWEEP_ALPHAS, args.deltas or S.SWEEP_DELTAS, args.seeds or S.SWEEP_SEEDS)
    S.write_sweep(rows, args.out)
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_cli

    return export_cli(args.run_dir, args.out)


def _notebooks(args: argparse.Namespace) -> int:
    import os

    from .notebook import execute_notebooks

    report = execute_notebooks(args.src, args.out)
    for r in report:
        print(f"{r['name']:<40} {r['seconds']:6.1f} s  (slowest cell {r['max_cell_seconds']:.1f} s)")
    total = sum(float(r["seconds"]) for r in report)
    where = args.out if args.out is not None else args.src
    print(f"{len(report)} notebooks in {total:.0f} s; executed notebooks in {where}", end="")
    print(f", figures in {os.environ['WFN_FIGURES']}" if os.environ.get("WFN_FIGURES") else "")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train-baseline": _train_baseline, "evaluate": _evaluate, "run": _run, "search": _search,
                "sweep": _sweep, "notebooks": _notebooks, "export": _export}
    try:
        return handlers[args.verb](args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
