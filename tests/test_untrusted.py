"""Untrusted input: params files, -p values, sweep grids, traces and arguments.

Each is refused with one line ``kmm: error: ...`` and a non-zero exit, never run as code,
never a hang and never a traceback (README, "What kmm guarantees").
"""
import ast
import base64
import gzip
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmm.errors import ConfigError, TraceError
from kmm.suite import nbrun, schema, sweep
from kmm.suite import params as P

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "data" / "params_bad"
KMM = [sys.executable, "-m", "kmm"]


@pytest.fixture
def project(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "p")
    return tmp_path / "p"


def kmm(cwd: Path, *args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "KMM_DATA_DIR": str(cwd / "data"), "KMM_PROGRESS": "off",  # errors only
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([*KMM, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)


def one_line_error(r: subprocess.CompletedProcess, code: int = 2) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("running ")]
    assert len(lines) == 1 and lines[0].startswith("kmm: error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


# ---- 1. values, not code ---------------------------------------------------------------------
def test_the_binary_tag_exploit_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    payload = f'"+str(__import__("os").system("touch {marker}"))+"'
    value = f"[[!!binary {base64.b64encode(payload.encode()).decode()}]]"
    r = kmm(ROOT, "run", "permvmalloc", "-p", f"bg_sweep={value}", "--out", str(tmp_path))
    assert "YAML tag" in one_line_error(r)
    assert not marker.exists() and list(tmp_path.iterdir()) == []


HOSTILE_YAML = {
    "binary": "!!binary aGVsbG8=",
    "set": "!!set {a, b}",
    "omap": "!!omap [a: 1]",
    "pairs": "!!pairs [a: 1]",
    "python object": "!!python/object/apply:os.system ['true']",
    "python name": "!!python/name:os.system",
    "local tag": "!foo 1",
    "explicit str": "!!str 1",
    "timestamp tag": "!!timestamp 2001-12-14",
    "anchor": "[&a 1, 2]",
    "alias": "{a: &x [1], b: *x}",
    "deep": "[" * 40 + "]" * 40,
    "huge int": "1" + "0" * 30,
    "nan": ".nan",
    "inf": "-.inf",
    "int key": "{1: 2}",
    "duplicate key": "{a: 1, a: 2}",
}


@pytest.mark.parametrize("text", HOSTILE_YAML.values(), ids=HOSTILE_YAML.keys())
def test_yaml_beyond_json_is_refused(text):
    with pytest.raises(ConfigError) as e:
        P.parse_cli_value(text, "-p x")
    assert "\n" not in e.value.line()


def test_a_date_stays_a_string_and_json_types_pass():
    assert P.parse_cli_value("2001-12-14", "-p x") == "2001-12-14"
    assert P.parse_cli_value("{<<: {a: 1}}", "-p x") == {"<<": {"a": 1}}  # a key, no merge
    assert P.parse_cli_value("{a: [1, 2.5, null, true, 'x']}", "-p x") == \
        {"a": [1, 2.5, None, True, "x"]}


@pytest.mark.parametrize("value, ok", [
    ([[0.5, 0.25, 32]], True),            # an int element becomes a float
    ([[0.5, "x", 1.0]], False),           # a string inside a list of list of float
    ([0.5, 0.25], False),                 # one level short
    ([[[0.5]]], False),                   # one level too deep
    ([[True, 0.1, 1.0]], False),          # a bool is not a number
    ({"a": 1}, False),
])
def test_nested_values_follow_the_default(value, ok):
    defaults = P.notebook_parameters(ROOT / "notebooks" / "permvmalloc.ipynb")
    schemas = P.notebook_schemas(ROOT / "notebooks" / "permvmalloc.ipynb")
    if ok:
        out = P.check_values({"bg_sweep": value}, defaults, {}, "-p ", schemas=schemas)
        assert out["bg_sweep"] == [[0.5, 0.25, 32.0]] and isinstance(out["bg_sweep"][0][2], float)
    else:
        with pytest.raises(ConfigError):
            P.check_values({"bg_sweep": value}, defaults, {}, "-p ", schemas=schemas)


def test_an_empty_default_needs_an_annotation():
    bare = schema.infer([], "m")
    with pytest.raises(ConfigError, match="no element type"):
        schema.conform(["x"], bare, "-p m")
    assert schema.conform([], bare, "-p m") == []
    nb = ROOT / "notebooks" / "overview.ipynb"
    s = P.notebook_schemas(nb)["mechanisms"]
    assert schema.conform(["ktr"], s, "-p mechanisms") == ["ktr"]
    with pytest.raises(ConfigError):
        schema.conform([1], s, "-p mechanisms")


def _cell_values(source: str) -> dict:
    """The assignments of an injected cell, checking it holds nothing else."""
    tree = ast.parse(source)
    out = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.dump(node)
        assert isinstance(node.targets[0], ast.Name)
        out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**19, 10**19)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True), json_values,
                       max_size=5))
