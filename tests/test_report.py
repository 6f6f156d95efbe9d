"""Charts theme and export, frame saving, the report and `kmm reproduce`."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from kmm import results
from kmm.errors import ConfigError, KmmError
from kmm.suite import charts, io
from kmm.suite.charts import alt


def tidy(n: int = 4) -> pl.DataFrame:
    rows = []
    for nodes in range(1, n + 1):
        for seed in (1, 2):
            rows += results.rows_for("t", {"nodes": nodes}, seed,
                                     {"gain": (0.1 * nodes + 0.01 * seed, "fraction")})
    return results.frame(rows)


# ---- charts ---------------------------------------------------------------------------------
def test_theme_is_registered_once_and_active():
    assert alt.theme.active == charts.THEME
    charts.enable_theme()
    charts.enable_theme()
    assert alt.theme.names().count(charts.THEME) == 1
    spec = alt.Chart(pl.DataFrame({"x": [1]})).mark_point().encode(x="x:Q").to_dict()
    assert spec["config"]["range"]["category"] == charts.PALETTE


def test_aggregate_by_hand():
    agg = charts.aggregate(tidy(3), ["nodes"])
    assert agg["nodes"].to_list() == [1, 2, 3]
    assert agg["mean"].to_list() == pytest.approx([0.115, 0.215, 0.315])
    assert agg["min"].to_list() == pytest.approx([0.11, 0.21, 0.31])
    assert agg["count"].to_list() == [2, 2, 2]
    with pytest.raises(ConfigError, match="no column 'nodez'"):
        charts.aggregate(tidy(1), ["nodez"])
    with pytest.raises(ConfigError, match="unknown statistic"):
        charts.aggregate(tidy(1), ["nodes"], stats=["p99"])


def test_save_exports_svg_and_png_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("KMM_DATA_DIR", str(tmp_path))
    chart = alt.Chart(charts.aggregate(tidy(), ["nodes"])).mark_line(point=True).encode(
        x="nodes:Q", y="mean:Q")
    paths = charts.save(chart, "gain", scenario="small")
    assert paths == {"svg": tmp_path / "charts" / "small" / "gain.svg",
                     "png": tmp_path / "charts" / "small" / "gain.png",
                     "vl.json": tmp_path / "charts" / "small" / "gain.vl.json"}
    assert paths["svg"].read_text().startswith("<svg")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in paths["svg"].parent.iterdir()) == ["gain.png", "gain.svg", "gain.vl.json"]
    # no network: a chart that reads a URL is refused, and nothing is written
    with pytest.raises(KmmError, match="not allowed"):
        charts.save(alt.Chart("https://example.com/x.csv").mark_point().encode(x="x:Q"), "net",
                    scenario="small")
    # altair's 5000-row limit holds: aggregate first
    with pytest.raises(KmmError, match="aggregate"):
        charts.save(alt.Chart(pl.DataFrame({"x": range(5001)})).mark_point().encode(x="x:Q"),
                    "big", scenario="small")
    with pytest.raises(ConfigError, match="scenario"):
        charts.save(chart, "gain")
    with pytest.raises(ConfigError, match="plain file name"):
        charts.save(chart, "../escape", scenario="small")
    assert sorted(p.name for p in paths["svg"].parent.iterdir()) == ["gain.png", "gain.svg", "gain.vl.json"]


# ---- frames ---------------------------------------------------------------------------------
def test_save_frame_validates_and_keeps_scenarios_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("KMM_DATA_DIR", str(tmp_path))
    df = tidy()
    p = io.save_frame(df, "demo", "small")
    assert p == tmp_path / "frames" / "small" / "demo.parquet"
    assert io.load_frame("demo", "small").equals(df)
    io.save_frame(df.head(2), "demo", "published")
    assert io.load_frame("demo", "small").height == df.height
    with pytest.raises(KmmError, match="lacks column 'seed'"):
        io.save_frame(df.drop("seed"), "demo", "small")
    with pytest.raises(ConfigError):
        io.save_frame(df, "demo", "../published")
    with pytest.raises(KmmError, match="no such frame"):
        io.load_frame("absent", "small")
    assert sorted(p.name for p in (tmp_path / "frames" / "small").iterdir()) == ["demo.parquet"]


# ---- the report from a data folder (no kernels) ---------------------------------------------
def test_format_value_by_hand():
    from kmm.suite.report import format_value

    assert format_value(0.1234, "fraction") == "+12.3 %"
    assert format_value(300 * 2**20, "bytes") == "300 MiB"
    assert format_value(3, "shootdowns") == "3 shootdowns"
    assert format_value(2.5) == "2.5"
    assert format_value(None) == "-"
    assert format_value({"a": 1, "b": [1, 2]}) == "a=1; b=[1, 2]"
    assert format_value(list(range(10))) == "[0, 1, 2, 3, 4, 5, 6, 7, ...]"


def test_promote_moves_every_file_and_reports_what_was_made(tmp_path):
    from kmm.suite.reproduce import promote

    staging, data = tmp_path / ".staging" / "nb", tmp_path
    for rel in ("claims/published/K1.json", "charts/published/c.svg", "charts/published/c.png",
                "frames/published/f.parquet"):
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_text(rel)
    (data / "claims" / "published").mkdir(parents=True)
    (data / "claims" / "published" / "K1.json").write_text("old")
    made = promote(staging, data)
    assert made == {"claims": ["K1"], "charts": ["c"], "frames": ["f"]}
    assert (data / "claims" / "published" / "K1.json").read_text() == "claims/published/K1.json"
    assert (data / "charts" / "published" / "c.png").is_file() and not staging.exists()


def test_report_links_every_claim_to_its_chart_and_parameters(tmp_path, monkeypatch):
    from kmm.suite import claims, report

    project = tmp_path / "project"
    (project / "params").mkdir(parents=True)
    data = tmp_path / "data"
    monkeypatch.setenv("KMM_DATA_DIR", str(data))
    charts.save(alt.Chart(charts.aggregate(tidy(), ["nodes"])).mark_bar().encode(
        x="nodes:O", y="mean:Q"), "k_gain", scenario="published")
    claims.record("K1", 0.02, explanation="Few kernel misses.", unit="fraction",
                  parameters={"ipi_ns": 900, "nodes": 2}, scenario="published", chart="k_gain")
    claims.record("B5", -0.3, explanation="Small run.", parameters={}, scenario="small")
    (data / "provenance.json").write_text(json.dumps({"notebooks": {
        "k": {"status": "ok", "title": "K notebook", "claims": ["K1"], "charts": ["k_gain"]}}}))
    page, cj, table = report.write(data, project)
    text = page.read_text()
    rows = {r["id"]: r for r in json.loads(cj.read_text())}
    assert len(rows) == 35 and rows["K1"]["notebook"] == "k" and not rows["K1"]["stale"]
    assert rows["K1"]["verdict"] == "not-reproduced" and rows["B5"]["verdict"] == "small run"
    assert 'id="claim-K1"' in text and 'href="#chart-k_gain"' in text and 'id="chart-k_gain"' in text
    assert 'href="#params-k"' in text and 'id="params-k"' in text and 'id="params-K1"' in text
    assert "data:image/svg+xml;base64," in text and "+2.0 %" in text
    # nothing is loaded from the network; the only outside links are the claims' archive links
    assert '<a href="https://lore.kernel.org/all/ZHYCUVa8fzmB4XZV@' in text  # K1's message
    offline = re.sub(r'<a href="https://lore\.kernel\.org/[^"<>]+">', "", text)
    assert "<script" not in offline and 'src="http' not in offline and 'href="http' not in offline
    assert report.summary(table) == {"reproduced": 0, "conditional": 0, "not-reproduced": 1,
                                     "small run": 1, "not-evaluated": 33}
    # the notebook's latest run failed: the old value stays, marked as such
    (data / "provenance.json").write_text(json.dumps({"notebooks": {
        "k": {"status": "failed", "error": "boom", "claims": ["K1"], "charts": ["k_gain"]}}}))
    page, cj, _ = report.write(data, project)
    assert {r["id"]: r for r in json.loads(cj.read_text())}["K1"]["stale"] is True
    assert "the latest run of k failed" in page.read_text()


def test_report_leads_with_verdicts_and_cards_each_claim(tmp_path, monkeypatch):
    """Issue 34 part 1: the verdict figure and table come before any claim card; a card
    draws the sweep against the band and lists only the parameters that flip the verdict;
    a parameter set shared by claims is printed once; a chart's caption says what it plots."""
    from kmm.suite import claims, report

    project = tmp_path / "project"
    (project / "params").mkdir(parents=True)
    data = tmp_path / "data"
    monkeypatch.setenv("KMM_DATA_DIR", str(data))
    charts.save(alt.Chart(charts.aggregate(tidy(), ["nodes"])).mark_bar().encode(
        x="nodes:O", y="mean:Q").properties(title="Gain against nodes"), "k_gain",
        scenario="published")
    params = {"llc_ns": 30.0, "nodes": 2, "cpi_base": 1.0}
    sweep = [{"params": {"llc_ns": v}, "value": 0.05 + v / 1000} for v in (20.0, 45.0)]
    swings = [{"params": {"llc_ns": 45.0}, "value": 0.2}]
    claims.record("K1", 0.08, explanation="Some.", unit="fraction", parameters=params,
                  scenario="published", chart="k_gain", sweep=sweep, swings=swings)
    claims.record("K2", 0.3, explanation="Other.", unit="fraction", parameters=params,
                  scenario="published")
    (data / "provenance.json").write_text(json.dumps({"notebooks": {
        "k": {"status": "ok", "title": "K", "claims": ["K1", "K2"], "charts": ["k_gain"]}}}))
    text = report.write(data, project)[0].read_text()
    assert text.index('id="verdict-summary"') < text.index('id="claims"') < text.index('id="claim-K1"')
    assert '<nav class="toc">' in text and 'href="#mechanism-ktr"' in text
    card = text[text.index('id="claim-K1"'):text.index("</section>", text.index('id="claim-K1"'))]
    assert 'aria-label="sweep of K1 against its band"' in card
    assert card.count("<circle") == 2  # one dot per sweep point
    flips = card[card.index("alone flip the verdict"):]
    assert "<code>llc_ns</code>" in flips and "cpi_base" not in flips
    assert text.count('<details id="params-k"') == 1 and 'id="params-k-2"' not in text
    assert "Gain against nodes" in text[text.index('id="chart-k_gain"'):]
    assert "k_gain.vl.json" in text


