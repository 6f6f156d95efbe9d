"""Charts draw offline in a real JupyterLab, in a real browser (Chromium through playwright).

JupyterLab runs on 127.0.0.1 with a random port and token, with an empty settings, workspace
and config folder of its own. The browser runs a real notebook with Run All, then opens an
executed copy written by ``kmm run``; every chart output must have drawn (a Vega canvas or SVG
with something on it, or the PNG) and no request may have left 127.0.0.1 (``data:`` and
``blob:`` URLs stay in the page). Requests to any other host are refused by the browser and
reported. Screenshots are kept in ``$KMM_TEST_ARTIFACTS`` if set, else in the test's
temporary folder.

Skipped only when Chromium is not installed (``.ci/run`` installs Debian's ``chromium``);
under CI (``CI`` set) a missing browser is a failure.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The notebook run in the browser: five charts (log scales, a facet, tooltips, the uptime
#: view), seconds to run.
NOTEBOOK = "bbml2_structure"
CHARTS = 5
CHROMIUM = next((p for p in (os.environ.get("KMM_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser"), "/usr/bin/chromium") if p
                 and Path(p).is_file()), None)
LOCAL_HOSTS = {"127.0.0.1"}
LOCAL_SCHEMES = {"data", "blob", "about", "chrome-extension", "devtools"}

pytestmark = pytest.mark.slow


def _need_browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed (CI installs Debian's chromium in .ci/run)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                               "(pip install -e \".[test]\")")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    base = os.environ.get("KMM_TEST_ARTIFACTS")
    out = Path(base) / "browser" if base else tmp_path_factory.mktemp("browser-artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1: ``(base_url, token, lab_root, env)``."""
    _need_browser()
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "lab"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb", root / "notebooks")
    settings = tmp / "settings"
    # every cell in the page (no windowing), no news or update checks
    lab_settings = settings / "@jupyterlab"
    _write_json(lab_settings / "notebook-extension" / "tracker.jupyterlab-settings",
                {"windowingMode": "none"})
    _write_json(lab_settings / "apputils-extension" / "notification.jupyterlab-settings",
                {"fetchNews": "false", "checkForUpdates": False})
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "KMM_DATA_DIR": str(tmp / "data"), "JUPYTER_CONFIG_DIR": str(tmp / "config"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "JUPYTER_PLATFORM_DIRS": "1"}
    port, token = _free_port(), secrets.token_hex(16)
    log = open(tmp / "jupyterlab.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
         f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly", "--LabApp.expose_app_in_browser=True"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("JupyterLab did not start:\n"
                                + (tmp / "jupyterlab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield base, token, root, env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    api = _need_browser()
    with api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                               args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


class Page:
    """One browser page on the lab, recording every request that is not to 127.0.0.1."""

    def __init__(self, browser, base: str):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900},
                                           device_scale_factor=1)
        self.outside: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("websocket", lambda ws: self._check(ws.url))
        self.page.set_default_timeout(60_000)
        self.base = base

    def _check(self, url: str) -> bool:
        parts = urlsplit(url)
        local = parts.scheme in LOCAL_SCHEMES or parts.hostname in LOCAL_HOSTS
        if not local:
            self.outside.append(url)
        return local

    def _route(self, route):
        if self._check(route.request.url):
            route.continue_()
        else:
            route.abort()

    def close(self):
        self.context.close()


def _open(page: Page, path: str, token: str):
    p = page.page
    p.goto(f"{page.base}/lab/tree/{path}?reset&token={token}")
    p.wait_for_selector(".jp-Notebook .jp-Cell", state="attached")
    _wait_kernel_idle(p)


def _wait_kernel_idle(p) -> None:
    """Until the open notebook's kernel is connected and idle (the status bar says Idle
    before the kernel is connected, and Run All then asks for a kernel)."""
    p.wait_for_function("""() => {
      const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
      const kernel = w && w.sessionContext && w.sessionContext.session
                     && w.sessionContext.session.kernel;
      return kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
    }""", timeout=90_000)


