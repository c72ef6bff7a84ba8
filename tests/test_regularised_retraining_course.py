"""Notebook 03's figures and claim sets: the figures draw what they say, the claims hold on the values
measured and fail on the regressions their comments name."""

import matplotlib.pyplot as plt
import pytest
import torch

from wfn_core.clustering import relative_distance
from wfn_core.course.checks import ablation_claims, centre_history_claims, cosying_up_claims
from wfn_core.course.plots import (
    nearest_centre_distance,
    plot_ablation,
    plot_cosying_up,
    plot_history,
)

BASELINE = {"top1": 0.9889, "unique": 48808, "entropy_bits": 15.57}


def _history(centres, top1=0.983, n=1000, fractions=(0.3, 0.6, 0.8, 0.9, 1.0)):
    rows = []
    for t, (f, k) in enumerate(zip(fractions, centres)):
        free = round((1 - f) * n)
        rows.append({"iteration": t, "fixed_fraction": f, "top1": top1, "centres": k, "unique": free + k,
                     "entropy_bits": 3.0 - 0.1 * t})
    return rows


def test_nearest_centre_distance_is_the_minimum_relative_distance():
    w = torch.tensor([0.0, 0.005, -0.03, 0.06, 0.2], dtype=torch.float64)
    c = torch.tensor([0.0625, -0.03125, 0.0], dtype=torch.float64)
    want = torch.stack([relative_distance(w, float(x)) for x in c]).min(0).values
    assert torch.equal(nearest_centre_distance(w, c), want)
    assert nearest_centre_distance(w, c)[0] == 0  # a zero weight is on the zero centre
    with pytest.raises(ValueError, match="at least one"):
        nearest_centre_distance(w, torch.empty(0))


def test_plot_history_shows_centres_not_unique_values():
    history = _history([2, 3, 6, 9, 23])
    fig = plot_history(history, BASELINE)
    middle = fig.axes[1]
    assert "centres" in middle.get_ylabel() and middle.get_yscale() == "linear"
    assert list(middle.lines[0].get_ydata()) == [2, 3, 6, 9, 23]
    plt.close(fig)


def test_plot_ablation_draws_every_run():
    runs = {"no retraining": _history([2, 5, 9, 16, 17], top1=0.17), "α = 0": _history([2, 5, 8, 24, 55]),
            "α = 1": _history([2, 3, 6, 13, 23])}
    fig = plot_ablation(runs, BASELINE)
    accuracy, centres = fig.axes[:2]
    assert len(accuracy.lines) == 4 and len(centres.lines) == 3  # three runs + the fp32 line
    assert [line.get_ydata()[-1] for line in centres.lines] == [17, 55, 23]
    assert "55 centres" in centres.get_legend().get_texts()[1].get_text()
    plt.close(fig)


def test_plot_cosying_up_labels_the_medians():
    gen = torch.Generator().manual_seed(0)
    before = 0.02 * torch.randn(500, generator=gen, dtype=torch.float64)
    centres = torch.tensor([-0.0625, -0.03125, 0.03125, 0.0625], dtype=torch.float64)
    after = {"after": 0.5 * before + 0.5 * centres[2]}
    fig = plot_cosying_up(before, after, centres)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    median = nearest_centre_distance(before, centres).median().item()
    assert labels[0] == f"before training: median {median:.3g}" and labels[1].startswith("after: median")
    assert sum(1 for line in fig.axes[1].lines if line.get_linestyle() == ":") == 4  # the centres within ±0.1
    plt.close(fig)


def test_ablation_claims_hold_as_measured_and_catch_regressions():
    none, plain, reg = {"top1": 0.1667, "centres": 17}, {"top1": 0.9889, "centres": 55}, {"top1": 0.9833, "centres": 23}
    assert all(c.holds for c in ablation_claims(BASELINE, none, plain, reg))
    no_pull = ablation_claims(BASELINE, none, plain, {"top1": 0.9833, "centres": 52})  # regulariser off
    assert [c.holds for c in no_pull] == [True, True, False]
    retrained = ablation_claims(BASELINE, {"top1": 0.97, "centres": 20}, plain, reg)  # "no retraining" retrained
    assert not retrained[0].holds


def test_cosying_up_claims_hold_as_measured_and_catch_regressions():
    assert all(c.holds for c in cosying_up_claims(2.02, 0.343, 1.83))
    assert [c.holds for c in cosying_up_claims(2.02, 1.9, 1.83)] == [False, True]  # the regulariser does not pull
    assert [c.holds for c in cosying_up_claims(2.02, 0.343, 0.4)] == [True, False]  # it pulls at α = 0 too


def test_centre_history_claims_hold_as_measured_and_catch_regressions():
    history = _history([2, 3, 6, 9, 23])
    assert all(c.holds for c in centre_history_claims(history, 1000))
    early = _history([10, 18, 20, 22, 23])  # centres picked early: a schedule that no longer shrinks δ_t
    assert [c.holds for c in centre_history_claims(early, 1000)] == [True, False]
    drifting = [dict(h, unique=h["unique"] + 100) for h in history]  # fixed weights counted one by one
    assert not centre_history_claims(drifting, 1000)[0].holds
