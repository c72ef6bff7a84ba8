"""JupyterLab in headless Chromium: a scratch server per session, a Playwright browser, and page helpers.

The server runs from this environment (the venv's own ``jupyter-lab``, started directly so the process id we
hold is the server's), serves a scratch copy of ``notebooks/`` on a free loopback port with a random token,
and reads only scratch config, data, settings and workspace folders, so nothing of the user's leaks in and
nothing in the repository changes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Screenshots of each step land here (runs/ is gitignored).
SHOTS = ROOT / "runs" / "browser"
CHROMIUM = Path(os.environ.get("WFN_CHROMIUM", "/usr/bin/chromium"))
#: Debian's chromium run as root in a container: no sandbox, no GPU, /tmp instead of a small /dev/shm, and
#: nothing that phones home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
INSTALL_HINT = (f"browser tests need Debian's chromium ({CHROMIUM}) and Playwright: `apt-get install chromium` "
                "and `pip install -e .[browser]` (or set WFN_CHROMIUM to a Chromium binary)")
WIDGET_EXTENSION = "@jupyter-widgets/jupyterlab-manager"
#: The newest JupyterLab restores the previous session's tabs and shows a news prompt: both would cover the
#: notebook under test, so the announcements plugin is disabled and the notebook is never windowed (a windowed
#: notebook drops off-screen cells from the page, and the tests look for them).
PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
USER_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
}


#: The suite's measurements (round trips, run times), repeated at the end of the pytest output so that a
#: plain `make test` or `make browser-test` shows them without -s.
MEASURED: list[str] = []


def report(line: str) -> None:
    """Print a measurement and keep it for the end-of-run summary."""
    print("\n" + line)
    MEASURED.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASURED:
        terminalreporter.section("browser tests: measured")
        for line in MEASURED:
            terminalreporter.write_line(line)


def skip_without_browser() -> None:
    """Skip the calling test module when chromium or Playwright is missing; every module skips from this one
    line, so the summary folds the whole suite into one "SKIPPED … how to install" line."""
    if importlib.util.find_spec("playwright") is None or not CHROMIUM.is_file():
        pytest.skip(INSTALL_HINT, allow_module_level=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/browser is a browser test (`-m "not browser"` leaves them out)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab: its base URL, token, served folder and process."""

    url: str
    token: str
    root: Path
    proc: subprocess.Popen
    log: Path

    def api(self, method: str, path: str, tries: int = 20) -> Any:
        """Call the REST API; retried while the server answers 500 (it does while a kernel starts)."""
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        for attempt in range(tries):
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    body = resp.read()
                    return json.loads(body) if body else None
            except urllib.error.HTTPError as exc:
                if exc.code != 500 or attempt == tries - 1:
                    raise
                time.sleep(0.25)
        raise AssertionError("unreachable")

    def page_url(self, notebook: str) -> str:
        """A fresh, empty workspace (so no tab of an earlier test comes back) with ``notebook`` open."""
        return f"{self.url}/lab/workspaces/t{uuid.uuid4().hex[:8]}/tree/{notebook}?reset&token={self.token}"

    def kernels_idle(self) -> bool:
        kernels = self.api("GET", "/api/kernels")
        return bool(kernels) and all(k["execution_state"] == "idle" for k in kernels)

    def page_config(self) -> dict[str, Any]:
        """The page config JupyterLab hands the browser (it names the installed lab extensions)."""
        with urllib.request.urlopen(f"{self.url}/lab?token={self.token}", timeout=10) as resp:
            html = resp.read().decode()
        m = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S)
        assert m, "JupyterLab's page has no jupyter-config-data"
        return json.loads(m.group(1))


