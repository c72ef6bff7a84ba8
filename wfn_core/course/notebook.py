"""Notebook set-up: fixed seed and thread count (so re-runs reproduce the committed outputs),
a plotting style readable on light and dark themes, and figure saving for ``make run``."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.figure import Figure

from ..training import seed_everything

__all__ = ["setup", "savefig"]


def setup(seed: int = 0, threads: int = 1) -> None:
    """Seed everything, fix torch's thread count, and set the plotting style."""
    seed_everything(seed, threads=threads)
    sns.set_theme(style="whitegrid", context="notebook")
    plt.rcParams.update({"figure.facecolor": "white", "savefig.facecolor": "white", "figure.dpi": 100})


def savefig(fig: Figure, name: str) -> Path | None:
    """Save ``fig`` as ``NAME.png`` under ``$WFN_FIGURES`` when that is set (``make run`` sets it)."""
    folder = os.environ.get("WFN_FIGURES")
    if not folder:
        return None
    path = Path(folder) / f"{name}.png"  # a relative folder is taken from the kernel's working directory
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def execute_notebooks(
    src: str | Path, out: str | Path | None = None, timeout: int = 120
) -> list[dict[str, object]]:
    """Execute every ``NN_*.ipynb`` in ``src`` in order, writing each executed notebook to ``out``
    (or back in place when ``out`` is None), with saved widget state stripped. Returns per-notebook timings:
    ``name``, ``seconds`` and the slowest cell's ``max_cell_seconds``."""
    import time

    import nbformat
    from nbclient import NotebookClient

    from ..io import atomic_write_text
    from ..training import progress

    src = Path(src)
    paths = sorted(src.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no numbered notebooks (NN_*.ipynb) in {src}")
    report = []
    for path in progress(paths, desc="notebooks", leave=True):
        nb = nbformat.read(path, as_version=4)
        began = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(src)}}).execute()
        seconds = time.perf_counter() - began
        nb.metadata.pop("widgets", None)  # saved widget state goes stale across ipywidgets versions
        slowest = 0.0
        for cell in nb.cells:
            timing = cell.get("metadata", {}).get("execution", {})
            start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
            if start and end:
                slowest = max(slowest, (_timestamp(end) - _timestamp(start)).total_seconds())
            cell.get("metadata", {}).pop("execution", None)  # timestamps would churn every commit
        target = (Path(out) / path.name) if out is not None else path
        atomic_write_text(target, nbformat.writes(nb) + "\n")
        report.append({"name": path.name, "seconds": round(seconds, 1), "max_cell_seconds": round(slowest, 1)})
    return report
