"""Multiply-free inference: Linear, Conv1d and Conv2d layers whose weights are additive powers of two.

A weight ``w = Σ_t ±2^(e_t)`` (a few signed power-of-two terms, as WFN produces) times a fixed-point
activation is ``Σ_t ±(x << (e_t − e0))`` at a finer accumulator scale ``2^(F − e0)``, so a layer is
evaluated with integer shifts and integer additions/subtractions only:

1. **Weights, once** (:func:`decompose`): each non-zero weight is split into the digits of the
   non-adjacent form (NAF, the shortest signed-binary form) of its integer mantissa, giving
   ``(out, in, shift, sign)`` terms with ``shift = e_t − e0 ≥ 0`` and ``e0 = min(0, min_t e_t)``.
   A weight with more than ``max_terms`` terms is refused (it is not a short APoT value).
2. **Activations**: ``x_q = round(x · 2^F)`` (int64, ``F = frac_bits`` fractional bits).
3. **Accumulate** (:func:`accumulate`): ``acc_o = Σ_{t: out_t = o, +} (x_q[in_t] << shift_t)
   − Σ_{t: out_t = o, −} (x_q[in_t] << shift_t) + b_acc_o``, with gathers, ``<<`` and ``scatter_add``.
   This is exact: ``acc_o = 2^(F − e0) · (Σ_j w_oj x̂_j) + b_acc_o`` with ``x̂_j = x_q_j · 2^−F``.
   The bias is converted once, ``b_acc_o = round(b_o · 2^(F − e0))``.
4. **Output**: ``y_q = round(acc · 2^e0)``, one rounding right shift ``(acc + 2^(s−1)) >> s`` with
   ``s = −e0`` (nothing when ``e0 = 0``); the result has ``F`` fractional bits.

Error bound (derived from the steps above; :func:`rounding_bound` computes it). Against the exact
real-valued layer ``y_o = b_o + Σ_j w_oj x_j``:

- input rounding ``|x̂_j − x_j| ≤ 2^(−F−1)`` contributes at most ``2^(−F−1) · ‖w_o‖₁``;
- the integer accumulation adds nothing (exact, checked against int64 overflow);
- the bias rounding contributes at most ``2^(e0−F−1) ≤ 2^(−F−1)``;
- the output rounding contributes at most ``2^(−F−1)``.

So ``|ŷ_o − y_o| ≤ 2^(−F−1) · (‖w_o‖₁ + 2)`` where ``‖w_o‖₁`` is the L1 norm of output ``o``'s
weights (for a convolution: of its kernel; zero padding is exact). A Conv1d is evaluated as a Conv2d of
height 1, so the same bound holds. Converting ``y_q`` to float32 adds a
relative ``2^−24``; float64 is exact while ``|y_q| < 2^53``.

Operation counts (:func:`count_operations`): a float layer does one multiplication per weight and
output position; the shift-add layer does one shift and one addition per term and output position,
zero weights costing nothing. Bias additions are the same for both and not counted.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_int, fail
from ..centres import _popcount64

__all__ = [
    "ShiftAddPlan", "ShiftAddLayer", "decompose", "to_fixed", "from_fixed", "accumulate",
    "rounding_bound", "count_operations", "convert_to_shift_add",
    "DEFAULT_MAX_TERMS",
]

DEFAULT_MAX_TERMS = 4
"""Most signed power-of-two terms a weight may have (WFN of order k ≤ 3 gives at most 4)."""

_CHUNK_ELEMENTS = 1 << 20  # gathered int64 terms held at once (8 MB)
_CONVS = (nn.Conv1d, nn.Conv2d)
_LAYERS = (nn.Linear, *_CONVS)


@dataclass(frozen=True)
class ShiftAddPlan:
    """The signed power-of-two terms of a weight matrix ``(out_features, in_features)``.

    Term ``t`` adds ``x[in_index[t]] << shift[t]`` to output ``out_index[t]`` (subtracts it when
    ``negative[t]``), at accumulator scale ``2^(F − exponent_floor)``.
    """

    out_index: torch.Tensor
    in_index: torch.Tensor
    shift: torch.Tensor
    negative: torch.Tensor
    exponent_floor: int
    out_features: int
    in_features: int

    @property
    def n_terms(self) -> int:
        return int(self.shift.numel())


def _naf_masks(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bit masks ``(plus, minus)`` of the non-adjacent form of non-negative int64 ``m``: ``m = plus − minus``."""
    half = m >> 1
    three_halves = m + half
    changed = half ^ three_halves
    return three_halves & changed, half & changed


