"""Widget logic, driven as a user would: set slider values, press the button."""

import time

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


# --- issue 14: the widgets as a student meets them (each test fails on the widgets before the fix) ---

def _fast_explorer() -> AlphaDeltaExplorer:
    """Two WFN iterations, one epoch each: a real run in a few seconds."""
    return AlphaDeltaExplorer(SHIPPED_SWEEP, fractions=(0.5, 1.0), epochs_per_iteration=1)


def test_run_shows_progress_each_iteration_and_clears_the_old_message(monkeypatch):
    from wfn_core.training import progress_enabled

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("WFN_NO_PROGRESS", raising=False)  # bars on, as in a student's notebook
    ex = _fast_explorer()
    ex.info.value = "<span style='color:#c44'>Cannot run: an old error</span>"
    seen = []  # (bar value, message, training bars on?, button disabled?) at every tick of the bar
    ex.bar.observe(lambda ch: seen.append((ch["new"], ex.info.value, progress_enabled(), ex.button.disabled)),
                   names="value")
    ex.alpha.value, ex.delta.value = 0.2, 0.02
    began = time.perf_counter()
    assert ex.run() is not None
    print(f"one run with 2 iterations: {time.perf_counter() - began:.2f} s")
    assert ex.bar.max == 2 and [s[0] for s in seen] == [1, 2]  # one tick per WFN iteration, not one at the end
    assert "iteration 1/2 done" in seen[0][1] and "iteration 2/2 done" in seen[1][1]
    assert not any("old error" in s[1] for s in seen)
    assert not any(s[2] for s in seen)  # training's own tqdm bars off while the widget trains
    assert all(s[3] for s in seen) and not ex.button.disabled  # disabled while running only


def test_a_second_click_on_the_same_point_does_not_train_again(monkeypatch):
    from wfn_core.course import widgets

    calls = []
    real = widgets.run_point_with_progress
    monkeypatch.setattr(widgets, "run_point_with_progress", lambda *a, **k: calls.append(a) or real(*a, **k))
    ex = AlphaDeltaExplorer(SHIPPED_SWEEP, fractions=(0.5, 1.0), epochs_per_iteration=0)
    n = len(ex.rows)
    ex.alpha.value, ex.delta.value = 0.3, 0.02
    ex.button.click()
    ex.button.click()  # a double click's second message, handled once the first run is over
    assert len(calls) == 1 and len(ex.rows) == n + 1
    assert "already on the curves (not run again)" in ex.info.value
    ex.delta.value = 0.03  # a new point runs
    ex.button.click()
    assert len(calls) == 2 and len(ex.rows) == n + 2


def test_alpha_colours_stay_when_an_alpha_is_added():
    from wfn_core.course.sweep import read_sweep
    from wfn_core.course.widgets import plot_tradeoffs

    def colours(fig) -> dict[str, tuple]:
        return {c.get_label(): tuple(c.lines[0].get_color()) for c in fig.axes[0].containers}

    rows = read_sweep(SHIPPED_SWEEP)
    before = colours(plot_tradeoffs(rows))
    after = colours(plot_tradeoffs(rows + [dict(r, alpha=0.7) for r in rows if r["alpha"] == 0.4]))
    assert set(after) == set(before) | {"α = 0.7"}
    assert all(after[k] == before[k] for k in before)  # α = 0, 0.4 and 1 keep their colours
    assert len(set(after.values())) == len(after)


