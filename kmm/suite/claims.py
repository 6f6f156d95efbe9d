"""Recording claim values from notebooks, and reading them back with computed verdicts.

A notebook evaluates a claim by calling :func:`record` with the value its simulation
produced, the parameters used, a one-sentence explanation and, where the verdict depends on
``assumed`` parameters, the values over their joint sweep. It never types a verdict and never
sees the band: :mod:`kmm.suite.registry` computes the verdict when the table is read.

Records are JSON files ``<data>/claims/<scenario>/<ID>.json`` written atomically, so a small
(nbval) run never overwrites a published one. ``<data>`` is ``$KMM_DATA_DIR`` if set, else the
``data/`` folder of the project the current directory is in; where it holds published
generations (:mod:`kmm.suite.generations`) records are read from and written to the current one.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import KmmError, warn
from . import provenance, registry

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

PUBLISHED = "published"
_MAX_RECORD_BYTES = 64 << 20


def data_dir() -> Path:
    """Where kmm writes results: ``$KMM_DATA_DIR``, else ``<project>/data``, else ``./data``."""
    env = os.environ.get("KMM_DATA_DIR")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file() and (d / "kmm").is_dir():
            return d / "data"
    return here / "data"


def results_dir(root: Path | None = None) -> Path:
    """The folder results are read from and written to: the current generation of ``root``
    (default :func:`data_dir`), or ``root`` itself before any generation exists."""
    from .generations import resolve

    return resolve(root or data_dir())


def _plain(v: Any) -> Any:
    """JSON-ready copy of a value: numpy scalars/arrays to Python, NaN refused."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "tolist"):
        return _plain(v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        raise KmmError(f"claim value {v!r} is not finite")
    return v


def atomic_write_text(path: Path, text: str, root: Path | None = None) -> None:
    """Write ``text`` to ``path`` through a new temporary file and a rename, never through a
    link (:mod:`kmm.suite.safefs`; folders below ``root`` are created and checked too)."""
    from . import safefs

    safefs.write_text(Path(path), text, root=root)


def record(claim_id: str, value: Any, *, explanation: str, parameters: Mapping[str, Any],
           scenario: str, unit: str = "", sweep: Sequence[Mapping[str, Any]] | None = None,
           chart: str | None = None, centre: Mapping[str, Any] | None = None,
           swings: Sequence[Mapping[str, Any]] | None = None,
           basis: Mapping[str, Any] | None = None,
           replicates: Sequence[Mapping[str, Any]] | None = None,
           deterministic: bool = False) -> dict:
    """Record the value a notebook computed for a claim and return the record.

    Parameters
    ----------
    claim_id : an id of :data:`kmm.suite.registry.CLAIMS` (``"K1"``...)
    value : the simulation's value: a number, or a mapping of evidence for a direction or
        mechanism claim (the keys the registry's test reads; see ``kmm claims``)
    explanation : one sentence saying why the model gives this value
    parameters : the parameters the value was computed with (as in params/)
    scenario : ``"published"`` for the full scenario of params/ (the only one that gets a
        verdict); anything else (``"small"``) is labelled as a small run
    unit : unit of a numeric value (``"fraction"``, ``"bytes"``...)
    sweep : values over the joint sweep of the ``assumed`` parameters the verdict depends on:
        ``[{"params": {...}, "value": v}, ...]``; the registry reports the share in band
        and every parameter that alone flips the verdict (:func:`~kmm.suite.registry.decided_by`)
    chart : file stem of the chart that shows this claim (for the report's link)
    centre : the published point's setting of swept parameters not named in ``parameters``
    swings : one-at-a-time points (as the sweep's) for "decided by" where the sweep has none;
        not counted in the share in band
    basis : ``{"basis", "rests_on"}`` where the registry's table does not declare it
    replicates : the published point again at other seeds and at half the stream length,
        ``[{"seed", "length", "value"}, ...]``, for :func:`~kmm.suite.registry.convergence`
    deterministic : the value depends on no seed and no stream length (converged by
        construction)
    """
    if claim_id not in registry.CLAIMS:
        raise KmmError(f"unknown claim id {claim_id!r}", "claims.record")
    if not explanation or not explanation.strip():
        raise KmmError("a claim record needs a one-sentence explanation", claim_id)
    rec = {
        "id": claim_id,
        "value": _plain(value),
        "unit": unit,
        "explanation": explanation.strip(),
        "parameters": _plain(dict(parameters)),
        "scenario": scenario,
        "sweep": _plain(list(sweep)) if sweep else [],
        "chart": chart,
        "kmm_version": __version__,
        "provenance": provenance.stamp(_plain(dict(parameters))),
    }
    if centre:
        rec["centre"] = _plain(dict(centre))
    if swings:
        rec["swings"] = _plain(list(swings))
    if basis:
        rec["basis"] = _plain(dict(basis))
    if replicates:
        rec["replicates"] = _plain(list(replicates))
    if deterministic:
        rec["deterministic"] = True
    base = results_dir()
    atomic_write_text(base / "claims" / scenario / f"{claim_id}.json",
                      json.dumps(rec, indent=1, sort_keys=True), root=base)
    return rec


def load(scenario: str = PUBLISHED, root: Path | None = None) -> dict[str, dict]:
    """Records of one scenario, by claim id.

    A record that cannot be read, is not JSON or is not a record is left out with a one-line
    warning naming its file (the claim then shows as not evaluated, or its small-run value).
    """
    from . import safefs

    d = results_dir(root) / "claims" / scenario
    out = {}
    if d.is_dir():
        for f in sorted(d.glob("*.json")):
            try:
                rec = json.loads(safefs.read_bytes(f, limit=_MAX_RECORD_BYTES))
            except FileNotFoundError:
                continue
            except KmmError as e:
                warn(f"{e.line()}; claim record ignored")
                continue
            except (ValueError, RecursionError) as e:
                warn(f"{f}: unreadable claim record ({' '.join(str(e).split())[:120]}); ignored")
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("id", f.stem), str):
                warn(f"{f}: not a claim record (a JSON object with an id); ignored")
                continue
            out[rec.get("id", f.stem)] = rec
    return out


