"""The tidy result frame every model and notebook writes.

One row per (configuration, metric). Fixed columns come first and always exist:

=============  ========  ==========================================================
column         dtype     meaning
=============  ========  ==========================================================
scenario       str       which study produced the row (notebook or grid name)
config_hash    str       :func:`kmm.config.config_hash` of the row's parameters
seed           int64     the seed the randomness of this row was drawn from
kmm_version    str       the version of kmm that computed it
metric         str       what was measured (``tlb_mpki``, ``gain``, ``table_bytes``...)
value          float64   the measured value
unit           str       its unit (``ns``, ``bytes``, ``fraction``, ``count``...)
experiment     str       which experiment of the study the row belongs to
seeds          str       every seed pooled into the value, comma-separated
=============  ========  ==========================================================

Every further column is a parameter of the configuration (``granule``, ``nodes``,
``latency_ratio``...), so a frame can be grouped and charted by any parameter. A parameter
is null on the rows of experiments that do not set it: filter on ``experiment`` before
grouping by it. Unless a study names its experiments, a row's experiment is the parameters it
sets (``latency_ratio+nodes``), or the value of its ``study`` parameter where it has one.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from . import __version__
from .config import config_hash

#: What each fixed column holds (saved frames carry these in their parquet metadata).
FIXED_DESCRIPTIONS: dict[str, str] = {
    "scenario": "which study produced the row (notebook or grid name)",
    "config_hash": "hash of the row's parameters (kmm.config.config_hash)",
    "seed": "the seed the randomness of this row was drawn from",
    "kmm_version": "the version of kmm that computed it",
    "metric": "what was measured",
    "value": "the measured value",
    "unit": "the value's unit",
    "experiment": "which experiment of the study the row belongs to (filter on it before "
                  "grouping by a parameter: other experiments leave that parameter null)",
    "seeds": "every seed pooled into the value, comma-separated (seed is the first)",
}


def describe(df: pl.DataFrame) -> dict[str, str]:
    """A description of every column of a tidy frame: the fixed columns' meanings, and for
    each parameter column the rows that set it (a parameter is null where a row's experiment
    does not vary or use it, so group by it only within the rows that set it).

    >>> rows = (rows_for("s", {"nodes": 2}, 1, {"m": (1.0, "")})
    ...         + rows_for("s", {}, 1, {"m": (2.0, "")}))
    >>> describe(frame(rows))["nodes"]
    'parameter of the configuration; set on 1 of 2 rows (null on the others)'
    """
    out = {}
    for c in df.columns:
        if c in FIXED_DESCRIPTIONS:
            out[c] = FIXED_DESCRIPTIONS[c]
            continue
        nulls = df[c].null_count()
        out[c] = "parameter of the configuration" + (
            f"; set on {df.height - nulls} of {df.height} rows (null on the others)"
            if nulls else "; set on every row")
    return out


FIXED_COLUMNS: dict[str, pl.DataType] = {
    "scenario": pl.Utf8,
    "config_hash": pl.Utf8,
    "seed": pl.Int64,
    "kmm_version": pl.Utf8,
    "metric": pl.Utf8,
    "value": pl.Float64,
    "unit": pl.Utf8,
    "experiment": pl.Utf8,
    "seeds": pl.Utf8,
}


def experiment_of(params: Mapping[str, Any]) -> str:
    """The experiment a configuration belongs to when its study does not name it: the value
    of its ``study`` parameter, else the names of the parameters it sets, sorted and joined
    by ``+`` (``-`` for none).

    >>> experiment_of({"nodes": 2, "latency_ratio": 1.5}), experiment_of({"study": "bbm"})
    ('latency_ratio+nodes', 'bbm')
    """
    if isinstance(params.get("study"), str):
        return params["study"]
    return "+".join(sorted(params)) or "-"


def rows_for(scenario: str, params: Mapping[str, Any], seed: int | Sequence[int],
             metrics: Mapping[str, tuple[float, str]], *,
             experiment: str | None = None) -> list[dict[str, Any]]:
    """Rows for one configuration: ``metrics`` maps metric name -> (value, unit).

    ``seed`` is the seed the values were drawn from, or every seed pooled into them (the
    ``seed`` column then holds the first, ``seeds`` all); ``experiment`` names the study's
    experiment (default :func:`experiment_of` the parameters)."""
    seeds = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    if not seeds:
        raise ValueError("rows need at least one seed")
    key = {"scenario": scenario, "params": dict(params), "seed": seeds[0]}
    if len(seeds) > 1:
        key["seeds"] = seeds
    base = {"scenario": scenario, "config_hash": config_hash(key), "seed": seeds[0],
            "kmm_version": __version__,
            "experiment": experiment if experiment is not None else experiment_of(params),
            "seeds": ",".join(map(str, seeds))}
    return [{**base, "metric": m, "value": float(v), "unit": u, **params}
            for m, (v, u) in metrics.items()]


def frame(rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Build a tidy frame from rows, fixed columns first with their dtypes."""
    rows = list(rows)
    if not rows:
        return pl.DataFrame(schema=FIXED_COLUMNS)
    df = pl.DataFrame(rows, infer_schema_length=None)
    missing = [c for c in FIXED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"result rows lack the fixed columns {missing}")
    df = df.with_columns([pl.col(c).cast(t) for c, t in FIXED_COLUMNS.items()])
    params = [c for c in df.columns if c not in FIXED_COLUMNS]
    return df.select(list(FIXED_COLUMNS) + params)


def validate(df: pl.DataFrame) -> pl.DataFrame:
    """Raise ``ValueError`` unless ``df`` follows the tidy schema; return it unchanged."""
    for c, t in FIXED_COLUMNS.items():
        if c not in df.columns:
            raise ValueError(f"result frame lacks column {c!r}")
        if df.schema[c] != t:
            raise ValueError(f"result column {c!r} is {df.schema[c]}, expected {t}")
    return df
