"""params/ files: loading, every validation rule, grids, and the notebook runner."""
import json
import os
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmm.errors import ConfigError, KmmError
from kmm.suite import nbrun, params

PARAMS_CELL = """\
scenario = "small"
nodes = 2
remote_ratio = 1.5
ipi_ns = 1000
workload = "compute"
sizes = [1, 2]
verbose = False
"""


def make_notebook(path: Path, params_src: str = PARAMS_CELL, body: str = "x = nodes * 2") -> Path:
    """A minimal notebook: a tagged parameters cell, then one code cell."""
    nb = {
        "cells": [
            {"id": "params", "cell_type": "code", "metadata": {"tags": ["parameters"]},
             "source": params_src,
             "outputs": [], "execution_count": None},
            {"id": "body", "cell_type": "code", "metadata": {}, "source": body, "outputs": [],
             "execution_count": None},
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return path


GOOD = """\
notebook: demo.ipynb
title: A demo
parameters:
  nodes: 2
  remote_ratio: {value: 2, unit: ratio, min: 1.0, max: 4.0, source: "web: a write-up: Kunpeng 920"}
  ipi_ns: {value: 2000, unit: ns, assumed: [500, 5000]}
  workload: {value: database, choices: [database, compute, syscall]}
variants:
  four_nodes: {nodes: 4}
grids:
  latency:
    product: {remote_ratio: [1.0, 3.0], nodes: [2, 4]}
    zip: {ipi_ns: [500, 5000], workload: [compute, syscall]}
  on_four:
    product: {remote_ratio: [1.5]}
    variant: four_nodes
    runner: library
    function: kmm.mech.demo:run_point
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    make_notebook(tmp_path / "notebooks" / "demo.ipynb")
    (tmp_path / "params").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(project: Path, text: str, name: str = "demo.yaml") -> Path:
    p = project / "params" / name
    p.write_text(textwrap.dedent(text))
    return p


def test_good_file_scenario_variant_grid(project):
    pf = params.load(write(project, GOOD))
    assert pf.notebook == (project / "notebooks" / "demo.ipynb").resolve()
    assert pf.title == "A demo" and pf.stem == "demo" and not pf.run_last
    assert pf.defaults() == {"scenario": "small", "nodes": 2, "remote_ratio": 1.5, "ipi_ns": 1000,
                             "workload": "compute", "sizes": [1, 2], "verbose": False}
    # An int given for a float parameter becomes a float.
    assert pf.scenario() == {"nodes": 2, "remote_ratio": 2.0, "ipi_ns": 2000, "workload": "database"}
    assert isinstance(pf.scenario()["remote_ratio"], float)
    assert pf.variant("four_nodes") == {**pf.scenario(), "nodes": 4}
    assert pf.assumed() == {"ipi_ns": (500, 5000)}
    assert pf.specs["remote_ratio"].source.startswith("web: ")
    assert pf.specs["ipi_ns"].is_cost and not pf.specs["nodes"].is_cost
    # product (first axis slowest) x zip (innermost), written out
    base = pf.scenario()
    expected = []
    for r in (1.0, 3.0):
        for n in (2, 4):
            for ipi, w in ((500, "compute"), (5000, "syscall")):
                expected.append({**base, "remote_ratio": r, "nodes": n, "ipi_ns": ipi, "workload": w})
    assert pf.grid("latency") == expected
    assert pf.grid_spec("latency").size == 8 and pf.grid_spec("latency").runner == "notebook"
    g = pf.grid_spec("on_four")
    assert (g.runner, g.function) == ("library", "kmm.mech.demo:run_point")
    assert pf.grid("on_four") == [{**base, "nodes": 4, "remote_ratio": 1.5}]
    with pytest.raises(ConfigError, match="unknown variant 'eight'"):
        pf.variant("eight")
    with pytest.raises(ConfigError, match="unknown grid"):
        pf.grid("nope")


def test_validate_values_for_overrides(project):
    pf = params.load(write(project, GOOD))
    assert pf.validate_values({"nodes": 8, "remote_ratio": 3, "scenario": "x"}, "-p") == \
        {"nodes": 8, "remote_ratio": 3.0, "scenario": "x"}
    # YAML 1.1 reads `1e5` as a string; a float parameter still accepts it, an int one does not.
    assert pf.validate_values({"remote_ratio": "3e0"}, "-p") == {"remote_ratio": 3.0}
    cases = [({"nodes": 1e5}, "-p.nodes", "must be an integer"),
             ({"nodes": "1e5"}, "-p.nodes", "must be an integer"),
             ({"nodes": True}, "-p.nodes", "must be an integer"),
             ({"remote_ratio": 9.0}, "-p.remote_ratio", "must be <= 4.0"),
             ({"workload": "web"}, "-p.workload", "must be one of"),
             ({"node": 2}, "-p.node", "did you mean 'nodes'"),
             ({"sizes": [1, 2.5]}, "-p.sizes[1]", "must be an integer"),
             ({"verbose": 1}, "-p.verbose", "true or false")]
    for values, where, msg in cases:
        with pytest.raises(ConfigError, match=msg) as e:
            pf.validate_values(values, "-p")
        assert e.value.where == where


BAD = {
    "unknown_key": ("parameters:\n  nodez: 2\n", "parameters.nodez", "unknown parameter 'nodez'"),
    "int_as_float": ("parameters:\n  nodes: 2.0\n", "parameters.nodes", "must be an integer"),
    "int_as_exp": ("parameters:\n  nodes: 1e5\n", "parameters.nodes", "must be an integer"),
    "out_of_range": ("parameters:\n  remote_ratio: {value: 5.0, min: 1.0, max: 4.0, source: x}\n",
                     "parameters.remote_ratio", "must be <= 4.0"),
    "bad_choice": ("parameters:\n  workload: {value: web, choices: [database, compute]}\n",
                   "parameters.workload", "must be one of"),
    "cost_no_source": ("parameters:\n  ipi_ns: 2000\n", "parameters.ipi_ns", "cost parameter needs"),
    "cost_unit_no_source": ("parameters:\n  nodes: {value: 2, unit: bytes}\n", "parameters.nodes",
                            "cost parameter needs"),
    "spec_unknown_key": ("parameters:\n  nodes: {value: 2, sauce: x}\n", "parameters.nodes",
                         "unknown spec key 'sauce'"),
    "spec_no_value": ("parameters:\n  nodes: {unit: count}\n", "parameters.nodes", "needs a 'value'"),
    "assumed_reversed": ("parameters:\n  ipi_ns: {value: 2000, assumed: [5000, 500]}\n",
                         "parameters.ipi_ns.assumed", "reversed"),
    "assumed_outside": ("parameters:\n  ipi_ns: {value: 9000, assumed: [500, 5000]}\n",
                        "parameters.ipi_ns", "outside its assumed range"),
    "reserved": ("parameters:\n  scenario: published\n", "parameters.scenario", "set by the runner"),
    "variant_bad_type": ("parameters: {}\nvariants:\n  v: {nodes: two}\n", "variants.v.nodes",
                         "must be an integer"),
    "variant_cost_undeclared": ("parameters: {}\nvariants:\n  v: {ipi_ns: 3}\n", "variants.v.ipi_ns",
                                "must be declared"),
    "grid_empty": ("parameters: {}\ngrids:\n  g: {}\n", "grids.g", "empty grid"),
    "grid_empty_axis": ("parameters: {}\ngrids:\n  g: {product: {nodes: []}}\n",
                        "grids.g.product.nodes", "non-empty list"),
    "grid_bad_point": ("parameters:\n  remote_ratio: {value: 2.0, max: 4.0, source: x}\n"
                       "grids:\n  g: {product: {remote_ratio: [1.0, 8.0]}}\n",
                       "grids.g.product.remote_ratio[1]", "must be <= 4.0"),
    "grid_zip_lengths": ("parameters: {}\ngrids:\n  g: {zip: {nodes: [1, 2], sizes: [[1]]}}\n",
                         "grids.g.zip", "equal lengths"),
    "grid_unknown_variant": ("parameters: {}\ngrids:\n  g: {product: {nodes: [1]}, variant: v}\n",
                             "grids.g.variant", "unknown variant"),
    "grid_library_no_function": ("parameters: {}\ngrids:\n  g: {product: {nodes: [1]}, runner: library}\n",
                                 "grids.g.function", "needs 'function"),
    "grid_bad_runner": ("parameters: {}\ngrids:\n  g: {product: {nodes: [1]}, runner: dask}\n",
                        "grids.g.runner", "runner must be one of"),
    "top_unknown": ("parameters: {}\nvariant: {}\n", "", "unknown top-level key 'variant'"),
    "duplicate_key": ("parameters:\n  nodes: 2\n  nodes: 3\n", "", "duplicate key 'nodes'"),
    "python_tag": ("parameters:\n  nodes: !!python/object/apply:os.system ['true']\n", "",
                   "not allowed"),
    "malformed": ("parameters:\n  nodes: [1, 2\n", "", "malformed YAML"),
    "not_mapping": ("- 1\n- 2\n", "", "a params file is a mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_name_the_key(project, case):
    body, key, msg = BAD[case]
    text = body if case in ("not_mapping",) else "notebook: demo.ipynb\n" + body
    p = write(project, text)
    with pytest.raises(ConfigError, match=msg) as e:
        params.load(p)
    assert e.value.where.startswith("params/demo.yaml")
    if key:
        assert e.value.where == f"params/demo.yaml: {key}"
    assert "\n" not in e.value.line()


def test_missing_things(project):
    with pytest.raises(ConfigError, match="no such params file"):
        params.load(project / "params" / "absent.yaml")
    with pytest.raises(ConfigError, match="not found") as e:
        params.load(write(project, "notebook: absent.ipynb\nparameters: {}\n"))
    assert e.value.where == "params/demo.yaml: notebook"
    with pytest.raises(ConfigError, match="no such notebook"):
        params.notebook_parameters(project / "notebooks" / "absent.ipynb")


def test_notebook_parameters_cell_must_hold_literals(project):
    nb = make_notebook(project / "notebooks" / "x.ipynb", "a = 1\nb = -2.5\nc: int = 3\nd = [1, 'x']\n")
    assert params.notebook_parameters(nb) == {"a": 1, "b": -2.5, "c": 3, "d": [1, "x"]}
    nb = make_notebook(project / "notebooks" / "x.ipynb", "a = 1\nb = len('ab')\n")
    with pytest.raises(ConfigError, match="not a literal") as e:
        params.notebook_parameters(nb)
    assert e.value.where.endswith("parameters cell line 2")
    nb = make_notebook(project / "notebooks" / "x.ipynb", "import os\n")
    with pytest.raises(ConfigError, match="only `name = literal`"):
        params.notebook_parameters(nb)
    nb = project / "notebooks" / "y.ipynb"
    nb.write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": {}, "source": "a = 1"}]}))
    with pytest.raises(ConfigError, match="no code cell tagged 'parameters'"):
        params.notebook_parameters(nb)


def test_cli_values_are_parsed_safely():
    assert params.parse_cli_value("3", "-p n") == 3
    assert params.parse_cli_value("1e5", "-p n") == "1e5"  # YAML 1.1: not a float
    assert params.parse_cli_value("[1, 2]", "-p n") == [1, 2]
    with pytest.raises(ConfigError, match="not allowed"):
        params.parse_cli_value("!!python/name:os.system", "-p n")


@settings(max_examples=25, deadline=None)
@given(axes=st.dictionaries(st.sampled_from(["nodes", "ipi_ns", "remote_ratio"]),
                            st.lists(st.integers(1, 50), min_size=1, max_size=4, unique=True),
                            min_size=1))
def test_grid_points_are_the_cartesian_product(tmp_path_factory, axes):
    root = tmp_path_factory.mktemp("p")
    make_notebook(root / "notebooks" / "demo.ipynb")
    (root / "params").mkdir()
    p = root / "params" / "demo.yaml"
    p.write_text(json.dumps({
        "notebook": "demo.ipynb",
        "parameters": {"ipi_ns": {"value": 1, "assumed": [0, 100]}},
        "grids": {"g": {"product": axes}}}))
    pf = params.load(p)
    pts = pf.grid("g")
    n = 1
    for v in axes.values():
        n *= len(v)
    assert len(pts) == n == pf.grid_spec("g").size
    combos = {tuple(pt[k] for k in axes) for pt in pts}
    assert len(combos) == n
    for pt in pts:
        assert set(pt) == set(pf.scenario()) | set(axes)
        assert all(pt[k] in axes[k] for k in axes)
        if "remote_ratio" in axes:
            assert isinstance(pt["remote_ratio"], float)


# ---- the notebook runner (starts real kernels: a few seconds each) --------------------------
@pytest.mark.slow
def test_execute_injects_parameters_and_writes_atomically(tmp_path):
    body = ("import os, pathlib\n"
            "pathlib.Path(os.environ['KMM_DATA_DIR'], 'out.txt').write_text(f'{nodes} {scenario}')")
    nb = make_notebook(tmp_path / "nb.ipynb", body=body)
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "exec" / "nb.ipynb"
    assert nbrun.execute(nb, {"nodes": 7, "scenario": "published"}, out, cwd=tmp_path,
                         data_dir=data) == out
    assert (data / "out.txt").read_text() == "7 published"
    executed = json.loads(out.read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])
    assert sorted(p.name for p in out.parent.iterdir()) == ["nb.html", "nb.ipynb"]
    page = (out.parent / "nb.html").read_text()
    assert "KMM_DATA_DIR" in page and "<pre>11</pre>" in page  # the cells and outputs
    assert not re.search(r'<script[^>]*src="https?://', page)  # nothing loads from the network


@pytest.mark.slow
def test_execute_failure_is_one_line_and_keeps_the_old_copy(tmp_path):
    nb = make_notebook(tmp_path / "nb.ipynb", body="raise ValueError('bad\\nthing')")
    out = tmp_path / "exec" / "nb.ipynb"
    out.parent.mkdir()
    out.write_text("previous")
    with pytest.raises(KmmError) as e:
        nbrun.execute(nb, {"nodes": 1}, out, cwd=tmp_path, data_dir=tmp_path)
    line = e.value.line()
    assert "\n" not in line and "ValueError: bad thing" in line and "nb.ipynb" in line
    assert out.read_text() == "previous"
    assert nbrun.failed_path(out).is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["nb.failed.ipynb", "nb.ipynb"]


@pytest.mark.slow
def test_a_kernels_own_stderr_stays_out_of_kmms(tmp_path, capfd):
    """What a kernel writes to its stderr outside a cell (pyzmq's "Uncaught exception in
    ZMQStream callback" traceback at shutdown under load) does not reach kmm's stderr."""
    body = ("import atexit, os\n"
            "atexit.register(lambda: os.write(2, b'Traceback (most recent call last): at exit\\n'))")
    nb = make_notebook(tmp_path / "nb.ipynb", body=body)
    out = tmp_path / "exec" / "nb.ipynb"
    nbrun.execute(nb, {"nodes": 1}, out, cwd=tmp_path, data_dir=tmp_path, html=False)
    assert out.is_file()
    assert "Traceback" not in capfd.readouterr().err
    assert sorted(p.name for p in out.parent.iterdir()) == ["nb.ipynb"]  # no log left behind


@pytest.mark.slow
def test_a_dead_kernel_is_one_line_quoting_its_last_stderr_line(tmp_path, capfd, monkeypatch):
    # the kernel's own stderr (the pipe kmm gave it, whatever ipykernel did to descriptor 2
    # to capture a cell's output), then a flood of it: only the last line is quoted
    made = nbrun._StderrTail.__init__

    def init(self):
        made(self)
        monkeypatch.setenv("KMM_TEST_STDERR", f"pipe:[{os.fstat(self.write_fd).st_ino}]")

    monkeypatch.setattr(nbrun._StderrTail, "__init__", init)
    body = ("import os\n"
            "def link(f):\n"
            "    try:\n"
            "        return os.readlink(f'/proc/self/fd/{f}')\n"
            "    except OSError:  # the descriptor listdir read the folder with\n"
            "        return None\n"
            "fds = [int(f) for f in os.listdir('/proc/self/fd')\n"
            "       if link(f) == os.environ['KMM_TEST_STDERR']]\n"
            "os.write(fds[0], b'early line\\n' + b'x' * (4 << 20) + b'\\nfatal: out of cheese\\n')\n"
            "os._exit(3)")
    nb = make_notebook(tmp_path / "nb.ipynb", body=body)
    out = tmp_path / "exec" / "nb.ipynb"
    with pytest.raises(KmmError) as e:
        nbrun.execute(nb, {"nodes": 1}, out, cwd=tmp_path, data_dir=tmp_path, html=False)
    line = e.value.line()
    assert "\n" not in line and "DeadKernelError" in line
    assert "(kernel stderr: fatal: out of cheese)" in line and "early line" not in line
    assert capfd.readouterr().err == ""  # nbclient's own "Kernel died" log line included
    assert {p.name for p in out.parent.iterdir()} <= {"nb.failed.ipynb"}  # no log, no folder


def test_a_kernels_stderr_is_kept_in_memory_and_bounded():
    """However much a kernel writes to its stderr, kmm keeps its last few KiB in memory (no
    file) and quotes the last non-blank line."""
    tail = nbrun._StderrTail()
    w = os.dup(tail.write_fd)   # the kernel's copy
    tail.close_writer()
    for _ in range(256):   # 16 MiB: each write waits for the reading thread to drain the pipe
        os.write(w, b"y" * 65536)
    os.write(w, b"x" * 10000 + b"\nfirst\n  second \xff  \n\n   \n")
    os.close(w)
    assert tail.last_line() == "second \ufffd"
    assert len(tail._tail) <= 2 * nbrun.TAIL_BYTES
    assert nbrun._StderrTail().last_line(wait=0.1) == ""   # no kernel ever wrote
    assert nbrun._last_line(b"y" * 9000) == "y" * 157 + "..."   # one line, shortened


def _assumed_in_params_files() -> dict[str, dict[str, tuple]]:
    """``{name: {stem: (lo, hi)}}`` of every ``assumed`` parameter of ``params/``."""
    out: dict[str, dict[str, tuple]] = {}
    for f in sorted((Path(__file__).resolve().parents[1] / "params").glob("*.yaml")):
        for k, rng in params.load(f).assumed().items():
            out.setdefault(k, {})[f.stem] = tuple(float(x) for x in rng)
    return out


def test_every_assumed_constant_in_code_is_exposed_by_a_params_file():
    """An ``Assumed(...)`` in kmm is a parameter: some params file declares it under its name
    with the same ``assumed`` range (issue 25)."""
    import importlib
    import pkgutil
    import re

    import kmm
    from kmm.assumed import DECLARED

    root = Path(kmm.__file__).resolve().parent
    for info in pkgutil.walk_packages([str(root)], "kmm."):
        if not (info.name.startswith("kmm.suite.") or ".capture" in info.name
                or info.name.endswith("__main__")):
            importlib.import_module(info.name)
    named = set()
    for f in root.rglob("*.py"):
        if f.name == "assumed.py" and f.parent == root:  # the marker's own doctest
            continue
        named |= set(re.findall(r'\bAssumed\(\s*"(\w+)"', f.read_text(encoding="utf-8")))
    assert named and named <= set(DECLARED), sorted(named - set(DECLARED))
    exposed = _assumed_in_params_files()
    missing = sorted(n for n in named if n not in exposed)
    assert not missing, f"assumed in code, in no params file: {missing}"
    for n in sorted(named):
        a = DECLARED[n]
        for stem, rng in exposed[n].items():
            assert rng == (float(a.lo), float(a.hi)), (n, stem, rng, a.range)


def test_an_assumed_cost_shared_by_mechanisms_has_one_range():
    """A cost two studies both assume (e.g. the IPI costs of asi and permvmalloc) has one
    plausible range."""
    # names shared by studies of different quantities or machines, each with its reason
    different = {
        "cpi_base": "bbml2_perf models an AmpereOne core, ktr and pkvm a Neoverse N1 class core",
        "tlbi_ns": "bbml2_structure charges a broadcast TLBI with its DSB as seen by the BBM "
                   "window; permvmalloc and pkvm charge one TLBI instruction",
        "patches_per_s": "a rate of a scenario, not a cost: ktr includes no patching (0)",
    }
    shared = {k: v for k, v in _assumed_in_params_files().items() if len(v) > 1}
    assert {"ipi_base_ns", "ipi_per_extra_target_ns", "ipi_handler_ns"} <= set(shared)
    for k, by_stem in shared.items():
        if k not in different:
            assert len(set(by_stem.values())) == 1, (k, by_stem)


def test_expected_seconds_is_a_bounded_number(project):
    """``expected_seconds`` orders a first ``kmm reproduce``; anything but a number of
    seconds from 0 to 1e6 is refused with one line naming the key."""
    assert params.load(write(project, GOOD)).expected_seconds is None
    pf = params.load(write(project, GOOD + "expected_seconds: 90\n"))
    assert pf.expected_seconds == 90.0
    for bad in ("-1", "true", ".nan", ".inf", "'90'", "[90]", "2e6"):
        with pytest.raises(ConfigError, match="number of seconds|not a finite number") as e:
            params.load(write(project, GOOD + f"expected_seconds: {bad}\n"))
        assert e.value.where.endswith(("demo.yaml: expected_seconds", "demo.yaml"))


def test_reproduce_starts_the_longest_notebook_first():
    """Longest first by the previous run's durations, else by ``expected_seconds``; ties and
    unknowns keep their (alphabetical) order, unknowns last."""
    from kmm.suite.reproduce import Task, longest_first

    def task(stem, expected=None):
        return Task(stem, stem, f"{stem}.ipynb", {}, "", "", "", None, expected)

    tasks = [task("a", 10), task("b"), task("c", 300), task("d", 50), task("e")]
    assert [t.stem for t in longest_first(tasks, {})] == ["c", "d", "a", "b", "e"]
    # a recorded duration wins over the hint, for a notebook with or without one
    assert [t.stem for t in longest_first(tasks, {"a": 400.0, "e": 60.0})] == \
        ["a", "c", "e", "d", "b"]
