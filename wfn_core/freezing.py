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


def layout_views(flat: torch.Tensor, layout: tuple, needed: tuple[bool, ...]) -> list[torch.Tensor | None]:
    """Each parameter's piece of a flat tensor, shaped like it (None where not ``needed``).

    ``layout`` is :meth:`WeightFixer.packed`'s ``(start, stop, shape)`` per parameter: how the custom
    autograd functions hand a flat gradient back to the parameters without splitting copies.
    """
    return [flat[a:b].view(shape) if need else None for (a, b, shape), need in zip(layout, needed)]


class _FreeGather(torch.autograd.Function):
    """The unfixed values, gathered from the packed flat storage the parameters are views of.

    Backward scatters the gradient into one flat buffer (zeros at fixed positions) and hands each
    parameter a view of it, so neither direction concatenates or splits per layer.
    """

    @staticmethod
    def forward(ctx, flat: torch.Tensor, index: torch.Tensor | None, layout: tuple, *originals: torch.Tensor):
        ctx.layout, ctx.size, ctx.has_index = layout, flat.numel(), index is not None
        if index is None:
            return flat.clone()
        ctx.save_for_backward(index)
        return flat.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if ctx.has_index:
            (index,) = ctx.saved_tensors
            grad = grad.new_zeros(ctx.size).index_copy_(0, index, grad)
        return (None, None, None, *layout_views(grad, ctx.layout, ctx.needs_input_grad[3:]))


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
        self._layout = tuple((s.start, s.stop, tuple(p.shape)) for s, p in zip(slots, self._originals()))
        self._flat: torch.Tensor | None = None
        self._pack()

    # ----------------------------------------------------------------- packed storage
    @torch.no_grad()
    def _pack(self) -> None:
        """Make every trainable original a view of one flat tensor, so the flat vector costs no copy.

        Skipped (``free_values`` then concatenates) when the parameters differ in dtype or device.
        Optimisers update the parameters in place, so the views stay valid; ``model.to()`` replaces
        them, which :meth:`_packed` notices (the next :meth:`apply` packs again).
        """
        originals = self._originals()
        if len({(p.dtype, p.device) for p in originals}) != 1:
            self._flat = None
            return
        flat = torch.cat([p.detach().reshape(-1) for p in originals])
        for (a, b, _), p in zip(self._layout, originals):
            p.data = flat[a:b].view_as(p)
        self._flat = flat

    def _packed(self, originals: list[nn.Parameter]) -> torch.Tensor | None:
        """The flat storage if every one of ``originals`` (from :meth:`_originals`) is still a view of it."""
        flat = self._flat
        if flat is None:
            return None
        base, size = flat.data_ptr(), flat.element_size()
        for (a, b, _), p in zip(self._layout, originals):
            if p.data_ptr() != base + a * size or p.numel() != b - a:
                return None
        return flat

    # ----------------------------------------------------------------- views of the flat vector
    @property
    def names(self) -> list[str]:
        """Fixable parameter names, in flat order."""
        return [s.name for s in self._slots]

    def _masks(self) -> list[FixedMask]:
        return [s.module.parametrizations[s.attr][0] for s in self._slots]

    def _originals(self) -> list[nn.Parameter]:
        # module.parametrizations[attr].original, read from the modules' dicts: this runs every step
        return [s.module._modules["parametrizations"]._modules[s.attr]._parameters["original"] for s in self._slots]

    @torch.no_grad()
    def flat_values(self) -> torch.Tensor:
        """Current values the model uses (fixed where fixed), flattened, detached."""
        return torch.cat([getattr(s.module, s.attr).reshape(-1) for s in self._slots])

    @torch.no_grad()
    def fixed_mask(self) -> torch.Tensor:
        """Flat boolean mask of fixed positions."""
        return torch.cat([m.mask.reshape(-1) for m in self._masks()])

    def packed(self) -> tuple[torch.Tensor, torch.Tensor | None, tuple, list[nn.Parameter]] | None:
        """``(flat, free_index, layout, originals)`` when the parameters are views of one flat tensor.

        ``flat`` holds every fixable value in flat order (fixed positions hold the trainable originals,
        not the fixed values); ``free_index`` lists the unfixed positions (None while nothing is
        fixed); ``layout`` gives each original's ``(start, stop, shape)``. None when not packed.
        """
        originals = self._originals()
        flat = self._packed(originals)
        return None if flat is None else (flat, self._free_index, self._layout, originals)

    def free_values(self) -> torch.Tensor:
        """Differentiable flat vector of the unfixed values: one gather from the packed storage."""
        originals = self._originals()
        flat = self._packed(originals)
        if flat is not None:
            return _FreeGather.apply(flat, self._free_index, self._layout, *originals)
        flat = torch.cat([p.reshape(-1) for p in originals])
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
        self._refresh(mask.to(originals[0].device))

    def _refresh(self, mask: torch.Tensor) -> None:
        """After the masks changed: pack the parameters again if needed, list the unfixed positions."""
        if self._packed(self._originals()) is None:
            self._pack()
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

    @torch.no_grad()
    def sync_from_model(self) -> None:
        """Re-read the fixed masks after ``model.load_state_dict`` restored them (with the parameters
        and fixed values): recompute the unfixed positions and pack the parameters again if needed."""
        self._refresh(self.fixed_mask())

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
