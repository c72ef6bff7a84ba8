"""The fixable parameter set (section 0 of the algorithm doc): one flat vector for the whole network."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ._validation import fail

FIXABLE_MODULES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Modules whose weight and bias are always fixable."""

BATCHNORM_MODULES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d)
"""Modules whose affine parameters (γ, β) are fixable with ``include_bn=True``."""


class FloatParametersWarning(UserWarning):
    """A run leaves parameters of layers WFN does not know in floating point; the message lists every parameter
    left float (batch norm included), each with how to include it."""


def fixable_parameters(
    model: nn.Module, include_bn: bool = False, extra: Iterable[str] = ()
) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` for every fixable parameter of ``model``, in the canonical order.

    The order is ``model.named_modules()``, then each module's ``named_parameters(recurse=False)``;
    names are ``"module.param"``. Buffers are never included; a parameter shared by several modules
    is listed once (first occurrence). ``extra`` names parameters WFN would leave in floating point (see
    :func:`float_parameters`, for example an attention layer's ``in_proj_weight``): they follow, in the
    order given. Raises ``ValueError`` when nothing is fixable, and names what the model holds instead.
    """
    out = _collect(model, include_bn, extra)
    if not out:
        what = "Linear, Conv1d/2d/3d" + (" or BatchNorm1d/2d" if include_bn else "")
        left = [name for name, _ in float_parameters(model, include_bn)]
        hint = f"; its parameters {', '.join(left[:6])}{', ...' if len(left) > 6 else ''} can be added with extra" \
            if left else ""
        raise ValueError(f"model {type(model).__name__} has no fixable parameters (no {what} module with parameters)"
                         f"{hint}")
    return out


def _collect(model: nn.Module, include_bn: bool, extra: Iterable[str]) -> list[tuple[str, nn.Parameter]]:
    kinds = FIXABLE_MODULES + (BATCHNORM_MODULES if include_bn else ())
    seen: set[int] = set()
    out: list[tuple[str, nn.Parameter]] = []
    for module_name, module in model.named_modules():
        if not isinstance(module, kinds):
            continue
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            out.append((f"{module_name}.{param_name}" if module_name else param_name, param))
    return out + _extra(model, extra, seen)


def _extra(model: nn.Module, extra: Iterable[str], seen: set[int]) -> list[tuple[str, nn.Parameter]]:
    if isinstance(extra, str):
        raise fail("extra", extra, "a list of parameter names (a single name goes in a list)")
    named = dict(model.named_parameters())
    out = []
    for name in extra:
        if name not in named:
            left = [n for n, _ in float_parameters(model)]
            raise fail("extra", name, "the name of one of the model's parameters WFN leaves in floating point: "
                       + (", ".join(left) if left else "(there are none)"))
        param = named[name]
        if not param.is_floating_point():
            raise fail("extra", name, "the name of a floating-point parameter")
        if id(param) in seen:
            continue  # already fixable: naming it again changes nothing
        seen.add(id(param))
        out.append((name, param))
    return out


def float_parameters(model: nn.Module, include_bn: bool = False, extra: Iterable[str] = ()) -> list[tuple[str, str]]:
    """``(name, why)`` for every parameter WFN leaves in floating point, saying how to include it."""
    fixable = {id(p) for _, p in _collect(model, include_bn, extra)}
    owner: dict[int, nn.Module] = {}
    for module in model.modules():
        for param in module.parameters(recurse=False):
            owner.setdefault(id(param), module)
    out = []
    for name, param in model.named_parameters():
        if id(param) in fixable:
            continue
        module = owner[id(param)]
        if isinstance(module, BATCHNORM_MODULES):
            why = "batch-norm γ/β, left float by default: include_bn=True fixes them"
        else:
            why = (f"a parameter of {type(module).__name__}, not the weight or bias of a Linear or Conv layer: "
                   f"extra_parameters=[{name!r}] fixes it")
        out.append((name, why))
    return out


def flat_values(params: Iterable[tuple[str, torch.Tensor]] | Iterable[torch.Tensor]) -> torch.Tensor:
    """Detached float32 concatenation of the parameters, as one 1-D tensor.

    Accepts the output of :func:`fixable_parameters` or a plain iterable of tensors.
    """
    tensors = [p[1] if isinstance(p, tuple) else p for p in params]
    if not tensors:
        return torch.empty(0, dtype=torch.float32)
    return torch.cat([t.detach().reshape(-1).to(torch.float32) for t in tensors])


@torch.no_grad()
def set_flat_values(params: Iterable[tuple[str, torch.Tensor]] | Iterable[torch.Tensor], values: torch.Tensor) -> None:
    """Write a flat vector back into the parameters, in order (the inverse of :func:`flat_values`)."""
    tensors = [p[1] if isinstance(p, tuple) else p for p in params]
    total = sum(t.numel() for t in tensors)
    values = values.reshape(-1)
    if values.numel() != total:
        raise ValueError(f"values holds {values.numel()} entries, the parameters hold {total}")
    for t, chunk in zip(tensors, values.split([t.numel() for t in tensors])):
        t.copy_(chunk.view_as(t))
