"""The MNIST-1D track: generated data (never downloaded), the 1-D ResNet, its shipped checkpoint and preset."""

import random
import re

import numpy as np
import pytest
import torch

from wfn_core import data, models
from wfn_core.cli import main
from wfn_core.config import build_preset, preset
from wfn_core.fixable import fixable_parameters


def _pool() -> tuple[np.ndarray, np.ndarray]:
    a = data.mnist1d_arrays()
    return (np.concatenate([a[0], a[2], a[4]])[:, 0], np.concatenate([a[1], a[3], a[5]]))


def test_splits_have_the_documented_sizes_and_shapes():
    x_train, y_train, x_val, y_val, x_test, y_test = data.mnist1d_arrays()
    assert [len(t) for t in (x_train, x_val, x_test)] == [12_000, 4_000, 4_000]
    assert x_train.shape[1:] == (1, 40) and x_train.dtype == torch.float32 and y_test.dtype == torch.int64
    # every class in every split, roughly balanced (the generator makes 2,000 of each, then shuffles)
    for y in (y_train, y_val, y_test):
        counts = torch.bincount(y, minlength=10)
        assert counts.min() >= 0.08 * len(y) and counts.max() <= 0.12 * len(y), counts


def test_data_is_the_same_on_every_run_and_machine():
    """The fingerprint rounds inputs to 1e-5, so another CPU's last float bits do not count; a change of
    generator, split or order does."""
    x, y = _pool()
    assert data.mnist1d_fingerprint(x, y) == data.MNIST1D_FINGERPRINT
    y2 = y.copy()
    y2[[0, 1]] = y2[[1, 0]]
    assert y[0] == y[1] or data.mnist1d_fingerprint(x, y2) != data.MNIST1D_FINGERPRINT
    assert data.mnist1d_fingerprint(x + 1e-4, y) != data.MNIST1D_FINGERPRINT


def test_splits_share_no_example():
    x_train, _, x_val, _, x_test, _ = data.mnist1d_arrays()
    rows = {tuple(r) for r in torch.round(x_train[:, 0] * 1e4).int().tolist()}
    for held_out in (x_val, x_test):
        assert not rows & {tuple(r) for r in torch.round(held_out[:, 0] * 1e4).int().tolist()}


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WFN_CACHE", str(tmp_path))
    data._mnist1d_split.cache_clear()
    yield tmp_path / "mnist1d"
    data._mnist1d_split.cache_clear()


def test_generation_never_downloads_and_leaves_global_rngs_alone(fresh_cache, monkeypatch):
    import mnist1d.data
    import requests

    def no_network(*args, **kwargs):
        raise AssertionError("MNIST-1D must be generated, never downloaded")

    monkeypatch.setattr(requests, "get", no_network)
    monkeypatch.setattr(mnist1d.data, "get_dataset", no_network)
    random.seed(123)
    np.random.seed(123)  # noqa: NPY002 (the legacy global the generator reseeds)
    before = (random.random(), np.random.rand())  # noqa: NPY002
    random.seed(123)
    np.random.seed(123)  # noqa: NPY002
    x, y = _pool()
    assert (random.random(), np.random.rand()) == before  # noqa: NPY002
    assert data.mnist1d_fingerprint(x, y) == data.MNIST1D_FINGERPRINT


def test_second_call_reads_the_cache_and_a_damaged_cache_is_remade(fresh_cache, monkeypatch):
    first = data.mnist1d_arrays()
    files = list(fresh_cache.glob("mnist1d_*.pt"))
    assert len(files) == 1
    data._mnist1d_split.cache_clear()

    def generate(n):
        raise AssertionError("the cache was not used")

    real = data._generate_mnist1d
    monkeypatch.setattr(data, "_generate_mnist1d", generate)
    again = data.mnist1d_arrays()
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    # a truncated cache file is not trusted: it is made again, and replaced
    files[0].write_bytes(files[0].read_bytes()[:1000])
    data._mnist1d_split.cache_clear()
    monkeypatch.setattr(data, "_generate_mnist1d", real)
    remade = data.mnist1d_arrays()
    assert all(torch.equal(a, b) for a, b in zip(first, remade))
    assert files[0].stat().st_size > 1_000_000


