"""Freezing fixed weights: a ``torch.nn.utils.parametrize`` mask over every fixable parameter.

Each fixable parameter ``p`` becomes ``where(mask, fixed_values, original)``: the optimiser trains
``original`` (weight decay and momentum included), but the value the model sees at a fixed position is
the stored fixed value, bit for bit. Gradients at fixed positions are exactly zero.
:meth:`WeightFixer.remove` takes the parametrisations off again and leaves plain parameters holding the
values the model saw (as ``torch.nn.utils.prune.remove`` does for pruning).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from ._validation import InvalidParameterError, check_bool, check_zero_threshold, fail
from .centres import ZERO_THRESHOLD
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
    copy without parametrisations whose ``state_dict`` loads into the original architecture;
    ``remove()`` does that to the model itself and detaches the fixer.
    """

    def __init__(
        self, model: nn.Module, include_bn: bool = False, zero_threshold: float = ZERO_THRESHOLD,
        extra_parameters: Iterable[str] = (),
    ) -> None:
        if not isinstance(model, nn.Module):
            raise fail("model", model, "a torch.nn.Module")
        if any(parametrize.is_parametrized(m) for m in model.modules()):
            raise InvalidParameterError(
                f"model (a {type(model).__name__}) is not allowed: it must have no parametrisations (a model "
                "takes one WeightFixer at a time; call remove() on the one attached)"
            )
        self.model = model
        self.include_bn = check_bool("include_bn", include_bn)
        self.zero_threshold = check_zero_threshold(zero_threshold)
        self.extra_parameters = tuple(extra_parameters) if not isinstance(extra_parameters, str) else extra_parameters
        slots, start = [], 0
        for name, param in fixable_parameters(model, include_bn=include_bn, extra=self.extra_parameters):
            module_name, attr = name.rpartition(".")[::2]
            module = model.get_submodule(module_name)
            slots.append(_Slot(name, module, attr, start, start + param.numel()))
            start += param.numel()
        self._slots: list[_Slot] | None = slots  # None once removed
        self.n_params = start
        for slot in slots:
            parametrize.register_parametrization(slot.module, slot.attr, FixedMask(getattr(slot.module, slot.attr)))
        self.centres = torch.empty(0)
        self._free_index: torch.Tensor | None = None  # None while nothing is fixed

    # ----------------------------------------------------------------- views of the flat vector
    def _live_slots(self) -> list[_Slot]:
        if self._slots is None:
            raise RuntimeError(
                "this WeightFixer was removed: remove() made the model's values permanent and detached it; "
                "attach a new WeightFixer to the model to fix weights again"
            )
        return self._slots

    @property
    def names(self) -> list[str]:
        """Fixable parameter names, in flat order."""
        return [s.name for s in self._live_slots()]

    def _masks(self) -> list[FixedMask]:
        return [s.module.parametrizations[s.attr][0] for s in self._live_slots()]

    def _originals(self) -> list[nn.Parameter]:
        # module.parametrizations[attr].original, read from the modules' dicts: this runs every step
        return [
            s.module._modules["parametrizations"]._modules[s.attr]._parameters["original"] for s in self._live_slots()
        ]

    @torch.no_grad()
    def flat_values(self) -> torch.Tensor:
        """Current values the model uses (fixed where fixed), flattened, detached."""
        return torch.cat([getattr(s.module, s.attr).reshape(-1) for s in self._live_slots()])

    @torch.no_grad()
    def fixed_mask(self) -> torch.Tensor:
        """Flat boolean mask of fixed positions."""
        return torch.cat([m.mask.reshape(-1) for m in self._masks()])

    def free_values(self) -> torch.Tensor:
        """Differentiable flat vector of the unfixed values (the trainable originals at unfixed positions)."""
        flat = torch.cat([p.reshape(-1) for p in self._originals()])
        index = self._free_index
        if index is None:
            return flat
        if index.device != flat.device:  # the model moved since the masks were read
            index = self._free_index = index.to(flat.device)
        return flat.index_select(0, index)

    @property
    def fixed_fraction(self) -> float:
        """Fraction of fixable parameters currently fixed."""
        return self.fixed_mask().sum().item() / self.n_params

    # ----------------------------------------------------------------- writing a clustering result
    @torch.no_grad()
    def apply(self, result: ClusterResult) -> None:
        """Write a clustering result: fixed values and mask, and the free values (unchanged)."""
        self._live_slots()
        if not isinstance(result, ClusterResult):
            raise fail("result", result, "a ClusterResult")
        values, mask = result.values.reshape(-1), result.fixed.reshape(-1)
        if values.numel() != self.n_params or mask.numel() != self.n_params:
            raise InvalidParameterError(
                f"result (a ClusterResult of {values.numel()} values) is not allowed: it must hold {self.n_params} "
                "values, one per fixable parameter of the model"
            )
        self._write(values, mask)
        self.centres = result.centres.detach().clone().cpu()

    def _write(self, values: torch.Tensor, mask: torch.Tensor) -> None:
        originals = self._originals()
        for slot, fm, original in zip(self._live_slots(), self._masks(), originals):
            v = values[slot.start : slot.stop].view_as(original).to(original)
            m = mask[slot.start : slot.stop].view_as(original).to(fm.mask.device)
            fm.mask.copy_(m)
            fm.fixed.copy_(torch.where(m, v, torch.zeros_like(v)))
            original.copy_(v)  # a released weight restarts from its last value
        self._refresh(mask.to(originals[0].device))

    def _refresh(self, mask: torch.Tensor) -> None:
        """After the masks changed: list the unfixed positions."""
        self._free_index = (~mask).nonzero().squeeze(1) if mask.any() else None

    # ----------------------------------------------------------------- checkpoints and plain models
    @torch.no_grad()
    def sync_from_model(self) -> None:
        """Re-read the fixed masks after ``model.load_state_dict`` restored them (with the parameters
        and fixed values): recompute the unfixed positions."""
        self._refresh(self.fixed_mask())

    def plain_model(self) -> nn.Module:
        """A deep copy of the model without the parametrisations (values as the model sees them)."""
        plain = copy.deepcopy(self.model)
        _unparametrise(plain, self._live_slots())
        return plain

    def remove(self) -> nn.Module:
        """Make the values the model sees permanent and detach the fixer; returns ``self.model``.

        As ``torch.nn.utils.prune.remove`` does for pruning: in place, every fixable parameter becomes a
        plain ``nn.Parameter`` again (same device and dtype, ``requires_grad``), so the model's
        ``state_dict`` is the original architecture's and the model can take a new ``WeightFixer``. The
        fixer cannot be used afterwards. An optimiser built before holds the replaced parameters.
        """
        _unparametrise(self.model, self._live_slots())
        self._slots, self._free_index = None, None
        return self.model


def _unparametrise(model: nn.Module, slots: list[_Slot]) -> None:
    """Replace the parametrisation of each slot's parameter in ``model`` by a plain parameter holding its value.

    Done by hand, not with ``parametrize.remove_parametrizations``: that deletes the property from the
    module's parametrised class, which deep copies share, and would break them.
    """
    attrs_by_module: dict[str, list[str]] = {}
    for slot in slots:
        attrs_by_module.setdefault(slot.name.rpartition(".")[0], []).append(slot.attr)
    with torch.no_grad():
        for module_name, attrs in attrs_by_module.items():
            module = model.get_submodule(module_name)
            values = {attr: getattr(module, attr).detach().clone() for attr in attrs}
            module.__class__ = module.__class__.__bases__[0]  # the class before parametrisation
            del module._modules["parametrizations"]
            for attr, value in values.items():
                module.register_parameter(attr, nn.Parameter(value))
