"""Progress of kmm reproduce and kmm run: ETA from the previous run, cold-cache note, cells."""
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kmm.suite import nbrun, progress, reproduce

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_duration_by_hand():
    assert [progress.duration(s) for s in (0, 42.4, 65, 3599, 3725)] == \
        ["0 s", "42 s", "1 min 05 s", "59 min 59 s", "1 h 02 min"]


def test_eta_by_hand_two_workers_then_the_last_one():
    """a, b, c on 2 workers (10, 20, 30 s last time), then z (5 s): c starts when a ends."""
    clock = Clock()
    board = progress.Board(["a", "b", "c"], ["z"], 2, {"a": 10, "b": 20, "c": 30, "z": 5},
                           clock=clock)
    board.start_pool()
    assert sorted(board.started) == ["a", "b"]
    assert board.remaining() == 45  # worker 1: a, c (40 s); worker 2: b (20 s); then z
    clock.t = 4
    assert board.remaining() == 41
    clock.t = 10
    assert board.finish("a") == "1/4 done, about 35 s left"
    assert board.started["c"] == 10
    clock.t = 20
    board.finish("b")
    assert board.remaining() == 25  # c has 20 s to go, then z
    clock.t = 40
    board.finish("c")
    board.start("z")
    clock.t = 43
    assert board.remaining() == 2
    assert board.finish("z") == "4/4 done"


def test_eta_without_a_previous_duration():
    clock = Clock()
    board = progress.Board(["a", "b"], [], 1, {"a": 10}, clock=clock)
    board.start("a")
    assert board.remaining() == 20  # b is taken to last as long as the known mean
    board = progress.Board(["a", "b"], [], 1, {}, clock=clock)
    assert board.remaining() is None
    assert board.note() == "0/2 done, no previous run to estimate the time left"
    board = progress.Board(["a"], [], 1, {"a": 10}, clock=clock, cold=True)
    assert board.note().endswith("(plus compiling kernels)")


def test_a_long_running_notebook_never_goes_below_a_second_left():
    clock = Clock()
    board = progress.Board(["a"], [], 1, {"a": 10}, clock=clock)
    board.start("a")
    clock.t = 100
    assert board.remaining() == 1
    assert "a 1 min 40 s of ~10 s" in board.status()


def test_previous_seconds_come_from_the_last_successful_runs(tmp_path):
    (tmp_path / "provenance.json").write_text(json.dumps({"notebooks": {
        "ktr": {"status": "ok", "seconds": 61.2}, "pkvm": {"status": "failed", "seconds": 3},
        "asi": {"status": "ok"}}}))
    assert progress.previous_seconds(tmp_path) == {"ktr": 61.2}
    assert progress.previous_seconds(tmp_path / "absent") == {}


def test_plain_mode_prints_events_and_a_heartbeat():
    out = io.StringIO()
    st = progress.Status(lambda: "3/7 done", out, mode="plain", heartbeat=0.05)
    with st:
        st.log("  ok  ktr")
        time.sleep(0.2)
    lines = out.getvalue().splitlines()
    assert lines[0] == "  ok  ktr" and "3/7 done" in lines[1:]
    assert "\r" not in out.getvalue() and "\033" not in out.getvalue()


def test_tty_mode_redraws_one_line_and_prints_events_above_it():
    out = io.StringIO()
    state = {"n": 1}
    st = progress.Status(lambda: f"{state['n']}/2 done", out, mode="tty", redraw=0.05)
    with st:
        assert out.getvalue() == "1/2 done"
        state["n"] = 2
        time.sleep(0.2)
        st.log("  ok  ktr")
    text = out.getvalue()
    assert text == "1/2 done\r\033[K2/2 done\r\033[K  ok  ktr\n2/2 done\r\033[K"


def test_off_mode_prints_events_only(monkeypatch):
    out = io.StringIO()
    monkeypatch.setenv("KMM_PROGRESS", "off")
    with progress.Status(lambda: "status", out, heartbeat=0.01) as st:
        st.log("event")
        time.sleep(0.05)
    assert out.getvalue() == "event\n"
    assert progress.cold_cache_note() is None


def test_without_a_terminal_the_mode_is_plain(monkeypatch):
    monkeypatch.delenv("KMM_PROGRESS", raising=False)
    assert progress.Status(stream=io.StringIO()).mode == "plain"


def test_a_cold_numba_cache_is_noticed(tmp_path, monkeypatch):
    from kmm import _jit

    monkeypatch.delenv("KMM_PROGRESS", raising=False)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    note = progress.cold_cache_note()
    assert note.startswith("compiling kmm's Numba kernels first") and str(tmp_path) in note
    cache = Path(_jit.cache_dir()) / "kmm_tlb"
    cache.mkdir(parents=True)
    (cache / "tlb.simulate-1.py311.nbi").write_bytes(b"")
    assert progress.compiled_kernels() == 1 and progress.cold_cache_note() is None


def test_reproduce_states_its_estimate_first(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KMM_PROGRESS", raising=False)
    monkeypatch.setattr(progress, "cold_cache_note", lambda: None)
    (tmp_path / "provenance.json").write_text(json.dumps({"notebooks": {
        "ktr": {"status": "ok", "seconds": 100}, "pkvm": {"status": "ok", "seconds": 60}}}))
    task = dict(title="", notebook="", parameters={}, out_path="", data_dir="", cwd="",
                timeout=None)
    board = reproduce._progress([reproduce.Task(stem="ktr", **task),
                                 reproduce.Task(stem="pkvm", **task)], [], 2, tmp_path)
    assert board.order == ["ktr", "pkvm"]
    assert capsys.readouterr().err == \
        "kmm reproduce: about 1 min 40 s by the previous run's durations\n"


@pytest.mark.slow
def test_kmm_run_reports_each_cell_as_a_line_without_a_terminal(tmp_path):
    env = {**os.environ, "KMM_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    env.pop("KMM_PROGRESS", None)
    r = subprocess.run([sys.executable, "-m", "kmm", "run", "overview", "--out", str(tmp_path)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    nb = json.loads((ROOT / "notebooks" / "overview.ipynb").read_text())
    n = 1 + sum(c["cell_type"] == "code" for c in nb["cells"])  # and the injected parameters
    cells = [ln for ln in r.stderr.splitlines() if ln.startswith("overview: cell ")]
    assert [ln.split()[2] for ln in cells] == [f"{i}/{n}" for i in range(1, n + 1)], r.stderr
    assert cells[0].endswith(': scenario = "small"') and "\r" not in r.stderr


@pytest.mark.slow
def test_nbrun_reports_cells_to_the_active_hook_and_then_the_end(tmp_path):
    seen = []
    with progress.cells("probe", progress.Status(stream=io.StringIO(), mode="off")):
        token = progress._cell_hook.set(lambda *a: seen.append(a))
        try:
            nbrun.execute(ROOT / "tests" / "data" / "notebooks" / "sweep_probe.ipynb",
                          {"scenario": "t"}, tmp_path / "out.ipynb", cwd=ROOT,
                          data_dir=tmp_path / "data")
        finally:
            progress._cell_hook.reset(token)
    n = seen[0][1]
    assert [s[:2] for s in seen] == [(i, n) for i in range(1, n + 1)] + [(0, 0)]
    assert progress.cell_hook() is None
