"""The "cosying up to clusters" regulariser (section 5 of the algorithm document).

For each unfixed value ``w_i`` and picked centre ``c_j``: ``d_ij = |w_i - c_j| / |w_i|`` when
``|w_i| > γ0``; for ``|w_i| <= γ0`` the absolute distance ``|w_i - c_j|``, and 0 to the zero centre.
``s_ij = softmin_j(d_ij / τ)`` and ``L_reg = mean_i Σ_j s_ij d_ij``. The training loss is
``CE + λ L_reg`` with ``λ = stopgrad(α CE / L_reg)``, so the regulariser always adds the fraction α of
the cross-entropy.

The value and the gradient of each weight's term are computed together in chunks (a custom autograd
function), so memory stays O(N) whatever the number of centres, with no Python loop over centres or
layers.
"""

from __future__ import annotations

import math

import torch

from .centres import ZERO_THRESHOLD, validate_zero_threshold

__all__ = ["ClusterRegulariser", "cluster_penalty"]

_CHUNK_ELEMENTS = 1 << 17  # weights handled at once (cache-sized: fastest measured)


def _terms(
    w: torch.Tensor, centres: torch.Tensor, zero_row: int | None, tau: float, gamma0: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-weight penalty ``f = Σ_j s_j d_j`` and its derivative by ``w``, for all centres at once.

    ``d_j = a |w - c_j|`` with ``a = 1/|w|`` (relative) or ``a = 1`` for ``|w| <= γ0`` (absolute, and 0
    to the zero centre, row ``zero_row``). Then ``∂d_j/∂w = sign(w - c_j) (β c_j + γ)`` with
    ``β = sign(w)/w² = 1/(w|w|), γ = 0`` (relative) or ``β = 0, γ = 1`` (absolute), and
    ``∂f/∂d_j = s_j (1 - (d_j - f)/τ)``. Tensors are laid out centres x weights so that every operation
    runs along contiguous weights; the operation count is kept low (it dominates for small networks).
    """
    magnitude = w.abs()
    small = magnitude <= gamma0
    scale = torch.where(small, 1.0, magnitude.reciprocal())
    diff = w[None, :] - centres[:, None]
    d = diff.abs().mul_(scale)
    sign = diff.sign_()
    if zero_row is not None:  # no pull from the zero centre on weights below γ0
        d[zero_row].masked_fill_(small, 0.0)
        sign[zero_row].masked_fill_(small, 0.0)
    s = torch.softmax(d * (-1.0 / tau), dim=0)
    f = torch.linalg.vecdot(s, d, dim=0)
    # e_j = s_j sign_j (1 + f/τ - d_j/τ); the derivative is β Σ_j e_j c_j + γ Σ_j e_j
    e = s.mul_(sign).mul_(d.mul_(-1.0 / tau).add_(f.mul(1.0 / tau).add_(1.0)))
    grad = torch.where(small, e.sum(0), (centres @ e).div_(w * magnitude))
    return f, grad


class _Penalty(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor, centres: torch.Tensor, tau: float, gamma0: float) -> torch.Tensor:
        n = w.numel()
        chunk = _CHUNK_ELEMENTS
        zero = (centres == 0).nonzero()
        zero_row = int(zero[0]) if zero.numel() else None
        total, grads = 0.0, []
        for start in range(0, n, chunk):
            f, g = _terms(w[start : start + chunk], centres, zero_row, tau, gamma0)
            total = total + f.sum()
            grads.append(g)
        if ctx.needs_input_grad[0]:
            grad = grads[0] if len(grads) == 1 else torch.cat(grads)
            ctx.save_for_backward(grad.div_(n))
        return total / n

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad_out * grad, None, None, None


def cluster_penalty(
    weights: torch.Tensor, centres: torch.Tensor, tau: float = 0.05, zero_threshold: float = ZERO_THRESHOLD
) -> torch.Tensor:
    """``L_reg``: mean over ``weights`` of the soft-assigned distance to ``centres`` (differentiable)."""
    w = weights.reshape(-1)
    if w.numel() == 0 or centres.numel() == 0:
        return w.sum() * 0.0
    c = centres.detach().to(device=w.device, dtype=w.dtype).reshape(-1)
    return _Penalty.apply(w, c, float(tau), float(zero_threshold))


class ClusterRegulariser:
    """``loss(ce, free_values, centres) = CE + λ L_reg`` with ``λ = stopgrad(α CE / L_reg)``."""

    def __init__(self, alpha: float = 0.4, tau: float = 0.05, zero_threshold: float = ZERO_THRESHOLD) -> None:
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"alpha={alpha!r} must be a finite number >= 0 (0 disables the regulariser)")
        if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
            raise ValueError(f"tau={tau!r} must be a finite number > 0")
        validate_zero_threshold(zero_threshold)
        self.alpha, self.tau, self.zero_threshold = float(alpha), float(tau), float(zero_threshold)

    def penalty(self, free_values: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """``L_reg`` of the given unfixed values."""
        return cluster_penalty(free_values, centres, self.tau, self.zero_threshold)

    def loss(self, ce: torch.Tensor, free_values: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """Cross-entropy plus the regulariser scaled to add the fraction α of it."""
        if self.alpha == 0 or centres.numel() == 0 or free_values.numel() == 0:
            return ce
        reg = self.penalty(free_values, centres)
        if reg.detach() <= 0:
            return ce
        lam = self.alpha * ce.detach() / reg.detach()
        return ce + lam * reg