def _chart_report(p) -> list[dict]:
    """Every chart output of the open notebook: its kind and whether something was drawn."""
    return p.evaluate("""() => {
      const out = [];
      const marks = (c) => {
        try {
          const ctx = c.getContext('2d');
          const d = ctx.getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 0; i < d.length; i += 4) {
            if (d[i + 3] > 0 && (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200)) n++;
          }
          return n;
        } catch (e) { return -1; }
      };
      for (const el of document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')) {
        const find = (sel) => el.matches(sel) ? el : el.querySelector(sel);
        const vega = find('.jp-RenderedVegaLite, .jp-RenderedVega5');
        const image = find('.jp-RenderedImage');
        const img = image && image.querySelector('img');
        if (vega) {
          const canvas = vega.querySelector('canvas');
          const svg = vega.querySelector('svg.marks');
          const error = vega.querySelector('.error, .vega-embed .error');
          out.push({kind: canvas ? 'vega-canvas' : (svg ? 'vega-svg' : 'vega-empty'),
                    width: canvas ? canvas.width : (svg ? svg.clientWidth : 0),
                    height: canvas ? canvas.height : (svg ? svg.clientHeight : 0),
                    marks: canvas ? marks(canvas)
                                  : (svg ? svg.querySelectorAll('path, text').length : 0),
                    text: vega.innerText.slice(0, 200)});
        } else if (img) {
          out.push({kind: 'png', width: img.naturalWidth, height: img.naturalHeight,
                    marks: img.complete && img.naturalWidth > 0 ? 1 : 0, text: ''});
        }
      }
      return out;
    }""")


def _assert_drawn(report: list[dict], where: str, sizes: list[tuple[int, int]] | None = None,
                  charts: int = CHARTS) -> None:
    """``charts`` outputs drew something; with ``sizes`` (of their PNGs), each at that size."""
    assert len(report) == charts, f"{where}: expected {charts} chart outputs, found {report}"
    bad = [r for r in report if r["kind"] == "vega-empty" or r["width"] < 100
           or r["height"] < 50 or r["marks"] < 50 and r["kind"] != "png" or r["marks"] < 1]
    assert bad == [], f"{where}: charts that did not draw: {bad}"
    if sizes is not None:
        assert [(r["width"], r["height"]) for r in report] == sizes, \
            f"{where}: JupyterLab drew charts of other sizes than their PNGs"