def test_another_generator_warns(fresh_cache, monkeypatch):
    real = data._generate_mnist1d

    def other(n):
        x, y = real(n)
        return x * 1.01, y

    monkeypatch.setattr(data, "_generate_mnist1d", other)
    with pytest.warns(data.MNIST1DChangedWarning, match="install mnist1d==0.0.2.post1"):
        data.mnist1d_arrays()


def test_loaders_and_bad_arguments():
    train, held = data.mnist1d(batch_size=256, eval_split="val")
    assert len(train.dataset) == 12_000 and len(held.dataset) == 4_000
    x_val = data.mnist1d_arrays()[2]
    assert torch.equal(held.dataset.tensors[0], x_val)
    with pytest.raises(ValueError, match="eval_split='train'.*'test', 'val'"):
        data.mnist1d(eval_split="train")
    with pytest.raises(ValueError, match="batch_size=0"):
        data.mnist1d(batch_size=0)


def test_resnet_is_deep_and_small():
    model = models.MNIST1DResNet()
    weights = [p for n, p in fixable_parameters(model) if p.dim() > 1]
    assert len(weights) >= 20  # 22: stem, 18 block convolutions, 2 projections, the classifier
    assert sum(p.numel() for p in model.parameters()) <= 150_000
    assert any(isinstance(m, torch.nn.Conv1d) for m in model.modules())
    assert model(torch.zeros(3, 1, 40)).shape == (3, 10)


def test_shipped_checkpoint_is_sha_checked_and_accurate(tmp_path):
    model = models.load_pretrained_mnist1d()
    _, test = data.mnist1d(batch_size=500)
    from wfn_core.training import evaluate

    # measured 99.33% (4,000 test examples: one is 0.025 points); the issue asks for at least 98.5%
    assert evaluate(model, test, device="cpu")["top1"] >= 0.985
    damaged = tmp_path / models.PRETRAINED_MNIST1D
    raw = bytearray(models.PRETRAINED_MNIST1D_PATH.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="SHA-256 .* expected 323f0be4"):
        models.load_pretrained_mnist1d(damaged)
    with pytest.raises(FileNotFoundError, match="train-baseline --dataset mnist1d"):
        models.load_pretrained_mnist1d(tmp_path / "missing.pt")


def test_preset_builds_on_validation_and_test():
    config = preset("mnist1d_resnet")
    model, train, val = build_preset("mnist1d_resnet", config, eval_split="val")
    assert isinstance(model, models.MNIST1DResNet) and len(val.dataset) == 4_000
    assert torch.equal(val.dataset.tensors[1], data.mnist1d_arrays()[3])
    _, _, test = build_preset("mnist1d_resnet", config)
    assert torch.equal(test.dataset.tensors[1], data.mnist1d_arrays()[5])


@pytest.mark.slow
def test_train_baseline_cli_trains_the_resnet(tmp_path, capsys):
    """Two epochs instead of the recipe's 15 (93 s on the reference machine): the verb, the data and the model
    are wired up; the shipped file's accuracy is checked above."""
    out = tmp_path / "m.pt"
    assert main(["train-baseline", "--dataset", "mnist1d", "--epochs", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # measured 97.0-97.6% after 2 epochs; an untrained network is at 10%
    assert float(re.search(r"mnist1d baseline: test top-1 (\d+\.\d+)%", printed).group(1)) >= 90.0
    shipped = torch.load(models.PRETRAINED_MNIST1D_PATH, weights_only=True)
    assert {k: v.shape for k, v in torch.load(out, weights_only=True).items()} == {
        k: v.shape for k, v in shipped.items()}
    assert main(["evaluate", "--dataset", "mnist1d", "--weights", str(out)]) == 0
    assert "mnist1d test top-1" in capsys.readouterr().out


def test_evaluate_cli_on_the_shipped_model(capsys):
    assert main(["evaluate", "--dataset", "mnist1d"]) == 0
    # 99.33% here; evaluating on other CPU kernels may move an example or two (0.025 points each)
    assert float(re.search(r"mnist1d test top-1: (\d+\.\d+)%", capsys.readouterr().out).group(1)) >= 99.0
