"""The "cosying up to clusters" regulariser (section 5 of the algorithm document).

For each unfixed value ``w_i`` and picked centre ``c_j``: ``d_ij = |w_i - c_j| / |w_i|`` when
``|w_i| > γ0``; for ``|w_i| <= γ0`` the absolute distance ``|w_i - c_j|``, and 0 to the zero centre.
``s_ij = softmin_j(d_ij / τ)`` and ``L_reg = mean_i Σ_j s_ij d_ij``. The training loss is
``CE + λ L_reg`` with ``λ = stopgrad(α CE / L_reg)``, so the regulariser always adds the fraction α of
the cross-entropy.

Two implementations, tested equal: :func:`penalty_reference` is the definition written out with a dense
K x N matrix and autograd, to read; :func:`cluster_penalty`, the one training uses, computes the value and
the gradient of each weight's term together in chunks (a custom autograd function) in a reused
per-thread workspace, so memory stays O(N) whatever the number of centres, with no Python loop over
centres or layers. ``ClusterRegulariser.fixer_loss`` is the training step's entry.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import torch

from ._validation import check_number, check_zero_threshold
from .centres import ZERO_THRESHOLD

if TYPE_CHECKING:
    from .freezing import WeightFixer

__all__ = ["ClusterRegulariser", "cluster_penalty", "penalty_reference"]

_CHUNK_ELEMENTS = 1 << 17  # weights handled at once (cache-sized: fastest measured)
_CHUNK_CELLS = 1 << 22  # at most this many weights x centres in one chunk (the workspace stays <= 48 MB float32)


class _Workspace:
    """Scratch tensors for one chunk, reused from step to step (never handed out).

    A step would otherwise allocate and free a dozen chunk-sized temporaries; glibc returns such
    memory to the system and faults it back in on every step, which measured 3-4x slower than the
    arithmetic itself for the digits CNN. Kept per thread and per (centres, chunk, dtype, device).
    """

    def __init__(self, k: int, n: int, dtype: torch.dtype, device: torch.device) -> None:
        self.key = (k, n, dtype, device)
        self.vectors = torch.empty(6, n, dtype=dtype, device=device)
        self.matrices = torch.empty(3, k * n, dtype=dtype, device=device)
        self._views: dict[int, tuple[torch.Tensor, ...]] = {}

    def take(self, m: int) -> tuple[torch.Tensor, ...]:
        """Six length-``m`` vectors and three contiguous ``k x m`` matrices (views, cached)."""
        views = self._views.get(m)
        if views is None:
            if len(self._views) > 4:
                self._views.clear()
            k = self.key[0]
            views = self._views[m] = (*(v[:m] for v in self.vectors), *(a[: k * m].view(k, m) for a in self.matrices))
        return views


_local = threading.local()


def _workspace(k: int, n: int, dtype: torch.dtype, device: torch.device) -> _Workspace:
    ws = getattr(_local, "workspace", None)
    if ws is None or ws.key != (k, n, dtype, device):
        ws = _local.workspace = _Workspace(k, n, dtype, device)
    return ws


def _terms(
    w: torch.Tensor, centres: torch.Tensor, scaled_centres: torch.Tensor, zero_row: int | None, tau: float,
    zero_threshold: float, grad: torch.Tensor, grad_scale: float, views: tuple[torch.Tensor, ...],
) -> torch.Tensor:
    """``Σ_w Σ_j s_j u_j`` (``= -Σ_w f/τ``) for the weights ``w``; writes ``grad_scale · ∂f/∂w`` into ``grad``.

    ``f = Σ_j s_j d_j`` with ``d_j = a |w - c_j|``, ``a = 1/|w|`` (relative) or ``a = 1`` for
    ``|w| <= γ0`` (absolute, and 0 to the zero centre, row ``zero_row``). With ``u_j = -d_j/τ``:
    ``s = softmax(u)``, ``f = -τ Σ_j s_j u_j`` and ``∂f/∂d_j = s_j (1 + u_j - Σ_k s_k u_k)``;
    ``∂d_j/∂w = sign(w - c_j) (β c_j + γ)`` with ``β = sign(w)/w²``, ``γ = 0`` (relative) or ``β = 0``,
    ``γ = 1`` (absolute). ``scaled_centres`` is ``grad_scale · centres``.

    Tensors are laid out centres x weights so that every operation runs along contiguous weights,
    and written into the reused workspace ``views``. The "below γ0" choice is made with 0/1 float
    masks (multiplications), not ``where`` or ``masked_fill``, whose CPU kernels are several times
    slower per element. Each operation costs a few microseconds even on small tensors, so their
    number is kept low.
    """
    magnitude, small, big, scale, g, h, diff, u, s = views
    torch.abs(w, out=magnitude)
    torch.le(magnitude, zero_threshold, out=small)  # 1 below γ0 (absolute distance), else 0
    torch.gt(magnitude, zero_threshold, out=big)
    torch.addcmul(small, magnitude, big, out=scale).reciprocal_()  # 1/|w|, or 1 below γ0 (exact)
    torch.sub(w[None, :], centres[:, None], out=diff)
    torch.abs(diff, out=u).mul_(torch.mul(scale, -1.0 / tau, out=magnitude))  # u = -d/τ
    sign = diff.sign_()
    if zero_row is not None:  # no pull from the zero centre on weights below γ0
        u[zero_row].mul_(big)
        sign[zero_row].mul_(big)
        # With the zero centre every weight has some u_j >= -1/τ (d = 1 to zero, or 0 below γ0), so a
        # u_j below -1/τ - 60 weighs < e^-60 against it: nothing in float32 or float64. Clamping keeps
        # exp out of its underflow range (for τ = 0.05), where the softmax measured twice as slow.
        u.clamp_(min=-1.0 / tau - 60.0)
    torch.ops.aten._softmax.out(u, 0, False, out=s)  # torch.softmax(u, 0), into the workspace
    torch.linalg.vecdot(s, u, dim=0, out=g)  # Σ_k s_k u_k = -f/τ
    e = u.add_(torch.neg(g, out=h).add_(1.0)[None, :]).mul_(s).mul_(sign)  # ∂f/∂d_j · sign(w - c_j)
    beta = scale.square_().mul_(big).copysign_(w)
    torch.mv(e.t(), scaled_centres, out=grad).mul_(beta).addcmul_(torch.sum(e, 0, out=h), small, value=grad_scale)
    return g.sum()


def _zero_row(centres: torch.Tensor) -> int | None:
    values = centres.tolist()
    return values.index(0.0) if 0.0 in values else None


def _penalty_and_grad(
    w: torch.Tensor, centres: torch.Tensor, zero_row: int | None, tau: float, zero_threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``L_reg`` over the 1-D ``w`` and its gradient, chunk by chunk."""
    n = w.numel()
    chunk = min(n, _CHUNK_ELEMENTS, max(1024, _CHUNK_CELLS // centres.numel()))
    grad = w.new_empty(n)  # d L_reg / d w, written chunk by chunk
    ws = _workspace(centres.numel(), chunk, w.dtype, w.device)
    scaled_centres = centres * (1.0 / n)
    total = None
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        part = _terms(w[start:stop], centres, scaled_centres, zero_row, tau, zero_threshold, grad[start:stop],
                      1.0 / n, ws.take(stop - start))
        total = part if total is None else total + part
    return total.mul_(-tau / n), grad


class _Penalty(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor, centres: torch.Tensor, zero_row: int | None, tau: float,
                zero_threshold: float) -> torch.Tensor:
        reg, grad = _penalty_and_grad(w, centres, zero_row, tau, zero_threshold)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(grad)
        return reg

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad_out * grad, None, None, None, None


def _check_settings(tau: float, zero_threshold: float) -> tuple[float, float]:
    return check_number("tau", tau, low=0, low_open=True), check_zero_threshold(zero_threshold)


def cluster_penalty(
    weights: torch.Tensor, centres: torch.Tensor, tau: float = 0.05, zero_threshold: float = ZERO_THRESHOLD
) -> torch.Tensor:
    """``L_reg``: mean over ``weights`` of the soft-assigned distance to ``centres`` (differentiable).

    The fused path: value and gradient in one chunked pass, O(N) memory whatever the number of centres.
    Equal to :func:`penalty_reference`.
    """
    tau, zero_threshold = _check_settings(tau, zero_threshold)
    w = weights.reshape(-1)
    if w.numel() == 0 or centres.numel() == 0:
        return w.sum() * 0.0
    c = centres.detach().to(device=w.device, dtype=w.dtype).reshape(-1)
    return _Penalty.apply(w, c, _zero_row(c), tau, zero_threshold)


def penalty_reference(
    weights: torch.Tensor, centres: torch.Tensor, tau: float = 0.05, zero_threshold: float = ZERO_THRESHOLD
) -> torch.Tensor:
    """``L_reg`` as section 5 writes it: a dense centres x weights matrix, autograd for the gradient.

    The readable definition that :func:`cluster_penalty` computes in chunks (tested equal, value and
    gradient). It needs memory for K x N entries: for checks and small inputs, not for training.
    """
    tau, zero_threshold = _check_settings(tau, zero_threshold)
    w = weights.reshape(-1)  # N
    c = centres.detach().to(w).reshape(-1, 1)  # K x 1
    if w.numel() == 0 or c.numel() == 0:
        return w.sum() * 0.0
    small = w.abs() <= zero_threshold
    # relative distance |w - c| / |w| above γ0, absolute below (dividing by 1 keeps w = 0 finite)
    d = (w - c).abs() / torch.where(small, torch.ones_like(w), w.abs())  # K x N
    d = torch.where(small & (c == 0), 0.0, d)  # no pull from the zero centre on weights below γ0
    s = torch.softmax(-d / tau, dim=0)  # softmin over the centres
    return (s * d).sum(0).mean()


class ClusterRegulariser:
    """``loss(ce, free_values, centres) = CE + λ L_reg`` with ``λ = stopgrad(α CE / L_reg)``.

    ``fixer_loss(ce, fixer)`` is the same over a :class:`~wfn_core.freezing.WeightFixer`'s unfixed
    values and centres, and is what the pipeline calls every step.
    """

    def __init__(self, alpha: float = 0.4, tau: float = 0.05, zero_threshold: float = ZERO_THRESHOLD) -> None:
        alpha = check_number("alpha", alpha, low=0, why="0 disables the regulariser")
        tau, zero_threshold = _check_settings(tau, zero_threshold)
        self.alpha, self.tau, self.zero_threshold = alpha, tau, zero_threshold

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

    def fixer_loss(self, ce: torch.Tensor, fixer: WeightFixer) -> torch.Tensor:
        """:meth:`loss` over the unfixed values of ``fixer``, with its current centres: the training step's loss."""
        if self.alpha == 0 or fixer.centres.numel() == 0:
            return ce  # without free_values(), which copies every fixable parameter
        return self.loss(ce, fixer.free_values(), fixer.centres.to(ce.device))
