"""Charts theme and export, frame saving, the report and `kmm reproduce`."""
import json
import os
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
                     "png": tmp_path / "charts" / "small" / "gain.png"}
    assert paths["svg"].read_text().startswith("<svg")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in paths["svg"].parent.iterdir()) == ["gain.png", "gain.svg"]
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
    assert sorted(p.name for p in paths["svg"].parent.iterdir()) == ["gain.png", "gain.svg"]


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
