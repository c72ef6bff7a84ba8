"""The MNIST-1D track's targets, measured: run the whole-network study and print each target with its figure.

Targets (means over the seeds, on the test split):

- WFN within 0.5 points of fp32;
- at least 10x fewer non-zero unique values than the best per-layer 4-bit method, at equal or better accuracy;
- at least 1.5x lower non-zero entropy than it;
- one WFN run at most 10 minutes on this machine, the whole comparison at most 45 minutes.

By default it runs ``python -m wfn_core compare`` (into ``--out``; rows already there are kept, so point it at a
fresh folder to time it) and times it; ``--csv FILE`` evaluates an existing comparison instead, for example the
shipped one (``wfn_core/assets/mnist1d_comparison.csv``), without training (its times are the ones recorded).

    python benchmarks/mnist1d_comparison.py [--out runs/compare-bench] [--seeds 0 1 2] [--csv FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from wfn_core.compare.study import format_means, read_rows, run_study, targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/compare-bench"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--csv", type=Path, default=None, help="evaluate this comparison CSV instead of running one")
    args = parser.parse_args()

    if args.csv is None:
        began = time.perf_counter()
        rows = run_study("mnist1d_resnet", args.seeds, args.out)
        total = time.perf_counter() - began
        source = f"ran in {args.out}"
    else:
        rows = read_rows(args.csv)
        total = sum(r["seconds"] for r in rows)
        source = f"read {args.csv} (total = the rows' recorded seconds)"
    t = targets(rows)
    wfn_seconds = [r["seconds"] for r in rows if r["method"] == "WFN"]
    print(f"{source}; {t['seeds']} seeds")
    print(format_means(rows))
    lines = [
        ("WFN within 0.5 points of fp32", t["within_half_point"],
         f"{100 * t['wfn_top1']:.2f}% vs {100 * t['fp32_top1']:.2f}%: {t['wfn_drop_points']:+.2f} points below"),
        ("WFN at least as accurate as the best per-layer 4-bit method", t["wfn_at_least_as_accurate"],
         f"{100 * t['wfn_top1']:.2f}% vs {t['baseline']} {100 * t['baseline_top1']:.2f}%"),
        (">= 10x fewer non-zero values than it", t["ten_times_fewer"], f"{t['unique_ratio']:.2f}x"),
        (">= 1.5x lower non-zero entropy than it", t["entropy_1_5_lower"], f"{t['entropy_ratio']:.2f}x"),
        ("one WFN run <= 10 minutes", max(wfn_seconds) <= 600, f"longest {max(wfn_seconds):.0f} s"),
        ("the comparison <= 45 minutes", total <= 45 * 60, f"{total:.0f} s"),
    ]
    for what, met, measured in lines:
        print(f"{what}: {'met' if met else 'NOT met'}  ({measured})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
