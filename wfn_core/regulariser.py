"""The "cosying up to clusters" regulariser (section 5 of the algorithm document).

For each unfixed value ``w_i`` and picked centre ``c_j``: ``d_ij = |w_i - c_j| / |w_i|`` when
``|w_i| > γ0``; for ``|w_i| <= γ0`` the absolute distance ``|w_i - c_j|``, and 0 to the zero centre.
``s_ij = softmin_j(d_ij / τ)`` and ``L_reg = mean_i Σ_j s_ij d_ij``. The training loss is
``CE + λ L_reg`` with ``λ = stopgrad(α CE / L_reg)``, so the regulariser always adds the fraction α of
the cross-entropy.

The value and the gradient of each weight's term are computed together in chunks (a custom autograd
function) in a reused per-thread workspace, so memory stays O(N) whatever the number of centres, with
no Python loop over centres or layers. ``ClusterRegulariser.fixer_loss`` is the training step's entry:
it reads the unfixed values straight from a ``WeightFixer``'s packed parameter storage and gives the
whole ``CE + λ L_reg`` one autograd node.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

import torch

from .centres import ZERO_THRESHOLD, validate_zero_threshold
from .freezing import layout_views

if TYPE_CHECKING:
    from .freezing import WeightFixer

__all__ = ["ClusterRegulariser", "cluster_penalty"]

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
        self.vectors = torch.empty(7, n, dtype=dtype, device=device)
        self.matrices = torch.empty(3, k * n, dtype=dtype, device=device)
        self._views: dict[int, tuple[torch.Tensor, ...]] = {}

    def take(self, m: int) -> tuple[torch.Tensor, ...]:
        """Seven length-``m`` vectors and three contiguous ``k x m`` matrices (views, cached)."""
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
    gamma0: float, grad: torch.Tensor, grad_scale: float, views: tuple[torch.Tensor, ...],
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
    magnitude, small, big, scale, g, h, _, diff, u, s = views
    torch.abs(w, out=magnitude)
    torch.le(magnitude, gamma0, out=small)  # 1 below γ0 (absolute distance), else 0
    torch.gt(magnitude, gamma0, out=big)
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
    flat: torch.Tensor, index: torch.Tensor | None, centres: torch.Tensor, zero_row: int | None,
    tau: float, gamma0: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``L_reg`` over ``flat`` (or its entries at ``index``) and its gradient by those entries.

    Chunked; a chunk of ``index`` is gathered into the workspace, so no gathered copy is made.
    """
    n = flat.numel() if index is None else index.numel()
    chunk = min(n, _CHUNK_ELEMENTS, max(1024, _CHUNK_CELLS // centres.numel()))
    grad = flat.new_empty(n)  # d L_reg / d w, written chunk by chunk
    ws = _workspace(centres.numel(), chunk, flat.dtype, flat.device)
    scaled_centres = centres * (1.0 / n)
    total = None
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        views = ws.take(stop - start)
        w = flat[start:stop] if index is None else torch.index_select(flat, 0, index[start:stop], out=views[6])
        part = _terms(w, centres, scaled_centres, zero_row, tau, gamma0, grad[start:stop], 1.0 / n, views)
        total = part if total is None else total + part
    return total.mul_(-tau / n), grad


class _Penalty(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor, centres: torch.Tensor, zero_row: int | None, tau: float,
                gamma0: float) -> torch.Tensor:
        reg, grad = _penalty_and_grad(w, None, centres, zero_row, tau, gamma0)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(grad)
        return reg

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad_out * grad, None, None, None, None


class _PackedLoss(torch.autograd.Function):
    """``CE + λ L_reg`` over the unfixed entries of a packed flat vector, as one autograd node.

    ``flat`` holds the parameters ``originals`` (views of it, laid out by ``layout``); ``index`` picks
    the unfixed entries. Backward scatters ``λ ∂L_reg/∂w`` into one fresh flat buffer and hands each
    parameter a view of it: no gathered copy, no per-layer concatenation or split.
    """

    @staticmethod
    def forward(ctx, ce, flat, index, centres, zero_row, alpha, tau, gamma0, layout, *originals):
        reg, grad = _penalty_and_grad(flat, index, centres, zero_row, tau, gamma0)
        # λ = stopgrad(α CE / L_reg), and 0 when L_reg = 0; tensor operations, so no device sync
        lam = torch.nan_to_num_(ce.mul(alpha).div_(reg), nan=0.0, posinf=0.0, neginf=0.0)
        ctx.size, ctx.layout = flat.numel(), layout
        ctx.save_for_backward(index, grad, lam)
        return torch.addcmul(ce, lam, reg)

    @staticmethod
    def backward(ctx, grad_out):
        index, grad, lam = ctx.saved_tensors
        factor = grad_out * lam
        if index is None:
            full = grad * factor
        else:
            full = grad.new_zeros(ctx.size).index_copy_(0, index, grad).mul_(factor)
        return (grad_out, None, None, None, None, None, None, None, None,
                *layout_views(full, ctx.layout, ctx.needs_input_grad[9:]))


def cluster_penalty(
    weights: torch.Tensor, centres: torch.Tensor, tau: float = 0.05, zero_threshold: float = ZERO_THRESHOLD
) -> torch.Tensor:
    """``L_reg``: mean over ``weights`` of the soft-assigned distance to ``centres`` (differentiable)."""
    w = weights.reshape(-1)
    if w.numel() == 0 or centres.numel() == 0:
        return w.sum() * 0.0
    c = centres.detach().to(device=w.device, dtype=w.dtype).reshape(-1)
    return _Penalty.apply(w, c, _zero_row(c), float(tau), float(zero_threshold))


class ClusterRegulariser:
    """``loss(ce, free_values, centres) = CE + λ L_reg`` with ``λ = stopgrad(α CE / L_reg)``.

    ``fixer_loss(ce, fixer)`` is the same over a :class:`~wfn_core.freezing.WeightFixer`'s unfixed
    values and centres, and is what the pipeline calls every step.
    """

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

    def fixer_loss(self, ce: torch.Tensor, fixer: "WeightFixer") -> torch.Tensor:
        """:meth:`loss` over the unfixed values of ``fixer``, with its current centres: the training step's loss.

        When the fixer's parameters are packed in one flat tensor (the usual case) the whole
        regulariser is one autograd node working on that tensor; otherwise this is
        ``loss(ce, fixer.free_values(), fixer.centres)``. Same value and gradients either way.
        """
        packed = fixer.packed()
        centres = fixer.centres
        if packed is None or self.alpha == 0 or centres.numel() == 0:
            return self.loss(ce, fixer.free_values(), centres.to(ce.device))
        flat, index, layout, originals = packed
        if index is not None and index.numel() == 0:
            return ce
        c = centres.detach().to(device=flat.device, dtype=flat.dtype).reshape(-1)
        return _PackedLoss.apply(ce, flat, index, c, _zero_row(centres), self.alpha, self.tau, self.zero_threshold,
                                 layout, *originals)
