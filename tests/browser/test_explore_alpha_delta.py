"""05_explore_alpha_delta in JupyterLab: the δ slider and the α × δ explorer, driven as a student would.

The notebook runs once for the module (about a minute and a half here); the tests then act on its widgets in
file order: keyboard moves of the δ slider, its top value, the layout at 1024 px, then the Run button.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import (
    ROOT,
    WIDGET_FAILURE,
    Lab,
    Notebook,
    close,
    now_ms,
    open_page,
    record,
    recorded,
    report,
    skip_without_browser,
)

skip_without_browser()

NB = "05_explore_alpha_delta.ipynb"
DELTA_CELL, ALPHA_CELL = "DeltaExplorer(model", "AlphaDeltaExplorer(SHIPPED_SWEEP)"
#: Samples the δ explorer: its metrics line, the figure shown (the end of its src: a data or blob URL), how
#: many images it holds and its height on the page.
DELTA_SAMPLE = """
    const imgs = el.querySelectorAll('img');
    const src = imgs.length ? imgs[0].getAttribute('src') : '';
    return {info: (el.querySelector('.widget-html-content') || {}).innerText || '',
            img: src.length + ':' + src.slice(-60), n_img: imgs.length,
            height: Math.round(el.getBoundingClientRect().height)};
"""
#: Samples the α × δ explorer: its message, progress bar width (%), button state and figure.
ALPHA_SAMPLE = """
    const bar = el.querySelector('.progress-bar');
    const imgs = el.querySelectorAll('img');
    const src = imgs.length ? imgs[0].getAttribute('src') : '';
    const run = [...el.querySelectorAll('button.widget-button')].find(b => /Run/.test(b.innerText));
    return {info: (el.querySelector('.widget-html-content') || {}).innerText || '',
            bar: bar ? parseFloat(bar.style.width || bar.style.height || '0') : null,
            disabled: run ? run.disabled : null, img: src.length + ':' + src.slice(-60)};
"""
#: Counts the rows of every α × δ explorer in the kernel (the notebook cell keeps no name for it). ``type(o)``,
#: not isinstance: isinstance on a dead weak proxy among gc's objects raises ReferenceError.
COUNT_ROWS = ("import gc\nfrom wfn_core.course.widgets import AlphaDeltaExplorer\n"
              "print('ROWS', [len(o.rows) for o in gc.get_objects() if type(o) is AlphaDeltaExplorer])")


@pytest.fixture(scope="module")
def explorer(playwright_browser: Any, lab: Lab, widgets_installed: None) -> Iterator[Notebook]:
    """05 opened in a fresh workspace with all its cells run through the Run menu."""
    nb = open_page(playwright_browser, lab, NB)
    try:
        seconds = nb.run_all()
        report(f"ran all cells of {NB} in {seconds:.1f} s")
        nb.shot("ran-all")
        yield nb
    finally:
        close(nb)


def _wait_for(page: Any, key: str, done, timeout: float = 60) -> dict[str, Any]:
    """The first recorded sample under ``key`` for which ``done(sample)`` holds."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        for entry in recorded(page, key):
            if done(entry["s"]):
                return entry
        time.sleep(0.05)
    raise AssertionError(f"nothing matched within {timeout} s; recorded: {recorded(page, key)[-5:]}")


def _metrics_delta(info: str) -> float:
    m = re.search(r"δ = ([0-9.eE+-]+)", info)
    assert m, f"no 'δ = …' in the metrics line {info!r}"
    return float(m.group(1))


def _move_delta(nb: Notebook, key: str) -> dict[str, float | str]:
    """Press ``key`` on the δ explorer's focused slider handle; wait for new metrics and figure; times in s."""
    explorer_el = nb.cell(DELTA_CELL).locator(".widget-vbox").first
    record(explorer_el, "delta", DELTA_SAMPLE)
    before = recorded(nb.page, "delta")[-1]["s"]
    handle = explorer_el.locator(".noUi-handle").first
    handle.focus()
    pressed = now_ms(nb.page)
    handle.press(key)
    metrics = _wait_for(nb.page, "delta", lambda s: s["info"] != before["info"])
    figure = _wait_for(nb.page, "delta", lambda s: s["img"] != before["img"] and s["n_img"] > 0)
    return {"before": before["info"], "after": metrics["s"]["info"], "to_metrics": (metrics["t"] - pressed) / 1000,
            "to_figure": (figure["t"] - pressed) / 1000, "value": handle.get_attribute("aria-valuenow") or ""}


