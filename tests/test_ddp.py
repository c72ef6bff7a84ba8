"""DDP through torch.distributed: 2 CPU processes, gloo backend, the digits preset.

A 2-rank run must be the single-process experiment, spread out: the same global batch and steps per
epoch, the clustering decision taken on rank 0 and broadcast, identical weights on every rank, sharded
evaluation that returns exactly the single-process numbers, and resume that repeats an uninterrupted run.
"""

import csv
import datetime
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import wfn_core.pipeline as pipeline
from wfn_core.cli import distributed_loader, main, per_rank_batch, scaled_config
from wfn_core.config import preset
from wfn_core.course.checks import MAX_DROP_POINTS, MAX_ENTROPY_BITS, MAX_UNIQUE
from wfn_core.data import digits
from wfn_core.models import load_pretrained_digits
from wfn_core.pipeline import CHECKPOINT_NAME, run_wfn
from wfn_core.training import evaluate

CONFIG = dict(fractions=(0.5, 0.9, 1.0), epochs_per_iteration=1)
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Interrupted(Exception):
    """Stands for a crash of every rank mid-run."""


def _spawn(job: str, out: Path, **kwargs) -> None:
    mp.spawn(_worker, args=(job, str(out), kwargs, _free_port()), nprocs=WORLD, join=True)


def _worker(rank: int, job: str, out: str, kwargs: dict, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WFN_NO_PROGRESS="1")
    torch.set_num_threads(1)
    # a bounded wait: a rank stuck in a collective fails the test in minutes instead of hanging it
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(minutes=5))
    try:
        {"run": _run_job, "eval": _eval_job}[job](rank, Path(out), **kwargs)
    finally:
        # Leave together: a rank that tore its gloo group down while its peer still held the connection was
        # aborted ("terminate called without an active exception", SIGABRT) in 1 of 3 CI runs.
        dist.barrier()
        dist.destroy_process_group()


def _without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def _run_job(rank: int, out: Path, resume: bool = False, interrupt_at: int | None = None) -> None:
    """The short schedule on 2 ranks, recording what each rank clustered and trained from."""
    config = preset("digits", **CONFIG)
    train, test = digits(batch_size=config.batch_size, seed=config.seed)
    loader = distributed_loader(train, config.seed)
    seen = {"cluster": 0, "params": []}
    real_cluster, real_train = pipeline.cluster, pipeline.train_epoch

    def counting_cluster(*args, **kwargs):
        seen["cluster"] += 1
        return real_cluster(*args, **kwargs)

    def recording_train(model, *args, **kwargs):
        if len(seen["params"]) + 1 == interrupt_at:
            raise _Interrupted
        seen["params"].append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
        return real_train(model, *args, **kwargs)

    pipeline.cluster, pipeline.train_epoch = counting_cluster, recording_train  # this process only
    try:
        result = run_wfn(load_pretrained_digits(), loader, test, config, checkpoint_dir=out, resume=resume,
                         device="cpu")
    except _Interrupted:
        return
    torch.save({
        "values": result.flat_values(), "centres": result.centres,
        "history": result.history, "state": result.model.state_dict(), "cluster_calls": seen["cluster"],
        "params": seen["params"], "batch": loader.batch_size, "steps": len(loader),
        "whole_eval": evaluate(result.model, test, device="cpu"),  # this rank alone, every test image
    }, out / f"rank{rank}.pt")


