"""The user guide ships with the package: readable through wfn_core.guide, and inside the built wheel."""

import dataclasses
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from wfn_core.config import WFNConfig
from wfn_core.guide import user_guide

ROOT = Path(__file__).resolve().parent.parent


def test_user_guide_names_every_setting():
    text = user_guide()
    assert text.startswith("# wfn: settings, metrics")
    missing = [f.name for f in dataclasses.fields(WFNConfig) if f"`{f.name}`" not in text]
    assert not missing, f"the user guide does not describe {missing}"
    for metric in ("unique_nonzero", "entropy_bits_nonzero", "power_of_two_share", "bound_bytes", "2210.13554"):
        assert metric in text


@pytest.mark.slow
def test_wheel_ships_the_guide_and_every_subpackage(tmp_path):
    # Built from a copy of the project files, so that setuptools' build/ and egg-info folders land in
    # tmp_path and not in the working tree. Offline: setuptools comes from this environment.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "wfn_core", source / "wfn_core", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    began = time.perf_counter()
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path / "dist")],
        cwd=source, capture_output=True, text=True,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    print(f"wheel built in {time.perf_counter() - began:.1f} s")
    (wheel,) = (tmp_path / "dist").glob("wfn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in ("wfn_core/docs/settings_and_metrics.md", "wfn_core/guide.py", "wfn_core/_validation.py",
                 "wfn_core/course/widgets.py", "wfn_core/compare/export.py"):
        assert path in names, f"{path} is not in {wheel.name}"
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("wfn_core/docs/settings_and_metrics.md").decode("utf-8")
    assert shipped == user_guide()