def test_every_widget_renders_as_a_control(explorer: Notebook) -> None:
    delta, alpha = explorer.cell(DELTA_CELL), explorer.cell(ALPHA_CELL)
    assert delta.locator(".jp-OutputArea .widget-slider").count() == 1, "the δ explorer has no slider"
    assert delta.locator(".jp-OutputArea .widget-vbox img").count() >= 1, "the δ explorer shows no figure"
    assert "δ =" in delta.locator(".widget-html-content").first.inner_text(), "the δ explorer shows no metrics"
    assert alpha.locator(".jp-OutputArea .widget-slider").count() == 2, "the α × δ explorer lacks its two sliders"
    assert alpha.locator(".jp-OutputArea button.widget-button", has_text="Run").count() == 1, "no Run button"
    assert alpha.locator(".jp-OutputArea .widget-vbox img").count() >= 1, "the α × δ explorer shows no plot"
    assert alpha.locator(".jp-OutputArea .progress-bar").count() == 1, "the α × δ explorer has no progress bar"
    bad = [t[:200] for t in explorer.output_texts() if WIDGET_FAILURE.search(t)]
    assert not bad, f"outputs that show a widget failure after the kernel went idle: {bad}"
    report(f"browser console errors: {explorer.console}")
    assert not explorer.widget_console_errors(), f"widget manager errors: {explorer.widget_console_errors()}"


def test_delta_slider_by_keyboard_updates_metrics_and_figure(explorer: Notebook) -> None:
    seen = []
    for step in ("ArrowRight", "ArrowRight"):
        moved = _move_delta(explorer, step)
        explorer.shot(f"delta-{step}")
        report(f"δ slider {step} to δ = {_metrics_delta(moved['after']):g}: key press to new metrics "
              f"{moved['to_metrics']:.2f} s, to new figure {moved['to_figure']:.2f} s (goal 0.5 s, reported only)")
        assert "Cannot" not in moved["after"], moved["after"]
        assert _metrics_delta(moved["after"]) > _metrics_delta(moved["before"]), moved
        seen.append(_metrics_delta(moved["after"]))
    assert len(set(seen)) == 2, f"two key presses should give two new δ values: {seen}"


def test_delta_plot_stays_on_screen_while_it_updates(explorer: Notebook) -> None:
    """Defect 5: the figure vanished for 0.6–1.1 s on every update and the page below jumped."""
    _move_delta(explorer, "ArrowLeft")
    log = [e["s"] for e in recorded(explorer.page, "delta")]
    assert all(s["n_img"] >= 1 for s in log), f"the δ figure disappeared during the update: {log}"
    heights = [s["height"] for s in log]
    report(f"δ explorer height during the update: {min(heights)}–{max(heights)} px")
    assert max(heights) - min(heights) < 50, f"the δ explorer's height jumped: {heights}"


def test_delta_readout_matches_the_metrics(explorer: Notebook) -> None:
    """Defect 7: the readout said 0.0040 while the metrics said δ = 0.003981."""
    delta = explorer.cell(DELTA_CELL)
    readout = delta.locator(".widget-readout").first.inner_text().strip()
    info = delta.locator(".widget-html-content").first.inner_text()
    assert float(readout) == pytest.approx(_metrics_delta(info), rel=1e-9), (readout, info)


def test_delta_slider_top_value_works(explorer: Notebook) -> None:
    """Defect 1: the top of the slider used to be an invalid δ (a red message under the old plot)."""
    moved = _move_delta(explorer, "End")
    explorer.shot("delta-top")
    handle = explorer.cell(DELTA_CELL).locator(".noUi-handle").first
    assert handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax"), "End did not reach the top"
    assert "Cannot" not in moved["after"], f"the top δ fails: {moved['after']}"
    assert _metrics_delta(moved["after"]) > _metrics_delta(moved["before"])
    report(f"δ slider top (δ = {_metrics_delta(moved['after']):g}): new metrics after {moved['to_metrics']:.2f} s")


def test_explorer_keeps_readable_labels_at_1024_px(explorer: Notebook) -> None:
    """Defect 6: at 1024 px the α × δ sliders shrank to bare handles and the button read "Run …"."""
    page = explorer.page
    size = page.viewport_size
    page.set_viewport_size({"width": 1024, "height": size["height"]})
    try:
        time.sleep(0.5)  # let JupyterLab's layout settle after the resize
        alpha = explorer.cell(ALPHA_CELL)
        alpha.scroll_into_view_if_needed()
        explorer.shot("layout-1024")
        tracks = alpha.locator(".widget-slider .slider-container")
        widths = [box["width"] for box in (tracks.nth(i).bounding_box() for i in range(tracks.count()))]
        report(f"at 1024 px: slider tracks {widths} px")
        assert len(widths) == 2 and min(widths) >= 100, f"the α × δ sliders are bare handles: {widths} px"
        clipped = alpha.locator(".widget-slider .widget-label, .widget-slider .widget-readout, button.widget-button")
        cut = clipped.evaluate_all("els => els.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)")
        assert not cut, f"labels cut off at 1024 px: {cut}"
    finally:
        page.set_viewport_size(size)


