"""The study protocol between the mechanisms and the suite (:mod:`kmm.suite.study`), checked
over every study: its defaults are the notebook's parameters cell and fit its params file, its
claims are the registry's, and what ``evaluate`` returns is evidence the suite can record."""
from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest

from kmm.errors import ConfigError
from kmm.suite import claims, params, registry
from kmm.suite.study import Evidence, Study, cached, studies

ROOT = Path(__file__).resolve().parent.parent
STUDIES = studies()


def test_every_notebook_with_claims_has_a_study_and_every_claim_one_study():
    assert set(STUDIES) == {"ktr", "pkvm", "bbml2_structure", "bbml2_perf", "permvmalloc", "asi"}
    owned = [c for s in STUDIES.values() for c in s.claims]
    assert sorted(owned) == sorted(registry.CLAIMS), "each claim belongs to exactly one study"
    for s in STUDIES.values():
        mechs = {registry.CLAIMS[c].mechanism for c in s.claims}
        assert len(mechs) == 1, f"{s.stem}: claims of {mechs}"


@pytest.mark.parametrize("stem", sorted(STUDIES))
def test_defaults_are_the_notebook_parameters_cell(stem):
    study = STUDIES[stem]
    cell = params.notebook_parameters(ROOT / "notebooks" / f"{stem}.ipynb")
    assert cell.pop("scenario") == "small"
    assert list(study.defaults) == list(cell), "same parameters, in the cell's order"
    for k, v in cell.items():
        d = study.defaults[k]
        assert d == v and type(d) is type(v), f"{stem}: {k} is {d!r} here, {v!r} in the cell"


@pytest.mark.parametrize("stem", sorted(STUDIES))
def test_defaults_fit_the_params_file(stem):
    study = STUDIES[stem]
    pf = params.load(ROOT / "params" / f"{stem}.yaml")
    assert set(pf.specs) <= set(study.defaults)
    # the published scenario passes the study's own types and rules, values unchanged
    p = study.params(pf.scenario())
    assert {k: p[k] for k in pf.specs} == pf.scenario()
    # the ranges a study samples are the file's
    declared = pf.assumed()
    assert set(study.assumed) <= set(declared)
    for k, rng in study.assumed.items():
        assert tuple(rng) == tuple(declared[k]), f"{stem}: {k} {rng} here, {declared[k]} in the file"


@pytest.mark.parametrize("stem", sorted(STUDIES))
def test_params_are_typed_strictly(stem):
    study = STUDIES[stem]
    ints = [k for k, v in study.defaults.items() if type(v) is int]
    floats = [k for k, v in study.defaults.items() if type(v) is float and v.is_integer()]
    assert ints
    with pytest.raises(ConfigError, match=ints[0]):
        study.params({ints[0]: 1e5})  # as `-p nodes=1e5` would give it: refused
    with pytest.raises(ConfigError, match=ints[0]):
        study.params({ints[0]: str(study.defaults[ints[0]])})
    if floats:  # an int is a valid float, and comes back as one
        k = floats[0]
        v = study.params({k: int(study.defaults[k])})[k]
        assert v == study.defaults[k] and type(v) is float
    assert study.params() == study.params(dict(study.defaults), scenario="published")


def _charts_saved(stem: str) -> set[str]:
    nb = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())
    out = set()
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "save" and len(node.args) > 1 \
                    and isinstance(node.args[1], ast.Constant):
                out.add(node.args[1].value)
    return out


@pytest.mark.parametrize("stem", sorted(STUDIES))
def test_the_notebook_ends_in_one_call_of_its_study(stem):
    nb = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    last = "".join(code[-1]["source"]).strip()
    tree = ast.parse(last)
    assert len(tree.body) == 1 and last.endswith(".STUDY.finish(p, scenario)"), last
    assert not any("claims.record(" in "".join(c["source"]) for c in code)


@pytest.mark.parametrize("stem", sorted(STUDIES))
def test_contract_evaluate_gives_recordable_evidence_for_every_claim(stem, tmp_path,
                                                                     monkeypatch):
    """The small run (the notebook's defaults): every claim gets a finite value of the shape
    its band reads, a unit, an explanation, a chart the notebook saves and a sweep of
    ``{"params", "value"}`` points, and the suite records it and computes a verdict."""
    study = STUDIES[stem]
    p = study.params()
    ev = study.evaluate(p)
    assert list(ev) == list(study.claims)
    saved = _charts_saved(stem)
    for cid, e in ev.items():
        assert isinstance(e, Evidence)
        assert isinstance(e.unit, str)
        assert isinstance(e.explanation, str) and e.explanation.strip(), cid
        assert e.chart is None or e.chart in saved, f"{cid}: chart {e.chart} is not saved"
        json.dumps(claims._plain(e.value))  # finite and JSON-ready
        for pt in e.sweep:
            assert {"params", "value"} <= set(pt) and isinstance(pt["params"], dict)
            json.dumps(claims._plain(pt["value"]))
        if e.value is None:  # not evaluated where the study cannot measure it: it says why
            assert registry.verdict(cid, {"value": None})[0] == registry.NOT_EVALUATED
            continue
        registry.in_band(cid, e.value)  # the value has the shape the band reads
    monkeypatch.setenv("KMM_DATA_DIR", str(tmp_path))
    recs = study.record(p, "published")
    rows = {r["id"]: r for r in claims.table()}
    for r in recs:
        assert rows[r["id"]]["verdict"] in registry.VERDICTS
        assert rows[r["id"]]["value"] == r["value"]


def test_the_protocol_refuses_missing_or_foreign_evidence():
    s = Study("demo", ("K1", "K2"), {"seed": 1},
              lambda p: {"K1": Evidence(0.1, "fraction", "One.")})
    with pytest.raises(Exception, match="K2"):
        s.evaluate(s.params())
    s = Study("demo", ("K1",), {"seed": 1}, lambda p: {"K1": {"value": 0.1}})
    with pytest.raises(Exception, match="not an Evidence"):
        s.evaluate(s.params())


def test_finish_records_every_claim_and_saves_the_frame(tmp_path, monkeypatch):
    from kmm import results

    monkeypatch.setenv("KMM_DATA_DIR", str(tmp_path))
    s = Study("demo", ("K1",), {"seed": 1, "nodes": 2},
              lambda p: {"K1": Evidence(0.01 * p["nodes"], "fraction", "Grows with nodes.",
                                        "demo_chart")},
              frame=lambda p, scen: results.frame(results.rows_for(
                  scen, {"nodes": p["nodes"]}, p["seed"], {"gain": (0.01, "fraction")})))
    out = s.finish({"nodes": 5, "other": 1}, "published")
    assert out["id"].to_list() == ["K1"]
    rec = json.loads((tmp_path / "claims" / "published" / "K1.json").read_text())
    assert math.isclose(rec["value"], 0.05) and rec["chart"] == "demo_chart"
    assert rec["parameters"] == {"seed": 1, "nodes": 5}
    assert (tmp_path / "frames" / "published" / "demo.parquet").is_file()


def test_cached_shares_one_result_per_arguments():
    calls = []

    @cached(maxsize=2)
    def f(p, k=0):
        calls.append((p["a"], k))
        return [p["a"], k]

    assert f({"a": 1}) is f({"a": 1})
    assert f({"a": 1}, k=1) == [1, 1] and f({"a": 2}) == [2, 0]
    assert len(calls) == 3
    f({"a": 1})  # evicted by the two since: computed again
    assert len(calls) == 4
