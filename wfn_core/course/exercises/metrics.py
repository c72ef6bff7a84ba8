"""Exercises for notebook 04 (the final weight histograms): the entropy of a tensor's values, over all
entries and over the non-zero entries only.

Each ``check_*`` calls the student's function on inputs where :mod:`wfn_core.metrics` knows the answer and
compares with it, so the library stays the one definition of each metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ...metrics import entropy_bits
from .feedback import Feedback, Wrong, as_tensor, run_check

__all__ = ["check_entropy_bits", "check_entropy_bits_nonzero"]


def _cases(with_zeros: bool) -> list[tuple[str, torch.Tensor]]:
    """Named inputs with a known answer: uniform and skewed codebooks, all-distinct values, one value,
    a 2-d tensor, ``-0.0`` next to ``0.0`` (one value), and, for the non-zero variant, many zeros."""
    gen = torch.Generator().manual_seed(0)
    codebook = torch.tensor([-0.0625, -0.03125, 0.015625, 0.03125, 0.0625, 0.125])
    skewed = codebook[torch.multinomial(torch.tensor([0.1, 0.35, 0.2, 0.2, 0.1, 0.05]), 1000, True, generator=gen)]
    cases = [
        ("4 values, 250 entries each", torch.tensor([-0.5, -0.25, 0.25, 0.5]).repeat(250)),
        ("1,000 entries on 6 values with unequal shares", skewed),
        ("1,000 distinct random weights", 0.1 * torch.randn(1000, generator=gen)),
        ("one value repeated 50 times", torch.full((50,), 0.125)),
        ("a 2-d tensor (3 x 4): every entry counts", torch.tensor([[1.0, 1.0, 2.0, 2.0], [2.0, 4.0, 4.0, 4.0],
                                                                  [4.0, 4.0, 8.0, -8.0]])),
        ("-0.0 and 0.0 (the same value) with 1.0", torch.tensor([0.0, -0.0, 0.0, -0.0, 1.0, 1.0])),
    ]
    if with_zeros:  # first: where the zeros change the answer
        quarter = torch.tensor([-0.5, -0.25, 0.25, 0.5]).repeat(250)
        cases = [("3,000 zeros and 4 non-zero values, 250 entries each", torch.cat([torch.zeros(3000), quarter])),
                 ("only zeros", torch.zeros(20)), *cases]
    return cases


def _compare(fn: Callable[..., object], include_zero: bool, name: str) -> str:
    cases = _cases(with_zeros=not include_zero)
    for what, x in cases:
        got = as_tensor(fn(x.clone()), f"{name}({what})")
        if got.numel() != 1:
            raise Wrong(f"{name}({what}) should be one number (bits), got a tensor of shape {tuple(got.shape)}")
        want = entropy_bits(x, include_zero=include_zero)
        g = float(got.reshape(()))
        if not math.isclose(g, want, rel_tol=1e-6, abs_tol=1e-9):
            nats = want > 0 and math.isclose(g, want * math.log(2), rel_tol=1e-6)
            why = " (that is the entropy in nats: the log is base 2)" if nats else ""
            raise Wrong(f"{name}({what}) is {g:.6g}, expected {want:.6g} bits{why}")
    return f"matches the library on {len(cases)} tensors (uniform, skewed, all distinct, one value, 2-d, -0.0" + \
        (", zeros only)" if not include_zero else ")")


def check_entropy_bits(fn: Callable[..., object]) -> Feedback:
    """Check ``fn(w)``: the Shannon entropy in bits of the values of ``w`` over all its entries,
    ``H = -Σ_v p_v log2 p_v`` with ``p_v`` the share of entries equal to ``v`` (the library's
    :func:`~wfn_core.metrics.entropy_bits`)."""
    return run_check(
        "entropy_bits", lambda: _compare(fn, True, "entropy_bits"),
        "count each distinct value (torch.unique with return_counts=True over the flattened tensor), turn the "
        "counts into shares p_v = n_v / N that sum to 1, then take -Σ p_v·log2(p_v): base-2 log, one term per "
        "distinct value (not per bin of a histogram), and -0.0 is the same value as 0.0.")


def check_entropy_bits_nonzero(fn: Callable[..., object]) -> Feedback:
    """Check ``fn(w)``: the entropy in bits over the **non-zero** entries only, with shares taken among them,
    ``p_v = n_v / N_nz`` (the library's ``entropy_bits(w, include_zero=False)``; 0 bits when all are zero)."""
    return run_check(
        "entropy_bits_nonzero", lambda: _compare(fn, False, "entropy_bits_nonzero"),
        "drop the zeros first, then do what entropy_bits does on what is left: the shares are among the "
        "non-zero entries (divide by N_nz, not by N), so they sum to 1; with no non-zero entry the answer is 0.")
