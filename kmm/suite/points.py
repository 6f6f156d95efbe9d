"""A sweep's done points on disk: each one's rows, its checksum and the code that made it.

For each done point of a sweep (:mod:`kmm.suite.sweep`)::

    points/<hash>.json      its record: sha256 and size of the rows file, the code digest,
                            seconds, kmm version (written first)
    points/<hash>.parquet   its tidy rows (renamed into place last: the point is then done)

A point counts as done only when its rows file matches its record's checksum and the record's
code digest is :func:`code_digest` of the code running now: every ``kmm/**/*.py``, the
notebook of a notebook grid, the module of a library grid's function. Anything else found
there (a file that cannot be read, a link, a file edited or cut short after it was written, one
without a record, one computed by other code) is moved to ``<sweep>/set-aside/`` with one
warning line naming it, and the point is computed again: a damaged point never stops its sweep
and is never merged.

The checksums detect corruption, edits and results of older code. They are not a defence
against someone who can write the sweep folder: rewriting a rows file and its record together
goes unnoticed.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import KmmError, warn
from . import safefs

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from .sweep import Sweep

SET_ASIDE = "set-aside"
_MAX_RECORD_BYTES = 1 << 20
_KMM = Path(__file__).resolve().parents[1]


def _module_file(target: str) -> Path | None:
    """The source file of a library grid's ``module:function`` if it lies outside kmm."""
    mod = target.partition(":")[0]
    try:
        spec = importlib.util.find_spec(mod)
    except (ImportError, ValueError):
        return None
    origin = Path(spec.origin) if spec and spec.origin and spec.origin != "built-in" else None
    if origin is None or not origin.is_file() or _KMM in origin.resolve().parents:
        return None
    return origin


def code_digest(sweep: Sweep) -> str:
    """A sha256 (16 hex digits) of the code a point of ``sweep`` runs: every ``kmm/**/*.py``
    (sorted by path), the notebook of a notebook grid and the module file of a library grid's
    function when it is not part of kmm."""
    h = hashlib.sha256()
    for p in sorted(_KMM.rglob("*.py")):
        if "__pycache__" in p.parts:
            continue
        h.update(p.relative_to(_KMM).as_posix().encode() + b"\0")
        h.update(p.read_bytes())
    extra = []
    if sweep.runner == "notebook" and sweep.notebook is not None:
        extra.append(("notebook", Path(sweep.notebook)))
    elif sweep.runner == "library":
        f = _module_file(sweep.target)
        if f is not None:
            extra.append(("function", f))
    for label, p in extra:
        h.update(f"\0{label}\0".encode())
        try:
            h.update(p.read_bytes())
        except OSError as e:
            raise KmmError(f"cannot read: {e.strerror or e}", str(p)) from None
    return h.hexdigest()[:16]


def record_path(sweep: Sweep, h: str) -> Path:
    return sweep.points_dir / f"{h}.json"


def save(sweep: Sweep, h: str, frame: pl.DataFrame, *, code: str | None = None,
         seconds: float = 0.0) -> Path:
    """Write a done point: its record, then its rows (renamed into place last)."""
    from .. import __version__

    buf = io.BytesIO()
    frame.write_parquet(buf)
    data = buf.getvalue()
    rec = {"hash": h, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
           "code": code or code_digest(sweep), "seconds": round(float(seconds), 3),
           "kmm_version": __version__}
    root = sweep.out_dir
    safefs.write_text(record_path(sweep, h), json.dumps(rec, sort_keys=True) + "\n", root=root)
    return safefs.write_bytes(sweep.point_path(h), data, root=root)


def read(sweep: Sweep, h: str, code: str) -> tuple[bytes | None, str | None]:
    """``(rows file bytes, None)`` for a sound done point, ``(None, None)`` for a point not
    done, ``(None, why)`` for a rows file that must be set aside."""
    path = sweep.point_path(h)
    if not os.path.lexists(path):
        return None, None
    try:
        data = safefs.read_bytes(path)
    except safefs.LinkRefused:
        return None, "is a symbolic link"
    except FileNotFoundError:
        return None, None
    except KmmError as e:
        return None, e.message
    try:
        rec = json.loads(safefs.read_bytes(record_path(sweep, h), limit=_MAX_RECORD_BYTES))
    except FileNotFoundError:
        return None, "has no record (cut short, or written by an older kmm)"
    except (KmmError, ValueError, RecursionError):
        return None, "its record is unreadable"
    if not isinstance(rec, dict) or rec.get("hash") != h:
        return None, "its record is not this point's"
    if rec.get("sha256") != hashlib.sha256(data).hexdigest():
        return None, "does not match its checksum (edited or corrupt)"
    if rec.get("code") != code:
        return None, "was computed by other code (kmm or the notebook changed since)"
    return data, None


def set_aside(sweep: Sweep, h: str, why: str) -> None:
    """Move a point's rows file and record to ``<sweep>/set-aside/`` and say so in one line."""
    from .params import display_path

    dest = safefs.ensure_dir(sweep.dir / SET_ASIDE, root=sweep.out_dir)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for src in (sweep.point_path(h), record_path(sweep, h)):
        if os.path.lexists(src):
            try:
                os.replace(src, dest / f"{src.stem}.{stamp}{src.suffix}")
            except OSError as e:
                raise KmmError(f"cannot set aside a damaged point: {e.strerror or e}",
                               str(src)) from None
    warn(f"{display_path(sweep.point_path(h))}: {why}; set aside in {display_path(dest)}, "
         "the point will be computed again")


def check(sweep: Sweep, code: str) -> set[str]:
    """Set aside every unsound point file of ``sweep``; return the hashes of the sound ones."""
    sound = set()
    for p in sweep.points:
        data, why = read(sweep, p.hash, code)
        if why is not None:
            set_aside(sweep, p.hash, why)
        elif data is not None:
            sound.add(p.hash)
    return sound


def load(sweep: Sweep, h: str, code: str) -> pl.DataFrame | None:
    """A done point's rows, or None (after setting it aside) if it is not sound."""
    import polars as pl

    data, why = read(sweep, h, code)
    if why is None and data is not None:
        try:
            return pl.read_parquet(io.BytesIO(data))
        except Exception as e:  # noqa: BLE001 (polars raises several types for a bad file)
            why = f"is not a readable parquet file ({type(e).__name__})"
    if why is not None:
        set_aside(sweep, h, why)
    return None
