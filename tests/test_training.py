import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from wfn_core.data import digits
from wfn_core.models import DigitsCNN
from wfn_core.training import NonFiniteLossError, evaluate, progress_enabled, seed_everything, train_epoch


def _one_epoch(seed: int) -> tuple[dict, torch.Tensor]:
    seed_everything(seed, threads=1)
    train, _ = digits(seed=seed)
    model = DigitsCNN()
    stats = train_epoch(model, train, torch.optim.Adam(model.parameters(), 1e-3), device="cpu")
    return stats, torch.cat([p.detach().flatten() for p in model.parameters()])


def test_same_seed_same_numbers():
    a_stats, a = _one_epoch(1)
    b_stats, b = _one_epoch(1)
    _, c = _one_epoch(2)
    assert a_stats == b_stats and torch.equal(a, b)
    assert not torch.equal(a, c)


def test_evaluate_reports_fractions():
    torch.manual_seed(0)
    x = torch.randn(20, 4)
    y = torch.arange(20) % 3
    model = torch.nn.Linear(4, 3)
    with torch.no_grad():  # a model that always predicts class 0
        model.weight.zero_()
        model.bias.copy_(torch.tensor([5.0, 1.0, 0.0]))
    out = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=8))
    assert out["top1"] == pytest.approx(7 / 20)  # labels 0 at 0,3,...,18
    assert out["top5"] == 1.0  # only 3 classes: top-k uses k = min(5, classes)
    assert out["loss"] > 0


def test_non_finite_loss_raises_before_stepping():
    model = torch.nn.Linear(2, 2)
    before = model.weight.detach().clone()
    loader = DataLoader(TensorDataset(torch.full((4, 2), float("nan")), torch.zeros(4, dtype=torch.long)), batch_size=2)
    with pytest.raises(NonFiniteLossError, match="step 0"):
        train_epoch(model, loader, torch.optim.SGD(model.parameters(), 0.1))
    assert torch.equal(model.weight, before)


def test_empty_loader_is_an_error():
    model = torch.nn.Linear(2, 2)
    empty = DataLoader(TensorDataset(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(ValueError, match="no batches"):
        train_epoch(model, empty, torch.optim.SGD(model.parameters(), 0.1))
    with pytest.raises(ValueError, match="no batches"):
        evaluate(model, empty)


def test_progress_quiet_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("WFN_NO_PROGRESS", raising=False)
    assert progress_enabled()
    monkeypatch.setenv("CI", "true")
    assert not progress_enabled()
    monkeypatch.delenv("CI")
    monkeypatch.setenv("WFN_NO_PROGRESS", "1")
    assert not progress_enabled()


def test_bad_seed():
    with pytest.raises(ValueError, match="seed=-1"):
        seed_everything(-1)
