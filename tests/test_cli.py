"""The kmm command: every user mistake is one line, exit 2, no traceback, no file written."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kmm.suite import cli

FIXTURES = Path(__file__).parent / "data" / "params_bad"
KMM = [shutil.which("kmm")] if shutil.which("kmm") else [sys.executable, "-m", "kmm.suite.cli"]


@pytest.fixture
def project(tmp_path):
    """A throwaway project: the fixture notebook and params files, nothing else."""
    shutil.copytree(FIXTURES, tmp_path, dirs_exist_ok=True)
    (tmp_path / "afile").write_text("a regular file, not a folder\n")
    return tmp_path


def kmm(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KMM_DATA_DIR": str(project / "data")}
    return subprocess.run([*KMM, *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=120)


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


BAD = {
    "unknown key in params": (["run", "demo", "--params", "params/unknown_key.yaml"],
                              "params/unknown_key.yaml: parameters.nodez: unknown parameter 'nodez'"),
    "unknown -p key": (["run", "demo", "-p", "nodez=3"], "-p nodez: unknown parameter 'nodez'"),
    "wrong type in params": (["run", "demo", "--params", "params/wrong_type.yaml"],
                             "params/wrong_type.yaml: parameters.nodes: must be an integer"),
    "wrong type -p": (["run", "demo", "-p", "nodes=1e5"], "-p nodes: must be an integer"),
    "wrong type -p float": (["run", "demo", "-p", "nodes=2.0"], "-p nodes: must be an integer"),
    "out of range in params": (["run", "demo", "--params", "params/out_of_range.yaml"],
                               "parameters.remote_ratio: must be <= 4.0"),
    "out of range -p": (["run", "demo", "--params", "params/good.yaml", "-p", "nodes=9"],
                        "-p nodes: must be <= 8"),
    "bad choice in params": (["run", "demo", "--params", "params/bad_choice.yaml"],
                             "parameters.workload: must be one of"),
    "bad choice -p": (["run", "demo", "--params", "params/good.yaml", "-p", "workload=web"], "-p workload: must be one of"),
    "cost without source": (["run", "demo", "--params", "params/cost_without_source.yaml"],
                            "parameters.ipi_ns: a cost parameter needs"),
    "missing params file": (["run", "demo", "--params", "params/absent.yaml"],
                            "params/absent.yaml: no such params file"),
    "missing notebook": (["run", "absent"], "absent: no such notebook"),
    "params names a missing notebook": (["run", "demo", "--params", "params/missing_notebook.yaml"],
                                        "params/missing_notebook.yaml: notebook: notebook 'absent.ipynb' not found"),
    "malformed YAML": (["run", "demo", "--params", "params/malformed.yaml"],
                       "params/malformed.yaml: malformed YAML: line"),
    "python object YAML": (["run", "demo", "--params", "params/python_object.yaml"],
                           "is not allowed"),
    "python object -p": (["run", "demo", "-p", "nodes=!!python/object/apply:os.system ['touch pwned']"],
                         "is not allowed"),
    "malformed -p": (["run", "demo", "-p", "nodes=[1"], "-p nodes: malformed YAML"),
    "-p without =": (["run", "demo", "-p", "nodes"], "-p nodes: expected key=value"),
    "unknown variant": (["run", "demo", "--params", "params/good.yaml", "--variant", "eight"],
                        "unknown variant 'eight'"),
    "unwritable --out": (["run", "demo", "--out", "afile/sub"], "--out afile/sub: not writable"),
    "--out is a file": (["run", "demo", "--out", "afile"], "--out afile: exists and is not a folder"),
    "published is reserved": (["run", "demo", "-p", "scenario=published"], "-p scenario: 'published'"),
    "bad --jobs": (["reproduce", "--jobs", "0"], "reproduce: argument --jobs: must be between 1 and 256"),
    "unknown command": (["frobnicate"], "invalid choice"),
    "unknown option": (["run", "demo", "--bogus"], "unrecognized arguments: --bogus"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD))
def test_user_mistakes_are_one_line_exit_2_nothing_written(project, case):
    args, expected = BAD[case]
    before = snapshot(project)
    r = kmm(project, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("kmm: error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stdout == ""
    assert snapshot(project) == before


def test_help_on_every_command():
    for args in ([], ["run"], ["claims"], ["reproduce"]):
        r = subprocess.run([*KMM, *args, "--help"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "usage: kmm" in r.stdout, (args, r.stderr)


def test_claims_json_and_table(project):
    r = kmm(project, "claims", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 35
    for row in rows:
        assert {"id", "value", "band", "verdict", "explanation", "parameters", "basis",
                "rests_on", "converged", "spread", "decided_by"} <= set(row)
    assert {row["verdict"] for row in rows} == {"not-evaluated"}
    r = kmm(project, "claims")
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) == 37 and lines[0].split()[:2] == ["id", "verdict"]


def test_claims_table_formats_recorded_values():
    rows = [{"id": "K1", "verdict": "reproduced", "share_in_band": 0.75, "value": 0.123456,
             "unit": "fraction", "band": "[+6 %, +17 %]", "decided_by": ["llc_ns", "cpi_base"]},
            {"id": "B11", "verdict": "small run", "share_in_band": None,
             "value": {"faults_without_bbml2": 3, "faults_with_bbml2": 0}, "unit": "", "band": "x"}]
    text = cli.format_claims(rows).splitlines()
    assert text[0].split()[:7] == ["id", "verdict", "basis", "converged", "share", "decided", "by"]
    assert text[2].split() == ["K1", "reproduced", "-", "-", "75%", "llc_ns,", "cpi_base",
                               "+12.3", "%", "[+6", "%,", "+17", "%]"]
    assert text[3].startswith("B11  small run") and "faults_without_bbml2=3" in text[3]
    assert "not checked" in text[3]  # no decided_by: no one-at-a-time swing was recorded
    rows[0].update(basis="structural", rests_on="copies times cost", converged=False,
                   spread={"seed": 1, "length": 100, "in_band": True, "min": 0.05, "max": 0.2, "replicates": [
                       {"seed": 2, "length": 100, "value": 0.2, "in_band": True},
                       {"seed": 3, "length": 100, "value": 0.05, "in_band": False},
                       {"seed": 1, "length": 50, "value": 0.1, "in_band": True}]})
    text = cli.format_claims(rows)
    assert text.splitlines()[2].split()[:4] == ["K1", "reproduced", "structural", "no"]
    assert "K1: structural: copies times cost" in text and "not converged (seeds 1, 2, 3 at length 100, and length 50; values +5.0 % to +20.0 %; across the band edge: seed 3 at length 100)" in text


def test_run_label_and_parameters(project, monkeypatch):
    """What `kmm run` would pass to the notebook, without running it."""
    monkeypatch.chdir(project)

    def plan(*argv):
        args = cli.build_parser().parse_args(["run", *argv])
        nb, values, label = cli.plan_run(args, project)
        return values, label, cli.executed_name(nb.stem, label)

    assert plan("demo") == ({"scenario": "small"}, "small", "demo.small.ipynb")
    # a params file that is not the project's own params/demo.yaml is never "published"
    values, label, name = plan("demo", "--params", "params/good.yaml")
    assert values == {"nodes": 2, "remote_ratio": 2.0, "ipi_ns": 2000, "workload": "compute",
                      "scenario": label}
    assert label.startswith("file-good-") and len(label) == len("file-good-") + 8
    assert name == f"demo.{label}.ipynb"
    shutil.copy(project / "params" / "good.yaml", project / "params" / "demo.yaml")
    values, label, name = plan("demo", "--params", "params/demo.yaml")
    assert (label, name, values["scenario"]) == ("published", "demo.ipynb", "published")
    values, label, _ = plan("demo", "--params", "params/good.yaml", "--variant", "four_nodes")
    assert values["nodes"] == 4 and label == "four_nodes" == values["scenario"]
    values, label, _ = plan("demo", "--params", "params/good.yaml", "-p", "remote_ratio=3")
    assert values["remote_ratio"] == 3.0 and label.startswith("custom-") and values["scenario"] == label
    # the same overrides give the same label; different ones a different label
    assert plan("demo", "--params", "params/good.yaml", "-p", "remote_ratio=3")[1] == label
    assert plan("demo", "--params", "params/good.yaml", "-p", "remote_ratio=3.5")[1] != label
    assert plan("demo", "-p", "scenario=mine")[1] == "mine"


@pytest.mark.slow
def test_run_writes_the_executed_copy_and_a_failed_run_exits_1(project):
    shutil.copy(project / "params" / "good.yaml", project / "params" / "demo.yaml")
    r = kmm(project, "run", "demo", "--params", "params/demo.yaml")
    assert r.returncode == 0, r.stderr
    out = project / "data" / "notebooks" / "demo.ipynb"
    assert r.stdout.strip() == "data/notebooks/demo.ipynb" and out.is_file()
    text = json.dumps(json.loads(out.read_text())["cells"][-1]["outputs"])
    assert "published 4.0" in text
    before = out.read_bytes()
    r = kmm(project, "run", "demo", "--params", "params/demo.yaml", "--variant", "syscall")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("kmm: error: notebooks/demo.ipynb: cell [")
    assert "AssertionError: syscall workload not modelled" in lines[-1]
    assert "Traceback" not in r.stderr
    assert out.read_bytes() == before
    assert (project / "data" / "notebooks" / "demo.syscall.failed.ipynb").is_file()
    assert not (project / "data" / "notebooks" / "demo.syscall.ipynb").exists()
    assert not (project / "data" / ".staging").exists()
    assert (project / "data" / "report.html").is_file()  # the published run refreshed it
    prov = json.loads((project / "data" / "provenance.json").read_text())
    assert prov["notebooks"]["demo"]["status"] == "ok"  # the failed run was a variant