def decompose(weight: torch.Tensor, max_terms: int = DEFAULT_MAX_TERMS, name: str = "layer") -> ShiftAddPlan:
    """Split a weight matrix (``out × …``, flattened to 2-D) into signed power-of-two terms (exact, vectorised).

    Raises ``ValueError`` naming ``name`` and the first offending value if a weight is not finite or has
    more than ``max_terms`` terms.
    """
    w = weight.detach().reshape(weight.shape[0], -1).to(torch.float64).cpu()
    out_features, in_features = w.shape
    flat = w.reshape(-1)
    if not torch.isfinite(flat).all():
        bad = flat[~torch.isfinite(flat)][0].item()
        raise ValueError(f"{name}: weight {bad!r} is not finite, so it is not an additive power of two")
    position = flat.nonzero().squeeze(1)
    value = flat[position]
    mantissa, exponent = torch.frexp(value.abs())  # |w| = mantissa · 2^exponent, mantissa in [0.5, 1)
    integer = torch.ldexp(mantissa, torch.full_like(exponent, 53)).to(torch.int64)  # exact, < 2^53
    plus, minus = _naf_masks(integer)
    n_terms = _popcount64(plus | minus)
    too_long = n_terms > max_terms
    if bool(too_long.any()):
        i = int(too_long.nonzero()[0])
        row, col = divmod(int(position[i]), in_features)
        raise ValueError(
            f"{name}: weight [{row}, {col}] = {value[i].item()!r} has {int(n_terms[i])} signed power-of-two terms "
            f"(at most {max_terms} allowed): the layer's weights are not short additive powers of two"
        )
    owner, bit_exponent, negative = [], [], []
    remaining, live = plus | minus, torch.arange(position.numel())
    while live.numel():  # at most max_terms passes, each over every weight still holding terms
        low = remaining[live] & -remaining[live]  # lowest set bit
        owner.append(live)
        bit = torch.frexp(low.to(torch.float64))[1].to(torch.int64) - 1  # low = 2^bit, exact
        bit_exponent.append(bit + exponent[live].to(torch.int64) - 53)
        negative.append(((minus[live] & low) != 0) ^ (value[live] < 0))
        remaining[live] ^= low
        live = live[remaining[live] != 0]
    owner_t = torch.cat(owner) if owner else torch.empty(0, dtype=torch.int64)
    exps = torch.cat(bit_exponent) if bit_exponent else torch.empty(0, dtype=torch.int64)
    floor = min(0, int(exps.min())) if exps.numel() else 0
    rows, cols = position[owner_t] // in_features, position[owner_t] % in_features
    return ShiftAddPlan(
        out_index=rows, in_index=cols, shift=exps - floor,
        negative=torch.cat(negative) if negative else torch.empty(0, dtype=torch.bool),
        exponent_floor=floor, out_features=out_features, in_features=in_features,
    )


