"""Weight-space metrics (section 6 of the algorithm doc): one definition, used everywhere.

All metrics are over the entries of the given values (the fixable set when given a model):

- ``unique``: number of distinct values, zero counted; ``unique_nonzero`` leaves zero out.
- ``entropy_bits``: Shannon entropy (base 2) of the value histogram over all entries;
  ``entropy_bits_nonzero`` over the non-zero entries only (the published tables use this one).
- ``order_histogram``: entries by the number of signed power-of-two **terms** of their value (0 for 0).
  The name is the algorithm document's; it counts terms, while "order" means only the parameter k.
- ``power_of_two_share``: share, among **all** entries (zeros included in the denominator), of the
  entries whose value is a single signed power of two (exactly one term).

``-0.0`` and ``0.0`` are the same value. Non-finite values raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ._validation import check_finite
from .centres import apot_terms
from .fixable import fixable_parameters

TensorLike = torch.Tensor | Iterable[torch.Tensor]


def _flatten(x: TensorLike) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        flat = x.detach().reshape(-1)
    else:
        parts = [t.detach().reshape(-1) for t in x]
        if not parts:
            return torch.empty(0, dtype=torch.float32)
        dtype = torch.float64 if any(p.dtype == torch.float64 for p in parts) else torch.float32
        flat = torch.cat([p.to(dtype) for p in parts])
    if not flat.is_floating_point():
        flat = flat.to(torch.float64)
    return flat.cpu()


def _value_counts(x: TensorLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct values (float64, ascending by bit pattern) and how many entries hold each."""
    flat = check_finite("values" if isinstance(x, torch.Tensor) else "the tensors' values", _flatten(x))
    if flat.dtype == torch.float64:
        bits, view_as = (flat + 0.0).view(torch.int64), torch.float64
    else:  # float16/bfloat16 convert exactly to float32; integer radix sort is much faster than a float sort
        bits, view_as = (flat.to(torch.float32) + 0.0).view(torch.int32), torch.float32
    keys, counts = torch.unique_consecutive(torch.sort(bits).values, return_counts=True)
    return keys.view(view_as).to(torch.float64), counts


def entropy_of_counts(counts: torch.Tensor | np.ndarray | Sequence[int]) -> float:
    """Shannon entropy (bits) of a histogram given as counts: ``-Σ p log2 p`` with ``p = count / total``.

    The one entropy of wfn: :func:`entropy_bits`, :func:`summary` and the export's bound all use it."""
    c = torch.as_tensor(counts, dtype=torch.float64).reshape(-1)
    c = c[c > 0]
    total = float(c.sum())
    if total == 0:
        return 0.0
    p = c / total
    return float(-(p * torch.log2(p)).sum()) + 0.0


def unique_count(x: TensorLike, include_zero: bool = True) -> int:
    """Number of distinct values; with ``include_zero=False`` zero is not counted."""
    values, _ = _value_counts(x)
    return int(values.numel() if include_zero else (values != 0).sum())


def entropy_bits(x: TensorLike, include_zero: bool = True) -> float:
    """Shannon entropy (bits) of the value histogram over all entries, or non-zero entries only."""
    values, counts = _value_counts(x)
    return entropy_of_counts(counts if include_zero else counts[values != 0])


def order_histogram(x: TensorLike) -> dict[int, int]:
    """``{number of signed power-of-two terms: number of entries}`` (0 terms for zero), ascending.

    Counts **terms** (shortest signed-binary form, :func:`~wfn_core.centres.apot_terms`), not the order k."""
    values, counts = _value_counts(x)
    terms = apot_terms(values)
    hist = torch.zeros(int(terms.max()) + 1 if terms.numel() else 0, dtype=torch.int64)
    hist.index_add_(0, terms, counts)
    return {k: int(c) for k, c in enumerate(hist.tolist()) if c}


def power_of_two_share(x: TensorLike) -> float:
    """Share of **all** entries (zeros in the denominator) whose value is exactly one signed power of two."""
    values, counts = _value_counts(x)
    total = int(counts.sum())
    return float(counts[apot_terms(values) == 1].sum()) / total if total else 0.0


def _summary_of_counts(values: torch.Tensor, counts: torch.Tensor) -> dict[str, float | int]:
    total = int(counts.sum())
    nonzero = values != 0
    single = int(counts[apot_terms(values) == 1].sum())
    return {
        "n_params": total,
        "unique": int(values.numel()),
        "unique_nonzero": int(nonzero.sum()),
        "entropy_bits": entropy_of_counts(counts),
        "entropy_bits_nonzero": entropy_of_counts(counts[nonzero]),
        "power_of_two_share": single / total if total else 0.0,
    }


def summary(
    model_or_tensors: nn.Module | TensorLike, include_bn: bool = False, *, paper_compatible: bool = False
) -> dict[str, float | int]:
    """Metrics of a model's fixable set, of a tensor, or of an iterable of tensors.

    Keys: ``n_params``, ``unique``, ``unique_nonzero``, ``entropy_bits``, ``entropy_bits_nonzero``,
    ``power_of_two_share`` (see the module docstring).

    ``paper_compatible=True`` (models only) reproduces how the published ResNet figures were
    counted: BatchNorm affine parameters included whatever ``include_bn`` says, and the parameters of
    every module whose name contains ``"downsample"`` left out. Say so when quoting such a number.
    """
    if isinstance(model_or_tensors, nn.Module):
        params = fixable_parameters(model_or_tensors, include_bn=include_bn or paper_compatible)
        if paper_compatible:
            params = [(n, p) for n, p in params if "downsample" not in n.rpartition(".")[0]]
        for name, p in params:
            check_finite(f"parameter {name}", p)
        tensors: TensorLike = [p for _, p in params]
    elif paper_compatible:
        raise ValueError("paper_compatible=True needs an nn.Module (it filters modules by name)")
    else:
        tensors = model_or_tensors
    return _summary_of_counts(*_value_counts(tensors))
