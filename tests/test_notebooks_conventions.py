"""Every notebook and params file follows the suite's conventions (README: Adding a notebook)."""
import ast
import json
import re
from pathlib import Path

import pytest

from kmm.suite import params

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PARAMS = sorted((ROOT / "params").glob("*.y*ml"))
ALLOWED_IMPORTS = {"kmm", "polars", "altair", "numpy"}


def nb_id(p: Path) -> str:
    return p.name


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def source(cell: dict) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def python_of(cell: dict) -> str:
    """The cell's Python, with IPython line magics and shell escapes blanked."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source(cell).splitlines())


def test_there_is_an_overview_with_a_params_file():
    assert ROOT / "notebooks" / "overview.ipynb" in NOTEBOOKS
    assert ROOT / "params" / "overview.yaml" in PARAMS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=nb_id)
def test_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert dirty == [], f"{path.name}: clear the outputs of cells {dirty}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=nb_id)
def test_stored_without_traces_of_a_run(path):
    """Not an executed copy saved over the notebook: no injected cell, no papermill metadata."""
    nb = json.loads(path.read_text())
    injected = [i for i, c in enumerate(nb["cells"])
                if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    assert injected == [], f"{path.name}: remove the injected parameters cells {injected}"
    traced = [i for i, c in enumerate(nb["cells"]) if "papermill" in c.get("metadata", {})]
    assert "papermill" not in nb.get("metadata", {}) and traced == [], \
        f"{path.name}: papermill metadata (cells {traced}): run nbstripout " \
        "(see .pre-commit-config.yaml)"


def _nbstripout_hook() -> dict:
    import yaml

    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [h for repo in config["repos"] for h in repo["hooks"] if h["id"] == "nbstripout"]
    assert len(hooks) == 1, "one nbstripout hook in .pre-commit-config.yaml"
    return hooks[0]


def test_pre_commit_strips_every_notebook():
    hook = _nbstripout_hook()
    files = re.compile(hook["files"])
    assert all(files.search(str(p.relative_to(ROOT))) for p in NOTEBOOKS)
    assert not files.search("tests/data/notebooks/sweep_probe.ipynb")


def test_nbstripout_as_configured_leaves_stored_notebooks_and_cleans_an_executed_copy(tmp_path):
    """The hook's own command: a no-op on every stored notebook; an executed copy comes out
    passing the checks above (except for papermill's injected cell, a cell to delete)."""
    import subprocess
    import sys

    pytest.importorskip("nbstripout")
    hook = _nbstripout_hook()
    copies = []
    for p in NOTEBOOKS:
        copies.append(tmp_path / p.name)
        copies[-1].write_bytes(p.read_bytes())
    dirty = json.loads(NOTEBOOKS[0].read_text())
    for i, cell in enumerate(code_cells(dirty)):
        cell.update(execution_count=i + 1, outputs=[{"output_type": "stream", "name": "stdout",
                                                     "text": "x\n"}])
        cell["metadata"]["papermill"] = {"duration": 1.0}
    dirty["metadata"]["papermill"] = {"parameters": {"scenario": "small"}}
    (tmp_path / "dirty.ipynb").write_text(json.dumps(dirty))
    r = subprocess.run([sys.executable, "-m", "nbstripout", *hook["args"], *map(str, copies),
                        str(tmp_path / "dirty.ipynb")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert [c.read_bytes() for c in copies] == [p.read_bytes() for p in NOTEBOOKS]
    test_stored_without_outputs(tmp_path / "dirty.ipynb")
    test_stored_without_traces_of_a_run(tmp_path / "dirty.ipynb")
    assert [c["id"] for c in json.loads((tmp_path / "dirty.ipynb").read_text())["cells"]] == \
        [c["id"] for c in dirty["cells"]]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=nb_id)
def test_parameters_cell_first_literals_only_small_scenario(path):
    nb = json.loads(path.read_text())
    first = code_cells(nb)[0]
    assert "parameters" in first.get("metadata", {}).get("tags", []), \
        f"{path.name}: the first code cell must be tagged 'parameters'"
    values = params.notebook_parameters(path)  # raises unless literals only
    assert values.get("scenario") == "small", f"{path.name}: parameters cell needs scenario = \"small\""
    tagged = [c for c in code_cells(nb) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: one parameters cell only"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=nb_id)
def test_the_cell_after_parameters_refuses_a_params_file(path):
    """``papermill -f params/<stem>.yaml`` fails instead of silently running the defaults."""
    nb = json.loads(path.read_text())
    cells = code_cells(nb)
    check = python_of(cells[1]) if len(cells) > 1 else ""
    assert f'refuse_params_file(globals(), "{path.stem}")' in check, \
        f"{path.name}: the code cell after the parameters must call " \
        f'kmm.suite.params.refuse_params_file(globals(), "{path.stem}")'


@pytest.mark.parametrize("path", NOTEBOOKS, ids=nb_id)
def test_thin_cells_import_only_kmm_and_define_nothing(path):
    nb = json.loads(path.read_text())
    problems = []
    for i, cell in enumerate(code_cells(nb)):
        if source(cell).lstrip().startswith("%%"):
            problems.append(f"cell {i}: cell magic")
            continue
        tree = ast.parse(python_of(cell))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                problems.append(f"cell {i} line {node.lineno}: defines {node.name!r}")
            elif isinstance(node, ast.Import):
                problems += [f"cell {i} line {node.lineno}: imports {a.name}" for a in node.names
                             if a.name.split(".")[0] not in ALLOWED_IMPORTS]
            elif isinstance(node, ast.ImportFrom):
                if node.level or (node.module or "").split(".")[0] not in ALLOWED_IMPORTS:
                    problems.append(f"cell {i} line {node.lineno}: imports from {node.module}")
    assert problems == [], f"{path.name}: " + "; ".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=nb_id)
def test_markdown_explains_and_results_carry_the_scenario(path):
    nb = json.loads(path.read_text())
    assert any(c["cell_type"] == "markdown" and source(c).strip() for c in nb["cells"]), \
        f"{path.name}: no markdown"
    problems = []
    for i, cell in enumerate(code_cells(nb)):
        for node in ast.walk(ast.parse(python_of(cell))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name = node.func.attr
            kw = {k.arg: k.value for k in node.keywords}
            if name == "record":
                scen = kw.get("scenario")
            elif name == "save_frame":
                scen = kw.get("scenario") or (node.args[2] if len(node.args) > 2 else None)
            elif name == "save" and isinstance(node.func.value, ast.Name) and node.func.value.id == "charts":
                scen = kw.get("scenario")
            else:
                continue
            if not (isinstance(scen, ast.Name) and scen.id == "scenario"):
                problems.append(f"cell {i} line {node.lineno}: {name}(...) must pass scenario=scenario")
    assert problems == [], f"{path.name}: " + "; ".join(problems)


@pytest.mark.parametrize("path", PARAMS, ids=nb_id)
def test_params_file_keys_exist_in_its_notebook(path):
    import yaml

    raw = yaml.safe_load(path.read_text())
    notebook = ROOT / "notebooks" / raw["notebook"]
    assert notebook.is_file(), f"{path.name}: names a missing notebook {raw['notebook']}"
    cell = params.notebook_parameters(notebook)
    keys = set(raw.get("parameters") or {})
    for v in (raw.get("variants") or {}).values():
        keys |= set(v)
    for g in (raw.get("grids") or {}).values():
        keys |= set(g.get("product") or {}) | set(g.get("zip") or {})
    missing = sorted(keys - set(cell))
    assert missing == [], f"{path.name}: not in {notebook.name}'s parameters cell: {missing}"
    params.load(path)  # every other rule: types, ranges, choices, sources of costs


def test_params_stems_match_notebooks():
    for path in PARAMS:
        nb = params.load(path).notebook
        assert nb.stem == path.stem, f"params/{path.name} is for {nb.name}: name it params/{nb.stem}.yaml"


def test_checks_catch_violations(tmp_path):
    """The conventions checks fail on a notebook that breaks them."""
    bad = {"cells": [
        {"cell_type": "code", "metadata": {}, "source": "import os\n", "outputs": [],
         "execution_count": 1},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "bad.ipynb"
    path.write_text(json.dumps(bad))
    for check in (test_stored_without_outputs, test_parameters_cell_first_literals_only_small_scenario,
                  test_the_cell_after_parameters_refuses_a_params_file,
                  test_thin_cells_import_only_kmm_and_define_nothing,
                  test_markdown_explains_and_results_carry_the_scenario):
        with pytest.raises(AssertionError):
            check(path)
    bad["cells"] = [{"cell_type": "markdown", "metadata": {}, "source": "# x"},
                    {"cell_type": "code", "metadata": {"tags": ["parameters"]},
                     "source": 'scenario = "small"', "outputs": [], "execution_count": None},
                    {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                     "source": "def f():\n    pass\nclaims.record('K1', 1, scenario='published')"}]
    bad["cells"][0]["metadata"] = {"tags": ["injected-parameters"]}
    path.write_text(json.dumps(bad))
    with pytest.raises(AssertionError, match="injected parameters"):
        test_stored_without_traces_of_a_run(path)
    bad["cells"][0]["metadata"] = {"tags": []}
    bad["metadata"]["papermill"] = {}
    path.write_text(json.dumps(bad))
    with pytest.raises(AssertionError, match="papermill metadata"):
        test_stored_without_traces_of_a_run(path)
    bad["metadata"] = {}
    path.write_text(json.dumps(bad))
    test_stored_without_traces_of_a_run(path)
    test_stored_without_outputs(path)
    test_parameters_cell_first_literals_only_small_scenario(path)
    with pytest.raises(AssertionError, match="defines 'f'"):
        test_thin_cells_import_only_kmm_and_define_nothing(path)
    with pytest.raises(AssertionError, match=re.escape("record(...) must pass scenario=scenario")):
        test_markdown_explains_and_results_carry_the_scenario(path)
