import pytest
import torch

from wfn_core.regulariser import ClusterRegulariser, cluster_penalty


def _dense_penalty(w, c, tau, g0):
    """Straight from section 5, with autograd doing the derivative."""
    small = w.abs() <= g0
    d = torch.where(small[:, None], (w[:, None] - c).abs(), (w[:, None] - c).abs() / w.abs()[:, None])
    d = torch.where(small[:, None] & (c == 0)[None, :], torch.zeros_like(d), d)
    s = torch.softmax(-d / tau, dim=1)
    return (s * d).sum(1).mean()


@pytest.mark.parametrize("seed", range(5))
def test_value_and_gradient_match_autograd(seed, monkeypatch):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3000, generator=g, dtype=torch.float64) * 0.1
    w[:50] *= 0.01  # some below γ0
    c = torch.tensor([-0.25, -0.0625, 0.0, 0.03125, 0.125, 0.5], dtype=torch.float64)
    monkeypatch.setattr("wfn_core.regulariser._CHUNK_ELEMENTS", 1000)  # force several chunks
    a = w.clone().requires_grad_()
    b = w.clone().requires_grad_()
    fast = cluster_penalty(a, c, 0.05, 2**-7)
    ref = _dense_penalty(b, c, 0.05, 2**-7)
    fast.backward(), ref.backward()
    assert fast.item() == pytest.approx(ref.item(), rel=1e-10)
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


@pytest.mark.parametrize("kwargs,match", [({"alpha": -0.1}, "alpha=-0.1"), ({"tau": 0}, "tau=0"),
                                          ({"zero_threshold": 0.01}, "power of two")])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClusterRegulariser(**kwargs)


def _fixed_digits_model(fraction=0.3):
    from wfn_core.clustering import cluster
    from wfn_core.freezing import WeightFixer
    from wfn_core.models import DigitsCNN

    torch.manual_seed(0)
    model = DigitsCNN().double()
    fixer = WeightFixer(model)
    fixer.apply(cluster(fixer.flat_values(), fraction, 0.05))
    return model, fixer


def _loss_and_grads(model, fixer, fused):
    model.zero_grad(set_to_none=True)
    x = torch.randn(8, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ce = torch.nn.functional.cross_entropy(model(x), torch.arange(8))
    reg = ClusterRegulariser(alpha=0.7)
    loss = reg.fixer_loss(ce, fixer) if fused else reg.loss(ce, fixer.free_values(), fixer.centres)
    loss.backward()
    return loss.detach(), torch.cat([p.grad.reshape(-1) for p in fixer._originals()])


@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_fixer_loss_matches_the_generic_loss(fraction, monkeypatch):
    monkeypatch.setattr("wfn_core.regulariser._CHUNK_ELEMENTS", 1000)  # several gathered chunks
    model, fixer = _fixed_digits_model(fraction)
    assert fixer.packed() is not None
    fused, fused_grads = _loss_and_grads(model, fixer, True)
    generic, generic_grads = _loss_and_grads(model, fixer, False)
    assert fused.item() == pytest.approx(generic.item(), rel=1e-12)
    assert torch.allclose(fused_grads, generic_grads, rtol=1e-9, atol=1e-15)
    assert torch.all(fused_grads[fixer.fixed_mask()] == 0)

    model.to(torch.float32).to(torch.float64)  # unpacks: fixer_loss falls back to the generic path
    assert fixer.packed() is None
    fallback, fallback_grads = _loss_and_grads(model, fixer, True)
    assert fallback.item() == pytest.approx(generic.item(), rel=1e-6)


def test_fixer_loss_guards_a_zero_penalty_and_nothing_fixed():
    model, fixer = _fixed_digits_model()
    with torch.no_grad():  # every free value exactly on the only centre: L_reg = 0
        fixer.packed()[0].fill_(0.125)
    fixer.centres = torch.tensor([0.125], dtype=torch.float64)
    ce = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    loss = ClusterRegulariser().fixer_loss(ce, fixer)
    loss.backward()
    assert loss.item() == 1.5 and ce.grad.item() == 1.0
    assert all(torch.all(p.grad == 0) for p in fixer._originals())

    from wfn_core.freezing import WeightFixer
    from wfn_core.models import DigitsCNN

    fresh = WeightFixer(DigitsCNN().double())  # nothing fixed: every value is free
    fresh.centres = torch.tensor([-0.125, 0.0, 0.125], dtype=torch.float64)
    ce = torch.tensor(2.0, dtype=torch.float64)
    fused = ClusterRegulariser(alpha=0.5).fixer_loss(ce, fresh)
    assert fused.item() == pytest.approx(3.0)