def scenarios(root: Path | None = None) -> list[str]:
    """The scenarios that have claim records, published first."""
    base = results_dir(root) / "claims"
    names = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    return sorted(names, key=lambda n: n != PUBLISHED)


def table(root: Path | None = None, scenario: str | None = None) -> list[dict]:
    """One row per claim: id, statement, band, value, verdict, share, explanation, parameters.

    Published records get a computed verdict; where only a small run was recorded its value
    is shown labelled ``small run`` and gets no verdict. With ``scenario``, only that
    scenario's records are read (a claim it did not record shows as not evaluated).
    """
    from . import io

    root = results_dir(root)  # resolved once: every record comes from one generation
    if scenario is not None:
        io.check_name("scenario", scenario, "kmm claims --scenario")
        published, small = load(scenario, root), {}
    else:
        published = load(PUBLISHED, root)
        small = {}
        for name in scenarios(root):
            if name != PUBLISHED:
                small.update({k: v for k, v in load(name, root).items() if k not in small})
    rows = []
    for cid, claim in registry.CLAIMS.items():
        rec = published.get(cid) or small.get(cid)
        verdict, share = registry.verdict(cid, rec)
        converged, spread = registry.convergence(cid, rec)
        rows.append({
            "id": cid,
            "mechanism": claim.mechanism,
            "statement": claim.statement,
            "test": claim.test,
            "band": registry.band_text(cid),
            "value": rec.get("value") if rec else None,
            "unit": rec.get("unit", "") if rec else "",
            "verdict": verdict,
            "share_in_band": share,
            "decided_by": registry.decided_by(cid, rec),
            **registry.basis(cid, rec),
            "converged": converged,
            "spread": spread,
            "explanation": rec.get("explanation", "") if rec else "no value recorded yet",
            "parameters": rec.get("parameters", {}) if rec else {},
            "sweep": rec.get("sweep", []) if rec else [],
            "scenario": rec.get("scenario") if rec else None,
            "chart": rec.get("chart") if rec else None,
            "provenance": rec.get("provenance") if rec else None,
            "source": registry.citation(cid),
            "cited": registry.citation_text(cid),
        })
    return rows


