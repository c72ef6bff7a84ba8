"""WFN on models that are neither the digits CNN nor a ResNet: hooks, guards and clear errors.

The models are small and trained here in a second or two: an MLP on scikit-learn's bundled breast-cancer
data (where δ = 0.05 collapsed to the majority class without a word), a small attention classifier, a
model fed dict batches and returning a dict, and a regression model.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from wfn_core import AccuracyDropError, InvalidParameterError, WFNConfig, run_wfn
from wfn_core.fixable import FloatParametersWarning, fixable_parameters, float_parameters
from wfn_core.pipeline import CHECKPOINT_NAME
from wfn_core.training import evaluate, train_epoch

SHORT = dict(fractions=(0.5, 0.9, 1.0), epochs_per_iteration=1, lr=1e-3, batch_size=32)


def _quiet(fn, *args, **kwargs):
    """Run with the warnings of this module's models silenced (each test checks the ones it is about)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FloatParametersWarning)
        return fn(*args, **kwargs)


# ------------------------------------------------------------------------------ an MLP on breast_cancer
@pytest.fixture(scope="module")
def cancer():
    """A trained 30-64-2 MLP and (train, test) loaders on scikit-learn's bundled breast-cancer data."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
    y = torch.tensor(y)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = perm[:400], perm[400:]
    g = torch.Generator().manual_seed(0)
    train_loader = DataLoader(TensorDataset(x[train], y[train]), batch_size=32, shuffle=True, generator=g)
    test_loader = DataLoader(TensorDataset(x[test], y[test]), batch_size=256)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        train_epoch(model, train_loader, opt)
    return model.eval(), train_loader, test_loader


def test_mlp_runs_and_returns_the_model_in_the_mode_it_was_given(cancer):
    model, train, test = cancer
    rows = []
    result = run_wfn(model, train, test, WFNConfig(delta=0.01, **SHORT), device="cpu", callbacks=rows.append)
    assert [r["iteration"] for r in rows] == [0, 1, 2] and rows == result.history  # one call per iteration
    assert not result.model.training and not model.training
    assert result.final["top1"] >= result.baseline["top1"] - 0.03
    assert result.final["unique"] < result.baseline["unique"] / 10  # 2,114 distinct fp32 weights before


def _badly_scaled(model: nn.Sequential) -> nn.Sequential:
    """The same function with the first layer 512x smaller and the last 512x larger (ReLU is positively
    homogeneous): every first-layer weight now lies below γ0 = 2^-7, where the zero centre takes it at no
    cost, so WFN zeroes the layer and the network collapses to one class: a real, deterministic collapse."""
    scaled = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 2))
    scaled.load_state_dict(model.state_dict())
    with torch.no_grad():
        scaled[0].weight /= 512
        scaled[0].bias /= 512
        scaled[2].weight *= 512
    return scaled.eval()


def test_accuracy_guard_stops_a_collapsing_run_and_keeps_the_last_good_checkpoint(cancer, tmp_path):
    model, train, test = cancer
    model = _badly_scaled(model)
    config = WFNConfig(delta=0.01, **{**SHORT, "lr": 2e-5})
    with pytest.raises(AccuracyDropError, match=r"WFN iteration (\d) \(δ_t = [\d.]+, [\d.]+% fixed\): top-1 [\d.]+% "
                                                r"is [\d.]+ points below the fp32 baseline [\d.]+%, more than "
                                                r"max_drop=2") as err:
        run_wfn(model, train, test, config, device="cpu", checkpoint_dir=tmp_path, max_drop=2)
    failed = int(err.value.args[0].split()[2])
    saved = tmp_path / CHECKPOINT_NAME
    if failed == 0:
        assert not saved.exists() and "no earlier iteration was kept" in str(err.value)
    else:
        assert torch.load(saved, weights_only=False)["iteration"] == failed - 1


def test_without_the_guard_a_collapse_warns(cancer):
    model, train, test = cancer
    assert evaluate(_badly_scaled(model), test)["top1"] == evaluate(model, test)["top1"]  # the same classifier
    with pytest.warns(UserWarning, match=r"the network is collapsing; a smaller δ or learning rate keeps it"):
        result = run_wfn(_badly_scaled(model), train, test, WFNConfig(delta=0.01, **{**SHORT, "lr": 2e-5}),
                         device="cpu")
    assert result.final["top1"] < 0.75  # the majority class: 63% of the data


def test_a_diverging_learning_rate_is_caught_by_the_guard(cancer):
    model, train, test = cancer
    with pytest.raises(AccuracyDropError, match="more than max_drop=1"):
        run_wfn(model, train, test, WFNConfig(delta=0.01, **{**SHORT, "lr": 10.0}), device="cpu", max_drop=1)


def test_settings_the_run_cannot_honour_are_said(cancer, tmp_path):
    model, train, test = cancer
    with pytest.warns(UserWarning, match=r"train_loader has batch size 32, config.batch_size is 64: run_wfn trains "
                                         r"on the loader's batches as they come"):
        run_wfn(model, train, test, WFNConfig(delta=0.01, **{**SHORT, "batch_size": 64}), device="cpu")
    with pytest.warns(UserWarning, match=r"resume=True, but there is no checkpoint .*: starting a fresh run"):
        run_wfn(model, train, test, WFNConfig(delta=0.01, **SHORT), device="cpu",
                checkpoint_dir=tmp_path / "missing", resume=True)
    with pytest.raises(InvalidParameterError, match=r"max_drop=-1 is not allowed: it must be a number >= 0"):
        run_wfn(model, train, test, WFNConfig(delta=0.01, **SHORT), max_drop=-1)
    with pytest.raises(InvalidParameterError, match=r"loss_fn='mse' is not allowed: it must be None \(the default\) "
                                                    r"or a function"):
        run_wfn(model, train, test, WFNConfig(delta=0.01, **SHORT), loss_fn="mse")


def test_a_nan_weight_is_named(cancer):
    model, train, test = cancer
    broken = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 2))
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        broken[2].weight[1, 5] = float("nan")
    with pytest.raises(InvalidParameterError, match=r"^parameter 2.weight holds nan at index \(1, 5\): it must hold "
                                                    r"finite values only \(no NaN or inf\)$"):
        run_wfn(broken, train, test, WFNConfig(delta=0.01, **SHORT))


# ------------------------------------------------------------------------------ attention: extra parameters
class TinyAttention(nn.Module):
    """Tokens -> embedding -> one self-attention layer -> mean -> class logits."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h, _ = self.attn(h, h, h, need_weights=False)
        return self.head(h.mean(1))


