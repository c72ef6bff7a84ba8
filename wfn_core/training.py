"""Training utilities: seeding, device choice, quiet-able progress bars, one epoch, evaluation (sharded
across ranks under ``torch.distributed``)."""

from __future__ import annotations

import itertools
import math
import os
import random
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, RandomSampler
from tqdm.auto import tqdm
from tqdm.std import tqdm as std_tqdm

from ._validation import InvalidParameterError, check_choice, check_int, check_number
from .io import atomic_torch_save

__all__ = [
    "default_device",
    "progress",
    "progress_enabled",
    "seed_everything",
    "train_epoch",
    "evaluate",
    "NonFiniteLossError",
    "classification_loss",
    "default_batch",
    "train_baseline",
    "make_optimizer",
    "reseed",
    "OPTIMIZERS",
]

#: The optimisers a WFN run (and a baseline's fine-tune) can use.
OPTIMIZERS = ("adam", "sgd")

LossFn = Callable[[Any, Any], torch.Tensor]
BatchFn = Callable[[Any], tuple[Any, Any]]


class NonFiniteLossError(FloatingPointError):
    """Raised when a training loss becomes NaN or infinite."""


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def progress_enabled() -> bool:
    """Progress bars are shown unless ``CI`` or ``WFN_NO_PROGRESS`` is set (to anything but 0/false)."""
    for var in ("CI", "WFN_NO_PROGRESS"):
        if os.environ.get(var, "").strip().lower() not in ("", "0", "false", "no"):
            return False
    return True


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (the test tqdm.autonotebook uses)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _display(data: dict[str, str], **kwargs: Any) -> Any:
    """IPython's ``display``, raw; a seam for tests (a fake notebook)."""
    from IPython.display import display

    return display(data, raw=True, **kwargs)


class _DisplayLine:
    """A file for a text tqdm bar in a notebook: its current line goes to one display handle as plain text.

    tqdm's notebook bars are widgets; a bar closed while running leaves a view of a model that no longer
    exists, which a saved notebook reopens as "Error displaying widget: model not found". Plain text
    through a display handle updates in place and saves as text.
    """

    encoding = "utf-8"  # tqdm draws unicode blocks only for a file that says it can

    def __init__(self) -> None:
        self._line, self._handle = "", None

    def write(self, text: str) -> int:
        text = text.replace("\x1b[A", "")  # cursor moves between nested bars: each bar has its own line here
        self._line = text.rsplit("\r", 1)[-1] if "\r" in text else self._line + text
        return len(text)

    def flush(self) -> None:
        data = {"text/plain": self._line.strip()}
        if self._handle is None:
            self._handle = _display(data, display_id=True)
        else:
            self._handle.update(data, raw=True)


def progress(iterable: Iterable | None = None, **kwargs) -> std_tqdm:
    """``tqdm.auto`` progress bar that stays quiet under CI or ``WFN_NO_PROGRESS``.

    In a notebook the bar is text updated in place through a display handle, not a widget: a closed bar
    then leaves its last line (``leave=True``) or an empty line (the default ``leave=False``) in the saved
    notebook, never a view of a widget that no longer exists.
    """
    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("leave", False)
    if not kwargs["disable"] and "file" not in kwargs and _in_notebook():
        # position 0: each bar owns its display line, so nested bars need no cursor moves
        kwargs.update(file=_DisplayLine(), position=0, dynamic_ncols=False)
        kwargs.setdefault("ncols", 100)
        return std_tqdm(iterable, **kwargs)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


def seed_everything(seed: int, threads: int | None = None) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so the same seed gives the same numbers.

    ``threads`` also fixes torch's intra-op thread count (results on the CPU can depend on it).
    """
    seed = check_int("seed", seed, low=0)
    random.seed(seed)
    # deliberate: seeds NumPy's legacy global generator, which user code and libraries draw from
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def reseed(loader: Iterable, key: int) -> None:
    """Make the next epoch's shuffling and dropout a function of ``key`` alone: seeds torch's global
    generator and the loader's sampler (its generator, or a ``DistributedSampler``'s epoch)."""
    torch.manual_seed(key)
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(key)
        return
    generator = getattr(sampler, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(key)


def make_optimizer(
    params: Iterable[nn.Parameter], name: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """Adam, or SGD with ``momentum``, over ``params`` (every training loop in wfn builds its optimiser here)."""
    check_choice("optimizer", name, OPTIMIZERS)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def default_batch(batch: Any) -> tuple[Any, Any]:
    """``(inputs, targets)`` of a batch that is a pair, as a ``TensorDataset`` or torchvision yields it."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, Mapping):
        keys = ", ".join(map(repr, batch))
        raise InvalidParameterError(
            f"the loader yields dict batches (keys {keys}), and without batch= WFN reads (inputs, targets) pairs: "
            f"pass batch=lambda b: (b[<inputs key>], b[<targets key>])"
        )
    size = f"a {type(batch).__name__} of {len(batch)} items" if isinstance(batch, (tuple, list)) else \
        f"a {type(batch).__name__}"
    raise InvalidParameterError(
        f"the loader yields {size}, and without batch= WFN reads (inputs, targets) pairs: pass batch=, a "
        f"function from one batch to (inputs, targets), for example batch=lambda b: (b[0], b[1])"
    )


