"""Time and memory of the clustering stage on a ResNet-18-sized weight vector, and the fast-vs-dense ratio.

1. The full default schedule (10 calls, the values and mask of each call fed to the next) on a seeded
   vector of 11,680,000 float32 values drawn like trained convolution weights (the conv/fc shapes of
   ResNet-18, a fan-in scale per layer, heavy Student-t or Laplace tails, many values below γ0),
   separately for δ = 0.0075 and δ = 0.015. Goal: each schedule ≤ 6 s, peak memory ≤ 1 GB.
2. On a 100,000-value vector drawn the same way, the fast call against the dense, readable
   ``wfn_core.clustering.cluster_reference``: the full schedule, and one from-scratch call with
   p = 1.0. Outputs are checked to be identical. Goal: ≥ 100x.

Memory is the process peak resident set size (``ru_maxrss``), which includes the ~0.5 GB that
importing torch costs by itself; the increase over the RSS before the schedules is printed too.
Timings are wall-clock with ``torch.set_num_threads(2)``; another busy process on the machine
slows the radix sort (the main multi-threaded step of a call) noticeably.

    python benchmarks/clustering.py [--threads 2] [--skip-dense]
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import torch

import wfn_core._fast_clustering as engine
import wfn_core.centres as centres
from wfn_core.centres import ZERO_THRESHOLD
from wfn_core.clustering import DEFAULT_FRACTIONS, ClusterResult, cluster, cluster_reference, delta_schedule

N_RESNET18 = 11_680_000

# (weights, fan-in) of ResNet-18's convolutions and classifier, in network order.
_RESNET18 = (
    [(64 * 3 * 49, 3 * 49)]
    + [(64 * 64 * 9, 64 * 9)] * 4
    + [(128 * 64 * 9, 64 * 9), (128 * 64, 64)] + [(128 * 128 * 9, 128 * 9)] * 3
    + [(256 * 128 * 9, 128 * 9), (256 * 128, 128)] + [(256 * 256 * 9, 256 * 9)] * 3
    + [(512 * 256 * 9, 256 * 9), (512 * 256, 256)] + [(512 * 512 * 9, 512 * 9)] * 3
    + [(1000 * 512, 512), (1000, 512)]
)


def _heavy_tailed(n: int, gen: torch.Generator, laplace: bool) -> torch.Tensor:
    """Unit-variance heavy-tailed noise: Laplace, or Student-t with 5 degrees of freedom."""
    if laplace:
        e = torch.empty(2, n).exponential_(generator=gen)
        return (e[0] - e[1]) / math.sqrt(2.0)
    chi2 = (torch.randn(5, n, generator=gen) ** 2).sum(0)
    return torch.randn(n, generator=gen) / (chi2 / 5).sqrt() / math.sqrt(5 / 3)


def resnet18_like(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` float32 values shaped like trained ResNet-18 weights (layer sizes rescaled to sum to n)."""
    gen = torch.Generator().manual_seed(seed)
    total = sum(size for size, _ in _RESNET18)
    sizes = [size * n // total for size, _ in _RESNET18]
    sizes[-2] += n - sum(sizes)
    out = torch.empty(n, dtype=torch.float32)
    start = 0
    for i, ((_, fan_in), size) in enumerate(zip(_RESNET18, sizes)):
        std = 0.6 * math.sqrt(2.0 / fan_in)  # trained weights sit below the He initialisation
        for a in range(start, start + size, 1 << 16):  # in slices, to keep the generator's memory low
            b = min(a + (1 << 16), start + size)
            out[a:b] = _heavy_tailed(b - a, gen, laplace=i % 2 == 0) * std
        start += size
    return out


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _clear_caches() -> None:
    engine._candidates_below_rung.cache_clear()
    centres._candidates_cached.cache_clear()
    centres._ladder.cache_clear()


def run_schedule(w: torch.Tensor, delta: float, verbose: bool = True, keep: bool = False):
    """The default schedule, each call's values and mask fed to the next; returns (times, results).

    Only the last result is kept unless ``keep`` (holding ten 11.68M-value results would dominate
    the memory being measured).
    """
    fixed, times, results = None, [], []
    for t, (p, d) in enumerate(zip(DEFAULT_FRACTIONS, delta_schedule(delta, len(DEFAULT_FRACTIONS)))):
        start = time.perf_counter()
        result = cluster(w, p, d, fixed=fixed)
        times.append(time.perf_counter() - start)
        results = results + [result] if keep else [result]
        if verbose:
            orders = ", ".join(f"{k}:{c}" for k, c in enumerate(result.taken_by_order) if c)
            print(f"  {t:>2}  {p:<6}  {d:.4f}  {times[-1]:6.3f} s  {result.centres.numel():>7}  "
                  f"{int(result.fixed.sum()):>9}  {result.moved:>7}  {result.released:>8}  {orders}")
        w, fixed = result.values, result.fixed
    return times, results


def _same(fast: ClusterResult, ref: ClusterResult) -> bool:
    return (torch.equal(fast.values, ref.values) and torch.equal(fast.fixed, ref.fixed)
            and torch.equal(fast.centres, ref.centres) and fast.taken_by_order == ref.taken_by_order
            and fast.moved == ref.moved and fast.released == ref.released)


def compare_with_dense(n: int, repeats: int) -> None:
    w = resnet18_like(n, seed=1)
    print(f"\nfast vs dense reference on {n:,} values (candidate caches cleared before every fast run)")

    # (a) the full default schedule at δ = 0.0075
    best = math.inf
    for _ in range(repeats):
        _clear_caches()
        start = time.perf_counter()
        _, fast_results = run_schedule(w, 0.0075, verbose=False, keep=True)
        best = min(best, time.perf_counter() - start)
    start, same, x, fixed = time.perf_counter(), True, w, None
    for (p, d), fast in zip(zip(DEFAULT_FRACTIONS, delta_schedule(0.0075, 10)), fast_results):
        ref = cluster_reference(x, p, d, fixed=fixed)
        same &= _same(fast, ref)
        x, fixed = ref.values, ref.fixed
    dense = time.perf_counter() - start
    print(f"  full schedule, δ = 0.0075: fast {best * 1e3:8.1f} ms (best of {repeats}), dense {dense:7.2f} s, "
          f"ratio {dense / best:6.1f}x (goal ≥ 100x: {'met' if dense / best >= 100 else 'MISSED'}), "
          f"identical outputs: {same}")

    # (b) one from-scratch call fixing everything at δ = 0.0075
    best = math.inf
    for _ in range(repeats):
        _clear_caches()
        start = time.perf_counter()
        fast = cluster(w, 1.0, 0.0075)
        best = min(best, time.perf_counter() - start)
    start = time.perf_counter()
    ref = cluster_reference(w, 1.0, 0.0075)
    dense = time.perf_counter() - start
    passes = len(fast.taken_by_order)
    print(f"  one call, p = 1.0, δ = 0.0075 ({fast.centres.numel()} centres, orders 0..{passes - 1}): "
          f"fast {best * 1e3:8.1f} ms (best of {repeats}), dense {dense:7.2f} s, ratio {dense / best:6.1f}x "
          f"(goal ≥ 100x: {'met' if dense / best >= 100 else 'MISSED'}), identical outputs: {_same(fast, ref)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=N_RESNET18)
    parser.add_argument("--dense-n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-dense", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rss_import = _rss_mb()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; RSS after importing torch: "
          f"{rss_import:.0f} MB")
    w = resnet18_like(args.n, seed=0)
    below = sum(int(torch.count_nonzero(part.abs() < ZERO_THRESHOLD)) for part in w.split(1 << 16)) / w.numel()
    print(f"weights: {w.numel():,} float32 values, ResNet-18 layer shapes, Student-t/Laplace tails, seed 0; "
          f"|w| < γ0: {below:.1%}, max |w| = {max(-float(w.min()), float(w.max())):.3f}")
    del w  # regenerated (identically) for each schedule, so that only the schedule's own arrays are held
    rss_before = _rss_mb()
    print(f"RSS before the schedules: {rss_before:.0f} MB")

    totals = {}
    for delta in (0.0075, 0.015):
        print(f"\nδ = {delta}: default schedule")
        print("   t  p       δ_t     time       centres      fixed    moved  released  taken by order k:count")
        times, results = run_schedule(resnet18_like(args.n, seed=0), delta)
        totals[delta] = sum(times)
        del results
        print(f"  total {totals[delta]:.3f} s   (goal ≤ 6 s: {'met' if totals[delta] <= 6 else 'MISSED'})")

    peak = _rss_mb()
    print(f"\npeak memory: process peak RSS {peak:.0f} MB (goal ≤ 1024 MB: {'met' if peak <= 1024 else 'MISSED'}), "
          f"of which {rss_import:.0f} MB is importing torch; increase over the RSS before the schedules "
          f"(the clustering's own peak): {peak - rss_before:.0f} MB")

    if not args.skip_dense:
        compare_with_dense(args.dense_n, args.repeats)


if __name__ == "__main__":
    main()
