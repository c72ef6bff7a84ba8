"""Baselines to set WFN against: uniform and APoT quantisers, k-means weight sharing, one comparison table.

Every quantiser works on the fixable set (``fixable.fixable_parameters``: Linear/Conv weights and
biases, plus BatchNorm γ/β with ``include_bn=True``) with plain tensor ops, and returns a quantised
**copy** of the model (the original is untouched).

- :func:`uniform_quantize`: symmetric, restricted-range uniform grid ``s·q``, ``q`` an integer with
  ``|q| ≤ qmax = 2^(b−1) − 1`` (so ``2^b − 1`` values), one scale per tensor or per output channel
  (dim 0). ``s = max|w| / qmax``, or with ``mse_clip=True`` the clip ``c = s·qmax`` minimising the
  squared error among 100 candidates ``c ∈ max|w|·linspace(0.3, 1, 100)`` (``max|w|`` is one of them,
  so the error is never above max-scaling).
  A 1-D parameter (a bias, BatchNorm γ/β) always has one scale per tensor: per-channel scales would
  give each entry its own scale (an exact, meaningless "quantisation"). Biases are quantised with the
  same bit width as the weights, so every method is measured on the same fixable set as WFN.
- :func:`apot_quantize`: additive powers of two (Li, Dong & Wang, ICLR 2020): a sign and a (b−1)-bit
  magnitude level from :func:`apot_levels` (normalised to max 1), times one scale per tensor: ``max|w|``
  by default, or the MSE-searched clip as above with ``mse_clip=True`` (the paper learns the clip
  during training; the search is the post-training stand-in). ``2^b − 1`` values per tensor.
- :func:`kmeans_share`: Deep Compression weight sharing (Han, Mao & Dally, ICLR 2016): 1-D k-means
  with linear initialisation, per tensor (``scope="layer"``) or over the whole fixable set
  (``scope="network"``). No pruning stage: only the sharing. Lloyd runs on the sorted values
  (:func:`kmeans_1d`).

Fine-tuning (``finetune=dict(train_loader=..., epochs=..., lr=..., optimizer="adam", ...)``, see
:func:`validate_finetune`) keeps every value on the method's grid:

- uniform/APoT: straight-through estimator with a float shadow copy. The scales are fixed by the
  initial quantisation; the model holds ``project(shadow)``; after each optimiser step (the
  ``after_step`` hook of :func:`~wfn_core.training.train_epoch`) the step the optimiser took on the
  quantised value is added to the shadow, which starts at the float weights, and the model is
  re-projected.
- k-means: the assignments are fixed and the centroids are trained through a parametrisation
  ``weight = centroids[labels]``; autograd makes each centroid's gradient the sum of the gradients of
  its weights (the shared-gradient update of Deep Compression), applied by the chosen optimiser.

:func:`compare` builds the table (metrics from :mod:`wfn_core.metrics` only); :func:`default_methods`
builds the issue's list of methods; :func:`format_table` prints it.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import itertools
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from .._validation import InvalidParameterError, check_choice, check_finite, check_int, check_number, fail
from ..fixable import fixable_parameters
from ..metrics import summary
from ..training import OPTIMIZERS, evaluate, make_optimizer, reseed, train_epoch

__all__ = [
    "MIN_BITS", "MAX_BITS", "APOT_BITS", "GRANULARITIES", "SCOPES",
    "uniform_scales", "uniform_project", "uniform_quantize",
    "apot_levels", "apot_scale", "apot_project", "apot_quantize",
    "kmeans_1d", "kmeans_share",
    "validate_finetune", "compressed_bytes", "compare", "default_methods", "format_table", "TABLE_KEYS",
    "wfn_training_epochs",
]

MIN_BITS, MAX_BITS = 2, 16
GRANULARITIES = ("tensor", "channel")
SCOPES = ("layer", "network")
CLIP_CANDIDATES, CLIP_LOW = 100, 0.3
_CHUNK_ELEMENTS = 1 << 22  # working-set bound of the clip search (candidates x entries)

# Additive terms of the APoT magnitude set for each total bit width b (b − 1 magnitude bits).
# A magnitude level is one choice per term, summed; the set is then divided by its maximum.
_APOT_TERMS: dict[int, tuple[tuple[float, ...], ...]] = {
    2: ((0.0, 1.0),),  # 1 magnitude bit: ternary {0, 1}
    3: ((0.0, 2.0**-1, 2.0**-2, 2.0**-3),),  # 2 bits, one term: {0, 1/4, 1/2, 1}
    4: ((0.0, 2.0**-1, 2.0**-2, 2.0**-4), (0.0, 2.0**-3)),  # 3 bits: a 2-bit term plus a 1-bit term
    5: ((0.0, 2.0**0, 2.0**-2, 2.0**-4), (0.0, 2.0**-1, 2.0**-3, 2.0**-5)),  # 4 bits: the paper's k=2, n=2
}
APOT_BITS = tuple(sorted(_APOT_TERMS))


# ------------------------------------------------------------------------------------- validation
def _check_bits(bits: Any, allowed: Sequence[int] | None = None) -> int:
    if allowed is None:
        return check_int("bits", bits, low=MIN_BITS, high=MAX_BITS)
    return check_choice("bits", bits, allowed)


_FINETUNE_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0, "momentum": 0.9, "grad_clip": None, "seed": 0, "device": None,
}


def validate_finetune(finetune: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Check a fine-tune spec and fill in defaults; ``None`` (or ``epochs=0``) means no fine-tune.

    Keys: ``train_loader`` and ``epochs`` (required); ``lr`` (1e-3, the digits preset's), ``optimizer``
    (``"adam"`` or ``"sgd"``), ``weight_decay`` (0), ``momentum`` (0.9, SGD only), ``grad_clip`` (None),
    ``seed`` (0: the torch RNG and the loader's sampler generator are reseeded, so every method sees
    the same batches), ``device`` (None: the model's).
    """
    if finetune is None:
        return None
    if not isinstance(finetune, Mapping):
        raise fail("finetune", finetune, "a dict (train_loader, epochs, ...) or None")
    unknown = set(finetune) - {"train_loader", "epochs", *_FINETUNE_DEFAULTS}
    if unknown:
        allowed = ", ".join(["train_loader", "epochs", *_FINETUNE_DEFAULTS])
        raise InvalidParameterError(f"finetune has unknown keys {sorted(unknown)}: the keys allowed are {allowed}")
    for key in ("train_loader", "epochs"):
        if key not in finetune:
            raise InvalidParameterError(f"finetune has no {key!r}: it must give train_loader and epochs")
    spec = {**_FINETUNE_DEFAULTS, **finetune}
    epochs = check_int("finetune epochs", spec["epochs"], low=0)
    check_number("finetune lr", spec["lr"], low=0, low_open=True)
    check_choice("finetune optimizer", spec["optimizer"], OPTIMIZERS)
    return spec if epochs > 0 else None


