"""Saving and loading the tidy result frames notebooks produce.

A notebook ends with ``io.save_frame(df, stem, scenario)``; the frame goes to
``<data>/frames/<scenario>/<stem>.parquet`` after :func:`kmm.results.validate`, through a
temporary file and a rename (never through a link, :mod:`kmm.suite.safefs`), so a small
(nbval) run never replaces a published frame and a reader never sees a half-written file.
``<data>`` is the current generation where the data folder has one
(:func:`kmm.suite.claims.results_dir`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, KmmError

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def frame_path(stem: str, scenario: str, root: Path | None = None) -> Path:
    """``<data>/frames/<scenario>/<stem>.parquet`` (``root`` overrides ``<data>``)."""
    from .claims import results_dir

    for what, name in (("stem", stem), ("scenario", scenario)):
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{what} must be a plain file name, got {name!r}", "io.save_frame")
    return results_dir(root) / "frames" / scenario / f"{stem}.parquet"


def save_frame(df: pl.DataFrame, stem: str, scenario: str) -> Path:
    """Validate ``df`` against the tidy schema and write it atomically; return its path."""
    from .. import results

    try:
        results.validate(df)
    except ValueError as e:
        raise KmmError(str(e), f"io.save_frame {stem}") from None
    from . import safefs
    from .claims import results_dir

    base = results_dir()
    path = frame_path(stem, scenario, base)
    return safefs.write_with(path, df.write_parquet, root=base)


def load_frame(stem: str, scenario: str = "published", root: Path | None = None) -> pl.DataFrame:
    """Read a frame written by :func:`save_frame`."""
    import polars as pl

    path = frame_path(stem, scenario, root)
    if not path.is_file():
        raise KmmError("no such frame (run its notebook first)", str(path))
    return pl.read_parquet(path)
