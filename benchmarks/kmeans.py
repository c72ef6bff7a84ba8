"""Time the sorted 1-D k-means of ``wfn_core.compare.baselines.kmeans_1d`` against a dense N x k assignment.

1. Sorted Lloyd (one sort and one float64 cumulative sum, then per iteration ``searchsorted`` of the
   k − 1 midpoints and segment sums) on 11,680,000 float32 values (ResNet-18's size), k = 32,
   exactly 20 iterations from the linear initialisation, labels for every value included.
2. The straightforward method on 1,000,000 values: per iteration the N x k distance matrix, ``argmin``
   and ``bincount`` sums; the same 20 iterations. The sorted method runs on those 1M values too, and
   the two results are checked to agree.

Values are seeded heavy-tailed noise (Student-t with 5 degrees of freedom, per-"layer" scales), like
trained weights. Timings are wall-clock, best of ``--repeat``, with ``torch.set_num_threads(--threads)``.

    python benchmarks/kmeans.py [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from wfn_core.compare.baselines import kmeans_1d

N_LARGE, N_DENSE, K, ITERS = 11_680_000, 1_000_000, 32, 20


def weights_like(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` float32 values: Student-t(5) noise in 20 blocks whose scales span a factor of 10."""
    gen = torch.Generator().manual_seed(seed)
    chi2 = (torch.randn(5, n, generator=gen) ** 2).sum(0)
    t = torch.randn(n, generator=gen) / (chi2 / 5).sqrt()
    scales = torch.logspace(-2, -1, 20).repeat_interleave(n // 20 + 1)[:n]
    return (t * scales).to(torch.float32)


def dense_kmeans(x: torch.Tensor, k: int, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd with the full N x k distance matrix; linear initialisation; empty clusters keep their centroid."""
    c = torch.linspace(float(x.min()), float(x.max()), k, dtype=torch.float64)
    x64 = x.to(torch.float64)
    for _ in range(iters):
        labels = (x[:, None] - c.to(x.dtype)[None, :]).abs().argmin(1)
        counts = torch.bincount(labels, minlength=k)
        sums = torch.bincount(labels, weights=x64, minlength=k)
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c)
    return c, (x[:, None] - c.to(x.dtype)[None, :]).abs().argmin(1)


def best_time(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        began = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - began)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    large, small = weights_like(N_LARGE, seed=0), weights_like(N_DENSE, seed=1)

    def sorted_fn(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return kmeans_1d(x, K, max_iter=ITERS, until_stable=False)

    t_large, _ = best_time(lambda: sorted_fn(large), args.repeat)
    t_small, (c_sorted, labels_sorted) = best_time(lambda: sorted_fn(small), args.repeat)
    t_dense, (c_dense, labels_dense) = best_time(lambda: dense_kmeans(small, K, ITERS), args.repeat)

    agree = (labels_sorted == labels_dense).float().mean().item()
    max_diff = (c_sorted - c_dense).abs().max().item()
    print(f"k = {K}, {ITERS} Lloyd iterations from the linear initialisation, {args.threads} threads, "
          f"best of {args.repeat}")
    print(f"{'method':<24}{'values':>12}{'seconds':>10}{'ns/value':>10}")
    for name, n, t in (("sorted (kmeans_1d)", N_LARGE, t_large), ("sorted (kmeans_1d)", N_DENSE, t_small),
                       ("dense N x k", N_DENSE, t_dense)):
        print(f"{name:<24}{n:>12,}{t:>10.3f}{1e9 * t / n:>10.1f}")
    print(f"ratio dense(1M) / sorted(11.68M), wall-clock as measured: {t_dense / t_large:.1f}x "
          f"(the sorted run has {N_LARGE / N_DENSE:.2f}x more values)")
    print(f"ratio per value, dense(1M) / sorted(11.68M): {(t_dense / N_DENSE) / (t_large / N_LARGE):.1f}x")
    print(f"ratio at equal size, dense(1M) / sorted(1M): {t_dense / t_small:.1f}x")
    print(f"agreement on the 1M values: labels equal for {100 * agree:.4f}%, "
          f"largest centroid difference {max_diff:.2e}")


if __name__ == "__main__":
    main()
