"""``kmm reproduce``: every notebook's published scenario, then the claims report.

For each ``params/<stem>.yaml`` (or those named by ``--only``) the notebook runs with the
file's published scenario and ``scenario="published"``, in parallel over ``jobs`` processes.
Each run writes into its own staging folder ``<data>/.staging/<stem>/`` (its
``KMM_DATA_DIR``); only when the notebook finished are its claim records, charts and frames
moved into ``<data>/``, file by file with renames, so a notebook that fails half-way leaves
none of its partial results behind and the previous run's results stay as they were.
Notebooks marked ``run_last: true`` (the overview, which shows the claims table) run after
the others, directly in ``<data>/``.

Then ``<data>/provenance.json`` (which notebook produced which claims and charts, and how its
latest run went), ``<data>/claims.json`` and ``<data>/report.html`` are written. The exit
status is 1 if a notebook failed to run (or its params file was refused), else 0: a claim
that is not reproduced is a result, not a failure.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
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
def lock(data: Path) -> Iterator[None]:
    """One ``kmm reproduce`` at a time per data folder."""
    with open(data / LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError("another kmm reproduce is writing here; wait for it to finish",
                              str(data)) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def results_in(base: Path, since: float | None = None) -> dict[str, list[str]]:
    """Stems of published claim records, charts and frames under ``base`` (newer than ``since``)."""
    out = {}
    for kind, suffix in _KINDS.items():
        d = base / kind / PUBLISHED
        files = sorted(d.glob(f"*{suffix}")) if d.is_dir() else []
        out[kind] = [p.stem for p in files if since is None or p.stat().st_mtime >= since]
    return out


def promote(staging: Path, data: Path) -> dict[str, list[str]]:
    """Move every file of a finished run's staging folder into ``data``; return what it made."""
    made = results_in(staging)
    for f in sorted(p for p in staging.rglob("*") if p.is_file()):
        dest = data / f.relative_to(staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f, dest)
    shutil.rmtree(staging, ignore_errors=True)
    return made


def _say(text: str) -> None:
    from .progress import say

    say(text)


def plan(root: Path, data: Path, only: Sequence[str] | None, timeout: float | None
         ) -> tuple[list[Task], list[Task], list[dict[str, Any]]]:
    """Tasks to run in parallel, tasks to run last, and params files refused (as failures)."""
    from . import params as P
    from .cli import check_writable_dir

    pdir = root / "params"
    files = {p.stem: p for p in sorted(pdir.glob("*.yaml"))} if pdir.is_dir() else {}
    if only:
        unknown = [s for s in only if s not in files]
        if unknown:
            known = ", ".join(files) or "none"
            raise ConfigError(f"no params file params/{unknown[0]}.yaml (params files: {known})",
                              "--only")
        files = {s: files[s] for s in dict.fromkeys(only)}
    out_dir = check_writable_dir(data / "notebooks", "data folder")
    first, last, refused = [], [], []
    for stem, path in files.items():
        try:
            pf = P.load(path)
        except KmmError as e:
            refused.append({"stem": stem, "ok": False, "error": e.line(), "seconds": 0.0,
                            "title": stem})
            continue
        staged = not pf.run_last
        task = Task(stem=stem, title=pf.title, notebook=str(pf.notebook),
                    parameters={**pf.scenario(), "scenario": PUBLISHED},
                    out_path=str(out_dir / f"{stem}.ipynb"),
                    data_dir=str(data / STAGING / stem if staged else data), cwd=str(root),
                    timeout=timeout)
        (last if pf.run_last else first).append(task)
    return first, last, refused


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


def update_provenance(data: Path, results: list[dict[str, Any]]) -> None:
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
    atomic_write_text(data / "provenance.json", json.dumps(prov, indent=1, sort_keys=True))


def main(only: Sequence[str] | None = None, jobs: int = 2, timeout: float | None = None) -> int:
    """Run the published scenarios and write the report; the exit status of ``kmm reproduce``."""
    from . import progress, report
    from .cli import check_writable_dir
    from .params import display_path, project_root

    root = project_root()
    data = Path(os.environ.get("KMM_DATA_DIR") or root / "data").resolve()
    check_writable_dir(data, "data folder")
    t_start = time.perf_counter()
    with lock(data), progress.Status() as status:
        first, last, refused = plan(root, data, only, timeout)
        results: list[dict[str, Any]] = []
        for r in refused:
            _say(f"refused {r['stem']}: {r['error']}")
        results += refused
        n = len(first) + len(last)
        _say(f"kmm reproduce: {n} notebook{'s' if n != 1 else ''}, {min(jobs, max(len(first), 1))} "
             f"at a time, results in {display_path(data)}")
        board = _progress(first, last, jobs, data)
        status.render = board.status

        def finished(task: Task, r: dict[str, Any]) -> None:
            r["title"] = task.title
            if r["ok"]:
                staging = Path(task.data_dir)
                r["made"] = promote(staging, data) if staging != data else \
                    results_in(data, since=r["started"])
                _say(f"  ok      {task.stem} ({r['seconds']:.0f} s)  [{board.finish(task.stem)}]")
            else:
                if Path(task.data_dir) != data:
                    shutil.rmtree(task.data_dir, ignore_errors=True)
                _say(f"  FAILED  {task.stem} ({r['seconds']:.0f} s): {r['error']}  "
                     f"[{board.finish(task.stem, ok=False)}]")
            results.append(r)

        for task in first:
            shutil.rmtree(task.data_dir, ignore_errors=True)
        if len(first) == 1 or (first and jobs == 1):
            for task in first:
                board.start(task.stem)
                r = {**run_task(task), "started": None}
                finished(task, r)
        elif first:
            ctx = get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(jobs, len(first)), mp_context=ctx) as pool:
                futures = {pool.submit(run_task, t): t for t in first}
                board.start_pool()
                for fut in as_completed(futures):
                    task = futures[fut]
                    try:
                        r = fut.result()
                    except Exception as e:  # noqa: BLE001 (a worker that died)
                        r = {"stem": task.stem, "ok": False, "seconds": 0.0,
                             "error": f"worker died: {type(e).__name__}: {e}"}
                    finished(task, {**r, "started": None})
        with contextlib.suppress(OSError):
            (data / STAGING).rmdir()  # only if empty: every staging folder was moved or removed
        for task in last:
            started = time.time()
            board.start(task.stem)
            finished(task, {**run_task(task), "started": started})

        update_provenance(data, results)
        page, claims_json, table = report.write(data, root, run={
            "failed": [r for r in results if not r["ok"]]})

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
    print(f"report: {display_path(page)}")
    print(f"claims: {display_path(claims_json)}")
    return 1 if failed else 0
