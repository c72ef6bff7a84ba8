"""One process against 2 DDP ranks (``torchrun``, gloo) on this machine: the digits preset, side by side.

Each setup runs ``python -m wfn_core run --preset digits`` as a user would, in a fresh process (or two),
on the same cores: one process with 2 threads (and with 1), and 2 ranks with 1 thread each. For every seed the
setups run one after the other, so drifts in machine load hit them alike. Figures per run:

- ``s/iter``: mean seconds of a training iteration (iterations 0-8 of ``history.csv``: cluster, 3 epochs,
  evaluation, checkpoint); ``run s``: the whole run as ``summary.json`` times it; ``wall s``: the
  command, interpreter start and data loading included.
- the final metrics, against fp32: test top-1 and its change in points (one test image is 0.28), unique
  values, entropy in bits.

Under torchrun the global batch stays the preset's (64 = 2 x 32), so the 2-rank run is the
single-process experiment; its results differ from one process's as another thread count's do (CPU
results depend on how sums are split), not more. Do not expect a speed-up here: the digits network is
so small (49k weights, 8x8 images) that a step's gradient all-reduce costs about what its compute does;
DDP pays where a step's compute dwarfs the all-reduce (ResNets, GPUs). The third setup shows the other
rule: a global batch of 128 (64 a rank) with the learning rate scaled linearly (``--batch-size 128
--lr-scaling linear``).

    python benchmarks/ddp.py [--seeds 0] [--no-scaled]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setups(scaled: bool) -> list[tuple[str, list[str], int]]:
    """(label, launcher, threads a process)."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    setups = [
        ("1 process x 2 threads", [sys.executable], 2),
        ("1 process x 1 thread", [sys.executable], 1),
        ("2 ranks x 1 thread", torchrun, 1),
    ]
    if scaled:
        setups.append(("2 ranks, batch 128, lr x2", torchrun, 1))
    return setups


def _run(label: str, launcher: list[str], threads: int, seed: int, out: Path) -> dict:
    """One run of the preset; its summary, per-iteration seconds and wall time."""
    args = ["-m", "wfn_core", "run", "--preset", "digits", "--seed", str(seed), "--threads", str(threads),
            "--out", str(out), "--device", "cpu"]
    if "batch 128" in label:
        args += ["--batch-size", "128", "--lr-scaling", "linear"]
    if len(launcher) > 1:
        launcher = [*launcher, "--master_port", str(_free_port())]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WFN_NO_PROGRESS": "1"}
    began = time.perf_counter()
    proc = subprocess.run([*launcher, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{label}, seed {seed} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "history.csv") as f:
        history = list(csv.DictReader(f))
    per_iter = statistics.mean(float(h["seconds"]) for h in history[:-1])  # the last iteration does not train
    return {**summary, "per_iter": per_iter, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--no-scaled", action="store_true", help="skip the batch-128 linear-lr setup")
    args = parser.parse_args()
    setups = _setups(not args.no_scaled)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.1f} at the "
          f"start), gloo, digits preset (global batch 64 unless stated), seeds {' '.join(map(str, args.seeds))}")
    print(f"  {'setup':<26} {'seed':>4} {'batch':>9} {'s/iter':>7} {'run s':>6} {'wall s':>7}  "
          f"{'top-1':>7} {'vs fp32':>8} {'unique':>6} {'bits':>5}")
    rows: dict[str, list[dict]] = {label: [] for label, _, _ in setups}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for i, (label, launcher, threads) in enumerate(setups):
                r = _run(label, launcher, threads, seed, Path(tmp) / f"{seed}-{i}")
                rows[label].append(r)
                batch = f"{r['batch_per_rank']}x{r['world_size']}"
                print(f"  {label:<26} {seed:>4} {batch:>9} {r['per_iter']:>7.2f} {r['seconds']:>6.1f} "
                      f"{r['wall']:>7.1f}  {100 * r['final_top1']:>6.2f}% "
                      f"{100 * (r['final_top1'] - r['baseline_top1']):>+7.2f}  {r['unique']:>6} "
                      f"{r['entropy_bits']:>5.2f}")
    fastest = min(statistics.median(r["per_iter"] for r in rows[label]) for label, _, _ in setups)
    for label, _, _ in setups:
        mine = statistics.median(r["per_iter"] for r in rows[label])
        changes = [100 * (r["final_top1"] - r["baseline_top1"]) for r in rows[label]]
        print(f"{label}: median {mine:.2f} s an iteration ({mine / fastest:.2f}x the fastest); "
              f"worst top-1 change {min(changes):+.2f} points, most values {max(r['unique'] for r in rows[label])}")


if __name__ == "__main__":
    main()
