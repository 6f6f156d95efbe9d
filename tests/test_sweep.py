"""kmm sweep: grid expansion, resumable runs, failures, determinism, SIGKILL, lock, CLI errors.

The grids are in tests/data/params/sweep_probe.yaml; their points call
``kmm.suite.sweep.probe_point`` (seeded CPU work returning a tidy frame), directly (library
runner) or through tests/data/notebooks/sweep_probe.ipynb (notebook runner).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmm import __version__
from kmm.config import config_hash
from kmm.errors import ConfigError, KmmError
from kmm.suite import points, sweep

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
PROBE = DATA / "params" / "sweep_probe.yaml"
EMPTY = DATA / "params" / "sweep_empty.yaml"


def flaky_point(*, seed: int, marker: str, scenario: str = "t") -> pl.DataFrame:
    """A point that raises while ``marker`` exists (a failure that a retry can cure)."""
    if Path(marker).exists():
        raise RuntimeError(f"marker {Path(marker).name} present\nsecond line")
    return sweep.probe_point(seed=seed, n_values=200, scenario=scenario)


def crash_point(*, seed: int, crash_seed: int, scenario: str = "t") -> pl.DataFrame:
    """A point whose worker process dies without a Python exception at ``crash_seed``."""
    if seed == crash_seed:
        os._exit(7)
    return sweep.probe_point(seed=seed, n_values=200, scenario=scenario)


def _merged(sw: sweep.Sweep) -> pl.DataFrame:
    return pl.read_parquet(sw.merged_path)


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    """``kmm sweep ...`` through the kmm CLI if it exists, else the module's own entry."""
    if importlib.util.find_spec("kmm.suite.cli") is not None:
        cmd = [sys.executable, "-m", "kmm.suite.cli", "sweep", *args]
    else:
        cmd = [sys.executable, "-m", "kmm.suite.sweep", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120, **kw)


# ---------------------------------------------------------------- plan


def test_plan_expands_product_crossed_with_zip():
    sw = sweep.plan(PROBE, "quick", out_dir=Path("/nonexistent"))
    assert sw.name == "sweep_probe-quick" and sw.runner == "library"
    assert sw.target == "kmm.suite.sweep:probe_point"
    rows = [(1000, 1), (3000, 2)]
    expected = [{"seed": s, "n_values": n, "rounds": r, "fail_seed": -1,
                 "scenario": "sweep_probe-quick"} for s in (0, 1, 2) for n, r in rows]
    assert [dict(p.params) for p in sw.points] == expected
    # the identity of a point: its values, its target and the kmm version
    p = sw.points[4]
    assert p.hash == config_hash({"params": expected[4], "runner": "library",
                                  "target": "kmm.suite.sweep:probe_point"}, version=__version__)
    assert len({q.hash for q in sw.points}) == 6
    assert p.hash != config_hash({"params": expected[4], "runner": "library",
                                  "target": "kmm.suite.sweep:probe_point"}, version="9.9")


def test_plan_defaults_and_refusals(tmp_path):
    with pytest.raises(ConfigError, match="give --grid: the file declares 4 grids"):
        sweep.plan(PROBE)
    with pytest.raises(ConfigError, match="unknown grid 'nope'"):
        sweep.plan(PROBE, "nope")
    with pytest.raises(ConfigError, match="empty grid"):
        sweep.plan(EMPTY)
    with pytest.raises(ConfigError, match="no such params file"):
        sweep.plan(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="no points"):
        sweep.make_sweep("x", [], runner="library", target=sweep.PROBE_TARGET, out_dir=tmp_path)
    with pytest.raises(ConfigError, match="same point twice"):
        sweep.make_sweep("x", [{"seed": 1}, {"seed": 1}], runner="library",
                         target=sweep.PROBE_TARGET, out_dir=tmp_path)
    with pytest.raises(ConfigError, match="runner must be one of"):
        sweep.make_sweep("x", [{"seed": 1}], runner="shell", target="a:b", out_dir=tmp_path)
    with pytest.raises(ConfigError, match="module:function"):
        sweep.make_sweep("x", [{"seed": 1}], runner="library", target="nocolon", out_dir=tmp_path)


# ---------------------------------------------------------------- runs


