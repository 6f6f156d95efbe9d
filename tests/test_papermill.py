"""papermill habits: -p key value, params files refused by papermill, kmm params export."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kmm.errors import ConfigError
from kmm.suite import cli, params, paramscmd

ROOT = Path(__file__).resolve().parents[1]
PARAMS = sorted((ROOT / "params").glob("*.yaml"))


def kmm(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "KMM_PROGRESS": "off", **env}
    return subprocess.run([sys.executable, "-m", "kmm", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=300)


# ---- -p key value ---------------------------------------------------------------------------
def overrides(*argv: str) -> dict:
    args = cli.build_parser(["run"]).parse_args(["run", "ktr", *argv])
    return cli._parse_overrides(args.param or [])


def test_p_takes_papermills_form_and_kmms():
    assert overrides("-p", "nodes", "4", "-p", "remote_ratio=2.5", "-p", "x", "-1.5") == \
        {"nodes": 4, "remote_ratio": 2.5, "x": -1.5}
    assert overrides("-p", "w", "a b", "-p", "l", "[1, 2]") == {"w": "a b", "l": [1, 2]}
    assert overrides("-p", "eq", "a=b") == {"eq": "a=b"}  # the value may hold '='


@pytest.mark.parametrize("argv, where", [
    (["-p", "nodes"], "-p nodes: expected key=value or key value"),
    (["-p", "a=1", "2"], "-p a=1 2: expected key=value or key value"),
    (["-p", "a", "1", "2"], "-p a 1 2: expected"),
    (["-p", "no-de", "1"], "-p no-de: the key must be a parameter name"),
    (["-p", "nodes", "1", "-p", "nodes=2"], "-p nodes: given twice"),
])
def test_p_mistakes_are_named(argv, where):
    with pytest.raises(ConfigError) as e:
        overrides(*argv)
    assert e.value.line().startswith(where)


def test_both_forms_run_the_same_scenario():
    def plan(*argv):
        args = cli.build_parser(["run"]).parse_args(["run", "ktr", *argv])
        return cli.plan_run(args, ROOT)[1:]

    assert plan("-p", "remote_ratio", "2.5", "-p", "seed", "3") == \
        plan("-p", "remote_ratio=2.5", "-p", "seed=3")


# ---- a params file given to papermill is refused ---------------------------------------------
def test_refuse_params_file_by_hand():
    params.refuse_params_file({"nodes": 2, "scenario": "small", "__name__": "__main__"}, "ktr")
    structured = yaml.safe_load((ROOT / "params" / "ktr.yaml").read_text())
    with pytest.raises(ConfigError, match=r"kmm params export ktr") as e:
        params.refuse_params_file({"nodes": 2, **structured}, "ktr")
    assert "(expected_seconds, grids, notebook, parameters, title, variants)" in e.value.message
    with pytest.raises(ConfigError):
        params.refuse_params_file({"notebook": "ktr.ipynb"}, "ktr")


@pytest.mark.slow
def test_papermill_refuses_a_params_file_and_runs_the_exported_one(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KMM_DATA_DIR": str(tmp_path / "data")}
    pm = [sys.executable, "-m", "papermill", "notebooks/overview.ipynb"]
    r = subprocess.run([*pm, str(tmp_path / "a.ipynb"), "-f", "params/overview.yaml"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "papermill was given a kmm params file" in r.stderr
    assert "kmm params export overview" in r.stderr
    assert not (tmp_path / "data" / "claims").exists()  # stopped before any result

    flat = tmp_path / "overview.params.yaml"
    assert kmm("params", "export", "overview", "--out", str(flat)).returncode == 0
    r = subprocess.run([*pm, str(tmp_path / "b.ipynb"), "-f", str(flat)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    nb = json.loads((tmp_path / "b.ipynb").read_text())
    assert nb["metadata"]["papermill"]["parameters"] == {"mechanisms": [],
                                                         "scenario": "published"}


# ---- kmm params export ----------------------------------------------------------------------
def scenarios():
    for path in PARAMS:
        yield path.stem, None
        for v in params.load(path).variants:
            yield path.stem, v


@pytest.mark.parametrize("stem, variant", list(scenarios()),
                         ids=lambda x: str(x) if x else "published")
def test_export_is_what_kmm_run_would_inject(stem, variant):
    values, label = paramscmd.flat_parameters(ROOT / "params" / f"{stem}.yaml", variant)
    argv = ["run", stem, "--params", f"params/{stem}.yaml"] + (["--variant", variant] if variant
                                                              else [])
    _, planned, planned_label = cli.plan_run(cli.build_parser(argv).parse_args(argv), ROOT)
    assert (values, label) == (planned, planned_label)
    text = paramscmd.render(values, "header")
    assert text.startswith("# header\n")
    assert yaml.safe_load(text) == values  # as papermill reads it
    assert params.safe_load(text, "export") == values


def test_export_to_stdout_and_to_a_file(tmp_path):
    r = kmm("params", "export", "ktr", "--variant", "no_migration")
    assert r.returncode == 0, r.stderr
    values = yaml.safe_load(r.stdout)
    assert values["scenario"] == "no_migration"
    assert "# papermill parameters: variant no_migration of params/ktr.yaml" in r.stdout
    out = tmp_path / "ktr.yaml"
    r = kmm("params", "export", "ktr", "--variant", "no_migration", "--out", str(out))
    assert r.returncode == 0 and yaml.safe_load(out.read_text()) == values


@pytest.mark.parametrize("argv, message", [
    (["params", "export", "nope"], "kmm: error: STEM: no params file params/nope.yaml"),
    (["params", "export", "ktr", "--variant", "four_nodes"],
     "kmm: error: params/ktr.yaml: unknown variant 'four_nodes'"),
    (["params", "export", "ktr", "--out", "."], "kmm: error: --out .: is a folder"),
    (["params", "export", "ktr", "--out", "absent/x.yaml"],
     "kmm: error: --out absent/x.yaml: its folder does not exist"),
    (["params", "export", "../ktr"], "kmm: error: params export: argument STEM"),
    (["params"], "kmm: error: params: the following arguments are required"),
])
def test_export_mistakes_are_one_line(argv, message):
    r = kmm(*argv)
    assert r.returncode == 2 and r.stderr.startswith(message), r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stdout == ""
