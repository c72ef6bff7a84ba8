"""Run a named preset end to end (what ``python -m wfn_core run`` does), in one process or under
``torchrun`` (DDP through ``torch.distributed``; backend ``nccl`` on GPUs, ``gloo`` on the CPU).

Under ``torchrun`` the run keeps the single-process schedule: the preset's batch is the *global* batch
(one optimiser step sees that many images over all ranks), so each rank trains on batch / world size
and an epoch makes as many steps as in one process, with the same learning rate.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from .config import WFNConfig, preset
from .io import atomic_torch_save, atomic_write_csv, atomic_write_text
from .pipeline import CHECKPOINT_NAME, WFNResult, run_wfn

__all__ = [
    "run_preset", "build_preset", "write_run_outputs", "distributed_loader", "per_rank_batch", "scaled_config",
    "SUMMARY_KEYS", "LR_SCALING",
]

SUMMARY_KEYS = (
    "baseline_top1", "final_top1", "unique", "unique_nonzero", "entropy_bits", "entropy_bits_nonzero",
    "power_of_two_share", "seconds",
)
#: How the learning rate follows a global batch other than the preset's: ``none`` keeps it, ``linear``
#: multiplies it by global batch / preset's batch (Goyal et al. 2017, "Accurate, Large Minibatch SGD").
LR_SCALING = ("none", "linear")


def build_preset(
    name: str, config: WFNConfig, weights: Path | None = None, data_root: Path | None = None, eval_split: str = "test"
):
    """The trained model and the (train, eval) loaders a preset starts from; ``eval_split="val"`` gives the
    validation split instead of the test split (where δ is searched; only the digits preset has one)."""
    from . import data, models

    if eval_split != "test" and name != "digits":
        raise ValueError(
            f"eval_split={eval_split!r} is not allowed for preset={name!r}: only the digits preset has a validation "
            f"split wired up, and a search must not measure on the test split"
        )
    if name == "digits":
        if weights is None:
            model = models.load_pretrained_digits()
        else:
            model = models.DigitsCNN()
            model.load_state_dict(models.load_state_dict_file(weights))
        return model, *data.digits(batch_size=config.batch_size, seed=config.seed, eval_split=eval_split)
    if name == "cifar10_resnet18":
        if weights is None:
            raise ValueError("preset cifar10_resnet18 needs --weights: a trained cifar_resnet18 state_dict")
        model = models.cifar_resnet18()
        model.load_state_dict(models.load_state_dict_file(weights))
        return model, *data.cifar10(root=data_root, batch_size=config.batch_size, seed=config.seed)
    if name.startswith("imagenet_"):
        arch = name.removeprefix("imagenet_")
        model = models.torchvision_model(arch, weights=weights if weights is not None else "IMAGENET1K_V1")
        return model, *data.imagenet(root=data_root, batch_size=config.batch_size, seed=config.seed)
    raise ValueError(f"preset={name!r} has no model and data set wired up")


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """The batch each of ``world_size`` ranks trains on so that one step sees ``batch_size`` images."""
    if batch_size % world_size:
        below, above = batch_size - batch_size % world_size, batch_size - batch_size % world_size + world_size
        nearest = f"{below} or {above}" if below > 0 else f"{above}"
        raise ValueError(
            f"batch_size={batch_size} is not allowed under torchrun with {world_size} processes: it must divide "
            f"evenly by the world size (each rank trains on batch_size / {world_size} images a step, so that "
            f"a step sees batch_size images, as in one process); choose a multiple of {world_size}, for example "
            f"{nearest}"
        )
    return batch_size // world_size


def distributed_loader(loader: DataLoader, seed: int) -> DataLoader:
    """This rank's share of a training loader whose batch size is the global batch.

    A :class:`DistributedSampler` deals every rank the same number of images per epoch (padding with
    at most world size - 1 repeats), so the ranks' last batches match and DDP's mean of their gradients
    is the gradient of the global batch.
    """
    world = dist.get_world_size()
    sampler = DistributedSampler(loader.dataset, shuffle=True, seed=seed)
    return DataLoader(
        loader.dataset, batch_size=per_rank_batch(loader.batch_size, world), sampler=sampler,
        num_workers=loader.num_workers, pin_memory=loader.pin_memory, drop_last=False,
    )


def scaled_config(name: str, overrides: dict[str, Any] | None = None, lr_scaling: str = "none") -> WFNConfig:
    """The preset with ``overrides``; under ``lr_scaling="linear"`` its learning rate times global batch
    (``overrides["batch_size"]``) / the preset's batch."""
    if lr_scaling not in LR_SCALING:
        raise ValueError(f"lr_scaling={lr_scaling!r} is not allowed: choose one of {', '.join(LR_SCALING)}")
    config = preset(name, **(overrides or {}))
    if lr_scaling == "linear":
        config = config.replace(lr=config.lr * config.batch_size / preset(name).batch_size)
    return config


