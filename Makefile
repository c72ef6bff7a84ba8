# wfn: `make run` (set up + main job), `make test` (set up + all tests), `make lab` (JupyterLab).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.wfn-installed
OUT    ?= runs/digits

.PHONY: setup run test lab clean

setup: $(STAMP)

# (Re)install when the venv is missing or pyproject.toml changed. torch/torchvision are pinned in
# pyproject.toml; pip takes them from this machine's local wheel store.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

run: setup
	$(PY) -m wfn_core evaluate --dataset digits

test: setup
	$(PY) -m pytest -q

lab: setup
	$(VENV)/bin/jupyter lab notebooks

clean:
	rm -rf runs .pytest_cache .hypothesis
