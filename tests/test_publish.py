"""Results on disk: no link following, publishing in generations, sweeps that cannot be poisoned.

Attacks as an attacker would make them: links planted at every path kmm writes (a victim file
outside must stay untouched and nothing may be created through a dangling link); kills at every
filesystem operation of publishing and at random instants, after which everything a reader sees
belongs to one generation; corrupt, edited, unreadable and stale sweep points; and kill -9 of a
sweep whose workers must not survive it.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kmm.errors import ConfigError, KmmError
from kmm.suite import claims, generations, reproduce, safefs

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
PROBE = TESTS / "data" / "params" / "sweep_probe.yaml"
DEMO = TESTS / "data" / "params_bad" / "notebooks" / "demo.ipynb"
PRECIOUS = "precious contents\n"


@pytest.fixture
def victim(tmp_path):
    """A file outside every folder kmm writes, and a path that must never be created."""
    outside = tmp_path / "outside"
    outside.mkdir()
    f = outside / "victim.txt"
    f.write_text(PRECIOUS)
    return f, outside / "created-through-a-link"


def untouched(victim) -> bool:
    f, absent = victim
    return f.read_text() == PRECIOUS and not os.path.lexists(absent)


# ---- 1. no link following ---------------------------------------------------------------------
SWEEP_PATHS = {
    "lock": lambda sw: sw.lock_path,
    "ledger": lambda sw: sw.ledger_path,
    "manifest": lambda sw: sw.manifest_path,
    "merged": lambda sw: sw.merged_path,
    "points folder": lambda sw: sw.points_dir,
    "sweep folder": lambda sw: sw.dir,
}


@pytest.mark.parametrize("where", list(SWEEP_PATHS))
@pytest.mark.parametrize("dangling", [False, True])
def test_a_link_planted_where_a_sweep_writes_is_refused(tmp_path, victim, where, dangling):
    from kmm.suite import sweep

    sw = sweep.plan(PROBE, "quick", out_dir=tmp_path / "out")
    path = SWEEP_PATHS[where](sw)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = victim[1] if dangling else victim[0]
    if where.endswith("folder"):
        target = victim[0].parent
    os.symlink(target, path)
    with pytest.raises(KmmError, match="is a symbolic link; kmm does not write through links"):
        sweep.run(sw, workers=1, progress=False)
    assert untouched(victim) and sorted(p.name for p in victim[0].parent.iterdir()) == ["victim.txt"]


def test_the_cli_refuses_a_planted_lock_link_in_one_line(tmp_path, victim):
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim[0], out / "sweep_probe-quick.lock")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "kmm.suite.cli", "sweep", str(PROBE), "--grid",
                        "quick", "--out", str(out), "--quiet"], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("kmm: error: ") and "sweep_probe-quick.lock: is a symbolic link" in r.stderr
    assert untouched(victim)


@pytest.mark.parametrize("where", ["lock", "claims folder", "current", "record", "frame",
                                   "chart", "old temporary name"])
def test_a_link_planted_in_the_data_folder_is_refused(tmp_path, monkeypatch, victim, where):
    import polars as pl

    from kmm import results
    from kmm.suite import charts, io
    from kmm.suite.charts import alt

    data = tmp_path / "data"
    (data / "claims" / "published").mkdir(parents=True)
    monkeypatch.setenv("KMM_DATA_DIR", str(data))
    df = results.frame(results.rows_for("published", {"n": 1}, 0, {"m": (1.0, "count")}))
    plant = {"lock": data / ".reproduce.lock", "claims folder": data / "claims" / "small",
             "current": data / "current", "record": data / "claims" / "published" / "K1.json",
             "frame": data / "frames" / "published" / "f.parquet",
             "chart": data / "charts" / "published" / "c.svg",
             "old temporary name": data / "claims" / "published" / f".K1.json.{os.getpid()}.tmp"}
    plant[where].parent.mkdir(parents=True, exist_ok=True)
    os.symlink(victim[0].parent if where == "claims folder" else victim[0], plant[where])
    writes = {
        "lock": lambda: reproduce.lock(data).__enter__(),
        "claims folder": lambda: claims.record("K1", 0.1, explanation="x.", parameters={},
                                               scenario="small"),
        "current": lambda: claims.record("K1", 0.1, explanation="x.", parameters={},
                                         scenario="published"),
        "record": lambda: claims.record("K1", 0.1, explanation="x.", parameters={},
                                        scenario="published"),
        "frame": lambda: io.save_frame(df, "f", "published"),
        "chart": lambda: charts.save(alt.Chart(pl.DataFrame({"x": [1]})).mark_bar().encode(
            x="x:Q"), "c", scenario="published", formats=("svg",)),
    }
    if where == "old temporary name":  # names are unpredictable now: the write just succeeds
        claims.record("K1", 0.1, explanation="x.", parameters={}, scenario="published")
        assert json.loads((data / "claims" / "published" / "K1.json").read_text())["value"] == 0.1
        assert safefs.temp_name("K1.json") != safefs.temp_name("K1.json")
    else:
        with pytest.raises(ConfigError, match="symbolic link|not to a generation"):
            writes[where]()
    assert untouched(victim)


def test_nbrun_refuses_a_link_at_the_executed_copy_before_starting_a_kernel(tmp_path, victim):
    from kmm.suite import nbrun

    out = tmp_path / "nb" / "demo.ipynb"
    out.parent.mkdir()
    os.symlink(victim[1], out)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="demo.ipynb: is a symbolic link"):
        nbrun.execute(DEMO, {}, out, cwd=tmp_path)
    assert time.perf_counter() - t0 < 5 and untouched(victim)


def test_a_users_own_linked_data_and_out_folders_keep_working(tmp_path, monkeypatch):
    from kmm.suite import sweep

    real = tmp_path / "disk"
    (real / "data").mkdir(parents=True)
    (real / "sweeps").mkdir()
    os.symlink(real / "data", tmp_path / "data")
    os.symlink(real / "sweeps", tmp_path / "sweeps")
    monkeypatch.setenv("KMM_DATA_DIR", str(tmp_path / "data"))
    claims.record("K1", 0.1, explanation="x.", parameters={}, scenario="small")
    assert (real / "data" / "claims" / "small" / "K1.json").is_file()
    with reproduce.lock(tmp_path / "data"), generations.building(tmp_path / "data"):
        pass
    assert claims.table()[0]["value"] == 0.1 and (real / "data" / "current").is_symlink()
    rep = sweep.run(sweep.plan(PROBE, "quick", out_dir=tmp_path / "sweeps"), workers=1,
                    progress=False)
    assert rep.ok and (real / "sweeps" / "sweep_probe-quick.parquet").is_file()


# ---- 2. generations ---------------------------------------------------------------------------
def _stage(staging: Path, tag: int) -> None:
    """What a finished notebook leaves in its staging folder, every file marked with ``tag``."""
    os.environ["KMM_DATA_DIR"] = str(staging)
    for cid in ("K1", "K2", "B3"):
        claims.record(cid, float(tag), explanation=f"tag {tag}.", parameters={"tag": tag},
                      scenario="published", chart="alpha_gain")
    for rel, text in (("charts/published/alpha_gain.svg", f"<svg><!-- tag {tag} --></svg>"),
                      ("notebooks/alpha.ipynb", json.dumps({"tag": tag}))):
        safefs.write_text(staging / rel, text, root=staging)


def _publish(data: Path, project: Path, tag: int) -> None:
    from kmm.suite import report

    staging = data / reproduce.STAGING / "alpha"
    with reproduce.lock(data), generations.building(data) as build:
        made = reproduce.promote(staging, build.dir)
        staging.parent.rmdir()  # as kmm reproduce does once every staging folder is moved
        reproduce.update_provenance(build.dir, [{"stem": "alpha", "ok": True, "error": None,
                                                 "seconds": 1.0, "made": made,
                                                 "title": f"tag {tag}"}], generation=build.id)
        report.write(build.dir, project)


def observe(data: Path) -> dict:
    """What a reader sees: the generation's id, the one tag every file of it carries, and any
    inconsistency (files of two runs, a report or ``kmm claims`` disagreeing)."""
    problems: list[str] = []
    gen = generations.resolve(data)
    if gen == data:
        seen = [n for n in generations.RESULT_NAMES if os.path.lexists(data / n)]
        return {"gid": None, "tag": None, "problems": [f"{n} visible before publishing"
                                                       for n in seen]}
    tags: set[int] = set()
    for f in sorted(p for p in gen.rglob("*") if p.is_file()):
        found = {int(t) for t in re.findall(r"tag[ \"\':]+([0-9]+)",
                                            f.read_bytes().decode("utf-8", "replace"))}
        if f.suffix in (".json", ".svg", ".ipynb", ".html") and not found and f.name != "claims.json":
            problems.append(f"{f.relative_to(gen)} carries no tag")
        tags |= found
    for row in json.loads((gen / "claims.json").read_text()):
        if row["value"] is not None:
            tags.add(int(row["value"]))
    for row in claims.table(data):  # what `kmm claims` prints
        if row["value"] is not None:
            tags.add(int(row["value"]))
    prov = json.loads((gen / "provenance.json").read_text())
    if prov.get("generation") != gen.name or f"generation {gen.name}," not in (
            gen / "report.html").read_text():
        problems.append("provenance or report of another generation")
    for name in ("report.html", "claims.json", "claims"):
        if os.path.lexists(data / name) and os.path.realpath(data / name) != str(
                (gen / name).resolve()):
            problems.append(f"data/{name} is not the current generation's")
    if len(tags) != 1:
        problems.append(f"files of several runs: tags {sorted(tags)}")
    return {"gid": gen.name, "tag": min(tags) if tags else None, "problems": problems}


_OPS = ("open", "rename", "replace", "link", "symlink", "unlink", "mkdir", "rmdir")


def _publish_in_child(data: Path, project: Path, tag: int, mode: str, k: int) -> int:
    """Publish ``tag`` in a forked child, killed at instant ``k``; return its wait status.

    ``ops``: the child dies (as with SIGKILL: no cleanup runs) just before its k-th filesystem
    operation of publishing, never for k = 0, and prints how many it made if it finishes;
    ``time``: SIGKILL k µs after it starts publishing, never for k < 0.
    """
    pid = os.fork()
    if pid == 0:
        safefs.remove_tree(data / ".staging" / "alpha")
        _stage(data / ".staging" / "alpha", tag)
        count = [0]
        if mode == "ops":
            def hook(fn):
                def wrapped(*a, **kw):
                    count[0] += 1
                    if count[0] == k:
                        os._exit(137)
                    return fn(*a, **kw)
                return wrapped
            for name in _OPS:
                setattr(os, name, hook(getattr(os, name)))
        else:
            os.kill(os.getpid(), signal.SIGSTOP)  # the parent times the kill from here
        _publish(data, project, tag)
        print(json.dumps({"ops": count[0]}), flush=True)
        os._exit(0)
    if mode == "time":
        os.waitpid(pid, os.WUNTRACED)
        os.kill(pid, signal.SIGCONT)
        if k >= 0:
            time.sleep(k / 1e6)
            os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def leftovers(data: Path) -> list[str]:
    """Temporaries, unfinished builds and staging left in ``data``."""
    return sorted(str(p.relative_to(data)) for p in data.rglob(".*")
                  if p.name != reproduce.LOCK)


def _kill_loop(data: str, project: str, mode: str, instants: str, recover: str) -> None:
    """Run in a subprocess: publish tag after tag, each killed at one instant (see
    :func:`_publish_in_child`), and print what a reader sees after each as a JSON line. With
    ``recover``, an unkilled publish follows each kill and must leave nothing behind."""
    data_p, project_p = Path(data), Path(project)
    last = observe(data_p)["tag"]
    tag = last or 0
    for k in json.loads(instants):
        runs = [(mode, k)] + ([("ops", 0)] if recover == "1" else [])
        for run_mode, run_k in runs:
            tag += 1
            status = _publish_in_child(data_p, project_p, tag, run_mode, run_k)
            seen = observe(data_p)
            if seen["tag"] not in (last, tag):
                seen["problems"].append(f"tag {seen['tag']} is neither the last ({last}) nor {tag}")
            if status == 0 and (seen["tag"] != tag or leftovers(data_p)):
                seen["problems"].append(f"a finished publish left {leftovers(data_p)}")
            last = seen["tag"]
            print(json.dumps({**seen, "k": run_k, "status": status}), flush=True)


def _run_kill_loop(tmp_path: Path, mode: str, instants: list[int], recover: bool = False
                   ) -> tuple[list[dict], list[int]]:
    """The observations after each publish, and the operation counts of finished ones."""
    (tmp_path / "project").mkdir(parents=True, exist_ok=True)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import test_publish as t; "
            "t._kill_loop(*sys.argv[2:])")
    r = subprocess.run([sys.executable, "-c", code, str(TESTS), str(tmp_path / "data"),
                        str(tmp_path / "project"), mode, json.dumps(instants),
                        "1" if recover else "0"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    return [x for x in lines if "ops" not in x], [x["ops"] for x in lines if "ops" in x]


@pytest.mark.slow
def test_a_kill_at_every_step_of_publishing_leaves_one_generation(tmp_path):
    # unkilled publishes until the folder is in its steady state (a publish prunes one
    # generation); every publish from this state makes the same operations
    seen, ops = _run_kill_loop(tmp_path, "ops", [0] * (generations.KEEP + 2))
    assert not any(s["problems"] for s in seen) and ops[-1] == ops[-2] > 50, (seen, ops)
    n_ops = ops[-1]
    # a kill before each of a spread of those operations, each followed by a clean publish
    rng = random.Random(20)
    instants = sorted({1, 2, n_ops - 1, n_ops, *rng.sample(range(3, n_ops - 1), 26)})
    seen, _ = _run_kill_loop(tmp_path, "ops", instants, recover=True)
    killed = seen[0::2]
    assert [s["status"] for s in killed] == [137 << 8] * len(instants)
    assert not [s for s in seen if s["problems"]], [s for s in seen if s["problems"]]
    # readers saw the old generation until the switch and the new one after it
    new = [s["k"] for s in killed if s["tag"] == seen[seen.index(s) - 1]["tag"] + 1
           if seen.index(s) > 0]
    assert 0 < len(new) < len(killed), [(s["k"], s["tag"]) for s in killed]
    _assert_clean(tmp_path / "data")


@pytest.mark.slow
def test_sigkill_at_random_instants_of_publishing_leaves_one_generation(tmp_path):
    rng = random.Random(7)
    seen, _ = _run_kill_loop(tmp_path, "time", [rng.randrange(0, 80_000) for _ in range(12)]
                             + [-1])
    assert not [s for s in seen if s["problems"]], [s for s in seen if s["problems"]]
    assert seen[-1]["tag"] == len(seen) and seen[-1]["status"] == 0
    assert 0 < sum(s["status"] == signal.SIGKILL for s in seen)
    _assert_clean(tmp_path / "data")


def _assert_clean(data: Path) -> None:
    """After an unkilled publish: no temporaries, no unfinished builds, at most KEEP kept."""
    assert leftovers(data) == []
    gens = sorted(p.name for p in (data / generations.GENERATIONS).iterdir())
    assert len(gens) <= generations.KEEP and generations.current_id(data) == gens[-1]
    for name in ("report.html", "claims.json", "claims", "charts", "notebooks"):
        assert os.readlink(data / name) == f"current/{name}"


def test_unchanged_files_are_hard_links_and_old_generations_are_pruned(tmp_path):
    data, project = tmp_path / "data", tmp_path / "project"
    project.mkdir()
    _stage(data / ".staging" / "alpha", 1)
    _publish(data, project, 1)
    first = generations.resolve(data)
    ids = [first.name]
    for tag in (2, 3, 4):
        with reproduce.lock(data), generations.building(data) as build:  # nothing changes
            reproduce.update_provenance(build.dir, [], generation=build.id)
        ids.append(generations.current_id(data))
    cur = generations.resolve(data)
    rec = Path("claims/published/K1.json")
    assert os.stat(cur / rec).st_ino == os.stat(data / rec).st_ino
    assert (cur / rec).stat().st_nlink == generations.KEEP  # one file shared by every generation kept
    assert sorted(p.name for p in (data / "generations").iterdir()) == ids[-generations.KEEP:]
    assert ids == ["000001", "000002", "000003", "000004"]


def test_a_data_folder_of_an_older_kmm_becomes_the_first_generation(tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("KMM_DATA_DIR", str(data))
    claims.record("K1", 0.1, explanation="old.", parameters={}, scenario="published")
    (data / "report.html").write_text("old report")
    (data / "sweeps").mkdir()
    with reproduce.lock(data), generations.building(data) as build:
        assert (build.dir / "claims" / "published" / "K1.json").is_file()
        (build.dir / "report.html").unlink()
        (build.dir / "report.html").write_text("new report")
    assert (data / "claims").is_symlink() and (data / "report.html").read_text() == "new report"
    assert claims.table()[0]["value"] == 0.1 and (data / "sweeps").is_dir()
    assert not (data / "sweeps").is_symlink()


def test_a_foreign_current_link_or_stable_name_is_refused(tmp_path, victim):
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(victim[0].parent, data / "current")
    with pytest.raises(ConfigError, match="not to a generation"):
        claims.table(data)
    os.unlink(data / "current")
    os.symlink(victim[0], data / "report.html")
    with pytest.raises(ConfigError, match="report.html: is a symbolic link"):
        with reproduce.lock(data), generations.building(data):
            pass
    os.unlink(data / "report.html")
    os.symlink(victim[0].parent, data / "generations")
    with pytest.raises(ConfigError, match="generations: is a symbolic link"):
        with reproduce.lock(data), generations.building(data):
            pass
    os.unlink(data / "generations")
    os.symlink(victim[0].parent, data / ".staging")
    with pytest.raises(ConfigError, match=".staging: is a symbolic link"):
        # what kmm reproduce and kmm run do first with a notebook's staging folder
        safefs.remove_tree(data / ".staging" / "alpha", root=data)
    with pytest.raises(ConfigError, match=".staging: is a symbolic link"):
        safefs.ensure_dir(data / ".staging" / "alpha" / "notebooks", root=data)
    assert untouched(victim) and not (data / "current").exists()
    assert sorted(p.name for p in victim[0].parent.iterdir()) == ["victim.txt"]


# ---- 3. corrupt records -----------------------------------------------------------------------
def test_a_corrupt_claim_record_or_provenance_is_named_never_a_traceback(tmp_path):
    data = tmp_path / "data"
    (data / "claims" / "published").mkdir(parents=True)
    (data / "claims" / "published" / "K1.json").write_text("{not json")
    (data / "claims" / "published" / "K2.json").write_text("[1, 2]")
    (data / "provenance.json").write_bytes(b"\xff\xfe")
    env = {**os.environ, "KMM_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "kmm.suite.cli", "claims"], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    warnings = r.stderr.splitlines()
    assert len(warnings) == 2 and all(w.startswith("kmm: warning: ") for w in warnings)
    assert "K1.json: unreadable claim record" in warnings[0] and "K2.json: not a claim" in warnings[1]
    from kmm.suite import report

    _, _, rows = report.write(data, tmp_path)  # the report is written all the same
    assert {r["id"]: r for r in rows}["K1"]["verdict"] == "not-evaluated"


# ---- 3. sweep integrity -----------------------------------------------------------------------
def _sweep(tmp_path, grid="quick", name="out"):
    from kmm.suite import sweep

    return sweep.plan(PROBE, grid, out_dir=tmp_path / name)


def _reference(tmp_path):
    import polars as pl

    from kmm.suite import sweep

    ref = _sweep(tmp_path, name="ref")
    sweep.run(ref, workers=1, progress=False)
    return pl.read_parquet(ref.merged_path)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "edited", "no record", "a folder",
                                    "a link", "record of another point"])
def test_a_damaged_point_is_set_aside_in_one_line_and_recomputed(tmp_path, capfd, victim, damage):
    import polars as pl

    from kmm.suite import points, sweep

    sw = _sweep(tmp_path)
    sweep.run(sw, workers=1, progress=False)
    h = sw.points[1].hash
    path = sw.point_path(h)
    rec = points.record_path(sw, h)
    if damage == "garbage":
        path.write_bytes(b"\x00garbage" * 10)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-20])
    elif damage == "edited":  # a valid frame with another value: only the checksum sees it
        pl.read_parquet(path).with_columns(pl.col("value") * 2).write_parquet(path)
    elif damage == "no record":
        rec.unlink()
    elif damage == "a folder":
        path.unlink()
        path.mkdir()
    elif damage == "a link":
        path.unlink()
        os.symlink(victim[0], path)
    else:
        rec.write_text(points.record_path(sw, sw.points[0].hash).read_text())
    capfd.readouterr()
    rep = sweep.run(sw, workers=1, progress=False)
    err = capfd.readouterr().err
    assert rep.ok and rep.ran == 1 and rep.done == len(sw.points), rep
    lines = [ln for ln in err.splitlines() if ln.startswith("kmm: warning: ")]
    assert len(lines) == 1 and f"points/{h}.parquet: " in lines[0] and "set aside" in lines[0], err
    assert "Traceback" not in err
    assert pl.read_parquet(sw.merged_path).equals(_reference(tmp_path))
    aside = sorted(p.name for p in (sw.dir / points.SET_ASIDE).iterdir())
    assert aside and all(n.startswith(h) for n in aside)
    assert untouched(victim)


def test_a_point_damaged_after_the_check_is_not_merged(tmp_path, capfd):
    from kmm.suite import points, sweep

    sw = _sweep(tmp_path)
    sweep.run(sw, workers=1, progress=False)
    h = sw.points[0].hash
    sw.point_path(h).write_bytes(b"garbage")
    merged = sweep.merge(sw, points.code_digest(sw))
    assert h not in set(merged["point_hash"]) and not sw.point_path(h).exists()
    assert "set aside" in capfd.readouterr().err


def test_a_point_computed_by_other_code_is_recomputed(tmp_path, monkeypatch, capfd):
    import polars as pl

    from kmm.suite import points, sweep

    mod = tmp_path / "mods" / "kmm_stale_probe.py"
    mod.parent.mkdir()
    mod.write_text("from kmm.suite.sweep import probe_point\n"
                   "def point(**kw):\n    return probe_point(**kw)\n")
    monkeypatch.syspath_prepend(str(mod.parent))
    pts = [{"seed": s, "n_values": 500, "scenario": "stale"} for s in range(3)]
    sw = sweep.make_sweep("stale", pts, runner="library", target="kmm_stale_probe:point",
                          out_dir=tmp_path / "out")
    sweep.run(sw, workers=1, progress=False)
    before = pl.read_parquet(sw.merged_path)
    code = points.code_digest(sw)
    # the model changes: every point's value doubles
    mod.write_text("from kmm.suite.sweep import probe_point\nimport polars as pl\n"
                   "def point(**kw):\n"
                   "    return probe_point(**kw).with_columns(pl.col('value') * 2)\n")
    monkeypatch.delitem(sys.modules, "kmm_stale_probe")
    assert points.code_digest(sw) != code
    capfd.readouterr()
    rep = sweep.run(sw, workers=1, progress=False)
    err = capfd.readouterr().err
    assert rep.ok and rep.ran == 3 and err.count("computed by other code") == 3, err
    after = pl.read_parquet(sw.merged_path)
    assert after["value"].to_list() == [2 * v for v in before["value"].to_list()]
    assert json.loads(sw.manifest_path.read_text())["code_digest"] == points.code_digest(sw)
    # the notebook of a notebook grid and every kmm source file are covered too
    nb = sweep.plan(PROBE, "nb", out_dir=tmp_path / "nb")
    assert points.code_digest(nb) != points.code_digest(sw)


# ---- 4. no orphans ----------------------------------------------------------------------------
def _children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with open(task / "children") as f:
            out |= {int(x) for x in f.read().split()}
    return out


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_kill_9_of_a_sweep_leaves_no_worker_running(tmp_path):
    code = ("from kmm.suite import sweep\n"
            "pts = [{'seed': s, 'n_values': 3_000_000, 'rounds': 400} for s in range(4)]\n"
            "sw = sweep.make_sweep('orphans', pts, runner='library',\n"
            "                      target='kmm.suite.sweep:probe_point', out_dir=r'%s')\n"
            "sweep.run(sw, workers=2, progress=False)\n" % (tmp_path / "out"))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            workers = {c for c in _children(proc.pid)
                       if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()}
            if len(workers) >= 2:
                break
            time.sleep(0.05)
        assert len(workers) >= 2, "the sweep started no workers"
        time.sleep(1.0)  # the workers are inside their points now
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_running(w) for w in workers):
            time.sleep(0.05)
        assert not [w for w in workers if _running(w)], "workers outlived their parent"
    finally:
        if proc.poll() is None:
            proc.kill()
        for w in workers:
            if _running(w):
                os.kill(w, signal.SIGKILL)