def _write_config(scratch: Path) -> dict[str, str]:
    """Scratch config/data/runtime/settings folders; returns the environment that points at them."""
    config, data = scratch / "config", scratch / "data"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
    settings = scratch / "settings"
    for name, values in USER_SETTINGS.items():
        plugin, file = name.rsplit("/", 1)
        (settings / plugin).mkdir(parents=True, exist_ok=True)
        (settings / plugin / file).write_text(json.dumps(values))
    env = {k: v for k, v in os.environ.items()
           if k not in {"JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "WFN_NO_PROGRESS", "CI"}}
    # WFN_NO_PROGRESS and CI switch the progress bars off (training.py): the browser must see them.
    env.update(JUPYTER_CONFIG_DIR=str(config), JUPYTER_DATA_DIR=str(data),
               JUPYTER_RUNTIME_DIR=str(scratch / "runtime"), WFN_CACHE=str(scratch / "cache"),
               IPYTHONDIR=str(scratch / "ipython"), MPLCONFIGDIR=str(scratch / "mpl"),
               JUPYTER_PLATFORM_DIRS="1")
    return env


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server we started, by its own process id: terminate, then kill."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="session")
def playwright_browser() -> Iterator[Any]:
    """Headless Debian chromium through Playwright (the module's top skips the suite when either is missing)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def lab(playwright_browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab serving a scratch copy of notebooks/; stopped by its own process id, also when a test fails."""
    exe = Path(sys.executable).parent / "jupyter-lab"
    if not exe.is_file():
        pytest.fail(f"no {exe}: install the lab extra (`pip install -e .[lab]`, `make setup`)")
    scratch = tmp_path_factory.mktemp("lab")
    root = scratch / "notebooks"
    shutil.copytree(ROOT / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    env = _write_config(scratch)
    port, token = _free_port(), secrets.token_hex(16)
    log = scratch / "jupyter-lab.log"
    args = [str(exe), "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            f"--LabApp.user_settings_dir={scratch / 'settings'}", f"--LabApp.workspaces_dir={scratch / 'ws'}",
            "--LabApp.expose_app_in_browser=True", "--ServerApp.open_browser=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")  # CI runs as root
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Lab(f"http://127.0.0.1:{port}", token, root, proc, log)
    try:
        began = time.perf_counter()
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter-lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                server.api("GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.perf_counter() - began > 60:
                    pytest.fail(f"jupyter-lab did not answer /api/status in 60 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        print(f"\njupyter-lab pid {proc.pid} on {server.url}: up in {time.perf_counter() - began:.1f} s")
        yield server
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def widgets_installed(lab: Lab) -> None:
    """Fail (not skip) with what is wrong when JupyterLab lacks the widget manager: widgets would not render."""
    names = {e.get("name") for e in lab.page_config().get("federated_extensions", [])}
    if WIDGET_EXTENSION not in names:
        pytest.fail(f"JupyterLab ({sys.prefix}) has no {WIDGET_EXTENSION} extension, so every widget would "
                    f"show as text or 'Error displaying widget'; installed: {sorted(n for n in names if n)}. "
                    "Install it: pip install -c constraints.txt jupyterlab_widgets")


@dataclass
class Notebook:
    """One notebook open in a fresh workspace: the page, its visible panel, and what the console said."""

    lab: Lab
    page: Any
    name: str
    context: Any = None
    console: list[str] = field(default_factory=list)
    shots: int = 0

    @property
    def panel(self) -> Any:
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")

    def shot(self, step: str) -> Path:
        """Save a screenshot of this step under runs/browser/."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.shots += 1
        stem = Path(self.name).with_suffix("").as_posix().replace("/", "-")
        path = SHOTS / f"{stem}-{self.shots:02d}-{step}.png"
        self.page.screenshot(path=str(path))
        return path

    def cell(self, text: str) -> Any:
        """The one code cell whose source contains ``text``."""
        found = self.panel.locator(".jp-CodeCell").filter(
            has=self.page.locator(".jp-InputArea", has_text=text))
        found.first.wait_for(state="attached")
        assert found.count() == 1, f"{found.count()} code cells contain {text!r} in {self.name}"
        return found

    def wait_kernel_ready(self, timeout: float = 60) -> None:
        began = time.perf_counter()
        while time.perf_counter() - began < timeout:
            if self.lab.kernels_idle():
                return
            time.sleep(0.25)
        raise AssertionError(f"no idle kernel after {timeout} s for {self.name}: {self.lab.api('GET', '/api/kernels')}")

    def run_all(self, timeout: float = 240) -> float:
        """Run all cells through the Run menu; wait until every code cell has run and the kernel is idle."""
        self.wait_kernel_ready()
        began = time.perf_counter()
        self.page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        self.page.locator(".lm-Menu-item:has(.lm-Menu-itemLabel:text-is('Run All Cells'))").click()
        self.wait_all_ran(timeout)
        return time.perf_counter() - began

    def wait_all_ran(self, timeout: float) -> None:
        prompts = self.panel.locator(".jp-CodeCell .jp-InputPrompt")
        began = time.perf_counter()
        while time.perf_counter() - began < timeout:
            texts = prompts.all_inner_texts()
            if texts and all(re.fullmatch(r"\[\d+\]:", t.strip()) for t in texts) and self.lab.kernels_idle():
                return
            time.sleep(0.5)
        raise AssertionError(f"{self.name} still running after {timeout} s: prompts {prompts.all_inner_texts()}")

    def kernel(self, code: str) -> str:
        """Run ``code`` in this notebook's kernel outside any cell (nothing shows in the notebook); its stdout."""
        return self.page.evaluate(
            """async (code) => {
                const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
                const future = kernel.requestExecute({code, store_history: false});
                let out = '';
                future.onIOPub = (msg) => {
                    if (msg.header.msg_type === 'stream') out += msg.content.text;
                    if (msg.header.msg_type === 'error') out += msg.content.ename + ': ' + msg.content.evalue;
                };
                await future.done;
                return out;
            }""", code)

    def output_texts(self) -> list[str]:
        return self.panel.locator(".jp-OutputArea-output").all_inner_texts()

    def widget_console_errors(self) -> list[str]:
        return [m for m in self.console if re.search(r"widget|ipywidgets|jupyter-widgets|model|comm", m, re.I)]


#: What a widget that did not render shows instead of the control (a model-version mismatch names the model
#: class or its version in "Failed to load model class" / "Could not create a model" / "version" messages).
WIDGET_FAILURE = re.compile(r"Error displaying widget|Loading widget|[VH]Box\(children=|model not found|"
                            r"Failed to load model class|Could not create a? ?model|version mismatch", re.I)


def open_page(browser: Any, lab: Lab, name: str, width: int = 1400, height: int = 1000) -> Notebook:
    """Open ``name`` in a new browser context on a fresh workspace."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    nb = Notebook(lab, page, name, context)
    page.on("console", lambda m: nb.console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: nb.console.append(f"pageerror: {e}"))
    page.set_default_timeout(60_000)
    began = time.perf_counter()
    page.goto(lab.page_url(name))
    nb.panel.locator(".jp-Notebook .jp-Cell").first.wait_for()
    print(f"\nopened {name} in {time.perf_counter() - began:.1f} s")
    return nb


def close(nb: Notebook) -> None:
    """Close the page, then shut down the kernel session it started (the next test starts clean)."""
    nb.context.close()
    for session in nb.lab.api("GET", "/api/sessions"):
        if session["path"] == nb.name:
            nb.lab.api("DELETE", f"/api/sessions/{session['id']}")


#: Installed on an element: samples ``sample(el)`` (a JS function body returning JSON-able data) on every DOM
#: change below it and every 50 ms, keeping each distinct value with its time (performance.now(), ms).
_RECORD_JS = """(el, [key, body]) => {
    const sample = new Function('el', body);
    const log = [];
    let last = null;
    const take = () => {
        const s = JSON.stringify(sample(el));
        if (s !== last) { last = s; log.push({t: performance.now(), s: JSON.parse(s)}); }
    };
    window.__wfnRec = window.__wfnRec || {};
    if (window.__wfnRec[key]) { window.__wfnRec[key].stop(); }
    const obs = new MutationObserver(take);
    obs.observe(el, {subtree: true, childList: true, attributes: true, characterData: true});
    const timer = setInterval(take, 50);
    window.__wfnRec[key] = {log, stop: () => { obs.disconnect(); clearInterval(timer); }};
    take();
}"""


def record(locator: Any, key: str, body: str) -> None:
    """Start recording what ``body`` (JS, ``el`` is the element) returns under ``locator``, as it changes."""
    locator.evaluate(_RECORD_JS, [key, body])


def recorded(page: Any, key: str) -> list[dict[str, Any]]:
    """The distinct samples so far: ``[{"t": ms, "s": sample}, ...]``."""
    return page.evaluate("(key) => window.__wfnRec[key].log", key)


def now_ms(page: Any) -> float:
    return page.evaluate("performance.now()")