def test_injected_cell_is_only_literals(values):
    values = {k: v for k, v in values.items() if not __import__("keyword").iskeyword(k)}
    source = schema.render_cell(values)
    assert _cell_values(source) == values


_YAML_TOKENS = [*"[]{}:,-!&*|>'\"#%@` \n\t?aZ09._/<=\\é😀", "!!binary ", "!!python/object ",
                "&a ", "*a", "!!set ", "<<: ", ".nan", "1e999", "0x1F", "~", "null", "true",
                "\u2028", "\x00", "- ", ": ", "'", '"', "\\u0000"]
yaml_text = st.lists(st.sampled_from(_YAML_TOKENS) | st.text(max_size=3), max_size=30).map(
    "".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(yaml_text)
def test_random_yaml_is_a_value_or_one_line(text):
    defaults = P.notebook_parameters(ROOT / "notebooks" / "permvmalloc.ipynb")
    schemas = P.notebook_schemas(ROOT / "notebooks" / "permvmalloc.ipynb")
    for key in ("bg_sweep", "cpus", "scenario"):
        if key not in defaults:
            continue
        try:
            value = P.parse_cli_value(text, f"-p {key}")
            checked = P.check_values({key: value}, defaults, {}, "-p ", schemas=schemas)
        except ConfigError as e:
            assert "\n" not in e.line() and "\r" not in e.line()
            continue
        source = schema.render_cell(checked)
        assert _cell_values(source) == checked


@settings(max_examples=150, deadline=None)
@given(yaml_text)
def test_random_params_files_load_or_fail_in_one_line(tmp_path_factory, text):
    d = tmp_path_factory.mktemp("pf")
    (d / "notebooks").mkdir()
    shutil.copy(FIXTURES / "notebooks" / "demo.ipynb", d / "notebooks")
    (d / "params").mkdir()
    f = d / "params" / "demo.yaml"
    f.write_text(f"notebook: demo.ipynb\nparameters:\n  workload: {text}\n", encoding="utf-8")
    try:
        P.load(f)
    except ConfigError as e:
        assert "\n" not in e.line()


def test_the_injected_cell_follows_the_parameters_cell():
    nb = nbrun.parameterize(ROOT / "notebooks" / "permvmalloc.ipynb",
                            {"bg_sweep": [[0.5, 0.25, 32.0]], "scenario": "x\"'\\\n"})
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    i = next(i for i, t in enumerate(tags) if "parameters" in t)
    assert nbrun.INJECTED_TAG in tags[i + 1]
    assert _cell_values(nb.cells[i + 1].source) == {"bg_sweep": [[0.5, 0.25, 32.0]],
                                                     "scenario": "x\"'\\\n"}
    with pytest.raises(TypeError):
        schema.render_cell({"x": b"bytes"})


# ---- 2. nothing outside kmm runs -------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../etc/demo.ipynb", "/tmp/demo.ipynb", "sub/../../demo.ipynb",
                                  "outside.ipynb"])
def test_a_params_file_names_only_notebooks_inside_notebooks(project, name):
    (project / "outside.ipynb").write_bytes((project / "notebooks" / "demo.ipynb").read_bytes())
    (project / "notebooks" / "outside.ipynb").unlink(missing_ok=True)
    if name == "outside.ipynb":
        os.symlink(project / "outside.ipynb", project / "notebooks" / "outside.ipynb")
    f = project / "params" / "x.yaml"
    f.write_text(f"notebook: {name}\nparameters: {{}}\n")
    with pytest.raises(ConfigError) as e:
        P.load(f)
    assert "notebook" in e.value.line()


