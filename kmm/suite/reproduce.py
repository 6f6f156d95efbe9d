"""``kmm reproduce`` and ``kmm run``: run notebooks, then publish their results as one generation.

For each ``params/<stem>.yaml`` (or those named by ``--only``) the notebook runs with the
file's published scenario and ``scenario="published"``, in parallel over ``jobs`` processes.
Each run writes into its own staging folder ``<data>/.staging/<stem>/`` (its
``KMM_DATA_DIR``; its executed copy goes to ``notebooks/`` there), so a notebook that fails
half-way leaves none of its partial results behind, only its executed copy
``<stem>.failed.ipynb``.

Then the next generation is built (:mod:`kmm.suite.generations`): it starts as hard links of
the current one, each finished notebook's files are renamed into it, the notebooks marked
``run_last: true`` (the overview, which shows the claims table) run inside it, and
``provenance.json`` (which notebook produced which claims and charts, and how its latest run
went), ``claims.json`` and ``report.html`` are written there. Only then does ``<data>/current``
switch to it, in one rename: a reader sees the whole previous result set or the whole new one,
whenever the run is killed. The exit status is 1 if a notebook failed to run (or its params
file was refused), else 0: a claim that is not reproduced is a result, not a failure.

One command writes a data folder at a time (``<data>/.reproduce.lock``): ``kmm reproduce`` and
``kmm run --params`` hold it for their whole run, other ``kmm run`` only while they publish.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from ..errors import ConfigError, KmmError

PUBLISHED = "published"
STAGING = ".staging"
LOCK = ".reproduce.lock"
#: Result kinds moved from a staging folder into <data>, with the file suffix that names them.
_KINDS = {"claims": ".json", "charts": ".svg", "frames": ".parquet"}


@dataclass(frozen=True)
class Task:
    """One notebook to run: plain data, picklable for a worker process."""

    stem: str
    title: str
    notebook: str
    parameters: dict[str, Any]
    out_path: str
    data_dir: str
    cwd: str
    timeout: float | None
    #: the params file's ``expected_seconds`` (:func:`longest_first`)
    expected_seconds: float | None = None


def run_task(task: Task) -> dict[str, Any]:
    """Run one notebook (in a worker process); never raises for a notebook's own failure."""
    from . import nbrun

    t0 = time.perf_counter()
    data = Path(task.data_dir)
    try:
        nbrun.execute(Path(task.notebook), task.parameters, Path(task.out_path), cwd=Path(task.cwd),
                      timeout=task.timeout, data_dir=data)
        error = None
    except KmmError as e:
        error = e.line()
    except Exception as e:  # noqa: BLE001 (reported as this notebook's failure)
        error = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    return {"stem": task.stem, "ok": error is None, "error": error,
            "seconds": time.perf_counter() - t0}


