"""δ search: the proxy brackets, full runs bisect, the cache remembers, the budget and the splits hold,
and the CLI writes what it found."""

import csv
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import wfn_core.data as data
import wfn_core.delta_search as DS
from wfn_core import WFNConfig, load_pretrained_digits, run_wfn, search_delta, search_preset
from wfn_core.cli import main, run_preset
from wfn_core.config import build_preset

# Two fixing iterations of one epoch: a full run of the MLP below takes a fraction of a second.
CONFIG = WFNConfig(delta=0.01, alpha=1.0, lr=1e-3, fractions=(0.5, 1.0), epochs_per_iteration=1, batch_size=64)
SEARCH = dict(max_drop=1.0, device="cpu")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: the same numbers on every run here, and no oversubscribed cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mlp(one_thread):
    """A trained 2-layer MLP on 8 Gaussian blobs in 8-D, with its training and validation loaders."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(8, 8, generator=g) * 1.5

    def draw(n: int) -> TensorDataset:
        y = torch.randint(0, 8, (n,), generator=g)
        return TensorDataset(centres[y] + 0.8 * torch.randn(n, 8, generator=g), y)

    train_set, val_set = draw(512), draw(256)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 8))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        optimizer.zero_grad()
        F.cross_entropy(model(train_set.tensors[0]), train_set.tensors[1]).backward()
        optimizer.step()
    train = DataLoader(train_set, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    return model, train, DataLoader(val_set, batch_size=128)


def _count_full_runs(monkeypatch) -> dict[str, int]:
    calls = {"n": 0}
    real = DS.run_wfn

    def counted(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(DS, "run_wfn", counted)
    return calls


def test_search_returns_the_largest_delta_a_full_run_accepts(mlp, tmp_path):
    model, train, val = mlp
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    found = search_delta(model, train, val, CONFIG, cache=tmp_path, callback=seen.append, **SEARCH)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the search works on copies
    assert found.delta is not None and found.split == "val" and 1 <= found.full_runs <= DS.DEFAULT_MAX_RUNS
    passed = [r["delta"] for r in found.runs if r["passed"]]
    failed = [r["delta"] for r in found.runs if not r["passed"]]
    assert passed and failed, found.table()  # this MLP exercises both sides of the bisection
    assert max(passed) < min(failed) and found.bracket[0] == max(passed)  # the bisection's edge
    chosen = found.chosen
    assert chosen["passed"] and chosen["unique"] == min(r["unique"] for r in found.runs if r["passed"])
    assert chosen["drop"] <= 1.0 and chosen["drop"] == pytest.approx(100 * (chosen["baseline_top1"] - chosen["top1"]))
    # the proxy: scanned down to its first δ within budget, which starts the bracket
    assert found.proxy[0]["passed"] and not any(p["passed"] for p in found.proxy[1:])
    # the callback saw every proxy point and every full run, with the budget to draw a progress bar
    assert [p["delta"] for p in seen if p["stage"] == "proxy"] == [p["delta"] for p in found.proxy][::-1]
    fulls = [p for p in seen if p["stage"] == "full"]
    assert [p["index"] for p in fulls] == list(range(1, found.full_runs + 1))
    assert {p["max_runs"] for p in fulls} == {DS.DEFAULT_MAX_RUNS}
    # what it reports is what a full run at that δ does
    replay = run_wfn(DS.copy.deepcopy(model), train, val, CONFIG.replace(delta=found.delta), device="cpu")
    assert (replay.final["top1"], replay.final["unique"]) == (chosen["top1"], chosen["unique"])
    json.dumps(found.to_dict())  # JSON-ready


def test_a_second_search_comes_from_the_cache_and_a_larger_budget_reuses_it(mlp, tmp_path, monkeypatch):
    model, train, val = mlp
    first = search_delta(model, train, val, CONFIG, max_runs=3, cache=tmp_path, **SEARCH)
    assert first.new_runs == first.full_runs > 0

    def forbidden(*args, **kwargs):
        raise AssertionError("computed again instead of read from the cache")

    monkeypatch.setattr(DS, "run_wfn", forbidden)
    monkeypatch.setattr(DS, "_proxy_probe", forbidden)
    again = search_delta(model, train, val, CONFIG, max_runs=3, cache=tmp_path, **SEARCH)
    assert again.new_runs == 0 and all(r["cached"] for r in again.runs)
    assert again.delta == first.delta and [r["delta"] for r in again.runs] == [r["delta"] for r in first.runs]

    monkeypatch.undo()
    calls = _count_full_runs(monkeypatch)
    larger = search_delta(model, train, val, CONFIG, max_runs=6, cache=tmp_path, **SEARCH)
    cached = [r["delta"] for r in larger.runs if r["cached"]]
    assert larger.runs[0]["cached"] and set(cached) <= {r["delta"] for r in first.runs}
    assert calls["n"] == larger.new_runs == larger.full_runs - len(cached)


def test_the_cache_key_follows_model_settings_data_and_cpu_but_not_delta(mlp, monkeypatch):
    model, train, val = mlp
    key = DS.cache_key(model, CONFIG, train, val)
    assert DS.cache_key(model, CONFIG.replace(delta=0.05), train, val) == key
    assert DS.cache_key(model, CONFIG.replace(alpha=0.4), train, val) != key
    assert DS.cache_key(model, CONFIG, train, DataLoader(val.dataset, batch_size=32)) != key
    other = DS.copy.deepcopy(model)
    with torch.no_grad():
        other[0].bias[0] += 1e-6
    assert DS.cache_key(other, CONFIG, train, val) != key
    # another thread count or CPU kernel set trains another network: not the same cache entry
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        assert DS.cache_key(model, CONFIG, train, val) != key
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(DS.torch.backends.cpu, "get_cpu_capability", lambda: "EMULATED")
    assert DS.cache_key(model, CONFIG, train, val) != key


@pytest.mark.parametrize("max_runs", [1, 2, 4])
def test_max_runs_is_respected(mlp, monkeypatch, max_runs):
    model, train, val = mlp
    calls = _count_full_runs(monkeypatch)
    found = search_delta(model, train, val, CONFIG, max_runs=max_runs, cache=False, **SEARCH)
    assert calls["n"] == found.new_runs == found.full_runs <= max_runs
    assert found.delta is not None or "no full run" in found.reason


def _fake_search(monkeypatch, proxy_ok, full_ok, **kwargs):
    """A search whose proxy passes where ``proxy_ok(δ)`` and whose full runs pass where ``full_ok(δ)``;
    unique values fall with δ in both."""
    model = nn.Linear(4, 2)
    val = DataLoader(TensorDataset(torch.randn(16, 4, generator=torch.Generator().manual_seed(0)),
                                   torch.zeros(16, dtype=torch.long)), batch_size=16)
    base = DS.evaluate(model, val, device="cpu")["top1"]

    def point(delta, ok):
        return {"delta": delta, "top1": base if ok else 0.0, "unique": max(2, int(1 / delta)), "unique_nonzero": 1,
                "entropy_bits": 1.0, "entropy_bits_nonzero": 1.0, "power_of_two_share": 1.0}

    monkeypatch.setattr(DS, "_proxy_probe", lambda *a: lambda d: point(d, proxy_ok(d)))
    monkeypatch.setattr(DS, "_full_run", lambda m, t, v, c, d, dev: {**point(d, full_ok(d)), "baseline_top1": base})
    return search_delta(model, val, val, WFNConfig(), max_drop=0.5, cache=False, device="cpu", **kwargs)


def test_the_proxy_collapsing_rules_no_delta_out(monkeypatch):
    """Without retraining accuracy collapses far below the δ full runs accept: the search still finds them."""
    found = _fake_search(monkeypatch, proxy_ok=lambda d: d <= 0.002, full_ok=lambda d: d <= 0.03, max_runs=8)
    assert found.bracket[0] == found.delta and 0.03 / 1.1 <= found.delta <= 0.03, found.table()
    assert found.proxy[0]["delta"] <= 0.002 < found.delta


def test_a_full_run_failing_where_the_proxy_passed_steps_down_the_grid(monkeypatch):
    found = _fake_search(monkeypatch, proxy_ok=lambda d: d <= 0.02, full_ok=lambda d: d <= 0.005, max_runs=20)
    assert found.delta is not None and found.delta <= 0.005 and found.chosen["passed"], found.table()
    assert all(r["delta"] > found.delta for r in found.runs if not r["passed"])
    nothing = _fake_search(monkeypatch, proxy_ok=lambda d: True, full_ok=lambda d: False, max_runs=2)
    assert nothing.delta is None and nothing.chosen is None and "no full run" in nothing.reason


def test_bad_inputs_name_the_parameter_the_value_and_what_is_allowed(mlp):
    model, train, val = mlp
    cases = [
        (dict(max_drop=-1), r"max_drop=-1 is not allowed: it must be a number >= 0 \(accuracy points\)"),
        (dict(max_drop=float("nan")), r"max_drop=nan is not allowed"),
        (dict(max_runs=0), r"max_runs=0 is not allowed: it must be an integer >= 1"),
        (dict(rtol=0), r"rtol=0 is not allowed: it must be a number > 0"),
        (dict(grid_points=2), r"grid_points=2 is not allowed: it must be an integer >= 3"),
        (dict(delta_range=(0.01, 0.6)), r"delta_range=\(0.01, 0.6\) is not allowed: .*1/T = 0.5 \(T = 2 fractions"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            search_delta(model, train, val, CONFIG, cache=False, device="cpu", **kwargs)
    with pytest.raises(TypeError, match="config=.* is not allowed: it must be a WFNConfig"):
        search_delta(model, train, val, CONFIG.to_dict(), cache=False)


class _Untouchable:
    """A loader that fails the test if anything reads it."""

    def __init__(self, loader):
        self.dataset, self.batch_size = loader.dataset, loader.batch_size

    def __iter__(self):
        raise AssertionError("the test split was read")

    def __len__(self):
        raise AssertionError("the test split was read")


def _guard_digits(monkeypatch, guard_test: bool) -> list[str]:
    """Record which split each ``digits()`` call asks for; with ``guard_test`` its test loader cannot be read."""
    real, splits = data.digits, []

    def digits(*args, eval_split="test", **kwargs):
        splits.append(eval_split)
        train, held_out = real(*args, eval_split=eval_split, **kwargs)
        return train, (_Untouchable(held_out) if eval_split == "test" and guard_test else held_out)

    monkeypatch.setattr(data, "digits", digits)
    return splits


def test_search_preset_measures_on_validation_and_never_on_test(monkeypatch, tmp_path, one_thread):
    splits = _guard_digits(monkeypatch, guard_test=True)
    found = search_preset("digits", overrides={"epochs_per_iteration": 0}, max_runs=2, cache=tmp_path, device="cpu")
    assert splits == ["val"] and found.split == "val" and found.full_runs <= 2
    assert found.extra == {"preset": "digits", "seed": 0}
    assert found.baseline_top1 == DS.evaluate(load_pretrained_digits(), data.digits(eval_split="val")[1])["top1"]
    with pytest.raises(ValueError, match="eval_split='val' is not allowed for preset='cifar10_resnet18'"):
        build_preset("cifar10_resnet18", CONFIG, eval_split="val")


def test_cli_search_writes_search_json_and_repeats_from_the_cache(tmp_path, capsys, one_thread):
    out, cache = tmp_path / "search", tmp_path / "cache"
    argv = ["search", "--preset", "digits", "--max-drop", "0.5", "--max-runs", "2", "--epochs", "0", "--seed", "1",
            "--cache", str(cache), "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    found = json.loads((out / "search.json").read_text())
    for key in ("delta", "split", "max_drop", "max_runs", "full_runs", "new_runs", "baseline_top1", "top1", "drop",
                "unique", "entropy_bits", "bracket", "reason", "seconds", "config", "cache_dir", "runs", "proxy",
                "preset", "seed"):
        assert key in found, key
    assert (found["split"], found["max_drop"], found["max_runs"], found["seed"]) == ("val", 0.5, 2, 1)
    assert found["config"]["seed"] == 1 and found["config"]["epochs_per_iteration"] == 0
    assert 1 <= found["full_runs"] <= 2 and found["drop"] <= 0.5
    assert {"delta", "top1", "drop", "passed", "cached", "unique", "entropy_bits"} <= set(found["runs"][0])
    # every tried point, in the terms, and the trade-off figure beside the JSON
    kinds = [p["kind"] for p in found["points"]]
    assert kinds == ["proxy"] * len(found["proxy"]) + ["full"] * found["full_runs"]
    for point in found["points"]:
        assert {"delta", "kind", "val_top1", "unique", "entropy_bits", "seconds"} <= set(point)
        assert 0 <= point["val_top1"] <= 1 and point["seconds"] is not None
    assert (out / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert f"δ = {found['delta']:g}" in printed and f"--delta {found['delta']:g} --seed 1" in printed
    assert main(argv) == 0
    assert json.loads((out / "search.json").read_text())["new_runs"] == 0
    assert "(0 new)" in capsys.readouterr().out


def test_cli_run_delta_auto_searches_on_validation_then_runs_and_records_it(tmp_path, monkeypatch, capsys, one_thread):
    splits = _guard_digits(monkeypatch, guard_test=False)
    out = tmp_path / "run"
    assert main(["run", "--preset", "digits", "--delta", "auto", "--epochs", "0", "--max-runs", "2",
                 "--cache", str(tmp_path / "cache"), "--out", str(out), "--device", "cpu"]) == 0
    assert splits == ["val", "test"]  # the search saw only validation; the run is then evaluated on test
    summary = json.loads((out / "summary.json").read_text())
    found = json.loads((out / "search.json").read_text())
    assert summary["delta"] == found["delta"] and summary["delta_source"] == "search"
    record = summary["delta_search"]
    assert (record["split"], record["max_drop"], record["file"]) == ("val", 0.5, "search.json")
    assert record["full_runs"] == found["full_runs"] <= 2 and record["val_drop"] == found["drop"] <= 0.5
    with open(out / "history.csv") as f:
        assert float(list(csv.DictReader(f))[-1]["delta_t"]) == pytest.approx(summary["delta"])
    assert "chosen on the validation split" in capsys.readouterr().out


def test_cli_search_options_are_checked(tmp_path, capsys, monkeypatch):
    assert main(["run", "--preset", "digits", "--max-drop", "1", "--out", str(tmp_path / "r")]) == 2
    assert "only with --delta auto" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--preset", "digits", "--delta", "big", "--out", str(tmp_path / "r")])
    assert "neither a number nor 'auto'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["search", "--preset", "digits", "--max-drop", "-1", "--out", str(tmp_path / "s")])
    assert "not a number >= 0" in capsys.readouterr().err
    assert main(["search", "--preset", "cifar10_resnet18", "--out", str(tmp_path / "s")]) == 2
    assert "validation" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="not supported under torchrun"):
        run_preset("digits", tmp_path / "ddp", delta_search={})