def test_run_writes_points_manifest_and_merged_frame(tmp_path):
    sw = sweep.plan(PROBE, "quick", out_dir=tmp_path)
    rep = sweep.run(sw, workers=1, progress=False)
    assert (rep.done, rep.failed, rep.pending, rep.ran, rep.skipped) == (6, {}, 0, 6, 0)
    assert rep.ok and rep.merged_rows == 18 and rep.merged_path == tmp_path / "sweep_probe-quick.parquet"
    df = _merged(sw)
    assert df.columns[:7] == ["scenario", "config_hash", "seed", "kmm_version", "metric", "value",
                              "unit"]
    # deterministic order: point hash, then metric
    assert df.select("point_hash", "metric").rows() == sorted(df.select("point_hash", "metric").rows())
    for p in sw.points:
        got = df.filter(pl.col("point_hash") == p.hash)
        # one column per grid axis, holding the point's value (product and zip axes alike)
        assert got.select("point_seed", "point_n_values", "point_rounds").unique().rows() == \
            [(p.params["seed"], p.params["n_values"], p.params["rounds"])]
        got = got.drop("point_hash", "point_seed", "point_n_values", "point_rounds").sort("metric")
        assert got.equals(sweep.probe_point(**p.params).sort("metric"))
        assert sw.point_path(p.hash).is_file()
    man = json.loads(sw.manifest_path.read_text())
    assert man["counts"] == {"done": 6, "failed": 0, "pending": 0}
    assert {q["hash"] for q in man["points"]} == {p.hash for p in sw.points}
    assert not list(tmp_path.rglob(".*.tmp"))


def test_rerun_skips_done_points(tmp_path):
    sw = sweep.plan(PROBE, "quick", out_dir=tmp_path)
    sweep.run(sw, workers=1, progress=False)
    first = _merged(sw)
    stamps = {p.hash: sw.point_path(p.hash).stat().st_mtime_ns for p in sw.points}
    # a point lost (as if killed before it finished) is the only one rerun
    lost = sw.points[3].hash
    sw.point_path(lost).unlink()
    rep = sweep.run(sw, workers=1, progress=False)
    assert (rep.ran, rep.skipped, rep.done) == (1, 5, 6)
    assert all(sw.point_path(h).stat().st_mtime_ns == t for h, t in stamps.items() if h != lost)
    assert _merged(sw).equals(first)
    rep = sweep.run(sw, workers=1, progress=False)
    assert (rep.ran, rep.skipped) == (0, 6) and _merged(sw).equals(first)


def test_failing_point_is_recorded_and_others_finish(tmp_path):
    sw = sweep.plan(PROBE, "failing", out_dir=tmp_path)
    rep = sweep.run(sw, workers=2, progress=False)
    bad = next(p.hash for p in sw.points if p.params["seed"] == 2)
    assert {k: re.sub(r":\d+ in ", ":N in ", v) for k, v in rep.failed.items()} == {
        bad: "ValueError: fault injected at seed 2 (at sweep.py:N in probe_point)"}
    assert (rep.done, rep.pending, rep.merged_rows) == (3, 0, 9) and not rep.ok
    assert set(_merged(sw)["seed"]) == {0, 1, 3}
    man = json.loads(sw.manifest_path.read_text())
    rec = next(q for q in man["points"] if q["hash"] == bad)
    assert rec["status"] == "failed" and rec["error"] == rep.failed[bad]
    # a rerun skips the failed point; --retry-failed runs it again (and it fails again)
    rep = sweep.run(sw, workers=1, progress=False)
    assert (rep.ran, rep.skipped, list(rep.failed)) == (0, 4, [bad])
    rep = sweep.run(sw, workers=1, retry_failed=True, progress=False)
    assert (rep.ran, rep.skipped, list(rep.failed)) == (1, 3, [bad])


def test_retry_failed_recovers_a_point(tmp_path):
    marker = tmp_path / "marker"
    marker.touch()
    pts = [{"seed": s, "marker": str(marker)} for s in range(3)]
    sw = sweep.make_sweep("flaky", pts, runner="library", target="test_sweep:flaky_point",
                          out_dir=tmp_path / "out")
    rep = sweep.run(sw, workers=1, progress=False)
    assert rep.done == 0 and len(rep.failed) == 3
    # the grid's own function raised it: its file and line are named
    assert {re.sub(r":\d+ in ", ":N in ", v) for v in rep.failed.values()} == {
        "RuntimeError: marker marker present second line (at test_sweep.py:N in flaky_point)"}
    assert rep.merged_path is None and not sw.merged_path.exists()
    marker.unlink()
    rep = sweep.run(sw, workers=1, progress=False)
    assert (rep.ran, len(rep.failed)) == (0, 3)
    rep = sweep.run(sw, workers=1, retry_failed=True, progress=False)
    assert (rep.ran, rep.done, rep.failed) == (3, 3, {}) and rep.merged_rows == 9
    ledger = [json.loads(x) for x in sw.ledger_path.read_text().splitlines()]
    assert [r["status"] for r in ledger] == ["failed"] * 3 + ["done"] * 3


