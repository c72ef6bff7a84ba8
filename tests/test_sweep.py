import pytest

from wfn_core import evaluate, load_pretrained_digits, preset
from wfn_core.clustering import cluster
from wfn_core.course.sweep import (
    SHIPPED_SWEEP,
    SWEEP_ALPHAS,
    SWEEP_DELTAS,
    SWEEP_FIELDS,
    SWEEP_SEEDS,
    choose_setting,
    cliff_delta,
    early_fixing,
    read_sweep,
    run_point,
    summarise_sweep,
)
from wfn_core.data import digits


def _rows(table, split="val"):
    """Rows from {(alpha, delta): [(drop points, unique) per seed]} with a baseline of 0.99."""
    return [
        {"alpha": a, "delta": d, "seed": s, "split": split, "baseline_top1": 0.99, "top1": 0.99 - drop / 100,
         "unique": u, "entropy_bits": 2.0}
        for (a, d), seeds in table.items() for s, (drop, u) in enumerate(seeds)
    ]


def test_choose_setting_takes_the_fewest_values_one_step_from_the_cliff():
    rows = _rows({
        (1.0, 0.01): [(0.0, 40), (0.0, 42)],
        (1.0, 0.02): [(0.0, 25), (0.3, 23)],
        (1.0, 0.03): [(0.0, 18), (0.4, 20)],   # passes, but the next δ up does not: no margin
        (1.0, 0.04): [(0.0, 12), (3.0, 10)],   # one seed past the budget
        (0.4, 0.02): [(0.0, 30), (0.0, 30)],
        (0.4, 0.03): [(0.0, 31), (0.0, 29)],
    })
    chosen = choose_setting(rows, max_drop=0.5)
    assert (chosen["alpha"], chosen["delta"]) == (1.0, 0.02)
    assert chosen["unique"] == 24 and chosen["worst_drop"] == pytest.approx(0.3)


def test_choose_setting_refuses_the_test_split_and_impossible_budgets():
    with pytest.raises(ValueError, match="test split"):
        choose_setting(_rows({(1.0, 0.01): [(0.0, 40)], (1.0, 0.02): [(0.0, 30)]}, split="test"))
    with pytest.raises(ValueError, match="max_drop=0.1"):
        choose_setting(_rows({(1.0, 0.01): [(0.2, 40)], (1.0, 0.02): [(0.3, 30)]}), max_drop=0.1)


def test_the_shipped_sweep_is_on_validation_and_yields_the_digits_preset():
    rows = read_sweep(SHIPPED_SWEEP)
    assert {r["split"] for r in rows} == {"val"}
    assert sorted((r["alpha"], r["delta"], r["seed"]) for r in rows) == sorted(
        (a, d, s) for a in SWEEP_ALPHAS for d in SWEEP_DELTAS for s in SWEEP_SEEDS)
    chosen = choose_setting(rows)
    config = preset("digits")
    assert (chosen["alpha"], chosen["delta"]) == (config.alpha, config.delta)


def test_run_point_measures_on_the_validation_split():
    row = run_point(1.0, 0.02, fractions=(1.0,))
    assert set(row) == set(SWEEP_FIELDS) and row["split"] == "val"
    val_top1 = evaluate(load_pretrained_digits(), digits(eval_split="val")[1], device="cpu")["top1"]
    assert row["baseline_top1"] == val_top1


def test_summarise_sweep_gives_the_seed_range_and_cliff_delta_finds_the_first_lost_point():
    rows = _rows({(1.0, 0.01): [(0.0, 40), (0.3, 44)], (1.0, 0.02): [(3.0, 20), (0.0, 30)],
                  (1.0, 0.03): [(0.2, 18), (0.0, 16)], (0.0, 0.02): [(0.0, 50)]})
    m = {(s["alpha"], s["delta"]): s for s in summarise_sweep(rows)}[1.0, 0.02]
    assert (m["unique_min"], m["unique"], m["unique_max"]) == (20, 25, 30)
    assert m["top1_min"] == pytest.approx(0.96) and m["top1_max"] == pytest.approx(0.99)
    assert cliff_delta(rows, 1.0) == 0.02  # the first δ where a seed loses more than a point, not the last
    assert cliff_delta(rows, 1.0, max_drop=5.0) is None and cliff_delta(rows, 0.0) is None


def test_early_fixing_uses_the_whole_schedule_and_measures_the_moves():
    weights = load_pretrained_digits().features[0].weight.detach().flatten()
    small, large = early_fixing(weights, 0.01), early_fixing(weights, 0.04)
    assert [s["delta_t"] for s in large] == pytest.approx([0.4, 0.36])  # δ·T, δ·(T−1) with T = 10, not T = 2
    assert [s["fixed_share"] for s in large] == pytest.approx([0.3, 0.6], abs=0.01)
    w = weights.double()
    fixed = cluster(weights, 0.3, 0.4).values.double()
    moved = w.abs() >= 2**-7
    top = ((fixed - w).abs() / w.abs())[moved & (fixed != w)].max()
    assert large[0]["max_move"] == pytest.approx(float(top))
    assert large[1]["mean_move"] > small[1]["mean_move"] and large[1]["centres"] <= small[1]["centres"]


def test_cliff_claims_hold_on_the_shipped_sweep_and_catch_a_preset_at_the_cliff():
    from wfn_core.course.checks import cliff_claims
    from wfn_core.fixable import fixable_parameters, flat_values

    rows, config = read_sweep(SHIPPED_SWEEP), preset("digits")
    weights = flat_values(fixable_parameters(load_pretrained_digits()))
    early = {d: early_fixing(weights, d) for d in (config.delta, 0.025, 0.04)}
    assert all(c.holds for c in cliff_claims(rows, config, early, cliff_delta(rows, config.alpha)))
    near = config.replace(delta=0.025)  # one grid step from the cliff: 0.83 of it
    failed = [c.statement for c in cliff_claims(rows, near, early, cliff_delta(rows, config.alpha)) if not c.holds]
    assert failed == ["the preset's δ as a share of the cliff δ at most 0.7",
                      "their mean relative move at the preset's δ = 0.025 at most 20%"]
    assert not cliff_claims(rows, config, early, None)[0].holds  # no cliff in the sweep: said, not hidden


def test_run_point_takes_the_mnist1d_preset_and_measures_on_its_validation_split():
    from wfn_core.data import mnist1d
    from wfn_core.models import load_pretrained_mnist1d

    row = run_point(1.0, 0.025, preset_name="mnist1d_resnet", fractions=(1.0,))
    assert row["split"] == "val"
    val_top1 = evaluate(load_pretrained_mnist1d(), mnist1d(eval_split="val")[1], device="cpu")["top1"]
    assert row["baseline_top1"] == val_top1


def test_the_sweep_command_writes_its_rows_and_refuses_presets_without_validation(tmp_path, capsys):
    """The verb imported a module that had moved (wfn_core.sweep -> wfn_core.course.sweep) and failed with an
    ImportError; this runs it end to end."""
    from wfn_core.cli import main

    out = tmp_path / "sweep.csv"
    assert main(["sweep", "--alphas", "1", "--deltas", "0.02", "--seeds", "0", "--out", str(out)]) == 0
    assert "wrote 1 rows" in capsys.readouterr().out
    assert len(read_sweep(out)) == 1
    assert main(["sweep", "--preset", "cifar10_resnet18", "--out", str(out)]) == 2
    assert "preset='cifar10_resnet18' is not allowed" in capsys.readouterr().err