@pytest.mark.parametrize("target", ["os:system", "builtins:eval", "kmm.suite.sweep:shutil",
                                    "kmm.suite.sweep:_short", "kmm.suite.sweep:Path",
                                    "kmm.suite.sweep:check_kmm_function.__globals__",
                                    "kmm.errors:ConfigError"])
def test_a_library_grid_runs_only_kmm_functions(target):
    with pytest.raises(ConfigError):
        sweep.check_kmm_function(target)


def test_a_grid_function_outside_kmm_is_refused_before_work(tmp_path):
    proj = tmp_path / "p"
    shutil.copytree(FIXTURES, proj)
    f = proj / "params" / "demo.yaml"
    f.write_text("notebook: demo.ipynb\nparameters: {}\ngrids:\n  g:\n    runner: library\n"
                 "    function: kmm.suite.sweep:shutil.rmtree\n    axes:\n      nodes: [1, 2]\n")
    r = kmm(proj, "sweep", "params/demo.yaml", "--out", str(tmp_path / "out"))
    assert "function" in one_line_error(r)
    assert not (tmp_path / "out").exists()


# ---- 3. bounded input ------------------------------------------------------------------------
def test_a_fifo_params_file_is_refused_not_waited_on(project):
    fifo = project / "params" / "fifo.yaml"
    os.mkfifo(fifo)
    r = kmm(project, "run", "demo", "--params", "params/fifo.yaml", timeout=60)
    assert "not a regular file" in one_line_error(r)


def test_a_huge_params_file_is_refused_unread(project):
    f = project / "params" / "big.yaml"
    f.write_text("notebook: demo.ipynb\nparameters: {}\n# " + "x" * (P.MAX_FILE_BYTES + 10))
    with pytest.raises(ConfigError, match="larger than"):
        P.load(f)


def test_a_malformed_params_file_fails_only_its_notebook(project):
    from kmm.suite import reproduce

    (project / "params" / "demo.yaml").write_text((project / "params" / "good.yaml").read_text())
    first, last, refused = reproduce.plan(project, project / "data", None, None)
    stems = {t.stem for t in first + last}
    assert "demo" in stems and "good" in stems
    assert {r["stem"] for r in refused} >= {"malformed", "python_object"}
    assert all(not r["ok"] and "\n" not in r["error"] for r in refused)


# ---- 4. arguments checked before any work starts ---------------------------------------------
ARGS = {
    "timeout nan": (["run", "demo", "--timeout", "nan"], "--timeout"),
    "timeout inf": (["run", "demo", "--timeout", "inf"], "--timeout"),
    "timeout negative": (["run", "demo", "--timeout", "-1"], "--timeout"),
    "reproduce timeout": (["reproduce", "--timeout", "1e400"], "--timeout"),
    "empty variant": (["run", "demo", "--variant", ""], "--variant"),
    "variant with newline": (["run", "demo", "--variant", "a\nb"], "--variant"),
    "variant too long": (["run", "demo", "--variant", "v" * 300], "--variant"),
    "NUL in notebook": (["run", "de\x01mo\nx"], "NOTEBOOK"),
    "newline in -p key": (["run", "demo", "-p", "a\nb=1"], "-p"),
    "-p key not a name": (["run", "demo", "-p", "__import__('os')=1"], "-p"),
    "empty scheduler": (["sweep", "params/good.yaml", "--scheduler", ""], "--scheduler"),
    "scheduler not a url": (["sweep", "params/good.yaml", "--scheduler", "not a url"],
                            "--scheduler"),
    "sweep timeout": (["sweep", "params/good.yaml", "--timeout", "nan"], "--timeout"),
    "sweep workers": (["sweep", "params/good.yaml", "--workers", "99999999999"], "--workers"),
    "grid with dash": (["sweep", "params/good.yaml", "--grid", "-x"], "--grid"),
    "entries 2**40": (["trace", "x.txt", "--entries", str(2 ** 40)], "--entries"),
    "ways 0": (["trace", "x.txt", "--ways", "0"], "--ways"),
    "only newline": (["reproduce", "--only", "a\nb"], "--only"),
    "jobs huge": (["reproduce", "--jobs", "100000"], "--jobs"),
}