def test_a_worker_process_that_dies_fails_only_its_point(tmp_path):
    pts = [{"seed": s, "crash_seed": 2} for s in range(5)]
    sw = sweep.make_sweep("crash", pts, runner="library", target="test_sweep:crash_point",
                          out_dir=tmp_path)
    rep = sweep.run(sw, workers=2, progress=False)
    bad = next(p.hash for p in sw.points if p.params["seed"] == 2)
    assert list(rep.failed) == [bad] and "worker process" in rep.failed[bad]
    assert rep.done == 4 and set(_merged(sw)["seed"]) == {0, 1, 3, 4}


def test_library_function_errors_are_one_line(tmp_path):
    sw = sweep.make_sweep("bad", [{"seed": 1}], runner="library", target="kmm.nope:f",
                          out_dir=tmp_path)
    rep = sweep.run(sw, workers=1, progress=False)
    (err,) = rep.failed.values()
    assert err.startswith("function: cannot import 'kmm.nope:f'") and "\n" not in err
    sw = sweep.make_sweep("bad2", [{"seed": 1}], runner="library", target="json:dumps",
                          out_dir=tmp_path)
    (err,) = sweep.run(sw, workers=1, progress=False).failed.values()
    assert "TypeError" in err
    sw = sweep.make_sweep("bad3", [{"obj": [1]}], runner="library", target="builtins:dict",
                          out_dir=tmp_path)
    (err,) = sweep.run(sw, workers=1, progress=False).failed.values()
    assert err == "builtins:dict: returned dict, expected a polars DataFrame"


