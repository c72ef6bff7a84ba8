"""The fixable parameter set (section 0 of the algorithm doc): one flat vector for the whole network."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

FIXABLE_MODULES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Modules whose weight and bias are always fixable."""

BATCHNORM_MODULES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d)
"""Modules whose affine parameters (γ, β) are fixable with ``include_bn=True``."""


def fixable_parameters(model: nn.Module, include_bn: bool = False) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` for every fixable parameter of ``model``, in the canonical order.

    The order is ``model.named_modules()``, then each module's ``named_parameters(recurse=False)``;
    names are ``"module.param"``. Buffers are never included; a parameter shared by several modules
    is listed once (first occurrence). Raises ``ValueError`` when nothing is fixable.
    """
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
    if not out:
        what = "Linear, Conv1d/2d/3d" + (" or BatchNorm1d/2d" if include_bn else "")
        raise ValueError(f"model {type(model).__name__} has no fixable parameters (no {what} module with parameters)")
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
