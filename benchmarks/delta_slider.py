"""Time of one update of the δ slider in notebook 05 (re-cluster the trained digits network with the
whole δ schedule, evaluate it, redraw histogram and metrics). Goal: <= 0.3 s per update. The figure is
rendered to PNG for the widget; the browser's drawing is not timed.

    python benchmarks/delta_slider.py [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics

import matplotlib

matplotlib.use("Agg")

import torch

from wfn_core.course.widgets import DeltaExplorer, format_delta
from wfn_core.data import digits
from wfn_core.models import load_pretrained_digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the notebooks use 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    explorer = DeltaExplorer(load_pretrained_digits(), digits()[1])
    explorer.update(0.01)  # warm-up: first plot, caches
    print(f"torch {torch.__version__}, {args.threads} thread(s); "
          "one slider update = cluster schedule + evaluate + redraw to PNG")
    times = []
    top = 10**explorer.slider.max  # the slider's top value (δ = 0.1 itself is refused: δ·T must stay below 1)
    for delta in (0.002, 0.005, 0.01, 0.02, 0.05, top):
        for _ in range(3):
            if explorer.update(delta) is None:
                raise SystemExit(f"δ = {delta}: {explorer.info.value}")
            times.append(explorer.seconds)
        print(f"δ = {format_delta(delta):<8} {explorer.seconds:.3f} s   {explorer.last['unique']:4d} unique values")
    verdict = "met" if max(times) <= 0.3 else "MISSED"
    print(f"median {statistics.median(times):.3f} s, worst {max(times):.3f} s (goal <= 0.3 s: {verdict})")


if __name__ == "__main__":
    main()
