"""``kmm sweep``: run a params grid point by point, resumably, on local processes or Dask.

A sweep is one grid of one params file (``params/<stem>.yaml``, ``grids.<name>``). Each point is
a full dict of parameter values, identified by :func:`kmm.config.config_hash` of its values,
the runner's target (notebook file name or ``module:function``) and the kmm version. A point
runs either by executing the notebook with papermill (``runner: notebook``, through
:func:`kmm.suite.nbrun.execute`) or by calling the grid's ``function`` with the point's values
(``runner: library``), which returns a tidy polars frame (:mod:`kmm.results`). The runner
sets the reserved ``scenario`` parameter to the sweep's name, so sweep rows are never taken
for the published scenario, and adds a ``point_hash`` column to every row and, for a params
grid, one column ``point_<axis>`` per axis holding the point's value of it (a notebook's own
rows vary other parameters, so the grid's axes are kept apart from its columns).

Layout under the output folder ``<out>`` (default ``data/sweeps``, see :func:`plan`), for sweep ``<sweep>`` =
``<stem>-<grid>``::

    <out>/<sweep>.parquet              all done points merged, sorted by point_hash then metric
    <out>/<sweep>.lock                 exclusive lock (flock) held while a sweep writes here
    <out>/<sweep>/points/<hash>.parquet   one point's tidy rows (written atomically)
    <out>/<sweep>/points/<hash>.json      its record: checksum and digest of the code that made it
    <out>/<sweep>/set-aside/              point files found damaged or stale, kept for inspection
    <out>/<sweep>/notebooks/<hash>.ipynb  the executed notebook of a notebook point
    <out>/<sweep>/work/<hash>/            that point's KMM_DATA_DIR (frames, claims, charts)
    <out>/<sweep>/ledger.jsonl            one line per finished point: done, or failed + error
    <out>/<sweep>/manifest.json           status of every point of the grid, at the end of a run

A point is done exactly when its ``points/<hash>.parquet`` exists and is sound
(:mod:`kmm.suite.points`: it matches the checksum in its record, written before it, and was
computed by the code running now; anything else is set aside with one warning line and
computed again). The rows file is renamed into place only after its rows are complete, so a
sweep killed at any instant (SIGKILL included) loses only the points that were running, and a
rerun runs exactly the points not done. Points recorded as failed in the ledger are skipped on
a rerun unless ``retry_failed`` is given. Only the process holding the lock writes
``points/``, the ledger, the manifest and the merged file, never through a link
(:mod:`kmm.suite.safefs`); workers (local processes or Dask workers) return each point's frame
to it, and local workers die with it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import config_hash
from ..errors import ConfigError, KmmError
from . import argtypes

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

RUNNERS = ("notebook", "library")
POINT_COLUMN = "point_hash"
DONE, FAILED, PENDING = "done", "failed", "pending"

# Papermill starts each kernel with the environment of the calling process, so nbrun sets a
# point's KMM_DATA_DIR in os.environ around its run; this lock keeps two threads of one
# process (a threaded Dask worker) from starting kernels with each other's value.
_ENV_LOCK = threading.Lock()


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Point:
    """One grid point: its identifying hash and its full parameter values."""

    hash: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Sweep:
    """A planned sweep: its points, how each runs, and where results go.

    Build one with :func:`plan` (from a params file) or :func:`make_sweep` (from points).
    """

    name: str
    runner: str
    target: str
    points: tuple[Point, ...]
    out_dir: Path
    root: Path
    notebook: Path | None = None
    params_path: Path | None = None
    grid: str | None = None
    timeout_s: float | None = None
    axes: tuple[str, ...] = ()

    @property
    def dir(self) -> Path:
        return self.out_dir / self.name

    @property
    def points_dir(self) -> Path:
        return self.dir / "points"

    @property
    def notebooks_dir(self) -> Path:
        return self.dir / "notebooks"

    @property
    def work_dir(self) -> Path:
        return self.dir / "work"

    @property
    def ledger_path(self) -> Path:
        return self.dir / "ledger.jsonl"

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def merged_path(self) -> Path:
        return self.out_dir / f"{self.name}.parquet"

    @property
    def lock_path(self) -> Path:
        return self.out_dir / f"{self.name}.lock"

    def point_path(self, h: str) -> Path:
        return self.points_dir / f"{h}.parquet"


def point_hash(params: Mapping[str, Any], runner: str, target: str) -> str:
    """The identity of a point: its values, what runs it, and the kmm version.

    ``target`` is the notebook's file name or the ``module:function`` of a library grid, never
    an absolute path, so the same point hashes alike on every machine of a cluster.
    """
    return config_hash({"params": dict(params), "runner": runner, "target": target})


def make_sweep(name: str, points: Iterable[Mapping[str, Any]], *, runner: str, target: str,
               out_dir: Path | str, root: Path | str | None = None,
               notebook: Path | None = None, params_path: Path | None = None,
               grid: str | None = None, timeout_s: float | None = None,
               axes: Sequence[str] = ()) -> Sweep:
    """A :class:`Sweep` over explicit points.

    Parameters
    ----------
    name : folder-safe sweep name (``<stem>-<grid>`` for params grids)
    points : full parameter dicts, one per point, each passed whole to the runner
    runner : ``"notebook"`` or ``"library"``
    target : notebook file name (notebook runner) or ``"module:function"`` (library runner)
    out_dir : folder that receives ``<name>/`` and ``<name>.parquet``
    root : working directory of notebook kernels (the project root)
    notebook : path of the notebook to execute (notebook runner)
    timeout_s : per-cell execution timeout of notebook points (None: no limit)
    axes : the parameters the grid varies: each gets a ``point_<axis>`` column in every row

    Raises
    ------
    ConfigError : unknown runner, no points, or two points with the same values
    """
    where = f"{params_path}: grids.{grid}" if params_path else name
    if runner not in RUNNERS:
        raise ConfigError(f"runner must be one of {', '.join(RUNNERS)}, got {runner!r}", where)
    if runner == "library" and ":" not in str(target):
        raise ConfigError(f"function must be 'module:function', got {target!r}", where)
    if runner == "notebook" and notebook is None:
        raise ConfigError("a notebook grid needs its notebook", where)
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"sweep name must be a plain folder name, got {name!r}", where)
    seen: dict[str, Mapping[str, Any]] = {}
    out: list[Point] = []
    for p in points:
        p = dict(p)
        h = point_hash(p, runner, str(target))
        if h in seen:
            raise ConfigError(f"the grid holds the same point twice: {_short(p)}", where)
        seen[h] = p
        out.append(Point(h, p))
    if not out:
        raise ConfigError("the grid has no points", where)
    return Sweep(name=name, runner=runner, target=str(target), points=tuple(out),
                 out_dir=Path(out_dir), root=Path(root) if root else Path.cwd(),
                 notebook=Path(notebook) if notebook else None, params_path=params_path,
                 grid=grid, timeout_s=timeout_s, axes=tuple(axes))


def plan(params_path: Path | str, grid: str | None = None, *, out_dir: Path | str | None = None,
         timeout_s: float | None = None) -> Sweep:
    """Expand grid ``grid`` of a params file into a :class:`Sweep`.

    ``grid`` may be omitted when the file declares exactly one grid. The output folder
    defaults to ``$KMM_DATA_DIR/sweeps`` if that is set, else ``data/sweeps`` under the
    project root (:func:`kmm.suite.params.project_root` of the params file). Notebook kernels
    run in the project root.

    Raises
    ------
    ConfigError : the params file is invalid, the grid is unknown or empty
    """
    from . import params as params_mod

    path = Path(params_path)
    where = params_mod.display_path(path)
    if not path.is_file():
        raise ConfigError("no such params file", where)
    pf = params_mod.load(path)
    names = list(pf.grids)
    listed = ", ".join(names) if names else "none"
    if grid is None:
        if len(names) != 1:
            raise ConfigError(f"give --grid: the file declares {len(names)} grids ({listed})",
                              where)
        grid = names[0]
    elif grid not in names:
        raise ConfigError(f"unknown grid {grid!r} (grids: {listed})", where)
    spec = pf.grid_spec(grid)
    name = f"{path.stem}-{grid}"
    points = pf.grid(grid)
    if "scenario" in pf.defaults():
        # the rows of a sweep are labelled with the sweep, never "published" or "small"
        points = [{**p, "scenario": name} for p in points]
    notebook = Path(pf.notebook)
    if spec.runner == "library":
        check_kmm_function(spec.function, f"{where}: grids.{grid}.function")
    target = spec.function if spec.runner == "library" else notebook.name
    root = params_mod.project_root(path.resolve().parent)
    if out_dir is None:
        env = os.environ.get("KMM_DATA_DIR")
        out_dir = (Path(env) if env else root / "data") / "sweeps"
    return make_sweep(name, points, runner=spec.runner, target=target, out_dir=out_dir,
                      root=root, notebook=notebook, params_path=path, grid=grid,
                      timeout_s=timeout_s, axes=[*spec.product, *spec.zip])


# --------------------------------------------------------------------------- one point


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to run one point; plain data, picklable, no open files."""

    sweep: str
    hash: str
    params: Mapping[str, Any]
    runner: str
    target: str
    root: str
    notebook: str | None
    notebook_out: str | None
    work_dir: str | None
    timeout_s: float | None = None
    axes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What a worker returns: the point's frame (with its ``point_hash`` column) or an error."""

    hash: str
    frame: Any = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def one_line(exc: BaseException) -> str:
    """A failure as one line: a KmmError's own line, else ``Type: first line of message``."""
    if isinstance(exc, KmmError):
        text = exc.line()
    else:
        msg = str(exc).strip()
        text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
        where = _innermost_frame(exc)
        if where:  # a bug, not bad input: name where it was raised
            text += f" (at {where})"
    text = " ".join(text.split())
    return text if len(text) <= 400 else text[:397] + "..."


