import pytest

from wfn_core import evaluate, load_pretrained_digits, preset
from wfn_core.course.sweep import (
    SWEEP_ALPHAS,
    SWEEP_DELTAS,
    SWEEP_FIELDS,
    SWEEP_SEEDS,
    choose_setting,
    read_sweep,
    run_point,
)
from wfn_core.data import REPO_DATA_DIR, digits


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
    rows = read_sweep(REPO_DATA_DIR / "sweep_alpha_delta.csv")
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
