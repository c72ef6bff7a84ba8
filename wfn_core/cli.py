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
    return parser


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train-baseline": _train_baseline, "evaluate": _evaluate}
    try:
        return handlers[args.verb](args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
