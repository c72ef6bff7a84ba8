"""The set-up files agree with each other and with the README."""

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", req)
    assert m, req
    return _norm(m.group(1)), m.group(2).replace(" ", "")


def test_environment_yml_lists_the_same_packages_as_pyproject():
    deps = dict(_split(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    listed = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("\ndependencies:"):].splitlines():
        m = re.match(r"^\s+-\s+([^\s:#]+)\s*(?:#.*)?$", line)
        if m:  # conda items are bare names (or python=X.Y); pip items carry pins
            name, spec = _split(m.group(1))
            listed[name] = spec
    listed.pop("python", None)
    listed.pop("pip", None)
    both = listed
    assert set(both) == set(deps), (f"only in environment.yml: {set(both) - set(deps)}; "
                                    f"only in pyproject: {set(deps) - set(both)}")
    for name, spec in deps.items():
        assert both[name] == spec, f"{name}: pyproject says {spec!r}, environment.yml says {both[name]!r}"


def test_torch_is_pinned():
    deps = dict(_split(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert deps["torch"] == "==2.14.1"
    assert deps["torchvision"] == "==0.29.1"


def test_readme_opens_with_the_two_commands_and_ci_calls_the_test_one():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has no command block"
    first = [line.split("#", 1)[0].strip() for line in blocks[0].splitlines() if line.split("#", 1)[0].strip()]
    assert first == ["make run", "make test"], first
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines()
                if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))]
    assert commands == ["make test"], commands
