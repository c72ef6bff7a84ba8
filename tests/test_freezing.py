"""WeightFixer: fixed values stay bit-exact whatever the optimiser; plain models load back."""

import pytest
import torch
from torch import nn

from wfn_core.clustering import cluster
from wfn_core.fixable import fixable_parameters
from wfn_core.freezing import WeightFixer
from wfn_core.models import DigitsCNN


def _fixed_model(include_bn=False, fraction=0.6):
    torch.manual_seed(0)
    model = DigitsCNN()
    fixer = WeightFixer(model, include_bn=include_bn)
    fixer.apply(cluster(fixer.flat_values(), fraction, 0.05))
    return model, fixer


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.Adam(p, lr=1e-2),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.1),
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.5),
    ],
    ids=["adam", "sgd-momentum-wd", "adamw"],
)
def test_fixed_values_stay_bit_exact(make_opt):
    model, fixer = _fixed_model(include_bn=True)
    before, mask = fixer.flat_values(), fixer.fixed_mask()
    assert 0.59 < fixer.fixed_fraction < 0.61
    opt = make_opt(model.parameters())
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    after = fixer.flat_values()
    assert torch.equal(after[mask], before[mask])
    assert not torch.equal(after[~mask], before[~mask])  # the rest did train


def test_free_values_are_the_unfixed_ones_and_carry_gradients():
    model, fixer = _fixed_model()
    free = fixer.free_values()
    assert free.numel() == (~fixer.fixed_mask()).sum()
    assert torch.equal(free.detach(), fixer.flat_values()[~fixer.fixed_mask()])
    free.square().sum().backward()
    grads = torch.cat([p.grad.reshape(-1) for p in fixer._originals()])
    assert torch.all(grads[fixer.fixed_mask()] == 0) and torch.any(grads[~fixer.fixed_mask()] != 0)


def _step_grads(model, fixer):
    model.zero_grad(set_to_none=True)
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    loss = nn.functional.cross_entropy(model(x), torch.arange(16) % 10) + fixer.free_values().pow(3).sum()
    loss.backward()
    return torch.cat([p.grad.reshape(-1) for p in fixer._originals()])


def test_packed_storage_gives_the_gradients_of_the_concatenating_path():
    model, fixer = _fixed_model()
    assert fixer.packed() is not None  # the parameters are views of one flat tensor
    packed = _step_grads(model, fixer)
    torch.optim.SGD(model.parameters(), lr=0.1).step()  # in-place updates keep the views
    assert fixer.packed() is not None
    assert torch.equal(fixer.free_values().detach(), fixer.flat_values()[~fixer.fixed_mask()])

    model2, fixer2 = _fixed_model()
    model2.to(torch.float64).to(torch.float32)  # replaces every parameter: the packing is gone
    assert fixer2.packed() is None
    fallback = _step_grads(model2, fixer2)  # the concatenating path
    assert torch.allclose(packed, fallback, rtol=1e-6, atol=0) and torch.all(packed[fixer.fixed_mask()] == 0)
    fixer2.apply(cluster(fixer2.flat_values(), 0.6, 0.05))
    assert fixer2.packed() is not None  # apply() packs again


def test_free_values_with_nothing_fixed_is_every_value():
    model = DigitsCNN()
    fixer = WeightFixer(model)
    free = fixer.free_values()
    assert torch.equal(free.detach(), fixer.flat_values())
    free.sum().backward()
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in fixer._originals())


def test_plain_model_loads_into_the_original_architecture():
    model, fixer = _fixed_model()
    plain = fixer.plain_model()
    fresh = DigitsCNN()
    fresh.load_state_dict(plain.state_dict())  # same keys, no parametrisation leftovers
    x = torch.randn(4, 1, 8, 8)
    model.eval(), fresh.eval()
    assert torch.equal(model(x), fresh(x))
    flat = torch.cat([p.detach().reshape(-1) for _, p in fixable_parameters(fresh)])
    assert torch.equal(flat, fixer.flat_values())


def test_state_dict_round_trip():
    model, fixer = _fixed_model()
    state = fixer.state_dict()
    torch.manual_seed(1)
    other_model = DigitsCNN()
    other_model.load_state_dict(fixer.plain_model().state_dict())
    other = WeightFixer(other_model)
    other.load_state_dict(state)
    assert torch.equal(other.fixed_mask(), fixer.fixed_mask())
    assert torch.equal(other.flat_values(), fixer.flat_values())
    assert torch.equal(other.centres, fixer.centres)
    with pytest.raises(ValueError, match="fixable parameters"):
        WeightFixer(nn.Sequential(nn.Linear(3, 2))).load_state_dict(state)


def test_bad_models_and_results():
    with pytest.raises(ValueError):
        WeightFixer(nn.Sequential(nn.ReLU()))
    model, fixer = _fixed_model()
    with pytest.raises(ValueError, match="one WeightFixer"):
        WeightFixer(model)
    small = cluster(torch.randn(10), 0.5, 0.05)
    with pytest.raises(ValueError, match="fixable parameters"):
        fixer.apply(small)
    with pytest.raises(ValueError, match="power of two"):
        WeightFixer(DigitsCNN(), zero_threshold=0.01)
