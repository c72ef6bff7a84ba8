"""The student version: solutions out, answers hidden, and each exercise's check fails cleanly with its hint."""

import json
from pathlib import Path

import pytest

from wfn_core._validation import InvalidParameterError
from wfn_core.cli import main
from wfn_core.course.student import (
    BEGIN,
    END,
    HIDDEN_ANSWER,
    list_exercises,
    make_student_version,
    strip_solutions,
)

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
WITH_EXERCISES = ["01_apot_centres", "02_relative_distance_clustering", "03_regularised_retraining",
                  "04_weight_histograms"]


def test_strip_solutions_keeps_the_signature_and_the_indentation():
    src = f"def f(w):\n    \"\"\"doc\"\"\"\n    {BEGIN}\n    y = w * 2\n    return y\n    {END}\n\nprint(1)"
    assert strip_solutions(src) == "def f(w):\n    \"\"\"doc\"\"\"\n    raise NotImplementedError()\n\nprint(1)"


def test_strip_solutions_handles_several_regions_and_leaves_plain_code_alone():
    src = f"def f():\n  {BEGIN}\n  return 1\n  {END}\ndef g():\n        {BEGIN}\n        return 2\n        {END}\n"
    out = strip_solutions(src)
    assert out == "def f():\n  raise NotImplementedError()\ndef g():\n        raise NotImplementedError()\n"
    assert strip_solutions("x = 1\n") == "x = 1\n"


@pytest.mark.parametrize("src", [f"{BEGIN}\nx = 1\n", f"x = 1\n{END}\n", f"{BEGIN}\n{BEGIN}\n{END}\n"])
def test_unbalanced_markers_are_refused_rather_than_leaking_a_solution(src):
    with pytest.raises(InvalidParameterError, match="SOLUTION"):
        strip_solutions(src)


def _notebook(cells):
    return {"cells": cells, "metadata": {"widgets": {"state": {}}}, "nbformat": 4, "nbformat_minor": 5}


def test_make_student_version_clears_outputs_hides_answers_and_leaves_the_source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": ["### Exercise 1.1: double it\n", "Write f."]},
        {"cell_type": "code", "metadata": {}, "execution_count": 3, "outputs": [{"output_type": "stream",
         "name": "stdout", "text": ["42\n"]}], "source": ["def f(w):\n", f"    {BEGIN}\n", "    return 2 * w\n",
                                                          f"    {END}\n"]},
        {"cell_type": "markdown", "metadata": {"tags": ["answer"]}, "source": ["**Answer.** It doubles."]},
        {"cell_type": "markdown", "metadata": {}, "source": ["**Answer.** untagged stays"]},
    ]
    original = json.dumps(_notebook(cells), indent=1)
    (src / "01_x.ipynb").write_text(original)
    (src / "notes.ipynb").write_text(original)  # not numbered: not part of the sequence
    [written] = make_student_version(src, tmp_path / "out")
    nb = json.loads(written.read_text())
    code = nb["cells"][1]
    assert "".join(code["source"]) == "def f(w):\n    raise NotImplementedError()\n"
    assert code["outputs"] == [] and code["execution_count"] is None
    assert "".join(nb["cells"][2]["source"]) == HIDDEN_ANSWER
    assert "".join(nb["cells"][3]["source"]) == "**Answer.** untagged stays"
    assert "widgets" not in nb["metadata"]
    assert (src / "01_x.ipynb").read_text() == original
    assert [(e.title, e.cell) for e in list_exercises(src / "01_x.ipynb")] == [("Exercise 1.1: double it", 1)]
    assert list_exercises(written) == []  # the solutions are gone


def test_the_student_version_never_overwrites_the_instructor_version(tmp_path):
    (tmp_path / "01_x.ipynb").write_text(json.dumps(_notebook([])))
    with pytest.raises(InvalidParameterError, match="other than the source"):
        make_student_version(tmp_path, tmp_path)
    with pytest.raises(FileNotFoundError, match="NN_"):
        make_student_version(tmp_path / "empty", tmp_path / "out")


def _student_copy(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    assert main(["student", "--src", str(NOTEBOOKS), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    return _student_copy(tmp_path_factory)


def test_cli_lists_the_exercises(tmp_path, capsys):
    assert main(["student", "--src", str(NOTEBOOKS), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in WITH_EXERCISES:
        assert out.count(f"{name}  Exercise") >= 2, f"{name} lists fewer than two exercises:\n{out}"
    assert "student notebooks with" in out


@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_each_notebook_has_exercises_and_a_hidden_predict_then_run_answer(name, student_dir):
    instructor = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]
    student = json.loads((student_dir / f"{name}.ipynb").read_text())["cells"]
    assert len(list_exercises(NOTEBOOKS / f"{name}.ipynb")) >= 2
    text = "".join("".join(c["source"]) for c in student)
    assert BEGIN not in text and END not in text
    answers = [i for i, c in enumerate(instructor) if "answer" in c.get("metadata", {}).get("tags", [])]
    assert answers, f"{name} has no predict-then-run answer cell (markdown tagged 'answer')"
    for i in answers:
        assert "".join(student[i]["source"]) == HIDDEN_ANSWER
        assert any("Predict, then run" in "".join(c["source"]) for c in instructor[:i])


def _text(outputs):
    parts = []
    for o in outputs:
        parts.append("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")))
        if o["output_type"] == "error":
            parts.append(f"{o['ename']}: {o['evalue']}")
    return "".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_a_student_notebook_runs_and_every_check_fails_cleanly_with_its_hint(name, student_dir, monkeypatch):
    """Run top to bottom: no cell may raise (a solution left out must not break later cells), and each
    exercise's check cell says "not implemented yet" with a hint instead of a traceback."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("WFN_NO_PROGRESS", "1")
    path = student_dir / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(student_dir)}}).execute()
    errors = [(i, _text(c.outputs)) for i, c in enumerate(nb.cells)
              if c.cell_type == "code" and any(o["output_type"] == "error" for o in c.outputs)]
    assert not errors, f"{name}: cells raised in the student version: {errors}"
    exercises = list_exercises(NOTEBOOKS / f"{name}.ipynb")  # same cells, solutions still marked
    assert len(exercises) >= 2
    for exercise in exercises:
        checks = [c for c in nb.cells[exercise.cell + 1:] if c.cell_type == "code" and "check_" in c.source]
        assert checks, f"{name}: {exercise.title} has no check cell after it"
        shown = _text(checks[0].outputs)
        assert shown.startswith("✗ ") and "not implemented yet" in shown and "\n  Hint: " in shown, (
            f"{name}: {exercise.title}: the check printed {shown!r}")
