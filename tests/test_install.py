"""The built wheel works without the repository: installed into a fresh virtual environment outside it,
run from a folder outside it, the quickstart's core calls find the shipped checkpoint and sweep.

The fast test reuses this project's installed packages (torch included) through a ``.pth`` line, so it
installs only the wheel; the slow one installs the oldest torch the package accepts (``torch>=2.13``)
and lets pip resolve the wheel's declared dependencies from the package index, as on a course platform.
"""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The quickstart's core calls, run inside the fresh environment; prints one JSON line for the test to judge.
CORE_CALLS = r"""
import json, sys
import wfn_core
from wfn_core import evaluate, load_pretrained_digits, preset, run_wfn, summary
from wfn_core.course.sweep import choose_setting, read_sweep
from wfn_core.data import digits

model = load_pretrained_digits()  # the shipped checkpoint, SHA-256 checked on load
train, test = digits()
base = evaluate(model, test, device="cpu")
before = summary(model)
# two fixing iterations and no retraining (the fewest epochs the settings allow): cluster, fix, evaluate
config = preset("digits", fractions=(0.5, 1.0), epochs_per_iteration=0)
result = run_wfn(load_pretrained_digits(), train, test, config, device="cpu")
after = summary(result.model)
rows = read_sweep()  # the shipped sweep
chosen = choose_setting(rows)
digits_preset = preset("digits")
print(json.dumps({
    "wfn_core": wfn_core.__file__, "prefix": sys.prefix, "path": sys.path,
    "finders": [type(f).__module__ + "." + type(f).__name__ for f in sys.meta_path],
    "torch": __import__("torch").__version__, "torchvision_imported": "torchvision" in sys.modules,
    "base_top1": base["top1"], "unique_before": before["unique"], "unique_after": after["unique"],
    "iterations": len(result.history), "sweep_rows": len(rows),
    "chosen": [chosen["alpha"], chosen["delta"]], "preset": [digits_preset.alpha, digits_preset.delta],
}))
"""


def _build_wheel(out: Path) -> Path:
    """Build the wheel from a copy of the sources (an in-tree build would write build/ into the repository)."""
    src = out / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "wfn_core", src / "wfn_core", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(out / "dist"), str(src)], check=True)
    (wheel,) = (out / "dist").glob("wfn-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return _build_wheel(tmp_path_factory.mktemp("wheel"))


def _fresh_venv(where: Path) -> Path:
    """An empty virtual environment (no pip: this project's pip installs into it with ``--python``)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    return where / "bin" / "python"


def _pip(python: Path, *args: str) -> None:
    # --no-compile: byte-compiling all of torch at install time is most of an install's time; imports compile
    # only what they load
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-compile", *args],
                   check=True)


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def _run_core_calls(python: Path, cwd: Path) -> dict:
    done = subprocess.run([str(python), "-c", CORE_CALLS], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "WFN_NO_PROGRESS": "1", "HOME": str(cwd)})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _assert_core_calls_worked(out: dict, venv: Path) -> None:
    assert Path(out["wfn_core"]).is_relative_to(venv), f"wfn_core came from {out['wfn_core']}, not {venv}"
    assert not any("editable" in f for f in out["finders"]), out["finders"]
    assert not any(Path(p).resolve() == ROOT for p in out["path"] if p), "the repository is on sys.path"
    assert not out["torchvision_imported"], "the digits core path imported torchvision"
    # the shipped checkpoint scores 98.89 % (356 of 360); the sweep holds 3 alphas x 7 deltas x 3 seeds
    assert out["base_top1"] >= 0.98, out
    assert out["iterations"] == 2 and out["unique_after"] < out["unique_before"] / 100, out
    assert out["sweep_rows"] == 63 and out["chosen"] == out["preset"], out


def _setup_cell() -> str:
    """The notebooks' set-up cell: the first code cell of each, the same in all of them."""
    cells = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        cells.append("".join(code[0]["source"]))
    assert cells and all(c == cells[0] for c in cells), "the notebooks' first code cells differ"
    assert "WFN_PIP_SOURCE" in cells[0] and "pip" in cells[0], cells[0]
    return cells[0]


def test_the_setup_cell_does_nothing_where_wfn_is_installed():
    done = subprocess.run([sys.executable, "-c", _setup_cell()], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "WFN_PIP_SOURCE": "/nonexistent/wheel.whl"})
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done


def test_the_setup_cell_asks_for_a_source_instead_of_guessing_a_package(tmp_path):
    """Without wfn and without WFN_PIP_SOURCE it stops with what to set, and installs nothing."""
    python = _fresh_venv(tmp_path / "venv")
    done = subprocess.run([str(python), "-c", _setup_cell()], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode != 0
    assert "RuntimeError: wfn is not installed here: set WFN_PIP_SOURCE" in done.stderr, done.stderr[-2000:]


def test_wheel_ships_the_checkpoint_and_the_sweep(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for asset in ("digits_cnn.pt", "sweep_alpha_delta.csv", "mnist1d_resnet.pt", "mnist1d_comparison.csv",
                  "mnist1d_wfn_seed0.wfnz"):
        assert f"wfn_core/assets/{asset}" in names, names


@pytest.mark.slow
def test_wheel_runs_the_quickstart_outside_the_repository(wheel, tmp_path):
    assert not tmp_path.resolve().is_relative_to(ROOT)
    venv = tmp_path / "venv"
    python = _fresh_venv(venv)
    _pip(python, "--no-deps", str(wheel))
    # this project's packages (torch, numpy, ...) without reinstalling them: a .pth line adds the folder to
    # sys.path but does not run the .pth files inside it, so the editable install's finder stays out
    ours = Path(sysconfig.get_paths()["purelib"])
    assert ours in map(Path, site.getsitepackages())
    (_site_packages(python) / "wfn_project_packages.pth").write_text(f"{ours}\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    _assert_core_calls_worked(_run_core_calls(python, outside), venv)


@pytest.mark.slow
def test_wheel_installs_beside_the_oldest_torch_it_accepts(wheel, tmp_path):
    """What a course platform does: its torch is already there (here the tested lower bound, 2.13.0, a
    CPU wheel on this machine's disk); the notebooks' set-up cell installs the wheel with its dependencies
    and must keep that torch."""
    began = time.perf_counter()
    venv = tmp_path / "venv"
    python = _fresh_venv(venv)
    _pip(python, "torch==2.13.0", "pip")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    # the notebooks' set-up cell, as Colab runs it: wfn_core is missing, so it pip-installs WFN_PIP_SOURCE
    done = subprocess.run([str(python), "-c", _setup_cell() + "\nimport wfn_core\n"], cwd=outside, text=True,
                          capture_output=True, timeout=900,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(outside), "WFN_PIP_SOURCE": str(wheel)})
    assert done.returncode == 0, done.stderr[-3000:]
    out = _run_core_calls(python, outside)
    assert out["torch"].startswith("2.13"), f"installing the wheel replaced torch 2.13.0 by {out['torch']}"
    _assert_core_calls_worked(out, venv)
    print(f"fresh venv, torch 2.13, the wheel and its dependencies, core calls: {time.perf_counter() - began:.0f} s")