def _innermost_frame(exc: BaseException) -> str:
    """``file.py:line in function`` of the innermost frame of ``exc``'s traceback in kmm
    (installed or not) or outside the standard library and installed packages (a grid's
    own function), or ``""``."""
    import sysconfig
    import traceback

    own = str(Path(__file__).resolve().parents[1]) + os.sep
    libs = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")})
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename.startswith(own)
              or not (f.filename.startswith(libs) or f.filename.startswith("<"))]
    if not frames:
        return ""
    f = frames[-1]
    return f"{Path(f.filename).name}:{f.lineno} in {f.name}"


def run_point(task: Task) -> Outcome:
    """Run one point and return its tidy frame, or its error as one line; never raises.

    The notebook runner gives the point a fresh KMM_DATA_DIR (``work/<hash>``, emptied first,
    so nothing of an interrupted earlier attempt is collected), executes the notebook into
    ``notebooks/<hash>.ipynb`` and reads every parquet frame the notebook saved there. The
    library runner calls the grid's function with the point's values.
    """
    import polars  # noqa: F401  (its import is worker start-up, not the point's work)

    t0 = time.perf_counter()
    try:
        if task.runner == "library":
            df = _call_library(task)
        else:
            df = _run_notebook(task)
        df = _with_point_columns(df, task.hash, {a: task.params[a] for a in task.axes})
        return Outcome(task.hash, frame=df, seconds=time.perf_counter() - t0)
    except (Exception, SystemExit) as e:  # a failing point never stops the others
        return Outcome(task.hash, error=one_line(e), seconds=time.perf_counter() - t0)


