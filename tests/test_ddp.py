"""DDP through torch.distributed: 2 CPU processes, gloo backend, the digits preset."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from wfn_core.config import preset
from wfn_core.data import digits
from wfn_core.models import load_pretrained_digits
from wfn_core.pipeline import run_wfn
from wfn_core.runner import _distributed_loader

CONFIG = dict(fractions=(0.5, 0.9, 1.0), epochs_per_iteration=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        config = preset("digits", **CONFIG)
        train, test = digits(batch_size=config.batch_size, seed=config.seed)
        result = run_wfn(load_pretrained_digits(), _distributed_loader(train, config.seed), test, config, device="cpu")
        torch.save({"values": result.fixer.flat_values(), "fixed": result.fixer.fixed_mask(),
                    "history": result.history}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_hold_identical_fixed_values(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert torch.equal(r0["values"], r1["values"]) and torch.equal(r0["fixed"], r1["fixed"])
    assert r0["fixed"].all()
    config = preset("digits", **CONFIG)
    train, test = digits(batch_size=config.batch_size, seed=config.seed)
    single = run_wfn(load_pretrained_digits(), train, test, config, device="cpu")
    for key in ("iteration", "fraction", "delta_t", "fixed_fraction"):
        assert [h[key] for h in r0["history"]] == [h[key] for h in single.history]


@pytest.mark.slow
def test_cli_under_torchrun(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(_free_port()),
           "-m", "wfn_core", "run", "--preset", "digits", "--epochs", "1", "--out", str(out), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WFN_NO_PROGRESS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_top1"] > 0.8  # 1 epoch an iteration, half the steps on each rank
    assert proc.stdout.count("digits: top-1") == 1  # only rank 0 reports and writes
