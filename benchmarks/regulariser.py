"""Time of a regularised WFN training step against a plain one, side by side in one run.

Models: the digits CNN (batch 64 of 8x8) and the CIFAR ResNet-18 (batch 32 of 32x32), random inputs,
30% of the weights fixed (the first WFN iteration). Both steps run on the same parametrised model;
they differ only in the loss (cross-entropy vs cross-entropy + λ L_reg). Goal: ratio <= 1.2.

    python benchmarks/regulariser.py [--repeats 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from wfn_core.clustering import cluster
from wfn_core.fixing import WeightFixer
from wfn_core.models import DigitsCNN, cifar_resnet18
from wfn_core.regulariser import ClusterRegulariser


def _step_timer(model, fixer, regulariser, x, y, with_reg: bool):
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)

    def step() -> float:
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        ce = F.cross_entropy(model(x), y)
        loss = regulariser.loss(ce, fixer.free_values(), fixer.centres) if with_reg else ce
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        return time.perf_counter() - t

    return step


def bench(name: str, model: torch.nn.Module, shape: tuple[int, ...], repeats: int) -> float:
    torch.manual_seed(0)
    fixer = WeightFixer(model)
    result = cluster(fixer.flat_values(), 0.30, 10 * 0.0075)
    fixer.apply(result)
    x, y = torch.randn(*shape), torch.randint(0, 10, (shape[0],))
    reg = ClusterRegulariser(alpha=0.4)
    plain = _step_timer(model, fixer, reg, x, y, False)
    regd = _step_timer(model, fixer, reg, x, y, True)
    for _ in range(3):  # warm-up
        plain(), regd()
    a, b = [], []
    for _ in range(repeats):  # interleaved, so drifts in machine load hit both alike
        a.append(plain())
        b.append(regd())
    pa, pb = statistics.median(a), statistics.median(b)
    print(
        f"{name:<18} params {fixer.n_params:>9,}  free {fixer.free_values().numel():>9,}  centres "
        f"{result.centres.numel():>4}  plain {1e3 * pa:8.2f} ms  regularised {1e3 * pb:8.2f} ms  ratio {pb / pa:5.3f}"
    )
    return pb / pa


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats} interleaved steps")
    bench("digits CNN", DigitsCNN(), (64, 1, 8, 8), args.repeats)
    bench("CIFAR ResNet-18", cifar_resnet18(), (32, 3, 32, 32), args.repeats)


if __name__ == "__main__":
    main()