def _quantisable_copy(model: nn.Module, include_bn: bool) -> tuple[nn.Module, list[tuple[str, nn.Parameter]]]:
    if not isinstance(model, nn.Module):
        raise fail("model", model, "an nn.Module")
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        raise ValueError("the model is parametrised (a WeightFixer attached?); "
                         "pass a plain model, e.g. fixer.plain_model()")
    out = copy.deepcopy(model)
    return out, fixable_parameters(out, include_bn=include_bn)


def _rows(t: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """``t`` as (rows, entries): one row per output channel (dim 0), or one row for the whole tensor."""
    return t.reshape(t.shape[0], -1) if per_channel and t.dim() > 1 else t.reshape(1, -1)


def _search_clip(rows: torch.Tensor, project: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Per row, the clip in ``max|w|·linspace(0.3, 1, 100)`` minimising the squared error (ties: smallest).

    ``project(values, clip)`` maps ``values`` (R, C, M) onto the grid of clip (R, C, 1). Vectorised over
    rows, candidates in chunks; errors summed in float64.
    """
    amax = rows.abs().amax(1)  # (R,)
    fracs = torch.linspace(CLIP_LOW, 1.0, CLIP_CANDIDATES, dtype=rows.dtype, device=rows.device)
    per_chunk = max(1, _CHUNK_ELEMENTS // max(1, rows.numel()))
    errors = []
    for chunk in fracs.split(per_chunk):
        clip = amax[:, None, None] * chunk[None, :, None]  # (R, C, 1)
        diff = project(rows[:, None, :], clip) - rows[:, None, :]
        errors.append(diff.to(torch.float64).square().sum(-1))  # (R, C)
    best = torch.cat(errors, 1).argmin(1)
    return amax * fracs[best]


# ------------------------------------------------------------------------------------------- uniform
def _qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def _uniform_rows(rows: torch.Tensor, scale: torch.Tensor, qmax: int) -> torch.Tensor:
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return safe * torch.clamp(torch.round(rows / safe), -qmax, qmax) + 0.0  # + 0.0: no -0.0


def uniform_scales(w: torch.Tensor, bits: int, granularity: str = "tensor", mse_clip: bool = False) -> torch.Tensor:
    """The scales ``s`` of :func:`uniform_quantize` for ``w``: shape (1,) per tensor, (C,) per channel.

    A 1-D tensor always gets one scale. ``s = clip / qmax`` with ``clip = max|w|`` or the MSE-searched clip.
    """
    bits, granularity = _check_bits(bits), check_choice("granularity", granularity, GRANULARITIES)
    qmax, rows = _qmax(bits), _rows(w.detach(), granularity == "channel")
    if mse_clip:
        clip = _search_clip(rows, lambda v, c: _uniform_rows(v, c / qmax, qmax))
    else:
        clip = rows.abs().amax(1)
    return clip / qmax


def uniform_project(w: torch.Tensor, scales: torch.Tensor, bits: int) -> torch.Tensor:
    """``w`` rounded onto ``s·q``, ``|q| ≤ 2^(b−1) − 1``, with fixed scales: one for the whole tensor, or
    one per output channel (as :func:`uniform_scales` returns them)."""
    qmax = _qmax(_check_bits(bits))
    rows = w.reshape(scales.numel(), -1)  # one row per scale: the whole tensor, or one per output channel
    return _uniform_rows(rows, scales.reshape(-1, 1).to(w), qmax).view_as(w)


def uniform_quantize(
    model: nn.Module,
    bits: int,
    granularity: str = "tensor",
    mse_clip: bool = False,
    include_bn: bool = False,
    finetune: Mapping[str, Any] | None = None,
) -> nn.Module:
    """A copy of ``model`` with every fixable parameter on a symmetric uniform grid (see module doc)."""
    bits, granularity = _check_bits(bits), check_choice("granularity", granularity, GRANULARITIES)
    spec = validate_finetune(finetune)
    out, params = _quantisable_copy(model, include_bn)
    projectors = []
    for _, p in params:
        scales = uniform_scales(p, bits, granularity, mse_clip)
        projectors.append(lambda t, s=scales: uniform_project(t, s, bits))
    _project_and_finetune(out, [p for _, p in params], projectors, spec)
    return out


# ------------------------------------------------------------------------------------------- APoT
def apot_levels(bits: int) -> torch.Tensor:
    """The (b−1)-bit APoT magnitude levels (float64, ascending, max 1) of a b-bit signed quantiser.

    Each level is a sum of one choice from every additive term, divided by the largest sum:

    ==== ======================================================= =====================================
    bits terms                                                    levels
    ==== ======================================================= =====================================
    2    {0, 1}                                                   {0, 1} (ternary)
    3    {0, 2⁻¹, 2⁻², 2⁻³}                                       {0, 1/4, 1/2, 1}
    4    {0, 2⁻¹, 2⁻², 2⁻⁴} + {0, 2⁻³}                            {0, .1, .2, .3, .4, .6, .8, 1}
    5    {0, 2⁰, 2⁻², 2⁻⁴} + {0, 2⁻¹, 2⁻³, 2⁻⁵}                  16 levels, (sums)/1.5
    ==== ======================================================= =====================================

    For 4 bits the 3 magnitude bits are split as a 2-bit term and a 1-bit term with interleaved
    exponents, the paper's construction for an odd number of bits (the 4-bit row of the paper's
    k = 2, n = 2 example for 5 bits); every sum is distinct, so there are 2^(b−1) levels.
    """
    bits = _check_bits(bits, APOT_BITS)
    sums = sorted({sum(choice) for choice in itertools.product(*_APOT_TERMS[bits])})
    levels = torch.tensor(sums, dtype=torch.float64)
    return levels / levels.max()


def _apot_rows(rows: torch.Tensor, alpha: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Nearest ``±alpha·level`` (levels ascending, in ``rows``' dtype); ``alpha`` broadcasts against rows."""
    safe = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
    mids = (levels[1:] + levels[:-1]) / 2
    idx = torch.searchsorted(mids, (rows.abs() / safe).contiguous())
    return torch.sign(rows) * (alpha * levels[idx]) + 0.0


def apot_scale(w: torch.Tensor, bits: int, mse_clip: bool = False) -> torch.Tensor:
    """The per-tensor scale α of :func:`apot_quantize` (shape (1,)): ``max|w|`` or the MSE-searched clip."""
    levels = apot_levels(bits).to(w.dtype)
    rows = _rows(w.detach(), False)
    return _search_clip(rows, lambda v, c: _apot_rows(v, c, levels)) if mse_clip else rows.abs().amax(1)


def apot_project(w: torch.Tensor, alpha: torch.Tensor, bits: int) -> torch.Tensor:
    """``w`` rounded to the nearest ``±α·level`` (levels of :func:`apot_levels`)."""
    levels = apot_levels(bits).to(w.dtype)
    return _apot_rows(w, alpha.reshape(()).to(w), levels)


def apot_quantize(
    model: nn.Module,
    bits: int,
    include_bn: bool = False,
    finetune: Mapping[str, Any] | None = None,
    mse_clip: bool = False,
) -> nn.Module:
    """A copy of ``model`` with every fixable tensor on ``α·{±APoT levels}`` (2^b − 1 values per tensor)."""
    bits = _check_bits(bits, APOT_BITS)
    spec = validate_finetune(finetune)
    out, params = _quantisable_copy(model, include_bn)
    projectors = []
    for _, p in params:
        alpha = apot_scale(p, bits, mse_clip)
        projectors.append(lambda t, a=alpha: apot_project(t, a, bits))
    _project_and_finetune(out, [p for _, p in params], projectors, spec)
    return out


# ------------------------------------------------------------------------------------- k-means
def _sort_floats(flat: torch.Tensor) -> torch.Tensor:
    """Ascending copy of finite float32/float64 values, by an integer sort of order-preserving bit patterns
    (the CPU's integer radix sort is several times faster than its float sort)."""
    int_dtype = torch.int32 if flat.dtype == torch.float32 else torch.int64
    bits = (flat + 0.0).view(int_dtype)  # + 0.0: -0.0 becomes 0.0
    flip = torch.iinfo(int_dtype).max  # negative floats: reverse the magnitude bits' order
    keys = bits ^ ((bits >> (bits.element_size() * 8 - 1)) & flip)
    keys = torch.sort(keys).values
    return (keys ^ ((keys >> (keys.element_size() * 8 - 1)) & flip)).view(flat.dtype)


def kmeans_1d(
    values: torch.Tensor, k: int, max_iter: int = 100, *, until_stable: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D k-means (Lloyd) with linear initialisation, on the sorted values.

    Centroids start evenly spaced from min to max. An assignment is the ``k − 1`` boundaries
    (centroid midpoints) found by ``searchsorted`` in the sorted values; an update is segment sums
    from one float64 cumulative sum. A value exactly on a midpoint goes to the lower centroid; an
    empty cluster keeps its centroid. Stops when the assignment repeats (``until_stable``) or after
    ``max_iter`` updates. Cost: one sort, then O(k log N) per iteration.

    Returns ``(centroids, labels)``: float64 centroids (ascending, ``k`` of them; some may be unused)
    and int64 labels shaped like ``values``.
    """
    k = check_int("k", k, low=1)
    x = values.detach()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.to(torch.float64 if not x.is_floating_point() else torch.float32)
    flat = x.reshape(-1)
    if flat.numel() == 0:
        return torch.zeros(k, dtype=torch.float64, device=x.device), torch.zeros_like(x, dtype=torch.int64)
    check_finite("values", flat)
    xs = _sort_floats(flat)
    csum = torch.cat([torch.zeros(1, dtype=torch.float64, device=x.device), torch.cumsum(xs, 0, dtype=torch.float64)])
    n = torch.tensor([flat.numel()], device=x.device)
    zero = torch.zeros(1, dtype=torch.int64, device=x.device)
    centroids = torch.linspace(float(xs[0]), float(xs[-1]), k, dtype=torch.float64, device=x.device)
    previous = None
    for _ in range(max_iter):
        bounds = torch.searchsorted(xs, ((centroids[1:] + centroids[:-1]) / 2).to(xs.dtype), right=True)
        edges = torch.cat([zero, bounds, n])
        counts = edges[1:] - edges[:-1]
        sums = csum[edges[1:]] - csum[edges[:-1]]
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        if until_stable and previous is not None and torch.equal(bounds, previous):
            break
        previous = bounds
    mids = ((centroids[1:] + centroids[:-1]) / 2).to(xs.dtype)
    labels = torch.searchsorted(mids, flat.contiguous()).view_as(x)
    return centroids, labels


class _SharedValues(nn.Module):
    """Parametrisation ``value = centroids[labels]`` (the original tensor is ignored)."""

    def __init__(self, centroids: nn.Parameter, labels: torch.Tensor) -> None:
        super().__init__()
        self.centroids = centroids
        self.register_buffer("labels", labels)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return self.centroids[self.labels]


def kmeans_share(
    model: nn.Module,
    k: int,
    scope: str = "layer",
    include_bn: bool = False,
    finetune: Mapping[str, Any] | None = None,
    max_iter: int = 100,
) -> nn.Module:
    """A copy of ``model`` whose fixable values are k-means centroids: ≤ k values per tensor
    (``scope="layer"``) or over the whole fixable set (``scope="network"``).

    With ``finetune`` the assignments stay fixed and the centroids are trained (shared gradient).
    """
    k, scope = check_int("k", k, low=1), check_choice("scope", scope, SCOPES)
    spec = validate_finetune(finetune)
    out, params = _quantisable_copy(model, include_bn)
    tensors = [p for _, p in params]
    if scope == "network":
        flat = torch.cat([p.detach().reshape(-1) for p in tensors])
        centroids, labels = kmeans_1d(flat, k, max_iter)
        shared = nn.Parameter(centroids.to(tensors[0].dtype))
        groups = [(shared, lab.view_as(p)) for p, lab in zip(tensors, labels.split([p.numel() for p in tensors]))]
    else:
        groups = []
        for p in tensors:
            centroids, labels = kmeans_1d(p, k, max_iter)
            groups.append((nn.Parameter(centroids.to(p.dtype)), labels))
    with torch.no_grad():
        for p, (centroids, labels) in zip(tensors, groups):
            p.copy_(centroids[labels])
    if spec is not None:
        slots = [(out.get_submodule(name.rpartition(".")[0]), name.rpartition(".")[2]) for name, _ in params]
        for (module, attr), p, (centroids, labels) in zip(slots, tensors, groups):
            p.requires_grad_(False)  # becomes the ignored "original"
            parametrize.register_parametrization(module, attr, _SharedValues(centroids, labels))
        try:
            _finetune(out, spec)
        finally:
            for module, attr in slots:
                parametrize.remove_parametrizations(module, attr, leave_parametrized=True)
                getattr(module, attr).requires_grad_(True)
    return out


# ------------------------------------------------------------------------------------- fine-tuning
def _finetune(model: nn.Module, spec: Mapping[str, Any], after_step: Callable[[], None] | None = None) -> None:
    """Train every parameter that requires a gradient for ``spec["epochs"]`` epochs."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, spec["optimizer"], spec["lr"], spec["weight_decay"], spec["momentum"])
    device = spec["device"]
    if device is not None:
        model.to(device)
    was_training = model.training
    reseed(spec["train_loader"], spec["seed"])  # every method sees the same batches
    for epoch in range(spec["epochs"]):
        train_epoch(
            model, spec["train_loader"], opt, grad_clip=spec["grad_clip"], after_step=after_step,
            device=device, desc=f"fine-tune epoch {epoch + 1}/{spec['epochs']}",
        )
    model.train(was_training)


def _project_and_finetune(
    model: nn.Module,
    params: list[nn.Parameter],
    projectors: list[Callable[[torch.Tensor], torch.Tensor]],
    spec: Mapping[str, Any] | None,
) -> None:
    """Write ``project(p)`` into every parameter; with ``spec``, fine-tune with a float shadow (STE)."""
    with torch.no_grad():
        shadows = [p.detach().clone() for p in params]  # the float weights: the shadow starts there
        for p, project in zip(params, projectors):
            p.copy_(project(p))
    if spec is None:
        return
    previous = [p.detach().clone() for p in params]

    @torch.no_grad()
    def reproject() -> None:
        for p, shadow, prev, project in zip(params, shadows, previous, projectors):
            shadow.add_(p - prev)  # the optimiser's step, taken at the quantised value
            p.copy_(project(shadow))
            prev.copy_(p)

    if spec["device"] is not None:  # shadows follow the model
        model.to(spec["device"])
        shadows = [s.to(spec["device"]) for s in shadows]
        previous = [s.to(spec["device"]) for s in previous]
    _finetune(model, spec, after_step=reproject)


# ------------------------------------------------------------------------------------- comparison
TABLE_KEYS = (
    "method", "top1", "n_params", "unique", "unique_nonzero", "entropy_bits", "entropy_bits_nonzero",
    "power_of_two_share", "compressed_bytes", "entropy_bound_bytes", "finetune_epochs",
)


def compressed_bytes(model: nn.Module, include_bn: bool = False) -> int | None:
    """Size in bytes of ``wfn_core.compare.export.save_compressed``'s file for ``model``; ``None`` without an
    export module (never a bound in its place: the bound is ``entropy_bound_bytes`` in the table)."""
    try:
        export = importlib.import_module(f"{__package__}.export")  # lazy: the export module is optional
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.export":
            raise
        return None
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # the table sizes fp32 and wide-codebook rows on purpose: the export's warning about them is noise here
        warnings.simplefilter("ignore", export.CodebookWarning)
        report = export.save_compressed(model, Path(tmp) / "model.wfnz", None, include_bn=include_bn)
    return int(report["bytes"])


def _accepts_finetune(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "finetune" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def compare(
    model: nn.Module,
    methods: Mapping[str, Callable[..., nn.Module]] | Iterable[tuple[str, Callable[..., nn.Module]]],
    train_loader: Any,
    test_loader: Any,
    finetune_epochs: int = 0,
    device: torch.device | str = "cpu",
    *,
    finetune_options: Mapping[str, Any] | None = None,
    include_bn: bool = False,
) -> list[dict[str, Any]]:
    """One row per method (keys :data:`TABLE_KEYS`): top-1 on ``test_loader`` and the weight metrics
    of :func:`wfn_core.metrics.summary` over the fixable set of the model the method returned.

    ``methods`` maps names to ``callable(model) -> quantised model`` (a dict or ``(name, callable)``
    pairs); each callable receives its own copy of ``model`` on ``device`` and returns a model (the
    same one, edited, or a new one). With ``finetune_epochs > 0`` a callable that takes a ``finetune`` argument
    (the quantisers of this module do) is given ``dict(train_loader=train_loader,
    epochs=finetune_epochs, device=device, **finetune_options)``; others (fp32, a finished WFN model)
    are evaluated as they are, and their row's ``finetune_epochs`` is the callable's ``epochs_trained``
    attribute (the epochs it trained before: a WFN model of :func:`default_methods` given ``wfn_epochs``), else 0.

    ``compressed_bytes`` is the size of the export file (``None`` without ``wfn_core.compare.export``);
    ``entropy_bound_bytes`` is the bound ``N·entropy_bits/8``, not a measured size.
    """
    items = list(methods.items()) if isinstance(methods, Mapping) else list(methods)
    names = [name for name, _ in items]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be distinct: {names}")
    check_int("finetune_epochs", finetune_epochs, low=0)
    spec = None
    if finetune_epochs > 0:
        spec = {"train_loader": train_loader, "epochs": finetune_epochs, "device": device, **(finetune_options or {})}
        validate_finetune(spec)
    base = copy.deepcopy(model).to(device)
    rows = []
    for name, fn in items:
        tuned = spec is not None and _accepts_finetune(fn)
        given = copy.deepcopy(base)  # a method that edits its input in place cannot spoil the next rows
        result = fn(given, finetune=spec) if tuned else fn(given)
        if not isinstance(result, nn.Module):
            raise TypeError(f"method {name!r} returned {type(result).__name__}, not an nn.Module")
        result = result.to(device)
        metrics = summary(result, include_bn=include_bn)
        rows.append({
            "method": name,
            "top1": evaluate(result, test_loader, device=device)["top1"],
            **{key: metrics[key] for key in TABLE_KEYS if key in metrics},
            "compressed_bytes": compressed_bytes(result, include_bn=include_bn),
            "entropy_bound_bytes": metrics["n_params"] * metrics["entropy_bits"] / 8,
            "finetune_epochs": finetune_epochs if tuned else int(getattr(fn, "epochs_trained", 0)),
        })
    return [{key: row[key] for key in TABLE_KEYS} for row in rows]


def wfn_training_epochs(config: Any) -> int:
    """The epochs a WFN run of ``config`` (a :class:`~wfn_core.config.WFNConfig`) trains: ``epochs_before``,
    then ``epochs_per_iteration`` after every fixing iteration but the last (27 for the digits preset:
    9 × 3). What the WFN rows of :func:`compare` report, next to the quantisers' fine-tuning epochs."""
    return config.epochs_before + config.epochs_per_iteration * (config.n_iterations - 1)


def _as_is(model: nn.Module, epochs_trained: int = 0) -> Callable[[nn.Module], nn.Module]:
    def finished(_base: nn.Module) -> nn.Module:
        return copy.deepcopy(model)
    finished.epochs_trained = epochs_trained  # type: ignore[attr-defined]  # read by compare for its epochs column
    return finished


def default_methods(
    wfn_models: Mapping[str, nn.Module] | None = None,
    kmeans_k: int | Sequence[int] | None = None,
    uniform_bits: Sequence[int] = (2, 3, 4, 8),
    apot_bits: Sequence[int] = (3, 4),
    mse_clip: bool = False,
    include_bn: bool = False,
    wfn_epochs: int = 0,
) -> list[tuple[str, Callable[..., nn.Module]]]:
    """The issue's list: fp32; uniform per tensor and per channel; APoT; k-means per layer and per
    network; then each finished WFN model of ``wfn_models`` (name -> plain model), evaluated as it is,
    its table row saying it trained ``wfn_epochs`` epochs (:func:`wfn_training_epochs` of its config).

    ``kmeans_k`` defaults to the ``unique`` count (zero included) of each WFN model (16 without any): k-means
    is handed WFN's count, so it matches WFN on the number of values by construction; what it cannot match
    is WFN's entropy and its powers of two.
    ``mse_clip`` switches the uniform and APoT clips to the MSE search (the names say so).
    """
    wfn_models = dict(wfn_models or {})
    if kmeans_k is None:
        ks = sorted({int(summary(m, include_bn=include_bn)["unique"]) for m in wfn_models.values()}) or [16]
    else:
        ks = [kmeans_k] if isinstance(kmeans_k, int) else list(kmeans_k)
    for k in ks:
        check_int("k", k, low=1)
    clip = " (MSE clip)" if mse_clip else ""

    def method(fn: Callable[..., nn.Module], **kwargs: Any) -> Callable[..., nn.Module]:
        def run(model: nn.Module, finetune: Mapping[str, Any] | None = None) -> nn.Module:
            return fn(model, finetune=finetune, include_bn=include_bn, **kwargs)
        return run

    methods: list[tuple[str, Callable[..., nn.Module]]] = [("fp32", lambda m: copy.deepcopy(m))]
    for granularity in GRANULARITIES:
        for b in uniform_bits:
            methods.append((f"uniform {b}-bit per {granularity}{clip}",
                            method(uniform_quantize, bits=_check_bits(b), granularity=granularity, mse_clip=mse_clip)))
    for b in apot_bits:
        methods.append((f"APoT {b}-bit{clip}",
                        method(apot_quantize, bits=_check_bits(b, APOT_BITS), mse_clip=mse_clip)))
    for k in ks:
        for scope in SCOPES:
            methods.append((f"k-means per {scope} k={k}", method(kmeans_share, k=k, scope=scope)))
    methods.extend((name, _as_is(m, check_int("wfn_epochs", wfn_epochs, low=0))) for name, m in wfn_models.items())
    return methods


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of :func:`compare` rows: accuracy in % to 0.1 point, entropies to 0.01 bit,
    the power-of-two share in % to 0.1, counts and bytes exact (the entropy bound to the byte)."""
    header = ["method", "top-1 %", "unique", "unique≠0", "H bits", "H≠0 bits", "PoT %", "bytes", "N·H/8 bound",
              "epochs trained"]

    def cells(r: Mapping[str, Any]) -> list[str]:
        size = r.get("compressed_bytes")
        return [
            str(r["method"]), f"{100 * r['top1']:.1f}", str(r["unique"]), str(r["unique_nonzero"]),
            f"{r['entropy_bits']:.2f}", f"{r['entropy_bits_nonzero']:.2f}", f"{100 * r['power_of_two_share']:.1f}",
            "n/a" if size is None else str(size), f"{r['entropy_bound_bytes']:.0f}", str(r.get("finetune_epochs", 0)),
        ]

    table = [header] + [cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]

    def line(values: list[str]) -> str:
        return ("| " + " | ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))
                + " |")

    rule = "|" + "|".join("-" * (w + 1) + ":" if i else ":" + "-" * (w + 1) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(v) for v in table[1:])])


def paper_claim(rows: Sequence[Mapping[str, Any]], wfn_method: str, bits: int = 4) -> dict[str, Any]:
    """The paper's comparison on :func:`compare` rows: WFN against the best per-layer (per-tensor)
    ``bits``-bit method, "best" meaning the highest top-1 (ties: fewer non-zero values).

    Returns the two rows' names and accuracies, ``unique_ratio`` (non-zero values, as the published
    tables count them), ``entropy_ratio`` (non-zero entropy), ``wfn_at_least_as_accurate`` and
    """
    by_name = {r["method"]: r for r in rows}
    if wfn_method not in by_name:
        raise fail("wfn_method", wfn_method, "the name of a row: " + ", ".join(by_name))
    prefixes = (f"uniform {bits}-bit per tensor", f"APoT {bits}-bit")
    candidates = [r for r in rows if r["method"].startswith(prefixes)]
    if not candidates:
        raise ValueError(f"no per-layer {bits}-bit rows (names starting with {prefixes}) to compare with")
    best = max(candidates, key=lambda r: (r["top1"], -r["unique_nonzero"]))
    wfn = by_name[wfn_method]
    return {
        "wfn": wfn_method, "baseline": best["method"], "wfn_top1": wfn["top1"], "baseline_top1": best["top1"],
        "wfn_at_least_as_accurate": wfn["top1"] >= best["top1"],
        "unique_ratio": best["unique_nonzero"] / max(1, wfn["unique_nonzero"]),
        "entropy_ratio": (best["entropy_bits_nonzero"] / wfn["entropy_bits_nonzero"]
                          if wfn["entropy_bits_nonzero"] else float("inf")),
    }