@contextlib.contextmanager
def lock(data: Path, *, wait: bool = False) -> Iterator[None]:
    """One writer at a time per data folder: refuse at once, or with ``wait`` wait for it.

    The lock file is opened without following a link (:func:`kmm.suite.safefs.open_lock`).
    """
    from . import safefs

    fd = safefs.open_lock(data / LOCK, root=data)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise ConfigError("another kmm reproduce is writing here; wait for it to finish",
                                  str(data)) from None
            _say(f"waiting for another kmm command writing {data} to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


def results_in(base: Path, since: float | None = None) -> dict[str, list[str]]:
    """Stems of published claim records, charts and frames under ``base`` (newer than ``since``)."""
    out = {}
    for kind, suffix in _KINDS.items():
        d = base / kind / PUBLISHED
        files = sorted(d.glob(f"*{suffix}")) if d.is_dir() else []
        out[kind] = [p.stem for p in files if since is None or p.stat().st_mtime >= since]
    return out


def promote(staging: Path, dest: Path, *, ok: bool = True) -> dict[str, list[str]]:
    """Move the files of a finished run's staging folder into ``dest``; return what it made.

    A run that failed (``ok=False``) brings only its executed copies ``*.failed.ipynb``; one
    that finished removes the failed copy of each notebook it brings. Files are renamed,
    never written through a link (:func:`kmm.suite.safefs.move`).
    """
    from . import nbrun, safefs

    made = results_in(staging) if ok else {k: [] for k in _KINDS}
    for f in sorted(p for p in staging.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = f.relative_to(staging)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if not ok and not f.name.endswith(".failed.ipynb"):
            continue
        target = safefs.move(f, dest / rel, root=dest)
        if ok and rel.parts[0] == "notebooks" and f.suffix == ".ipynb":
            safefs.check_target(nbrun.failed_path(target))
            nbrun.failed_path(target).unlink(missing_ok=True)
    safefs.remove_tree(staging)
    return made


def _say(text: str) -> None:
    from .progress import say

    say(text)


def data_folder(root: Path) -> Path:
    """``$KMM_DATA_DIR`` or ``<root>/data`` (the user's folder: a link there is followed)."""
    return Path(os.environ.get("KMM_DATA_DIR") or root / "data").resolve()


def shown(data: Path, *rel: str) -> str:
    """A path under ``data`` as messages show it: through its stable name, not its generation."""
    from .params import display_path

    return str(Path(display_path(data), *rel))


def plan(root: Path, data: Path, only: Sequence[str] | None, timeout: float | None
         ) -> tuple[list[Task], list[Task], list[dict[str, Any]]]:
    """Tasks to run in parallel, tasks to run last, and params files refused (as failures).

    A parallel task runs in ``<data>/.staging/<stem>``; a task run last gets its folder (the
    generation being built) when it runs.
    """
    from . import params as P

    pdir = root / "params"
    files = {p.stem: p for p in sorted(pdir.glob("*.yaml"))} if pdir.is_dir() else {}
    if only:
        unknown = [s for s in only if s not in files]
        if unknown:
            known = ", ".join(files) or "none"
            raise ConfigError(f"no params file params/{unknown[0]}.yaml (params files: {known})",
                              "--only")
        files = {s: files[s] for s in dict.fromkeys(only)}
    first, last, refused = [], [], []
    for stem, path in files.items():
        try:
            pf = P.load(path)
        except KmmError as e:
            refused.append({"stem": stem, "ok": False, "error": e.line(), "seconds": 0.0,
                            "title": stem})
            continue
        staging = data / STAGING / stem
        task = Task(stem=stem, title=pf.title, notebook=str(pf.notebook),
                    parameters={**pf.scenario(), "scenario": PUBLISHED},
                    out_path=str(staging / "notebooks" / f"{stem}.ipynb"),
                    data_dir=str(staging), cwd=str(root), timeout=timeout,
                    expected_seconds=pf.expected_seconds)
        (last if pf.run_last else first).append(task)
    return first, last, refused


def longest_first(tasks: Sequence[Task], previous: dict[str, float]) -> list[Task]:
    """``tasks`` longest first, so the last to finish is a short one: each by its duration in
    this data folder's previous run (``previous``, :func:`kmm.suite.progress.previous_seconds`),
    else by its params file's ``expected_seconds``; ties (and unknowns, last) keep their
    order."""
    def length(t: Task) -> float:
        return previous.get(t.stem, t.expected_seconds or 0.0)

    return sorted(tasks, key=lambda t: -length(t))


def _progress(first: Sequence[Task], last: Sequence[Task], jobs: int, data: Path):
    """The progress board of this run (ETA from the previous run's durations); says first
    when kmm's kernels are not compiled yet."""
    from . import progress

    note = progress.cold_cache_note()
    if note:
        _say(f"kmm reproduce: {note}")
    board = progress.Board([t.stem for t in first], [t.stem for t in last], jobs,
                           progress.previous_seconds(data), cold=note is not None)
    left = board.remaining()
    if left is not None and board.order:
        _say(f"kmm reproduce: about {progress.duration(left)} by the previous run's durations")
    return board


def update_provenance(data: Path, results: list[dict[str, Any]],
                      generation: str | None = None) -> None:
    """Record in ``<data>/provenance.json`` how each notebook's latest run went."""
    from .claims import atomic_write_text
    from .report import load_provenance, now_iso

    prov = load_provenance(data)
    nbs = prov.setdefault("notebooks", {})
    for r in results:
        old = nbs.get(r["stem"], {})
        entry = {**old, "title": r.get("title", old.get("title", r["stem"])),
                 "status": "ok" if r["ok"] else "failed", "error": r["error"],
                 "seconds": round(r["seconds"], 1), "finished": now_iso(),
                 "params": f"params/{r['stem']}.yaml"}
        if r["ok"]:
            entry.update({k: r["made"][k] for k in _KINDS})
            entry["last_ok"] = entry["finished"]
        else:
            entry.setdefault("claims", [])
            entry.setdefault("charts", [])
            entry.setdefault("frames", [])
        nbs[r["stem"]] = entry
    if generation is not None:
        prov["generation"] = generation
    atomic_write_text(data / "provenance.json", json.dumps(prov, indent=1, sort_keys=True),
                      root=data)


def _clean_staging(data: Path) -> None:
    """Remove staging folders of ``kmm run`` processes that no longer run."""
    from . import safefs

    base = data / STAGING
    if not base.is_dir() or base.is_symlink():
        return
    for e in os.scandir(base):
        pid = e.name[4:] if e.name.startswith("run-") else ""
        if pid.isdigit() and not _alive(int(pid)):
            safefs.remove_tree(Path(e.path), root=data)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_parallel(first: list[Task], jobs: int, done, board) -> None:
    """Run ``first`` (``jobs`` at a time in worker processes), calling ``done(task, result)``
    as each finishes and telling the progress ``board`` what started."""
    if len(first) == 1 or (first and jobs == 1):
        for task in first:
            board.start(task.stem)
            done(task, run_task(task))
        return
    if not first:
        return
    from .workers import die_with_parent

    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(first)), mp_context=ctx,
                             initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(run_task, t): t for t in first}
        board.start_pool()
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                r = fut.result()
            except Exception as e:  # noqa: BLE001 (a worker that died)
                r = {"stem": task.stem, "ok": False, "seconds": 0.0,
                     "error": f"worker died: {type(e).__name__}: {e}"}
            done(task, r)


