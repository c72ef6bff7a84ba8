"""The student version of the notebooks: solutions out, predict-then-run answers hidden, outputs cleared.

The committed notebooks are the instructor's version: each exercise's solution sits between nbgrader's
markers, so the notebooks run (and pass nbval) as they are::

    def relative_distance(w, c):
        ### BEGIN SOLUTION
        return (w - c).abs() / w.abs()
        ### END SOLUTION

:func:`make_student_version` replaces everything from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` with
``raise NotImplementedError()`` at the marker's indentation (nbgrader's own convention, so an nbgrader course
can take the same notebooks from there), replaces the text of every markdown cell tagged ``answer`` (the
revealed answer of a "predict, then run" question) with a prompt to compare, and clears every output, so a
student sees neither the solutions nor what they print.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .._validation import fail
from ..io import atomic_write_text

__all__ = ["BEGIN", "END", "ANSWER_TAG", "HIDDEN_ANSWER", "Exercise", "strip_solutions", "make_student_version",
           "list_exercises"]

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
#: Cell tag of a markdown cell that reveals a predict-then-run answer.
ANSWER_TAG = "answer"
HIDDEN_ANSWER = ("**Answer.** *Hidden in the student version: run the cell above and compare what it shows "
                 "with your prediction.*")
_TITLE = re.compile(r"^#{2,4}\s*(Exercise\s+\S+?:?\s.*?)\s*$", re.M)


@dataclass(frozen=True)
class Exercise:
    """One exercise of a notebook: its title (from the markdown cell before it) and the solution cell's index."""

    notebook: str
    title: str
    cell: int


def strip_solutions(source: str) -> str:
    """``source`` with every solution region replaced by ``raise NotImplementedError()``.

    Raises a clear error for a ``BEGIN`` without its ``END`` (or the reverse), which would otherwise leave a
    solution in the student's copy."""
    out: list[str] = []
    inside: str | None = None
    for n, line in enumerate(source.splitlines(keepends=True), 1):
        marker = line.strip()
        if marker == BEGIN:
            if inside is not None:
                raise fail("source", f"line {n}: {marker}", f"a {END} before the next {BEGIN}")
            inside = line[: len(line) - len(line.lstrip())]
            out.append(f"{inside}raise NotImplementedError()\n")
        elif marker == END:
            if inside is None:
                raise fail("source", f"line {n}: {marker}", f"a {BEGIN} before it")
            inside = None
        elif inside is None:
            out.append(line)
    if inside is not None:
        raise fail("source", BEGIN, f"closed by a {END} line in the same cell")
    text = "".join(out)
    return text[:-1] if text.endswith("\n") and not source.endswith("\n") else text


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def list_exercises(path: str | Path) -> list[Exercise]:
    """The exercises of one notebook: each code cell holding a solution, titled by the nearest markdown
    ``### Exercise …`` heading above it."""
    path = Path(path)
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    found, title = [], "(untitled exercise)"
    for i, cell in enumerate(cells):
        src = _source(cell)
        if cell["cell_type"] == "markdown":
            m = _TITLE.search(src)
            title = m.group(1) if m else title
        elif any(line.strip() == BEGIN for line in src.splitlines()):
            found.append(Exercise(path.stem, title, i))
    return found


def make_student_version(src: str | Path, out: str | Path) -> list[Path]:
    """Write the student version of every ``NN_*.ipynb`` in ``src`` to ``out`` (created if missing; the
    sources are never changed). Returns the written paths."""
    src, out = Path(src), Path(out)
    paths = sorted(src.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no numbered notebooks (NN_*.ipynb) in {src}")
    if out.resolve() == src.resolve():
        raise fail("out", str(out), "a folder other than the source notebooks' (they keep the solutions)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                cell["source"] = _lines(strip_solutions(_source(cell)))
                cell["outputs"], cell["execution_count"] = [], None
            elif cell["cell_type"] == "markdown" and ANSWER_TAG in cell.get("metadata", {}).get("tags", []):
                cell["source"] = _lines(HIDDEN_ANSWER)
        nb.get("metadata", {}).pop("widgets", None)
        written.append(atomic_write_text(out / path.name, json.dumps(nb, indent=1, ensure_ascii=False) + "\n"))
    return written