#: Columns of :func:`frame` with their descriptions (also stored in the parquet metadata).
FRAME_COLUMNS = {
    "id": "claim id (K1, S3, ...)",
    "mechanism": "the mechanism the claim is about",
    "statement": "what was claimed",
    "band": "the band the value must land in, as text",
    "verdict": "the verdict computed from value, band and sweep",
    "value": "the value when it is a number, else null (see value_json)",
    "value_json": "the value as JSON (numbers and evidence mappings alike)",
    "unit": "unit of a numeric value",
    "share_in_band": "share of the joint sweep of assumed parameters inside the band",
    "decided_by": "parameters that alone flip the verdict (null: not checked)",
    "basis": "measured, structural or not-modelled",
    "rests_on": "what a structural or not-modelled verdict rests on",
    "converged": "whether the verdict holds at half length and across seeds (null: not checked)",
    "spread": "seed and half-length spread of the value, as JSON",
    "explanation": "why the model gives this value",
    "scenario": "the scenario the value was recorded at",
    "chart": "file stem of the chart that shows the claim",
    "cited": "who made the claim, where and when",
    "parameters_json": "every parameter of the run, as JSON",
    "kmm_version": "kmm version of the run",
    "git_commit": "commit of kmm's source tree (null outside git)",
    "git_dirty": "whether the deciding files differed from that commit",
    "params_digest": "SHA-256 (16 hex digits) of the run's parameters",
}


def frame(rows: Sequence[Mapping[str, Any]]) -> "pl.DataFrame":
    """The claims table (:func:`table`) as a flat polars frame: one type per column (a value
    that is not a number is in ``value_json`` only), columns as :data:`FRAME_COLUMNS`."""
    import polars as pl

    def number(v):
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    def as_json(v):
        return None if v is None else json.dumps(v, sort_keys=True, default=str)

    out = []
    for r in rows:
        prov = r.get("provenance") or {}
        out.append({
            **{k: r.get(k) for k in ("id", "mechanism", "statement", "band", "verdict", "unit",
                                     "basis", "rests_on", "explanation", "scenario", "chart",
                                     "cited")},
            "value": number(r.get("value")), "value_json": as_json(r.get("value")),
            "share_in_band": r.get("share_in_band"),
            "decided_by": r.get("decided_by"), "converged": r.get("converged"),
            "spread": as_json(r.get("spread")),
            "parameters_json": as_json(r.get("parameters") or {}),
            **{k: prov.get(k) for k in ("kmm_version", "git_commit", "git_dirty",
                                        "params_digest")},
        })
    schema = {c: pl.String for c in FRAME_COLUMNS}
    schema.update(value=pl.Float64, share_in_band=pl.Float64, converged=pl.Boolean,
                  git_dirty=pl.Boolean, decided_by=pl.List(pl.String))
    return pl.DataFrame(out, schema=schema).select(list(FRAME_COLUMNS))


def write_parquet(rows: Sequence[Mapping[str, Any]], path: Path, root: Path) -> Path:
    """:func:`frame` of ``rows`` written atomically to ``path``, with the column descriptions
    and the writer's provenance in its parquet metadata."""
    import functools

    from . import io, safefs

    meta = {io.PROVENANCE_KEY: json.dumps(provenance.stamp(), sort_keys=True),
            io.COLUMNS_KEY: json.dumps(FRAME_COLUMNS)}
    return safefs.write_with(path, functools.partial(frame(rows).write_parquet, metadata=meta),
                             root=root)
