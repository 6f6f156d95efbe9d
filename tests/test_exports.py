"""Exports a user can reuse (issue 34, part 3): provenance on every output, the claims as
parquet with one type per column, and ``kmm claims`` as text and Markdown with nothing cut."""
import json
import os
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import polars as pl
import pytest

from kmm.suite import claims, cli, io, provenance, report

ROOT = Path(__file__).resolve().parents[1]
KMM = [sys.executable, "-m", "kmm"]


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("KMM_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_stamp_names_code_version_and_parameters():
    s = provenance.stamp({"b": 2, "a": [1, 2]})
    assert set(s) == set(provenance.FIELDS)
    assert s["params_digest"] == provenance.digest({"a": [1, 2], "b": 2})  # key order free
    assert s["params_digest"] != provenance.digest({"a": [1, 2], "b": 3})
    assert len(s["params_digest"]) == 16 and int(s["params_digest"], 16) >= 0
    if (ROOT / ".git").exists() and shutil.which("git"):
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        assert s["git_commit"] == head and isinstance(s["git_dirty"], bool)
    assert "parameters " + s["params_digest"] in provenance.as_text(s)


def test_claim_records_carry_provenance(data):
    rec = claims.record("K1", 0.1, explanation="x.", parameters={"seed": 1, "nodes": 2},
                        scenario="small", unit="fraction")
    on_disk = json.loads((data / "claims" / "small" / "K1.json").read_text())
    assert on_disk["provenance"] == rec["provenance"]
    assert rec["provenance"]["params_digest"] == provenance.digest({"seed": 1, "nodes": 2})


def test_frames_carry_provenance_in_parquet_metadata(data):
    from kmm import results

    df = results.frame(results.rows_for("small", {"nodes": 2}, 1, {"gain": (0.1, "fraction")}))
    path = io.save_frame(df, "demo", "small", {"nodes": 2})
    prov = io.frame_provenance(path)
    assert prov["params_digest"] == provenance.digest({"nodes": 2})
    assert prov["scenario"] == "small" and prov["kmm_version"]
    assert pl.read_parquet(path).equals(df)
    cols = io.frame_columns(path)
    assert set(cols) == set(df.columns) and cols["value"] == "the measured value"
    assert cols["nodes"] == "parameter of the configuration; set on every row"


def _png_chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    out, i = [], 8
    while i < len(png):
        n, kind = struct.unpack(">I4s", png[i:i + 8])
        body = png[i + 8:i + 8 + n]
        (crc,) = struct.unpack(">I", png[i + 8 + n:i + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind  # every chunk intact
        out.append((kind, body))
        i += 12 + n
    return out


def test_charts_carry_provenance_in_every_format(data):
    from kmm.suite import charts
    from kmm.suite.charts import alt

    chart = alt.Chart(pl.DataFrame({"x": [1, 2], "y": [3, 4]})).mark_line().encode(
        x="x:Q", y="y:Q")
    paths = charts.save(chart, "demo", scenario="small")
    assert set(paths) == {"svg", "png", "vl.json"}
    png = paths["png"].read_bytes()
    kinds = [k for k, _ in _png_chunks(png)]
    assert kinds[0] == b"IHDR" and kinds[1] == b"tEXt" and kinds[-1] == b"IEND"
    stamp = json.loads(charts.png_text(png)["kmm.provenance"])
    assert stamp["chart"] == "demo" and stamp["scenario"] == "small"
    svg = paths["svg"].read_text()
    ET.fromstring(svg)  # still well-formed XML
    assert "<!-- kmm provenance: " in svg and '"chart": "demo"' in svg
    spec = json.loads(paths["vl.json"].read_text())
    assert spec["usermeta"]["kmm_provenance"] == stamp
    assert spec["encoding"]["x"]["field"] == "x"  # the chart itself, re-openable


def test_comment_text_cannot_close_a_comment():
    from kmm.suite.charts import _comment_safe

    assert "--" not in _comment_safe("a--b-->c") and "-->" not in _comment_safe("--->")


ROWS = [
    {"id": "K1", "mechanism": "ktr", "statement": "gain | big", "band": "[+6 %, +17 %]",
     "verdict": "reproduced", "value": 0.12, "unit": "fraction", "share_in_band": 0.75,
     "decided_by": ["llc_ns"], "basis": "measured", "rests_on": None, "converged": None,
     "spread": None, "explanation": "why " * 40, "scenario": "published", "chart": "c",
     "cited": "Someone, 2023", "parameters": {"nodes": 2},
     "provenance": {"kmm_version": "0.1.0", "git_commit": "a" * 40, "git_dirty": False,
                    "params_digest": "0123456789abcdef"}},
    {"id": "K5", "mechanism": "ktr", "statement": "bytes", "band": "equal",
     "verdict": "small run", "value": {"model_bytes": list(range(40))}, "unit": "",
     "share_in_band": None, "decided_by": None, "basis": "structural",
     "rests_on": "identity", "converged": False,
     "spread": {"seed": 1, "length": 10, "in_band": True, "replicates": [
         {"seed": 2, "length": 10, "value": 1, "in_band": False}]}, "explanation": "x",
     "scenario": "small", "chart": None, "cited": None, "parameters": {}, "provenance": None},
]


def test_claims_frame_has_one_type_per_column():
    df = claims.frame(ROWS)
    assert df.columns == list(claims.FRAME_COLUMNS)
    assert df["value"].to_list() == [0.12, None]  # a mapping is in value_json only
    assert json.loads(df["value_json"][1]) == {"model_bytes": list(range(40))}
    assert df["decided_by"].to_list() == [["llc_ns"], None]
    assert df["git_commit"].to_list() == ["a" * 40, None]
    assert df.schema["converged"] == pl.Boolean


def test_report_writes_claims_parquet_that_polars_reads(data):
    claims.record("K1", 0.1, explanation="x.", parameters={"nodes": 2}, scenario="published",
                  unit="fraction")
    claims.record("K5", {"formula_bytes": [1, 2], "model_bytes": [1, 2]}, explanation="y.",
                  parameters={"nodes": 2}, scenario="published")
    report.write(data)
    path = data / "claims.parquet"
    df = pl.read_parquet(path)
    assert len(df) == len(json.loads((data / "claims.json").read_text()))
    k1 = df.filter(pl.col("id") == "K1").row(0, named=True)
    assert k1["value"] == 0.1 and k1["params_digest"] == provenance.digest({"nodes": 2})
    meta = pl.read_parquet_metadata(path)
    assert json.loads(meta[io.COLUMNS_KEY]) == claims.FRAME_COLUMNS
    assert "kmm_version" in json.loads(meta[io.PROVENANCE_KEY])


def test_text_and_markdown_exports_cut_nothing():
    text = cli.format_claims_text(ROWS)
    assert "why " * 39 in text and "39]" in text and "..." not in text
    assert "made by:" in text and "a" * 12 in text
    md = cli.format_claims_markdown(ROWS)
    assert "gain \\| big" in md  # a pipe in a field does not split the table
    assert md.splitlines()[0] == "| id | verdict | value | band | decided by |"
    assert "39]" in md and "..." not in md
    assert "### K5: bytes" in md and "not converged (seeds 1, 2 at length 10" in md


def test_claims_scenario_reads_only_that_scenario(data):
    claims.record("K1", 0.1, explanation="pub.", parameters={}, scenario="published")
    claims.record("K2", 0.3, explanation="small.", parameters={}, scenario="small")
    env = {**os.environ, "KMM_DATA_DIR": str(data)}
    run = [*KMM, "claims", "--json", "--scenario", "small"]
    rows = {r["id"]: r for r in json.loads(subprocess.run(run, env=env, capture_output=True,
                                                          text=True, check=True).stdout)}
    assert rows["K2"]["value"] == 0.3 and rows["K1"]["value"] is None
    both = {r["id"]: r for r in claims.table()}
    assert both["K1"]["value"] == 0.1 and both["K2"]["value"] == 0.3
    r = subprocess.run([*KMM, "claims", "--scenario", "../published"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
    r = subprocess.run([*KMM, "claims", "--format", "markdown"], env=env, capture_output=True,
                       text=True, check=True)
    assert r.stdout.startswith("| id | verdict |")