@pytest.mark.parametrize("args, where", ARGS.values(), ids=ARGS.keys())
def test_bad_arguments_are_one_line_before_work(project, args, where):
    before = sorted(p.name for p in project.rglob("*"))
    line = one_line_error(kmm(project, *args))
    assert where in line
    assert sorted(p.name for p in project.rglob("*")) == before


def test_grid_names_cannot_collide(project):
    f = project / "params" / "a.yaml"
    f.write_text("notebook: demo.ipynb\nparameters: {}\ngrids:\n  b-c:\n    runner: notebook\n"
                 "    axes:\n      nodes: [1, 2]\n")
    with pytest.raises(ConfigError, match="grid name"):
        P.load(f)


def test_another_params_file_is_never_published(project):
    r = kmm(project, "run", "demo", "--params", "params/good.yaml", "--timeout", "0.001",
            "--out", str(project / "o"))
    # it starts (and may time out), but under a file-<stem>-<hash> label, never "published"
    assert "scenario='file-good-" in r.stderr
    assert not (project / "o" / "demo.ipynb").exists()


# ---- 5. failures during work -----------------------------------------------------------------
def test_a_corrupt_gzip_trace_is_one_line(tmp_path):
    from kmm import traces

    good = gzip.compress(b"I  04000000,4\n" * 20000)
    bad = good[:40] + bytes(b ^ 0x55 for b in good[40:200]) + good[200:]
    f = tmp_path / "t.txt.gz"
    f.write_bytes(bad)
    with pytest.raises(TraceError):
        traces.read_lackey(f)
    r = kmm(tmp_path, "trace", str(f))
    assert "t.txt.gz" in one_line_error(r, code=2)


def test_a_gigantic_trace_line_is_refused_without_reading_it(tmp_path):
    from kmm import traces

    f = tmp_path / "t.txt"
    with open(f, "w") as fh:
        fh.write("I  04000000,4\n")
        fh.write("x" * (64 << 20))
    with pytest.raises(TraceError, match="longer than"):
        traces.read_lackey(f)


def test_a_fifo_trace_is_refused(tmp_path):
    from kmm import traces

    os.mkfifo(tmp_path / "t.txt")
    with pytest.raises(TraceError, match="regular file"):
        traces.read_lackey(tmp_path / "t.txt")


def _small_fsize_limit():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))


@pytest.mark.slow
def test_a_full_disk_leaves_no_partial_executed_copy(project):
    r = kmm(project, "run", "demo", "--out", str(project / "o"), timeout=180,
            preexec_fn=_small_fsize_limit)
    line = one_line_error(r, code=1)
    assert "File too large" in line
    assert [p for p in (project / "o").iterdir()] == []


def test_an_unexpected_error_is_one_line(monkeypatch, capsys):
    from kmm.suite import cli

    def boom(args):
        raise RuntimeError("an internal bug\nwith two lines")

    monkeypatch.setattr(cli, "cmd_claims", boom)
    monkeypatch.delenv("KMM_DEBUG", raising=False)
    assert cli.main(["claims"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: an internal bug with two lines" in err
    monkeypatch.setenv("KMM_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["claims"])


def test_ctrl_c_is_one_line_exit_130(monkeypatch, capsys):
    from kmm.suite import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_claims", interrupted)
    assert cli.main(["claims"]) == 130
    assert capsys.readouterr().err == "kmm: interrupted\n"


def test_results_are_json_on_disk():
    """The injected values are also recorded as plain JSON in the executed copy's metadata."""
    nb = nbrun.parameterize(ROOT / "notebooks" / "permvmalloc.ipynb", {"scenario": "s"})
    assert json.loads(json.dumps(nb.metadata["papermill"]["parameters"])) == {"scenario": "s"}
