"""The WFN outer loop (section 1): cluster, fix, retrain with the regulariser, evaluate, checkpoint.

Works in one process or under ``torchrun`` (PyTorch DDP): the clustering decision is taken on rank 0
and broadcast, every rank trains through ``DistributedDataParallel``, evaluation is sharded across the
ranks (every rank gets the single-process numbers), only rank 0 writes files.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ._validation import check_bool, check_finite, check_number, fail
from .clustering import ClusterResult, cluster, delta_schedule
from .config import WFNConfig
from .fixable import FloatParametersWarning, fixable_parameters, flat_values, float_parameters
from .freezing import WeightFixer
from .io import atomic_torch_save
from .metrics import summary
from .regulariser import ClusterRegulariser
from .training import (
    NonFiniteLossError,
    classification_loss,
    default_device,
    evaluate,
    make_optimizer,
    progress,
    reseed,
    train_epoch,
)

__all__ = ["run_wfn", "WFNResult", "CheckpointError", "AccuracyDropError", "CollapseWarning", "CHECKPOINT_NAME",
           "COLLAPSE_POINTS"]

CHECKPOINT_NAME = "wfn_checkpoint.pt"
CHECKPOINT_VERSION = 2  # 2: the fixer's masks and values live only in the model's state_dict


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from (corrupted, other architecture, other settings)."""


class AccuracyDropError(RuntimeError):
    """The accuracy guard (``max_drop``) stopped a run: top-1 fell too far below the fp32 baseline."""


class CollapseWarning(UserWarning):
    """A run without ``max_drop`` lost more than :data:`COLLAPSE_POINTS` of top-1 (searches that probe large δ
    on purpose silence it)."""


#: Without ``max_drop``, a run whose top-1 falls more than this many points below fp32 warns once: a drop
#: this size is a collapse (the digits preset's drop stays under 1 point on every machine measured), not
#: a trade-off.
COLLAPSE_POINTS = 5.0


@dataclass
class WFNResult:
    """What :func:`run_wfn` returns: the weight-fixed model (a plain module of the original architecture),
    the fp32 baseline's scores, one record per fixing iteration, and the centres picked."""

    model: nn.Module
    baseline: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    centres: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    include_bn: bool = False
    extra_parameters: tuple[str, ...] = ()

    def flat_values(self) -> torch.Tensor:
        """The fixable values of the fixed model, flattened in the order of :func:`fixable_parameters`."""
        return flat_values(fixable_parameters(self.model, self.include_bn, self.extra_parameters))

    @property
    def final(self) -> dict[str, Any]:
        """The last iteration's record (the finished run)."""
        return self.history[-1]

    def table(self) -> str:
        """A short table: the fp32 baseline, then one line per iteration."""
        lines = [f"{'iter':>4} {'fixed':>7} {'delta_t':>8} {'top1':>7} {'unique':>7} {'H bits':>7} {'centres':>7}"]
        b = self.baseline
        lines.append(f"{'fp32':>4} {0:>7.3f} {'':>8} {_percent(b['top1'])} "
                     f"{b['unique']:>7} {b['entropy_bits']:>7.2f} {'':>7}")
        for r in self.history:
            lines.append(
                f"{r['iteration']:>4} {r['fixed_fraction']:>7.3f} {r['delta_t']:>8.4f} {_percent(r['top1'])} "
                f"{r['unique']:>7} {r['entropy_bits']:>7.2f} {r['centres']:>7}"
            )
        return "\n".join(lines)


def _percent(top1: float | None) -> str:
    return f"{'n/a':>7}" if top1 is None else f"{100 * top1:>7.1f}"


def _drop_points(baseline: dict[str, Any], scores: dict[str, Any]) -> float | None:
    """Top-1 accuracy points below the baseline (None where accuracy is not measured)."""
    if baseline["top1"] is None or scores["top1"] is None:
        return None
    return 100 * (baseline["top1"] - scores["top1"])


def _warn_float_parameters(model: nn.Module, config: WFNConfig, extra: tuple[str, ...]) -> None:
    """Warn when a parameter WFN does not know stays float, listing everything left float and why.

    Batch norm alone left float is the documented default (``include_bn``), so it does not warn by itself."""
    left = float_parameters(model, config.include_bn, extra)
    if any(not why.startswith("batch-norm") for _, why in left):
        lines = "\n".join(f"  {name}: {why}" for name, why in left)
        warnings.warn(FloatParametersWarning(
            f"WFN leaves {len(left)} parameters of {type(model).__name__} in floating point (their values are not "
            f"counted in the unique values or the entropy):\n{lines}"), stacklevel=3)


