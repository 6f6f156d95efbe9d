"""The claims registry: verdicts are computed from values, bands are read only there."""
import json
import re
from pathlib import Path

import pytest

from kmm.suite import claims, registry

ROOT = Path(__file__).resolve().parents[1]


def test_every_claim_of_claims_md_is_registered():
    text = (ROOT.parent / "shared" / "CLAIMS.md")
    ids = set(registry.CLAIMS)
    assert len(ids) == 35
    if text.exists():
        listed = set(re.findall(r"^\| ([KSBPA]\d+) \|", text.read_text(), flags=re.M))
        assert listed == ids


def test_verdicts(tmp_path, monkeypatch):
    monkeypatch.setenv("KMM_DATA_DIR", str(tmp_path))
    claims.record("K1", 0.10, explanation="x.", parameters={"a": 1}, scenario="published")
    claims.record("B3", 0.10, explanation="x.", parameters={}, scenario="published")
    claims.record("K2", 0.2, explanation="x.", parameters={}, scenario="published",
                  sweep=[{"params": {"r": 1}, "value": 0.2}, {"params": {"r": 3}, "value": 0.6}],
                  decided_by="r")
    claims.record("B5", -0.3, explanation="x.", parameters={}, scenario="small")
    claims.record("B11", {"faults_without_bbml2": 3, "faults_with_bbml2": 0},
                  explanation="x.", parameters={}, scenario="published")
    rows = {r["id"]: r for r in claims.table()}
    assert rows["K1"]["verdict"] == registry.REPRODUCED
    assert rows["B3"]["verdict"] == registry.NOT_REPRODUCED
    assert rows["K2"]["verdict"] == registry.CONDITIONAL and rows["K2"]["share_in_band"] == 0.5
    assert rows["B5"]["verdict"] == registry.SMALL_RUN
    assert rows["B11"]["verdict"] == registry.REPRODUCED
    assert rows["A1"]["verdict"] == registry.NOT_EVALUATED
    rec = json.loads((tmp_path / "claims" / "published" / "K1.json").read_text())
    assert "verdict" not in rec  # never stored, always computed


def test_record_refuses_unknown_ids_and_missing_explanations(tmp_path, monkeypatch):
    monkeypatch.setenv("KMM_DATA_DIR", str(tmp_path))
    with pytest.raises(Exception, match="unknown claim"):
        claims.record("Z9", 1, explanation="x", parameters={}, scenario="published")
    with pytest.raises(Exception, match="explanation"):
        claims.record("K1", 1, explanation=" ", parameters={}, scenario="published")


def test_malformed_evidence_is_not_evaluated_not_reproduced():
    rec = {"value": {"wrong_key": 1}, "scenario": "published"}
    assert registry.verdict("B11", rec) == (registry.NOT_EVALUATED, None)


def test_bands_are_read_only_by_the_registry():
    """No model, params file or notebook reads or repeats a band."""
    offenders = []
    for path in list((ROOT / "kmm").rglob("*.py")) + list((ROOT / "params").rglob("*.y*ml")) \
            + list((ROOT / "notebooks").rglob("*.ipynb")):
        if path.name == "registry.py":
            continue
        text = path.read_text()
        for needle in ("_BANDS", "in_band(", "band_text(", "registry._"):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert offenders == [] or offenders == ["kmm/suite/claims.py: band_text("], offenders
    # Numeric band limits must not appear as literals in params or notebooks.
    limits = []
    for cid, band in registry._BANDS.items():
        if isinstance(band, registry._Interval):
            for x in (band.lo, band.hi):
                if x not in (0, 1, float("inf")) and abs(x) < 1e6:
                    limits.append((cid, x))
    for path in list((ROOT / "params").rglob("*.y*ml")) + list((ROOT / "notebooks").rglob("*.ipynb")):
        text = path.read_text()
        for cid, x in limits:
            for lit in {repr(x), f"{x * 100:g} %", f"{x * 100:g}%"}:
                if re.search(r"(?<![\d.])" + re.escape(lit) + r"(?![\d])", text):
                    offenders.append(f"{path.relative_to(ROOT)} repeats {cid}'s band limit {lit}")
    assert offenders in ([], ["kmm/suite/claims.py: band_text("]), offenders