def resolve_function(target: str) -> Callable[..., Any]:
    """Import ``module:function`` (dots allowed after the colon for attributes)."""
    import importlib

    mod_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(mod_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot import {target!r}: {e}", "function") from None
    if not callable(obj):
        raise ConfigError(f"{target!r} is not callable", "function")
    return obj


def check_kmm_function(target: str, where: str = "function") -> Callable[..., Any]:
    """The function a params file's library grid names, if it is a public function of kmm.

    A grid is untrusted input, so its ``function:`` must be ``kmm.<module>:<name>`` with a
    public name, and the object found a function defined in kmm (not a class, and not a
    function another package defines that a kmm module happens to import, such as
    ``kmm.suite.sweep:shutil.rmtree``). Checked in the parent before any point runs.
    """
    import inspect

    mod_name, _, attr = target.partition(":")
    names = [*mod_name.split("."), *attr.split(".")]
    if (mod_name != "kmm" and not mod_name.startswith("kmm.")) or "." in attr or not all(
            n.isidentifier() and not n.startswith("_") for n in names):
        raise ConfigError(f"must name a public function of kmm (kmm.<module>:<name>), "
                          f"got {target[:80]!r}", where)
    try:
        fn = resolve_function(target)
    except ConfigError as e:
        raise ConfigError(e.message, where) from None
    module = getattr(inspect.unwrap(fn), "__module__", None) or ""
    if not inspect.isfunction(inspect.unwrap(fn)) or not (module == "kmm" or
                                                            module.startswith("kmm.")):
        raise ConfigError(f"{target!r} is not a function defined in kmm", where)
    return fn


def _call_library(task: Task) -> pl.DataFrame:
    import polars as pl

    from ..results import validate

    fn = resolve_function(task.target)
    df = fn(**dict(task.params))
    if not isinstance(df, pl.DataFrame):
        raise KmmError(f"returned {type(df).__name__}, expected a polars DataFrame", task.target)
    return validate(df)


def _run_notebook(task: Task) -> pl.DataFrame:
    assert task.notebook and task.notebook_out and task.work_dir
    from . import nbrun, safefs

    work = Path(task.work_dir)
    safefs.remove_tree(work)  # the parent made the folders above it; a link here is refused
    safefs.ensure_dir(work, root=work.parent)
    out = Path(task.notebook_out)

    with _ENV_LOCK:
        nbrun.execute(Path(task.notebook), dict(task.params), out, cwd=Path(task.root),
                      timeout=task.timeout_s, data_dir=work, html=False)
    return collect_frames(work, where=Path(task.notebook).name)


def collect_frames(data_dir: Path, *, where: str = "") -> pl.DataFrame:
    """Concatenate every tidy frame saved under ``data_dir`` (sorted by relative path).

    Raises
    ------
    KmmError : the notebook saved no frame, or a frame breaks the tidy schema
    """
    import polars as pl

    from ..results import validate

    files = sorted(p for p in data_dir.rglob("*.parquet")
                   if not any(part.startswith(".") for part in p.relative_to(data_dir).parts))
    if not files:
        raise KmmError("the notebook saved no result frame (kmm.suite.io.save_frame)", where)
    frames = []
    for f in files:
        try:
            frames.append(validate(pl.read_parquet(f)))
        except ValueError as e:
            raise KmmError(f"{f.relative_to(data_dir)}: {e}", where) from None
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


def _with_point_columns(df: pl.DataFrame, h: str,
                        axes: Mapping[str, Any] | None = None) -> pl.DataFrame:
    """``df`` with its point's hash in ``point_hash`` and its value of each grid axis in
    ``point_<axis>`` (a value that is not a number, string or boolean is kept as JSON)."""
    import polars as pl

    cols = {POINT_COLUMN: pl.lit(h, dtype=pl.Utf8)}
    for a, v in (axes or {}).items():
        plain = isinstance(v, (bool, int, float, str))
        cols[f"point_{a}"] = pl.lit(v if plain else json.dumps(v, sort_keys=True, default=str))
    df = df.drop([c for c in cols if c in df.columns])
    return df.with_columns([e.alias(c) for c, e in cols.items()])


# --------------------------------------------------------------------------- state on disk


@dataclass
class PointState:
    """A point's status as read from disk: done, failed (with error) or pending."""

    status: str
    error: str | None = None
    seconds: float | None = None


def read_ledger(sweep: Sweep) -> dict[str, dict]:
    """The last ledger record of each point; a line cut short by a kill is ignored."""
    from . import safefs

    last: dict[str, dict] = {}
    try:
        text = safefs.read_bytes(sweep.ledger_path).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return last
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "hash" in rec:
            last[rec["hash"]] = rec
    return last


def status(sweep: Sweep) -> dict[str, PointState]:
    """Status of every point of ``sweep``: done iff its points file exists (:func:`run` first
    sets aside every points file that is not sound, :func:`kmm.suite.points.check`)."""
    ledger = read_ledger(sweep)
    out: dict[str, PointState] = {}
    for p in sweep.points:
        rec = ledger.get(p.hash, {})
        if sweep.point_path(p.hash).is_file():
            out[p.hash] = PointState(DONE, seconds=rec.get("seconds"))
        elif rec.get("status") == FAILED:
            out[p.hash] = PointState(FAILED, rec.get("error"), rec.get("seconds"))
        else:
            out[p.hash] = PointState(PENDING)
    return out


class _Ledger:
    """Append-only JSON lines; each record is flushed and fsynced before the next point."""

    def __init__(self, path: Path, root: Path):
        from . import safefs

        self._f = safefs.open_append(path, root=root)

    def append(self, rec: dict) -> None:
        self._f.write(json.dumps(rec, sort_keys=True, default=str) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


@contextlib.contextmanager
def sweep_lock(sweep: Sweep):
    """Hold the exclusive lock of ``sweep``'s output, or raise at once if another holds it.

    Raises
    ------
    KmmError : another sweep is writing to the same output (one line naming the lock file)
    """
    from . import safefs

    _make_dirs(sweep)
    fd = safefs.open_lock(sweep.lock_path, root=sweep.out_dir)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KmmError("another sweep is writing this output; wait for it to finish",
                           str(sweep.lock_path)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


def _make_dirs(sweep: Sweep) -> None:
    """Create the sweep's folders; below ``out_dir`` (the user's) each must be a real folder."""
    from . import safefs

    try:
        sweep.out_dir.mkdir(parents=True, exist_ok=True)
        dirs = [sweep.points_dir]
        if sweep.runner == "notebook":
            dirs += [sweep.notebooks_dir, sweep.work_dir]
        for d in dirs:
            safefs.ensure_dir(d, root=sweep.out_dir)
        for f in (sweep.merged_path, sweep.manifest_path):  # refused before any point runs
            safefs.check_target(f)
        if not os.access(sweep.dir, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        raise KmmError(f"cannot write the sweep output: {e.strerror or e}",
                       str(sweep.out_dir)) from None


def _clean_temporaries(sweep: Sweep) -> None:
    """Remove temporary files a killed run of this sweep left (only called under its lock).

    Only this sweep's own names are touched: other sweeps may share ``out_dir``. Links are
    removed, never followed.
    """
    from . import safefs

    leftovers = [*sweep.out_dir.glob(f".{sweep.merged_path.name}.*.tmp"),
                 *sweep.dir.glob(f".{sweep.manifest_path.name}.*.tmp")]
    for tmp in leftovers:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    for d in (sweep.points_dir, sweep.notebooks_dir):
        safefs.clean_temporaries(d, any_pid=True)


def merge(sweep: Sweep, code: str | None = None) -> pl.DataFrame | None:
    """Merge every done point of ``sweep`` into ``<out>/<sweep>.parquet``, atomically.

    Rows are ordered by ``point_hash`` then ``metric``, keeping each point's own row order
    among equal keys, so the file depends only on which points are done, not on the order or
    place they ran. Each point is checked as it is read (:func:`kmm.suite.points.load`; one
    that is not sound is set aside, not merged). Returns the merged frame, or None (and writes
    nothing) if no point is done.
    """
    import polars as pl

    from . import points as P
    from . import safefs

    code = code or P.code_digest(sweep)
    hashes = sorted(p.hash for p in sweep.points if os.path.lexists(sweep.point_path(p.hash)))
    frames = [f for f in (P.load(sweep, h, code) for h in hashes) if f is not None]
    if not frames:
        return None
    df = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    df = df.sort([POINT_COLUMN, "metric"], maintain_order=True)
    safefs.write_with(sweep.merged_path, df.write_parquet, root=sweep.out_dir)
    return df


def write_manifest(sweep: Sweep, states: Mapping[str, PointState] | None = None,
                   code: str | None = None) -> dict:
    """Write ``manifest.json``: every point's values and status (failed ones with their error)."""
    from .. import __version__

    states = states if states is not None else status(sweep)
    points = []
    for p in sweep.points:
        st = states[p.hash]
        rec: dict[str, Any] = {"hash": p.hash, "status": st.status, "params": dict(p.params)}
        if st.error:
            rec["error"] = st.error
        if st.seconds is not None:
            rec["seconds"] = round(float(st.seconds), 3)
        points.append(rec)
    counts = {s: sum(1 for st in states.values() if st.status == s) for s in (DONE, FAILED, PENDING)}
    manifest = {"sweep": sweep.name, "params_file": str(sweep.params_path or ""),
                "grid": sweep.grid, "runner": sweep.runner, "target": sweep.target,
                "kmm_version": __version__, "code_digest": code, "counts": counts,
                "points": points}
    from . import safefs

    safefs.write_text(sweep.manifest_path, json.dumps(manifest, indent=1, sort_keys=True,
                                                      default=str) + "\n", root=sweep.out_dir)
    return manifest


# --------------------------------------------------------------------------- running


@dataclass
class Report:
    """What a run did: counts, failures (hash -> error) and where the merged frame is."""

    sweep: str
    total: int
    done: int
    failed: dict[str, str]
    pending: int
    ran: int
    skipped: int
    merged_path: Path | None
    merged_rows: int
    wall_s: float
    point_s: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and self.pending == 0

    def line(self) -> str:
        where = (f"{self.merged_rows} rows -> {self.merged_path}" if self.merged_path
                 else "nothing merged")
        return (f"sweep {self.sweep}: {self.done} done, {len(self.failed)} failed, "
                f"{self.pending} left of {self.total} ({self.ran} run, {self.skipped} skipped, "
                f"{self.wall_s:.1f} s); {where}")


def default_workers() -> int:
    """All the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def tasks_for(sweep: Sweep, points: Iterable[Point]) -> list[Task]:
    """The worker tasks of ``points`` (absolute paths, so any working directory works)."""
    tasks = []
    for p in points:
        nb = sweep.runner == "notebook"
        tasks.append(Task(
            sweep=sweep.name, hash=p.hash, params=dict(p.params), runner=sweep.runner,
            target=sweep.target, root=str(sweep.root.resolve()),
            notebook=str(sweep.notebook.resolve()) if nb and sweep.notebook else None,
            notebook_out=str((sweep.notebooks_dir / f"{p.hash}.ipynb").resolve()) if nb else None,
            work_dir=str((sweep.work_dir / p.hash).resolve()) if nb else None,
            timeout_s=sweep.timeout_s, axes=sweep.axes))
    return tasks


def run(sweep: Sweep, *, workers: int | None = None, scheduler: str | None = None,
        retry_failed: bool = False, progress: bool | None = None,
        connect_timeout_s: float = 15.0) -> Report:
    """Run every point of ``sweep`` that is not done, then merge all done points.

    Parameters
    ----------
    workers : local worker processes (default: all cores); 1 runs the points in this process
    scheduler : address of a running dask.distributed scheduler (``tcp://host:8786``); the
        points then run on its workers, which must see the same filesystem paths for
        notebook grids (library grids only need kmm importable on the workers)
    retry_failed : also rerun the points a previous run recorded as failed
    progress : show a tqdm bar (done, failed, remaining, ETA); None: only on a terminal
    connect_timeout_s : how long to wait for the Dask scheduler to answer

    Returns
    -------
    Report : counts, failures and the merged file; a failing point never raises here

    Raises
    ------
    KmmError : another sweep holds the lock, the output is not writable, or the scheduler
        cannot be reached
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"must be >= 1, got {workers}", "--workers")
    t0 = time.perf_counter()
    from . import points as P

    with sweep_lock(sweep):
        _clean_temporaries(sweep)
        code = P.code_digest(sweep)
        P.check(sweep, code)  # a damaged or stale point is set aside and computed again
        before = status(sweep)
        todo = [p for p in sweep.points
                if before[p.hash].status == PENDING
                or (retry_failed and before[p.hash].status == FAILED)]
        n_done = sum(st.status == DONE for st in before.values())
        failed = {h: st.error or "" for h, st in before.items()
                  if st.status == FAILED and not retry_failed}
        ledger = _Ledger(sweep.ledger_path, sweep.out_dir)
        bar = _progress(len(sweep.points), n_done + len(failed), progress, sweep.name)
        point_s: list[float] = []
        ran = 0

        def on_outcome(o: Outcome) -> None:
            nonlocal n_done, ran
            ran += 1
            point_s.append(o.seconds)
            if o.ok:
                P.save(sweep, o.hash, o.frame, code=code, seconds=o.seconds)
                ledger.append({"hash": o.hash, "status": DONE, "seconds": round(o.seconds, 3)})
                failed.pop(o.hash, None)
                n_done += 1
            else:
                ledger.append({"hash": o.hash, "status": FAILED, "error": o.error,
                               "seconds": round(o.seconds, 3)})
                failed[o.hash] = o.error or ""
            if bar is not None:
                bar.set_postfix(done=n_done, failed=len(failed),
                                left=len(sweep.points) - n_done - len(failed), refresh=False)
                bar.update(1)

        try:
            if todo:
                _dispatch(tasks_for(sweep, todo), on_outcome, workers=workers,
                          scheduler=scheduler, connect_timeout_s=connect_timeout_s)
        finally:
            ledger.close()
            if bar is not None:
                bar.close()
            states = status(sweep)
            write_manifest(sweep, states, code)
        merged = merge(sweep, code)
        if status(sweep) != states:  # merging set a point aside
            states = status(sweep)
            write_manifest(sweep, states, code)
    pending = sum(st.status == PENDING for st in states.values())
    return Report(sweep=sweep.name, total=len(sweep.points),
                  done=sum(st.status == DONE for st in states.values()),
                  failed={h: st.error or "" for h, st in states.items() if st.status == FAILED},
                  pending=pending, ran=ran, skipped=len(sweep.points) - len(todo),
                  merged_path=sweep.merged_path if merged is not None else None,
                  merged_rows=0 if merged is None else merged.height,
                  wall_s=time.perf_counter() - t0, point_s=point_s)


def _progress(total: int, initial: int, progress: bool | None, name: str):
    if progress is False:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="point", desc=name, dynamic_ncols=True,
                disable=None if progress is None else False, file=sys.stderr)


def _dispatch(tasks: list[Task], on_outcome: Callable[[Outcome], None], *,
              workers: int | None, scheduler: str | None, connect_timeout_s: float) -> None:
    if scheduler:
        _run_dask(tasks, on_outcome, scheduler, connect_timeout_s)
        return
    n = min(workers or default_workers(), len(tasks))
    if n <= 1:
        for t in tasks:
            on_outcome(run_point(t))
        return
    _run_processes(tasks, on_outcome, n)


def _run_processes(tasks: list[Task], on_outcome: Callable[[Outcome], None], n: int) -> None:
    """Run ``tasks`` on ``n`` spawned processes (spawned: no inherited lock fd or threads).

    When a worker process dies (a crash, the OOM killer) the pool cannot say which point
    killed it, so every point in flight then is rerun alone in a fresh process: one that
    dies alone is recorded as failed, the others finish normally.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from .workers import die_with_parent

    ctx = multiprocessing.get_context("spawn")
    queue = list(tasks)
    while queue:
        with ProcessPoolExecutor(max_workers=min(n, len(queue)), mp_context=ctx,
                                 initializer=die_with_parent, initargs=(os.getpid(),)) as ex:
            queue, suspects = _drain(ex, queue, on_outcome, limit=n + 1,
                                     broken_types=(BrokenProcessPool,))
        while suspects:  # one at a time: a death now names its point
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx,
                                     initializer=die_with_parent, initargs=(os.getpid(),)) as ex:
                suspects, died = _drain(ex, suspects, on_outcome, limit=1,
                                        broken_types=(BrokenProcessPool,))
            for t in died:
                on_outcome(Outcome(t.hash, error="the worker process running this point died "
                                                 "(crash or out of memory)"))


def _drain(ex, queue: list[Task], on_outcome: Callable[[Outcome], None], *, limit: int,
           broken_types: tuple[type[BaseException], ...] = ()) -> tuple[list[Task], list[Task]]:
    """Keep at most ``limit`` tasks in flight on executor ``ex`` until all are done.

    Returns the tasks never submitted and the tasks in flight when the executor broke (both
    empty unless it broke; an executor raising one of ``broken_types`` is broken).
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    pending = list(reversed(queue))
    inflight: dict[Any, Task] = {}
    suspects: list[Task] = []
    broken = False
    try:
        while inflight or (pending and not broken):
            while pending and len(inflight) < limit and not broken:
                t = pending.pop()
                try:
                    inflight[ex.submit(run_point, t)] = t
                except broken_types:
                    pending.append(t)
                    broken = True
            if not inflight:
                break
            finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for fut in finished:
                t = inflight.pop(fut)
                try:
                    outcome = fut.result()
                except broken_types:
                    suspects.append(t)
                    broken = True
                    continue
                except Exception as e:  # infrastructure failure (pickling, killed worker)
                    outcome = Outcome(t.hash, error=one_line(e))
                on_outcome(outcome)
    except BaseException:
        for fut in inflight:
            fut.cancel()
        raise
    return list(reversed(pending)), suspects


def _run_dask(tasks: list[Task], on_outcome: Callable[[Outcome], None], address: str,
              connect_timeout_s: float) -> None:
    """Run ``tasks`` on the dask.distributed cluster at ``address`` with the same point function."""
    try:
        from distributed import Client
    except ImportError:
        raise KmmError("needs dask.distributed: pip install 'kmm[dask]'", "--scheduler") from None
    try:
        client = Client(address, timeout=f"{connect_timeout_s}s", set_as_default=False)
    except Exception as e:  # noqa: BLE001 - any failure to connect is one line
        raise KmmError(f"cannot reach the Dask scheduler: {one_line(e)}",
                       f"--scheduler {address}") from None
    try:
        threads = sum(client.nthreads().values()) or 1
        ex = client.get_executor(pure=False)
        _drain(ex, tasks, on_outcome, limit=max(4, 2 * threads))
    finally:
        client.close()


# --------------------------------------------------------------------------- probe, benchmark


PROBE_TARGET = "kmm.suite.sweep:probe_point"


def probe_point(*, seed: int, n_values: int = 100_000, rounds: int = 1, fail_seed: int = -1,
                scenario: str = "small") -> pl.DataFrame:
    """A self-contained sweep point: seeded CPU work returning a tidy frame.

    It models nothing; it gives tests and :func:`bench_sweep` a point whose cost is set by
    ``n_values * rounds`` and whose rows depend only on its parameters, so runs can be compared
    across processes and clusters. Each round folds the values about their mean and sorts them.

    Parameters
    ----------
    seed : seed of the values (``numpy.random.default_rng``)
    n_values : number of values drawn
    rounds : fold-and-sort rounds (cost)
    fail_seed : the point raises ``ValueError`` when ``seed == fail_seed`` (fault injection,
        to check that a failing point is recorded without stopping the others); -1: never
    scenario : recorded in the rows' ``scenario`` column
    """
    import numpy as np

    from ..results import frame, rows_for

    if seed == fail_seed:
        raise ValueError(f"fault injected at seed {seed}")
    x = np.random.default_rng(seed).standard_normal(n_values)
    for _ in range(rounds):
        x = np.sort(np.abs(x - x.mean()))
    metrics = {"mean": (float(x.mean()), "value"), "p99": (float(np.quantile(x, 0.99)), "value"),
               "max": (float(x[-1]), "value")}
    params = {"n_values": n_values, "rounds": rounds, "fail_seed": fail_seed}
    return frame(rows_for(scenario, params, seed, metrics))


def bench_sweep(points: int = 16, workers: Sequence[int] = (1, 2), *, n_values: int = 100_000,
                rounds: int = 100, notebook: bool = True) -> dict:
    """Measure the sweep runner: parallel speedup and per-point overhead.

    Runs ``points`` :func:`probe_point` points (library runner) once per entry of ``workers``
    in a temporary folder; with ``notebook``, also runs the same points through a generated
    notebook on one worker (needs ``kmm.suite.io``). Not a test: it reports, never asserts.
    The default point (100 000 values, 100 rounds) works in L2-sized arrays, about 0.5 s of
    one core, so two workers do not compete for memory bandwidth. The machine's load average
    before and after is reported: on a busy machine the speedup measures the contention.

    Returns
    -------
    dict
        ``wall_s`` and ``point_s`` (mean work per point) per worker count, ``speedup``
        (wall on the first worker count / wall on the last), ``overhead_s_per_point`` per
        worker count (worker-seconds not spent in the point function, per point), and with
        ``notebook``: ``notebook_wall_s`` and ``notebook_overhead_s_per_point`` (its wall time
        minus the library run's on one worker, per point: kernel start, papermill, I/O).
    """
    import tempfile

    pts = [{"seed": s, "n_values": n_values, "rounds": rounds, "fail_seed": -1,
            "scenario": "bench"} for s in range(points)]
    out: dict[str, Any] = {"points": points, "workers": list(workers), "wall_s": {},
                           "point_s": {}, "overhead_s_per_point": {},
                           "loadavg_before": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="kmm-bench-sweep-") as tmp:
        walls = {}
        for w in workers:
            sw = make_sweep(f"bench-w{w}", pts, runner="library", target=PROBE_TARGET,
                            out_dir=Path(tmp))
            rep = run(sw, workers=w, progress=False)
            if rep.failed:
                raise KmmError(f"benchmark point failed: {next(iter(rep.failed.values()))}")
            walls[w] = rep.wall_s
            out["wall_s"][w] = round(rep.wall_s, 3)
            out["point_s"][w] = round(sum(rep.point_s) / points, 4)
            out["overhead_s_per_point"][w] = round((rep.wall_s * min(w, points)
                                                    - sum(rep.point_s)) / points, 4)
        out["speedup"] = round(walls[workers[0]] / walls[workers[-1]], 3)
        if notebook:
            nb = _write_probe_notebook(Path(tmp) / "probe.ipynb")
            sw = make_sweep("bench-notebook", pts, runner="notebook", target=nb.name,
                            notebook=nb, out_dir=Path(tmp), root=Path(tmp))
            rep = run(sw, workers=1, progress=False)
            if rep.failed:
                out["notebook_error"] = next(iter(rep.failed.values()))
            else:
                base = walls.get(1, walls[workers[0]])
                out["notebook_wall_s"] = round(rep.wall_s, 3)
                out["notebook_overhead_s_per_point"] = round((rep.wall_s - base) / points, 4)
    out["loadavg_after"] = round(os.getloadavg()[0], 2)
    return out


def _write_probe_notebook(path: Path) -> Path:
    """A notebook that runs :func:`probe_point` and saves its frame the way notebooks do."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        'seed = 0\nn_values = 1000\nrounds = 1\nfail_seed = -1\nscenario = "small"')
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "from kmm.suite import io, sweep\n"
        "df = sweep.probe_point(seed=seed, n_values=n_values, rounds=rounds, "
        "fail_seed=fail_seed, scenario=scenario)\n"
        'io.save_frame(df, "probe", scenario)')
    nb.cells = [params, body]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, str(path))
    return path


# --------------------------------------------------------------------------- CLI


def add_parser(subparsers) -> None:
    """Register ``kmm sweep`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "sweep", help="run a params grid point by point (resumable; local processes or Dask)",
        description="Run every point of a grid declared in a params file, skipping points "
                    "already done, and merge the points into <out>/<params>-<grid>.parquet.")
    p.add_argument("params_file", type=argtypes.path,
                   help="params/<notebook>.yaml declaring the grid")
    p.add_argument("--grid", type=argtypes.name, default=None, metavar="NAME",
                   help="grid name (default: the file's only grid)")
    p.add_argument("--out", type=argtypes.path, default=None, metavar="DIR",
                   help="output folder (default: data/sweeps under the project root)")
    p.add_argument("--workers", type=argtypes.int_in(1, 1024), default=None, metavar="N",
                   help="local worker processes (default: all cores; 1 runs in this process)")
    p.add_argument("--scheduler", type=argtypes.scheduler, default=None, metavar="ADDRESS",
                   help="run on an existing dask.distributed cluster (tcp://host:8786)")
    p.add_argument("--retry-failed", action="store_true",
                   help="rerun the points a previous run recorded as failed")
    p.add_argument("--timeout", type=argtypes.seconds, default=None, metavar="SECONDS",
                   help="per-cell timeout of notebook points (default: none)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=handle)


def handle(args) -> int:
    """The ``kmm sweep`` handler: 0 if every point is done, 1 if any failed.

    User mistakes raise :class:`kmm.errors.KmmError`; the CLI prints them as one line.
    """
    if args.workers is not None and args.scheduler:
        raise ConfigError("give either --workers or --scheduler, not both", "--scheduler")
    sweep = plan(args.params_file, args.grid, out_dir=args.out, timeout_s=args.timeout)
    report = run(sweep, workers=args.workers, scheduler=args.scheduler,
                 retry_failed=args.retry_failed, progress=False if args.quiet else None)
    print(report.line())
    for p in sweep.points:
        if p.hash in report.failed:
            print(f"  failed {p.hash} ({_short(p.params)}): {report.failed[p.hash]}",
                  file=sys.stderr)
    if report.failed:
        print(f"  rerun with --retry-failed to retry them; details in {sweep.manifest_path}",
              file=sys.stderr)
    return 0 if report.ok else 1


def _short(params: Mapping[str, Any], limit: int = 160) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kmm.suite.sweep ...``: the sweep command on its own (same errors as kmm)."""
    from .cli import main as kmm_main

    return kmm_main(["sweep", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
