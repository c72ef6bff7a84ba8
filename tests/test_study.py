"""The whole-network study (`python -m wfn_core compare`): methods, budget, CSV, resume, targets, figure."""

import csv

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from wfn_core import config as config_module
from wfn_core import data
from wfn_core.cli import main
from wfn_core.compare import study
from wfn_core.models import load_pretrained_mnist1d

SMALL = {"fractions": (0.5, 1.0), "epochs_per_iteration": 1}  # one epoch of training: WFN's whole budget


@pytest.fixture
def small_preset(monkeypatch):
    """The mnist1d_resnet preset on 256 training and 400 test examples, so a study takes seconds."""
    calls = []

    def build(name, config, weights=None, data_root=None, eval_split="test"):
        calls.append((name, config))
        x_train, y_train, _, _, x_test, y_test = data.mnist1d_arrays()
        g = torch.Generator().manual_seed(config.seed)
        train = DataLoader(TensorDataset(x_train[:256], y_train[:256]), batch_size=config.batch_size, shuffle=True,
                           generator=g)
        return load_pretrained_mnist1d(), train, DataLoader(TensorDataset(x_test[:400], y_test[:400]), batch_size=200)

    monkeypatch.setattr(config_module, "build_preset", build)
    return calls


EXPECTED_METHODS = [
    "fp32", "uniform 4-bit per tensor", "uniform 3-bit per tensor", "APoT 4-bit", "APoT 3-bit",
    "k-means per layer k=16", "k-means per network k=16", "WFN",
]


def test_study_runs_every_method_under_one_budget_and_resumes(small_preset, tmp_path, monkeypatch):
    logged = []
    rows = study.run_study("mnist1d_resnet", [0, 1], tmp_path, overrides=SMALL, log=logged.append)
    with open(tmp_path / "comparison.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == study.COLUMNS
        assert len(list(reader)) == len(rows)
    assert {r["seed"] for r in rows} == {0, 1}
    for seed in (0, 1):
        methods = [r["method"] for r in rows if r["seed"] == seed]
        wfn = next(r for r in rows if r["seed"] == seed and r["method"] == "WFN")
        # k-means is given WFN's count and the 4-bit count: both rows exist (one name if WFN kept 16 values)
        expected = set(EXPECTED_METHODS) | {f"k-means per {s} k={wfn['unique']}" for s in ("layer", "network")}
        assert set(methods) == expected and len(methods) == len(expected)
        for r in rows:
            if r["method"] != "fp32":
                assert r["epochs"] == 1, r  # WFN's budget: 1 iteration x 1 epoch; every quantiser the same
            assert 0 <= r["top1"] <= 1 and r["bytes"] > 0 and r["seconds"] >= 0
        per_layer_4 = next(r for r in rows if r["seed"] == seed and r["method"] == "uniform 4-bit per tensor")
        assert per_layer_4["unique_nonzero"] > wfn["unique_nonzero"]  # 22 tensors x up to 15 values each
    assert (tmp_path / "seed-0" / "wfn" / "wfn_checkpoint.pt").is_file()
    assert any("WFN" in line for line in logged)

    # a rerun keeps the rows and trains nothing again: every (method, seed) is already there
    def no_training(*args, **kwargs):
        raise AssertionError("a finished row was run again")

    monkeypatch.setattr(study, "compare", no_training)
    again = study.run_study("mnist1d_resnet", [0, 1], tmp_path, overrides=SMALL, log=lambda _: None)
    assert again == study.read_rows(tmp_path / "comparison.csv") and len(again) == len(rows)


def test_stopped_study_continues_where_it_stopped(small_preset, tmp_path, monkeypatch):
    real = study.compare
    seen = []

    def stop_after_three(model, methods, *args, **kwargs):
        if len(seen) == 3:
            raise KeyboardInterrupt
        seen.append(methods[0][0])
        return real(model, methods, *args, **kwargs)

    monkeypatch.setattr(study, "compare", stop_after_three)
    with pytest.raises(KeyboardInterrupt):
        study.run_study("mnist1d_resnet", [0], tmp_path, overrides=SMALL, log=lambda _: None)
    assert [r["method"] for r in study.read_rows(tmp_path / "comparison.csv")] == seen
    monkeypatch.setattr(study, "compare", real)
    rows = study.run_study("mnist1d_resnet", [0], tmp_path, overrides=SMALL, log=lambda _: None)
    assert [r["method"] for r in rows][:3] == seen and len({r["method"] for r in rows}) == len(rows) >= 8


def _row(method, seed, top1, nonzero, bits):
    return {"method": method, "seed": seed, "top1": top1, "unique": nonzero + 1, "unique_nonzero": nonzero,
            "entropy_bits": bits, "entropy_bits_nonzero": bits, "power_of_two_share": 0.5, "bytes": 100,
            "epochs": 9, "seconds": 1.0}


def test_targets_are_means_over_seeds():
    rows = [_row("fp32", s, 0.99, 100_000, 15.0) for s in (0, 1)]
    rows += [_row("WFN", 0, 0.990, 10, 2.0), _row("WFN", 1, 0.984, 12, 2.2)]
    rows += [_row("uniform 4-bit per tensor", s, 0.985, 300, 3.3) for s in (0, 1)]
    rows += [_row("APoT 4-bit", s, 0.98, 200, 3.0) for s in (0, 1)]
    t = study.targets(rows)
    assert t["baseline"] == "uniform 4-bit per tensor"  # the more accurate per-layer 4-bit method
    assert t["wfn_drop_points"] == pytest.approx(0.3)
    assert t["unique_ratio"] == pytest.approx(300 / 11) and t["entropy_ratio"] == pytest.approx(3.3 / 2.1)
    assert t["within_half_point"] and t["ten_times_fewer"] and t["entropy_1_5_lower"]
    assert t["wfn_at_least_as_accurate"]  # mean 98.70% against 98.50%, though seed 1 alone is below
    rows += [_row("uniform 4-bit per tensor", 2, 0.999, 300, 3.3), _row("WFN", 2, 0.96, 10, 2.0)]
    t = study.targets(rows)
    assert not t["wfn_at_least_as_accurate"] and not t["within_half_point"]
    with pytest.raises(ValueError, match="no 'WFN' method"):
        study.targets([r for r in rows if r["method"] != "WFN"])


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="seeds=\\[\\]"):
        study.run_study("mnist1d_resnet", [], tmp_path)
    with pytest.raises(ValueError, match="seed=-1"):
        study.run_study("mnist1d_resnet", [-1], tmp_path)
    (tmp_path / "comparison.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a comparison CSV"):
        study.read_rows(tmp_path / "comparison.csv")


def test_compare_command_writes_csv_figure_and_targets(small_preset, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(config_module, "PRESETS", {**config_module.PRESETS, "mnist1d_resnet":
                                                   config_module.PRESETS["mnist1d_resnet"].replace(**SMALL)})
    out = tmp_path / "compare"
    assert main(["compare", "--preset", "mnist1d_resnet", "--seeds", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (out / "comparison.png").stat().st_size > 10_000
    assert "mean of 1 seeds: WFN" in printed and "best per-layer 4-bit" in printed
    assert {r["seed"] for r in study.read_rows(out / "comparison.csv")} == {3}
    assert main(["compare", "--preset", "nope", "--out", str(out)]) == 2