# ---- kmm reproduce end to end (starts kernels: about half a minute) --------------------------
ALPHA = """\
from kmm import results
from kmm.suite import charts, claims, io
from kmm.suite.charts import alt
assert gain_scale > 0, "gain_scale must be positive"
df = results.frame(results.rows_for(scenario, {"gain_scale": gain_scale}, 0,
                                    {"gain": (0.1 * gain_scale, "fraction")}))
charts.save(alt.Chart(df).mark_bar().encode(x="value:Q"), "alpha_gain", scenario=scenario)
io.save_frame(df, "alpha", scenario)
claims.record("K1", 0.1 * gain_scale, explanation="Fixture value.", unit="fraction",
              parameters={"gain_scale": gain_scale, "ipi_ns": ipi_ns}, scenario=scenario,
              chart="alpha_gain")
"""
BETA = """\
from kmm.suite import claims
claims.record("B3", 0.03, explanation="Recorded before the failure.", parameters={},
              scenario=scenario)
raise RuntimeError("beta breaks")
"""


def _fixture_project(root: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_params import make_notebook

    repo = Path(__file__).resolve().parents[1]
    make_notebook(root / "notebooks" / "alpha.ipynb",
                  'scenario = "small"\ngain_scale = 0.5\nipi_ns = 1000\n', ALPHA)
    make_notebook(root / "notebooks" / "beta.ipynb", 'scenario = "small"\n', BETA)
    shutil.copy(repo / "notebooks" / "overview.ipynb", root / "notebooks")
    (root / "params").mkdir()
    shutil.copy(repo / "params" / "overview.yaml", root / "params")
    (root / "params" / "alpha.yaml").write_text(
        "notebook: alpha.ipynb\ntitle: Alpha\nparameters:\n"
        "  gain_scale: {value: 1.0, source: fixture}\n"
        "  ipi_ns: {value: 2000, unit: ns, assumed: [500, 5000]}\n")
    (root / "params" / "beta.yaml").write_text("notebook: beta.ipynb\nparameters: {}\n")
    (root / "params" / "broken.yaml").write_text("notebook: beta.ipynb\nparameters: {nodez: 1}\n")


@pytest.mark.slow
def test_reproduce_end_to_end(tmp_path):
    _fixture_project(tmp_path)
    env = {**os.environ, "KMM_DATA_DIR": str(tmp_path / "data")}
    kmm = [sys.executable, "-m", "kmm.suite.cli", "reproduce"]
    r = subprocess.run([*kmm, "--jobs", "2"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 1, r.stderr
    out = r.stdout
    assert "2 of 4 notebooks ran, 2 failed" in out
    assert "failed: notebooks/beta.ipynb: cell [" in out and "RuntimeError: beta breaks" in out
    assert "failed: params/broken.yaml: parameters.nodez: unknown parameter" in out
    assert "report: data/report.html" in out and "Traceback" not in r.stderr
    data = tmp_path / "data"
    assert (data / "claims" / "published" / "K1.json").is_file()
    assert not (data / "claims" / "published" / "B3.json").exists()  # partial run discarded
    assert not (data / ".staging").exists()
    assert (data / "charts" / "published" / "alpha_gain.svg").is_file()
    assert (data / "charts" / "published" / "overview_verdicts.png").is_file()
    assert (data / "frames" / "published" / "alpha.parquet").is_file()
    assert (data / "notebooks" / "alpha.ipynb").is_file()
    assert (data / "notebooks" / "beta.failed.ipynb").is_file()
    rows = {r["id"]: r for r in json.loads((data / "claims.json").read_text())}
    assert rows["K1"]["verdict"] == "reproduced" and rows["K1"]["notebook"] == "alpha"
    assert rows["K1"]["parameters"] == {"gain_scale": 1.0, "ipi_ns": 2000}
    assert rows["B3"]["verdict"] == "not-evaluated"
    html_text = (data / "report.html").read_text()
    assert 'href="#chart-alpha_gain"' in html_text and 'id="chart-overview_verdicts"' in html_text
    assert "assumed</span>, plausible range [500, 5000]" in html_text
    assert "source: fixture" in html_text and "beta breaks" in html_text
    prov = json.loads((data / "provenance.json").read_text())["notebooks"]
    assert prov["alpha"]["status"] == "ok" and prov["beta"]["status"] == "failed"
    assert prov["overview"]["charts"] == ["overview_verdicts"]
    # published as one generation, reached through stable names
    assert os.readlink(data / "current") == "generations/000001"
    assert os.readlink(data / "report.html") == "current/report.html"
    assert "executed copy: data/notebooks/beta.failed.ipynb" in out
    frame_inode = (data / "frames" / "published" / "alpha.parquet").stat().st_ino

    # alpha now fails: its earlier record stays, marked stale; the run exits 1
    (tmp_path / "params" / "alpha.yaml").write_text(
        (tmp_path / "params" / "alpha.yaml").read_text().replace("value: 1.0", "value: -1.0"))
    r = subprocess.run([*kmm, "--only", "alpha"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 1 and "gain_scale must be positive" in r.stdout
    rows = {r["id"]: r for r in json.loads((data / "claims.json").read_text())}
    assert rows["K1"]["stale"] is True and rows["K1"]["verdict"] == "reproduced"
    # the failed run published a new generation; alpha's earlier frame is the same file
    assert os.readlink(data / "current") == "generations/000002"
    assert (data / "frames" / "published" / "alpha.parquet").stat().st_ino == frame_inode
    r = subprocess.run([*kmm, "--only", "nope"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("kmm: error: --only: no params file")