def _batches(loader: Iterable, batch: BatchFn | None = None) -> Iterable:
    unpack = batch or default_batch
    for item in loader:
        yield unpack(item)


def _to(x: Any, device: torch.device) -> Any:
    """``x`` on ``device``: a tensor, or tuples, lists and dicts of them."""
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, Mapping):
        return {k: _to(v, device) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_to(v, device) for v in x)
    return x


def _forward(model: nn.Module, inputs: Any) -> Any:
    """``model(inputs)``; a tuple of inputs is passed as positional arguments, a dict as keywords."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


def classification_loss(outputs: Any, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits ``(N, C)`` against class indices ``(N,)``, the default loss, with clear errors
    where the model or the data are not a classifier's."""
    if not isinstance(outputs, torch.Tensor):
        kind = f"a dict (keys {', '.join(map(repr, outputs))})" if isinstance(outputs, Mapping) else \
            f"a {type(outputs).__name__}"
        raise InvalidParameterError(
            f"the model returned {kind}, not a tensor of logits, and the default loss is cross-entropy: pass "
            f"loss_fn=, a function (outputs, targets) -> scalar loss, for example "
            f"loss_fn=lambda out, y: F.cross_entropy(out['logits'], y)"
        )
    if not isinstance(targets, torch.Tensor) or targets.is_floating_point() or targets.is_complex():
        what = f"a {targets.dtype} tensor of shape {tuple(targets.shape)}" if isinstance(targets, torch.Tensor) \
            else f"a {type(targets).__name__}"
        raise InvalidParameterError(
            f"the targets are {what}, not class indices, and the default loss is cross-entropy over classes: "
            f"for regression pass loss_fn=torch.nn.functional.mse_loss (accuracy is then not measured), or "
            f"another loss_fn(outputs, targets)"
        )
    if outputs.dim() != 2 or targets.dim() != 1 or outputs.shape[0] != targets.shape[0]:
        raise InvalidParameterError(
            f"the model's outputs (shape {tuple(outputs.shape)}) and targets (shape {tuple(targets.shape)}) are "
            f"not logits (N, classes) and class indices (N,), which the default cross-entropy needs: pass loss_fn="
        )
    return F.cross_entropy(outputs, targets)


def _hits(outputs: Any, targets: Any, k: int) -> tuple[int, int] | None:
    """(top-1, top-k) hits where outputs are logits (N, C) and targets class indices (N,); else None."""
    if not (isinstance(outputs, torch.Tensor) and isinstance(targets, torch.Tensor) and outputs.dim() == 2
            and targets.dim() == 1 and not targets.is_floating_point() and len(outputs) == len(targets)):
        return None
    top = outputs.detach().topk(min(k, outputs.shape[1]), dim=1).indices == targets[:, None]
    return int(top[:, 0].sum()), int(top.any(dim=1).sum())


def _count(targets: Any) -> int:
    if isinstance(targets, torch.Tensor):
        return int(targets.shape[0]) if targets.dim() else 1
    return len(targets)