def write_run_outputs(
    result: WFNResult, out: Path, seconds: float, setup: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``model.pt`` (plain state_dict), ``history.csv`` and ``summary.json``, each written atomically;
    ``setup`` (world size, batches, learning rate) is added to the summary."""
    atomic_torch_save({k: v.detach().cpu() for k, v in result.model.state_dict().items()}, out / "model.pt")
    atomic_write_csv(out / "history.csv", result.history, list(result.history[0]))
    final = result.final
    summary = {
        "baseline_top1": result.baseline["top1"],
        "final_top1": final["top1"],
        **{k: final[k] for k in SUMMARY_KEYS[2:-1]},
        "seconds": seconds,
        **(setup or {}),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def format_history(result: WFNResult) -> str:
    """A short table: one line per iteration."""
    lines = [f"{'iter':>4} {'fixed':>7} {'delta_t':>8} {'top1':>7} {'unique':>7} {'H bits':>7} {'centres':>7}"]
    b = result.baseline
    lines.append(f"{'fp32':>4} {0:>7.3f} {'':>8} {100 * b['top1']:>7.1f} {b['unique']:>7} {b['entropy_bits']:>7.2f} {'':>7}")
    for r in result.history:
        lines.append(
            f"{r['iteration']:>4} {r['fixed_fraction']:>7.3f} {r['delta_t']:>8.4f} {100 * r['top1']:>7.1f} "
            f"{r['unique']:>7} {r['entropy_bits']:>7.2f} {r['centres']:>7}"
        )
    return "\n".join(lines)


def _search_first(
    name: str, config: WFNConfig, out: Path, weights: Path | None, data_root: Path | None, device: str | None,
    search: dict[str, Any],
) -> tuple[WFNConfig, dict[str, Any]]:
    """Search δ on the validation split for ``config`` (its other settings as given); write
    ``out/search.json``; return the config with that δ and what ``summary.json`` records about it."""
    from .delta_search import search_preset, write_search

    found = search_preset(name, config=config, weights=weights, data_root=data_root, device=device, **search)
    write_search(found, out / "search.json")
    if found.delta is None:
        raise ValueError(f"--delta auto found no δ: {found.reason} (details in {out / 'search.json'})")
    chosen = found.chosen
    print(found.table())
    print(f"δ = {found.delta:g} chosen on the validation split ({chosen['drop']:.2f} points below fp32, "
          f"{found.full_runs} full runs, {found.new_runs} new); now the run, evaluated on the test split")
    record = {
        "delta": found.delta, "delta_source": "search",
        "delta_search": {"split": found.split, "max_drop": found.max_drop, "max_runs": found.max_runs,
                         "full_runs": found.full_runs, "new_runs": found.new_runs,
                         "val_baseline_top1": found.baseline_top1, "val_top1": chosen["top1"],
                         "val_drop": chosen["drop"], "bracket": list(found.bracket), "reason": found.reason,
                         "file": "search.json"},
    }
    return config.replace(delta=found.delta), record


def run_preset(
    name: str,
    out: str | Path,
    overrides: dict[str, Any] | None = None,
    weights: Path | None = None,
    data_root: Path | None = None,
    resume: bool = False,
    device: str | None = None,
    lr_scaling: str = "none",
    delta_search: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Run WFN with a preset and write its outputs to ``out``; returns the summary on rank 0.

    ``overrides["batch_size"]`` is the global batch (default: the preset's); under ``torchrun`` each
    rank trains on global batch / world size. ``lr_scaling`` (:data:`LR_SCALING`) says how the learning
    rate follows a global batch other than the preset's.

    ``delta_search`` (keyword arguments of :func:`wfn_core.delta_search.search_delta`, ``{}`` for its
    defaults) chooses δ first, on the validation split (``--delta auto``): the search goes to
    ``search.json`` and ``summary.json`` records ``delta``, ``delta_source`` and ``delta_search``.
    """
    config = scaled_config(name, overrides, lr_scaling)
    out = Path(out)
    if (out / CHECKPOINT_NAME).exists() and not resume:
        raise ValueError(f"{out} already holds a WFN run; pass --resume to continue it, or choose another --out")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    batch = per_rank_batch(config.batch_size, world)  # refused here, before any process group or data
    chosen: dict[str, Any] = {}
    if delta_search is not None:
        if world > 1:
            raise ValueError(
                "--delta auto is not supported under torchrun: run `python -m wfn_core search` in one process "
                "first, then pass the δ it prints with --delta"
            )
        config, chosen = _search_first(name, config, out, weights, data_root, device, delta_search)
    distributed = world > 1
    if distributed and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device != "cpu" else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank() if distributed else 0
    if device is None and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if distributed else "cuda"
    if device is not None and device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    try:
        from .training import seed_everything

        seed_everything(config.seed)
        model, train_loader, test_loader = build_preset(name, config, weights, data_root)
        if distributed:
            train_loader = distributed_loader(train_loader, config.seed)
        began = time.perf_counter()
        result = run_wfn(model, train_loader, test_loader, config, checkpoint_dir=out, resume=resume, device=device)
        seconds = time.perf_counter() - began
        if rank != 0:
            return None
        setup = {"world_size": world, "batch_per_rank": batch, "global_batch": config.batch_size,
                 "lr": config.lr, "lr_scaling": lr_scaling, **chosen}
        summary = write_run_outputs(result, out, seconds, setup)
        print(format_history(result))
        spread = f"; {world} processes x batch {batch} = global batch {config.batch_size}" if distributed else ""
        print(
            f"{name}: top-1 {100 * summary['baseline_top1']:.2f}% -> {100 * summary['final_top1']:.2f}%, "
            f"{summary['unique']} unique values ({summary['unique_nonzero']} non-zero), "
            f"{summary['entropy_bits']:.2f} bits, {summary['seconds']:.1f} s{spread}; wrote {out}"
        )
        return summary
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()