def main(only: Sequence[str] | None = None, jobs: int = 2, timeout: float | None = None) -> int:
    """Run the published scenarios and publish them with the report; the exit status of
    ``kmm reproduce``."""
    from . import generations, nbrun, progress, report, safefs
    from .cli import check_writable_dir
    from .params import display_path, project_root

    root = project_root()
    data = data_folder(root)
    check_writable_dir(data, "data folder")
    t_start = time.perf_counter()
    with lock(data), progress.Status() as status:
        generations.check(data)
        first, last, refused = plan(root, data, only, timeout)
        first = longest_first(first, progress.previous_seconds(data))
        results: list[dict[str, Any]] = []
        for r in refused:
            _say(f"refused {r['stem']}: {r['error']}")
        results += refused
        n = len(first) + len(last)
        _say(f"kmm reproduce: {n} notebook{'s' if n != 1 else ''}, {min(jobs, max(len(first), 1))} "
             f"at a time, results in {display_path(data)}")
        _clean_staging(data)
        for task in first:
            safefs.remove_tree(Path(task.data_dir), root=data)
            safefs.ensure_dir(Path(task.out_path).parent, root=data)
        staged: list[tuple[Task, dict[str, Any]]] = []
        board = _progress(first, last, jobs, data)
        status.render = board.status

        def finished(task: Task, r: dict[str, Any]) -> None:
            r["title"] = task.title
            if r["ok"]:
                _say(f"  ok      {task.stem} ({r['seconds']:.0f} s)  [{board.finish(task.stem)}]")
            else:
                _say(f"  FAILED  {task.stem} ({r['seconds']:.0f} s): {r['error']}  "
                     f"[{board.finish(task.stem, ok=False)}]")
            results.append(r)

        def ran(task: Task, r: dict[str, Any]) -> None:
            if r.get("error"):  # name the failed copy where it will be published
                kept = nbrun.failed_path(Path(task.out_path))
                r["error"] = r["error"].replace(display_path(kept),
                                                shown(data, "notebooks", kept.name))
            staged.append((task, r))
            finished(task, r)

        _run_parallel(first, jobs, ran, board)
        with generations.building(data) as build:
            for task, r in staged:
                r["made"] = promote(Path(task.data_dir), build.dir, ok=r["ok"])
            with contextlib.suppress(OSError):
                (data / STAGING).rmdir()  # only if empty: every staging folder was moved
            for task in last:
                task = replace(task, data_dir=str(build.dir),
                               out_path=str(build.dir / "notebooks" / f"{task.stem}.ipynb"))
                safefs.ensure_dir(build.dir / "notebooks", root=build.dir)
                started = time.time()
                board.start(task.stem)
                r = run_task(task)
                if r["ok"]:
                    r["made"] = results_in(build.dir, since=started)
                finished(task, r)
            update_provenance(build.dir, results, generation=build.id)
            _, _, table = report.write(build.dir, root,
                                       run={"failed": [r for r in results if not r["ok"]]})

    counts = report.summary(table)
    failed = [r for r in results if not r["ok"]]
    ok = len(results) - len(failed)
    print(f"kmm reproduce: {ok} of {len(results)} notebook{'s' if len(results) != 1 else ''} ran, "
          f"{len(failed)} failed, "
          f"{time.perf_counter() - t_start:.0f} s")
    print("claims: " + ", ".join(f"{counts[v]} {v}" for v in report.VERDICT_ORDER if counts[v])
          + f" (of {len(table)})")
    for r in failed:
        print(f"failed: {r['error']}")
    print(f"report: {shown(data, 'report.html')}")
    print(f"claims: {shown(data, 'claims.json')}")
    return 1 if failed else 0


