"""The notebook sequence is well-formed (nbval, run by `make test`, executes and compares them)."""

import ast
import json
from pathlib import Path

import pytest

from wfn_core.course.claims import CLAIM_LINE

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["00_quickstart", "01_apot_centres", "02_relative_distance_clustering", "03_regularised_retraining",
            "04_weight_histograms", "05_explore_alpha_delta", "06_compare_baselines", "07_deeper_network"]


def _cells(path):
    return json.loads(path.read_text())["cells"]


def test_the_sequence_is_complete():
    assert [p.stem for p in NOTEBOOKS][: len(EXPECTED)] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_structure(path):
    cells = _cells(path)
    intro = "".join(cells[0]["source"])
    for word in ("Goal", "Assumes", "Time"):
        assert word in intro, f"{path.name} does not open with its {word.lower()}"
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert any(src.startswith("# NBVAL_CHECK_OUTPUT") for src in code), f"{path.name} has no checked cell"
    assert any("check(" in src for src in code), f"{path.name} checks no claims (wfn_core.course.claims.check)"
    assert all(c.get("outputs") or c.get("execution_count") for c in cells if c["cell_type"] == "code"), \
        f"{path.name} is committed without outputs: run `make notebooks`"
    meta = json.loads(path.read_text())["metadata"]
    assert "widgets" not in meta, f"{path.name} holds saved widget state"
    for src in code:  # thin notebooks: logic lives in wfn_core
        n = _logic_lines(src)
        assert n <= 15, f"{path.name}: a cell with {n} lines of logic belongs in wfn_core:\n{src}"


def _logic_lines(src: str) -> int:
    """Lines of a cell's statements, leaving out imports (however they are wrapped), comments, blank lines
    and the first line of each print."""
    statements = set()
    for node in ast.parse(src).body:
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            statements.update(range(node.lineno, node.end_lineno + 1))
    return sum(1 for i, line in enumerate(src.splitlines(), 1)
               if i in statements and line.strip() and not line.lstrip().startswith(("#", "print(")))


def test_every_widget_cell_has_a_plain_twin():
    for path in NOTEBOOKS:
        code = ["".join(c["source"]) for c in _cells(path) if c["cell_type"] == "code"]
        for i, src in enumerate(code):
            if "Explorer(" in src and ".show()" in src:
                assert i + 1 < len(code) and "Explorer(" not in code[i + 1], (
                    f"{path.name}: widget cell {i} has no plain twin")


def _checked_output_lines(cell):
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            yield from "".join(out["text"]).splitlines()
        elif out.get("output_type") == "execute_result" and set(out["data"]) == {"text/plain"} \
                and "".join(out["data"]["text/plain"]).startswith("✓ "):  # an exercise check's Feedback
            yield from "".join(out["data"]["text/plain"]).splitlines()
        else:  # a figure or a repr would be compared by nbval too: keep checked cells to printed claims
            yield f"<{out.get('output_type')} output>"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_checked_cells_print_claims_not_numbers(path):
    """What nbval compares holds on any CPU: every line a checked cell prints is a claim
    ("statement: yes  [measured ...]"), its measured value inside the marker the sanitizer masks, or a passed
    exercise check ("✓ exercise: message"), whose message the exercise tests keep free of measured numbers."""
    for i, cell in enumerate(_cells(path)):
        src = "".join(cell["source"])
        if cell["cell_type"] != "code" or not src.startswith("# NBVAL_CHECK_OUTPUT"):
            continue
        lines = [line for line in _checked_output_lines(cell) if line.strip()]
        assert lines, f"{path.name} cell {i} is checked but printed nothing"
        for line in lines:
            if line.startswith("✓ "):  # a passed exercise check (wfn_core.course.exercises): machine-independent
                continue
            assert CLAIM_LINE.match(line) and line.endswith(("yes", "]")), (
                f"{path.name} cell {i} prints {line!r}: a checked cell prints only claims that hold "
                "(wfn_core.course.claims.check); exact numbers belong in an unchecked cell"
            )


def test_the_sanitizer_masks_the_measured_marker():
    import configparser
    import re

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).with_name("nbval_sanitize.cfg"))
    line = "unique values at most 35: yes  [measured 25]"
    for section in cfg.sections():
        line = re.sub(cfg[section]["regex"], cfg[section]["replace"], line)
    assert line == "unique values at most 35: yes  [measured]"