def _rows(nb: Notebook) -> list[int]:
    out = nb.kernel(COUNT_ROWS)
    m = re.search(r"ROWS \[([\d, ]*)\]", out)
    assert m, f"could not count the explorer's rows: {out!r}"
    return [int(n) for n in re.findall(r"\d+", m.group(1))]


def _click_run(nb: Notebook, double: bool) -> tuple[list[dict[str, Any]], float]:
    """Click (or double-click) Run; wait until the point is in, the button is back and the kernel idle."""
    alpha = nb.cell(ALPHA_CELL)
    explorer_el = alpha.locator(".widget-vbox").first
    record(explorer_el, "alpha", ALPHA_SAMPLE)
    before = recorded(nb.page, "alpha")[-1]["s"]
    button = alpha.locator("button.widget-button", has_text="Run")
    pressed = now_ms(nb.page)
    if double:
        button.dblclick()
    else:
        button.click()
    done = _wait_for(nb.page, "alpha", lambda s: "top-1" in s["info"] and s["info"] != before["info"]
                     and s["img"] != before["img"] and s["disabled"] is False, timeout=180)
    began = time.perf_counter()
    while not nb.lab.kernels_idle() and time.perf_counter() - began < 180:
        time.sleep(0.2)
    return recorded(nb.page, "alpha"), (done["t"] - pressed) / 1000


def test_run_adds_a_point_and_shows_progress_while_it_trains(explorer: Notebook) -> None:
    """Defect 2: the bar jumped from empty to full at the end, with no feedback for the whole run."""
    rows = _rows(explorer)
    log, seconds = _click_run(explorer, double=False)
    explorer.shot("run-once")
    report(f"Run: click to new point {seconds:.1f} s; progress seen {[e['s']['bar'] for e in log]}")
    assert _rows(explorer) == [n + 1 for n in rows], f"one click should add one point to {rows}"
    final = next(i for i, e in enumerate(log) if "top-1" in e["s"]["info"] and e["s"]["disabled"] is False)
    during = [e["s"]["bar"] for e in log[:final]]
    assert any(b is not None and 0 < b < 100 for b in during), f"no progress shown while training: {during}"


def test_run_ignores_a_second_click_and_clears_the_old_message(explorer: Notebook) -> None:
    """Defect 3: a double click trained the point twice and added it twice; defect 2: the old message stayed."""
    alpha = explorer.cell(ALPHA_CELL).locator(".widget-slider").first.locator(".noUi-handle")
    alpha.focus()
    alpha.press("ArrowRight")  # a point not yet on the curves (the one just run would not run again)
    time.sleep(0.5)
    rows = _rows(explorer)
    log, seconds = _click_run(explorer, double=True)
    time.sleep(1.0)  # a second run, if one was queued, would have started by now
    explorer.shot("run-double-click")
    report(f"Run (double click): click to new point {seconds:.1f} s")
    assert _rows(explorer) == [n + 1 for n in rows], f"a double click should add one point to {rows}"
    old, new = log[0]["s"]["info"], log[-1]["s"]["info"]
    assert any(e["s"]["info"] not in (old, new) for e in log), f"the old message stayed until the result: {old!r}"


def test_unrun_widget_cells_show_no_widget_text(playwright_browser: Any, lab: Lab, widgets_installed: None) -> None:
    """Defect 4: before they are run, widget cells showed `VBox(children=…)` text or widget errors."""
    (lab.root / "pristine").mkdir(exist_ok=True)
    shutil.copy(ROOT / "notebooks" / NB, lab.root / "pristine" / NB)
    nb = open_page(playwright_browser, lab, f"pristine/{NB}")
    try:
        nb.panel.locator(".jp-OutputArea img").first.wait_for()
        time.sleep(1.0)  # widget views render asynchronously after the page
        nb.shot("unrun")
        bad = [t[:200] for t in nb.output_texts() if WIDGET_FAILURE.search(t)]
        assert not bad, f"unrun widget cells show: {bad}"
    finally:
        close(nb)