def _check_batch_size(loader: Any, config: WFNConfig) -> None:
    world = dist.get_world_size() if _distributed() else 1
    have = getattr(loader, "batch_size", None)
    if have is not None and have * world != config.batch_size:
        where = f" x {world} processes" if world > 1 else ""
        warnings.warn(
            f"train_loader has batch size {have}{where}, config.batch_size is {config.batch_size}: run_wfn trains "
            f"on the loader's batches as they come (config.batch_size is what wfn builds its own loaders with); "
            f"build the loader with batch_size={config.batch_size // world} to train as the config says",
            stacklevel=3,
        )


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _metrics(fixer: WeightFixer) -> dict[str, Any]:
    s = summary(fixer.flat_values())
    return {k: s[k] for k in ("unique", "unique_nonzero", "entropy_bits", "entropy_bits_nonzero", "power_of_two_share")}


def _broadcast_result(result: ClusterResult | None) -> ClusterResult:
    """Rank 0's clustering decision, shared with every rank (identical masks and values)."""
    if not _distributed():
        assert result is not None
        return result
    payload = [result] if _rank() == 0 else [None]
    dist.broadcast_object_list(payload, src=0)
    return payload[0]


def _sync_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (batch-norm running statistics). DDP broadcasts them before each
    training forward, so after the last step every rank holds statistics of its own batch; rank 0's are
    the ones the checkpoint and the returned model keep."""
    if _distributed():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def _evaluate(model: nn.Module, loader, device: torch.device, loss_fn=None, batch=None) -> dict[str, Any]:
    """Test scores of the model as rank 0 holds it; under DDP each rank evaluates a share of the batches."""
    _sync_buffers(model)
    return evaluate(model, loader, device=device, shard=_distributed(), loss_fn=loss_fn, batch=batch)


def _signature(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def _load_checkpoint(
    path: Path, model: nn.Module, fixer: WeightFixer, config: WFNConfig, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or corrupted?): {exc}") from exc
    if not isinstance(state, dict) or "version" not in state:
        raise CheckpointError(f"{path} is not a wfn checkpoint")
    if state["version"] != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} is a wfn checkpoint of version {state['version']!r}; this wfn reads version "
            f"{CHECKPOINT_VERSION} (start the run again without resume)"
        )
    signature = _signature(model)
    if state["signature"] != signature:
        raise CheckpointError(
            f"checkpoint {path} was written for another architecture "
            f"({len(state['signature'])} tensors, first {state['signature'][:1]}; this model: "
            f"{len(signature)} tensors, first {signature[:1]})"
        )
    if state["config"] != config.to_dict():
        changed = sorted(k for k, v in config.to_dict().items() if state["config"].get(k) != v)
        raise CheckpointError(f"checkpoint {path} was written with other settings (differ: {', '.join(changed)})")
    if tuple(state.get("extra_parameters", ())) != extra:
        raise CheckpointError(f"checkpoint {path} was written with extra_parameters="
                              f"{state.get('extra_parameters', [])}, not {list(extra)}")
    model.load_state_dict(state["model"])  # parameters, fixed values and masks (the parametrisations' buffers)
    fixer.centres = state["centres"].clone()
    fixer.sync_from_model()
    return state


def run_wfn(
    model: nn.Module,
    train_loader,
    test_loader,
    config: WFNConfig,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    device: torch.device | str | None = None,
    *,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    batch: Callable[[Any], tuple[Any, Any]] | None = None,
    extra_parameters: Iterable[str] = (),
    callbacks: Callable[[dict[str, Any]], None] | Iterable[Callable[[dict[str, Any]], None]] = (),
    max_drop: float | None = None,
) -> WFNResult:
    """Run Weight Fixing on a trained ``model`` and return the weight-fixed copy in a :class:`WFNResult`.

    ``model`` is left as it was found: the run works on a deep copy (parametrised while it trains), and
    ``result.model`` is that copy made plain again (no parametrisations; its ``state_dict`` loads into the
    original architecture), on ``device``, in the train/eval mode ``model`` was in. ``history`` holds one
    record per fixing iteration.

    Under ``torch.distributed`` (world size > 1) every rank calls it: ``train_loader`` is the rank's
    share (a :class:`~torch.utils.data.DistributedSampler`, batch = global batch / world size, as
    :func:`wfn_core.cli.distributed_loader` builds it) and ``test_loader`` the whole evaluation set
    in a fixed order on every rank; each rank evaluates a share of its batches.

    For your own model and data:

    - ``loss_fn(outputs, targets)``: the task loss (default: cross-entropy over class logits, with a clear
      error for float targets or non-tensor outputs); top-1 is then measured only where the outputs are
      class logits, and is None in the history otherwise;
    - ``batch(item) -> (inputs, targets)``: unpacks what the loaders yield (default: ``(inputs, targets)``
      pairs); a tuple of inputs goes to the model as positional arguments, a dict as keywords;
    - ``extra_parameters``: names of parameters WFN would leave in floating point (listed, with the reason,
      by the ``FloatParametersWarning`` a run gives, and by :func:`wfn_core.fixable.float_parameters`);
    - ``callbacks``: functions called with each iteration's history record;
    - ``max_drop``: the accuracy guard, in top-1 points below the fp32 baseline (the δ search's unit):
      an iteration that drops more stops the run with :class:`AccuracyDropError`, and the checkpoint keeps
      the last good iteration. Without it, a drop of more than :data:`COLLAPSE_POINTS` warns once.
    """
    if not isinstance(model, nn.Module):
        raise fail("model", model, "a torch.nn.Module")
    if not isinstance(config, WFNConfig):
        raise fail("config", config, "a WFNConfig (for example wfn_core.preset('digits'))")
    check_bool("resume", resume)
    if resume and checkpoint_dir is None:
        raise fail("resume", resume, "False when checkpoint_dir is None (a run resumes from its checkpoint_dir)")
    for name, loader in (("train_loader", train_loader), ("test_loader", test_loader)):
        if hasattr(loader, "__len__") and len(loader) == 0:
            raise ValueError(f"{name} yields no batches: it needs at least one")
    for name, fn, what in (("loss_fn", loss_fn, "a function (outputs, targets) -> scalar loss"),
                           ("batch", batch, "a function from one batch to (inputs, targets)")):
        if fn is not None and not callable(fn):
            raise fail(name, fn, f"None (the default) or {what}")
    callbacks = [callbacks] if callable(callbacks) else list(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise fail("callbacks", cb, "a function of the history record, or a list of them")
    if max_drop is not None:
        check_number("max_drop", max_drop, low=0, why="top-1 points below the fp32 baseline, or None")
    extra = (extra_parameters,) if isinstance(extra_parameters, str) else tuple(extra_parameters)
    fixable_parameters(model, config.include_bn, extra)  # the names, checked before any work
    for name, param in model.named_parameters():  # a diverged or corrupted model, named before any work
        check_finite(f"parameter {name}", param)
    _warn_float_parameters(model, config, extra)
    _check_batch_size(train_loader, config)
    device = torch.device(device) if device is not None else default_device()
    was_training = model.training
    model = copy.deepcopy(model).to(device)  # the caller's model stays as it was
    fixer = WeightFixer(model, include_bn=config.include_bn, zero_threshold=config.zero_threshold,
                        extra_parameters=extra)
    regulariser = ClusterRegulariser(config.alpha, config.tau, config.zero_threshold)
    deltas = delta_schedule(config.delta, config.n_iterations)
    ckpt = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None

    train_model: nn.Module = model
    if _distributed():
        ids = [device.index] if device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    task_loss = loss_fn or classification_loss

    def regularised_loss(outputs: Any, targets: Any) -> torch.Tensor:
        return regulariser.fixer_loss(task_loss(outputs, targets), fixer)

    def scores_now() -> dict[str, Any]:
        return _evaluate(model, test_loader, device, loss_fn, batch)

    def train(iteration: int, epochs: int, with_regulariser: bool, label: str) -> None:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = make_optimizer(params, config.optimizer, config.lr, config.weight_decay,
                                   config.momentum)  # fresh each iteration
        for epoch in range(epochs):
            # shuffling and dropout a function of (seed, iteration, epoch) alone: a resumed run repeats an
            # uninterrupted one
            reseed(train_loader, (config.seed * 1_000 + iteration) * 1_000 + epoch)
            train_epoch(
                train_model, train_loader, optimizer, loss_fn=regularised_loss if with_regulariser else task_loss,
                grad_clip=config.grad_clip, device=device, desc=f"{label} epoch {epoch + 1}/{epochs}", batch=batch,
            )

    start, history, baseline = 0, [], None
    if resume and ckpt is not None and ckpt.exists():
        state = _load_checkpoint(ckpt, model, fixer, config, extra)
        start, history, baseline = state["iteration"] + 1, state["history"], state["baseline"]
    elif resume:
        warnings.warn(f"resume=True, but there is no checkpoint {ckpt}: starting a fresh run", stacklevel=2)
    if baseline is None:
        baseline = {**scores_now(), **_metrics(fixer)}
        if max_drop is not None and baseline["top1"] is None:
            raise fail("max_drop", max_drop, "None when top-1 accuracy is not measured (the model's outputs on "
                       "test_loader are not class logits with class-index targets)")
        if config.epochs_before > 0:  # no centres yet: cross-entropy only
            train(-1, config.epochs_before, False, "before fixing")

    collapsed = False
    bar = progress(range(start, config.n_iterations), desc="WFN iterations", total=config.n_iterations, initial=start)
    for t in bar:
        began = time.perf_counter()
        result = None
        if _rank() == 0:
            flat = fixer.flat_values().cpu()
            result = cluster(
                flat, config.fractions[t], deltas[t], zero_threshold=config.zero_threshold,
                fixed=fixer.fixed_mask().cpu() if t > 0 else None, recluster_fixed=config.recluster_fixed,
            )
        result = _broadcast_result(result)
        fixer.apply(result)
        if t < config.n_iterations - 1 and config.epochs_per_iteration > 0:
            try:
                train(t, config.epochs_per_iteration, True, f"iteration {t + 1}/{config.n_iterations}")
            except NonFiniteLossError as exc:
                kept = f"; the last good checkpoint is {ckpt}" if ckpt is not None and ckpt.exists() else ""
                raise NonFiniteLossError(f"WFN iteration {t} (fraction {config.fractions[t]}): {exc}{kept}") from exc
        scores = scores_now()
        record = {
            "iteration": t,
            "fraction": config.fractions[t],
            "fixed_fraction": fixer.fixed_fraction,
            "delta_t": deltas[t],
            "top1": scores["top1"],
            "top5": scores["top5"],
            "loss": scores["loss"],
            **_metrics(fixer),
            "centres": int(result.centres.numel()),
            "moved": int(result.moved),
            "released": int(result.released),
            "seconds": time.perf_counter() - began,
        }
        history.append(record)
        bar.set_postfix(top1=_percent(scores["top1"]).strip(), unique=record["unique"])
        for cb in callbacks:
            cb(dict(record))
        drop = _drop_points(baseline, scores)
        if max_drop is not None and drop > max_drop + 1e-9:  # a hair of slack: drops are differences of fractions
            kept = (f"the checkpoint {ckpt} keeps the last good iteration ({t - 1})" if ckpt is not None and t > 0
                    else "no earlier iteration was kept" if t == 0 else "pass checkpoint_dir to keep the last good one")
            raise AccuracyDropError(
                f"WFN iteration {t} (δ_t = {deltas[t]:.4g}, {100 * record['fixed_fraction']:.1f}% fixed): top-1 "
                f"{100 * scores['top1']:.2f}% is {drop:.2f} points below the fp32 baseline "
                f"{100 * baseline['top1']:.2f}%, more than max_drop={max_drop:g}; {kept}. A smaller δ keeps more "
                f"accuracy (python -m wfn_core search finds the largest δ within a budget)"
            )
        if max_drop is None and drop is not None and drop > COLLAPSE_POINTS and not collapsed:
            collapsed = True
            warnings.warn(CollapseWarning(
                f"WFN iteration {t} (δ_t = {deltas[t]:.4g}): top-1 fell from {100 * baseline['top1']:.2f}% to "
                f"{100 * scores['top1']:.2f}% ({drop:.1f} points): the network is collapsing; a smaller δ or "
                f"learning rate keeps it, and max_drop= stops such a run"), stacklevel=2)
        if ckpt is not None and _rank() == 0:
            atomic_torch_save(
                {
                    "version": CHECKPOINT_VERSION, "iteration": t, "config": config.to_dict(),
                    "signature": _signature(model), "model": model.state_dict(), "centres": fixer.centres,
                    "history": history, "baseline": baseline, "extra_parameters": list(extra),
                },
                ckpt,
            )
    centres = fixer.centres.clone()
    fixed = fixer.remove().train(was_training)  # the working copy, plain again
    return WFNResult(model=fixed, baseline=baseline, history=history, centres=centres, include_bn=config.include_bn,
                     extra_parameters=extra)