def runs_last(notebook: Path, root: Path) -> bool:
    """Whether the notebook's params file marks it ``run_last`` (it reads the results of the
    others, so it runs inside the generation being built rather than in a staging folder)."""
    from . import params as P

    path = root / "params" / f"{notebook.stem}.yaml"
    return path.is_file() and P.load(path).run_last


def run_one(notebook: Path, values: dict[str, Any], label: str, *, root: Path, data: Path,
            out_dir: Path | None = None, timeout: float | None = None) -> Path:
    """``kmm run``: execute one notebook and publish its results as a new generation.

    The notebook runs in a staging folder (``run_last`` notebooks inside the generation being
    built); its results and executed copy are published only if it finishes, except the
    executed copy of a failed run (``<name>.failed.ipynb``). A run of a params file's published
    scenario (``label == "published"``) also records its status in provenance and rewrites the
    report. Returns the executed copy as the user should open it (through the stable names).

    Raises
    ------
    ConfigError : a user mistake (nothing published)
    RunFailed : the notebook started but failed (its failed copy is published)
    """
    from . import generations, nbrun, safefs
    from ..errors import RunFailed
    from .cli import executed_name
    from .params import display_path

    published = label == PUBLISHED
    name = executed_name(notebook.stem, label)
    last = runs_last(notebook, root)
    t0 = time.perf_counter()
    # published runs rewrite provenance and the report: one writer for the whole run, as
    # reproduce; a run_last notebook runs inside the generation being built
    held = lock(data, wait=not published) if published or last else contextlib.nullcontext()
    with held:
        generations.check(data)
        staging = data / STAGING / f"run-{os.getpid()}"
        if not last:
            safefs.remove_tree(staging, root=data)
            safefs.ensure_dir(staging / "notebooks", root=data)

        def execute(data_dir: Path, nb_dir: Path) -> tuple[KmmError | None, str]:
            out = (out_dir or nb_dir) / name
            try:
                nbrun.execute(notebook, values, out, cwd=root, timeout=timeout, data_dir=data_dir)
            except ConfigError:
                raise
            except KmmError as e:
                return e, display_path(nbrun.failed_path(out))
            return None, ""

        try:
            if last:
                with generations.building(data) as build:
                    started = time.time()
                    nb_dir = safefs.ensure_dir(build.dir / "notebooks", root=build.dir)
                    error, kept = execute(build.dir, nb_dir)
                    made = results_in(build.dir, since=started)
                    _finish_run(build, notebook, label, error, made, t0, root)
            else:
                error, kept = execute(staging, staging / "notebooks")
                with contextlib.nullcontext() if published else lock(data, wait=True):
                    with generations.building(data) as build:
                        made = promote(staging, build.dir, ok=error is None)
                        _finish_run(build, notebook, label, error, made, t0, root)
        finally:
            if not last:
                safefs.remove_tree(staging, root=data)
                with contextlib.suppress(OSError):
                    staging.parent.rmdir()
    if error is not None:
        message = error.message
        if kept and out_dir is None:  # name the failed copy where the user finds it
            message = message.replace(kept, shown(data, "notebooks", nbrun.failed_path(
                Path(name)).name))
        raise RunFailed(message, error.where)
    if published:
        _say(f"report: {shown(data, 'report.html')}")
    return Path(display_path(out_dir / name)) if out_dir else Path(shown(data, "notebooks", name))


def _finish_run(build, notebook: Path, label: str, error: KmmError | None,
                made: dict[str, list[str]], t0: float, root: Path) -> None:
    """Record a ``kmm run`` of a published scenario in the generation being built."""
    from . import report

    if label != PUBLISHED:
        return
    update_provenance(build.dir, [{"stem": notebook.stem, "ok": error is None,
                                   "error": error.line() if error else None,
                                   "seconds": time.perf_counter() - t0, "made": made}],
                      generation=build.id)
    report.write(build.dir, root)