@pytest.fixture(scope="module")
def attention():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 6, 4, generator=g)
    y = (x[:, :, 0].sum(1) > 0).long()
    train = DataLoader(TensorDataset(x[:192], y[:192]), batch_size=32, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    test = DataLoader(TensorDataset(x[192:], y[192:]), batch_size=64)
    torch.manual_seed(0)
    model = TinyAttention()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(10):
        train_epoch(model, train, opt)
    return model, train, test


def test_parameters_left_in_float_are_listed_with_how_to_include_them(attention):
    model, train, test = attention
    left = dict(float_parameters(model))
    assert set(left) == {"attn.in_proj_weight", "attn.in_proj_bias"}
    assert "extra_parameters=['attn.in_proj_weight'] fixes it" in left["attn.in_proj_weight"]
    with pytest.warns(FloatParametersWarning, match=r"WFN leaves 2 parameters of TinyAttention in floating point"
                                                    r"(.|\n)*attn.in_proj_weight: a parameter of MultiheadAttention"):
        result = run_wfn(model, train, test, WFNConfig(delta=0.01, **SHORT), device="cpu")
    in_proj = result.model.attn.in_proj_weight.detach()
    assert torch.unique(in_proj).numel() > 100  # left alone: float32, as the warning said


def test_extra_parameters_are_fixed_and_counted(attention):
    model, train, test = attention
    extra = ["attn.in_proj_weight", "attn.in_proj_bias"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FloatParametersWarning)  # nothing left in float now
        result = run_wfn(model, train, test, WFNConfig(delta=0.01, **SHORT), device="cpu", extra_parameters=extra)
    in_proj = result.model.attn.in_proj_weight.detach()
    assert set(torch.unique(in_proj).tolist()) <= set(result.centres.tolist())
    assert result.final["unique"] == torch.unique(result.flat_values()).numel()  # the count includes them
    assert [n for n, _ in fixable_parameters(result.model, extra=extra)][-2:] == extra
    with pytest.raises(InvalidParameterError, match=r"extra='attn.in_proj' is not allowed: it must be the name of "
                                                    r"one of the model's parameters WFN leaves in floating point: "
                                                    r"attn.in_proj_weight, attn.in_proj_bias"):
        run_wfn(model, train, test, WFNConfig(delta=0.01, **SHORT), extra_parameters=["attn.in_proj"])


# ------------------------------------------------------------------------------ dict batches, dict outputs
class DictData(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"features": self.x[i], "label": self.y[i]}


class DictModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.body(features)}


