"""Freezing fixed weights: a ``torch.nn.utils.parametrize`` mask over every fixable parameter.

Each fixable parameter ``p`` becomes ``where(mask, fixed_values, original)``: the optimiser trains
``original`` (weight decay and momentum included), but the value the model sees at a fixed position is
the stored fixed value, bit for bit. Gradients at fixed positions are exactly zero.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from .centres import ZERO_THRESHOLD, validate_zero_threshold
from .clustering import ClusterResult
from .fixable import fixable_parameters

__all__ = ["WeightFixer", "FixedMask"]


class FixedMask(nn.Module):
    """Parametrisation ``value = where(mask, fixed, free)`` (buffers ``mask`` and ``fixed``)."""

    def __init__(self, like: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", torch.zeros_like(like, dtype=torch.bool))
        self.register_buffer("fixed", torch.zeros_like(like))

    def forward(self, free: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, self.fixed, free)


@dataclass(frozen=True)
class _Slot:
    name: str
    module: nn.Module
    attr: str
    start: int
    stop: int


class WeightFixer:
    """Holds the fixable parameters of ``model`` as one flat vector and keeps fixed ones frozen.

    The order is the one of section 0 of the algorithm document (``fixable_parameters``).
    ``apply(result)`` writes a :class:`ClusterResult` into the model; ``free_values()`` is the
    differentiable flat vector of the unfixed values (for the regulariser); ``plain_model()`` gives a
    copy without parametrisations whose ``state_dict`` loads into the original architecture.
    """

    def __init__(self, model: nn.Module, include_bn: bool = False, zero_threshold: float = ZERO_THRESHOLD) -> None:
        validate_zero_threshold(zero_threshold)
        self.model = model
        self.include_bn = include_bn
        self.zero_threshold = zero_threshold
        if any(parametrize.is_parametrized(m) for m in model.modules()):
            raise ValueError("the model is already parametrised (is a WeightFixer attached?); a model takes one WeightFixer")
        slots, start = [], 0
        for name, param in fixable_parameters(model, include_bn=include_bn):
            module_name, attr = name.rpartition(".")[::2]
            module = model.get_submodule(module_name)
            slots.append(_Slot(name, module, attr, start, start + param.numel()))
            start += param.numel()
        self._slots = slots
        self.n_params = start
        for slot in slots:
            parametrize.register_parametrization(slot.module, slot.attr, FixedMask(getattr(slot.module, slot.attr)))
        self.centres = torch.empty(0)
        self._free_index: torch.Tensor | None = None  # None while nothing is fixed

    # ----------------------------------------------------------------- views of the flat vector
    @property
    def names(self) -> list[str]:
        """Fixable parameter names, in flat order."""
        return [s.name for s in self._slots]

    def _masks(self) -> list[FixedMask]:
        return [s.module.parametrizations[s.attr][0] for s in self._slots]

    def _originals(self) -> list[nn.Parameter]:
        return [s.module.parametrizations[s.attr].original for s in self._slots]

    @torch.no_grad()
    def flat_values(self) -> torch.Tensor:
        """Current values the model uses (fixed where fixed), flattened, detached."""
        return torch.cat([getattr(s.module, s.attr).reshape(-1) for s in self._slots])

    @torch.no_grad()
    def fixed_mask(self) -> torch.Tensor:
        """Flat boolean mask of fixed positions."""
        return torch.cat([m.mask.reshape(-1) for m in self._masks()])

    def free_values(self) -> torch.Tensor:
        """Differentiable flat vector of the unfixed values (one ``cat`` and one gather)."""
        flat = torch.cat([p.reshape(-1) for p in self._originals()])
        return flat if self._free_index is None else flat.index_select(0, self._free_index)

    @property
    def fixed_fraction(self) -> float:
        """Fraction of fixable parameters currently fixed."""
        return self.fixed_mask().sum().item() / self.n_params

    # ----------------------------------------------------------------- writing a clustering result
    @torch.no_grad()
    def apply(self, result: ClusterResult) -> None:
        """Write a clustering result: fixed values and mask, and the free values (unchanged)."""
        values, mask = result.values.reshape(-1), result.fixed.reshape(-1)
        if values.numel() != self.n_params or mask.numel() != self.n_params:
            raise ValueError(
                f"the result holds {values.numel()} values for a model with {self.n_params} fixable parameters"
            )
        self._write(values, mask)
        self.centres = result.centres.detach().clone().cpu()

    def _write(self, values: torch.Tensor, mask: torch.Tensor) -> None:
        originals = self._originals()
        for slot, fm, original in zip(self._slots, self._masks(), originals):
            v = values[slot.start : slot.stop].view_as(original).to(original)
            m = mask[slot.start : slot.stop].view_as(original).to(fm.mask.device)
            fm.mask.copy_(m)
            fm.fixed.copy_(torch.where(m, v, torch.zeros_like(v)))
            original.copy_(v)  # a released weight restarts from its last value
        mask = mask.to(originals[0].device)
        self._free_index = (~mask).nonzero().squeeze(1) if mask.any() else None

    # ----------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat values, mask and centres (CPU tensors); the model's own weights are saved apart."""
        return {"values": self.flat_values().cpu(), "fixed": self.fixed_mask().cpu(), "centres": self.centres.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` returned (checks the size)."""
        values, mask = state["values"], state["fixed"]
        if values.numel() != self.n_params or mask.numel() != self.n_params:
            raise ValueError(
                f"fixer state holds {values.numel()} values, this model has {self.n_params} fixable parameters"
            )
        with torch.no_grad():
            self._write(values.reshape(-1), mask.reshape(-1).bool())
        self.centres = state["centres"].clone()

    def plain_model(self) -> nn.Module:
        """A deep copy of the model without the parametrisations (values as the model sees them).

        The copy shares its parametrised classes with the original, so ``remove_parametrizations``
        (which edits the class) would break the original; the copy is un-parametrised by hand.
        """
        plain = copy.deepcopy(self.model)
        attrs_by_module: dict[str, list[str]] = {}
        for slot in self._slots:
            attrs_by_module.setdefault(slot.name.rpartition(".")[0], []).append(slot.attr)
        for module_name, attrs in attrs_by_module.items():
            module = plain.get_submodule(module_name)
            values = {attr: getattr(module, attr).detach().clone() for attr in attrs}
            module.__class__ = module.__class__.__bases__[0]  # the class before parametrisation
            del module._modules["parametrizations"]
            for attr, value in values.items():
                module.register_parameter(attr, nn.Parameter(value))
        return plain
