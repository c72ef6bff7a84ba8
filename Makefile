# wfn: `make run` (set up + main job), `make test` (set up + all tests), `make lab` (JupyterLab),
# `make browser-test` (only the browser tests: JupyterLab in headless chromium).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.wfn-installed
OUT    ?= runs/notebooks
NBVAL  := --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: setup run test browser-test lab notebooks clean

setup: $(STAMP)

# (Re)install when the venv is missing or pyproject.toml or constraints.txt changed. The package asks only
# for torch>=2.13 (so a course platform keeps its torch); this repository runs on the exact releases the
# committed outputs were measured on, pinned in constraints.txt. pip takes them from the local wheel store.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[vision,lab,test,browser]"
	touch $(STAMP)

# The main job: execute the notebook sequence on the embedded default into $(OUT).
run: setup
	mkdir -p $(OUT)
	WFN_FIGURES=$(abspath $(OUT))/figures $(PY) -m wfn_core notebooks --src notebooks --out $(OUT)

# Lint first (ruff, configured in pyproject.toml), then the tests. Progress bars off, as when the committed
# notebook outputs were made (nbval compares them); tests/browser/ runs its JupyterLab with them on, since it
# checks that they render (it needs Debian's chromium, else it is skipped with one line). The notebooks
# run a second time with no vector kernels (ATEN_CPU_CAPABILITY=default): another kind of CPU trains a
# slightly different network, and the checked claims must hold there too.
test: setup
	$(VENV)/bin/ruff check .
	WFN_NO_PROGRESS=1 $(PY) -m pytest -q $(NBVAL) tests notebooks
	WFN_NO_PROGRESS=1 ATEN_CPU_CAPABILITY=default $(PY) -m pytest -q -p no:cacheprovider $(NBVAL) notebooks

# Only the browser tests: JupyterLab on a scratch copy of notebooks/, driven in headless chromium through
# Playwright; screenshots of each step go to runs/browser/.
browser-test: setup
	$(PY) -m pytest -q tests/browser

# Maintainers: re-execute the committed notebooks in place after changing code they use
# (progress bars off, so the committed outputs hold only results).
notebooks: setup
	WFN_NO_PROGRESS=1 $(PY) -m wfn_core notebooks --src notebooks

lab: setup
	$(VENV)/bin/jupyter lab notebooks

clean:
	rm -rf runs .pytest_cache .hypothesis