def to_fixed(x: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """``round(x · 2^frac_bits)`` as int64 (ties to even; the error is at most half a unit either way)."""
    scaled = torch.ldexp(x.detach().to(torch.float64), torch.tensor(frac_bits, dtype=torch.float64))
    if not bool(torch.isfinite(scaled).all()):
        raise ValueError("activations must be finite (no NaN or inf) to be converted to fixed point")
    if scaled.numel() and float(scaled.abs().max()) >= 2.0**62:
        raise OverflowError(f"activations too large for int64 with frac_bits={frac_bits}")
    return torch.round(scaled).to(torch.int64)


def from_fixed(q: torch.Tensor, frac_bits: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``q · 2^−frac_bits`` in ``dtype``."""
    return torch.ldexp(q.to(torch.float64), torch.tensor(-frac_bits, dtype=torch.float64)).to(dtype)


def _bias_fixed(bias: torch.Tensor | None, plan: ShiftAddPlan, frac_bits: int) -> torch.Tensor | None:
    if bias is None:
        return None
    return to_fixed(bias, frac_bits - plan.exponent_floor)


def _reach(plan: ShiftAddPlan, name: str) -> float:
    """``max_o Σ_{t: out_t = o} 2^shift_t``: how far one unit of input can move an accumulator."""
    if not plan.n_terms:
        return 0.0
    if int(plan.shift.max()) > 61:
        raise OverflowError(f"{name}: weight exponents span more than 61 bits; they cannot share an int64 accumulator")
    powers = torch.ldexp(torch.ones(plan.n_terms, dtype=torch.float64), plan.shift.to(torch.float64))
    return float(torch.zeros(plan.out_features, dtype=torch.float64).index_add_(0, plan.out_index, powers).max())


def accumulate(plan: ShiftAddPlan, x_q: torch.Tensor, bias_acc: torch.Tensor | None = None) -> torch.Tensor:
    """Integer outputs ``(rows, out_features)`` at scale ``2^(F − exponent_floor)`` from ``x_q (rows, in_features)``.

    Only gathers, left shifts, additions (``scatter_add_``) and one subtraction; no multiplication.
    Works on the transposed activations so that each term gathers one contiguous row.
    """
    rows = x_q.shape[0]
    x_t = x_q.t().contiguous()  # (in_features, rows)
    plus = torch.zeros(plan.out_features, rows, dtype=torch.int64)
    minus = torch.zeros(plan.out_features, rows, dtype=torch.int64)
    for sign, acc in ((False, plus), (True, minus)):
        keep = plan.negative == sign
        src, dst, shift = plan.in_index[keep], plan.out_index[keep], plan.shift[keep].unsqueeze(1)
        if not src.numel():
            continue
        step = max(1, _CHUNK_ELEMENTS // src.numel())
        for start in range(0, rows, step):
            gathered = x_t[src, start : start + step].bitwise_left_shift_(shift)  # (terms, chunk)
            acc[:, start : start + step].scatter_add_(0, dst.unsqueeze(1).expand_as(gathered), gathered)
    out = (plus - minus).t()
    if bias_acc is not None:
        out = out + bias_acc
    return out


def _round_shift(acc: torch.Tensor, floor: int) -> torch.Tensor:
    """``round(acc · 2^floor)`` for ``floor ≤ 0``: add half, arithmetic right shift."""
    if floor == 0:
        return acc
    s = -floor
    return torch.bitwise_right_shift(acc + (1 << (s - 1)), s)


class ShiftAddLayer(nn.Module):
    """A Linear, Conv1d or Conv2d evaluated with shifts and additions on fixed-point activations (float in and out)."""

    def __init__(
        self, layer: nn.Module, frac_bits: int = 16, max_terms: int = DEFAULT_MAX_TERMS, name: str | None = None
    ) -> None:
        super().__init__()
        if not isinstance(layer, _LAYERS):
            raise fail("layer", layer, "an nn.Linear, nn.Conv1d or nn.Conv2d")
        if isinstance(layer, _CONVS) and layer.padding_mode != "zeros":
            raise fail("layer.padding_mode", layer.padding_mode, "'zeros' (the only padding shift-add supports)")
        frac_bits = check_int("frac_bits", frac_bits, low=0, high=52)
        check_int("max_terms", max_terms, low=1)
        self.name = name or type(layer).__name__
        self.frac_bits = int(frac_bits)
        self.layer = layer
        weight = layer.weight.detach()
        self.plan = decompose(weight, max_terms=max_terms, name=self.name)
        if isinstance(layer, _CONVS) and layer.groups > 1:
            self.plan = _grouped(self.plan, layer.groups, weight[0].numel())
        self.bias_acc = _bias_fixed(layer.bias, self.plan, self.frac_bits)
        self._reach = _reach(self.plan, self.name)
        has_bias = self.bias_acc is not None and self.bias_acc.numel() > 0
        self._bias_max = float(self.bias_acc.abs().max()) if has_bias else 0.0

    def _linear_fixed(self, x_q: torch.Tensor) -> torch.Tensor:
        """Fixed-point outputs (``frac_bits``) from fixed-point patches/rows: shifts and additions only."""
        # |acc| ≤ max|x_q| · reach + max|b_acc| must stay inside int64 (a bound in Python floats, not tensors)
        if x_q.numel() and float(x_q.abs().max()) * self._reach + self._bias_max >= 2.0**62:
            raise OverflowError(f"{self.name}: the int64 accumulator could overflow; use fewer frac_bits")
        return _round_shift(accumulate(self.plan, x_q, self.bias_acc), self.plan.exponent_floor)

    def _check_input(self, x: torch.Tensor) -> None:
        """Refuse a shape the float layer would refuse: a wrong one could otherwise gather wrong columns silently."""
        if isinstance(self.layer, nn.Linear):
            ok, expected = x.dim() >= 1 and x.shape[-1] == self.layer.in_features, f"(…, {self.layer.in_features})"
        else:
            spatial = len(self.layer.kernel_size)
            ok = x.dim() in (spatial + 1, spatial + 2) and x.shape[-spatial - 1] == self.layer.in_channels
            dims = ", ".join((str(self.layer.in_channels), *(("L",) if spatial == 1 else ("H", "W"))))
            expected = f"({dims}) or (N, {dims})"
        if not ok:
            raise ValueError(f"{self.name}: input of shape {tuple(x.shape)} does not fit the layer; "
                             f"expected {expected}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x_q = to_fixed(x.cpu(), self.frac_bits)
        if isinstance(self.layer, nn.Linear):
            lead = x_q.shape[:-1]
            y_q = self._linear_fixed(x_q.reshape(-1, x_q.shape[-1])).reshape(*lead, self.plan.out_features)
        else:
            patches, (n, oh, ow) = _patches(self.layer, x_q)
            y_q = self._linear_fixed(patches).reshape(n, oh, ow, -1).permute(0, 3, 1, 2)
            if isinstance(self.layer, nn.Conv1d):
                y_q = y_q.squeeze(2)  # drop the height-1 axis the Conv1d was evaluated on
            if x.dim() == len(self.layer.kernel_size) + 1:  # unbatched (C, L) or (C, H, W), as nn.Conv1d/2d accept
                y_q = y_q[0]
        return from_fixed(y_q, self.frac_bits, x.dtype).to(x.device)


def _grouped(plan: ShiftAddPlan, groups: int, per_group: int) -> ShiftAddPlan:
    """Map a grouped convolution's per-group input columns to columns of the full patch matrix."""
    group_of_out = plan.out_index // (plan.out_features // groups)
    offset = group_of_out * per_group  # index arithmetic, done once on the plan (no weight, no activation)
    return ShiftAddPlan(
        plan.out_index, plan.in_index + offset, plan.shift, plan.negative, plan.exponent_floor,
        plan.out_features, plan.in_features * groups,
    )


def _conv_padding(layer: nn.Conv1d | nn.Conv2d) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` zero padding of a Conv1d/Conv2d (ints, ``'valid'`` or ``'same'``).

    A Conv1d pads only its length (left, right): it is evaluated as a Conv2d of height 1.
    """
    if layer.padding == "valid":
        pads = [0, 0] * len(layer.kernel_size)
    elif layer.padding == "same":
        pads = []
        for k, d in zip(reversed(layer.kernel_size), reversed(layer.dilation)):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]  # the odd unit on the right, as PyTorch pads
    else:
        pads = [p for p in reversed(layer.padding) for _ in (0, 1)]
    return tuple(pads + [0, 0] * (2 - len(layer.kernel_size)))  # type: ignore[return-value]


def _geometry(layer: nn.Conv1d | nn.Conv2d) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """``(kernel, stride, dilation)`` as 2-D pairs; a Conv1d is a Conv2d of height 1."""
    if isinstance(layer, nn.Conv1d):
        return (1, *layer.kernel_size), (1, *layer.stride), (1, *layer.dilation)  # type: ignore[return-value]
    return layer.kernel_size, layer.stride, layer.dilation  # type: ignore[return-value]


def _patches(layer: nn.Conv1d | nn.Conv2d, x_q: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Integer im2col: ``(N·oh·ow, C·kh·kw)`` patches of int64 ``x_q`` (pure indexing).

    ``x_q`` is ``(N, C, H, W)`` or ``(C, H, W)`` for a Conv2d, ``(N, C, L)`` or ``(C, L)`` for a Conv1d
    (then ``oh = kh = 1``: the columns are in the order of the weight's ``(C, k)`` flattening).
    """
    spatial = len(layer.kernel_size)
    if x_q.dim() == spatial + 1:  # unbatched
        x_q = x_q.unsqueeze(0)
    if spatial == 1:
        x_q = x_q.unsqueeze(2)  # (N, C, L) -> (N, C, 1, L)
    (kh, kw), (sh, sw), (dh, dw) = _geometry(layer)
    xp = F.pad(x_q, _conv_padding(layer))
    win = xp.unfold(2, dh * (kh - 1) + 1, sh).unfold(3, dw * (kw - 1) + 1, sw)[..., ::dh, ::dw]
    n, c, oh, ow = win.shape[:4]
    return win.permute(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw), (n, oh, ow)


def rounding_bound(layer: nn.Module, frac_bits: int = 16) -> torch.Tensor:
    """Per-output-channel bound ``2^(−F−1) · (‖w_o‖₁ + 2)`` on ``|shift-add − exact|`` (float64)."""
    l1 = layer.weight.detach().to(torch.float64).abs().reshape(layer.weight.shape[0], -1).sum(1)
    return torch.ldexp(l1 + 2.0, torch.tensor(-frac_bits - 1.0, dtype=torch.float64))


def count_operations(
    model: nn.Module, input_shape: tuple[int, ...] | None = None, max_terms: int = DEFAULT_MAX_TERMS
) -> dict:
    """Per layer and in total, per input sample: float multiplications against shift-add terms.

    ``input_shape`` is one sample's shape (e.g. ``(1, 8, 8)``, or ``(1, 40)`` for a Conv1d model); it is
    needed to know a convolution's number of output positions (a forward pass on zeros records them).
    Without it, Linear layers count one position and a Conv1d/Conv2d raises ``ValueError``. Each
    Linear/Conv1d/Conv2d must have short APoT weights; other convolutions (Conv3d, transposed) are not
    counted, and a ``UserWarning`` names them.
    Returns ``{"layers": {name: {...}}, "multiplications", "nonzero_multiplications", "shift_adds",
    "batchnorm_multiplications"}``; per layer: ``type``, ``weights``, ``nonzero_weights``, ``terms`` (per
    position), ``positions``, ``multiplications`` (weights × positions), ``nonzero_multiplications``,
    ``shift_adds`` (terms × positions). ``batchnorm_multiplications`` counts what is *not* replaced: a
    BatchNorm layer stays float (:func:`convert_to_shift_add` leaves it alone), one multiplication per
    activation it normalises (its per-channel scale; without ``input_shape``, one position).
    """
    _warn_unconverted(model, "count_operations leaves them out of the counts")
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, _LAYERS)]
    norms = [(n, m) for n, m in model.named_modules()
             if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))]
    positions = {n: 1 for n, _ in layers}
    bn_elements = {n: m.num_features for n, m in norms}
    if input_shape is not None:
        def hook(name: str):
            def record(module: nn.Module, _inputs, output: torch.Tensor) -> None:
                if name in bn_elements:
                    bn_elements[name] = output.numel()
                    return
                channels = output.shape[1] if isinstance(module, _CONVS) else output.shape[-1]
                positions[name] = output.numel() // channels
            return record

        handles = [m.register_forward_hook(hook(n)) for n, m in layers + norms]
        was_training = model.training
        try:
            model.eval()
            with torch.no_grad():
                param = next(model.parameters(), None)
                model(torch.zeros(1, *input_shape, device=param.device if param is not None else "cpu"))
        finally:
            model.train(was_training)
            for h in handles:
                h.remove()
    elif any(isinstance(m, _CONVS) for _, m in layers):
        raise ValueError(
            "count_operations needs input_shape (one sample's shape) for a model with Conv1d/Conv2d layers"
        )
    report: dict = {"layers": {}, "multiplications": 0, "nonzero_multiplications": 0, "shift_adds": 0,
                    "batchnorm_multiplications": sum(bn_elements.values())}
    for name, module in layers:
        plan = decompose(module.weight, max_terms=max_terms, name=name)
        weights, nonzero = module.weight.numel(), int((module.weight != 0).sum())
        p = positions[name]
        row = {
            "type": type(module).__name__, "weights": weights, "nonzero_weights": nonzero, "terms": plan.n_terms,
            "positions": p, "multiplications": weights * p, "nonzero_multiplications": nonzero * p,
            "shift_adds": plan.n_terms * p,
        }
        report["layers"][name] = row
        for key in ("multiplications", "nonzero_multiplications", "shift_adds"):
            report[key] += row[key]
    return report


def _warn_unconverted(model: nn.Module, consequence: str) -> None:
    """Warn about convolutions shift-add does not handle (Conv3d, transposed), rather than pass them by silently."""
    others = [f"{name or '(the model)'} ({type(m).__name__})" for name, m in model.named_modules()
              if isinstance(m, nn.modules.conv._ConvNd) and not isinstance(m, _CONVS)]
    if others:
        warnings.warn(
            f"shift-add handles Linear, Conv1d and Conv2d only, so {len(others)} convolution(s) stay float: "
            f"{', '.join(others)}; {consequence}", UserWarning, stacklevel=3,
        )


def convert_to_shift_add(model: nn.Module, frac_bits: int = 16, max_terms: int = DEFAULT_MAX_TERMS) -> nn.Module:
    """A copy of ``model`` whose Linear, Conv1d and Conv2d layers are :class:`ShiftAddLayer` (other layers
    stay float; other convolutions, such as Conv3d or transposed ones, with a ``UserWarning`` naming them)."""
    converted = copy.deepcopy(model).cpu()
    if isinstance(converted, _LAYERS):
        return ShiftAddLayer(converted, frac_bits, max_terms)
    _warn_unconverted(converted, "the converted model still multiplies there")
    for name, module in list(converted.named_modules()):
        if isinstance(module, _LAYERS):
            parent_name, _, attr = name.rpartition(".")
            parent = converted.get_submodule(parent_name) if parent_name else converted
            setattr(parent, attr, ShiftAddLayer(module, frac_bits, max_terms, name=name))
    return converted
