"""Train the fp32 model WFN starts from (the shipped digits baseline is made here)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .io import atomic_torch_save
from .training import default_device, evaluate, progress, train_epoch

__all__ = ["train_baseline", "DIGITS_BASELINE_RECIPE"]

#: How the shipped ``data/digits_cnn.pt`` was made (``python -m wfn_core train-baseline``).
DIGITS_BASELINE_RECIPE = {"epochs": 20, "lr": 3e-3, "weight_decay": 1e-4, "batch_size": 64, "seed": 0}


def train_baseline(
    model: nn.Module,
    train_loader,
    test_loader,
    *,
    epochs: int,
    lr: float,
    weight_decay: float = 0.0,
    device: torch.device | str | None = None,
    out: str | Path | None = None,
) -> dict[str, float]:
    """Train with Adam and a cosine learning-rate schedule; optionally save the ``state_dict``
    atomically to ``out``. Returns the final test metrics (``top1``, ``top5``, ``loss``)."""
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} must be a positive integer")
    if not lr > 0:
        raise ValueError(f"lr={lr!r} must be > 0")
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    for epoch in progress(range(epochs), desc="epochs"):
        train_epoch(model, train_loader, optimizer, device=device, desc=f"epoch {epoch + 1}")
        schedule.step()
    metrics = evaluate(model, test_loader, device=device)
    if out is not None:
        atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out)
    return metrics

