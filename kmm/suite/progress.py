"""Progress of long commands on stderr: a status line on a terminal, log lines otherwise.

``kmm reproduce`` reports each notebook as it finishes, with the share done and an estimate
of the time left from the previous run's durations (``<data>/provenance.json``); ``kmm run``
reports each cell as it starts. Both say when kmm's Numba kernels are not compiled yet for
this source tree (the first run after installing or editing kmm compiles them, which takes
minutes that no previous run accounts for).

On a terminal a :class:`Status` keeps one line at the bottom, redrawn every second, with
events printed above it. Without one (a log file, CI, a pipe) it prints plain lines only:
each event, and the status every :data:`HEARTBEAT` seconds so a long step is never silent.
``KMM_PROGRESS=plain`` or ``=tty`` forces either; ``=off`` prints no progress (no status, no
cell lines, no cold-cache note), only the command's own messages.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

#: Seconds between two status lines without a terminal.
HEARTBEAT = 30.0
#: Seconds between two redraws of the status line on a terminal.
REDRAW = 1.0

_active: Status | None = None
_cell_hook: contextvars.ContextVar[Callable[[int, int, str], None] | None] = \
    contextvars.ContextVar("kmm_cell_hook", default=None)


def _env_mode() -> str | None:
    mode = os.environ.get("KMM_PROGRESS", "").strip().lower()
    return mode if mode in ("tty", "plain", "off") else None


def duration(seconds: float) -> str:
    """``seconds`` for a person: ``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Status:
    """Progress output on ``stream`` (default stderr).

    ``render`` returns the current status text; :meth:`log` prints an event line. On a
    terminal the status is one line redrawn in place; otherwise it is printed as a plain line
    every ``heartbeat`` seconds (and never if ``mode`` is ``off``).
    """

    def __init__(self, render: Callable[[], str] | None = None, stream: TextIO | None = None, *,
                 mode: str | None = None, heartbeat: float = HEARTBEAT, redraw: float = REDRAW):
        self.stream = stream if stream is not None else sys.stderr
        mode = mode or _env_mode()
        if mode not in ("tty", "plain", "off"):
            isatty = getattr(self.stream, "isatty", None)
            mode = "tty" if callable(isatty) and isatty() and os.environ.get("TERM") != "dumb" \
                else "plain"
        self.mode = mode
        self.render = render or (lambda: "")
        self.period = redraw if mode == "tty" else heartbeat
        self._lock = threading.Lock()
        self._shown = ""  # the status line now on screen (tty)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- output ------------------------------------------------------------------------------
    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: progress is not the work
            pass

    def _clear(self) -> str:
        return "\r\033[K" if self._shown else ""

    def log(self, text: str) -> None:
        """Print an event line (above the status line on a terminal)."""
        with self._lock:
            if self.mode == "tty":
                line = self._line()
                self._write(f"{self._clear()}{text}\n" + (line if line else ""))
                self._shown = line
            else:
                self._write(f"{text}\n")

    def _line(self) -> str:
        try:
            text = " ".join(self.render().split())
        except Exception:  # noqa: BLE001 - a status that cannot be drawn is left out
            return ""
        width = 0
        with contextlib.suppress(OSError, ValueError, AttributeError):
            width = os.get_terminal_size(self.stream.fileno()).columns
        return text[: (width or 120) - 1]

    def hide(self) -> None:
        """Clear the status line and show no status from now on (events still print)."""
        with self._lock:
            self.render = lambda: ""
            if self.mode == "tty" and self._shown:
                self._write("\r\033[K")
                self._shown = ""

    def refresh(self) -> None:
        """Redraw the status line (terminal) or print it as a line (plain)."""
        with self._lock:
            line = self._line()
            if self.mode == "tty":
                if line != self._shown:
                    self._write(f"{self._clear()}{line}")
                    self._shown = line
            elif self.mode == "plain" and line:
                self._write(f"{line}\n")

    # -- lifetime ------------------------------------------------------------------------------
    def _tick(self) -> None:
        while not self._stop.wait(self.period):
            self.refresh()

    def __enter__(self) -> Status:
        global _active
        self._previous, _active = _active, self
        if self.mode == "tty":
            self.refresh()
        if self.mode != "off":
            self._thread = threading.Thread(target=self._tick, name="kmm-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        global _active
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if self.mode == "tty" and self._shown:
                self._write("\r\033[K")
                self._shown = ""
        _active = self._previous


def say(text: str, stream: TextIO | None = None) -> None:
    """Print an event line: through the active :class:`Status` if there is one."""
    if _active is not None and stream is None:
        _active.log(text)
    else:
        print(text, file=stream or sys.stderr, flush=True)


# ---- the Numba cache ------------------------------------------------------------------------
def compiled_kernels() -> int:
    """How many kernels are compiled in kmm's Numba cache for this source tree."""
    from .. import _jit

    base = Path(_jit.cache_dir())
    if not base.is_dir():
        return 0
    return sum(1 for _, _, files in os.walk(base) for f in files if f.endswith(".nbi"))


def cold_cache_note() -> str | None:
    """A line saying kernels will be compiled first, or None when the cache holds them."""
    from .. import _jit

    if _env_mode() == "off" or compiled_kernels():
        return None
    return (f"compiling kmm's Numba kernels first: none are cached for this kmm source yet "
            f"({_display(_jit.cache_dir())}); this takes a few minutes once, later runs reuse them")


def _display(path: str) -> str:
    home = os.path.expanduser("~")
    return "~" + path[len(home):] if home != "/" and path.startswith(home + os.sep) else path


# ---- kmm reproduce --------------------------------------------------------------------------
def previous_seconds(data: Path) -> dict[str, float]:
    """Seconds each notebook took in its last successful run (``<data>/provenance.json``)."""
    from .report import load_provenance

    out = {}
    for stem, nb in load_provenance(data).get("notebooks", {}).items():
        seconds = nb.get("seconds") if isinstance(nb, dict) else None
        if nb.get("status") == "ok" and isinstance(seconds, (int, float)) and seconds >= 0:
            out[stem] = float(seconds)
    return out


class Board:
    """Which notebooks of a ``kmm reproduce`` are done, running and waiting, and the time left.

    Notebooks run in the order given, ``jobs`` at a time (those in ``last`` one at a time
    after all the others), as :func:`kmm.suite.reproduce.main` runs them. The estimate of the
    time left uses each notebook's duration in the previous run (the mean of the known ones
    for a notebook that has none): what is left of the running ones plus the waiting ones,
    shared over the workers. With no previous durations there is no estimate.
    """

    def __init__(self, first: Sequence[str], last: Sequence[str], jobs: int,
                 previous: Mapping[str, float], clock: Callable[[], float] = time.monotonic,
                 cold: bool = False):
        self.first, self.last = list(first), list(last)
        self.order = self.first + self.last
        self.jobs = max(1, jobs)
        self.previous = dict(previous)
        self.clock = clock
        self.t0 = clock()
        self.started: dict[str, float] = {}
        self.done: dict[str, float] = {}
        self.failed: set[str] = set()
        self.cold = cold
        self._kernels_at_start = 0

    # -- events --------------------------------------------------------------------------------
    def start(self, stem: str) -> None:
        self.started.setdefault(stem, self.clock())

    def start_pool(self) -> None:
        """The first ``jobs`` notebooks of the parallel part have started."""
        for stem in self.first[: self.jobs]:
            self.start(stem)

    def finish(self, stem: str, ok: bool = True) -> str:
        """Record a notebook as finished; return the progress note for its line."""
        now = self.clock()
        self.start(stem)
        self.done[stem] = now - self.started[stem]
        if not ok:
            self.failed.add(stem)
        if stem in self.first:  # the pool starts the next waiting one in order
            waiting = [s for s in self.first if s not in self.started]
            if waiting:
                self.start(waiting[0])
        return self.note()

    # -- estimates -----------------------------------------------------------------------------
    def expected(self, stem: str) -> float | None:
        if stem in self.previous:
            return self.previous[stem]
        known = [self.previous[s] for s in self.order if s in self.previous]
        return sum(known) / len(known) if known else None

    def remaining(self) -> float | None:
        """Estimated seconds until every notebook has finished, or None."""
        now = self.clock()
        first_left: list[float] = []
        for stem in self.first:
            if stem in self.done:
                continue
            e = self.expected(stem)
            if e is None:
                return None
            first_left.append(max(e - (now - self.started[stem]), 1.0) if stem in self.started
                              else e)
        last_left = 0.0
        for stem in self.last:
            if stem in self.done:
                continue
            e = self.expected(stem)
            if e is None:
                return None
            last_left += max(e - (now - self.started[stem]), 1.0) if stem in self.started else e
        workers = min(self.jobs, len(first_left)) or 1
        # list scheduling of what is left over the workers, in order
        free = [0.0] * workers
        for x in first_left:
            i = free.index(min(free))
            free[i] += x
        return max(free) + last_left

    def note(self) -> str:
        n, k = len(self.order), len(self.done)
        text = f"{k}/{n} done"
        left = self.remaining()
        if k < n:
            text += f", about {duration(left)} left" if left is not None else \
                ", no previous run to estimate the time left"
            if self.cold:
                text += " (plus compiling kernels)"
        return text

    def status(self) -> str:
        """The status line: running notebooks with their time so far, elapsed, time left."""
        now = self.clock()
        running = []
        for stem in self.order:
            if stem in self.started and stem not in self.done:
                e = self.expected(stem)
                so_far = duration(now - self.started[stem])
                running.append(f"{stem} {so_far}" + (f" of ~{duration(e)}" if e else ""))
        text = f"kmm reproduce: {self.note()}; {duration(now - self.t0)} elapsed"
        if running:
            text += "; running " + ", ".join(running)
        if self.cold:
            kernels = compiled_kernels()
            text += f"; {kernels} kernel{'s' if kernels != 1 else ''} compiled so far"
        return text


# ---- kmm run: cells -------------------------------------------------------------------------
def cell_hook() -> Callable[[int, int, str], None] | None:
    """The active cell-progress callback ``(position, total, source)``, or None.

    :func:`kmm.suite.nbrun.execute` calls it as each code cell starts (position 1 to total)
    and with position 0 when the notebook has stopped (finished or failed).
    """
    return _cell_hook.get()


@contextlib.contextmanager
def cells(name: str, status: Status | None = None) -> Iterator[Callable[[int, int, str], None]]:
    """Report the cells of notebook ``name`` as they start, while the block runs.

    On a terminal the status line shows the running cell and its time; without one each cell
    start is a line ``<name>: cell <i>/<n> (<elapsed>): <first line of the cell>``.
    """
    t0 = time.monotonic()
    state: dict[str, Any] = {"text": "", "started": t0}

    def render() -> str:
        if not state["text"]:
            return f"{name}: starting the kernel ({duration(time.monotonic() - t0)})"
        return (f"{state['text']} ({duration(time.monotonic() - state['started'])} in this cell, "
                f"{duration(time.monotonic() - t0)} in all)")

    own = status is None
    st = status or Status(render)

    def on_cell(position: int, total: int, source: str) -> None:
        if position == 0:
            st.hide()
            return
        first = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
        if len(first) > 60:
            first = first[:57] + "..."
        state["started"] = time.monotonic()
        state["text"] = f"{name}: cell {position}/{total}: {first}"
        if st.mode == "tty":
            st.refresh()
        elif st.mode == "plain":
            st.log(f"{name}: cell {position}/{total} ({duration(time.monotonic() - t0)}): {first}")

    token = _cell_hook.set(on_cell)
    try:
        with st if own else contextlib.nullcontext():
            yield on_cell
    finally:
        _cell_hook.reset(token)
