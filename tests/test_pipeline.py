"""The WFN outer loop: schedule, results, checkpoints and resume, faults, CLI."""

import json

import pytest
import torch

import wfn_core.pipeline as pipeline
from wfn_core.cli import main
from wfn_core.config import WFNConfig, preset
from wfn_core.data import digits
from wfn_core.fixable import fixable_parameters
from wfn_core.models import DigitsCNN, load_pretrained_digits
from wfn_core.pipeline import CHECKPOINT_NAME, CheckpointError, run_wfn
from wfn_core.training import NonFiniteLossError

SHORT = dict(fractions=(0.5, 0.9, 1.0), epochs_per_iteration=1)


def _run(tmp_path=None, resume=False, model=None, **overrides):
    config = preset("digits", **{**SHORT, **overrides})
    train, test = digits(batch_size=config.batch_size, seed=config.seed)
    return run_wfn(model or load_pretrained_digits(), train, test, config, checkpoint_dir=tmp_path, resume=resume,
                   device="cpu")


def test_short_run_fixes_everything_and_keeps_accuracy():
    result = _run()
    assert [r["iteration"] for r in result.history] == [0, 1, 2]
    assert [r["fraction"] for r in result.history] == [0.5, 0.9, 1.0]
    d = preset("digits").delta  # the schedule steps δ down to the preset's δ
    assert [r["delta_t"] for r in result.history] == pytest.approx([3 * d, 2 * d, d])
    assert result.history[-1]["fixed_fraction"] == 1.0
    assert result.baseline["top1"] > 0.98 and result.final["top1"] > 0.97  # shipped model: 356 of 360
    final = torch.cat([p.detach().reshape(-1) for _, p in fixable_parameters(result.model)])
    assert torch.unique(final).numel() == result.final["unique"] < 200
    assert set(torch.unique(final).tolist()) <= set(result.centres.tolist())
    DigitsCNN().load_state_dict(result.model.state_dict())


def _snapshot(model: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_run_wfn_leaves_the_given_model_as_it_found_it_and_runs_twice():
    model = load_pretrained_digits().eval()
    before = _snapshot(model)
    first = _run(model=model)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in model.modules())
    assert _snapshot(model).keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # not a bit changed
    assert not model.training  # nor its mode
    second = _run(model=model)  # the same instance again: same run
    assert torch.equal(first.flat_values(), second.flat_values())
    for result in (first, second):
        assert result.model is not model and not result.model.training  # returned in the mode it was given
        assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in result.model.modules())
        assert result.model.state_dict().keys() == before.keys()
    assert _run(model=load_pretrained_digits().train()).model.training


def test_resume_after_an_interruption_mid_training_matches(tmp_path, monkeypatch):
    reference = _run()
    calls = {"n": 0}
    real = pipeline.train_epoch

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # during iteration 1's training
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "train_epoch", flaky)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path)
    saved = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=False)
    assert saved["iteration"] == 0
    monkeypatch.setattr(pipeline, "train_epoch", real)
    resumed = _run(tmp_path, resume=True)
    assert [r["iteration"] for r in resumed.history] == [0, 1, 2]
    assert torch.equal(resumed.flat_values(), reference.flat_values())
    for a, b in zip(resumed.history, reference.history):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


def test_nan_loss_names_the_iteration_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    real = pipeline.ClusterRegulariser.fixer_loss
    state = {"t": 0}

    def poisoned(self, ce, fixer):
        state["t"] += 1
        return real(self, ce, fixer) * (float("nan") if state["t"] > 30 else 1.0)

    monkeypatch.setattr(pipeline.ClusterRegulariser, "fixer_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"WFN iteration 1 .*last good checkpoint"):
        _run(tmp_path)
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=False)["iteration"] == 0


