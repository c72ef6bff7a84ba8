"""Time of a regularised WFN training step against a plain one, side by side in one run.

Both steps run on the same parametrised model and differ only in the loss: cross-entropy, or
cross-entropy + λ L_reg as the pipeline computes it (``ClusterRegulariser.fixer_loss``). Each step is
zero_grad, forward, loss, backward, gradient clipping and an Adam step. The two are interleaved, so
drifts in machine load hit both alike, and the medians are compared. Goal: ratio <= 1.2.

Cases (the regulariser's cost grows with free weights x centres):

- ``digits CNN, preset``: the embedded default as ``run --preset digits`` trains it: the shipped
  weights, the preset's δ, batch 64 of 8x8, at the iteration whose free weights x centres is largest.
- ``digits CNN, stress``: random initial weights clustered at δ_0 = 0.075, which leaves more
  centres (5) than any iteration of the preset run: an upper bound for this network.
- ``CIFAR ResNet-18``: random initial weights, batch 32 of 32x32, first iteration (30% fixed, δ_0 = 0.075).

Inputs are random. ``--threads`` sets torch's thread count (2 on the reference machine).

    python benchmarks/regulariser.py [--repeats 30] [--digits-repeats 300] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from wfn_core.clustering import ClusterResult, cluster, cluster_schedule
from wfn_core.config import preset
from wfn_core.fixing import WeightFixer
from wfn_core.models import DigitsCNN, cifar_resnet18, load_pretrained_digits
from wfn_core.regulariser import ClusterRegulariser


def _step_timer(model, fixer, regulariser, x, y, with_reg: bool):
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)

    def step() -> float:
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        ce = F.cross_entropy(model(x), y)
        loss = regulariser.fixer_loss(ce, fixer) if with_reg else ce
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        return time.perf_counter() - t

    return step


def _costliest_preset_iteration(fixer: WeightFixer, delta: float) -> tuple[int, ClusterResult]:
    """The iteration of the preset's schedule (no retraining) with the most free weights x centres."""
    results = cluster_schedule(fixer.flat_values(), delta)[:-1]  # the last iteration does not train
    work = [int((~r.fixed).sum()) * r.centres.numel() for r in results]
    t = max(range(len(results)), key=work.__getitem__)
    return t, results[t]


def bench(name: str, model: torch.nn.Module, result: ClusterResult | None, shape: tuple[int, ...],
          repeats: int, alpha: float) -> float:
    torch.manual_seed(0)
    fixer = WeightFixer(model)
    fixer.apply(result if result is not None else cluster(fixer.flat_values(), 0.30, 10 * 0.0075))
    x, y = torch.randn(*shape), torch.randint(0, 10, (shape[0],))
    reg = ClusterRegulariser(alpha=alpha)
    plain = _step_timer(model, fixer, reg, x, y, False)
    regd = _step_timer(model, fixer, reg, x, y, True)
    for _ in range(max(3, repeats // 10)):  # warm-up
        plain(), regd()
    a, b = [], []
    for _ in range(repeats):  # interleaved
        a.append(plain())
        b.append(regd())
    pa, pb = statistics.median(a), statistics.median(b)
    free = int((~fixer.fixed_mask()).sum())
    verdict = "met" if pb / pa <= 1.2 else "MISSED"
    print(
        f"{name:<28} params {fixer.n_params:>10,}  free {free:>9,}  centres {fixer.centres.numel():>3}  "
        f"plain {1e3 * pa:8.2f} ms  regularised {1e3 * pb:8.2f} ms  ratio {pb / pa:5.3f} (goal <= 1.2: {verdict})"
    )
    return pb / pa


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="interleaved step pairs for the ResNet")
    parser.add_argument("--digits-repeats", type=int, default=300, help="interleaved step pairs for the digits CNN")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, median of interleaved steps")

    config = preset("digits")
    model = load_pretrained_digits()
    t, result = _costliest_preset_iteration(WeightFixer(model), config.delta)
    model = load_pretrained_digits()  # a fresh copy (the one above carries a WeightFixer)
    bench(f"digits CNN, preset (iter {t})", model, result, (config.batch_size, 1, 8, 8), args.digits_repeats,
          config.alpha)
    bench("digits CNN, stress", DigitsCNN(), None, (config.batch_size, 1, 8, 8), args.digits_repeats, config.alpha)
    bench("CIFAR ResNet-18", cifar_resnet18(), None, (32, 3, 32, 32), args.repeats, 0.4)


if __name__ == "__main__":
    main()
