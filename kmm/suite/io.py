"""Saving and loading the tidy result frames notebooks produce.

A notebook ends with ``io.save_frame(df, stem, scenario)``; the frame goes to
``<data>/frames/<scenario>/<stem>.parquet`` after :func:`kmm.results.validate`, through a
temporary file and a rename (never through a link, :mod:`kmm.suite.safefs`), so a small
(nbval) run never replaces a published frame and a reader never sees a half-written file.
``<data>`` is the current generation where the data folder has one
(:func:`kmm.suite.claims.results_dir`). Each file's parquet metadata holds its provenance
under ``kmm.provenance`` (JSON, :mod:`kmm.suite.provenance`) and a description of every column
under ``kmm.columns`` (:func:`kmm.results.describe`); :func:`frame_provenance` and
:func:`frame_columns` read them.
"""
from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, KmmError

#: The parquet metadata key of a saved frame's provenance.
PROVENANCE_KEY = "kmm.provenance"
#: The parquet metadata key of a frame's column descriptions (JSON: column -> description).
COLUMNS_KEY = "kmm.columns"

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_name(what: str, name: object, where: str) -> str:
    """``name`` if it is a plain file name (a scenario, a stem), else a ConfigError."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{what} must be a plain file name, got {name!r}", where)
    return name


def frame_path(stem: str, scenario: str, root: Path | None = None) -> Path:
    """``<data>/frames/<scenario>/<stem>.parquet`` (``root`` overrides ``<data>``)."""
    from .claims import results_dir

    check_name("stem", stem, "io.save_frame")
    check_name("scenario", scenario, "io.save_frame")
    return results_dir(root) / "frames" / scenario / f"{stem}.parquet"


def save_frame(df: pl.DataFrame, stem: str, scenario: str,
               parameters: Mapping | None = None) -> Path:
    """Validate ``df`` against the tidy schema and write it atomically with its provenance
    (``parameters``: those the frame was computed with, for the digest); return its path."""
    from .. import results

    try:
        results.validate(df)
    except ValueError as e:
        raise KmmError(str(e), f"io.save_frame {stem}") from None
    from . import provenance, safefs
    from .claims import _plain, results_dir

    base = results_dir()
    path = frame_path(stem, scenario, base)
    stamp = provenance.stamp(None if parameters is None else _plain(dict(parameters)))
    meta = {PROVENANCE_KEY: json.dumps({**stamp, "scenario": scenario}, sort_keys=True),
            COLUMNS_KEY: json.dumps(results.describe(df))}
    return safefs.write_with(path, functools.partial(df.write_parquet, metadata=meta),
                             root=base)


def _frame_meta(path: Path | str, key: str) -> dict:
    """The JSON object a saved frame's parquet metadata holds under ``key`` (empty if none)."""
    import polars as pl

    try:
        out = json.loads(pl.read_parquet_metadata(path).get(key, "{}"))
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def frame_columns(path: Path | str) -> dict[str, str]:
    """The column descriptions a saved frame carries (empty if it has none)."""
    return _frame_meta(path, COLUMNS_KEY)


def frame_provenance(path: Path | str) -> dict:
    """The provenance a saved frame carries (empty if it has none)."""
    return _frame_meta(path, PROVENANCE_KEY)


def load_frame(stem: str, scenario: str = "published", root: Path | None = None) -> pl.DataFrame:
    """Read a frame written by :func:`save_frame`."""
    import polars as pl

    path = frame_path(stem, scenario, root)
    if not path.is_file():
        raise KmmError("no such frame (run its notebook first)", str(path))
    return pl.read_parquet(path)