def test_dict_batches_and_dict_outputs(cancer):
    mlp, train, test = cancer
    to_dicts = [DataLoader(DictData(*loader.dataset.tensors), batch_size=32, shuffle=shuffle,
                           generator=torch.Generator().manual_seed(0))
                for loader, shuffle in ((train, True), (test, False))]
    model = DictModel()
    model.body.load_state_dict(mlp.state_dict())
    config = WFNConfig(delta=0.01, **SHORT)
    with pytest.raises(InvalidParameterError, match=r"the loader yields dict batches \(keys 'features', 'label'\), "
                                                    r"and without batch= WFN reads \(inputs, targets\) pairs: "
                                                    r"pass batch="):
        run_wfn(model, *to_dicts, config, device="cpu")
    unpack = lambda b: ({"features": b["features"]}, b["label"])  # noqa: E731 - a dict of inputs: keyword arguments
    with pytest.raises(InvalidParameterError, match=r"the model returned a dict \(keys 'logits'\), not a tensor of "
                                                    r"logits, and the default loss is cross-entropy: pass loss_fn="):
        run_wfn(model, *to_dicts, config, device="cpu", batch=unpack)
    result = run_wfn(model, *to_dicts, config, device="cpu", batch=unpack,
                     loss_fn=lambda out, y: F.cross_entropy(out["logits"], y))
    assert result.final["top1"] is None and result.final["loss"] < 0.5  # no logits tensor: accuracy not measured
    assert "n/a" in result.table()


# ------------------------------------------------------------------------------ regression
def test_regression_needs_a_loss_and_then_runs():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(300, 8, generator=g)
    y = x @ torch.randn(8, generator=g) + 0.1 * torch.randn(300, generator=g)
    train = DataLoader(TensorDataset(x[:240], y[:240, None]), batch_size=32, shuffle=True,
                       generator=torch.Generator().manual_seed(0))
    test = DataLoader(TensorDataset(x[240:], y[240:, None]), batch_size=60)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        train_epoch(model, train, opt, loss_fn=F.mse_loss)
    config = WFNConfig(delta=0.01, **SHORT)
    with pytest.raises(InvalidParameterError, match=r"the targets are a torch.float32 tensor of shape \(60, 1\), not "
                                                    r"class indices, .* for regression pass "
                                                    r"loss_fn=torch.nn.functional.mse_loss"):
        run_wfn(model, train, test, config, device="cpu")
    with pytest.raises(InvalidParameterError, match=r"max_drop=1 is not allowed: it must be None when top-1 accuracy "
                                                    r"is not measured"):
        run_wfn(model, train, test, config, device="cpu", loss_fn=F.mse_loss, max_drop=1)
    result = run_wfn(model, train, test, config, device="cpu", loss_fn=F.mse_loss)
    baseline_mse = evaluate(model, test, loss_fn=F.mse_loss)["loss"]
    assert result.baseline["top1"] is None and result.final["top1"] is None
    assert result.baseline["loss"] == pytest.approx(baseline_mse)
    assert result.final["loss"] < 2 * baseline_mse + 0.05  # fixed to a few dozen values, still a regressor


def test_batch_norm_alone_left_float_is_the_default_and_does_not_warn():
    from wfn_core.models import DigitsCNN
    from wfn_core.pipeline import _warn_float_parameters

    config = WFNConfig(delta=0.01, **SHORT)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FloatParametersWarning)
        _warn_float_parameters(DigitsCNN(), config, ())  # batch norm left float by include_bn=False: no warning
    assert [why for _, why in float_parameters(DigitsCNN())][0].startswith("batch-norm γ/β, left float by default")
    model = nn.Sequential(TinyAttention(), nn.BatchNorm1d(2))
    with pytest.warns(FloatParametersWarning, match=r"WFN leaves 4 parameters of Sequential in floating point(.|\n)*"
                                                    r"1.weight: batch-norm γ/β, left float by default: include_bn="):
        _warn_float_parameters(model, config, ())