def test_collect_frames(tmp_path):
    a = sweep.probe_point(seed=1, n_values=50)
    b = sweep.probe_point(seed=2, n_values=50)
    (tmp_path / "x").mkdir()
    a.write_parquet(tmp_path / "x" / "b.parquet")
    b.write_parquet(tmp_path / "a.parquet")
    b.write_parquet(tmp_path / ".a.parquet.123.tmp.parquet")  # a temporary: never collected
    got = sweep.collect_frames(tmp_path)
    assert got.equals(pl.concat([b, a]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(KmmError, match="saved no result frame"):
        sweep.collect_frames(tmp_path / "empty")
    pl.DataFrame({"value": [1.0]}).write_parquet(tmp_path / "z.parquet")
    with pytest.raises(KmmError, match="z.parquet: result frame lacks column 'scenario'"):
        sweep.collect_frames(tmp_path)


@settings(max_examples=10, deadline=None)
@given(order=st.permutations(range(6)), done=st.sets(st.integers(0, 5), min_size=1))
def test_merge_depends_only_on_which_points_are_done(tmp_path_factory, order, done):
    out = tmp_path_factory.mktemp("merge")
    sw = sweep.plan(PROBE, "quick", out_dir=out)
    sw.points_dir.mkdir(parents=True)
    outcomes = [sweep.run_point(t) for t in sweep.tasks_for(sw, sw.points)]
    for i in order:  # written in any order
        if i in done:
            points.save(sw, outcomes[i].hash, outcomes[i].frame)
    got = sweep.merge(sw)
    ref = pl.concat([outcomes[i].frame for i in sorted(done, key=lambda i: outcomes[i].hash)])
    assert got.equals(ref.sort(["point_hash", "metric"], maintain_order=True))
    assert pl.read_parquet(sw.merged_path).equals(got)


# ---------------------------------------------------------------- determinism


def test_serial_parallel_and_dask_give_identical_frames(tmp_path):
    distributed = pytest.importorskip("distributed")
    serial = sweep.plan(PROBE, "quick", out_dir=tmp_path / "serial")
    again = sweep.plan(PROBE, "quick", out_dir=tmp_path / "again")
    parallel = sweep.plan(PROBE, "quick", out_dir=tmp_path / "parallel")
    dask = sweep.plan(PROBE, "quick", out_dir=tmp_path / "dask")
    sweep.run(serial, workers=1, progress=False)
    sweep.run(again, workers=1, progress=False)
    sweep.run(parallel, workers=2, progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        rep = sweep.run(dask, scheduler=cluster.scheduler_address, progress=False)
    assert rep.ok and rep.done == 6
    ref = _merged(serial)
    assert ref.height == 18
    assert _merged(again).equals(ref)
    assert _merged(parallel).equals(ref)
    assert _merged(dask).equals(ref)


def test_unreachable_scheduler_is_one_line(tmp_path):
    pytest.importorskip("distributed")
    sw = sweep.plan(PROBE, "quick", out_dir=tmp_path)
    with pytest.raises(KmmError, match="cannot reach the Dask scheduler") as e:
        sweep.run(sw, scheduler="tcp://127.0.0.1:9", progress=False, connect_timeout_s=1)
    assert "\n" not in e.value.line() and e.value.where == "--scheduler tcp://127.0.0.1:9"
    assert not sw.merged_path.exists()


# ---------------------------------------------------------------- SIGKILL, lock


def _count_done(sw: sweep.Sweep) -> int:
    return len(list(sw.points_dir.glob("*.parquet"))) if sw.points_dir.is_dir() else 0


def test_sigkill_then_rerun_gives_exactly_the_uninterrupted_rows(tmp_path):
    out = tmp_path / "killed"
    sw = sweep.plan(PROBE, "slow", out_dir=out)
    cmd = [sys.executable, "-m", "kmm.suite.sweep", str(PROBE), "--grid", "slow",
           "--out", str(out), "--workers", "2", "--quiet"]
    seen = []
    for threshold in (3, 9):  # killed at two points of its progress
        proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while _count_done(sw) < threshold and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker processes
        proc.wait()
        seen.append(_count_done(sw))
    assert seen[0] >= 3 and seen[1] >= 9 and seen[1] < len(sw.points), seen
    assert not sw.merged_path.exists()
    rep = sweep.run(sw, workers=2, progress=False)
    assert rep.ok and rep.ran == len(sw.points) - seen[1]
    ref_sw = sweep.plan(PROBE, "slow", out_dir=tmp_path / "uninterrupted")
    sweep.run(ref_sw, workers=1, progress=False)
    got, ref = _merged(sw), _merged(ref_sw)
    assert got.height == 16 * 3 and got.select("point_hash", "metric").is_unique().all()
    assert got.equals(ref)
    # no point was run twice: at most one "done" line per point in the ledger
    done_lines = [json.loads(x)["hash"] for x in sw.ledger_path.read_text().splitlines()
                  if '"done"' in x]
    assert len(done_lines) == len(set(done_lines))


def test_second_sweep_on_the_same_output_is_refused(tmp_path):
    sw = sweep.plan(PROBE, "quick", out_dir=tmp_path)
    with sweep.sweep_lock(sw):
        with pytest.raises(KmmError, match="another sweep is writing this output"):
            sweep.run(sw, workers=1, progress=False)
        proc = _cli(str(PROBE), "--grid", "quick", "--out", str(tmp_path), "--quiet")
        assert proc.returncode == 2
        assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith("kmm: error: ") and "another sweep" in proc.stderr
    assert not sw.merged_path.exists() and not list(sw.points_dir.iterdir())
    rep = sweep.run(sw, workers=1, progress=False)  # the lock is released on exit
    assert rep.ok


def test_two_sweeps_at_once_on_one_folder_refuse_or_stay_correct(tmp_path):
    args = ["--out", str(tmp_path), "--workers", "1", "--quiet"]
    base = [sys.executable, "-m", "kmm.suite.sweep", str(PROBE)]
    procs = [subprocess.Popen([*base, "--grid", g, *args], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for g in ("quick", "quick", "failing")]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    rcs = [r[0] for r in results]
    assert rcs[2] == 1  # the other grid has its own lock: it ran (with its failing point)
    assert sorted(rcs[:2]) in ([0, 0], [0, 2]), results
    for rc, _, err in results[:2]:
        if rc == 2:
            assert err.strip() == (f"kmm: error: {tmp_path / 'sweep_probe-quick.lock'}: "
                                   "another sweep is writing this output; wait for it to finish")
    ref = sweep.plan(PROBE, "quick", out_dir=tmp_path / "ref")
    sweep.run(ref, workers=1, progress=False)
    got = pl.read_parquet(tmp_path / "sweep_probe-quick.parquet")
    assert got.equals(_merged(ref))
    assert pl.read_parquet(tmp_path / "sweep_probe-failing.parquet").height == 9


def test_progress_bar_counts_done_failed_and_left(tmp_path, capsys):
    sw = sweep.plan(PROBE, "failing", out_dir=tmp_path)
    sweep.run(sw, workers=1, progress=True)
    err = capsys.readouterr().err
    assert "sweep_probe-failing" in err and "4/4" in err
    assert "done=3, failed=1, left=0" in err


# ---------------------------------------------------------------- CLI


@pytest.mark.parametrize("args, needle", [
    ([str(DATA / "params" / "missing.yaml")], "no such params file"),
    ([str(PROBE)], "give --grid"),
    ([str(PROBE), "--grid", "nope"], "unknown grid 'nope'"),
    ([str(EMPTY)], "empty grid"),
    ([str(PROBE), "--grid", "quick", "--workers", "0"], "--workers: must be between 1 and 1024"),
    ([str(PROBE), "--grid", "quick", "--out", "{file}/sub"], "cannot write the sweep output"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    afile = tmp_path / "afile"
    afile.write_text("x")
    args = [a.replace("{file}", str(afile)) for a in args]
    proc = _cli(*args, "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("kmm: error: ") and needle in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_cli_runs_reports_failures_and_exits_1(tmp_path):
    proc = _cli(str(PROBE), "--grid", "failing", "--out", str(tmp_path), "--workers", "1",
                "--quiet")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("sweep sweep_probe-failing: 3 done, 1 failed, 0 left of 4")
    assert "fault injected at seed 2" in proc.stderr and "--retry-failed" in proc.stderr
    assert pl.read_parquet(tmp_path / "sweep_probe-failing.parquet").height == 9


# ---------------------------------------------------------------- notebook runner


def test_notebook_grid_runs_through_papermill(tmp_path):
    pytest.importorskip("kmm.suite.io", reason="kmm.suite.io.save_frame has not landed")
    sw = sweep.plan(PROBE, "nb", out_dir=tmp_path)
    assert sw.runner == "notebook" and sw.target == "sweep_probe.ipynb"
    rep = sweep.run(sw, workers=2, progress=False)  # two kernels starting at once
    good, bad = sw.points
    assert rep.done == 1 and list(rep.failed) == [bad.hash]
    assert "ValueError: fault injected at seed 1" in rep.failed[bad.hash]
    assert "\n" not in rep.failed[bad.hash]
    assert (sw.notebooks_dir / f"{good.hash}.ipynb").is_file()
    assert list((sw.work_dir / good.hash).rglob("*.parquet"))
    got = _merged(sw)
    assert got["point_seed"].to_list() == [0] * got.height  # the grid's axes as columns
    assert got.drop("point_hash", "point_seed", "point_fail_seed").equals(
        sweep.probe_point(**good.params).sort("metric"))
    assert set(got["scenario"]) == {"sweep_probe-nb"} and set(got["point_hash"]) == {good.hash}


def test_a_failing_points_line_names_where_a_bug_was_raised_and_not_for_bad_input():
    """A bug inside kmm gets the innermost kmm frame in its one line (a point that fails in
    a worker leaves no traceback to read); a refused input keeps its own line."""
    from kmm.errors import ConfigError
    from kmm.suite.sweep import one_line

    try:
        np.zeros(4)[np.int64(1970)]
    except IndexError as e:
        assert re.fullmatch(r"IndexError: index 1970 is out of bounds for axis 0 with size 4 "
                            r"\(at test_sweep\.py:\d+ in test_a_failing_points_line\w*\)",
                            one_line(e)), one_line(e)
    try:
        from kmm.suite.study import replicate_plan
        replicate_plan("x", 10)
    except Exception as e:  # noqa: BLE001
        line = one_line(e)
        assert line.startswith("ValueError: invalid literal")
        assert re.search(r" \(at study\.py:\d+ in \S+\)$", line), line
    assert "(at " not in one_line(ConfigError("must be positive", "nodes"))
