"""The set-up files agree with each other and with the README."""

import re
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", req)
    assert m, req
    return _norm(m.group(1)), m.group(2).replace(" ", "")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _constraints() -> dict[str, str]:
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / "constraints.txt").read_text().splitlines()]
    return dict(_split(line) for line in lines if line)


def _setup_extras() -> list[str]:
    """The extras `make setup` installs, read from its pip command."""
    m = re.search(r'-c constraints\.txt -e "\.\[([a-z,]+)\]"', (ROOT / "Makefile").read_text())
    assert m, "the Makefile's set-up does not install -e .[extras] with -c constraints.txt"
    return m.group(1).split(",")


def test_environment_yml_lists_what_make_setup_installs():
    """environment.yml = the package's dependencies + the extras `make setup` installs, pinned as constraints.txt."""
    project = _project()
    wanted = dict(_split(d) for d in project["dependencies"])
    for extra in _setup_extras():
        wanted.update(_split(d) for d in project["optional-dependencies"][extra])
    wanted.update(_constraints())
    listed = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("\ndependencies:"):].splitlines():
        m = re.match(r"^\s+-\s+([^\s:#]+)\s*(?:#.*)?$", line)
        if m:  # conda items are bare names (or python=X.Y); pip items carry pins
            name, spec = _split(m.group(1))
            listed[name] = spec
    listed.pop("python", None)
    listed.pop("pip", None)
    assert set(listed) == set(wanted), (f"only in environment.yml: {set(listed) - set(wanted)}; "
                                        f"only in pyproject/constraints: {set(wanted) - set(listed)}")
    for name, spec in wanted.items():
        if name == "torch":  # environment.yml pins what constraints.txt pins; pyproject's bound allows it
            spec = _constraints()["torch"]
        assert listed[name] == spec, f"{name}: expected {spec!r}, environment.yml says {listed[name]!r}"


def test_constraints_pin_torch_exactly_and_the_package_only_bounds_it_below():
    # torch as measured; mnist1d because another release may generate another data set (the shipped fingerprint)
    assert _constraints() == {"torch": "==2.14.1", "torchvision": "==0.29.1", "mnist1d": "==0.0.2.post1"}
    deps = dict(_split(d) for d in _project()["dependencies"])
    assert deps["torch"] == ">=2.13", "the package must accept a course platform's torch (tested lower bound 2.13)"
    assert "torchvision" not in deps, "torchvision belongs to the vision extra: the digits course never imports it"
    extras = _project()["optional-dependencies"]
    assert {_split(d)[0] for d in extras["vision"]} == {"torchvision"}
    everything = [*_project()["dependencies"], *(d for reqs in extras.values() for d in reqs)]
    pinned = [d for d in everything if re.search(r"==|<|~=", d)]
    assert not pinned, f"pins and upper bounds belong in constraints.txt, not the package: {pinned}"
    test_tools = {"pytest", "nbval", "hypothesis", "ruff", "jupyterlab"}
    assert not test_tools & set(deps), f"test tools and JupyterLab are extras: {test_tools & set(deps)}"
    assert set(_setup_extras()) == set(extras), "make setup must install every extra the suite needs"


def test_make_setup_reinstalls_when_the_constraints_change():
    makefile = (ROOT / "Makefile").read_text()
    rule = re.search(r"^\$\(STAMP\):(.*)$", makefile, flags=re.M)
    assert rule and {"pyproject.toml", "constraints.txt"} <= set(rule.group(1).split()), rule


def test_the_shipped_files_are_package_data_and_nothing_reads_data_for_them():
    from wfn_core.course.sweep import SHIPPED_SWEEP
    from wfn_core.models import PRETRAINED_DIGITS_PATH

    package = ROOT / "wfn_core"
    for path in (PRETRAINED_DIGITS_PATH, SHIPPED_SWEEP):
        assert path.is_file() and path.parent == package / "assets", path
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["wfn_core"]
    assert {"assets/*.pt", "assets/*.csv"} <= set(globs), globs
    old = re.compile(r"data/(digits_cnn\.pt|sweep_alpha_delta\.csv)")
    readers = [*package.rglob("*.py"), *package.rglob("*.md"), ROOT / "README.md", ROOT / "data" / "README.md"]
    hits = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in readers for m in old.finditer(p.read_text())]
    assert not hits, f"still pointing at the old data/ paths: {hits}"


def test_the_digits_core_path_does_not_import_torchvision():
    """torchvision is an extra: importing the package and loading the shipped model must not need it."""
    code = ("import sys, wfn_core; wfn_core.load_pretrained_digits(); from wfn_core.data import digits; digits(); "
            "print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


def test_readme_opens_with_the_two_commands_and_ci_calls_the_test_one():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has no command block"
    first = [line.split("#", 1)[0].strip() for line in blocks[0].splitlines() if line.split("#", 1)[0].strip()]
    assert first == ["make run", "make test"], first
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines()
                if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))]
    assert commands[-1] == "make test", f"CI must end with the README's test command: {commands}"
    # the one other step installs Debian's chromium when it is missing, so the browser tests run, not skip
    assert commands[:-1] in ([], ["[ -x /usr/bin/chromium ] || { apt-get update && apt-get install -y chromium; }"]), \
        commands


def test_make_test_runs_the_browser_suite_and_browser_test_only_it():
    """`make test` runs pytest on tests/ (which holds tests/browser/); `make browser-test` runs that suite alone."""
    makefile = (ROOT / "Makefile").read_text()
    test = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, flags=re.M)
    assert test and re.search(r"pytest .* tests( |$)", test.group(1), flags=re.M), test
    browser = re.search(r"^browser-test:.*\n((?:\t.*\n)+)", makefile, flags=re.M)
    assert browser and browser.group(1).split() == ["$(PY)", "-m", "pytest", "-q", "tests/browser"], browser
    assert (ROOT / "tests" / "browser" / "conftest.py").is_file()
    readme = (ROOT / "README.md").read_text()
    assert "make browser-test" in readme, "the README must say how to run only the browser tests"
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    assert any(m.startswith("browser:") for m in markers), markers
