"""The notebook sequence is well-formed (nbval, run by `make test`, executes and compares them)."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["00_quickstart", "01_apot_centres", "02_relative_distance_clustering", "03_regularised_retraining",
            "04_weight_histograms", "05_explore_alpha_delta", "06_compare_baselines"]


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
    assert any("assert " in src for src in code), f"{path.name} has no assertion cell"
    assert all(c.get("outputs") or c.get("execution_count") for c in cells if c["cell_type"] == "code"), \
        f"{path.name} is committed without outputs: run `make notebooks`"
    meta = json.loads(path.read_text())["metadata"]
    assert "widgets" not in meta, f"{path.name} holds saved widget state"
    for src in code:  # thin notebooks: logic lives in wfn_core
        logic = [line for line in src.splitlines() if line.strip() and not line.lstrip().startswith(("#", "print("))]
        assert len(logic) <= 15, f"{path.name}: a cell with {len(logic)} lines of logic belongs in wfn_core:\n{src}"


def test_every_widget_cell_has_a_plain_twin():
    for path in NOTEBOOKS:
        code = ["".join(c["source"]) for c in _cells(path) if c["cell_type"] == "code"]
        for i, src in enumerate(code):
            if "Explorer(" in src and ".show()" in src:
                assert i + 1 < len(code) and "Explorer(" not in code[i + 1], f"{path.name}: widget cell {i} has no plain twin"