def _png_sizes(nb: dict) -> list[tuple[int, int]]:
    from kmm.suite import charts

    return [charts._png_size(base64.b64decode(o["data"]["image/png"]))
            for c in nb["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]


def _errors_in_outputs(p) -> list[str]:
    return p.evaluate("""() => Array.from(document.querySelectorAll(
        '.jp-Notebook .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], '
        + '.jp-Notebook .jp-OutputArea-output.jp-RenderedText[data-mime-type*="error"]'))
        .map(e => e.innerText.slice(0, 300))""")


def test_a_notebook_run_in_jupyterlab_draws_every_chart_offline(lab, browser, artifacts):
    base, token, _, _ = lab
    page = Page(browser, base)
    try:
        p = page.page
        _open(page, f"notebooks/{NOTEBOOK}.ipynb", token)
        p.click(".lm-MenuBar-item:has-text('Run')")
        p.click(".lm-Menu-item[data-command='runmenu:run-all']")
        # every code cell has run: no prompt is empty or busy, and the kernel is idle again
        p.wait_for_function("""() => {
          const prompts = Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'));
          return prompts.length > 0 && prompts.every(e => /\\[\\d+\\]/.test(e.innerText));
        }""", timeout=120_000)
        _wait_kernel_idle(p)
        p.wait_for_timeout(1000)  # vega draws after the output is attached
        report = _chart_report(p)
        p.screenshot(path=str(artifacts / f"{NOTEBOOK}-run-all.png"))
        cell = p.locator(".jp-CodeCell", has=p.locator(".jp-RenderedVega5")).first
        cell.scroll_into_view_if_needed()
        p.screenshot(path=str(artifacts / f"{NOTEBOOK}-first-chart.png"))
        cell.screenshot(path=str(artifacts / f"{NOTEBOOK}-chart-cell.png"))
        assert _errors_in_outputs(p) == []
        _assert_drawn(report, f"{NOTEBOOK}.ipynb after Run All")
        assert page.outside == [], f"requests left 127.0.0.1: {page.outside}"
    finally:
        page.close()


def test_an_executed_copy_from_kmm_run_draws_every_chart_offline(lab, browser, artifacts):
    base, token, root, env = lab
    out = root / "executed"
    run = subprocess.run([sys.executable, "-m", "kmm", "run", NOTEBOOK, "--out", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    copy = out / f"{NOTEBOOK}.small.ipynb"
    nb = json.loads(copy.read_text())
    bundles = [o["data"] for c in nb["cells"] for o in c.get("outputs", [])
               if "application/vnd.vega.v5+json" in o.get("data", {})]
    assert len(bundles) == CHARTS and all("image/png" in d for d in bundles)
    assert not any("text/html" in d for d in bundles)
    page = Page(browser, base)
    try:
        p = page.page
        _open(page, f"executed/{copy.name}", token)
        p.wait_for_timeout(1500)
        report = _chart_report(p)
        p.locator(".jp-RenderedVega5").last.scroll_into_view_if_needed()
        p.screenshot(path=str(artifacts / f"{NOTEBOOK}-executed-copy.png"))
        _assert_drawn(report, f"executed copy {copy.name}", _png_sizes(nb))
        assert page.outside == [], f"requests left 127.0.0.1: {page.outside}"
    finally:
        page.close()


def test_every_kind_of_chart_the_notebooks_use_draws_in_jupyterlab(lab, browser, artifacts):
    """The chart kinds of tests/test_charts.py (facets, layers, concatenation, log scales...),
    stored as the kmm renderer's outputs, draw in JupyterLab's Vega at the PNG's size."""
    import nbformat

    from kmm.suite import charts
    from test_charts import zoo

    base, token, root, _ = lab
    cells = []
    for name, chart in zoo().items():
        data, metadata = charts.mimebundle(chart.to_dict())
        cells += [nbformat.v4.new_markdown_cell(f"### {name}"),
                  nbformat.v4.new_code_cell("chart", execution_count=1, outputs=[
                      nbformat.v4.new_output("display_data", data=data, metadata=metadata)])]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, root / "zoo.ipynb")
    page = Page(browser, base)
    try:
        p = page.page
        _open(page, "zoo.ipynb", token)
        p.wait_for_timeout(1500)
        report = _chart_report(p)
        p.screenshot(path=str(artifacts / "chart-kinds.png"))
        _assert_drawn(report, "chart kinds", _png_sizes(json.loads(nbformat.writes(nb))),
                      charts=len(zoo()))
        assert page.outside == [], f"requests left 127.0.0.1: {page.outside}"
    finally:
        page.close()


def test_the_report_and_a_rendered_notebook_show_offline(lab, browser, artifacts, tmp_path):
    """The claims report (one HTML file) and an executed notebook's HTML rendering
    (:func:`kmm.suite.nbrun.render_html`) load in the browser with nothing fetched from
    outside 127.0.0.1: the verdict figure is drawn and every claim has its card."""
    import nbformat

    from kmm.suite import nbrun, registry

    base, token, root, env = lab
    out = root / "published"
    out.mkdir()
    script = ("from kmm.suite import claims, report\n"
              "claims.record('K1', 0.1, explanation='A hand value.', parameters={'seed': 1},"
              " scenario='published', unit='fraction')\n"
              "claims.record('B2', {'x': 1}, explanation='Wrong shape.', parameters={},"
              " scenario='published')\n"
              f"report.write({str(out)!r})\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={**env, "KMM_DATA_DIR": str(out)})
    assert run.returncode == 0, run.stderr
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "6 * 7", execution_count=1, outputs=[nbformat.v4.new_output(
            "execute_result", data={"text/plain": "42"}, execution_count=1)])])
    nbformat.write(nb, out / "answer.ipynb")
    assert nbrun.render_html(out / "answer.ipynb") == out / "answer.html"
    page = Page(browser, base)
    try:
        p = page.page
        p.goto(f"{base}/files/published/report.html?token={token}")
        p.wait_for_selector("#verdict-summary svg")
        cards = p.locator("section.card").count()
        assert cards == len(registry.CLAIMS)
        box = p.locator("#verdict-summary svg").bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50
        assert "not-evaluated" in p.locator("#claim-B2").inner_text()
        p.screenshot(path=str(artifacts / "report.png"))
        p.goto(f"{base}/files/published/answer.html?token={token}")
        p.wait_for_selector("text=42")
        assert page.outside == [], f"requests left 127.0.0.1: {page.outside}"
    finally:
        page.close()