def test_checkpoints_from_elsewhere_are_refused(tmp_path):
    _run(tmp_path, fractions=(0.5, 1.0))
    with pytest.raises(CheckpointError, match="another architecture"):
        _run(tmp_path, resume=True, model=DigitsCNN(num_classes=5), fractions=(0.5, 1.0))
    with pytest.raises(CheckpointError, match="other settings .*alpha"):
        _run(tmp_path, resume=True, fractions=(0.5, 1.0), alpha=0.1)
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=False)
    assert set(state) == {"version", "iteration", "config", "signature", "model", "centres", "history", "baseline",
                          "extra_parameters"}
    torch.save({**state, "version": 1}, tmp_path / CHECKPOINT_NAME)
    with pytest.raises(CheckpointError, match="version 1; this wfn reads version 2"):
        _run(tmp_path, resume=True, fractions=(0.5, 1.0))
    (tmp_path / CHECKPOINT_NAME).write_bytes((tmp_path / CHECKPOINT_NAME).read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="unreadable"):
        _run(tmp_path, resume=True, fractions=(0.5, 1.0))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"delta": 0.0}, r"delta=0.0 is not allowed: it must be a number in \(0, 0.1\)"),
        ({"delta": 1.5}, r"delta=1.5"),
        # δ_0 = δ·T >= 1 can only fail later (after the baseline evaluation): refused up front
        ({"delta": 0.2}, r"^delta=0.2 is not allowed: it must be a number in \(0, 0.1\) \(δ_0 = δ·T must stay below 1 "
                         r"with T = 10 fixing iterations\)$"),
        ({"delta": 0.6, "fractions": (0.5, 1.0)}, r"^delta=0.6 is not allowed: it must be a number in \(0, 0.5\)"),
        ({"alpha": -1}, r"alpha=-1 .*>= 0"),
        ({"tau": 0}, r"tau=0 .*> 0"),
        ({"fractions": (0.5, 0.4, 1.0)}, "strictly increasing"),
        ({"fractions": (0.5, 0.9)}, "ending at 1.0"),
        ({"epochs_per_iteration": -1}, "epochs_per_iteration=-1"),
        ({"epochs_before": 1.5}, "epochs_before=1.5"),
        ({"zero_threshold": 0.01}, "power of two"),
        ({"optimizer": "rmsprop"}, "optimizer='rmsprop' is not allowed: it must be one of 'adam', 'sgd'"),
        ({"batch_size": 0}, "batch_size=0 is not allowed: it must be an integer >= 1"),
        ({"include_bn": 1}, "include_bn=1 is not allowed: it must be True or False"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WFNConfig(**kwargs)


def test_bad_inputs_fail_before_any_work():
    config = preset("digits", **SHORT)
    train, test = digits()
    with pytest.raises(ValueError, match="fixable"):
        run_wfn(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.ReLU()), train, test, config, device="cpu")
    with pytest.raises(ValueError, match="preset='mnist' is not allowed: it must be one of 'digits'"):
        preset("mnist")
    empty = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0)))
    model = load_pretrained_digits()
    with pytest.raises(ValueError, match="train_loader yields no batches"):
        run_wfn(model, empty, test, config, device="cpu")
    assert not any("parametrizations" in k for k in model.state_dict())  # refused before any work


def test_cli_run_writes_the_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--preset", "digits", "--epochs", "1", "--out", str(out), "--device", "cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"baseline_top1", "final_top1", "unique", "unique_nonzero", "entropy_bits",
                            "entropy_bits_nonzero", "power_of_two_share", "seconds",
                            "world_size", "batch_per_rank", "global_batch", "lr", "lr_scaling"}
    assert (summary["world_size"], summary["batch_per_rank"], summary["global_batch"]) == (1, 64, 64)
    assert (out / "history.csv").read_text().count("\n") == 11  # header + 10 iterations
    model = DigitsCNN()
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    printed = capsys.readouterr().out
    assert "digits: top-1" in printed and "unique values" in printed
    assert main(["export", str(out), str(out / "model.wfnz")]) == 0
    assert "ratio" in capsys.readouterr().out
    # a second run into the same folder is refused unless resumed: nothing is overwritten
    assert main(["run", "--preset", "digits", "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_cli_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for option in ("--preset", "--delta", "--alpha", "--seed", "--out", "--resume", "--epochs", "--weights",
                   "--threads"):
        assert option in text