def _eval_job(rank: int, out: Path) -> None:
    """Sharded against whole evaluation of one model, for batch sizes that split unevenly."""
    model = load_pretrained_digits()
    torch.manual_seed(0)  # the same noise on both ranks: more mistakes, so the counts say something
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    images = []
    model.register_forward_hook(lambda m, args, output: images.append(args[0].shape[0]))
    scores = {}
    for batch in (64, 50, 512):  # 6 batches; 8 (the last of 10 images); 1 (rank 1 gets none)
        _, test = digits(batch_size=batch)
        images.clear()
        sharded = evaluate(model, test, device="cpu", shard=True)
        mine = sum(images)
        scores[batch] = {"sharded": sharded, "whole": evaluate(model, test, device="cpu"), "images": mine}
    train, _ = digits()
    try:
        evaluate(model, train, device="cpu", shard=True)
        refused = ""
    except ValueError as exc:
        refused = str(exc)
    torch.save({"scores": scores, "refused": refused}, out / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    _spawn("run", out)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.slow
def test_two_ranks_run_the_single_process_schedule_identically(two_ranks):
    r0, r1 = two_ranks
    # rank 0 clusters, rank 1 only receives the decision, and both then hold the same everything
    assert r0["cluster_calls"] == len(CONFIG["fractions"]) and r1["cluster_calls"] == 0
    assert all(torch.equal(a, b) for a, b in zip(r0["params"], r1["params"]))  # so the regulariser is the same too
    assert torch.equal(r0["values"], r1["values"]) and torch.equal(r0["centres"], r1["centres"])
    assert set(r0["values"].unique().tolist()) <= set(r0["centres"].tolist())  # every value fixed to a centre
    assert all(torch.equal(v, r1["state"][k]) for k, v in r0["state"].items())  # batch-norm statistics included
    assert _without_seconds(r0["history"]) == _without_seconds(r1["history"])
    # the global batch and the steps per epoch are one process's
    config = preset("digits", **CONFIG)
    train, test = digits(batch_size=config.batch_size, seed=config.seed)
    assert r0["batch"] * WORLD == config.batch_size and r0["steps"] == len(train)
    single = run_wfn(load_pretrained_digits(), train, test, config, device="cpu")
    for key in ("iteration", "fraction", "delta_t", "fixed_fraction"):
        assert [h[key] for h in r0["history"]] == [h[key] for h in single.history]
    # the sharded evaluation in the history is what one process gets from the model that was written
    final = r0["history"][-1]
    assert (final["top1"], final["top5"]) == (r0["whole_eval"]["top1"], r0["whole_eval"]["top5"])


@pytest.mark.slow
def test_sharded_evaluation_equals_one_process_exactly(tmp_path):
    _spawn("eval", tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD))
    for batch in (64, 50, 512):
        a, b = r0["scores"][batch], r1["scores"][batch]
        assert a["sharded"] == a["whole"] == b["sharded"] == b["whole"], batch  # loss too, to the bit
        assert a["images"] + b["images"] == 360 and (a["images"] < 360 or batch == 512), batch
    assert r0["scores"][64]["whole"]["top1"] < 0.95  # the noisy model makes mistakes to count
    assert "fixed order" in r0["refused"] and "shuffle=False" in r0["refused"]


@pytest.mark.slow
def test_resume_under_two_ranks_repeats_the_uninterrupted_run(tmp_path, two_ranks):
    _spawn("run", tmp_path, interrupt_at=2)  # both ranks stop during iteration 1's training
    assert not (tmp_path / "rank0.pt").exists()
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=False)["iteration"] == 0
    _spawn("run", tmp_path, resume=True)
    reference = two_ranks[0]
    for r in range(WORLD):
        resumed = torch.load(tmp_path / f"rank{r}.pt", weights_only=False)
        assert torch.equal(resumed["values"], reference["values"])
        assert all(torch.equal(v, resumed["state"][k]) for k, v in reference["state"].items())
        assert _without_seconds(resumed["history"]) == _without_seconds(reference["history"])


def test_global_batch_must_divide_by_the_world_size(tmp_path, monkeypatch, capsys):
    assert per_rank_batch(64, 2) == 32 and per_rank_batch(64, 1) == 64
    with pytest.raises(ValueError, match=r"batch_size=63 is not allowed under torchrun with 2 processes: .*62 or 64"):
        per_rank_batch(63, 2)
    with pytest.raises(ValueError, match=r"batch_size=3 .* 4 processes: .*for example 4$"):
        per_rank_batch(3, 4)
    monkeypatch.setenv("WORLD_SIZE", "2")  # refused before any process group or data
    assert main(["run", "--preset", "digits", "--batch-size", "63", "--out", str(tmp_path / "x")]) == 2
    assert "batch_size=63 is not allowed under torchrun with 2 processes" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_linear_learning_rate_scaling_follows_the_global_batch():
    base = preset("digits")
    assert scaled_config("digits", {"batch_size": 256}, "linear").lr == pytest.approx(4 * base.lr)
    assert scaled_config("digits", {"batch_size": 256}).lr == base.lr  # "none" keeps the preset's
    assert scaled_config("digits", {}, "linear") == base
    with pytest.raises(ValueError, match="lr_scaling='sqrt' is not allowed: it must be one of 'none', 'linear'"):
        scaled_config("digits", {}, "sqrt")


@pytest.mark.slow
def test_readme_torchrun_command_meets_the_quickstart_claims(tmp_path):
    """The README's command, full preset: the claims the single-process quickstart makes, and the setup recorded."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(_free_port()),
           "-m", "wfn_core", "run", "--preset", "digits", "--out", str(out), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WFN_NO_PROGRESS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("digits: top-1") == 1  # only rank 0 reports and writes
    summary = json.loads((out / "summary.json").read_text())
    assert {k: summary[k] for k in ("world_size", "batch_per_rank", "global_batch", "lr", "lr_scaling")} == {
        "world_size": 2, "batch_per_rank": 32, "global_batch": 64, "lr": preset("digits").lr, "lr_scaling": "none"}
    with open(out / "history.csv") as f:
        final = list(csv.DictReader(f))[-1]
    assert float(final["fixed_fraction"]) == 1.0
    drop = 100 * (summary["baseline_top1"] - summary["final_top1"])
    assert drop <= MAX_DROP_POINTS, summary
    assert summary["unique"] <= MAX_UNIQUE, summary
    assert summary["entropy_bits"] <= MAX_ENTROPY_BITS, summary
