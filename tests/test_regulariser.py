"""The regulariser (section 5): the fused penalty equals the readable reference; the loss adds α·CE."""

import math

import pytest
import torch

from wfn_core.centres import ZERO_THRESHOLD  # γ0 = 2**-7
from wfn_core.regulariser import ClusterRegulariser, cluster_penalty, penalty_reference


def test_penalty_reference_follows_section_5():
    c = torch.tensor([0.0, 0.125], dtype=torch.float64)
    # 0.25 is above γ0: relative distances 1 (to 0) and 0.5; 0.001 is below: absolute 0.124 to 0.125, 0 to 0
    terms = []
    for d in ([1.0, 0.5], [0.0, 0.124]):
        s = [math.exp(-x / 0.05) for x in d]
        terms.append(sum(si * di for si, di in zip(s, d)) / sum(s))
    got = penalty_reference(torch.tensor([0.25, 0.001], dtype=torch.float64), c, 0.05, ZERO_THRESHOLD)
    assert got.item() == pytest.approx(sum(terms) / 2, rel=1e-12)
    # without the zero centre a weight below γ0 is pulled by its absolute distance
    alone = penalty_reference(torch.tensor([0.001], dtype=torch.float64), c[1:], 0.05, ZERO_THRESHOLD)
    assert alone.item() == pytest.approx(0.124, rel=1e-12)


def _case(seed: int, with_zero: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3000, generator=g, dtype=torch.float64) * 0.1
    w[:200] *= 0.01  # some below γ0
    w[200], w[201], w[202] = 0.0, ZERO_THRESHOLD, -ZERO_THRESHOLD  # on the edges
    k = 2 + seed % 5
    c = torch.randn(k, generator=g, dtype=torch.float64).mul(0.2).sort().values
    c = torch.cat([c, torch.zeros(1, dtype=torch.float64)]).sort().values if with_zero else c[c != 0]
    return w, c


@pytest.mark.parametrize("with_zero", [True, False], ids=["zero-centre", "no-zero-centre"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tau", [0.05, 0.3])
def test_cluster_penalty_equals_the_reference(seed, with_zero, tau, monkeypatch):
    w, c = _case(seed, with_zero)
    monkeypatch.setattr("wfn_core.regulariser._CHUNK_ELEMENTS", 1000)  # force several chunks
    a = w.clone().requires_grad_()
    b = w.clone().requires_grad_()
    fast = cluster_penalty(a, c, tau, ZERO_THRESHOLD)
    ref = penalty_reference(b, c, tau, ZERO_THRESHOLD)
    fast.backward(), ref.backward()
    assert fast.item() == pytest.approx(ref.item(), rel=1e-10)
    assert torch.isfinite(b.grad).all()
    assert torch.allclose(a.grad, b.grad, rtol=1e-8, atol=1e-12)


def test_loss_adds_alpha_times_cross_entropy():
    w = (torch.randn(500) * 0.1).requires_grad_()
    c = torch.tensor([-0.125, 0.0, 0.125])
    ce = torch.tensor(2.0, requires_grad=True)
    for alpha in (0.0, 0.4, 1.0):
        total = ClusterRegulariser(alpha=alpha).loss(ce, w, c)
        assert total.item() == pytest.approx(2.0 * (1 + alpha))
    total = ClusterRegulariser(alpha=0.4).loss(ce, w, c)
    total.backward()
    assert ce.grad.item() == pytest.approx(1.0)  # λ is a stop-gradient
    assert w.grad.abs().sum() > 0


def test_zero_penalty_is_guarded():
    w = torch.tensor([0.125, 0.125], requires_grad=True)  # exactly on the only centre
    ce = torch.tensor(1.5)
    assert ClusterRegulariser().loss(ce, w, torch.tensor([0.125])).item() == 1.5


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"alpha": -0.1}, r"alpha=-0.1 is not allowed: it must be a number >= 0 \(0 disables the regulariser\)"),
        ({"alpha": float("nan")}, r"alpha=nan is not allowed"),
        ({"alpha": True}, r"alpha=True is not allowed"),
        ({"tau": 0}, r"tau=0 is not allowed: it must be a number > 0"),
        ({"tau": "0.05"}, r"tau='0.05' is not allowed"),
        ({"zero_threshold": 0.01}, r"zero_threshold=0.01 is not allowed: it must be a positive power of two"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClusterRegulariser(**kwargs)
    if "alpha" not in kwargs:  # the functions check the same settings
        for penalty in (cluster_penalty, penalty_reference):
            with pytest.raises(ValueError, match=match):
                penalty(torch.ones(3), torch.ones(1), **kwargs)


def _fixed_digits_model(fraction=0.3):
    from wfn_core.clustering import cluster
    from wfn_core.freezing import WeightFixer
    from wfn_core.models import DigitsCNN

    torch.manual_seed(0)
    model = DigitsCNN().double()
    fixer = WeightFixer(model)
    fixer.apply(cluster(fixer.flat_values(), fraction, 0.05))
    return model, fixer


def _loss_and_grads(model, fixer, reference):
    model.zero_grad(set_to_none=True)
    x = torch.randn(8, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ce = torch.nn.functional.cross_entropy(model(x), torch.arange(8))
    reg = ClusterRegulariser(alpha=0.7)
    if reference:  # CE + stopgrad(α CE / L_reg) L_reg, written out over the originals at unfixed positions
        originals = torch.cat([p.reshape(-1) for p in fixer._originals()])
        penalty = penalty_reference(originals[~fixer.fixed_mask()], fixer.centres, reg.tau, reg.zero_threshold)
        loss = ce + (reg.alpha * ce / penalty).detach() * penalty
    else:
        loss = reg.fixer_loss(ce, fixer)
    loss.backward()
    return loss.detach(), torch.cat([p.grad.reshape(-1) for p in fixer._originals()])


@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_fixer_loss_matches_the_reference_loss(fraction, monkeypatch):
    monkeypatch.setattr("wfn_core.regulariser._CHUNK_ELEMENTS", 1000)  # several chunks
    model, fixer = _fixed_digits_model(fraction)
    fused, fused_grads = _loss_and_grads(model, fixer, False)
    reference, reference_grads = _loss_and_grads(model, fixer, True)
    assert fused.item() == pytest.approx(reference.item(), rel=1e-12)
    assert torch.allclose(fused_grads, reference_grads, rtol=1e-9, atol=1e-15)
    assert torch.all(fused_grads[fixer.fixed_mask()] == 0)


def test_fixer_loss_guards_a_zero_penalty_and_nothing_fixed():
    model, fixer = _fixed_digits_model()
    with torch.no_grad():  # every free value exactly on the only centre: L_reg = 0
        for p in fixer._originals():
            p.fill_(0.125)
    fixer.centres = torch.tensor([0.125], dtype=torch.float64)
    ce = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    loss = ClusterRegulariser().fixer_loss(ce, fixer)
    loss.backward()
    assert loss.item() == 1.5 and ce.grad.item() == 1.0
    assert all(p.grad is None or torch.all(p.grad == 0) for p in fixer._originals())

    from wfn_core.freezing import WeightFixer
    from wfn_core.models import DigitsCNN

    fresh = WeightFixer(DigitsCNN().double())  # nothing fixed: every value is free
    fresh.centres = torch.tensor([-0.125, 0.0, 0.125], dtype=torch.float64)
    ce = torch.tensor(2.0, dtype=torch.float64)
    fused = ClusterRegulariser(alpha=0.5).fixer_loss(ce, fresh)
    assert fused.item() == pytest.approx(3.0)