def test_slider_readout_and_metrics_show_the_same_delta(model_and_loader):
    from wfn_core.course.widgets import DELTA_READOUT_FORMAT, format_delta

    # d3's ".4g" is JavaScript's toPrecision(4): these strings are what the browser's readout shows
    assert DELTA_READOUT_FORMAT == ".4g"
    for delta, shown in ((10**-2.4, "0.003981"), (0.01, "0.01000"), (10**-1.05, "0.08913"), (0.001, "0.001000")):
        assert format_delta(delta) == shown
    model, loader = model_and_loader
    ex = DeltaExplorer(model, loader)
    assert ex.slider.readout_format == DELTA_READOUT_FORMAT
    ex.slider.value = 10**-2.4  # a step of the log slider
    assert "δ = 0.003981</b>" in ex.info.value and ex.last["delta"] == 0.003981  # the shown value is the one used
    assert ex.update(10**ex.slider.max) is not None and "δ = 0.08913</b>" in ex.info.value  # the top, rounded, runs
    run = _fast_explorer()
    assert run.delta.readout_format == DELTA_READOUT_FORMAT


def test_progress_in_a_notebook_leaves_text_not_a_widget_view(monkeypatch):
    import ipywidgets

    from wfn_core import training

    shown: list[tuple[str, str]] = []  # (kind, text): every display and update a fake kernel receives

    class Handle:
        def update(self, data, raw):
            shown.append(("update", data["text/plain"]))

    def display(data, display_id):
        assert set(data) == {"text/plain"} and display_id is True
        shown.append(("display", data["text/plain"]))
        return Handle()

    monkeypatch.setattr(training, "_in_notebook", lambda: True)
    monkeypatch.setattr(training, "_display", display)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("WFN_NO_PROGRESS", "0")
    made = []  # widgets constructed while the bars run (tqdm's notebook bars are widgets)
    monkeypatch.setattr(ipywidgets.Widget, "open", lambda self: made.append(self))
    for _ in training.progress(range(3), desc="outer", leave=True):
        for _ in training.progress(range(2), desc="inner"):
            pass
    assert made == []
    assert [k for k, _ in shown].count("display") == 4  # one line per bar
    assert shown[-1] == ("update", shown[-1][1]) and shown[-1][1].startswith("outer: 100%")  # left: its last line
    assert ("update", "") in shown  # a closed bar with leave=False: an empty line, not a dead widget
    shown.clear()
    monkeypatch.setenv("WFN_NO_PROGRESS", "1")
    list(training.progress(range(3)))
    assert shown == []


def test_figure_keeps_its_height_during_an_update(model_and_loader):
    import struct

    model, loader = model_and_loader
    ex = DeltaExplorer(model, loader)
    states = []  # (bytes, layout height) at every change of the figure
    ex.figure.observe(lambda ch: states.append((len(ch["new"]), ex.figure.layout.height)), names="value")
    ex.show()
    ex.slider.value = 0.03
    assert len(states) == 2 and all(n > 0 and h == "340px" for n, h in states)  # never emptied, never resized
    width, height = struct.unpack(">II", ex.figure.value[16:24])  # the PNG's header
    assert (width, height) == (900, 340)


def test_controls_keep_readable_labels_and_stable_css_classes(model_and_loader):
    model, loader = model_and_loader
    delta_ex, ad = DeltaExplorer(model, loader), _fast_explorer()
    for slider in (delta_ex.slider, ad.alpha, ad.delta):
        assert slider.style.description_width == "initial" and slider.layout.min_width == "260px"
    assert ad.button.layout.width == "auto" and ad.button.layout.min_width == "160px"
    assert ad.widget.children[0].layout.flex_flow == "row wrap"  # a narrow window wraps the row, never squeezes it
    classes = {w: w._dom_classes for w in (delta_ex.slider, delta_ex.info, delta_ex.figure, ad.alpha, ad.delta,
                                           ad.button, ad.choose_button, ad.bar, ad.info, ad.figure)}
    assert [c[0] for c in classes.values()] == [
        "wfn-delta-slider", "wfn-metrics", "wfn-figure", "wfn-alpha-slider", "wfn-delta-slider", "wfn-run-button",
        "wfn-choose-button", "wfn-run-progress", "wfn-message", "wfn-figure"]
    for box in (delta_ex.widget, ad.widget):  # what a saved notebook shows before the cell runs
        assert "run this cell" in box._repr_mimebundle_()["text/plain"]
