"""Widget logic, driven as a user would: set slider values, press the button."""

import pytest
import torch

from wfn_core import preset
from wfn_core.course.sweep import SHIPPED_SWEEP
from wfn_core.course.widgets import AlphaDeltaExplorer, DeltaExplorer, delta_slider_range, explore_delta
from wfn_core.data import digits
from wfn_core.models import load_pretrained_digits


@pytest.fixture(scope="module")
def model_and_loader():
    torch.set_num_threads(1)
    return load_pretrained_digits(), digits()[1]


def test_delta_slider_updates_metrics(model_and_loader):
    model, loader = model_and_loader
    ex = DeltaExplorer(model, loader, delta=0.005)
    ex.show()
    small = ex.last
    ex.slider.value = 0.05  # the observer re-clusters
    large = ex.last
    assert large["delta"] == pytest.approx(0.05) and small["delta"] == pytest.approx(0.005)
    assert large["unique"] < small["unique"]
    assert large["entropy_bits"] < small["entropy_bits"]
    assert "unique values" in ex.info.value
    assert ex.seconds > 0  # timed, not bounded here: benchmarks/delta_slider.py measures the speed


def test_delta_outside_range_shows_a_message(model_and_loader):
    model, loader = model_and_loader
    ex = DeltaExplorer(model, loader)
    assert ex.update(0.5) is None
    assert "Cannot fix" in ex.info.value and "delta=0.5 is not allowed" in ex.info.value


def test_delta_sliders_offer_only_values_that_run(model_and_loader):
    model, loader = model_and_loader
    assert delta_slider_range(10) == (-3.0, -1.05)  # 10^-1.05 = 0.089: the last step below 1/T = 0.1
    sliders = [DeltaExplorer(model, loader).slider,
               AlphaDeltaExplorer(SHIPPED_SWEEP).delta,
               AlphaDeltaExplorer(SHIPPED_SWEEP, fractions=(0.5, 1.0)).delta]
    for slider, T in zip(sliders, (10, 10, 2)):
        top = 10**slider.max
        assert top * T < 1 <= round(10 ** (slider.max + slider.step) * T, 9)  # the top is the last step that runs
        preset("digits", delta=top, fractions=tuple(i / T for i in range(1, T + 1)))  # WFNConfig accepts it
    assert explore_delta(model, loader, 10 ** sliders[0].max, plot=False)["unique"] > 0


def test_explore_delta_leaves_the_model_alone(model_and_loader):
    model, loader = model_and_loader
    before = {k: v.clone() for k, v in model.state_dict().items()}
    m = explore_delta(model, loader, 0.02, plot=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert 0 < m["unique"] < 1000 and 0 <= m["top1"] <= 1


@pytest.mark.slow
def test_alpha_delta_run_button_adds_a_point():
    ex = AlphaDeltaExplorer(SHIPPED_SWEEP, fractions=(0.5, 1.0), epochs_per_iteration=1)
    ex.show()
    n = len(ex.rows)
    ex.alpha.value, ex.delta.value = 0.4, 0.02
    ex.button.click()
    assert len(ex.rows) == n + 1 and ex.rows[-1]["alpha"] == 0.4
    assert "unique" in ex.info.value and not ex.button.disabled


@pytest.mark.slow
def test_alpha_delta_choose_button_searches_and_moves_the_slider(tmp_path, monkeypatch):
    monkeypatch.setenv("WFN_CACHE", str(tmp_path))
    ex = AlphaDeltaExplorer(SHIPPED_SWEEP, fractions=(0.5, 1.0), epochs_per_iteration=0)
    ex.show()
    n = len(ex.rows)
    ex.alpha.value = 1.0
    ex.choose_button.click()
    chosen = ex.rows[-1]
    assert len(ex.rows) == n + 1 and chosen["alpha"] == 1.0 and chosen["split"] == "val"
    assert ex.delta.value == pytest.approx(chosen["delta"], rel=0.05)  # the log slider snaps to its steps
    assert 100 * (chosen["baseline_top1"] - chosen["top1"]) <= 0.5 + 1e-9
    assert "chose δ" in ex.info.value and 0 < ex.bar.value <= ex.bar.max <= 6
    assert not ex.button.disabled and not ex.choose_button.disabled


def test_alpha_delta_bad_setting_shows_a_message(monkeypatch):
    ex = AlphaDeltaExplorer(SHIPPED_SWEEP, fractions=(0.5, 0.4, 1.0))
    n = len(ex.rows)
    assert ex.run() is None
    assert "Cannot run" in ex.info.value and "strictly increasing" in ex.info.value
    assert len(ex.rows) == n and not ex.button.disabled


def test_plot_tradeoffs_shows_seed_ranges_delta_labels_and_never_hides_a_collapse():
    from wfn_core.course.sweep import read_sweep, summarise_sweep
    from wfn_core.course.widgets import TRADEOFF_FLOOR, plot_tradeoffs

    rows = read_sweep(SHIPPED_SWEEP)
    fig = plot_tradeoffs(rows)
    worst = min(100 * r["top1"] for r in rows)
    for ax in fig.axes:
        assert ax.get_ylim()[0] <= worst  # the worst seed is on the axis, not clipped to a floor
        labels = {t.get_text() for t in ax.texts}
        assert {f"{d:g}" for d in {r["delta"] for r in rows}} <= labels
        assert ax.containers  # error bars
    collapsed = [dict(r, top1=0.3) if (r["alpha"], r["delta"], r["seed"]) == (1.0, 0.04, 1) else r for r in rows]
    mean = next(m for m in summarise_sweep(collapsed) if (m["alpha"], m["delta"]) == (1.0, 0.04))
    assert 100 * mean["top1"] < TRADEOFF_FLOOR  # the case: a mean below the floor
    fig = plot_tradeoffs(collapsed)
    for ax in fig.axes:
        assert ax.get_ylim()[0] < TRADEOFF_FLOOR + 1  # a collapse does not squash the curves to 0-100 %
        assert f"0.04: {100 * mean['top1']:.0f}%" in {t.get_text() for t in ax.texts}  # its real value, written