def train_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    *,
    loss_fn: LossFn | None = None,
    grad_clip: float | None = None,
    after_step: Callable[[], None] | None = None,
    device: torch.device | str | None = None,
    desc: str = "train",
    batch: BatchFn | None = None,
) -> dict[str, float | None]:
    """Train ``model`` for one pass over ``loader``; returns mean ``loss`` and training ``top1`` (None
    where the outputs are not class logits).

    ``loss_fn(outputs, targets)`` defaults to :func:`classification_loss`; ``batch`` turns one item of
    ``loader`` into ``(inputs, targets)`` (default: :func:`default_batch`); ``after_step`` runs after
    every optimiser step (for example to re-project frozen weights). A NaN or infinite loss raises
    :class:`NonFiniteLossError` before the optimiser step.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    loss_fn = loss_fn or classification_loss
    model.train()
    total_loss, seen, steps = 0.0, 0, 0
    correct: int | None = 0
    bar = progress(_batches(loader, batch), desc=desc, total=_len_or_none(loader))
    for inputs, targets in bar:
        inputs, targets = _to(inputs, device), _to(targets, device)
        optimizer.zero_grad(set_to_none=True)
        logits = _forward(model, inputs)
        loss = loss_fn(logits, targets)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss became {loss.item()} at step {steps} of {desc}")
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if after_step is not None:
            after_step()
        n = _count(targets)
        total_loss += loss.item() * n
        hits = _hits(logits, targets, 1) if correct is not None else None
        correct = None if hits is None else correct + hits[0]
        seen += n
        steps += 1
        bar.set_postfix(loss=f"{total_loss / seen:.4f}")
    if seen == 0:
        raise ValueError("the training loader yielded no batches")
    return {"loss": total_loss / seen, "top1": None if correct is None else correct / seen}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str | None = None,
    desc: str = "eval",
    show_progress: bool = True,
    shard: bool = False,
    loss_fn: LossFn | None = None,
    batch: BatchFn | None = None,
) -> dict[str, float | None]:
    """Top-1 and top-5 accuracy (fractions) and mean loss of ``model`` on ``loader``.

    The loss is ``loss_fn`` (default :func:`classification_loss`, cross-entropy); with a ``loss_fn`` for
    outputs that are not class logits (regression, dicts) ``top1`` and ``top5`` are None. ``batch`` turns
    one item of ``loader`` into ``(inputs, targets)`` (default: :func:`default_batch`).

    ``shard=True`` under ``torch.distributed`` splits the work across the ranks: batch ``i`` of
    ``loader`` (a :class:`~torch.utils.data.DataLoader` in a fixed order) is evaluated on rank
    ``i % world_size`` only, and the per-batch sums are all-reduced, so every rank returns exactly what
    one process evaluating the whole loader returns (same batches, summed in the same order). Every
    rank must call it, with the same model. Without a process group it is the plain evaluation.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    rank, world = (dist.get_rank(), dist.get_world_size()) if shard and dist.is_initialized() else (0, 1)
    batches = _rank_batches(loader, rank, world) if world > 1 else loader
    was_training = model.training
    model.eval()
    rows: list[tuple[float, float, float, int]] = []  # per batch: loss sum, top-1 hits, top-5 hits, examples
    bar = progress(_batches(batches, batch), desc=desc, total=_len_or_none(batches),
                   disable=not (show_progress and progress_enabled()))
    for inputs, targets in bar:
        inputs, targets = _to(inputs, device), _to(targets, device)
        outputs = _forward(model, inputs)
        n = _count(targets)
        if loss_fn is None:
            classification_loss(outputs, targets)  # the checks, with their messages
            loss_sum = F.cross_entropy(outputs, targets, reduction="sum").item()
        else:
            loss_sum = float(loss_fn(outputs, targets)) * n  # a mean over the batch
        hits = _hits(outputs, targets, 5)
        one, five = hits if hits is not None else (math.nan, math.nan)  # NaN: not a classifier's outputs
        rows.append((loss_sum, one, five, n))
    model.train(was_training)
    if world > 1:
        rows = _gather_rows(rows, rank, world, len(loader), device)  # type: ignore[arg-type]
    loss_sum, top1, top5, seen = 0.0, 0.0, 0.0, 0
    for loss, one, five, n in rows:  # in batch order, so sharded and whole sums agree to the bit
        loss_sum, top1, top5, seen = loss_sum + loss, top1 + float(one), top5 + float(five), seen + int(n)
    if seen == 0:
        raise ValueError("the evaluation loader yielded no batches")
    accuracy = not math.isnan(top1)
    return {"top1": top1 / seen if accuracy else None, "top5": top5 / seen if accuracy else None,
            "loss": loss_sum / seen}


def _rank_batches(loader: Iterable, rank: int, world: int) -> DataLoader:
    """A loader over batches ``rank, rank + world, ...`` of ``loader``: the same batches, so the same logits."""
    batched = isinstance(loader, DataLoader) and loader.batch_sampler is not None
    if not batched or isinstance(loader.dataset, IterableDataset):
        raise ValueError(
            f"sharded evaluation needs a DataLoader over a map-style dataset with a batch size, not "
            f"{type(loader).__name__}: it hands each rank whole batches of it"
        )
    if isinstance(loader.sampler, RandomSampler):
        raise ValueError(
            "sharded evaluation needs the evaluation loader in a fixed order, but it shuffles (RandomSampler): "
            "build it with shuffle=False"
        )
    mine = list(itertools.islice(loader.batch_sampler, rank, None, world))
    return DataLoader(
        loader.dataset, batch_sampler=mine, num_workers=loader.num_workers, collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory, worker_init_fn=loader.worker_init_fn, timeout=loader.timeout,
    )


def _gather_rows(rows: list, rank: int, world: int, n_batches: int, device: torch.device) -> list[list[float]]:
    """Every rank's per-batch rows, in batch order, on every rank.

    Each rank fills its own rows of a zero table and the tables are summed: adding zeros is exact, and
    float64 holds the float32 loss sums and the counts exactly.
    """
    table = torch.zeros(n_batches, 4, dtype=torch.float64)
    if rows:
        table[rank::world] = torch.tensor(rows, dtype=torch.float64)
    on = device if dist.get_backend() == "nccl" else torch.device("cpu")  # NCCL reduces GPU tensors only
    table = table.to(on)
    dist.all_reduce(table)
    return table.cpu().tolist()


def _len_or_none(loader: Iterable) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


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
    check_int("epochs", epochs, low=1)
    check_number("lr", lr, low=0, low_open=True)
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    optimizer = make_optimizer(model.parameters(), "adam", lr, weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    for epoch in progress(range(epochs), desc="epochs"):
        train_epoch(model, train_loader, optimizer, device=device, desc=f"epoch {epoch + 1}")
        schedule.step()
    metrics = evaluate(model, test_loader, device=device)
    if out is not None:
        atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out)
    return metrics
