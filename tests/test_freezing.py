"""WeightFixer: fixed values stay bit-exact whatever the optimiser; plain models load back."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

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


def _train(model, steps=3, lr=1e-2):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=0.1)
    x, y = torch.randn(32, 1, 8, 8, dtype=next(model.parameters()).dtype), torch.randint(0, 10, (32,))
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


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


def test_free_values_follow_training_and_model_to():
    model, fixer = _fixed_model()
    _train(model)
    mask = fixer.fixed_mask()
    assert torch.equal(fixer.free_values().detach(), fixer.flat_values()[~mask])
    model.double()  # replaces every parameter's data
    free = fixer.free_values()
    assert free.dtype == torch.float64 and torch.equal(free.detach(), fixer.flat_values()[~mask])
    free.pow(3).sum().backward()
    grads = torch.cat([p.grad.reshape(-1) for p in fixer._originals()])
    assert torch.all(grads[mask] == 0) and torch.any(grads[~mask] != 0)


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


def test_remove_makes_the_values_permanent_in_place():
    model, fixer = _fixed_model(include_bn=True)
    model.double()  # remove() keeps the parameters' dtype
    _train(model)
    before, mask, x = fixer.flat_values(), fixer.fixed_mask(), torch.randn(4, 1, 8, 8, dtype=torch.float64)
    originals = torch.cat([p.detach().reshape(-1) for p in fixer._originals()])
    assert not torch.equal(originals[mask], before[mask])  # weight decay moved them: remove() keeps the values seen
    model.eval()
    out = model(x)
    assert fixer.remove() is model
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert list(model.state_dict()) == list(DigitsCNN().state_dict())
    params = [p for _, p in fixable_parameters(model, include_bn=True)]
    assert all(type(p) is nn.Parameter and p.requires_grad and p.dtype == torch.float64 for p in params)
    assert torch.equal(torch.cat([p.detach().reshape(-1) for p in params]), before)  # bit-exact
    assert torch.equal(model(x), out)


def test_a_removed_model_takes_a_new_fixer():
    model, fixer = _fixed_model()
    fixer.remove()
    values = torch.cat([p.detach().reshape(-1) for _, p in fixable_parameters(model)])
    again = WeightFixer(model)  # as a second run_wfn on the same model
    assert torch.equal(again.flat_values(), values) and not again.fixed_mask().any()
    again.apply(cluster(values, 0.8, 0.05))
    before, mask = again.flat_values(), again.fixed_mask()
    _train(model)
    after = again.flat_values()
    assert torch.equal(after[mask], before[mask]) and not torch.equal(after[~mask], before[~mask])
    again.remove()
    assert torch.equal(torch.cat([p.detach().reshape(-1) for _, p in fixable_parameters(model)]), after)


def test_a_removed_fixer_refuses_to_work():
    model, fixer = _fixed_model()
    result = cluster(fixer.flat_values(), 0.5, 0.05)
    fixer.remove()
    uses = [fixer.flat_values, fixer.fixed_mask, fixer.free_values, fixer.sync_from_model, fixer.plain_model,
            fixer.remove, lambda: fixer.apply(result), lambda: fixer.names, lambda: fixer.fixed_fraction]
    for use in uses:
        with pytest.raises(RuntimeError, match="WeightFixer was removed"):
            use()


def test_a_deep_copy_survives_remove_of_the_original():
    model, fixer = _fixed_model()
    twin = copy.deepcopy(model)  # shares the parametrised classes with the original
    plain = fixer.plain_model()
    fixer.remove()
    assert all(parametrize.is_parametrized(m) for m in twin.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    x = torch.randn(4, 1, 8, 8)
    model.eval(), twin.eval(), plain.eval()
    assert torch.equal(twin(x), model(x)) and torch.equal(plain(x), model(x))
    _train(twin)
    assert not torch.equal(twin(x), model(x))


def test_bad_models_and_results():
    with pytest.raises(ValueError, match="has no fixable parameters"):
        WeightFixer(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match=r"model=\[1, 2\] is not allowed: it must be a torch.nn.Module"):
        WeightFixer([1, 2])
    model, fixer = _fixed_model()
    with pytest.raises(ValueError, match="must have no parametrisations .*one WeightFixer at a time"):
        WeightFixer(model)
    small = cluster(torch.randn(10), 0.5, 0.05)
    sizes = rf"result \(a ClusterResult of 10 values\) is not allowed: it must hold {fixer.n_params} values"
    with pytest.raises(ValueError, match=sizes):
        fixer.apply(small)
    with pytest.raises(TypeError, match="result=None is not allowed: it must be a ClusterResult"):
        fixer.apply(None)
    with pytest.raises(ValueError, match="zero_threshold=0.01 is not allowed: it must be a positive power of two"):
        WeightFixer(DigitsCNN(), zero_threshold=0.01)
    with pytest.raises(ValueError, match="include_bn=1 is not allowed: it must be True or False"):
        WeightFixer(DigitsCNN(), include_bn=1)


def test_conv1d_models_are_fixed_like_conv2d_ones():
    """The MNIST-1D ResNet: Conv1d weights and BatchNorm1d affine parameters are fixable, stay bit-exact under
    training, and the plain model loads back into the architecture."""
    from wfn_core.models import MNIST1DResNet

    torch.manual_seed(0)
    model = MNIST1DResNet()
    names = [n for n, _ in fixable_parameters(model, include_bn=True)]
    assert "stem.0.weight" in names and "layers.3.shortcut.0.weight" in names and "layers.0.bn1.weight" in names
    fixer = WeightFixer(model, include_bn=True)
    fixer.apply(cluster(fixer.flat_values(), 0.6, 0.05))
    before, mask = fixer.flat_values(), fixer.fixed_mask()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(16, 1, 40), torch.randint(0, 10, (16,))
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    after = fixer.flat_values()
    assert torch.equal(after[mask], before[mask]) and not torch.equal(after[~mask], before[~mask])
    MNIST1DResNet().load_state_dict(fixer.plain_model().state_dict())
